-- schemaop:no-transaction
-- BEGIN ATOMIC in a no-transaction file: sent as one statement, not split
-- inside its body.
CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END;
CREATE OR REPLACE PROCEDURE p(x int) LANGUAGE sql
BEGIN ATOMIC
  SELECT x;
  SELECT x + 1;
END;
CREATE TABLE after_procedure (id int);
