-- Connectors: credentials-free descriptions of the systems a workflow talks to.
CREATE TYPE connector_kind AS ENUM ('http', 'postgres', 's3', 'kafka');

CREATE TABLE connectors (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant      text           NOT NULL,
    kind        connector_kind NOT NULL,
    name        text           NOT NULL,
    settings    jsonb          NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz    NOT NULL DEFAULT now(),
    CONSTRAINT connectors_tenant_name_key UNIQUE (tenant, name)
);

-- Which connectors each workflow uses.
CREATE TABLE workflow_connectors (
    workflow_id  bigint NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    connector_id bigint NOT NULL REFERENCES connectors (id) ON DELETE RESTRICT,
    PRIMARY KEY (workflow_id, connector_id)
);

CREATE INDEX workflow_connectors_connector_idx ON workflow_connectors (connector_id);
