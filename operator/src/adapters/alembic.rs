//! Alembic's revision graph, learnt from Alembic itself: `alembic history
//! --verbose` run as the project runs Alembic, never by reading its Python.
//! With the graph, "revision R is reached" means R is a current head or an
//! ancestor of one; without it, only a current head is known to be reached.
//!
//! The graph is kept in `SCHEMA.TABLE_graph` beside schemaop's history (the
//! same length as `TABLE_audit`, so the 57-byte limit on TABLE covers it),
//! one row per revision, keyed by the version table it belongs to.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use tokio_postgres::{Client, SimpleQueryMessage, error::SqlState};

use crate::engine::HistoryTable;
use crate::engine::connection::database_error;
use crate::engine::sql::{quote_ident, quote_literal};

/// One revision and what it comes after.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Revision {
    pub revision: String,
    /// Its parents: none for a base, two or more for a merge point.
    pub down_revisions: Vec<String>,
    /// `depends_on`: revisions (or branch labels) Alembic applies first.
    pub depends_on: Vec<String>,
}

/// Parses `alembic history --verbose`. Only lines at the start of a line
/// count: each revision's docstring follows indented, and may say anything.
pub fn parse_history(text: &str) -> Result<Vec<Revision>, String> {
    let mut graph: Vec<Revision> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("Rev: ") {
            let revision = rest.split_whitespace().next().unwrap_or("").to_string();
            if revision.is_empty() {
                return Err(format!("a `Rev:` line names no revision: {line:?}"));
            }
            graph.push(Revision {
                revision,
                down_revisions: Vec::new(),
                depends_on: Vec::new(),
            });
            continue;
        }
        let Some(current) = graph.last_mut() else {
            continue;
        };
        if let Some(parents) = line
            .strip_prefix("Parent: ")
            .or_else(|| line.strip_prefix("Merges: "))
        {
            current.down_revisions = comma_list(parents);
        } else if let Some(depends) = line.strip_prefix("Also depends on: ") {
            current.depends_on = comma_list(depends);
        }
    }
    if graph.is_empty() && !text.trim().is_empty() {
        return Err("it printed no `Rev:` line; is this Alembic's `history --verbose`?".into());
    }
    Ok(graph)
}

fn comma_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty() && *r != "<base>")
        .map(str::to_string)
        .collect()
}

/// Whether a revision is reached, given the current heads and the graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reached {
    /// A head, or an ancestor of one.
    Yes,
    /// Not yet: in the graph, but neither a head nor below one.
    No,
    /// The graph does not know the revision (or there is no graph), and it
    /// is not a head: only a later head can say.
    Unknown,
}

/// Is `revision` (or the one revision it is a prefix of, as Alembic takes
/// prefixes) a current head or an ancestor of one?
pub fn reached(graph: &[Revision], heads: &[String], revision: &str) -> Reached {
    let revision = resolve(graph, revision).unwrap_or(revision);
    if heads.iter().any(|h| h == revision) {
        return Reached::Yes;
    }
    let by_name: HashMap<&str, &Revision> =
        graph.iter().map(|r| (r.revision.as_str(), r)).collect();
    if !by_name.contains_key(revision) {
        return Reached::Unknown;
    }
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    let mut stack: Vec<&str> = heads.iter().map(String::as_str).collect();
    while let Some(name) = stack.pop() {
        if name == revision {
            return Reached::Yes;
        }
        if !seen.insert(name) {
            continue;
        }
        if let Some(node) = by_name.get(name) {
            stack.extend(node.down_revisions.iter().map(String::as_str));
            stack.extend(node.depends_on.iter().map(String::as_str));
        }
    }
    Reached::No
}

/// Every revision reached: the current heads and all their ancestors, in
/// order; the heads alone when the graph is unknown.
pub fn reached_revisions(graph: &[Revision], heads: &[String]) -> Vec<String> {
    let by_name: HashMap<&str, &Revision> =
        graph.iter().map(|r| (r.revision.as_str(), r)).collect();
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    let mut stack: Vec<&str> = heads.iter().map(String::as_str).collect();
    while let Some(name) = stack.pop() {
        if !seen.insert(name) {
            continue;
        }
        if let Some(node) = by_name.get(name) {
            stack.extend(node.down_revisions.iter().map(String::as_str));
            stack.extend(node.depends_on.iter().map(String::as_str));
        }
    }
    seen.into_iter().map(str::to_string).collect()
}

/// The graph recorded for the version table `table` (`SCHEMA.TABLE`) beside
/// `history`; empty when none was ever recorded.
pub async fn read_graph(
    client: &Client,
    history: &HistoryTable,
    table: &str,
) -> crate::engine::Result<Vec<Revision>> {
    let sql = GraphTable::new(history).select_sql(table);
    match client.simple_query(&sql).await {
        Ok(messages) => Ok(messages
            .iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(row) => {
                    let columns: Vec<Option<&str>> = (0..row.len()).map(|i| row.get(i)).collect();
                    GraphTable::parse_row(&columns)
                }
                _ => None,
            })
            .collect()),
        Err(e) if e.code() == Some(&SqlState::UNDEFINED_TABLE) => Ok(Vec::new()),
        Err(e) => Err(database_error("reading Alembic's revision graph", &e)),
    }
}

/// The one revision of the graph that `prefix` names, as Alembic accepts
/// a unique prefix; `None` when none or several do.
fn resolve<'g>(graph: &'g [Revision], prefix: &str) -> Option<&'g str> {
    if let Some(exact) = graph.iter().find(|r| r.revision == prefix) {
        return Some(&exact.revision);
    }
    let mut matches = graph.iter().filter(|r| r.revision.starts_with(prefix));
    match (matches.next(), matches.next()) {
        (Some(one), None) => Some(&one.revision),
        _ => None,
    }
}

/// The command that prints the graph, from the command that ran Alembic:
/// the same program and Alembic's own options (`-c`, `-n`, `-x`), so the
/// same configuration is read. `uv run alembic -c app.ini upgrade head`
/// gives `uv run alembic -c app.ini history --verbose`. `None` when the
/// command does not run Alembic by name (`alembic` or `python -m alembic`).
pub fn history_command(command: &[String]) -> Option<Vec<String>> {
    let is_alembic = |arg: &String| {
        Path::new(arg)
            .file_name()
            .is_some_and(|name| name == "alembic")
    };
    let at = command.iter().enumerate().position(|(i, arg)| {
        is_alembic(arg) || (arg == "alembic" && i > 0 && command[i - 1] == "-m")
    })?;
    let mut out: Vec<String> = command[..=at].to_vec();
    let mut rest = command[at + 1..].iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "-c" | "--config" | "-n" | "--name" | "-x" => {
                out.push(arg.clone());
                out.push(rest.next()?.clone());
            }
            _ if arg.starts_with("--config=") || arg.starts_with("--name=") => {
                out.push(arg.clone())
            }
            "--raiseerr" | "-q" | "--quiet" => out.push(arg.clone()),
            _ if arg.starts_with('-') => {}
            // The first word that is not an option is Alembic's command.
            _ => break,
        }
    }
    out.push("history".into());
    out.push("--verbose".into());
    Some(out)
}

/// Where the graph is kept: beside the history, as `TABLE_graph`.
pub struct GraphTable {
    qualified: String,
}

impl GraphTable {
    pub fn new(history: &HistoryTable) -> Self {
        GraphTable {
            qualified: format!(
                "{}.{}",
                quote_ident(&history.schema),
                quote_ident(&format!("{}_graph", history.table))
            ),
        }
    }

    /// Replaces the graph of `version_table` in one transaction, creating
    /// the table on first use. Run under the migration lock.
    pub fn store_script(&self, version_table: &str, graph: &[Revision]) -> String {
        let t = &self.qualified;
        let array = |items: &[String]| {
            let items: Vec<String> = items.iter().map(|i| quote_literal(i)).collect();
            format!("ARRAY[{}]::text[]", items.join(", "))
        };
        let mut script = format!(
            "BEGIN;\n\
             CREATE TABLE IF NOT EXISTS {t} (\n  \
               version_table text NOT NULL,\n  \
               revision text NOT NULL,\n  \
               down_revisions text[] NOT NULL,\n  \
               depends_on text[] NOT NULL,\n  \
               recorded_at timestamptz NOT NULL DEFAULT now(),\n  \
               PRIMARY KEY (version_table, revision)\n\
             );\n\
             DELETE FROM {t} WHERE version_table = {vt};\n",
            vt = quote_literal(version_table),
        );
        if !graph.is_empty() {
            let rows: Vec<String> = graph
                .iter()
                .map(|r| {
                    format!(
                        "({}, {}, {}, {})",
                        quote_literal(version_table),
                        quote_literal(&r.revision),
                        array(&r.down_revisions),
                        array(&r.depends_on)
                    )
                })
                .collect();
            script.push_str(&format!(
                "INSERT INTO {t} (version_table, revision, down_revisions, depends_on) VALUES\n{};\n",
                rows.join(",\n")
            ));
        }
        script.push_str("COMMIT;\n");
        script
    }

    /// Reads the graph of `version_table`; arrays come back as
    /// comma-separated text.
    pub fn select_sql(&self, version_table: &str) -> String {
        format!(
            "SELECT revision, array_to_string(down_revisions, ','), array_to_string(depends_on, ',') \
             FROM {} WHERE version_table = {} ORDER BY revision",
            self.qualified,
            quote_literal(version_table)
        )
    }

    /// One row of [`Self::select_sql`].
    pub fn parse_row(columns: &[Option<&str>]) -> Option<Revision> {
        let list = |c: Option<&str>| -> Vec<String> {
            c.unwrap_or("")
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        };
        Some(Revision {
            revision: (*columns.first()?)?.to_string(),
            down_revisions: list(*columns.get(1)?),
            depends_on: list(*columns.get(2)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `alembic history --verbose` of a project with a branch and its merge,
    /// as Alembic 1.20 prints it.
    const HISTORY: &str = "\
Rev: d4 (head) (mergepoint)
Merges: b2, c3
Path: /app/migrations/versions/d4_merge.py

    merge heads

    Revision ID: d4
    Revises: b2, c3
    Rev: not-a-revision

Rev: c3
Parent: a1
Also depends on: x9
Path: /app/migrations/versions/c3_billing.py

    billing

Rev: b2
Parent: a1
Path: /app/migrations/versions/b2_users.py

    users

Rev: a1 (branchpoint)
Parent: <base>
Branches into: b2, c3
Path: /app/migrations/versions/a1_init.py

    init
";

    fn heads(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn reads_parents_merges_and_dependencies_but_not_docstrings() {
        let graph = parse_history(HISTORY).unwrap();
        let names: Vec<&str> = graph.iter().map(|r| r.revision.as_str()).collect();
        assert_eq!(names, ["d4", "c3", "b2", "a1"]);
        assert_eq!(graph[0].down_revisions, ["b2", "c3"]);
        assert_eq!(graph[1].depends_on, ["x9"]);
        assert!(graph[3].down_revisions.is_empty());
        assert!(parse_history("").unwrap().is_empty());
        assert!(parse_history("usage: alembic ...").is_err());
    }

    #[test]
    fn a_head_and_its_ancestors_are_reached() {
        let graph = parse_history(HISTORY).unwrap();
        let at_b2 = heads(&["b2"]);
        assert_eq!(reached(&graph, &at_b2, "b2"), Reached::Yes);
        assert_eq!(reached(&graph, &at_b2, "a1"), Reached::Yes);
        assert_eq!(reached(&graph, &at_b2, "c3"), Reached::No);
        assert_eq!(reached(&graph, &at_b2, "d4"), Reached::No);
        // Both branches applied, not merged yet: two heads.
        assert_eq!(reached(&graph, &heads(&["b2", "c3"]), "c3"), Reached::Yes);
        assert_eq!(reached(&graph, &heads(&["d4"]), "a1"), Reached::Yes);
        assert_eq!(reached(&graph, &heads(&["d4"]), "zz"), Reached::Unknown);
        assert_eq!(reached(&graph, &[], "a1"), Reached::No);
    }

    #[test]
    fn without_a_graph_only_a_head_is_known_to_be_reached() {
        assert_eq!(reached(&[], &heads(&["b2"]), "b2"), Reached::Yes);
        assert_eq!(reached(&[], &heads(&["b2"]), "a1"), Reached::Unknown);
    }

    #[test]
    fn a_unique_prefix_names_a_revision_as_alembic_allows() {
        let graph = vec![Revision {
            revision: "ae1027a6acf".into(),
            down_revisions: vec![],
            depends_on: vec![],
        }];
        assert_eq!(
            reached(&graph, &heads(&["ae1027a6acf"]), "ae10"),
            Reached::Yes
        );
    }

    #[test]
    fn the_history_command_keeps_the_program_and_alembics_options() {
        let argv = |s: &str| s.split(' ').map(str::to_string).collect::<Vec<_>>();
        assert_eq!(
            history_command(&argv("alembic upgrade head")),
            Some(argv("alembic history --verbose"))
        );
        assert_eq!(
            history_command(&argv("uv run alembic -c app.ini -x tenant=a upgrade head")),
            Some(argv(
                "uv run alembic -c app.ini -x tenant=a history --verbose"
            ))
        );
        assert_eq!(
            history_command(&argv("/venv/bin/alembic --raiseerr upgrade +1")),
            Some(argv("/venv/bin/alembic --raiseerr history --verbose"))
        );
        assert_eq!(
            history_command(&argv("python -m alembic upgrade head")),
            Some(argv("python -m alembic history --verbose"))
        );
        assert_eq!(history_command(&argv("make migrate")), None);
    }

    #[test]
    fn the_stored_graph_reads_back() {
        let table = GraphTable::new(&HistoryTable::default());
        let graph = parse_history(HISTORY).unwrap();
        let script = table.store_script("alembic_version", &graph);
        assert!(
            script.contains("\"public\".\"schemaop_migrations_graph\""),
            "{script}"
        );
        assert!(script.contains("ARRAY['b2', 'c3']::text[]"), "{script}");
        let row = GraphTable::parse_row(&[Some("d4"), Some("b2,c3"), Some("")]).unwrap();
        assert_eq!(
            row,
            Revision {
                depends_on: vec![],
                ..graph[0].clone()
            }
        );
    }
}
