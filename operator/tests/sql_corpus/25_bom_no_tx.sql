-- schemaop:no-transaction
-- The marker is seen after a byte-order mark.
CREATE TABLE bom_tx (id int);
CREATE INDEX CONCURRENTLY bom_tx_id ON bom_tx (id);
