-- The run log: every execution of a workflow and its outcome.
CREATE TYPE run_status AS ENUM ('queued', 'running', 'succeeded', 'failed', 'cancelled');

CREATE TABLE runs (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workflow_id  bigint      NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    status       run_status  NOT NULL DEFAULT 'queued',
    queued_at    timestamptz NOT NULL DEFAULT now(),
    started_at   timestamptz,
    finished_at  timestamptz,
    CONSTRAINT runs_finished_after_started CHECK (finished_at IS NULL OR finished_at >= started_at)
);

CREATE TABLE run_events (
    run_id   bigint      NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq      integer     NOT NULL,
    at       timestamptz NOT NULL DEFAULT now(),
    level    text        NOT NULL CHECK (level IN ('debug', 'info', 'warn', 'error')),
    message  text        NOT NULL,
    PRIMARY KEY (run_id, seq)
);

CREATE INDEX runs_workflow_queued_idx ON runs (workflow_id, queued_at DESC);
