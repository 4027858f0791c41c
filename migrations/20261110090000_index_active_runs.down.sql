-- schemaop:no-transaction
DROP INDEX CONCURRENTLY runs_active_idx;
