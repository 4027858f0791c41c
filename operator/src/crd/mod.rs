//! The `SchemaMigration` custom resource.
