-- Adds an index without locking writes.
-- no-transaction
CREATE TABLE crlf_tx (id int);
CREATE INDEX CONCURRENTLY crlf_tx_id ON crlf_tx (id);
