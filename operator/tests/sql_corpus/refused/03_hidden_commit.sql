-- refused at line 5
-- `a$e'\'` is not an E-string, so the COMMIT below is a statement.
CREATE DOMAIN a$e AS text;
CREATE TABLE t (x a$e DEFAULT a$e'\');
COMMIT;
CREATE TABLE u (y text DEFAULT 'it''s');
