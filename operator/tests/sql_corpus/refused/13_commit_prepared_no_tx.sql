-- schemaop:no-transaction
-- refused at line 4
CREATE TABLE a (id int);
COMMIT PREPARED 'x';
