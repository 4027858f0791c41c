//! Job mode's reconcile: the requests around [`job::build`] and [`job::step`].
//! Jobs are listed by their owner label, created (or adopted on
//! AlreadyExists), replaced after a spec change once the old one is gone,
//! and read when they end: the tool's version table after a success, the
//! failed container's log after a failure.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, LogParams, PostParams};
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};

use super::decide::{self, Finding, RECHECK, Verdict};
use super::error::{Error, Result};
use super::job::{self, CONTAINER, Found, JobState, OWNER_LABEL, POD_JOB_LABEL, Step};
use super::{Context, inputs, report};
use crate::adapters::{self, Tool, ToolState, alembic};
use crate::crd::{JobSource, RunPhase, RunStatus, SchemaMigration, SchemaMigrationStatus};
use crate::engine::{Database, MigrationSource, Migrator, MigratorOptions};

/// How soon a reconcile looks again while an old Job is being deleted, or
/// while a Job runs (for its pod's phase; the Job watch brings the end).
const POLL: Duration = Duration::from_secs(5);

/// Brings a job-mode SchemaMigration towards its target.
pub async fn reconcile(
    obj: &Arc<SchemaMigration>,
    ctx: &Arc<Context>,
    source: &JobSource,
    retry_after: Duration,
) -> Result<Action> {
    let desired = match job::build(obj, source, &ctx.config.job) {
        Ok(desired) => desired,
        Err(error) => return invalid(obj, ctx, error, retry_after).await,
    };
    // The Secret is read before a Job is made: a missing one stalls here,
    // naming it, rather than leaving a pod stuck in CreateContainerConfigError.
    let database = match inputs::database(&ctx.client, obj).await {
        Ok(database) => database,
        Err(error) => return invalid(obj, ctx, error, retry_after).await,
    };
    let name = desired.name_any();
    let namespace = obj.namespace().unwrap_or_default();
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &namespace);
    let listed = jobs
        .list(&ListParams::default().labels(&format!(
            "{OWNER_LABEL}={}",
            job::owner_label_value(&obj.name_any())
        )))
        .await?;
    let ours: Vec<&Job> = listed.items.iter().filter(|j| owned_by(j, obj)).collect();
    let found: Vec<Found> = ours.iter().map(|j| Found::from_job(j)).collect();
    let run = obj.status.as_ref().and_then(|s| s.run.as_ref());

    match job::step(&name, &found, run) {
        Step::StopOld { delete, old } => {
            for old in &delete {
                delete_job(&jobs, old, &DeleteParams::foreground()).await?;
            }
            let verdict = migrating(format!(
                "stopping Job {} of an older spec; Job {name} starts once it is gone",
                old.join(", ")
            ));
            write(obj, ctx, &verdict, run.cloned(), None).await?;
            Ok(Action::requeue(POLL))
        }
        Step::Create => {
            // Leadership is over: the next leader makes the Job.
            if !ctx.runs.accepting() {
                return Ok(Action::await_change());
            }
            let job = match jobs.create(&PostParams::default(), &desired).await {
                Ok(created) => {
                    report::event(
                        &ctx.recorder,
                        obj,
                        false,
                        "JobCreated",
                        "Migrate",
                        format!("created Job {name} to run the migration command"),
                    )
                    .await;
                    created
                }
                // Another leader made it first: the same name is the same
                // spec, so it is adopted as it is.
                Err(kube::Error::Api(e)) if e.code == 409 => jobs.get(&name).await?,
                Err(e) => return Err(e.into()),
            };
            running(obj, ctx, &job).await
        }
        Step::Running => {
            let job = ours
                .iter()
                .find(|j| j.name_any() == name)
                .expect("step found it");
            running(obj, ctx, job).await
        }
        Step::Succeeded { cleanup } => {
            let job = ours
                .iter()
                .find(|j| j.name_any() == name)
                .expect("step found it");
            let run = run_of(job, RunPhase::Succeeded, None);
            let action = succeeded(obj, ctx, source, database, run, retry_after).await?;
            // The status records the success: the Job has done its work. Older
            // finished Jobs, failed ones kept for inspection among them, go too.
            for done in &cleanup {
                delete_job(&jobs, done, &DeleteParams::background()).await?;
            }
            Ok(action)
        }
        Step::Recorded(RunPhase::Succeeded) => {
            let run = run.cloned().unwrap_or_default();
            succeeded(obj, ctx, source, database, run, retry_after).await
        }
        Step::Recorded(_) => {
            // Reported already; a spec change that runs nothing new (a
            // field the Job does not use) is still observed.
            let stalled = obj
                .status
                .as_ref()
                .and_then(|s| s.condition(crate::crd::conditions::STALLED))
                .filter(|c| c.is_true());
            if let Some(stalled) = stalled {
                let verdict = Verdict {
                    ready: false,
                    reconciling: false,
                    stalled: true,
                    reason: stalled.reason.clone(),
                    message: stalled.message.clone(),
                };
                write(obj, ctx, &verdict, run.cloned(), None).await?;
            }
            Ok(Action::requeue(RECHECK))
        }
        Step::Failed { reason, message } => {
            let job = ours
                .iter()
                .find(|j| j.name_any() == name)
                .expect("step found it");
            // The password as it is, wherever the tool printed it; the URL
            // forms are hidden again in the tail, whatever password they hold.
            let log = failed_log(ctx, &namespace, &name)
                .await
                .map(|text| database.hide_password(&text));
            let verdict = Verdict {
                ready: false,
                reconciling: false,
                stalled: true,
                reason: "JobFailed".into(),
                message: job::failure_message(&name, &reason, &message, log),
            };
            ctx.metrics.reconcile_failed(&verdict.reason);
            write(
                obj,
                ctx,
                &verdict,
                Some(run_of(job, RunPhase::Failed, None)),
                None,
            )
            .await?;
            report::event(
                &ctx.recorder,
                obj,
                true,
                "JobFailed",
                "Migrate",
                verdict.message,
            )
            .await;
            Ok(Action::requeue(RECHECK))
        }
    }
}

/// A problem with the spec or its Secret goes to status; the API server's
/// failures are errors.
async fn invalid(
    obj: &SchemaMigration,
    ctx: &Context,
    error: Error,
    retry_after: Duration,
) -> Result<Action> {
    match error {
        Error::Kube(e) => Err(Error::Kube(e)),
        error => super::report(obj, ctx, &Finding::InvalidInput(&error), retry_after).await,
    }
}

/// The Job runs: Migrating, with its name and its newest pod's phase.
async fn running(obj: &SchemaMigration, ctx: &Context, job: &Job) -> Result<Action> {
    let name = job.name_any();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    let listed = pods
        .list(&ListParams::default().labels(&format!("{POD_JOB_LABEL}={name}")))
        .await?;
    let newest = listed
        .items
        .iter()
        .max_by_key(|p| p.metadata.creation_timestamp.clone().map(|t| t.0));
    let phase = newest
        .and_then(|p| p.status.as_ref())
        .and_then(|s| s.phase.clone());
    let shown = phase.as_deref().unwrap_or("not yet created");
    let verdict = migrating(format!(
        "Job {name} runs the migration command; its pod is {shown}"
    ));
    write(
        obj,
        ctx,
        &verdict,
        Some(run_of(job, RunPhase::Running, phase)),
        None,
    )
    .await?;
    Ok(Action::requeue(POLL))
}

/// The Job succeeded: Ready, at the revision the tool's version table shows.
async fn succeeded(
    obj: &SchemaMigration,
    ctx: &Context,
    source: &JobSource,
    database: Database,
    run: RunStatus,
    retry_after: Duration,
) -> Result<Action> {
    let (state, reached) = match read_tool(database, source, &obj.spec.history).await {
        Ok(read) => read,
        Err(error) => {
            // The run is recorded as succeeded all the same, so the Job is
            // never run again for want of a reading; the next look reads again.
            let finding = Finding::DatabaseUnavailable(&error);
            let (verdict, _) = decide::decide(&finding, retry_after);
            if !verdict.reconciling {
                ctx.metrics.reconcile_failed(&verdict.reason);
            }
            write(obj, ctx, &verdict, Some(run), None).await?;
            return Ok(Action::requeue(if verdict.reconciling {
                retry_after
            } else {
                RECHECK
            }));
        }
    };
    let job = run.job.clone().unwrap_or_default();
    let (verdict, current) = match (&state.needs_a_person, source.tool) {
        (Some(problem), _) => (
            Verdict {
                ready: false,
                reconciling: false,
                stalled: true,
                reason: "MigrationBlocked".into(),
                message: format!("Job {job} succeeded, but {}: {problem}", source.tool),
            },
            Some(state.current_text()),
        ),
        (None, Tool::None) => (
            ready(format!(
                "Job {job} succeeded; tool none keeps no revision to read"
            )),
            None,
        ),
        (None, tool) => (
            ready(format!(
                "Job {job} succeeded; {tool} says the database is at {}",
                state.current_text()
            )),
            Some(state.current_text()),
        ),
    };
    if let Some(current) = &current {
        ctx.metrics.set_current_revision(
            &obj.namespace().unwrap_or_default(),
            &obj.name_any(),
            current,
        );
    }
    let was_ready = obj
        .status
        .as_ref()
        .and_then(|s| s.condition(crate::crd::conditions::READY))
        .is_some_and(|c| c.is_true());
    let revisions = current.map(|current| Revisions { current, reached });
    write(obj, ctx, &verdict, Some(run), revisions).await?;
    if verdict.ready && !was_ready {
        report::event(
            &ctx.recorder,
            obj,
            false,
            "Migrated",
            "Migrate",
            verdict.message,
        )
        .await;
    }
    Ok(Action::requeue(RECHECK))
}

/// The tool's state, and for Alembic every revision reached by the graph
/// `schemaop exec` recorded beside the history, when there is one.
async fn read_tool(
    database: Database,
    source: &JobSource,
    history: &crate::crd::History,
) -> crate::engine::Result<(ToolState, Option<Vec<String>>)> {
    let empty = MigrationSource::default();
    let migrator = Migrator::new(&empty, database, MigratorOptions::default());
    let session = migrator.connect().await?;
    // The CRD's pattern admits only names this parses.
    let table = source.version_table().ok().flatten();
    let state = adapters::read(&session.client, source.tool, table.as_ref()).await?;
    // The graph is keyed by the version table as exec names it: the
    // default one when none is given.
    let graph_key = adapters::VersionTable::for_tool(source.tool, table.as_ref());
    let reached = match (source.tool, &graph_key) {
        (Tool::Alembic, Some(table)) => {
            let history = crate::engine::HistoryTable::new(&history.schema, &history.table);
            let graph = alembic::read_graph(&session.client, &history, &table.to_string()).await?;
            let reached = alembic::reached_revisions(&graph, &state.current);
            (!graph.is_empty() && reached.len() <= MAX_REACHED).then_some(reached)
        }
        _ => None,
    };
    Ok((state, reached))
}

/// At most this many revisions go into `status.reachedRevisions`.
const MAX_REACHED: usize = 2000;

/// The log of the newest failed pod's migration container, or why it could
/// not be read.
async fn failed_log(
    ctx: &Context,
    namespace: &str,
    job: &str,
) -> std::result::Result<String, String> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let listed = pods
        .list(&ListParams::default().labels(&format!("{POD_JOB_LABEL}={job}")))
        .await
        .map_err(|e| format!("listing its pods failed ({})", short(&e)))?;
    let pod = listed
        .items
        .iter()
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed"))
        .max_by_key(|p| p.metadata.creation_timestamp.clone().map(|t| t.0))
        .ok_or_else(|| "its failed pod is gone".to_string())?;
    let params = LogParams {
        container: Some(CONTAINER.into()),
        tail_lines: Some(job::LOG_LINES),
        ..LogParams::default()
    };
    pods.logs(&pod.name_any(), &params)
        .await
        .map_err(|e| format!("reading pod {} failed ({})", pod.name_any(), short(&e)))
}

/// An API error in a few words: its status code and reason.
fn short(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(e) => format!("{} {}", e.code, e.reason),
        other => other.to_string(),
    }
}

async fn delete_job(jobs: &Api<Job>, name: &str, params: &DeleteParams) -> Result<()> {
    match jobs.delete(name, params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn owned_by(job: &Job, obj: &SchemaMigration) -> bool {
    job.owner_references()
        .iter()
        .any(|o| o.controller == Some(true) && Some(&o.uid) == obj.metadata.uid.as_ref())
}

/// The run as the Job tells it.
fn run_of(job: &Job, phase: RunPhase, pod_phase: Option<String>) -> RunStatus {
    let status = job.status.as_ref();
    let failures = status.and_then(|s| s.failed).unwrap_or(0);
    let finished = match &Found::from_job(job).state {
        JobState::Active => None,
        JobState::Succeeded => status.and_then(|s| s.completion_time.clone()),
        JobState::Failed { .. } => status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Failed"))
            .and_then(|c| c.last_transition_time.clone()),
    };
    RunStatus {
        phase: Some(phase),
        attempt: Some(
            failures
                .saturating_add(if phase == RunPhase::Running { 1 } else { 0 })
                .max(1),
        ),
        started_at: status.and_then(|s| s.start_time.clone()).map(|t| t.0),
        finished_at: finished.map(|t| t.0),
        job: Some(job.name_any()),
        pod_phase,
        ..RunStatus::default()
    }
}

fn migrating(message: String) -> Verdict {
    Verdict {
        ready: false,
        reconciling: true,
        stalled: false,
        reason: "Migrating".into(),
        message,
    }
}

fn ready(message: String) -> Verdict {
    Verdict {
        ready: true,
        reconciling: false,
        stalled: false,
        reason: "UpToDate".into(),
        message,
    }
}

/// What the tool's version table said, for the status.
struct Revisions {
    current: String,
    /// Alembic's heads and their ancestors, when the graph is known.
    reached: Option<Vec<String>>,
}

/// Writes the three conditions, the run, and the revisions of job mode.
async fn write(
    obj: &SchemaMigration,
    ctx: &Context,
    verdict: &Verdict,
    run: Option<RunStatus>,
    current: Option<Revisions>,
) -> Result<()> {
    let mut status: SchemaMigrationStatus = obj.status.clone().unwrap_or_default();
    status.observed_generation = obj.metadata.generation;
    status.target_revision = Some(obj.spec.target_revision.clone());
    status.pending_migrations = None;
    if let Some(Revisions { current, reached }) = current {
        status.current_revision = Some(current);
        status.reached_revisions = reached;
    }
    status.run = run;
    decide::set_conditions(&mut status, obj.metadata.generation, verdict);
    report::status(&ctx.client, obj, &status).await
}
