-- schemaop:no-transaction
-- Nested CASE inside BEGIN ATOMIC, sent statement by statement.
CREATE OR REPLACE FUNCTION grade(x int) RETURNS text LANGUAGE sql
BEGIN ATOMIC
  SELECT CASE WHEN x > 90 THEN CASE WHEN x > 95 THEN 'A+' ELSE 'A' END ELSE 'B' END;
END;
CREATE TABLE after_grade (id int);
