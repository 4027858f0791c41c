//! Other tools' state from the command line: `current --tool T` and
//! `wait --tool T --revision R`, read from the tool's own version table
//! (see [`crate::adapters`]).

use clap::Args;

use super::output::Reporter;
use super::{CliError, GlobalArgs, exit};
use crate::adapters::{self, Tool, VersionTable};
use crate::engine::{MigrationSource, Migrator};

/// Which tool's version table to read, and where it is.
#[derive(Debug, Clone, Args)]
pub struct ToolArgs {
    /// The migration tool whose version table to read: alembic, flyway,
    /// golang-migrate, sqlx, dbmate, django, or none (exec records only the
    /// command and its outcome).
    #[arg(long, value_name = "TOOL", value_parser = |s: &str| s.parse::<Tool>())]
    pub tool: Option<Tool>,

    /// The tool's version table, when not its default (alembic_version,
    /// flyway_schema_history, schema_migrations, _sqlx_migrations,
    /// django_migrations): SCHEMA.TABLE, or TABLE to find it on the search path.
    #[arg(long, value_name = "SCHEMA.TABLE", requires = "tool",
          value_parser = |s: &str| s.parse::<VersionTable>())]
    pub version_table: Option<VersionTable>,
}

impl ToolArgs {
    pub fn table(&self) -> Option<VersionTable> {
        VersionTable::for_tool(self.tool.unwrap_or(Tool::None), self.version_table.as_ref())
    }
}

/// `current --tool T`: the tool's current revision(s), read from its version
/// table. Informational, as `current` is: a dirty or failed state is shown,
/// and does not fail the command.
pub async fn current(
    args: &ToolArgs,
    global: &GlobalArgs,
    reporter: &Reporter,
) -> Result<u8, CliError> {
    let tool = args.tool.unwrap_or(Tool::None);
    let source = MigrationSource::default();
    let migrator = Migrator::new(&source, super::database(global)?, super::options(global));
    let session = migrator.connect().await?;
    let state = adapters::read(&session.client, tool, args.table().as_ref()).await?;
    reporter.tool_current(&state);
    Ok(exit::OK)
}
