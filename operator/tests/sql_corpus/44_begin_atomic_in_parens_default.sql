-- A function with defaults in parentheses holding semicolons in strings,
-- then a BEGIN ATOMIC body with two statements.
CREATE TABLE log (msg text);
CREATE FUNCTION log_it(m text DEFAULT 'a;b') RETURNS void LANGUAGE sql
BEGIN ATOMIC
  INSERT INTO log VALUES (m);
  INSERT INTO log VALUES (m || ';');
END;
