//! The SchemaMigration controller: watches the resources, decides with
//! [`decide`], and hands migrations to supervised [`runs`]. It holds no
//! migration logic of its own; the engine does the work.

pub mod cache;
pub mod decide;
mod error;
#[cfg(test)]
pub(crate) mod fixtures;
pub mod inputs;
pub mod job;
#[cfg(test)]
mod job_scenarios;
mod jobs;
pub mod metrics;
pub mod report;
pub mod runs;
#[cfg(test)]
mod scenarios;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{self, Action};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tokio_util::sync::CancellationToken;

pub use error::{Error, Result};

use crate::crd::{self, SchemaMigration};
use crate::engine::{self, Migrator, plan};
use decide::{Finding, Next};
use metrics::Metrics;
use runs::Runs;

/// How the controller runs; set from `schemaop run`'s flags.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// Watch only this namespace; all namespaces when `None`.
    pub watch_namespace: Option<String>,
    /// How many migrations may run at once, each on its own connection.
    pub max_concurrent_runs: usize,
    /// This replica's name, recorded in the history as who ran a migration.
    pub identity: String,
    /// What the operator brings to the Jobs of `spec.job`.
    pub job: job::JobSettings,
}

/// What every reconcile and run shares.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub runs: Runs,
    pub config: ControllerConfig,
}

impl Context {
    pub fn new(client: Client, config: ControllerConfig, metrics: Arc<Metrics>) -> Arc<Context> {
        let reporter = Reporter {
            controller: "schemaop".into(),
            instance: Some(config.identity.clone()),
        };
        Arc::new(Context {
            recorder: Recorder::new(client.clone(), reporter),
            runs: Runs::new(config.max_concurrent_runs),
            client,
            metrics,
            config,
        })
    }
}

/// Brings one SchemaMigration towards its target. Problems with the resource
/// or the database go to its status; `Err` is only for the API server.
pub async fn reconcile(obj: Arc<SchemaMigration>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile_started();
    let key = ObjectRef::from_obj(&*obj);
    if obj.metadata.deletion_timestamp.is_some() {
        // Deleting a SchemaMigration never touches the database.
        ctx.runs.cancel(&key);
        ctx.metrics
            .forget(&obj.namespace().unwrap_or_default(), &obj.name_any());
        return Ok(Action::await_change());
    }
    let retry_after =
        crd::parse_duration(&obj.spec.retry.min_backoff).unwrap_or(Duration::from_secs(10));

    if obj.spec.suspend {
        // A run already under way finishes, and writes its own status;
        // nothing new starts.
        if ctx.runs.is_active(&key) {
            return Ok(Action::requeue(retry_after));
        }
        return report(&obj, &ctx, &Finding::Suspended, retry_after).await;
    }
    if let Some(source) = &obj.spec.job {
        // The app's own tool, in a Job: nothing below applies, and a SQL run
        // of an earlier spec stops.
        ctx.runs.cancel(&key);
        return jobs::reconcile(&obj, &ctx, source, retry_after).await;
    }
    // A run writes its own progress, and its last status write brings the
    // object back here; until then the reconciler keeps out of its way. The
    // requeue covers a last write that arrives before the run is gone.
    if ctx.runs.is_running(&key, obj.metadata.generation) {
        return Ok(Action::requeue(decide::RECHECK));
    }

    let inputs = match inputs::resolve(&ctx.client, &obj, &ctx.config.identity).await {
        Ok(inputs) => inputs,
        Err(Error::Kube(e)) => return Err(Error::Kube(e)),
        Err(error) => return report(&obj, &ctx, &Finding::InvalidInput(&error), retry_after).await,
    };
    // A run for an older spec is stopped; its transaction rolls back.
    ctx.runs.cancel(&key);

    // One connection and one query: the whole cost of an up-to-date resource.
    let migrator = Migrator::new(
        &inputs.source,
        inputs.database.clone(),
        inputs.options.clone(),
    );
    let history = match read_history(&migrator).await {
        Ok(history) => history,
        Err(error) => {
            return report(
                &obj,
                &ctx,
                &Finding::DatabaseUnavailable(&error),
                retry_after,
            )
            .await;
        }
    };
    let options = engine::PlanOptions {
        direction: inputs.direction,
        allow_out_of_order: inputs.options.allow_out_of_order,
    };
    let plan = match plan::plan(&inputs.source, &history, inputs.target, options) {
        Ok(plan) => plan,
        Err(error) => {
            let finding = Finding::Refused {
                current: history.current(),
                error: &error,
            };
            return report(&obj, &ctx, &finding, retry_after).await;
        }
    };
    if plan.is_up_to_date() {
        let current = decide::revision(plan.current);
        ctx.metrics.set_current_revision(
            &obj.namespace().unwrap_or_default(),
            &obj.name_any(),
            &current,
        );
        return report(&obj, &ctx, &Finding::UpToDate { plan: &plan }, retry_after).await;
    }
    if let Some(failure) = ctx.runs.failure(&key, &inputs.fingerprint) {
        let finding = Finding::FailedBefore {
            plan: &plan,
            reason: &failure.reason,
            message: &failure.message,
        };
        return report(&obj, &ctx, &finding, retry_after).await;
    }

    let finding = Finding::NeedsRun { plan: &plan };
    let (verdict, _) = decide::decide(&finding, retry_after);
    let status = decide::status(
        obj.status.as_ref(),
        obj.metadata.generation,
        &verdict,
        &finding,
    );
    drop(plan);
    ctx.runs.start(ctx.clone(), obj.clone(), inputs, status);
    Ok(Action::await_change())
}

async fn read_history(migrator: &Migrator<'_>) -> engine::Result<engine::History> {
    let session = migrator.connect().await?;
    migrator.history(&session).await
}

/// Writes the status for a finding that starts no run.
async fn report(
    obj: &SchemaMigration,
    ctx: &Context,
    finding: &Finding<'_>,
    retry_after: Duration,
) -> Result<Action> {
    let (verdict, next) = decide::decide(finding, retry_after);
    if !verdict.ready && !verdict.reconciling {
        ctx.metrics.reconcile_failed(&verdict.reason);
    }
    let status = decide::status(
        obj.status.as_ref(),
        obj.metadata.generation,
        &verdict,
        finding,
    );
    let was_stalled = obj
        .status
        .as_ref()
        .and_then(|s| s.condition(crd::conditions::STALLED))
        .is_some_and(|c| c.is_true() && c.reason == verdict.reason);
    report::status(&ctx.client, obj, &status).await?;
    if verdict.stalled && !was_stalled {
        report::event(
            &ctx.recorder,
            obj,
            true,
            &verdict.reason,
            "Reconcile",
            verdict.message.clone(),
        )
        .await;
    }
    Ok(match next {
        Next::Requeue(after) => Action::requeue(after),
        Next::StartRun => Action::await_change(),
    })
}

/// API server failures: try again soon; everything else went to status.
pub fn error_policy(_obj: Arc<SchemaMigration>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(%error, "reconcile failed");
    ctx.metrics.reconcile_failed(error.reason());
    Action::requeue(Duration::from_secs(15))
}

/// Runs the controller until `shutdown`, then stops every run and returns.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    // Each term of leadership starts with no runs; the last term stopped them.
    ctx.runs.reopen();
    let client = ctx.client.clone();
    // Secrets and ConfigMaps are watched as metadata only: the operator never
    // keeps Secret data in memory, and reads a Secret only to use it.
    let (migrations, config_maps, secrets, jobs) = match &ctx.config.watch_namespace {
        Some(ns) => (
            Api::<SchemaMigration>::namespaced(client.clone(), ns),
            Api::<PartialObjectMeta<ConfigMap>>::namespaced(client.clone(), ns),
            Api::<PartialObjectMeta<Secret>>::namespaced(client.clone(), ns),
            Api::<Job>::namespaced(client.clone(), ns),
        ),
        None => (
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client.clone()),
        ),
    };
    // The cache keeps each SchemaMigration trimmed: kubectl's copy of the
    // manifest and the managed fields would otherwise be most of it.
    let (store, writer) = reflector::store();
    // Paged, which a list at any resource version (from the API server's
    // cache) is not: the whole list would be parsed at once.
    let watched = watcher(
        migrations,
        watcher::Config::default().page_size(cache::LIST_PAGE),
    )
    .default_backoff()
    .modify(cache::trim)
    .reflect(writer)
    .applied_objects();
    // Each reconcile opens a session to its database. Unbounded, a start
    // with a thousand SchemaMigrations opened a thousand at once: the server
    // refused most ("too many clients", the application's connections
    // included) and each refusal was retried. Checks are bounded as runs are.
    let checks = u16::try_from(ctx.config.max_concurrent_runs).unwrap_or(u16::MAX);
    let controller = Controller::for_stream(watched, store.clone())
        .with_config(controller::Config::default().concurrency(checks));
    let stop = shutdown.clone();
    controller
        // A Job of spec.job that ends (or goes) wakes its SchemaMigration.
        .owns(jobs, watcher::Config::default().labels(job::OWNER_LABEL))
        .watches(
            config_maps,
            watcher::Config::default(),
            referencing(store.clone(), |spec, name| match &spec.source {
                Some(crd::Source::ConfigMapRefs(refs)) => refs.iter().any(|r| r.name == name),
                Some(crd::Source::Inline(_)) | None => false,
            }),
        )
        .watches(
            secrets,
            watcher::Config::default(),
            referencing(store, |spec, name| match &spec.database {
                crd::Database::UrlSecretRef(r) => r.name == name,
                crd::Database::Connection(c) => {
                    c.password_secret_ref.name == name
                        || c.ca_secret_ref.as_ref().is_some_and(|r| r.name == name)
                }
            }),
        )
        .graceful_shutdown_on(async move { stop.cancelled().await })
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "reconcile ended with an error");
            }
        })
        .await;
    ctx.runs.stop_all().await;
}

/// Maps a changed Secret or ConfigMap to the SchemaMigrations in its
/// namespace that refer to it by name.
fn referencing<K>(
    store: Store<SchemaMigration>,
    refers: fn(&crd::SchemaMigrationSpec, &str) -> bool,
) -> impl Fn(K) -> Vec<ObjectRef<SchemaMigration>> + Send + Sync + 'static
where
    K: ResourceExt,
{
    move |changed: K| {
        let (namespace, name) = (changed.namespace(), changed.name_any());
        store
            .state()
            .iter()
            .filter(|m| m.namespace() == namespace && refers(&m.spec, &name))
            .map(|m| ObjectRef::from_obj(&**m))
            .collect()
    }
}
