-- schemaop:no-transaction
-- The same typed literal in a no-transaction file: three statements.
CREATE DOMAIN a$e AS text;
CREATE TABLE t (x a$e DEFAULT a$e'\');
CREATE TABLE u (y text DEFAULT 'x;y');
