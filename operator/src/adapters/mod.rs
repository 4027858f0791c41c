//! Other migration tools' own version tables, read as each tool writes them,
//! so that `schemaop exec`, `current --tool` and `wait --tool` can say where
//! an Alembic, Flyway, golang-migrate, sqlx, dbmate or Django project is.
//!
//! Each tool is one row of a small table: its default version table, the one
//! query that reads it, and a plain function that turns the rows into a
//! [`ToolState`]. Nothing here knows Kubernetes. A version table that does
//! not exist means the tool has applied nothing yet.

pub mod alembic;

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, SimpleQueryMessage};

use crate::engine::Result;
use crate::engine::connection::database_error;
use crate::engine::sql::quote_ident;

/// A migration tool whose version table schemaop can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tool {
    Alembic,
    Flyway,
    GolangMigrate,
    Sqlx,
    Dbmate,
    Django,
    /// No version table: `exec` records only the command and its outcome.
    None,
}

impl Tool {
    pub const ALL: [Tool; 7] = [
        Tool::Alembic,
        Tool::Flyway,
        Tool::GolangMigrate,
        Tool::Sqlx,
        Tool::Dbmate,
        Tool::Django,
        Tool::None,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Tool::Alembic => "alembic",
            Tool::Flyway => "flyway",
            Tool::GolangMigrate => "golang-migrate",
            Tool::Sqlx => "sqlx",
            Tool::Dbmate => "dbmate",
            Tool::Django => "django",
            Tool::None => "none",
        }
    }

    /// The table the tool keeps its versions in, unless configured otherwise.
    pub fn default_table(self) -> Option<&'static str> {
        match self {
            Tool::Alembic => Some("alembic_version"),
            Tool::Flyway => Some("flyway_schema_history"),
            Tool::GolangMigrate | Tool::Dbmate => Some("schema_migrations"),
            Tool::Sqlx => Some("_sqlx_migrations"),
            Tool::Django => Some("django_migrations"),
            Tool::None => None,
        }
    }

    /// The query that reads `table`, every column as text.
    fn select_sql(self, table: &VersionTable) -> Option<String> {
        let t = table.quoted();
        Some(match self {
            Tool::Alembic => format!("SELECT version_num FROM {t} ORDER BY version_num"),
            Tool::Flyway => format!(
                "SELECT installed_rank, version, description, type, success FROM {t} \
                 ORDER BY installed_rank"
            ),
            Tool::GolangMigrate => format!("SELECT version, dirty FROM {t}"),
            Tool::Sqlx => {
                format!("SELECT version, description, success FROM {t} ORDER BY version")
            }
            Tool::Dbmate => format!("SELECT version FROM {t}"),
            Tool::Django => format!("SELECT app, name FROM {t} ORDER BY id"),
            Tool::None => return None,
        })
    }
}

impl fmt::Display for Tool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Tool {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.to_ascii_lowercase();
        let found = Tool::ALL.into_iter().find(|t| {
            t.name() == s
                || (*t == Tool::GolangMigrate && matches!(s.as_str(), "migrate" | "golang_migrate"))
        });
        found.ok_or_else(|| {
            let names: Vec<&str> = Tool::ALL.iter().map(|t| t.name()).collect();
            format!("unknown tool {s:?}; use one of {}", names.join(", "))
        })
    }
}

/// A version table, as `--version-table SCHEMA.TABLE` (or `TABLE`, found
/// through the search path as the tool itself finds it) names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionTable {
    pub schema: Option<String>,
    pub table: String,
}

impl VersionTable {
    /// `SCHEMA.TABLE` or `TABLE`; a name with a dot of its own cannot be given.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (schema, table) = match text.split_once('.') {
            Some((schema, table)) => (Some(schema), table),
            None => (None, text),
        };
        let bad = |part: &str| part.is_empty() || part.contains('.');
        if bad(table) || schema.is_some_and(bad) {
            return Err(format!(
                "{text:?} is not a table name; give SCHEMA.TABLE, such as public.alembic_version, \
                 or TABLE"
            ));
        }
        Ok(VersionTable {
            schema: schema.map(str::to_string),
            table: table.to_string(),
        })
    }

    /// The table `tool` uses unless told otherwise; `None` for `none`.
    pub fn for_tool(tool: Tool, given: Option<&VersionTable>) -> Option<VersionTable> {
        given.cloned().or_else(|| {
            tool.default_table().map(|table| VersionTable {
                schema: None,
                table: table.into(),
            })
        })
    }

    fn quoted(&self) -> String {
        match &self.schema {
            Some(schema) => format!("{}.{}", quote_ident(schema), quote_ident(&self.table)),
            None => quote_ident(&self.table),
        }
    }
}

impl fmt::Display for VersionTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.schema {
            Some(schema) => write!(f, "{schema}.{}", self.table),
            None => f.write_str(&self.table),
        }
    }
}

impl FromStr for VersionTable {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        VersionTable::parse(s)
    }
}

/// Where a tool says the database is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ToolState {
    pub tool: Tool,
    /// The version table read, as given or by default; `None` for `none`.
    pub table: Option<String>,
    /// False when the version table does not exist: nothing applied yet.
    pub exists: bool,
    /// The current revision(s): every Alembic head (branches exist), the
    /// latest applied version for the others, and for Django the latest
    /// migration of each app as `app.name`. Empty when nothing is applied.
    pub current: Vec<String>,
    /// Set when the tool itself says a person must act: a dirty
    /// golang-migrate version, a failed Flyway row, a partly applied sqlx
    /// migration. Says what and the next step.
    pub needs_a_person: Option<String>,
}

impl ToolState {
    fn empty(tool: Tool, table: Option<&VersionTable>) -> Self {
        ToolState {
            tool,
            table: table.map(ToString::to_string),
            exists: false,
            current: Vec::new(),
            needs_a_person: None,
        }
    }

    /// The current revision(s) in one word, as `current` prints them:
    /// `base` when nothing is applied.
    pub fn current_text(&self) -> String {
        if self.current.is_empty() {
            "base".into()
        } else {
            self.current.join(" ")
        }
    }
}

/// One row of a version table, as text columns.
pub type Row = Vec<Option<String>>;

/// Reads `tool`'s version table; a missing table (or schema) is a state with
/// nothing applied.
pub async fn read(client: &Client, tool: Tool, table: Option<&VersionTable>) -> Result<ToolState> {
    let Some(table) = VersionTable::for_tool(tool, table) else {
        return Ok(ToolState::empty(tool, None));
    };
    let Some(sql) = tool.select_sql(&table) else {
        return Ok(ToolState::empty(tool, None));
    };
    match client.simple_query(&sql).await {
        Ok(messages) => {
            let rows: Vec<Row> = messages
                .iter()
                .filter_map(|m| match m {
                    SimpleQueryMessage::Row(row) => Some(
                        (0..row.len())
                            .map(|i| row.get(i).map(str::to_string))
                            .collect(),
                    ),
                    _ => None,
                })
                .collect();
            Ok(interpret(tool, &table, &rows))
        }
        Err(e) if matches!(e.code(), Some(c) if *c == SqlState::UNDEFINED_TABLE || *c == SqlState::INVALID_SCHEMA_NAME) => {
            Ok(ToolState::empty(tool, Some(&table)))
        }
        Err(e) if e.code() == Some(&SqlState::UNDEFINED_COLUMN) => Err(database_error(
            &format!(
                "reading {table} as {tool}'s version table (it has other columns: check --tool \
                 and --version-table)"
            ),
            &e,
        )),
        Err(e) => Err(database_error(
            &format!("reading {table}, {tool}'s version table"),
            &e,
        )),
    }
}

/// What `tool`'s version table says, from its rows as [`Tool::select_sql`]
/// returns them.
pub fn interpret(tool: Tool, table: &VersionTable, rows: &[Row]) -> ToolState {
    let mut state = ToolState {
        exists: true,
        ..ToolState::empty(tool, Some(table))
    };
    let col = |row: &Row, i: usize| row.get(i).cloned().flatten();
    match tool {
        Tool::Alembic => {
            state.current = rows.iter().filter_map(|r| col(r, 0)).collect();
        }
        Tool::Flyway => {
            let (current, failed) = flyway(rows);
            state.current = current.into_iter().collect();
            state.needs_a_person = failed.map(|(rank, what)| {
                format!(
                    "Flyway recorded {what} as failed in {table} (installed_rank {rank}); put the \
                     database right by hand, then run `flyway repair` to remove the failed row"
                )
            });
        }
        Tool::GolangMigrate => {
            if let Some(row) = rows.first() {
                let version = col(row, 0).unwrap_or_default();
                if is_true(col(row, 1)) {
                    state.needs_a_person = Some(format!(
                        "golang-migrate marks version {version} dirty in {table}: it failed \
                         halfway; put the database right by hand, then run `migrate force \
                         VERSION` with the version it is now at"
                    ));
                }
                state.current = vec![version];
            }
        }
        Tool::Sqlx => {
            state.current = rows
                .iter()
                .filter(|r| is_true(col(r, 2)))
                .filter_map(|r| col(r, 0))
                .max_by(|a, b| compare_versions(a, b))
                .into_iter()
                .collect();
            if let Some(row) = rows.iter().find(|r| !is_true(col(r, 2))) {
                state.needs_a_person = Some(format!(
                    "sqlx migration {} ({}) is partly applied in {table}; put the database \
                     right by hand, then delete its row from {table}",
                    col(row, 0).unwrap_or_default(),
                    col(row, 1).unwrap_or_default()
                ));
            }
        }
        Tool::Dbmate => {
            state.current = rows
                .iter()
                .filter_map(|r| col(r, 0))
                .max_by(|a, b| compare_versions(a, b))
                .into_iter()
                .collect();
        }
        Tool::Django => {
            // Rows come in the order they were applied: the last of each
            // app is where that app is.
            let mut latest: Vec<(String, String)> = Vec::new();
            for row in rows {
                let (Some(app), Some(name)) = (col(row, 0), col(row, 1)) else {
                    continue;
                };
                match latest.iter_mut().find(|(a, _)| *a == app) {
                    Some(entry) => entry.1 = name,
                    None => latest.push((app, name)),
                }
            }
            latest.sort();
            state.current = latest
                .into_iter()
                .map(|(app, name)| format!("{app}.{name}"))
                .collect();
        }
        Tool::None => {}
    }
    state
}

/// Flyway's current version and its first failed row, from rows of
/// (installed_rank, version, description, type, success) in rank order. A
/// successful undo, or a `DELETE` row written by `flyway repair`, takes its
/// version back off; the schema-creation row is not a version.
fn flyway(rows: &[Row]) -> (Option<String>, Option<(String, String)>) {
    let col = |row: &Row, i: usize| row.get(i).cloned().flatten();
    let mut applied: Vec<String> = Vec::new();
    let mut failed = None;
    for row in rows {
        let rank = col(row, 0).unwrap_or_default();
        let version = col(row, 1);
        let description = col(row, 2).unwrap_or_default();
        let kind = col(row, 3).unwrap_or_default().to_ascii_uppercase();
        if !is_true(col(row, 4)) {
            if failed.is_none() {
                let what = match &version {
                    Some(v) => format!("version {v} ({description})"),
                    None => format!("repeatable migration {description:?}"),
                };
                failed = Some((rank, what));
            }
            continue;
        }
        let Some(version) = version else {
            continue; // a repeatable migration
        };
        if kind == "SCHEMA" {
            continue;
        }
        if kind.starts_with("UNDO") || kind == "DELETE" {
            applied.retain(|v| *v != version);
        } else {
            applied.push(version);
        }
    }
    let current = applied.into_iter().max_by(|a, b| compare_versions(a, b));
    (current, failed)
}

fn is_true(value: Option<String>) -> bool {
    matches!(value.as_deref(), Some("t" | "true" | "1"))
}

/// Orders versions as Flyway, sqlx and dbmate do: part by part, split at `.`
/// and `_`, numerically where both parts are numbers (`1.10` after `1.9`).
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let parts = |s: &'_ str| s.split(['.', '_']).map(str::to_string).collect::<Vec<_>>();
    let (pa, pb) = (parts(a), parts(b));
    for (x, y) in pa.iter().zip(&pb) {
        let order = match (x.parse::<u128>(), y.parse::<u128>()) {
            (Ok(x), Ok(y)) => x.cmp(&y),
            _ => x.cmp(y),
        };
        if order != Ordering::Equal {
            return order;
        }
    }
    pa.len().cmp(&pb.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(data: &[&[Option<&str>]]) -> Vec<Row> {
        data.iter()
            .map(|r| r.iter().map(|c| c.map(str::to_string)).collect())
            .collect()
    }

    fn table(tool: Tool) -> VersionTable {
        VersionTable::for_tool(tool, None).unwrap()
    }

    #[test]
    fn every_tool_but_none_has_its_documented_default_table() {
        assert_eq!(table(Tool::Alembic).to_string(), "alembic_version");
        assert_eq!(table(Tool::Flyway).to_string(), "flyway_schema_history");
        assert_eq!(table(Tool::GolangMigrate).to_string(), "schema_migrations");
        assert_eq!(table(Tool::Sqlx).to_string(), "_sqlx_migrations");
        assert_eq!(table(Tool::Dbmate).to_string(), "schema_migrations");
        assert_eq!(table(Tool::Django).to_string(), "django_migrations");
        assert_eq!(VersionTable::for_tool(Tool::None, None), None);
    }

    #[test]
    fn a_version_table_is_schema_dot_table_or_a_table() {
        let given = VersionTable::parse("app.alembic_version").unwrap();
        assert_eq!(given.schema.as_deref(), Some("app"));
        assert_eq!(given.quoted(), "\"app\".\"alembic_version\"");
        assert_eq!(
            VersionTable::for_tool(Tool::Alembic, Some(&given)),
            Some(given)
        );
        assert_eq!(VersionTable::parse("v").unwrap().schema, None);
        for bad in ["", ".", "a.", ".b", "a.b.c"] {
            assert!(VersionTable::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn tools_are_named_as_their_users_name_them() {
        for tool in Tool::ALL {
            assert_eq!(tool.name().parse::<Tool>(), Ok(tool));
        }
        assert_eq!("migrate".parse::<Tool>(), Ok(Tool::GolangMigrate));
        let err = "liquibase".parse::<Tool>().unwrap_err();
        assert!(err.contains("alembic, flyway"), "{err}");
    }

    #[test]
    fn alembic_reports_every_head() {
        let state = interpret(
            Tool::Alembic,
            &table(Tool::Alembic),
            &rows(&[&[Some("ae10")], &[Some("b7c2")]]),
        );
        assert_eq!(state.current, ["ae10", "b7c2"]);
        assert_eq!(state.current_text(), "ae10 b7c2");
        assert_eq!(state.needs_a_person, None);
        let empty = interpret(Tool::Alembic, &table(Tool::Alembic), &[]);
        assert!(empty.exists && empty.current.is_empty());
        assert_eq!(empty.current_text(), "base");
    }

    #[test]
    fn flyway_is_at_its_highest_successful_version() {
        let history = rows(&[
            &[
                Some("1"),
                Some("1"),
                Some("<< Flyway Baseline >>"),
                Some("BASELINE"),
                Some("t"),
            ],
            &[
                Some("2"),
                Some("1.9"),
                Some("users"),
                Some("SQL"),
                Some("t"),
            ],
            &[
                Some("3"),
                Some("1.10"),
                Some("orders"),
                Some("SQL"),
                Some("t"),
            ],
            &[Some("4"), None, Some("views"), Some("SQL"), Some("t")],
            &[Some("5"), Some("1.11"), Some("bad"), Some("SQL"), Some("t")],
            &[
                Some("6"),
                Some("1.11"),
                Some("bad"),
                Some("UNDO_SQL"),
                Some("t"),
            ],
        ]);
        let state = interpret(Tool::Flyway, &table(Tool::Flyway), &history);
        assert_eq!(state.current, ["1.10"]);
        assert_eq!(state.needs_a_person, None);
    }

    #[test]
    fn a_failed_flyway_row_needs_a_person() {
        let history = rows(&[
            &[Some("1"), Some("1"), Some("init"), Some("SQL"), Some("t")],
            &[
                Some("2"),
                Some("2"),
                Some("add index"),
                Some("SQL"),
                Some("f"),
            ],
        ]);
        let state = interpret(Tool::Flyway, &table(Tool::Flyway), &history);
        assert_eq!(state.current, ["1"]);
        let message = state.needs_a_person.unwrap();
        assert!(message.contains("version 2 (add index)"), "{message}");
        assert!(message.contains("flyway repair"), "{message}");
    }

    #[test]
    fn golang_migrate_has_one_version_and_a_dirty_flag() {
        let clean = interpret(
            Tool::GolangMigrate,
            &table(Tool::GolangMigrate),
            &rows(&[&[Some("20261101090000"), Some("f")]]),
        );
        assert_eq!(clean.current, ["20261101090000"]);
        assert_eq!(clean.needs_a_person, None);
        let dirty = interpret(
            Tool::GolangMigrate,
            &table(Tool::GolangMigrate),
            &rows(&[&[Some("3"), Some("t")]]),
        );
        assert_eq!(dirty.current, ["3"]);
        let message = dirty.needs_a_person.unwrap();
        assert!(message.contains("version 3 dirty"), "{message}");
        assert!(message.contains("migrate force"), "{message}");
    }

    #[test]
    fn sqlx_counts_only_successful_rows_and_flags_the_rest() {
        let state = interpret(
            Tool::Sqlx,
            &table(Tool::Sqlx),
            &rows(&[
                &[Some("20261101"), Some("init"), Some("t")],
                &[Some("20261102"), Some("users"), Some("t")],
                &[Some("20261103"), Some("index"), Some("f")],
            ]),
        );
        assert_eq!(state.current, ["20261102"]);
        let message = state.needs_a_person.unwrap();
        assert!(
            message.contains("20261103 (index) is partly applied"),
            "{message}"
        );
    }

    #[test]
    fn dbmate_is_at_its_highest_version() {
        let state = interpret(
            Tool::Dbmate,
            &table(Tool::Dbmate),
            &rows(&[
                &[Some("20261101090000")],
                &[Some("9")],
                &[Some("20261001090000")],
            ]),
        );
        assert_eq!(state.current, ["20261101090000"]);
    }

    #[test]
    fn django_is_at_the_last_applied_migration_of_each_app() {
        let state = interpret(
            Tool::Django,
            &table(Tool::Django),
            &rows(&[
                &[Some("contenttypes"), Some("0001_initial")],
                &[Some("auth"), Some("0001_initial")],
                &[Some("auth"), Some("0002_alter_permission_name_max_length")],
                &[Some("contenttypes"), Some("0002_remove_content_type_name")],
            ]),
        );
        assert_eq!(
            state.current,
            [
                "auth.0002_alter_permission_name_max_length",
                "contenttypes.0002_remove_content_type_name"
            ]
        );
    }

    #[test]
    fn versions_compare_part_by_part() {
        assert_eq!(compare_versions("1.10", "1.9"), Ordering::Greater);
        assert_eq!(compare_versions("2", "10"), Ordering::Less);
        assert_eq!(compare_versions("1.2", "1.2.1"), Ordering::Less);
        assert_eq!(compare_versions("1_1", "1.1"), Ordering::Equal);
    }
}
