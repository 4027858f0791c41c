//! `schemaop wait`: blocks until the database schema is at a revision, so that
//! an init container can keep an app from starting against an old schema.
//!
//! It learns where the database is in one of two ways: from the status of the
//! SchemaMigration that the operator reconciles (`--migration`, watched, not
//! polled), or from the history table itself (`--database-url`), for setups
//! where the app may not read SchemaMigrations.

use std::future::Future;
use std::pin::pin;
use std::time::{Duration, Instant};
use std::{error, fmt};

use clap::Args;
use futures::StreamExt;
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

use super::output::Reporter;
use super::{CliError, GlobalArgs, exit};
use crate::crd::conditions::{Condition, READY, STALLED};
use crate::crd::{REVISION_NONE, SchemaMigration, SchemaMigrationStatus};
use crate::duration::{self, format_duration};
use crate::engine::connection::Session;
use crate::engine::{Error, History, MigrationSource, Migrator, RecordState, Version};

/// How often the history table is read in database mode: often enough that
/// an app starts soon after its migration, rarely enough that a few hundred
/// waiting pods do not load the database.
pub(super) const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Progress lines are at most this frequent, so a long wait stays readable in
/// a pod's log.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

const WAIT_AFTER_HELP: &str = "\
Exit codes of wait:
  0  the revision was reached (with --migration: the SchemaMigration is Ready)
  1  the Kubernetes API refused (credentials, RBAC, no CRD) or the SchemaMigration
     does not exist; or, at the timeout, the history table could not be read
  2  the command line was wrong
  4  a person must act: the SchemaMigration is Stalled, or a no-transaction
     migration failed and blocks every run
  5  the database could not be reached until the timeout
  7  the timeout passed before the revision was reached";

/// Waits until the database is at a revision.
#[derive(Debug, Args)]
#[command(after_help = WAIT_AFTER_HELP)]
pub struct WaitArgs {
    /// Wait for this SchemaMigration to be Ready (Kubernetes mode). Without
    /// it, read the history table of --database-url or DATABASE_URL.
    #[arg(long, value_name = "NAME")]
    pub migration: Option<String>,

    /// Namespace of the SchemaMigration; defaults to the pod's, or the kubeconfig's.
    #[arg(long, env = "POD_NAMESPACE")]
    pub namespace: Option<String>,

    /// Also require the current revision to be at least this version. In
    /// database mode it defaults to the newest migration in --dir. With
    /// --tool, the tool's own revision: for Alembic, reached when it is a
    /// current head or an ancestor of one.
    #[arg(long, value_name = "VERSION")]
    pub revision: Option<String>,

    #[command(flatten)]
    pub tool: super::tools::ToolArgs,

    /// Give up after this long; 0 waits for ever.
    #[arg(long, default_value = "10m", value_parser = duration::parse_duration)]
    pub timeout: Duration,
}

/// Where the answer comes from.
#[derive(Debug, PartialEq, Eq)]
enum Mode {
    Kubernetes { name: String },
    Database,
}

/// Runs `schemaop wait`; returns the exit code.
pub async fn run(
    args: &WaitArgs,
    global: &GlobalArgs,
    reporter: &Reporter,
) -> Result<u8, CliError> {
    let mode = mode(args, global)?;
    if args.tool.tool.is_some() {
        if mode != Mode::Database {
            return Err(CliError::Usage(
                "--tool reads the tool's version table: give --database-url (or DATABASE_URL), \
                 not --migration"
                    .into(),
            ));
        }
        return super::tools::wait(args, global, reporter).await;
    }
    let outcome = match mode {
        // A SchemaMigration of `spec.job` has its tool's revisions, which
        // need not be numbers: what the text means is known once it is read.
        Mode::Kubernetes { name } => wait_for_migration(args, name).await,
        Mode::Database => {
            let revision = args
                .revision
                .as_deref()
                .map(str::parse::<Version>)
                .transpose()
                .map_err(CliError::Usage)?;
            wait_for_database(args, revision, global, reporter).await?
        }
    };
    Ok(outcome.report(reporter))
}

fn mode(args: &WaitArgs, global: &GlobalArgs) -> Result<Mode, CliError> {
    match (&args.migration, &global.database_url) {
        (Some(_), Some(url)) if !from_environment(url) => Err(CliError::Usage(
            "give either --migration (wait for the operator) or --database-url (read the \
             database), not both"
                .into(),
        )),
        (Some(name), _) => Ok(Mode::Kubernetes { name: name.clone() }),
        (None, Some(_)) => Ok(Mode::Database),
        (None, None) => Err(CliError::Usage(
            "say what to wait for: --migration NAME to wait for a SchemaMigration, or \
             --database-url URL (or DATABASE_URL) to read the database"
                .into(),
        )),
    }
}

/// Whether the URL is `DATABASE_URL`'s. An app's container usually has it,
/// and an init container often shares the app's environment: there it must
/// not make `--migration` an error, as a `--database-url` flag does.
fn from_environment(url: &str) -> bool {
    std::env::var("DATABASE_URL").is_ok_and(|env| env == url)
}

// --- what a status or a history says ------------------------------------------

/// What one look at the database's state says to someone waiting for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// At the revision (and, for a SchemaMigration, Ready).
    Reached { current: Option<Version> },
    /// Nothing will change until a person acts.
    Stalled { reason: String, message: String },
    /// Not there yet; what was seen, for progress lines and the timeout.
    Waiting(String),
}

/// Judges a SchemaMigration as kstatus does: Ready=True for the current
/// generation of its spec, and, when `revision` is given, a current revision
/// at least that high.
pub fn judge_migration(migration: &SchemaMigration, revision: Option<Version>) -> Verdict {
    let generation = migration.metadata.generation;
    let Some(status) = &migration.status else {
        return Verdict::Waiting(
            "the operator has not reported on it yet; check that the operator runs".into(),
        );
    };
    // A status written for an older spec says nothing about the new one,
    // Stalled included: the operator tries again after a spec change.
    if status.observed_generation != generation {
        return Verdict::Waiting(format!(
            "the operator has not acted on generation {} of its spec yet (the status is for \
             generation {})",
            number_text(generation),
            number_text(status.observed_generation)
        ));
    }
    let current = status.current_revision.as_deref().unwrap_or("unknown");
    if let Some(stalled) = condition(status, STALLED, generation).filter(|c| c.is_true()) {
        return Verdict::Stalled {
            reason: stalled.reason.clone(),
            message: stalled.message.clone(),
        };
    }
    match condition(status, READY, generation) {
        Some(ready) if ready.is_true() => {
            // `none` and anything else that is not a version sort below every version.
            let at = current.parse::<Version>().ok();
            match revision {
                Some(wanted) if at < Some(wanted) => Verdict::Waiting(format!(
                    "Ready at revision {current}, below {wanted}; its target is {}",
                    status.target_revision.as_deref().unwrap_or("unknown")
                )),
                _ => Verdict::Reached { current: at },
            }
        }
        Some(ready) => Verdict::Waiting(format!(
            "not Ready ({}: {}), at revision {current}",
            ready.reason, ready.message
        )),
        None => Verdict::Waiting(format!("no Ready condition yet, at revision {current}")),
    }
}

/// Judges a SchemaMigration for `--revision` as given: by version for SQL
/// migrations, by its tool's order for `spec.job`, as the readiness gates
/// judge `schemaop.dev/min-revision`.
pub fn judge(migration: &SchemaMigration, revision: Option<&str>) -> Verdict {
    let Some(job) = &migration.spec.job else {
        return match revision.map(str::parse::<Version>).transpose() {
            Ok(version) => judge_migration(migration, version),
            Err(_) => Verdict::Stalled {
                reason: "InvalidRevision".into(),
                message: format!(
                    "--revision {} is not a version, and SchemaMigration {} runs SQL \
                     migrations, whose revisions are versions such as 20261121093000",
                    revision.unwrap_or_default(),
                    migration.metadata.name.as_deref().unwrap_or_default()
                ),
            },
        };
    };
    let base = judge_migration(migration, None);
    let Some(wanted) = revision else {
        return base;
    };
    if matches!(base, Verdict::Stalled { .. }) {
        return base;
    }
    let schema = crate::gates::decide::JobSchema::of(migration, job.tool);
    let observed = migration
        .status
        .as_ref()
        .and_then(|s| s.observed_generation)
        == migration.metadata.generation;
    let reached =
        crate::gates::decide::reached(job.tool, &schema.current, schema.reached.as_deref(), wanted);
    if observed && reached {
        return Verdict::Reached { current: None };
    }
    Verdict::Waiting(format!(
        "{} is at {}, not known to have reached {wanted}",
        job.tool,
        if schema.current.is_empty() {
            "base".to_string()
        } else {
            schema.current.join(" ")
        }
    ))
}

/// The condition of this type, unless it was computed for an older spec.
fn condition<'a>(
    status: &'a SchemaMigrationStatus,
    type_: &str,
    generation: Option<i64>,
) -> Option<&'a Condition> {
    status
        .condition(type_)
        .filter(|c| c.observed_generation.is_none() || c.observed_generation == generation)
}

fn number_text(n: Option<i64>) -> String {
    n.map_or_else(|| "unknown".into(), |n| n.to_string())
}

/// Judges the history table: at `revision` or above is done; a failed
/// no-transaction migration blocks every run until a person repairs it.
pub fn judge_history(history: &History, revision: Version) -> Verdict {
    let current = history.current();
    if current >= Some(revision) {
        return Verdict::Reached { current };
    }
    let failed = history.records.iter().find(|r| {
        matches!(
            r.state,
            RecordState::ApplyFailed | RecordState::RevertFailed
        )
    });
    if let Some(failed) = failed {
        let error = failed
            .error
            .as_deref()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default();
        return Verdict::Stalled {
            reason: "MigrationBlocked".into(),
            message: format!(
                "migration {v} {what}{error}; no migration runs until a person puts the \
                 database right and runs `schemaop repair --mark-applied {v}` or \
                 `--mark-reverted {v}`",
                v = failed.version,
                what = failed.state.describe_blocked(),
            ),
        };
    }
    let mut seen = base_text(current);
    if !history.exists {
        seen.push_str(" (no history table yet)");
    }
    let running = history.records.iter().find_map(|r| match r.state {
        RecordState::Applying => Some(("applying", r.version)),
        RecordState::Reverting => Some(("reverting", r.version)),
        _ => None,
    });
    if let Some((verb, version)) = running {
        seen.push_str(&format!(", {verb} {version}"));
    }
    Verdict::Waiting(seen)
}

/// A database revision as the CLI shows it: `base` before any migration.
fn base_text(version: Option<Version>) -> String {
    version.map_or_else(|| "base".into(), |v| v.to_string())
}

// --- how a wait ends ----------------------------------------------------------

/// How a wait ended: what to print, and the exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Reached {
        /// One line for stdout.
        summary: String,
        current: Option<Version>,
    },
    Failed {
        code: u8,
        /// A CamelCase word for `--output json`.
        reason: String,
        message: String,
    },
}

impl Outcome {
    fn failed(code: u8, reason: &str, message: String) -> Self {
        Outcome::Failed {
            code,
            reason: reason.into(),
            message,
        }
    }

    /// Prints the outcome as the other verbs print results and errors.
    fn report(self, reporter: &Reporter) -> u8 {
        match self {
            Outcome::Reached { summary, current } => {
                match reporter.is_json() {
                    true => reporter.json(json!({ "current": current })),
                    false => println!("{summary}"),
                }
                exit::OK
            }
            Outcome::Failed {
                code,
                reason,
                message,
            } => {
                reporter.failure(&reason, &message, code);
                code
            }
        }
    }
}

/// Runs `wait` until it ends or `timeout` passes; zero waits for ever.
pub(super) async fn within<T>(timeout: Duration, wait: impl Future<Output = T>) -> Option<T> {
    if timeout.is_zero() {
        Some(wait.await)
    } else {
        tokio::time::timeout(timeout, wait).await.ok()
    }
}

/// Progress lines on stderr: the first at once, then at most one every
/// [`PROGRESS_EVERY`].
pub(super) struct Progress {
    last: Option<Instant>,
}

impl Progress {
    pub(super) fn new() -> Self {
        Progress { last: None }
    }

    pub(super) fn report(&mut self, line: &str) {
        if self.last.is_some_and(|at| at.elapsed() < PROGRESS_EVERY) {
            return;
        }
        eprintln!("{line}");
        self.last = Some(Instant::now());
    }
}

/// An error and its causes, each once: kube's errors repeat their cause in
/// their own text, hyper's do not.
fn with_causes(error: &dyn error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

// --- Kubernetes mode ----------------------------------------------------------

/// What the Kubernetes mode waits for, as its messages name it.
struct Goal {
    name: String,
    namespace: String,
    /// As given: a version for SQL migrations, the tool's revision for `spec.job`.
    revision: Option<String>,
}

impl fmt::Display for Goal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SchemaMigration {}/{} to be Ready",
            self.namespace, self.name
        )?;
        if let Some(revision) = &self.revision {
            write!(f, " at revision {revision} or above")?;
        }
        Ok(())
    }
}

async fn wait_for_migration(args: &WaitArgs, name: String) -> Outcome {
    let client = match crate::kube_client::client().await {
        Ok(client) => client,
        Err(error) => {
            return Outcome::failed(
                exit::FAILED,
                "KubernetesUnavailable",
                format!(
                    "cannot set up a Kubernetes client: {}; in a pod, check the service \
                     account; elsewhere, KUBECONFIG and the current context",
                    with_causes(&error)
                ),
            );
        }
    };
    // A downward-API variable can be set but empty; that is no namespace.
    let namespace = args
        .namespace
        .clone()
        .filter(|namespace| !namespace.is_empty())
        .unwrap_or_else(|| client.default_namespace().to_string());
    let goal = Goal {
        name,
        namespace,
        revision: args.revision.clone(),
    };
    let api = Api::namespaced(client, &goal.namespace);
    let mut seen = None;
    let watched = within(
        args.timeout,
        watch_migration(api, &goal, &mut seen, &mut Progress::new()),
    )
    .await;
    watched.unwrap_or_else(|| {
        let seen = seen.unwrap_or_else(|| "no answer from the Kubernetes API server".into());
        Outcome::failed(
            exit::TIMEOUT,
            "Timeout",
            format!(
                "timed out after {} waiting for {goal}; last seen: {seen}",
                format_duration(args.timeout)
            ),
        )
    })
}

/// Watches the SchemaMigration until it is Ready, Stalled or gone, keeping
/// in `seen` what it last said. Transient API errors are retried with
/// kube's backoff; the watch lists and watches by name, so RBAC may limit it
/// to this one object.
async fn watch_migration(
    api: Api<SchemaMigration>,
    goal: &Goal,
    seen: &mut Option<String>,
    progress: &mut Progress,
) -> Outcome {
    let mut events = pin!(watcher::watch_object(api, &goal.name).default_backoff());
    while let Some(event) = events.next().await {
        let now = match event {
            Ok(Some(migration)) => match judge(&migration, goal.revision.as_deref()) {
                Verdict::Reached { current } => return ready(goal, &migration, current),
                Verdict::Stalled { reason, message } => return stalled(goal, &reason, &message),
                Verdict::Waiting(now) => now,
            },
            Ok(None) => return not_found(goal),
            Err(error) => match refusal(&error, goal) {
                Some(outcome) => return outcome,
                None => format!("cannot watch it: {}", describe_watch_error(&error)),
            },
        };
        progress.report(&format!("waiting for {goal}: {now}"));
        *seen = Some(now);
    }
    Outcome::failed(
        exit::FAILED,
        "WatchEnded",
        format!("the watch of {goal} ended unexpectedly"),
    )
}

fn ready(goal: &Goal, migration: &SchemaMigration, current: Option<Version>) -> Outcome {
    // A job's tool names its revisions; the status says them as they are.
    let at = match (&migration.spec.job, current) {
        (Some(_), _) => migration
            .status
            .as_ref()
            .and_then(|s| s.current_revision.clone())
            .unwrap_or_else(|| REVISION_NONE.into()),
        (None, current) => current.map_or_else(|| REVISION_NONE.into(), |v| v.to_string()),
    };
    Outcome::Reached {
        summary: format!(
            "SchemaMigration {}/{} is Ready at revision {at}",
            goal.namespace, goal.name
        ),
        current,
    }
}

fn stalled(goal: &Goal, reason: &str, message: &str) -> Outcome {
    Outcome::failed(
        exit::REFUSED,
        "Stalled",
        format!(
            "SchemaMigration {}/{} is Stalled: {reason}: {message}; the operator will not \
             retry until a person acts",
            goal.namespace, goal.name
        ),
    )
}

/// A SchemaMigration is created with the app's other objects; one that does
/// not exist is a wrong name or namespace, and the kubelet runs the init
/// container again in any case.
fn not_found(goal: &Goal) -> Outcome {
    Outcome::failed(
        exit::FAILED,
        "NotFound",
        format!(
            "SchemaMigration {} does not exist in namespace {}; check --migration and \
             --namespace",
            goal.name, goal.namespace
        ),
    )
}

/// The API server's answer inside a watch error, if it gave one.
fn api_answer(error: &watcher::Error) -> Option<(u16, &str)> {
    match error {
        watcher::Error::InitialListFailed(kube::Error::Api(status))
        | watcher::Error::WatchStartFailed(kube::Error::Api(status))
        | watcher::Error::WatchFailed(kube::Error::Api(status))
        | watcher::Error::WatchError(status) => Some((status.code, status.message.as_str())),
        _ => None,
    }
}

fn describe_watch_error(error: &watcher::Error) -> String {
    match api_answer(error) {
        Some((code, message)) => format!("the API server answered {code}: {message}"),
        None => with_causes(error),
    }
}

/// Answers that no retry changes: wrong credentials, missing RBAC, no CRD.
fn refusal(error: &watcher::Error, goal: &Goal) -> Option<Outcome> {
    let (code, message) = api_answer(error)?;
    let (reason, text) = match code {
        401 => (
            "Unauthorized",
            format!("the Kubernetes API server did not accept the credentials: {message}"),
        ),
        403 => (
            "Forbidden",
            format!(
                "not allowed to watch SchemaMigration {} in namespace {}: {message}; grant the \
                 pod's service account list and watch on schemamigrations.schemaop.dev",
                goal.name, goal.namespace
            ),
        ),
        404 => (
            "CrdNotInstalled",
            format!(
                "the API server does not know SchemaMigrations ({message}); install the CRD: \
                 schemaop crd | kubectl apply -f -"
            ),
        ),
        _ => return None,
    };
    Some(Outcome::failed(exit::FAILED, reason, text))
}

// --- database mode ------------------------------------------------------------

async fn wait_for_database(
    args: &WaitArgs,
    revision: Option<Version>,
    global: &GlobalArgs,
    reporter: &Reporter,
) -> Result<Outcome, CliError> {
    // The folder is read only when it says what to wait for: an init
    // container given --revision need not carry the migrations.
    let source = match revision {
        Some(_) => MigrationSource::default(),
        None => MigrationSource::from_dir(&global.dir)?,
    };
    let Some(revision) = revision.or(source.latest()) else {
        return Err(CliError::Usage(format!(
            "{} holds no migration to wait for; give --revision, or --dir with the migrations",
            global.dir.display()
        )));
    };
    let database = super::database(global)?;
    reporter.set_database(&database);
    let migrator = Migrator::new(&source, database, super::options(global));
    let mut seen = None;
    let polled = within(
        args.timeout,
        poll_history(&migrator, revision, &mut seen, &mut Progress::new()),
    )
    .await;
    Ok(polled.unwrap_or_else(|| timed_out(&migrator, revision, args.timeout, seen)))
}

/// Reads the history every [`POLL_INTERVAL`] until it reaches `revision` or
/// is blocked, keeping in `seen` the last reading. A database that is down,
/// not accepting connections yet, or refusing the role is tried again.
async fn poll_history(
    migrator: &Migrator<'_>,
    revision: Version,
    seen: &mut Option<Result<History, Error>>,
    progress: &mut Progress,
) -> Outcome {
    tracing::debug!(interval = ?POLL_INTERVAL, %revision, "polling the history table");
    let mut session = None;
    loop {
        let reading = read_history(migrator, &mut session).await;
        let now = match &reading {
            Ok(history) => match judge_history(history, revision) {
                Verdict::Reached { current } => {
                    return Outcome::Reached {
                        summary: format!(
                            "{} is at revision {}",
                            migrator.database().redacted(),
                            base_text(current)
                        ),
                        current,
                    };
                }
                Verdict::Stalled { reason, message } => {
                    return Outcome::failed(exit::REFUSED, &reason, message);
                }
                Verdict::Waiting(at) => format!("database at {at}"),
            },
            Err(error) => describe_database_error(error),
        };
        progress.report(&format!("waiting for revision {revision}: {now}"));
        *seen = Some(reading);
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Reads the history on the open session, or on a new one. The session is
/// kept for the next reading only if this one worked, so a dropped
/// connection or a restarted server is met with a fresh connection.
async fn read_history(
    migrator: &Migrator<'_>,
    session: &mut Option<Session>,
) -> Result<History, Error> {
    let open = match session.take() {
        Some(open) => open,
        None => migrator.connect().await?,
    };
    let history = migrator.history(&open).await;
    if history.is_ok() {
        *session = Some(open);
    }
    history
}

/// A short account of a failed reading for progress lines; the engine's
/// messages name the database without its password.
fn describe_database_error(error: &Error) -> String {
    match error {
        Error::Unreachable { target, reason } => format!("cannot connect to {target} ({reason})"),
        Error::ConnectionRefused { target } => {
            format!("cannot connect to {target} (nothing accepts connections there yet)")
        }
        Error::AuthenticationFailed {
            target,
            user,
            reason,
        } => format!("{target} refused user {user:?} ({reason})"),
        other => other.to_string(),
    }
}

fn timed_out(
    migrator: &Migrator<'_>,
    revision: Version,
    timeout: Duration,
    seen: Option<Result<History, Error>>,
) -> Outcome {
    let waited = format!(
        "timed out after {} waiting for revision {revision}",
        format_duration(timeout)
    );
    let database = migrator.database().redacted();
    match seen {
        Some(Ok(history)) => Outcome::failed(
            exit::TIMEOUT,
            "Timeout",
            format!(
                "{waited}: {database} is at {}",
                base_text(history.current())
            ),
        ),
        Some(Err(error)) => Outcome::failed(
            super::exit_code(&error),
            error.reason(),
            format!("{waited}: {error}"),
        ),
        None => Outcome::failed(
            exit::UNREACHABLE,
            "DatabaseUnreachable",
            format!("{waited}: no answer from {database}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::{Arc, Mutex};

    use http::{Request, Response, StatusCode};
    use kube::client::Body;
    use serde_json::Value;

    use super::*;
    use crate::crd::conditions::RECONCILING;
    use crate::engine::history::AppliedMigration;
    use crate::engine::{Checksum, Database};

    const GENERATION: i64 = 3;

    /// A SchemaMigration as the API server returns it, at [`GENERATION`].
    fn migration(status: Option<SchemaMigrationStatus>) -> SchemaMigration {
        let mut migration: SchemaMigration = serde_json::from_value(json!({
            "apiVersion": "schemaop.dev/v1alpha1",
            "kind": "SchemaMigration",
            "metadata": {
                "name": "app", "namespace": "apps",
                "generation": GENERATION, "resourceVersion": "7",
            },
            "spec": {
                "database": { "urlSecretRef": { "name": "app-db", "key": "url" } },
                "source": { "inline": { "1_init.sql": "CREATE TABLE t ();" } },
            },
        }))
        .expect("a valid SchemaMigration");
        migration.status = status;
        migration
    }

    /// A status as the operator writes it: the three conditions with one
    /// reason, for `generation`.
    fn status(
        generation: i64,
        current: &str,
        [ready, reconciling, stalled]: [bool; 3],
        reason: &str,
        message: &str,
    ) -> SchemaMigrationStatus {
        let mut status = SchemaMigrationStatus {
            observed_generation: Some(generation),
            current_revision: Some(current.into()),
            target_revision: Some(current.into()),
            ..Default::default()
        };
        for (type_, holds) in [
            (READY, ready),
            (RECONCILING, reconciling),
            (STALLED, stalled),
        ] {
            status.set_condition(
                Condition::new(type_, holds, reason, message).observed_generation(Some(generation)),
            );
        }
        status
    }

    fn up_to_date(current: &str) -> SchemaMigrationStatus {
        status(
            GENERATION,
            current,
            [true, false, false],
            "UpToDate",
            "the database is at its target",
        )
    }

    fn waiting_text(verdict: Verdict) -> String {
        match verdict {
            Verdict::Waiting(text) => text,
            other => panic!("expected to wait, got {other:?}"),
        }
    }

    /// A SchemaMigration of `spec.job` with Alembic, at `heads`, having
    /// reached `reached` by the recorded graph.
    fn alembic_job(heads: &str, reached: Option<&[&str]>) -> SchemaMigration {
        let mut migration = migration(Some(up_to_date(heads)));
        migration.spec.source = None;
        migration.spec.job = Some(
            serde_json::from_value(json!({
                "image": "registry.example.com/app:1.4.2",
                "command": ["alembic", "upgrade", "head"],
                "tool": "alembic",
            }))
            .expect("a job source"),
        );
        if let Some(status) = migration.status.as_mut() {
            status.reached_revisions = reached.map(|r| r.iter().map(|s| s.to_string()).collect());
        }
        migration
    }

    #[test]
    fn a_job_is_judged_by_its_tools_revisions_not_as_versions() {
        let at_head = alembic_job("ae1027a6acf", Some(&["1975ea83b712", "ae1027a6acf"]));

        assert_eq!(
            judge(&at_head, Some("ae1027a6acf")),
            Verdict::Reached { current: None }
        );
        assert_eq!(
            judge(&at_head, Some("1975ea83b712")),
            Verdict::Reached { current: None },
            "an ancestor of the head"
        );
        let text = waiting_text(judge(&at_head, Some("27c6a30d7c24")));
        assert!(text.contains("alembic is at ae1027a6acf"), "{text}");
        let no_graph = alembic_job("ae1027a6acf", None);
        assert!(matches!(
            judge(&no_graph, Some("1975ea83b712")),
            Verdict::Waiting(_)
        ));
    }

    #[test]
    fn a_name_given_for_sql_migrations_is_refused_saying_why() {
        let sql = migration(Some(up_to_date("7")));

        let Verdict::Stalled { reason, message } = judge(&sql, Some("ae1027a6acf")) else {
            panic!("expected a refusal");
        };

        assert_eq!(reason, "InvalidRevision");
        assert!(message.contains("runs SQL migrations"), "{message}");
        assert_eq!(
            judge(&sql, Some("7")),
            Verdict::Reached {
                current: Some(Version(7))
            }
        );
    }

    #[test]
    fn ready_at_or_above_the_revision_is_reached() {
        let ready = migration(Some(up_to_date("7")));
        for wanted in [None, Some(Version(3)), Some(Version(7))] {
            assert_eq!(
                judge_migration(&ready, wanted),
                Verdict::Reached {
                    current: Some(Version(7))
                },
                "{wanted:?}"
            );
        }
    }

    #[test]
    fn ready_below_the_revision_waits_and_says_where_it_is() {
        let text = waiting_text(judge_migration(
            &migration(Some(up_to_date("5"))),
            Some(Version(7)),
        ));
        assert!(text.contains("Ready at revision 5, below 7"), "{text}");
    }

    #[test]
    fn revisions_compare_as_numbers() {
        let ready = migration(Some(up_to_date("0010")));
        assert_eq!(
            judge_migration(&ready, Some(Version(9))),
            Verdict::Reached {
                current: Some(Version(10))
            }
        );
    }

    #[test]
    fn a_status_for_an_older_generation_is_not_trusted() {
        let mut old = up_to_date("7");
        old.observed_generation = Some(GENERATION - 1);
        let text = waiting_text(judge_migration(&migration(Some(old)), None));
        assert!(text.contains("generation 3"), "{text}");
        assert!(text.contains("for generation 2"), "{text}");
    }

    #[test]
    fn a_ready_condition_for_an_older_generation_is_not_trusted() {
        let mut status = up_to_date("7");
        status.conditions[0].observed_generation = Some(GENERATION - 1);
        assert!(matches!(
            judge_migration(&migration(Some(status)), None),
            Verdict::Waiting(_)
        ));
    }

    #[test]
    fn stalled_needs_a_person() {
        let status = status(
            GENERATION,
            "5",
            [false, false, true],
            "ChecksumMismatch",
            "6_add_index.sql changed after it was applied",
        );
        assert_eq!(
            judge_migration(&migration(Some(status)), Some(Version(7))),
            Verdict::Stalled {
                reason: "ChecksumMismatch".into(),
                message: "6_add_index.sql changed after it was applied".into(),
            }
        );
    }

    #[test]
    fn a_stall_of_an_older_spec_is_waited_out() {
        let status = status(
            GENERATION - 1,
            "5",
            [false, false, true],
            "TargetNotFound",
            "no migration 9",
        );
        assert!(matches!(
            judge_migration(&migration(Some(status)), None),
            Verdict::Waiting(_)
        ));
    }

    #[test]
    fn no_status_waits_for_the_operator() {
        let text = waiting_text(judge_migration(&migration(None), None));
        assert!(text.contains("operator has not reported"), "{text}");
    }

    #[test]
    fn revision_none_is_below_every_version() {
        let ready = migration(Some(up_to_date("none")));
        let text = waiting_text(judge_migration(&ready, Some(Version(1))));
        assert!(text.contains("Ready at revision none, below 1"), "{text}");
        // Without a revision to reach, Ready is enough.
        assert_eq!(
            judge_migration(&ready, None),
            Verdict::Reached { current: None }
        );
    }

    #[test]
    fn not_ready_shows_the_reason_message_and_revision() {
        let status = status(
            GENERATION,
            "5",
            [false, true, false],
            "Migrating",
            "applying 2 migration(s) to go from 5 to 7",
        );
        let text = waiting_text(judge_migration(&migration(Some(status)), None));
        assert_eq!(
            text,
            "not Ready (Migrating: applying 2 migration(s) to go from 5 to 7), at revision 5"
        );
    }

    // --- the history table ---

    fn row(version: i64, state: RecordState, error: Option<&str>) -> AppliedMigration {
        AppliedMigration {
            version: Version(version),
            description: "m".into(),
            checksum: Checksum::of("m"),
            state,
            applied_at: jiff::Timestamp::UNIX_EPOCH,
            duration_ms: 1,
            applied_by: "ci".into(),
            error: error.map(str::to_string),
        }
    }

    fn history(rows: Vec<AppliedMigration>) -> History {
        History {
            exists: true,
            records: rows,
        }
    }

    #[test]
    fn history_at_or_above_the_revision_is_reached() {
        let history = history(vec![
            row(1, RecordState::Applied, None),
            row(2, RecordState::Applied, None),
        ]);
        assert_eq!(
            judge_history(&history, Version(2)),
            Verdict::Reached {
                current: Some(Version(2))
            }
        );
        assert_eq!(
            judge_history(&history, Version(1)),
            Verdict::Reached {
                current: Some(Version(2))
            }
        );
    }

    #[test]
    fn history_below_the_revision_waits_and_shows_a_running_migration() {
        let history = history(vec![
            row(1, RecordState::Applied, None),
            row(2, RecordState::Applying, None),
        ]);
        assert_eq!(
            judge_history(&history, Version(2)),
            Verdict::Waiting("1, applying 2".into())
        );
        assert_eq!(
            judge_history(&History::default(), Version(1)),
            Verdict::Waiting("base (no history table yet)".into())
        );
    }

    #[test]
    fn a_failed_no_transaction_migration_blocks() {
        let history = history(vec![
            row(1, RecordState::Applied, None),
            row(2, RecordState::ApplyFailed, Some("division by zero")),
        ]);
        let Verdict::Stalled { reason, message } = judge_history(&history, Version(2)) else {
            panic!("expected a block");
        };
        assert_eq!(reason, "MigrationBlocked");
        assert!(message.contains("migration 2 failed while being applied (division by zero)"));
        assert!(message.contains("--mark-applied 2"), "{message}");
    }

    #[test]
    fn timing_out_reports_the_last_reading_and_picks_the_exit_code() {
        let source = MigrationSource::default();
        let database = Database::from_url("postgres://app:hunter2@db.example/app").unwrap();
        let migrator = Migrator::new(&source, database, Default::default());
        let at_one = Ok(history(vec![row(1, RecordState::Applied, None)]));
        let down = Err(Error::Unreachable {
            target: migrator.database().redacted(),
            reason: "connection refused".into(),
        });
        let second = Duration::from_secs(1);
        let cases = [
            (
                Some(at_one),
                exit::TIMEOUT,
                "postgres://app@db.example:5432/app is at 1",
            ),
            (Some(down), exit::UNREACHABLE, "connection refused"),
            (
                None,
                exit::UNREACHABLE,
                "no answer from postgres://app@db.example",
            ),
        ];
        for (seen, code, says) in cases {
            let Outcome::Failed {
                code: got, message, ..
            } = timed_out(&migrator, Version(2), second, seen)
            else {
                panic!("a timeout is a failure");
            };
            assert_eq!(got, code, "{message}");
            assert!(message.starts_with("timed out after 1s waiting for revision 2: "));
            assert!(message.contains(says), "{message}");
            assert!(!message.contains("hunter2"), "{message}");
        }
    }

    // --- watching through a fake API server ---

    /// The requests a fake API server was sent, as `path?query`.
    type Requests = Arc<Mutex<Vec<String>>>;

    /// A client whose API server answers the watcher's first request, the
    /// initial list, with `list`, and every later one, a watch, with
    /// `events`, one per line.
    fn fake_api(list: Response<Body>, events: Vec<Value>) -> (Api<SchemaMigration>, Requests) {
        let requests = Requests::default();
        let sent = requests.clone();
        let list = Mutex::new(Some(list));
        let service = tower::service_fn(move |request: Request<Body>| {
            if let Ok(mut sent) = sent.lock() {
                sent.push(request.uri().to_string());
            }
            let response = list.lock().ok().and_then(|mut list| list.take());
            let response = response.unwrap_or_else(|| {
                let lines: Vec<String> = events.iter().map(Value::to_string).collect();
                respond(StatusCode::OK, lines.join("\n").into_bytes())
            });
            async move { Ok::<_, Infallible>(response) }
        });
        let api = Api::namespaced(kube::Client::new(service, "apps"), "apps");
        (api, requests)
    }

    fn respond(status: StatusCode, body: Vec<u8>) -> Response<Body> {
        Response::builder()
            .status(status)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .expect("a valid response")
    }

    fn list_of(items: &[SchemaMigration]) -> Response<Body> {
        let list = json!({
            "apiVersion": "schemaop.dev/v1alpha1",
            "kind": "SchemaMigrationList",
            "metadata": { "resourceVersion": "7" },
            "items": items,
        });
        respond(StatusCode::OK, list.to_string().into_bytes())
    }

    fn modified(migration: &SchemaMigration) -> Value {
        json!({ "type": "MODIFIED", "object": migration })
    }

    fn goal(revision: Option<Version>) -> Goal {
        Goal {
            name: "app".into(),
            namespace: "apps".into(),
            revision: revision.map(|v| v.to_string()),
        }
    }

    async fn watch(api: Api<SchemaMigration>, goal: &Goal) -> (Outcome, Option<String>) {
        let mut seen = None;
        let mut progress = Progress::new();
        let watching = watch_migration(api, goal, &mut seen, &mut progress);
        let outcome = tokio::time::timeout(Duration::from_secs(10), watching)
            .await
            .expect("the watch decides within 10s");
        (outcome, seen)
    }

    #[tokio::test]
    async fn a_watch_waits_until_the_migration_is_ready_at_the_revision() {
        let migrating = status(
            GENERATION,
            "5",
            [false, true, false],
            "Migrating",
            "applying 2 migration(s) to go from 5 to 7",
        );
        let (api, requests) = fake_api(
            list_of(&[migration(Some(migrating))]),
            vec![
                modified(&migration(Some(up_to_date("6")))),
                modified(&migration(Some(up_to_date("7")))),
            ],
        );
        let (outcome, seen) = watch(api, &goal(Some(Version(7)))).await;
        assert_eq!(
            outcome,
            Outcome::Reached {
                summary: "SchemaMigration apps/app is Ready at revision 7".into(),
                current: Some(Version(7)),
            }
        );
        let seen = seen.expect("it saw revision 6 on the way");
        assert!(seen.contains("Ready at revision 6, below 7"), "{seen}");
        // A list, then a watch, both naming the object: RBAC can limit them
        // to it with resourceNames.
        let requests = requests.lock().expect("the requests").clone();
        assert!(requests.len() >= 2, "{requests:?}");
        for (i, request) in requests.iter().enumerate() {
            assert!(
                request
                    .starts_with("/apis/schemaop.dev/v1alpha1/namespaces/apps/schemamigrations?"),
                "{request}"
            );
            assert!(
                request.contains("fieldSelector=metadata.name%3Dapp"),
                "{request}"
            );
            assert_eq!(request.contains("watch=true"), i > 0, "{request}");
        }
    }

    #[tokio::test]
    async fn a_watch_stops_at_a_stall() {
        let status = status(
            GENERATION,
            "5",
            [false, false, true],
            "MigrationFailed",
            "6_b.sql failed: syntax error",
        );
        let (api, _) = fake_api(list_of(&[migration(Some(status))]), vec![]);
        let (outcome, _) = watch(api, &goal(None)).await;
        let Outcome::Failed { code, message, .. } = outcome else {
            panic!("a stall fails the wait");
        };
        assert_eq!(code, exit::REFUSED);
        assert!(
            message.contains("Stalled: MigrationFailed: 6_b.sql failed: syntax error"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn a_watch_of_a_missing_migration_names_the_namespace() {
        let (api, _) = fake_api(list_of(&[]), vec![]);
        let (outcome, _) = watch(api, &goal(None)).await;
        assert_eq!(
            outcome,
            Outcome::failed(
                exit::FAILED,
                "NotFound",
                "SchemaMigration app does not exist in namespace apps; check --migration and \
                 --namespace"
                    .into()
            )
        );
    }

    #[tokio::test]
    async fn a_watch_without_rbac_fails_at_once() {
        let forbidden = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "reason": "Forbidden", "code": 403,
            "message": "schemamigrations.schemaop.dev \"app\" is forbidden: User \"system:serviceaccount:apps:app\" cannot list resource",
        });
        let (api, _) = fake_api(
            respond(StatusCode::FORBIDDEN, forbidden.to_string().into_bytes()),
            vec![],
        );
        let (outcome, _) = watch(api, &goal(None)).await;
        let Outcome::Failed {
            code,
            reason,
            message,
        } = outcome
        else {
            panic!("a 403 fails the wait");
        };
        assert_eq!((code, reason.as_str()), (exit::FAILED, "Forbidden"));
        assert!(message.contains("cannot list resource"), "{message}");
        assert!(message.contains("namespace apps"), "{message}");
    }
}
