-- schemaop:no-transaction
-- refused at line 4
CREATE TABLE a (id int);
START TRANSACTION ISOLATION LEVEL SERIALIZABLE;
CREATE TABLE b (id int);
COMMIT;
