//! schemaop: PostgreSQL schema migrations, from a laptop or as a Kubernetes operator.
//!
//! - [`engine`] loads, plans and applies migrations; it knows nothing of Kubernetes.
//! - [`cli`] is the `schemaop` command line.
//! - [`crd`] is the `SchemaMigration` custom resource.

pub mod cli;
pub mod crd;
pub mod duration;
pub mod engine;
