-- Dollar-quote tags may hold any identifier characters, such as €.
DO $€$ BEGIN PERFORM 1; END $€$;
CREATE FUNCTION euro() RETURNS text LANGUAGE sql AS $€$ SELECT 'x;y'; $€$;
CREATE TABLE after_euro (id int);
