-- DO blocks with BEGIN ... END inside dollar quotes, and COMMIT as text.
DO $$
BEGIN
  CREATE TABLE from_do (id int);
  RAISE NOTICE 'COMMIT; ROLLBACK;';
END
$$;
DO LANGUAGE plpgsql $body$ BEGIN NULL; END $body$;
