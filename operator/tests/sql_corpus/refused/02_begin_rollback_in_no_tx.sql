-- schemaop:no-transaction
-- refused at line 4
-- A failing BEGIN ... ROLLBACK lost the error text.
BEGIN;
CREATE TABLE x (id int);
SELECT 1 / 0;
ROLLBACK;
