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

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Controller, watcher};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::controller::{Context, Error, Result};
use crate::crd::{self, SchemaMigration};
use crate::engine::Version;
use decide::{Gate, Schema};

/// The label that ties a pod to a SchemaMigration in its namespace.
pub const MIGRATION_LABEL: &str = "schemaop.dev/migration";
/// The readiness gate's condition type.
pub const CONDITION_TYPE: &str = "schemaop.dev/schema-ready";
/// The annotation naming the version a pod needs.
pub const MIN_REVISION_ANNOTATION: &str = "schemaop.dev/min-revision";

/// Decides and writes one pod's gate.
pub async fn reconcile(pod: Arc<Pod>, ctx: Arc<Context>) -> Result<Action> {
    if !has_gate(&pod) || pod.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let namespace = pod.namespace().unwrap_or_default();
    let Some(migration) = pod.labels().get(MIGRATION_LABEL).cloned() else {
        return Ok(Action::await_change());
    };
    let migrations: Api<SchemaMigration> = Api::namespaced(ctx.client.clone(), &namespace);
    let smig = migrations.get_opt(&migration).await?;
    let schema = smig.as_ref().map(Schema::of);

    let existing = condition(&pod);
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

    let unchanged = existing.is_some_and(|c| {
        c.status == status_text(&gate)
            && c.reason.as_deref() == Some(gate.reason)
            && c.message.as_deref() == Some(gate.message.as_str())
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
        held_back(&ctx, &pod, &gate).await;
    }
    if flipped
        && gate.ready
        && let Some(since) = smig.as_ref().and_then(ready_since)
    {
        ctx.metrics
            .gate_released(jiff::Timestamp::now().duration_since(since).unsigned_abs());
    }
    Ok(Action::await_change())
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
pub fn error_policy(_pod: Arc<Pod>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(%error, "readiness gate reconcile failed");
    ctx.metrics.reconcile_failed(error.reason());
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
    // Only pods that opted in; the rest of the cluster's pods never reach us.
    let controller = Controller::new(pods, watcher::Config::default().labels(MIGRATION_LABEL));
    let store = controller.store();
    controller
        .watches(migrations, watcher::Config::default(), pods_of(store))
        .graceful_shutdown_on(async move { shutdown.cancelled().await })
        .run(reconcile, error_policy, ctx)
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
