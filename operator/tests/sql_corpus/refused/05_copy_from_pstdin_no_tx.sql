-- schemaop:no-transaction
-- refused at line 4
CREATE TABLE people (name text);
COPY people FROM pstdin WITH (FORMAT csv);
