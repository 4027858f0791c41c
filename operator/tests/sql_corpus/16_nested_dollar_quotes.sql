-- A dollar quote inside another one with a different tag.
CREATE FUNCTION outer_fn() RETURNS void LANGUAGE plpgsql AS $outer$
BEGIN
  EXECUTE $inner$ CREATE TABLE IF NOT EXISTS made_inside (x text DEFAULT ';') $inner$;
END
$outer$;
CREATE TABLE after_outer (id int);
