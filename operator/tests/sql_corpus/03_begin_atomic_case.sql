-- CASE ... END inside a BEGIN ATOMIC body also ends with END: psql counts it,
-- so the body's own END is the one that closes it.
CREATE FUNCTION sign_of(x int) RETURNS text LANGUAGE sql
BEGIN ATOMIC
  SELECT CASE WHEN x > 0 THEN 'positive' WHEN x < 0 THEN 'negative' ELSE 'zero' END;
END;
CREATE TABLE after_case (id int);
