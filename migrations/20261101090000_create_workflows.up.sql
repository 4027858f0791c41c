-- Workflows: a named, versioned pipeline definition owned by a tenant.
CREATE TABLE workflows (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant      text        NOT NULL,
    name        text        NOT NULL,
    definition  jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT workflows_tenant_name_key UNIQUE (tenant, name)
);

COMMENT ON TABLE workflows IS 'Pipeline definitions; one row per workflow and tenant.';
