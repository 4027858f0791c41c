-- A SQL-standard function body: the semicolons inside BEGIN ATOMIC ... END
-- belong to the function, so the file holds three statements, not five.
CREATE TABLE counts (n int);
CREATE FUNCTION two_selects() RETURNS int LANGUAGE sql
BEGIN ATOMIC
  SELECT 1;
  SELECT 2;
END;
CREATE TABLE after_function (id int);
