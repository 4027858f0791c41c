//! The SQL of each step: what a run sends, and what `plan --sql` prints for
//! a person to review or run with psql, from a live database's history or,
//! offline, from a version the database is assumed to be at.

use super::error::Result;
use super::history::{
    AppliedMigration, AuditAction, AuditEntry, Elapsed, History, HistoryTable, RecordState,
};
use super::migration::{Migration, Script};
use super::plan::{self, Plan, PlanOptions, Step, Target};
use super::source::MigrationSource;
use super::sql;

pub(super) const TX_PREFIX: &str = "BEGIN;\n";

/// Starts each step from the session settings the connection was opened
/// with (its startup options), whatever an earlier migration `SET`: sent in
/// the step's own round trip. Before `BEGIN`, in the same query string, it
/// still belongs to the step's transaction, and runs again on each attempt.
const RESET_SESSION: &str = "RESET lock_timeout;\nRESET statement_timeout;\n";

/// Every transactional step but a run's last commits without waiting for
/// its WAL to reach disk: on most disks that wait is the largest cost of a
/// small migration. Each migration stays atomic with its history rows, and
/// the last commit waits for all the WAL before it, so a run is durable when
/// it reports success. Only a crash of the server itself, within a fraction
/// of a second of a commit, can undo such a migration, and then its history
/// row goes with it: the next run applies it again.
const ASYNC_COMMIT: &str = "SET LOCAL synchronous_commit = off;\n";

/// The text sent for one step. Built once, used to run it and to print it.
pub(super) enum StepScript<'m> {
    /// One round trip: `BEGIN`, the migration, its history rows, `COMMIT`.
    Transactional {
        text: String,
        /// Characters before the migration's SQL, to map error positions.
        prefix_chars: usize,
        script: &'m Script,
    },
    /// Recorded as started, then each statement on its own; see [`StepSql::finish`].
    NoTransaction { before: String, script: &'m Script },
}

/// Writes steps' SQL against one history table, as one actor.
pub struct StepSql<'a> {
    pub table: &'a HistoryTable,
    pub actor: &'a str,
}

impl<'a> StepSql<'a> {
    /// `last` marks the run's last step, whose commit waits for the WAL
    /// flush; see [`ASYNC_COMMIT`].
    pub(super) fn script<'m>(&self, step: Step<'m>, last: bool) -> StepScript<'m> {
        let (table, actor) = (self.table, self.actor);
        let m = step.migration();
        let script = script_of(step);
        if script.transactional {
            // The newline before `;` ends a trailing `--` comment in the file.
            let text = format!(
                "{RESET_SESSION}{TX_PREFIX}{}\n;\n{}",
                script.sql,
                self.transactional_end(step, last)
            );
            StepScript::Transactional {
                text,
                prefix_chars: RESET_SESSION.chars().count() + TX_PREFIX.chars().count(),
                script,
            }
        } else {
            let before = RESET_SESSION.to_string()
                + &match step {
                    Step::Apply(_) => table.insert_started(m, actor),
                    Step::Revert(_) => {
                        table.set_state(m.version, RecordState::Reverting, None, None)
                    }
                };
            StepScript::NoTransaction { before, script }
        }
    }

    /// A transactional step's history rows and its `COMMIT`.
    fn transactional_end(&self, step: Step<'_>, last: bool) -> String {
        let m = step.migration();
        let record = match step {
            Step::Apply(_) => self.table.insert_applied_audited(m, self.actor),
            Step::Revert(_) => {
                self.table.delete(m.version)
                    + &self.table.insert_audit(&success(
                        self.actor,
                        AuditAction::Down,
                        m,
                        Elapsed::InTransaction,
                    ))
            }
        };
        let commit = if last { "" } else { ASYNC_COMMIT };
        format!("{record}{commit}COMMIT;\n")
    }

    /// Ends a no-transaction step: its record and audit entry, in one round trip.
    pub fn finish(&self, step: Step<'_>, elapsed: Elapsed) -> String {
        let m = step.migration();
        let (record, action) = match step {
            Step::Apply(_) => (
                self.table
                    .set_state(m.version, RecordState::Applied, Some(elapsed), None),
                AuditAction::Up,
            ),
            Step::Revert(_) => (self.table.delete(m.version), AuditAction::Down),
        };
        record
            + &self
                .table
                .insert_audit(&success(self.actor, action, m, elapsed))
    }

    /// The whole of a plan as a script for people: each statement on its
    /// own line with its `;`, history writes included. A run sends the same
    /// statements; only the clock of a no-transaction step differs, which a
    /// run measures itself and a script run by hand asks the server for.
    pub fn printed(
        &self,
        plan: &Plan<'_>,
        lock: Option<i64>,
        create_tables: Option<bool>,
    ) -> String {
        let mut out = String::new();
        if plan.is_up_to_date() {
            return out;
        }
        match lock {
            Some(key) => out.push_str(&format!(
                "-- Taken first, on the run's own connection: SELECT pg_try_advisory_lock({key});\n"
            )),
            None => out.push_str(
                "-- A run first takes schemaop's migration lock, whose key depends on the \
                 database's name;\n-- give --database-url (nothing connects) to see it.\n",
            ),
        }
        if let Some(create_schema) = create_tables {
            out.push_str("-- Creates the history tables.\n");
            out.push_str(&self.table.create_script(create_schema));
        }
        for (i, step) in plan.steps.iter().enumerate() {
            let m = step.migration();
            let kind = if step.is_revert() { "revert" } else { "apply" };
            out.push_str(&format!(
                "\n-- {}/{}: {kind} {m}\n",
                i + 1,
                plan.steps.len()
            ));
            // Printing its history writes would let a script run by hand
            // record a migration that has no SQL yet as applied.
            if let Some(error) = plan::empty_step(&Plan {
                steps: vec![*step],
                ..plan.clone()
            }) {
                out.push_str(&format!("-- Not printed: {error}\n"));
                continue;
            }
            let script = script_of(*step);
            let statements = sql::split_statements(&script.sql);
            out.push_str(RESET_SESSION);
            if script.transactional {
                out.push_str(TX_PREFIX);
                push_statements(&mut out, &statements);
                out.push_str(&self.transactional_end(*step, i + 1 == plan.steps.len()));
            } else {
                out.push_str("-- Runs outside a transaction, one statement at a time.\n");
                out.push_str(&Elapsed::start_clock());
                let StepScript::NoTransaction { before, .. } = self.script(*step, false) else {
                    unreachable!("a script outside a transaction");
                };
                out.push_str(before.trim_start_matches(RESET_SESSION));
                push_statements(&mut out, &statements);
                out.push_str(&self.finish(*step, Elapsed::SinceClockStarted));
            }
        }
        out
    }
}

fn push_statements(out: &mut String, statements: &[sql::Statement<'_>]) {
    for statement in statements {
        out.push_str(&statement.terminated());
        out.push('\n');
    }
}

pub(super) fn script_of<'m>(step: Step<'m>) -> &'m Script {
    match step {
        Step::Apply(m) => &m.up,
        // Plans only revert migrations that have a down script.
        Step::Revert(m) => m.down.as_ref().unwrap_or(&m.up),
    }
}

pub(super) fn success<'a>(
    actor: &'a str,
    action: AuditAction,
    m: &'a Migration,
    elapsed: Elapsed,
) -> AuditEntry<'a> {
    AuditEntry {
        actor,
        action,
        version: Some(m.version),
        description: &m.description,
        elapsed,
        succeeded: true,
        detail: None,
    }
}

/// Plans from `from` with no database: the history is assumed to be as a
/// run leaves it at `from` (none at all from base, whose script then creates
/// the history tables, and the schema too when `create_schema`). `lock` is
/// the migration lock's key, when the database's name is known.
pub fn offline<'s>(
    source: &'s MigrationSource,
    sql: &StepSql<'_>,
    from: Target,
    to: Target,
    options: PlanOptions,
    lock: Option<i64>,
    create_schema: bool,
) -> Result<(Plan<'s>, String)> {
    let history = assumed_history(source, from)?;
    let plan = plan::plan(source, &history, to, options)?;
    let text = sql.printed(&plan, lock, (!history.exists).then_some(create_schema));
    Ok((plan, text))
}

/// The history a database at `from` has, as a run would have left it.
pub fn assumed_history(source: &MigrationSource, from: Target) -> Result<History> {
    let at = plan::resolve_target(source, &History::default(), from)?;
    let records: Vec<AppliedMigration> = source
        .migrations()
        .iter()
        .take_while(|m| Some(m.version) <= at)
        .map(|m| AppliedMigration {
            version: m.version,
            description: m.description.clone(),
            checksum: m.checksum().clone(),
            state: RecordState::Applied,
            applied_at: jiff::Timestamp::UNIX_EPOCH,
            duration_ms: 0,
            applied_by: String::new(),
            error: None,
        })
        .collect();
    Ok(History {
        exists: at.is_some(),
        records,
    })
}
