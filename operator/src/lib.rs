//! schemaop: PostgreSQL schema migrations, from a laptop or as a Kubernetes operator.
//!
//! - [`engine`] loads, plans and applies migrations; it knows nothing of Kubernetes.
//! - [`adapters`] reads other migration tools' version tables (Alembic,
//!   Flyway, golang-migrate, sqlx, dbmate, Django); no Kubernetes either.
//! - [`cli`] is the `schemaop` command line.
//! - [`crd`] is the `SchemaMigration` custom resource.
//! - [`controller`] reconciles SchemaMigrations by driving the engine.
//! - [`gates`] holds pods' readiness until their schema is there.
//! - [`operator`] is the `schemaop run` process: [`leader`] election, the
//!   controller, and the [`server`] for probes and metrics; [`telemetry`] sets up logs.

pub mod adapters;
pub mod cli;
pub mod controller;
pub mod crd;
pub mod duration;
pub mod engine;
pub mod gates;
pub mod leader;
pub mod operator;
pub mod server;
pub mod telemetry;
