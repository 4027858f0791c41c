//! Other tools' state from the command line: `current --tool T` and
//! `wait --tool T --revision R`, read from the tool's own version table
//! (see [`crate::adapters`]).

use std::cmp::Ordering;

use clap::Args;
use serde_json::json;

use super::output::Reporter;
use super::wait::{POLL_INTERVAL, Progress, WaitArgs, within};
use super::{CliError, GlobalArgs, exit};
use crate::adapters::alembic::{self, Reached, Revision};
use crate::adapters::{self, Tool, ToolState, VersionTable, compare_versions};
use crate::duration::format_duration;
use crate::engine::connection::{Session, database_error};
use crate::engine::history::ExecRecord;
use crate::engine::{Error, MigrationSource, Migrator};

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
    let database = super::database(global)?;
    reporter.set_database(&database);
    let migrator = Migrator::new(&source, database, super::options(global));
    let session = migrator.connect().await?;
    let state = adapters::read(&session.client, tool, args.table().as_ref()).await?;
    reporter.tool_current(&state);
    Ok(exit::OK)
}

// --- wait --tool ----------------------------------------------------------

/// What one reading of the tool's table says to someone waiting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolVerdict {
    Reached,
    /// The tool says a person must act: a dirty or failed state.
    Stalled(String),
    /// Not there yet: what was seen, and why it does not count yet.
    Waiting(String),
}

/// Judges a tool's state against `revision`. For Alembic, reached means a
/// current head or an ancestor of one in `graph` (the graph Alembic printed
/// at the last successful `exec`); with no graph, only a current head
/// counts. For Django, the latest migration of an app (`app.name`). For
/// the others, a current version at or above `revision`, in the tool's order.
pub fn judge_tool(state: &ToolState, graph: &[Revision], revision: &str) -> ToolVerdict {
    if let Some(problem) = &state.needs_a_person {
        return ToolVerdict::Stalled(problem.clone());
    }
    let at = match state.tool {
        Tool::Alembic => format!("heads {}", state.current_text()),
        Tool::Django => format!("latest {}", state.current_text()),
        _ => format!("at {}", state.current_text()),
    };
    let at = if state.exists {
        at
    } else {
        format!(
            "{at} (no {} table yet)",
            state.table.as_deref().unwrap_or("version")
        )
    };
    match state.tool {
        Tool::Alembic => match alembic::reached(graph, &state.current, revision) {
            Reached::Yes => ToolVerdict::Reached,
            Reached::No => ToolVerdict::Waiting(format!(
                "{at}; {revision} is neither a head nor an ancestor of one"
            )),
            Reached::Unknown if graph.is_empty() => ToolVerdict::Waiting(format!(
                "{at}; schemaop has no record of Alembic's revision graph (a successful \
                 `schemaop exec --tool alembic -- alembic ...` records it), so only {revision} \
                 as a current head counts"
            )),
            Reached::Unknown => ToolVerdict::Waiting(format!(
                "{at}; {revision} is not in the revision graph recorded at the last exec, so \
                 only {revision} as a current head counts"
            )),
        },
        Tool::Django => {
            if state.current.iter().any(|c| c == revision) {
                ToolVerdict::Reached
            } else {
                ToolVerdict::Waiting(format!(
                    "{at}; only an app's latest migration (app.name) counts"
                ))
            }
        }
        _ => match state.current.first() {
            Some(current) if compare_versions(current, revision) != Ordering::Less => {
                ToolVerdict::Reached
            }
            _ => ToolVerdict::Waiting(at),
        },
    }
}

/// `history --tool T`: every `schemaop exec` of the tool, oldest first, as
/// the audit log recorded it. A database where exec never ran has none.
pub async fn history(tool: Tool, global: &GlobalArgs, reporter: &Reporter) -> Result<u8, CliError> {
    let source = MigrationSource::default();
    let database = super::database(global)?;
    reporter.set_database(&database);
    let migrator = Migrator::new(&source, database, super::options(global));
    let session = migrator.connect().await?;
    let sql = migrator.options().history.select_exec_sql(tool.name());
    let records = match session.client.simple_query(&sql).await {
        Ok(messages) => messages
            .iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(row) => {
                    let columns: Vec<Option<&str>> = (0..row.len()).map(|i| row.get(i)).collect();
                    ExecRecord::parse_row(&columns)
                }
                _ => None,
            })
            .collect(),
        // No audit log yet, or one from before exec: nothing was run.
        Err(e)
            if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE)
                || e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_COLUMN) =>
        {
            Vec::new()
        }
        Err(e) => return Err(database_error("reading the audit log", &e).into()),
    };
    reporter.exec_history(tool, &records);
    Ok(exit::OK)
}

/// `wait --tool T --revision R` in database mode: polls the tool's version
/// table until R is reached, a person must act (exit 4 at once), or the
/// timeout passes (exit 7).
pub async fn wait(
    args: &WaitArgs,
    global: &GlobalArgs,
    reporter: &Reporter,
) -> Result<u8, CliError> {
    let tool = args.tool.tool.unwrap_or(Tool::None);
    if tool == Tool::None {
        return Err(CliError::Usage(
            "--tool none keeps no version table to wait on; name the tool that migrates the \
             database, such as --tool alembic"
                .into(),
        ));
    }
    let Some(revision) = args.revision.clone() else {
        return Err(CliError::Usage(format!(
            "say which {tool} revision to wait for with --revision"
        )));
    };
    let table = args.tool.table();
    let source = MigrationSource::default();
    let database = super::database(global)?;
    reporter.set_database(&database);
    let migrator = Migrator::new(&source, database, super::options(global));
    let mut seen: Option<Result<String, Error>> = None;
    let mut progress = Progress::new();
    let polled = within(args.timeout, async {
        let mut session = None;
        loop {
            let reading = read_tool(&migrator, &mut session, tool, table.as_ref()).await;
            let now = match reading {
                Ok((state, graph)) => match judge_tool(&state, &graph, &revision) {
                    ToolVerdict::Reached => return Ok(state),
                    ToolVerdict::Stalled(problem) => return Err(problem),
                    ToolVerdict::Waiting(text) => Ok(text),
                },
                Err(error) => Err(error),
            };
            let line = match &now {
                Ok(text) => text.clone(),
                Err(error) => error.to_string(),
            };
            progress.report(&format!("waiting for {tool} revision {revision}: {line}"));
            seen = Some(now);
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    })
    .await;
    let database = migrator.database().redacted();
    let (code, reason, message) = match polled {
        Some(Ok(state)) => {
            match reporter.is_json() {
                true => reporter
                    .json(json!({ "tool": tool, "revision": revision, "current": state.current })),
                false => println!(
                    "{database}: {tool} has reached {revision} (at {})",
                    state.current_text()
                ),
            }
            return Ok(exit::OK);
        }
        Some(Err(problem)) => (exit::REFUSED, "Stalled", problem),
        None => {
            let waited = format!(
                "timed out after {} waiting for {tool} revision {revision}",
                format_duration(args.timeout)
            );
            match seen {
                Some(Ok(text)) => (
                    exit::TIMEOUT,
                    "Timeout",
                    format!("{waited}: {database} {text}"),
                ),
                Some(Err(error)) => (
                    super::exit_code(&error),
                    error.reason(),
                    format!("{waited}: {error}"),
                ),
                None => (
                    exit::UNREACHABLE,
                    "DatabaseUnreachable",
                    format!("{waited}: no answer from {database}"),
                ),
            }
        }
    };
    reporter.failure(reason, &message, code);
    Ok(code)
}

/// The tool's state and, for Alembic, the graph schemaop recorded, on the
/// open session or a new one; the session is kept only after a good reading.
async fn read_tool(
    migrator: &Migrator<'_>,
    session: &mut Option<Session>,
    tool: Tool,
    table: Option<&VersionTable>,
) -> Result<(ToolState, Vec<Revision>), Error> {
    let open = match session.take() {
        Some(open) => open,
        None => migrator.connect().await?,
    };
    let state = adapters::read(&open.client, tool, table).await?;
    let graph = match (tool, table) {
        (Tool::Alembic, Some(table)) => {
            alembic::read_graph(
                &open.client,
                &migrator.options().history,
                &table.to_string(),
            )
            .await?
        }
        _ => Vec::new(),
    };
    *session = Some(open);
    Ok((state, graph))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(tool: Tool, current: &[&str]) -> ToolState {
        ToolState {
            tool,
            table: tool.default_table().map(str::to_string),
            exists: true,
            current: current.iter().map(|s| s.to_string()).collect(),
            needs_a_person: None,
        }
    }

    fn linear() -> Vec<Revision> {
        ["a1", "b2", "c3"]
            .windows(2)
            .map(|w| Revision {
                revision: w[1].into(),
                down_revisions: vec![w[0].into()],
                depends_on: vec![],
            })
            .chain([Revision {
                revision: "a1".into(),
                down_revisions: vec![],
                depends_on: vec![],
            }])
            .collect()
    }

    #[test]
    fn alembic_is_reached_at_a_head_or_an_ancestor() {
        let at_b2 = state(Tool::Alembic, &["b2"]);
        assert_eq!(judge_tool(&at_b2, &linear(), "b2"), ToolVerdict::Reached);
        assert_eq!(judge_tool(&at_b2, &linear(), "a1"), ToolVerdict::Reached);
        let ToolVerdict::Waiting(text) = judge_tool(&at_b2, &linear(), "c3") else {
            panic!("c3 is above b2");
        };
        assert!(text.contains("heads b2; c3 is neither"), "{text}");
    }

    #[test]
    fn without_a_graph_alembic_waits_for_a_head_and_says_why() {
        let at_b2 = state(Tool::Alembic, &["b2"]);
        assert_eq!(judge_tool(&at_b2, &[], "b2"), ToolVerdict::Reached);
        let ToolVerdict::Waiting(text) = judge_tool(&at_b2, &[], "a1") else {
            panic!("without a graph a1 is not known to be below b2");
        };
        assert!(
            text.contains("no record of Alembic's revision graph"),
            "{text}"
        );
    }

    #[test]
    fn a_dirty_or_failed_state_stalls_at_once() {
        let mut dirty = state(Tool::GolangMigrate, &["4"]);
        dirty.needs_a_person = Some("dirty".into());
        assert_eq!(
            judge_tool(&dirty, &[], "3"),
            ToolVerdict::Stalled("dirty".into())
        );
    }

    #[test]
    fn versioned_tools_are_reached_at_or_above_the_revision() {
        let flyway = state(Tool::Flyway, &["1.10"]);
        assert_eq!(judge_tool(&flyway, &[], "1.9"), ToolVerdict::Reached);
        assert_eq!(judge_tool(&flyway, &[], "1.10"), ToolVerdict::Reached);
        assert!(matches!(
            judge_tool(&flyway, &[], "1.11"),
            ToolVerdict::Waiting(_)
        ));
        let nothing = ToolState {
            exists: false,
            ..state(Tool::Sqlx, &[])
        };
        let ToolVerdict::Waiting(text) = judge_tool(&nothing, &[], "1") else {
            panic!("nothing applied");
        };
        assert!(text.contains("no _sqlx_migrations table yet"), "{text}");
    }
}
