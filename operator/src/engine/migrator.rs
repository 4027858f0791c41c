//! Running plans against a database: the lock, the history tables, one
//! transaction (and one round trip) per migration, retries on lock timeouts,
//! and no-transaction migrations that leave a visible record if they fail.

use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio_postgres::SimpleQueryMessage;
use tokio_postgres::error::SqlState;

use super::blockers::{Blocker, Watch};
use super::connection::{
    Database, Session, SessionSettings, database_error, failure, is_lock_timeout,
};
use super::error::{Error, Result};
use super::history::{AuditAction, AuditEntry, Elapsed, History, HistoryTable, RecordState};
use super::lock::{self, LockHolder};
use super::migration::{Script, Version};
use super::plan::{self, Direction, Plan, PlanOptions, Step, Target};
use super::source::MigrationSource;
use super::sql;
use super::step_sql::{StepScript, StepSql, TX_PREFIX};
use super::watchdog;

/// How a [`Migrator`] behaves; the defaults suit most databases.
#[derive(Debug, Clone)]
pub struct MigratorOptions {
    pub history: HistoryTable,
    pub session: SessionSettings,
    pub allow_out_of_order: bool,
    /// How long a migration that hits `lock_timeout` keeps being tried
    /// again, from its first attempt; see [`retry_delays`] for the waits.
    pub retry_budget: Duration,
    /// At most this many retries within the budget; `None`: as many as fit.
    pub lock_retries: Option<usize>,
    /// The first wait between attempts, before jitter adds up to as much again.
    pub retry_min_delay: Duration,
    /// No wait between attempts is longer, jitter included.
    pub retry_max_delay: Duration,
    /// How often a waiting runner asks for the migration lock.
    pub lock_poll_interval: Duration,
    /// How long to wait for another runner's lock; `None` waits for ever.
    pub lock_wait_timeout: Option<Duration>,
    /// Who runs the migrations, as the history and audit log record it.
    pub actor: String,
}

impl Default for MigratorOptions {
    fn default() -> Self {
        MigratorOptions {
            history: HistoryTable::default(),
            session: SessionSettings::default(),
            allow_out_of_order: false,
            // Each attempt can stall the application's queries on the table
            // for up to lock_timeout; the waits between attempts, never
            // shorter than twice a 200ms lock_timeout, let its queue drain.
            retry_budget: Duration::from_secs(60),
            lock_retries: None,
            retry_min_delay: Duration::from_millis(500),
            retry_max_delay: Duration::from_secs(5),
            lock_poll_interval: Duration::from_millis(500),
            lock_wait_timeout: None,
            actor: "schemaop".into(),
        }
    }
}

/// What happens during a run, for progress bars, logs, status and Events.
#[derive(Debug)]
pub enum Event<'a> {
    /// Another runner holds the lock; sent again when the holder changes.
    WaitingForLock { holder: Option<&'a LockHolder> },
    /// The lock is ours and `total` steps are about to run.
    Planned { plan: &'a Plan<'a> },
    /// Step `index` (1-based) of `total` starts.
    StepStarted {
        index: usize,
        total: usize,
        step: Step<'a>,
    },
    /// Step `index` committed; the database is now at `now_at`.
    StepFinished {
        index: usize,
        total: usize,
        step: Step<'a>,
        duration: Duration,
        now_at: Option<Version>,
    },
    /// A statement waited longer than `lock_timeout`; the step runs again after `delay`.
    Retrying {
        step: Step<'a>,
        attempt: usize,
        delay: Duration,
    },
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RunReport {
    pub from: Option<Version>,
    pub to: Option<Version>,
    pub steps: Vec<StepReport>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StepReport {
    pub version: Version,
    pub description: String,
    pub direction: &'static str,
    pub duration_ms: u64,
}

/// A fix to the history, each one audited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repair {
    /// The file of an applied migration changed on purpose: record its new checksum.
    AcceptChecksum(Version),
    /// A failed or interrupted no-transaction migration's effect is complete.
    MarkApplied(Version),
    /// A failed or interrupted no-transaction migration left nothing behind:
    /// forget it, so it runs again.
    MarkReverted(Version),
}

/// Applies a [`MigrationSource`] to one database.
pub struct Migrator<'s> {
    source: &'s MigrationSource,
    database: Database,
    options: MigratorOptions,
}

/// Why a step's statement was given up on.
struct Attempts {
    error: tokio_postgres::Error,
    count: usize,
    started: Instant,
    /// The sessions last seen holding the locks it waited for.
    blockers: Vec<Blocker>,
}

impl<'s> Migrator<'s> {
    pub fn new(source: &'s MigrationSource, database: Database, options: MigratorOptions) -> Self {
        Migrator {
            source,
            database,
            options,
        }
    }

    pub fn source(&self) -> &MigrationSource {
        self.source
    }

    pub fn database(&self) -> &Database {
        &self.database
    }

    pub fn options(&self) -> &MigratorOptions {
        &self.options
    }

    pub async fn connect(&self) -> Result<Session> {
        HistoryTable::check_table_name(&self.options.history.table)
            .map_err(|reason| Error::InvalidHistoryTable { reason })?;
        self.database.connect(&self.options.session).await
    }

    /// Reads the state table in one query; a missing table is an empty history.
    pub async fn history(&self, session: &Session) -> Result<History> {
        let table = &self.options.history;
        match session.client.simple_query(&table.select_sql()).await {
            Ok(messages) => {
                let mut records = Vec::new();
                for message in &messages {
                    if let SimpleQueryMessage::Row(row) = message {
                        let columns: Vec<Option<&str>> =
                            (0..row.len()).map(|i| row.get(i)).collect();
                        let record = table.parse_row(&columns).ok_or_else(|| Error::Database {
                            action: "reading the history table".into(),
                            failure: Box::new(super::error::Failure {
                                code: String::new(),
                                message: format!(
                                    "{}.{} has a row this version of schemaop cannot read (version {:?}); \
                                     check that the table was made by schemaop",
                                    table.schema,
                                    table.table,
                                    columns.first().copied().flatten()
                                ),
                                detail: None,
                                hint: None,
                                line: None,
                                column: None,
                            }),
                        })?;
                        records.push(record);
                    }
                }
                Ok(History {
                    exists: true,
                    records,
                })
            }
            Err(e) if matches!(e.code(), Some(c) if *c == SqlState::UNDEFINED_TABLE || *c == SqlState::INVALID_SCHEMA_NAME) => {
                Ok(History::default())
            }
            Err(e) => Err(database_error("reading the history table", &e)),
        }
    }

    fn plan_options(&self, direction: Direction) -> PlanOptions {
        PlanOptions {
            direction,
            allow_out_of_order: self.options.allow_out_of_order,
        }
    }

    /// Brings the database to `target`. Returns at once, without the lock,
    /// when it is already there.
    pub async fn run(
        &self,
        target: Target,
        direction: Direction,
        observer: &(dyn Fn(Event<'_>) + Send + Sync),
    ) -> Result<RunReport> {
        let session = self.connect().await?;
        let options = self.plan_options(direction);
        // The one decision taken before the lock: a database already at an
        // absolute target has nothing to do, and waiting for the lock would
        // only queue behind other runners. Steps count from wherever the
        // database is once the lock is ours, so they never take this path.
        if !matches!(target, Target::Forward(_) | Target::Back(_)) {
            let history = self.history(&session).await?;
            if let Ok(plan) = plan::plan(self.source, &history, target, options)
                && plan.is_up_to_date()
            {
                return Ok(RunReport {
                    from: plan.current,
                    to: plan.current,
                    steps: Vec::new(),
                });
            }
        }
        let work = self.run_held(&session, target, options, observer);
        self.held(&session, work).await
    }

    /// The part of [`Migrator::run`] that waits for and holds the lock.
    async fn run_held(
        &self,
        session: &Session,
        target: Target,
        options: PlanOptions,
        observer: &(dyn Fn(Event<'_>) + Send + Sync),
    ) -> Result<RunReport> {
        let key = self.lock_key();
        let pid = self.lock(session, key, observer).await?;
        // Everything that depends on the history is decided on what it says
        // now: while we waited, another runner may have moved the database
        // either way. A refusal leaves the database as it was, history tables
        // included; closing the session frees the lock.
        let history = self.history(session).await?;
        let plan = plan::plan(self.source, &history, target, options)?;
        if let Some(error) = plan::empty_step(&plan) {
            return Err(error);
        }
        if !history.exists {
            self.create_tables(session).await?;
        }
        observer(Event::Planned { plan: &plan });
        let total = plan.steps.len();
        let mut report = RunReport {
            from: plan.current,
            to: plan.current,
            steps: Vec::with_capacity(total),
        };
        for (i, step) in plan.steps.iter().copied().enumerate() {
            let index = i + 1;
            observer(Event::StepStarted { index, total, step });
            let duration = self
                .run_step(session, pid, step, index == total, observer)
                .await?;
            let m = step.migration();
            report.to = match step {
                Step::Apply(_) => Some(m.version),
                Step::Revert(_) => history
                    .records
                    .iter()
                    .map(|r| r.version)
                    .filter(|v| *v < m.version)
                    .max(),
            };
            observer(Event::StepFinished {
                index,
                total,
                step,
                duration,
                now_at: report.to,
            });
            report.steps.push(StepReport {
                version: m.version,
                description: m.description.clone(),
                direction: if step.is_revert() { "down" } else { "up" },
                duration_ms: duration.as_millis() as u64,
            });
        }
        lock::release(session, key).await?;
        Ok(report)
    }

    /// The SQL a run would send now, history writes included; runs nothing.
    pub async fn plan_sql(
        &self,
        target: Target,
        direction: Direction,
    ) -> Result<(Plan<'s>, String)> {
        let session = self.connect().await?;
        let history = self.history(&session).await?;
        let plan = plan::plan(self.source, &history, target, self.plan_options(direction))?;
        let create_tables = match history.exists || plan.is_up_to_date() {
            true => None,
            false => Some(!self.schema_exists(&session).await?),
        };
        let text = self
            .step_sql()
            .printed(&plan, Some(self.lock_key()), create_tables);
        Ok((plan, text))
    }

    fn step_sql(&self) -> StepSql<'_> {
        StepSql {
            table: &self.options.history,
            actor: &self.options.actor,
        }
    }

    /// Records migrations up to `target` as applied without running them, to
    /// adopt a database whose schema already exists; migrations above the
    /// target are forgotten. Audited.
    pub async fn stamp(&self, target: Target) -> Result<(Option<Version>, usize, usize)> {
        let session = self.connect().await?;
        self.held(&session, self.stamp_held(&session, target)).await
    }

    async fn stamp_held(
        &self,
        session: &Session,
        target: Target,
    ) -> Result<(Option<Version>, usize, usize)> {
        let key = self.lock_key();
        self.lock(session, key, &|_| {}).await?;
        let history = self.history(session).await?;
        if let Some(error) = plan::blocked(&history) {
            return Err(error);
        }
        let target = plan::resolve_target(self.source, &history, target)?;
        self.create_tables(session).await?;
        let table = &self.options.history;
        let actor = &self.options.actor;
        let mut script = String::from(TX_PREFIX);
        let mut recorded = 0;
        for m in plan::pending(self.source, &history) {
            if Some(m.version) <= target {
                script.push_str(&table.insert_stamped(m, actor));
                recorded += 1;
            }
        }
        let removed = history
            .records
            .iter()
            .filter(|r| Some(r.version) > target)
            .count();
        script.push_str(&table.delete_above(target));
        let detail = format!(
            "stamped at {}: recorded {recorded}, forgot {removed}",
            target.map_or("base".into(), |v| v.to_string())
        );
        script.push_str(&table.insert_audit(&AuditEntry {
            actor,
            action: AuditAction::Stamp,
            version: target,
            description: "stamp",
            elapsed: Elapsed::Measured(0),
            succeeded: true,
            detail: Some(&detail),
        }));
        script.push_str("COMMIT;\n");
        session.execute(&script, "stamping the history").await?;
        lock::release(session, key).await?;
        Ok((target, recorded, removed))
    }

    /// Applies one audited fix to the history.
    pub async fn repair(&self, repair: Repair) -> Result<String> {
        let session = self.connect().await?;
        self.held(&session, self.repair_held(&session, repair))
            .await
    }

    async fn repair_held(&self, session: &Session, repair: Repair) -> Result<String> {
        let key = self.lock_key();
        self.lock(session, key, &|_| {}).await?;
        let history = self.history(session).await?;
        let table = &self.options.history;
        let (version, body, detail) = match repair {
            Repair::AcceptChecksum(version) => {
                let record = history
                    .get(version)
                    .ok_or(Error::NotInHistory { version })?;
                let m = self
                    .source
                    .get(version)
                    .ok_or_else(|| Error::MissingMigrations(vec![version]))?;
                let detail = format!(
                    "accepted checksum {} of {} (was {})",
                    m.checksum().short(),
                    m.up.file,
                    record.checksum.short()
                );
                (version, table.set_checksum(version, m.checksum()), detail)
            }
            Repair::MarkApplied(version) => {
                let record = history
                    .get(version)
                    .ok_or(Error::NotInHistory { version })?;
                let detail = format!("marked applied (was {})", record.state);
                (
                    version,
                    table.set_state(version, RecordState::Applied, None, None),
                    detail,
                )
            }
            Repair::MarkReverted(version) => {
                let record = history
                    .get(version)
                    .ok_or(Error::NotInHistory { version })?;
                if record.state == RecordState::Applied {
                    return Err(Error::RepairApplied { version });
                }
                let detail = format!("marked reverted (was {})", record.state);
                (version, table.delete(version), detail)
            }
        };
        let description = history
            .get(version)
            .map(|r| r.description.clone())
            .unwrap_or_default();
        let script = format!(
            "{TX_PREFIX}{body}{}COMMIT;\n",
            table.insert_audit(&AuditEntry {
                actor: &self.options.actor,
                action: AuditAction::Repair,
                version: Some(version),
                description: &description,
                elapsed: Elapsed::Measured(0),
                succeeded: true,
                detail: Some(&detail),
            })
        );
        session.execute(&script, "repairing the history").await?;
        lock::release(session, key).await?;
        Ok(detail)
    }

    /// Runs `work`, which takes the lock on `session`, under the watchdog: a
    /// server that stops answering ends the run instead of holding the lock
    /// for ever.
    async fn held<T>(&self, session: &Session, work: impl Future<Output = Result<T>>) -> Result<T> {
        watchdog::guard(&self.database, session, &self.options.session, work).await
    }

    /// The migration lock's key: the same for every runner of this history
    /// in this database, `schemaop exec` included.
    pub fn lock_key(&self) -> i64 {
        self.options.history.lock_key(self.database.name())
    }

    /// Makes sure the history tables exist and that the audit log takes
    /// every action of this version, as a run does before its first step.
    /// A table made by an older schemaop gets the columns it lacks. Call it
    /// with the migration lock held.
    pub async fn ensure_tables(&self, session: &Session) -> Result<()> {
        if !self.history(session).await?.exists {
            return self.create_tables(session).await;
        }
        let table = &self.options.history;
        let rows = session
            .client
            .simple_query(&table.audit_shape_sql())
            .await
            .map_err(|e| database_error("looking at the audit table", &e))?;
        let row = rows.iter().find_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some((
                row.get(0)
                    .and_then(|n| n.parse::<usize>().ok())
                    .unwrap_or(0),
                row.get(1).unwrap_or("").to_string(),
            )),
            _ => None,
        });
        let (columns, stale) = row.unwrap_or_default();
        let stale: Vec<&str> = stale.split(',').filter(|n| !n.is_empty()).collect();
        if columns == super::history::EXEC_COLUMNS.len() && stale.is_empty() {
            return Ok(());
        }
        let result = session
            .execute(
                &table.upgrade_audit_script(&stale),
                "adding the exec columns to the audit table",
            )
            .await;
        if result.is_err() {
            let _ = session.client.batch_execute("ROLLBACK").await;
        }
        result
    }

    async fn lock(
        &self,
        session: &Session,
        key: i64,
        observer: &(dyn Fn(Event<'_>) + Send + Sync),
    ) -> Result<i32> {
        lock::acquire(
            session,
            key,
            self.options.lock_poll_interval,
            self.options.lock_wait_timeout,
            |holder| observer(Event::WaitingForLock { holder }),
        )
        .await
    }

    async fn create_tables(&self, session: &Session) -> Result<()> {
        let script = self
            .options
            .history
            .create_script(!self.schema_exists(session).await?);
        let result = session
            .execute(&script, "creating the history tables")
            .await;
        if result.is_err() {
            let _ = session.client.batch_execute("ROLLBACK").await;
        }
        result
    }

    async fn schema_exists(&self, session: &Session) -> Result<bool> {
        let rows = session
            .client
            .simple_query(&self.options.history.schema_exists_sql())
            .await
            .map_err(|e| database_error("looking up the history schema", &e))?;
        Ok(rows
            .iter()
            .any(|m| matches!(m, SimpleQueryMessage::Row(row) if row.get(0) == Some("t"))))
    }

    async fn run_step(
        &self,
        session: &Session,
        pid: i32,
        step: Step<'s>,
        last: bool,
        observer: &(dyn Fn(Event<'_>) + Send + Sync),
    ) -> Result<Duration> {
        let started = Instant::now();
        let m = step.migration();
        match self.step_sql().script(step, last) {
            StepScript::Transactional {
                text,
                prefix_chars,
                script,
            } => {
                let Err(attempts) = self
                    .send_retrying(session, pid, &text, true, step, observer)
                    .await
                else {
                    return Ok(started.elapsed());
                };
                let error = self.step_error(
                    step,
                    script,
                    None,
                    attempts,
                    Some((&script.sql, -(prefix_chars as isize))),
                );
                self.audit_failure(session, step, &error).await;
                Err(error)
            }
            StepScript::NoTransaction { before, script } => {
                session
                    .execute(&before, "recording the migration as started")
                    .await?;
                for (i, statement) in sql::split_statements(&script.sql).iter().enumerate() {
                    if let Err(attempts) = self
                        .send_retrying(session, pid, statement.text, false, step, observer)
                        .await
                    {
                        let shift = script.sql[..statement.offset].chars().count() as isize;
                        let error = self.step_error(
                            step,
                            script,
                            Some(i + 1),
                            attempts,
                            Some((&script.sql, shift)),
                        );
                        let state = if step.is_revert() {
                            RecordState::RevertFailed
                        } else {
                            RecordState::ApplyFailed
                        };
                        let record = self.options.history.set_state(
                            m.version,
                            state,
                            None,
                            Some(&error.to_string()),
                        );
                        // Best effort: if the connection is gone, the row
                        // still says `applying`, which blocks runs just the same.
                        let _ = session.client.batch_execute(&record).await;
                        self.audit_failure(session, step, &error).await;
                        return Err(error);
                    }
                }
                let duration = started.elapsed();
                let finish = self
                    .step_sql()
                    .finish(step, Elapsed::Measured(duration.as_millis() as i64));
                session
                    .execute(&finish, "recording the migration as finished")
                    .await?;
                Ok(duration)
            }
        }
    }

    /// Sends `sql`, and sends it again after a jittered wait each time it
    /// fails on `lock_timeout`, while the retry budget lasts. In a
    /// transaction, each failed attempt is rolled back before anything else
    /// runs. An attempt still waiting after half of `lock_timeout` has the
    /// sessions in its way looked up, for the error if the budget runs out.
    async fn send_retrying(
        &self,
        session: &Session,
        pid: i32,
        sql: &str,
        in_transaction: bool,
        step: Step<'_>,
        observer: &(dyn Fn(Event<'_>) + Send + Sync),
    ) -> std::result::Result<(), Attempts> {
        let lock_timeout = self.options.session.lock_timeout;
        let mut watch = Watch::new(&self.database, &self.options.session, pid);
        let mut delays = retry_delays(&self.options);
        let started = Instant::now();
        let mut attempt = 1;
        loop {
            let send = session.client.batch_execute(sql);
            let result = if lock_timeout.is_zero() {
                send.await
            } else {
                watch.wait(send, lock_timeout / 2, lock_timeout).await
            };
            let Err(error) = result else {
                return Ok(());
            };
            if in_transaction {
                let _ = session.client.batch_execute("ROLLBACK").await;
            }
            // Another attempt only if it can end within the budget.
            let next = delays
                .next()
                .filter(|d| started.elapsed() + *d + lock_timeout <= self.options.retry_budget);
            match next {
                Some(delay) if is_lock_timeout(&error) => {
                    observer(Event::Retrying {
                        step,
                        attempt,
                        delay,
                    });
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                _ => {
                    return Err(Attempts {
                        error,
                        count: attempt,
                        started,
                        blockers: watch.last_seen,
                    });
                }
            }
        }
    }

    fn step_error(
        &self,
        step: Step<'_>,
        script: &Script,
        statement: Option<usize>,
        attempts: Attempts,
        position: Option<(&str, isize)>,
    ) -> Error {
        let error = &attempts.error;
        if is_lock_timeout(error) {
            return Error::LockTimeout {
                version: step.migration().version,
                file: script.file.clone(),
                attempts: attempts.count,
                waited: attempts.started.elapsed(),
                lock_timeout: self.options.session.lock_timeout,
                blockers: attempts.blockers,
            };
        }
        if error.as_db_error().is_none() {
            return database_error("running a migration", error);
        }
        Error::MigrationFailed {
            version: step.migration().version,
            file: script.file.clone(),
            statement,
            failure: Box::new(failure(error, position)),
        }
    }

    async fn audit_failure(&self, session: &Session, step: Step<'_>, error: &Error) {
        let m = step.migration();
        let detail = error.to_string();
        let entry = AuditEntry {
            actor: &self.options.actor,
            action: if step.is_revert() {
                AuditAction::Down
            } else {
                AuditAction::Up
            },
            version: Some(m.version),
            description: &m.description,
            elapsed: Elapsed::Measured(0),
            succeeded: false,
            detail: Some(&detail),
        };
        // Best effort: the failure is returned to the caller either way.
        let _ = session
            .client
            .batch_execute(&self.options.history.insert_audit(&entry))
            .await;
    }
}

/// The waits between attempts: exponential from `retry_min_delay`, with
/// jitter so that runners blocked together do not all come back at once.
/// backon's jitter adds up to the delay itself on top of it, so the
/// exponential part stops at half of `retry_max_delay`: every wait, jitter
/// included, stays within the maximum.
fn retry_delays(options: &MigratorOptions) -> impl Iterator<Item = Duration> + use<> {
    let cap = options.retry_max_delay / 2;
    let builder = ExponentialBuilder::default()
        .with_min_delay(options.retry_min_delay.min(cap))
        .with_max_delay(cap)
        .with_jitter();
    match options.lock_retries {
        Some(n) => builder.with_max_times(n),
        None => builder.without_max_times(),
    }
    .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_retry_delay_exceeds_the_maximum() {
        let options = MigratorOptions {
            retry_min_delay: Duration::from_millis(200),
            retry_max_delay: Duration::from_secs(10),
            lock_retries: Some(50),
            ..MigratorOptions::default()
        };
        let mut longest = Duration::ZERO;
        for _ in 0..200 {
            for delay in retry_delays(&options) {
                assert!(delay <= Duration::from_secs(10), "{delay:?}");
                longest = longest.max(delay);
            }
        }
        assert!(
            longest > Duration::from_secs(9),
            "the waits grow to the maximum: {longest:?}"
        );
    }

    #[test]
    fn a_maximum_below_the_minimum_still_caps_every_delay() {
        let options = MigratorOptions {
            retry_min_delay: Duration::from_secs(2),
            retry_max_delay: Duration::from_secs(1),
            lock_retries: Some(10),
            ..MigratorOptions::default()
        };
        assert!(retry_delays(&options).all(|d| d <= Duration::from_secs(1)));
    }
}
