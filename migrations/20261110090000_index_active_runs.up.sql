-- schemaop:no-transaction
-- The scheduler polls for active runs on a busy table; build the index
-- without blocking writes. CONCURRENTLY cannot run inside a transaction.
CREATE INDEX CONCURRENTLY runs_active_idx ON runs (status, queued_at)
    WHERE status IN ('queued', 'running');
