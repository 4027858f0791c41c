-- CASE ... END in a RETURN body: not inside BEGIN, so END does not count.
CREATE FUNCTION pos(x int) RETURNS int LANGUAGE sql RETURN CASE WHEN x > 0 THEN 1 ELSE 0 END;
CREATE TABLE after_pos (id int);
