-- COMMIT inside a procedure's PL/pgSQL body is not the file's transaction control.
CREATE PROCEDURE batches() LANGUAGE plpgsql AS $$
BEGIN
  COMMIT;
  ROLLBACK;
END
$$;
