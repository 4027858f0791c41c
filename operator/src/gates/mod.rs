//! Readiness gates: a pod that opts in is kept out of its Service's endpoints
//! until the database has the schema it needs.
//!
//! A pod opts in with the label `schemaop.dev/migration: NAME` (a
//! SchemaMigration in its namespace) and the readiness gate
//! `schemaop.dev/schema-ready`; the annotation `schemaop.dev/min-revision`
//! names the version it needs, if it knows. The decision is [`decide`]; this
//! module watches the labelled pods and writes their condition.

pub mod decide;
#[cfg(test)]
mod scenarios;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{self, Action};
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::controller::cache::LIST_PAGE;
use crate::controller::{Context, Error, Result};
use crate::crd::{
    self, Condition, JobSource, RunStatus, SchemaMigration, SchemaMigrationSpec,
    SchemaMigrationStatus,
};
use crate::engine::Version;
use decide::{Gate, Schema};

/// The label that ties a pod to a SchemaMigration in its namespace.
pub const MIGRATION_LABEL: &str = "schemaop.dev/migration";
/// The readiness gate's condition type.
pub const CONDITION_TYPE: &str = "schemaop.dev/schema-ready";
/// The annotation naming the version a pod needs.
pub const MIN_REVISION_ANNOTATION: &str = "schemaop.dev/min-revision";

/// Pods whose gates are decided and written at once.
const GATE_CONCURRENCY: u16 = 16;

/// What a pod's reconcile reads: the operator's context, and the
/// SchemaMigrations from a watch cache, so that a pod costs no GET.
pub struct GateContext {
    pub ctx: Arc<Context>,
    /// Filled by the same watch that wakes the pods of a SchemaMigration,
    /// before it wakes them: a pod never reads an older object than the one
    /// that woke it.
    pub migrations: Store<SchemaMigration>,
}

/// Decides and writes one pod's gate.
pub async fn reconcile(pod: Arc<Pod>, gates: Arc<GateContext>) -> Result<Action> {
    let ctx = &gates.ctx;
    if !has_gate(&pod) || pod.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let namespace = pod.namespace().unwrap_or_default();
    let Some(migration) = pod.labels().get(MIGRATION_LABEL).cloned() else {
        return Ok(Action::await_change());
    };
    // Until the first list is in, a missing SchemaMigration may only be one
    // not listed yet: holding a released pod for it would be wrong.
    if gates.migrations.wait_until_ready().await.is_err() {
        return Ok(Action::requeue(Duration::from_secs(5)));
    }
    let smig = gates
        .migrations
        .get(&ObjectRef::new(&migration).within(&namespace));
    let schema = smig.as_deref().map(Schema::of);

    let existing = condition(&pod);
    // A SchemaMigration the controller has not looked at yet has no target
    // to hold the pod for; its first status, a moment away, wakes the pod
    // again. The pod is not ready meanwhile: a readiness gate without its
    // condition counts as False.
    if existing.is_none() && smig.as_ref().is_some_and(|s| s.status.is_none()) {
        return Ok(Action::await_change());
    }
    let previous = existing.and_then(|c| decide::previous(Some(&c.status), c.message.as_deref()));
    let min_revision = match pod.annotations().get(MIN_REVISION_ANNOTATION) {
        None => Ok(None),
        Some(text) => text
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|v| *v > 0)
            .map(|v| Some(Version(v)))
            .ok_or_else(|| text.clone()),
    };
    let job_tool = smig
        .as_ref()
        .and_then(|s| s.spec.job.as_ref())
        .map(|j| j.tool);
    let gate = match job_tool {
        // The app's own tool: its revisions are names, compared its way.
        Some(tool) => {
            let schema = smig.as_ref().map(|s| decide::JobSchema::of(s, tool));
            let wanted = pod
                .annotations()
                .get(MIN_REVISION_ANNOTATION)
                .map(|t| t.trim());
            decide::decide_job(wanted, previous.as_ref(), schema.as_ref(), &migration)
        }
        None => decide::decide(min_revision, previous.as_ref(), schema.as_ref(), &migration),
    };

    // A pod is patched when what it waits for changes, not when the
    // database moves on: following each migration's progress cost a patch
    // per held pod per step, and one per released pod per later migration.
    // The SchemaMigration's status tells the progress.
    let unchanged = existing.is_some_and(|c| {
        c.status == status_text(&gate)
            && (gate.ready
                || c.reason.as_deref() == Some(gate.reason)
                    && c.message.as_deref().map(decide::wait_of)
                        == Some(decide::wait_of(&gate.message)))
    });
    if unchanged {
        return Ok(Action::await_change());
    }
    let flipped = existing.is_none_or(|c| c.status != status_text(&gate));
    let transition = match existing {
        Some(c) if !flipped => c.last_transition_time.clone(),
        _ => Some(Time(jiff::Timestamp::now())),
    };
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let patch = json!({
        "status": {
            "conditions": [{
                "type": CONDITION_TYPE,
                "status": status_text(&gate),
                "reason": gate.reason,
                "message": gate.message,
                "lastTransitionTime": transition,
            }]
        }
    });
    // A strategic merge keyed on the condition type touches our condition only.
    pods.patch_status(
        &pod.name_any(),
        &PatchParams::default(),
        &Patch::Strategic(&patch),
    )
    .await?;

    if flipped && !gate.ready {
        held_back(ctx, &pod, &gate).await;
    }
    if flipped
        && gate.ready
        && let Some(since) = smig.as_deref().and_then(ready_since)
    {
        ctx.metrics
            .gate_released(jiff::Timestamp::now().duration_since(since).unsigned_abs());
    }
    Ok(Action::await_change())
}

/// Keeps of a pod only what a gate reads and writes: its identity, our
/// label and annotation, its readiness gates and our condition. A pod's
/// containers, environment, managed fields and other conditions are most of
/// its size, and a cluster may have thousands of gated pods.
pub fn trim(pod: &mut Pod) {
    let meta = &mut pod.metadata;
    meta.managed_fields = None;
    meta.owner_references = None;
    meta.finalizers = None;
    meta.generate_name = None;
    if let Some(labels) = meta.labels.as_mut() {
        labels.retain(|key, _| key == MIGRATION_LABEL);
    }
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.retain(|key, _| key == MIN_REVISION_ANNOTATION);
    }
    pod.spec = pod
        .spec
        .take()
        .map(|spec| k8s_openapi::api::core::v1::PodSpec {
            readiness_gates: spec.readiness_gates,
            ..Default::default()
        });
    pod.status = pod
        .status
        .take()
        .map(|status| k8s_openapi::api::core::v1::PodStatus {
            // Collected anew: filtering in place would keep the room of
            // the kubelet's conditions.
            conditions: status.conditions.map(|conditions| {
                let mut ours: Vec<_> = conditions
                    .into_iter()
                    .filter(|c| c.type_ == CONDITION_TYPE)
                    .collect();
                ours.shrink_to_fit();
                ours
            }),
            ..Default::default()
        });
}

/// Keeps of a SchemaMigration only what a gate reads: its name, namespace
/// and generation, `spec.job.tool`, and of its status the observed
/// generation, the revisions, the Ready condition's status and time, and the
/// run's phase and end (see [`decide::Schema::of`], [`decide::JobSchema::of`]
/// and [`ready_since`]). Its source, which inline holds whole SQL files, the
/// rest of its spec and metadata, its recent migrations and the conditions'
/// messages are dropped: the controller keeps its own copy for reconciling.
///
/// Fields the types require are left empty: no API server would take such
/// a spec, but nothing reads it. The spec and status are written out field
/// by field, so that a field added to them does not compile here until it
/// is either kept or dropped.
pub fn trim_migration(smig: &mut SchemaMigration) {
    let meta = std::mem::take(&mut smig.metadata);
    smig.metadata = ObjectMeta {
        name: meta.name,
        namespace: meta.namespace,
        generation: meta.generation,
        ..ObjectMeta::default()
    };
    let spec = &smig.spec;
    smig.spec = SchemaMigrationSpec {
        database: crd::Database::UrlSecretRef(crd::SecretKeyRef {
            name: String::new(),
            key: String::new(),
        }),
        source: None,
        job: spec.job.as_ref().map(|job| JobSource {
            image: String::new(),
            command: Vec::new(),
            args: Vec::new(),
            tool: job.tool,
            version_table: None,
            wrap: job.wrap,
            env: Vec::new(),
            env_from: Vec::new(),
            service_account_name: None,
            resources: None,
            image_pull_secrets: Vec::new(),
            node_selector: BTreeMap::new(),
            tolerations: Vec::new(),
            security_context: None,
            pod_security_context: None,
            volumes: Vec::new(),
            volume_mounts: Vec::new(),
            read_only_root_filesystem: job.read_only_root_filesystem,
        }),
        target_revision: String::new(),
        allow_downgrade: spec.allow_downgrade,
        allow_out_of_order: spec.allow_out_of_order,
        history: crd::History {
            schema: String::new(),
            table: String::new(),
        },
        timeouts: crd::Timeouts {
            lock_timeout: String::new(),
            statement_timeout: String::new(),
            run_deadline: String::new(),
        },
        retry: crd::Retry {
            limit: spec.retry.limit,
            min_backoff: String::new(),
            max_backoff: String::new(),
        },
        suspend: spec.suspend,
    };
    smig.status = smig.status.take().map(|status| SchemaMigrationStatus {
        observed_generation: status.observed_generation,
        current_revision: status.current_revision,
        reached_revisions: status.reached_revisions,
        target_revision: status.target_revision,
        pending_migrations: None,
        run: status.run.map(|run| RunStatus {
            phase: run.phase,
            attempt: None,
            started_at: None,
            finished_at: run.finished_at,
            migration: None,
            lock_holder: None,
            job: None,
            pod_phase: None,
        }),
        recent_migrations: Vec::new(),
        conditions: {
            // collect() reuses the list's allocation: give back the room of
            // the conditions dropped.
            let mut ready: Vec<_> = status
                .conditions
                .into_iter()
                .filter(|c| c.type_ == crd::conditions::READY)
                .map(|c| Condition {
                    reason: String::new(),
                    message: String::new(),
                    ..c
                })
                .collect();
            ready.shrink_to_fit();
            ready
        },
    });
}

fn has_gate(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.readiness_gates.as_ref())
        .is_some_and(|gates| gates.iter().any(|g| g.condition_type == CONDITION_TYPE))
}

fn condition(pod: &Pod) -> Option<&k8s_openapi::api::core::v1::PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == CONDITION_TYPE)
}

fn status_text(gate: &Gate) -> &'static str {
    if gate.ready { "True" } else { "False" }
}

/// When the SchemaMigration last became Ready, to measure how long pods wait
/// after it. A finished run's time is exact; a condition's has whole seconds.
fn ready_since(smig: &SchemaMigration) -> Option<jiff::Timestamp> {
    let status = smig.status.as_ref()?;
    let ready = status.condition(crd::conditions::READY)?;
    if !ready.is_true() {
        return None;
    }
    let finished = status
        .run
        .as_ref()
        .filter(|run| run.phase == Some(crd::RunPhase::Succeeded))
        .and_then(|run| run.finished_at);
    Some(finished.map_or(ready.last_transition_time, |f| {
        f.max(ready.last_transition_time)
    }))
}

async fn held_back(ctx: &Context, pod: &Pod, gate: &Gate) {
    let event = Event {
        type_: EventType::Normal,
        reason: "WaitingForSchema".into(),
        note: Some(gate.message.clone()),
        action: "HoldReadiness".into(),
        secondary: None,
    };
    if let Err(error) = ctx.recorder.publish(&event, &pod.object_ref(&())).await {
        tracing::warn!(%error, pod = %pod.name_any(), "could not record an Event");
    }
}

/// API server failures: try again soon.
pub fn error_policy(_pod: Arc<Pod>, error: &Error, gates: Arc<GateContext>) -> Action {
    tracing::warn!(%error, "readiness gate reconcile failed");
    gates.ctx.metrics.reconcile_failed(error.reason());
    Action::requeue(Duration::from_secs(5))
}

/// Watches the labelled pods, and their SchemaMigrations, until `shutdown`.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let client = ctx.client.clone();
    let (pods, migrations) = match &ctx.config.watch_namespace {
        Some(ns) => (
            Api::<Pod>::namespaced(client.clone(), ns),
            Api::<SchemaMigration>::namespaced(client.clone(), ns),
        ),
        None => (Api::all(client.clone()), Api::all(client)),
    };
    // Only pods that opted in; the rest of the cluster's pods never reach
    // us, and those that do are cached trimmed to what a gate reads.
    let (pod_cache, pod_writer) = reflector::store();
    let listed = watcher::Config::default().page_size(LIST_PAGE);
    let gated = watcher(pods, listed.clone().labels(MIGRATION_LABEL))
        .default_backoff()
        .modify(trim)
        .reflect(pod_writer)
        .applied_objects();
    // A gate's reconcile is one patch at most; bounded, a Deployment of a
    // thousand pods released at once does not open a thousand requests.
    let controller = Controller::for_stream(gated, pod_cache)
        .with_config(controller::Config::default().concurrency(GATE_CONCURRENCY));
    let store = controller.store();
    // One watch both caches the SchemaMigrations and wakes their pods; the
    // cache takes each change before the pods are woken for it, and keeps
    // of it only what a gate reads.
    let (cache, writer) = reflector::store();
    let changes = watcher(migrations, listed)
        .default_backoff()
        .modify(trim_migration)
        .reflect(writer)
        .touched_objects();
    let gates = Arc::new(GateContext {
        ctx,
        migrations: cache,
    });
    controller
        .watches_stream(changes, pods_of(store))
        .graceful_shutdown_on(async move { shutdown.cancelled().await })
        .run(reconcile, error_policy, gates)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "readiness gate reconcile ended with an error");
            }
        })
        .await;
}

/// Maps a SchemaMigration to the pods that wait on it.
fn pods_of(
    store: Store<Pod>,
) -> impl Fn(SchemaMigration) -> Vec<ObjectRef<Pod>> + Send + Sync + 'static {
    move |smig: SchemaMigration| {
        let (namespace, name) = (smig.namespace(), smig.name_any());
        store
            .state()
            .iter()
            .filter(|pod| {
                pod.namespace() == namespace && pod.labels().get(MIGRATION_LABEL) == Some(&name)
            })
            .map(|pod| ObjectRef::from_obj(&**pod))
            .collect()
    }
}
