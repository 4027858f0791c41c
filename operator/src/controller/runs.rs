//! Migration runs as supervised, Job-like tasks: one per SchemaMigration at
//! most, with attempts and jittered backoff, a deadline, and cancellation
//! when the spec changes or leadership is lost. A run reports its progress to
//! status as it goes; the reconcile loop never waits on it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use tokio::sync::{Semaphore, TryAcquireError};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::decide::{Verdict, revision, set_conditions};
use super::inputs::Inputs;
use super::{Context, report};
use crate::crd::{self, RunPhase, RunStatus, SchemaMigration, SchemaMigrationStatus};
use crate::engine::{self, Migrator, RunReport, Version};

struct Active {
    generation: Option<i64>,
    cancel: CancellationToken,
}

/// Why a run gave up: the condition reason and message it reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunFailure {
    pub reason: String,
    pub message: String,
}

/// A run that ended in failure, kept so the same inputs are not run again in
/// a loop. Forgotten when the inputs change or a run succeeds.
#[derive(Debug, Clone)]
struct Failed {
    fingerprint: String,
    failure: RunFailure,
}

/// The runs of this operator replica.
pub struct Runs {
    active: Mutex<HashMap<ObjectRef<SchemaMigration>, Active>>,
    failed: Mutex<HashMap<ObjectRef<SchemaMigration>, Failed>>,
    /// Bounds concurrent runs, hence open database connections.
    permits: Arc<Semaphore>,
    tasks: TaskTracker,
}

impl Runs {
    pub fn new(max_concurrent: usize) -> Self {
        Runs {
            active: Mutex::default(),
            failed: Mutex::default(),
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
            tasks: TaskTracker::new(),
        }
    }

    /// Takes every run slot, as runs of other objects would, until the
    /// returned permit is dropped.
    #[cfg(test)]
    pub fn occupy_every_slot(&self) -> tokio::sync::OwnedSemaphorePermit {
        let slots = u32::try_from(self.permits.available_permits()).expect("few slots");
        self.permits
            .clone()
            .try_acquire_many_owned(slots)
            .expect("slots free before the scenario")
    }

    /// Whether any run is under way for the object.
    pub fn is_active(&self, key: &ObjectRef<SchemaMigration>) -> bool {
        lock(&self.active).contains_key(key)
    }

    /// Whether a run is under way for this generation of the object's spec.
    pub fn is_running(&self, key: &ObjectRef<SchemaMigration>, generation: Option<i64>) -> bool {
        lock(&self.active)
            .get(key)
            .is_some_and(|run| run.generation == generation)
    }

    /// Cancels the object's run, if any. Its open transaction rolls back when
    /// its connection closes.
    pub fn cancel(&self, key: &ObjectRef<SchemaMigration>) {
        if let Some(run) = lock(&self.active).remove(key) {
            run.cancel.cancel();
        }
    }

    /// Why the last run for these same inputs failed, if it did.
    pub fn failure(
        &self,
        key: &ObjectRef<SchemaMigration>,
        fingerprint: &str,
    ) -> Option<RunFailure> {
        let failed = lock(&self.failed);
        failed
            .get(key)
            .filter(|f| f.fingerprint == fingerprint)
            .map(|f| f.failure.clone())
    }

    /// False once [`Runs::stop_all`] ran for the end of leadership, until
    /// [`Runs::reopen`]: nothing new may start, a Job included.
    pub fn accepting(&self) -> bool {
        !self.tasks.is_closed()
    }

    /// Accepts runs again after [`Runs::stop_all`].
    pub fn reopen(&self) {
        self.tasks.reopen();
    }

    /// Stops every run and waits for them to let go of their connections.
    pub async fn stop_all(&self) {
        for (_, run) in lock(&self.active).drain() {
            run.cancel.cancel();
        }
        self.tasks.close();
        self.tasks.wait().await;
    }

    /// Waits until every run started so far has ended by itself, cancelling
    /// none; runs can start again afterwards.
    #[cfg(test)]
    pub(crate) async fn settle(&self) {
        self.tasks.close();
        self.tasks.wait().await;
        self.tasks.reopen();
    }

    /// Starts a run in the background. `status` is the status the reconciler
    /// just reported; the run carries it forward.
    pub fn start(
        &self,
        ctx: Arc<Context>,
        obj: Arc<SchemaMigration>,
        inputs: Inputs,
        status: SchemaMigrationStatus,
    ) {
        let key = ObjectRef::from_obj(&*obj);
        let cancel = CancellationToken::new();
        lock(&self.active).insert(
            key.clone(),
            Active {
                generation: obj.metadata.generation,
                cancel: cancel.clone(),
            },
        );
        lock(&self.failed).remove(&key);
        let permits = self.permits.clone();
        self.tasks.spawn(async move {
            let fingerprint = inputs.fingerprint.clone();
            let mut run = Run {
                ctx: ctx.clone(),
                obj,
                inputs,
                status,
                last_write: None,
                unwritten: false,
            };
            let outcome = tokio::select! {
                outcome = run.supervise(permits) => Some(outcome),
                () = cancel.cancelled() => None,
            };
            let runs = &ctx.runs;
            // A cancelled run's entry is gone already, perhaps replaced by
            // a newer run's; only a run that ended by itself removes its own.
            if !cancel.is_cancelled() {
                lock(&runs.active).remove(&key);
            }
            // A cancelled run reports nothing: whoever cancelled it decides next.
            let Some(outcome) = outcome else {
                return;
            };
            if let Err(failure) = outcome {
                lock(&runs.failed).insert(
                    key,
                    Failed {
                        fingerprint,
                        failure,
                    },
                );
            }
        });
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; keep going.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What the engine reported, owned, so it can cross into the status writer.
enum Progress {
    WaitingForLock(Option<engine::lock::LockHolder>),
    StepStarted {
        index: usize,
        total: usize,
        version: Version,
        description: String,
    },
    StepFinished {
        index: usize,
        total: usize,
        version: Version,
        description: String,
        revert: bool,
        duration: Duration,
        now_at: Option<Version>,
    },
    Retrying {
        version: Version,
        attempt: usize,
        delay: Duration,
    },
}

impl Progress {
    fn from_event(event: engine::Event<'_>) -> Option<Progress> {
        Some(match event {
            engine::Event::WaitingForLock { holder } => Progress::WaitingForLock(holder.cloned()),
            engine::Event::Planned { .. } => return None,
            engine::Event::StepStarted { index, total, step } => Progress::StepStarted {
                index,
                total,
                version: step.migration().version,
                description: step.migration().description.clone(),
            },
            engine::Event::StepFinished {
                index,
                total,
                step,
                duration,
                now_at,
            } => Progress::StepFinished {
                index,
                total,
                version: step.migration().version,
                description: step.migration().description.clone(),
                revert: step.is_revert(),
                duration,
                now_at,
            },
            engine::Event::Retrying {
                step,
                attempt,
                delay,
            } => Progress::Retrying {
                version: step.migration().version,
                attempt,
                delay,
            },
        })
    }
}

/// Progress is written at most this often, so a thousand quick migrations do
/// not make two thousand API calls; the first step, lock waits and the end
/// are always written. Updates inside the window are coalesced, not dropped:
/// the latest is written when the window ends, so a long migration never
/// shows the step before it for its whole duration.
const STATUS_INTERVAL: Duration = Duration::from_secs(1);

struct Run {
    ctx: Arc<Context>,
    obj: Arc<SchemaMigration>,
    inputs: Inputs,
    status: SchemaMigrationStatus,
    last_write: Option<Instant>,
    /// The status holds progress not yet written.
    unwritten: bool,
}

impl Run {
    /// Attempts the migration until it succeeds, fails for good, or the
    /// deadline passes.
    async fn supervise(&mut self, permits: Arc<Semaphore>) -> Result<(), RunFailure> {
        let limits = self.inputs.attempts;
        let deadline = Instant::now() + limits.deadline;
        self.set_run(RunPhase::Pending, None);
        // Pending is written only when the run must wait for a slot; a run
        // that starts at once says so in its first write, as Running.
        let _permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(TryAcquireError::NoPermits) => {
                self.write_now().await;
                // Closed only on shutdown, which cancels this task first.
                let Ok(permit) = permits.acquire_owned().await else {
                    return Ok(());
                };
                permit
            }
            Err(TryAcquireError::Closed) => return Ok(()),
        };
        self.ctx.metrics.run_started();
        let result = tokio::time::timeout_at(deadline, self.attempts(limits)).await;
        self.ctx.metrics.run_finished();
        match result {
            Ok(Ok(report)) => {
                self.succeeded(&report).await;
                Ok(())
            }
            Ok(Err(error)) => Err(self.failed(error.reason(), error.to_string()).await),
            Err(_) => {
                let message = format!(
                    "the run did not finish within spec.timeouts.runDeadline ({}); it was stopped and its open transaction rolled back. Raise the deadline, or look for what blocks the migration",
                    crd::format_duration(limits.deadline)
                );
                Err(self.failed("DeadlineExceeded", message).await)
            }
        }
    }

    async fn attempts(
        &mut self,
        limits: super::inputs::Attempts,
    ) -> Result<RunReport, engine::Error> {
        let mut delays = ExponentialBuilder::default()
            .with_min_delay(limits.min_backoff)
            .with_max_delay(limits.max_backoff)
            .with_max_times(limits.retries)
            .with_jitter()
            .build();
        let mut attempt = 1;
        loop {
            self.set_run(RunPhase::Running, Some(attempt));
            self.write_now().await;
            let error = match self.attempt().await {
                Ok(report) => return Ok(report),
                Err(error) => error,
            };
            let delay = match delays.next() {
                Some(delay) if !error.needs_a_person() => delay,
                _ => return Err(error),
            };
            let note = format!(
                "attempt {attempt} failed: {error}; retrying in {}",
                crd::format_duration(delay)
            );
            self.event(
                true,
                "Retrying",
                &format!("Attempt{}", attempt + 1),
                note.clone(),
            )
            .await;
            self.set_verdict(error.reason(), note);
            self.write_now().await;
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    /// One attempt: the engine runs while its progress is written to status.
    async fn attempt(&mut self) -> Result<RunReport, engine::Error> {
        let (progress, mut updates) = tokio::sync::mpsc::unbounded_channel();
        let observer = move |event: engine::Event<'_>| {
            if let Some(p) = Progress::from_event(event) {
                let _ = progress.send(p);
            }
        };
        let source = self.inputs.source.clone();
        let migrator = Migrator::new(
            &source,
            self.inputs.database.clone(),
            self.inputs.options.clone(),
        );
        let (target, direction) = (self.inputs.target, self.inputs.direction);
        let run = migrator.run(target, direction, &observer);
        tokio::pin!(run);
        let result = loop {
            let flush_at = self.flush_at();
            tokio::select! {
                result = &mut run => break result,
                Some(update) = updates.recv() => self.progress(update).await,
                () = tokio::time::sleep_until(flush_at.unwrap_or_else(Instant::now)),
                    if flush_at.is_some() => self.write_now().await,
            }
        };
        while let Ok(update) = updates.try_recv() {
            self.progress(update).await;
        }
        result
    }

    async fn progress(&mut self, update: Progress) {
        let (namespace, name) = (
            self.obj.namespace().unwrap_or_default(),
            self.obj.name_any(),
        );
        match update {
            Progress::WaitingForLock(holder) => {
                let who = holder
                    .as_ref()
                    .map_or_else(|| "another runner".into(), |h| h.to_string());
                self.run_status().lock_holder = holder.map(|h| crd::LockHolder {
                    pid: h.pid,
                    application_name: Some(h.application_name),
                    since: h.since,
                });
                self.set_verdict(
                    "WaitingForLock",
                    format!("waiting for the migration lock, {who}"),
                );
                self.write_now().await;
            }
            Progress::StepStarted {
                index,
                total,
                version,
                description,
            } => {
                let run = self.run_status();
                run.lock_holder = None;
                run.migration = Some(crd::MigrationProgress {
                    index: to_i32(index),
                    total: to_i32(total),
                    version: version.0,
                    description: description.clone(),
                });
                let message =
                    format!("running migration {index} of {total}: {version} ({description})");
                self.set_verdict("Migrating", message);
                if index == 1 {
                    self.write_now().await;
                } else {
                    self.write_when_due().await;
                }
            }
            Progress::StepFinished {
                index,
                total,
                version,
                description,
                revert,
                duration,
                now_at,
            } => {
                let direction = if revert { "down" } else { "up" };
                self.ctx
                    .metrics
                    .migration_applied(&namespace, &name, direction, duration);
                self.status.current_revision = Some(revision(now_at));
                self.status.pending_migrations = Some(to_i32(total - index));
                if !revert {
                    self.status.record_applied(crd::AppliedMigration::new(
                        version.0,
                        description.clone(),
                        jiff::Timestamp::now(),
                        duration,
                    ));
                }
                // The run's end writes the last step's result with the rest.
                if index < total {
                    self.write_when_due().await;
                }
            }
            Progress::Retrying {
                version,
                attempt,
                delay,
            } => {
                let note = format!(
                    "migration {version} waited longer than lockTimeout for a lock (attempt {attempt}); retrying in {} ms",
                    delay.as_millis()
                );
                self.event(
                    true,
                    "LockTimeout",
                    &format!("Retry{version}-{attempt}"),
                    note,
                )
                .await;
            }
        }
    }

    async fn succeeded(&mut self, report: &RunReport) {
        let current = revision(report.to);
        let (namespace, name) = (
            self.obj.namespace().unwrap_or_default(),
            self.obj.name_any(),
        );
        self.ctx
            .metrics
            .set_current_revision(&namespace, &name, &current);
        self.status.current_revision = Some(current.clone());
        self.status.pending_migrations = Some(0);
        self.set_run(RunPhase::Succeeded, None);
        self.run_status().finished_at = Some(jiff::Timestamp::now());
        self.set_verdict_done(Verdict {
            ready: true,
            reconciling: false,
            stalled: false,
            reason: "UpToDate".into(),
            message: format!("the database is at {current}"),
        });
        if let Some((reason, note)) = run_note(report) {
            // One action a target: the recorder folds Events with the same
            // action into one series under the first one's note.
            let action = format!("Migrate{}", current);
            self.event(false, reason, &action, note).await;
        }
        self.write_now().await;
    }

    async fn failed(&mut self, reason: &str, message: String) -> RunFailure {
        self.set_run(RunPhase::Failed, None);
        self.run_status().finished_at = Some(jiff::Timestamp::now());
        self.set_verdict_done(Verdict {
            ready: false,
            reconciling: false,
            stalled: true,
            reason: reason.to_string(),
            message: message.clone(),
        });
        self.event(true, reason, "Migrate", message.clone()).await;
        self.write_now().await;
        RunFailure {
            reason: reason.to_string(),
            message,
        }
    }

    fn run_status(&mut self) -> &mut RunStatus {
        self.status.run.get_or_insert_with(RunStatus::default)
    }

    fn set_run(&mut self, phase: RunPhase, attempt: Option<usize>) {
        let run = self.run_status();
        if phase == RunPhase::Pending {
            *run = RunStatus::default();
        }
        if phase == RunPhase::Running && run.started_at.is_none() {
            run.started_at = Some(jiff::Timestamp::now());
        }
        run.phase = Some(phase);
        if let Some(attempt) = attempt {
            run.attempt = Some(to_i32(attempt));
        }
        if phase != RunPhase::Running {
            run.migration = None;
            run.lock_holder = None;
        }
    }

    /// While running: not Ready, Reconciling, not Stalled.
    fn set_verdict(&mut self, reason: &str, message: String) {
        self.set_verdict_done(Verdict {
            ready: false,
            reconciling: true,
            stalled: false,
            reason: reason.to_string(),
            message,
        });
    }

    fn set_verdict_done(&mut self, verdict: Verdict) {
        set_conditions(&mut self.status, self.obj.metadata.generation, &verdict);
    }

    /// Writes now if the window since the last write has passed; otherwise
    /// the attempt's loop writes when it does.
    async fn write_when_due(&mut self) {
        match self.last_write {
            Some(at) if at.elapsed() < STATUS_INTERVAL => self.unwritten = true,
            _ => self.write_now().await,
        }
    }

    /// When coalesced progress is to be written, if any waits.
    fn flush_at(&self) -> Option<Instant> {
        match (self.unwritten, self.last_write) {
            (true, Some(at)) => Some(at + STATUS_INTERVAL),
            (true, None) => Some(Instant::now()),
            (false, _) => None,
        }
    }

    /// Progress is best effort: a failed write is logged, and the next one
    /// carries the whole status again.
    async fn write_now(&mut self) {
        self.last_write = Some(Instant::now());
        self.unwritten = false;
        let mut obj = (*self.obj).clone();
        obj.status = None;
        if let Err(error) = report::status(&self.ctx.client, &obj, &self.status).await {
            tracing::warn!(%error, object = %self.obj.name_any(), "could not write run progress to status");
        }
    }

    async fn event(&self, warning: bool, reason: &str, action: &str, note: String) {
        report::event(&self.ctx.recorder, &self.obj, warning, reason, action, note).await;
    }
}

/// Shown in an Event with its own line per migration, the first ten.
const NOTE_MIGRATIONS: usize = 10;

/// One Event a run, not one a migration: at a thousand databases, one a
/// migration is thousands of objects for the API server to keep, and a
/// run's Event tells the same story in `kubectl describe`. The status keeps
/// the recent migrations and the database's audit log keeps them all.
fn run_note(report: &RunReport) -> Option<(&'static str, String)> {
    let first = report.steps.first()?;
    let (reason, verb) = match first.direction {
        "down" => ("Reverted", "reverted"),
        _ => ("Migrated", "applied"),
    };
    let total: u64 = report.steps.iter().map(|s| s.duration_ms).sum();
    let n = report.steps.len();
    let mut note = format!(
        "{verb} {n} migration{} from {} to {} in {total} ms:",
        if n == 1 { "" } else { "s" },
        revision(report.from),
        revision(report.to),
    );
    for step in report.steps.iter().take(NOTE_MIGRATIONS) {
        note.push_str(&format!(
            " {} ({}, {} ms);",
            step.version, step.description, step.duration_ms
        ));
    }
    if n > NOTE_MIGRATIONS {
        note.push_str(&format!(" and {} more", n - NOTE_MIGRATIONS));
    } else {
        note.pop();
    }
    Some((reason, note))
}

fn to_i32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}
