-- $1 parameters and identifiers containing $ are not dollar quotes.
CREATE TABLE price$ (amount$ int, x$$ int);
CREATE FUNCTION add_one(int) RETURNS int LANGUAGE sql AS 'SELECT $1 + 1';
CREATE FUNCTION add(int, int) RETURNS int LANGUAGE sql RETURN $1 + $2;
