-- schemaop:no-transaction
-- CREATE INDEX CONCURRENTLY cannot run in a transaction block.
CREATE TABLE big (id int, name text);
CREATE INDEX CONCURRENTLY big_name ON big (name);
CREATE UNIQUE INDEX CONCURRENTLY big_id ON big (id);
