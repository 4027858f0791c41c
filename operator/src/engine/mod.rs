//! The migration engine: loads migrations, plans, and applies them to
//! PostgreSQL. It knows nothing of Kubernetes; the CLI and the operator both
//! drive it.

pub mod blockers;
pub mod connection;
mod database_url;
pub mod error;
pub mod history;
pub mod libpq_env;
pub mod lock;
pub mod migration;
pub mod migrator;
pub mod plan;
pub mod redact;
pub mod script_check;
pub mod source;
pub mod sql;
pub mod status;
pub mod step_sql;
pub mod tls;
pub mod watchdog;

pub use connection::{Database, SessionSettings};
pub use error::{Error, Result};
pub use history::{History, HistoryTable, RecordState};
pub use migration::{Checksum, Migration, Script, Version};
pub use migrator::{Event, Migrator, MigratorOptions, Repair, RunReport};
pub use plan::{Direction, Plan, PlanOptions, Step, Target};
pub use source::MigrationSource;
pub use watchdog::Liveness;
