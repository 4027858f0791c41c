DROP TABLE workflow_connectors;
DROP TABLE connectors;
DROP TYPE connector_kind;
