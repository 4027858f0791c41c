//! Readiness gates against kube's mock API server: for each situation, the
//! exact requests, the exact pod status patch, and no patch at all when the
//! condition already says the right thing.

use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use k8s_openapi::api::core::v1::{Pod, PodCondition, PodReadinessGate, PodSpec, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::client::Body;
use kube::runtime::{reflector, watcher};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use tower_test::mock::Handle;

use super::{
    CONDITION_TYPE, GateContext, MIGRATION_LABEL, MIN_REVISION_ANNOTATION, decide, ready_since,
    reconcile, trim, trim_migration,
};
use crate::controller::fixtures::{alembic_job, kubectl_applied, schema_migration};
use crate::controller::metrics::Metrics;
use crate::controller::{Context, ControllerConfig};
use crate::crd::conditions::{self, Condition};
use crate::crd::{AppliedMigration, RunPhase, RunStatus, SchemaMigration, SchemaMigrationStatus};

const NS: &str = "apps";
const SMIG: &str = "app-db";
const POD_STATUS_PATH: &str = "/api/v1/namespaces/apps/pods/web-1/status";
const EVENTS_PATH: &str = "/apis/events.k8s.io/v1/namespaces/apps/events";

type ApiHandle = Handle<Request<Body>, Response<Body>>;

fn context() -> (Arc<Context>, ApiHandle) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let config = ControllerConfig {
        watch_namespace: None,
        max_concurrent_runs: 1,
        identity: "schemaop-test-0".into(),
        job: crate::controller::job::JobSettings {
            wrapper_image: None,
        },
    };
    (
        Context::new(Client::new(service, NS), config, Arc::new(Metrics::new())),
        handle,
    )
}

/// A pod of the app, labelled for `app-db`, with or without the gate.
fn pod(gate: bool, min_revision: Option<&str>, condition: Option<PodCondition>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some("web-1".into()),
            namespace: Some(NS.into()),
            uid: Some("0b3c5d7e-0000-4000-8000-000000000001".into()),
            labels: Some([(MIGRATION_LABEL.to_string(), SMIG.to_string())].into()),
            annotations: min_revision
                .map(|v| [(MIN_REVISION_ANNOTATION.to_string(), v.to_string())].into()),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            readiness_gates: gate.then(|| {
                vec![PodReadinessGate {
                    condition_type: CONDITION_TYPE.into(),
                }]
            }),
            ..PodSpec::default()
        }),
        status: Some(PodStatus {
            conditions: condition.map(|c| vec![c]),
            ..PodStatus::default()
        }),
    }
}

fn condition(status: &str, reason: &str, message: &str, since: &str) -> PodCondition {
    PodCondition {
        type_: CONDITION_TYPE.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_transition_time: Some(Time(since.parse().unwrap())),
        ..PodCondition::default()
    }
}

const LONG_AGO: &str = "2026-01-01T00:00:00Z";

/// A SchemaMigration whose status says `ready`, at `current`, targeting `target`.
fn smig(ready: bool, current: &str, target: &str) -> Value {
    let mut status = SchemaMigrationStatus {
        observed_generation: Some(3),
        current_revision: Some(current.into()),
        target_revision: Some(target.into()),
        ..SchemaMigrationStatus::default()
    };
    status.set_condition(
        Condition::new(conditions::READY, ready, "X", "x").observed_generation(Some(3)),
    );
    serde_json::to_value(schema_migration().generation(3).status(status).build()).unwrap()
}

/// `smig` as the gates' watch caches it: sent by the API server after
/// `kubectl apply`, then trimmed.
fn cached(smig: Value) -> SchemaMigration {
    let mut smig = kubectl_applied(serde_json::from_value(smig).expect("a SchemaMigration"));
    trim_migration(&mut smig);
    smig
}

fn respond(
    handle_response: tower_test::mock::SendResponse<Response<Body>>,
    code: StatusCode,
    body: &Value,
) {
    handle_response.send_response(
        Response::builder()
            .status(code)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Body::from(serde_json::to_vec(body).unwrap()))
            .unwrap(),
    );
}

/// Serves one request, checks its method and path, answers, and returns its body.
async fn serve(
    handle: &mut ApiHandle,
    method: Method,
    path: &str,
    code: StatusCode,
    answer: Value,
) -> Value {
    let (request, send) = tokio::time::timeout(Duration::from_secs(5), handle.next_request())
        .await
        .unwrap_or_else(|_| panic!("expected {method} {path}, but no request came"))
        .expect("the client is gone");
    assert_eq!(request.method(), method, "for {path}");
    assert_eq!(request.uri().path(), path);
    let bytes = request.into_body().collect_bytes().await.unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    respond(send, code, &answer);
    body
}

/// The pod status patch, with `lastTransitionTime` taken out for the caller.
async fn serve_patch(handle: &mut ApiHandle) -> (Value, Option<String>) {
    let mut body = serve(
        handle,
        Method::PATCH,
        POD_STATUS_PATH,
        StatusCode::OK,
        json!({}),
    )
    .await;
    let time = body["status"]["conditions"][0]
        .as_object_mut()
        .and_then(|c| c.remove("lastTransitionTime"))
        .and_then(|t| t.as_str().map(str::to_string));
    (body, time)
}

fn patch(status: &str, reason: &str, message: &str) -> Value {
    json!({ "status": { "conditions": [{
        "type": CONDITION_TYPE, "status": status, "reason": reason, "message": message,
    }]}})
}

/// Runs one reconcile of `pod`, with `smig` in the watch cache (or none),
/// while `api` serves it; then no request may be left. The gate reads its
/// SchemaMigration from the cache: any GET of it is an unexpected request.
async fn scenario<F, Fut>(pod: Pod, smig: Option<Value>, api: F)
where
    F: FnOnce(ApiHandle) -> Fut,
    Fut: Future<Output = ApiHandle>,
{
    let (ctx, handle) = context();
    let (cache, mut writer) = reflector::store::<SchemaMigration>();
    writer.apply_watcher_event(&watcher::Event::Init);
    if let Some(smig) = smig {
        writer.apply_watcher_event(&watcher::Event::InitApply(cached(smig)));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
    let gates = Arc::new(GateContext {
        ctx,
        migrations: cache,
    });
    let reconciling = tokio::spawn(reconcile(Arc::new(pod), gates));
    let mut handle = tokio::time::timeout(Duration::from_secs(5), api(handle))
        .await
        .expect("the expected requests came");
    // Nothing more may come. An unexpected request is answered with an
    // error, so the reconcile ends instead of waiting for ever.
    let extra = tokio::time::timeout(Duration::from_millis(200), handle.next_request()).await;
    if let Ok(Some((request, send))) = extra {
        send.send_error("unexpected");
        panic!(
            "an unexpected request was sent: {} {}",
            request.method(),
            request.uri()
        );
    }
    tokio::time::timeout(Duration::from_secs(5), reconciling)
        .await
        .expect("the reconcile ends")
        .unwrap()
        .expect("the reconcile succeeds");
}

#[tokio::test]
async fn a_new_pod_whose_schema_is_there_is_released_at_once() {
    scenario(
        pod(true, None, None),
        Some(smig(true, "30", "30")),
        |mut api| async move {
            let (body, time) = serve_patch(&mut api).await;
            assert_eq!(
                body,
                patch(
                    "True",
                    "SchemaReady",
                    "needs revision 30; the database is at 30"
                )
            );
            assert!(time.is_some(), "a new condition gets a transition time");
            api
        },
    )
    .await;
}

#[tokio::test]
async fn a_condition_that_is_already_right_is_not_patched() {
    let released = condition(
        "True",
        "SchemaReady",
        "needs revision 30; the database is at 30",
        LONG_AGO,
    );
    scenario(
        pod(true, None, Some(released)),
        Some(smig(true, "30", "30")),
        |api| async move { api },
    )
    .await;
}

#[tokio::test]
async fn a_new_pod_during_a_migration_is_held_back_with_an_event() {
    scenario(
        pod(true, None, None),
        Some(smig(false, "30", "40")),
        |mut api| async move {
            let (body, _) = serve_patch(&mut api).await;
            assert_eq!(
                body,
                patch(
                    "False",
                    "WaitingForRevision",
                    "needs revision 40; the database was at 30"
                )
            );
            let event = serve(
                &mut api,
                Method::POST,
                EVENTS_PATH,
                StatusCode::CREATED,
                json!({}),
            )
            .await;
            assert_eq!(event["reason"], "WaitingForSchema");
            assert_eq!(event["regarding"]["kind"], "Pod");
            assert_eq!(event["regarding"]["name"], "web-1");
            assert_eq!(event["note"], "needs revision 40; the database was at 30");
            api
        },
    )
    .await;
}

#[tokio::test]
async fn a_new_pod_waits_unwritten_until_its_schema_migration_has_a_status() {
    // Pods created with their SchemaMigration come before its first status:
    // a condition written now would only be rewritten once the target is
    // known, a patch per pod for nothing.
    let unseen = serde_json::to_value(schema_migration().generation(1).build()).unwrap();
    scenario(
        pod(true, None, None),
        Some(unseen),
        |api| async move { api },
    )
    .await;
}

#[tokio::test]
async fn progress_leaves_a_held_pod_alone() {
    // Patching each held pod at every step of a run is what made a hundred
    // pods cost hundreds of patches; the SchemaMigration shows the progress.
    let waiting = condition(
        "False",
        "WaitingForRevision",
        "needs revision 40; the database was at 30",
        LONG_AGO,
    );
    scenario(
        pod(true, None, Some(waiting)),
        Some(smig(false, "35", "40")),
        |api| async move { api },
    )
    .await;
}

#[tokio::test]
async fn a_new_need_updates_a_held_pod_but_keeps_the_transition_time_and_sends_no_event() {
    let waiting = condition(
        "False",
        "WaitingForRevision",
        "needs revision 40; the database was at 30",
        LONG_AGO,
    );
    scenario(
        pod(true, Some("45"), Some(waiting)),
        Some(smig(false, "35", "45")),
        |mut api| async move {
            let (body, time) = serve_patch(&mut api).await;
            assert_eq!(
                body,
                patch(
                    "False",
                    "WaitingForRevision",
                    "needs revision 45; the database was at 35"
                )
            );
            assert_eq!(time.as_deref(), Some(LONG_AGO));
            api
        },
    )
    .await;
}

#[tokio::test]
async fn a_waiting_pod_is_released_when_its_schema_migration_is_ready() {
    let waiting = condition(
        "False",
        "WaitingForRevision",
        "needs revision 40; the database was at 35",
        LONG_AGO,
    );
    scenario(
        pod(true, None, Some(waiting)),
        Some(smig(true, "40", "40")),
        |mut api| async move {
            let (body, time) = serve_patch(&mut api).await;
            assert_eq!(
                body,
                patch(
                    "True",
                    "SchemaReady",
                    "needs revision 40; the database is at 40"
                )
            );
            assert_ne!(time.as_deref(), Some(LONG_AGO), "the status flipped");
            api
        },
    )
    .await;
}

#[tokio::test]
async fn a_released_pod_stays_released_while_a_later_migration_stalls() {
    let released = condition(
        "True",
        "SchemaReady",
        "needs revision 30; the database is at 30",
        LONG_AGO,
    );
    scenario(
        pod(true, None, Some(released)),
        Some(smig(false, "30", "40")),
        // Stalled on the way to 40, still at 30: nothing to change for this pod.
        |api| async move { api },
    )
    .await;
}

#[tokio::test]
async fn a_released_pod_is_not_patched_again_when_a_later_migration_lands() {
    let released = condition(
        "True",
        "SchemaReady",
        "needs revision 30; the database is at 30",
        LONG_AGO,
    );
    scenario(
        pod(true, None, Some(released)),
        Some(smig(true, "40", "40")),
        // Ready again at 40: the pod's status need not change, so no patch.
        |api| async move { api },
    )
    .await;
}

#[tokio::test]
async fn min_revision_releases_during_the_run_once_the_revision_is_there() {
    scenario(
        pod(true, Some("35"), None),
        Some(smig(false, "35", "40")),
        |mut api| async move {
            let (body, _) = serve_patch(&mut api).await;
            assert_eq!(
                body,
                patch(
                    "True",
                    "SchemaReady",
                    "needs revision 35; the database is at 35"
                )
            );
            api
        },
    )
    .await;
}

#[tokio::test]
async fn a_missing_schema_migration_holds_the_pod_and_says_which() {
    scenario(pod(true, None, None), None, |mut api| async move {
        let (body, _) = serve_patch(&mut api).await;
        assert_eq!(body["status"]["conditions"][0]["status"], "False");
        assert_eq!(
            body["status"]["conditions"][0]["reason"],
            "MigrationNotFound"
        );
        assert!(
            body["status"]["conditions"][0]["message"]
                .as_str()
                .unwrap()
                .contains("SchemaMigration app-db")
        );
        serve(
            &mut api,
            Method::POST,
            EVENTS_PATH,
            StatusCode::CREATED,
            json!({}),
        )
        .await;
        api
    })
    .await;
}

#[tokio::test]
async fn a_pod_without_the_gate_is_left_alone() {
    scenario(
        pod(false, None, None),
        Some(smig(true, "30", "30")),
        |api| async move { api },
    )
    .await;
}

/// `pod(...)` as the API server sends it: containers, managed fields, the
/// kubelet's conditions and annotations of other tools around ours.
fn full(pod: Pod) -> Pod {
    let mut full: Value = serde_json::to_value(pod).unwrap();
    full["metadata"]["labels"]["app"] = json!("web");
    full["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"] =
        json!("2026-12-01T10:00:00Z");
    full["metadata"]["managedFields"] = json!([{"manager": "kubelet", "operation": "Update", "apiVersion": "v1", "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {"f:conditions": {}}}}]);
    full["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7f9c", "uid": "0b3c5d7e-0000-4000-8000-000000000002", "controller": true}]);
    full["spec"]["containers"] = json!([{"name": "web", "image": "registry.example.com/web:1.4.2", "env": [{"name": "LOG_LEVEL", "value": "info"}], "ports": [{"containerPort": 8080}]}]);
    full["status"]["phase"] = json!("Running");
    let conditions = full["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut all = vec![
        json!({"type": "ContainersReady", "status": "True"}),
        json!({"type": "Ready", "status": "False"}),
    ];
    all.extend(conditions);
    full["status"]["conditions"] = json!(all);
    serde_json::from_value(full).unwrap()
}

#[test]
fn trimming_keeps_what_a_gate_reads_and_drops_the_rest() {
    let released = condition(
        "True",
        "SchemaReady",
        "needs revision 30; the database is at 30",
        LONG_AGO,
    );
    let lean = pod(true, Some("30"), Some(released));
    let mut trimmed = full(lean.clone());
    let before = serde_json::to_vec(&trimmed).unwrap().len();

    trim(&mut trimmed);

    assert_eq!(trimmed, lean);
    let after = serde_json::to_vec(&trimmed).unwrap().len();
    assert!(after * 2 < before, "{before} bytes, then {after}");
}

/// SchemaMigrations in each state a gate tells apart, with everything a
/// kubectl-applied one carries that gates do not read.
fn schema_migrations() -> Vec<SchemaMigration> {
    let sql = |ready: bool, observed: i64, current: &str, target: &str| {
        let mut status = SchemaMigrationStatus {
            observed_generation: Some(observed),
            current_revision: Some(current.into()),
            target_revision: Some(target.into()),
            pending_migrations: Some(0),
            run: Some(RunStatus {
                phase: Some(RunPhase::Succeeded),
                attempt: Some(1),
                started_at: Some("2026-12-01T10:00:00Z".parse().unwrap()),
                finished_at: Some("2026-12-01T10:00:03.25Z".parse().unwrap()),
                ..RunStatus::default()
            }),
            ..SchemaMigrationStatus::default()
        };
        status.record_applied(AppliedMigration {
            version: 30,
            description: "add users".into(),
            applied_at: "2026-12-01T10:00:02Z".parse().unwrap(),
            duration: "1.2s".into(),
        });
        let since = "2026-12-01T10:00:03Z".parse().unwrap();
        status
            .set_condition(Condition::new(conditions::READY, ready, "UpToDate", "at 30").at(since));
        status.set_condition(
            Condition::new(conditions::RECONCILING, !ready, "Migrating", "to 40").at(since),
        );
        status.set_condition(Condition::new(conditions::STALLED, false, "UpToDate", "").at(since));
        schema_migration()
            .inline(&[(
                "30_users.sql",
                "CREATE TABLE users (id bigint PRIMARY KEY);",
            )])
            .annotation("schemaop.dev/retry", "1")
            .status(status)
            .build()
    };
    let alembic = |current: &str, reached: Option<&[&str]>| {
        let status = SchemaMigrationStatus {
            observed_generation: Some(3),
            current_revision: Some(current.into()),
            reached_revisions: reached.map(|r| r.iter().map(|r| r.to_string()).collect()),
            target_revision: Some("head".into()),
            ..SchemaMigrationStatus::default()
        };
        schema_migration()
            .job(alembic_job())
            .target("head")
            .status(status)
            .build()
    };
    vec![
        sql(true, 3, "30", "30"),
        sql(false, 3, "30", "40"),
        sql(true, 2, "30", "30"),
        schema_migration().build(),
        alembic("ae1027a6acf", Some(&["1975ea83b712", "ae1027a6acf"])),
        alembic("base", None),
    ]
    .into_iter()
    .map(kubectl_applied)
    .collect()
}

#[test]
fn trimming_a_schema_migration_keeps_what_a_gate_reads() {
    for full in schema_migrations() {
        let mut trimmed = full.clone();
        trim_migration(&mut trimmed);
        let at = full.spec.job.as_ref().map(|j| j.tool);
        let at = format!("{at:?} {:?}", full.status);

        assert_eq!(
            (trimmed.namespace(), trimmed.name_any()),
            (full.namespace(), full.name_any()),
            "{at}"
        );
        assert_eq!(
            decide::Schema::of(&trimmed),
            decide::Schema::of(&full),
            "{at}"
        );
        if let Some(job) = &full.spec.job {
            assert_eq!(trimmed.spec.job.as_ref().map(|j| j.tool), Some(job.tool));
            assert_eq!(
                decide::JobSchema::of(&trimmed, job.tool),
                decide::JobSchema::of(&full, job.tool),
                "{at}"
            );
        } else {
            assert_eq!(trimmed.spec.job, None, "{at}");
        }
        assert_eq!(ready_since(&trimmed), ready_since(&full), "{at}");
    }
}

#[test]
fn trimming_a_schema_migration_drops_its_source_metadata_and_history() {
    let full = schema_migrations().remove(0);
    let mut trimmed = full.clone();
    trim_migration(&mut trimmed);

    assert_eq!(trimmed.spec.source, None);
    assert_eq!(trimmed.metadata.managed_fields, None);
    assert_eq!(trimmed.metadata.annotations, None);
    assert_eq!(trimmed.metadata.uid, None);
    let status = trimmed.status.as_ref().unwrap();
    assert_eq!(status.recent_migrations, []);
    assert_eq!(status.pending_migrations, None);
    let kept: Vec<_> = status
        .conditions
        .iter()
        .map(|c| (c.type_.as_str(), c.reason.as_str(), c.message.as_str()))
        .collect();
    assert_eq!(kept, [(conditions::READY, "", "")]);
    let run = status.run.as_ref().unwrap();
    assert_eq!((run.attempt, run.started_at), (None, None));

    let size = |smig: &SchemaMigration| serde_json::to_vec(smig).unwrap().len();
    assert!(
        size(&trimmed) * 4 < size(&full),
        "{} bytes, then {}",
        size(&full),
        size(&trimmed)
    );
}

#[tokio::test]
async fn a_trimmed_pod_is_gated_as_the_full_pod_would_be() {
    let mut trimmed = full(pod(true, None, None));
    trim(&mut trimmed);
    scenario(
        trimmed,
        Some(smig(true, "30", "30")),
        |mut api| async move {
            let (body, _) = serve_patch(&mut api).await;
            assert_eq!(
                body,
                patch(
                    "True",
                    "SchemaReady",
                    "needs revision 30; the database is at 30"
                )
            );
            api
        },
    )
    .await;
}

/// Requests the API server got while `reconcile` ran for each of `pods`,
/// answered 200 `{}`: (method, path) in order.
async fn requests_for(pods: Vec<Pod>, smig: Value) -> Vec<(Method, String)> {
    let (ctx, mut handle) = context();
    let (cache, mut writer) = reflector::store::<SchemaMigration>();
    writer.apply_watcher_event(&watcher::Event::Init);
    writer.apply_watcher_event(&watcher::Event::InitApply(cached(smig)));
    writer.apply_watcher_event(&watcher::Event::InitDone);
    let gates = Arc::new(GateContext {
        ctx,
        migrations: cache,
    });
    let reconciling = tokio::spawn(async move {
        for pod in pods {
            reconcile(Arc::new(pod), gates.clone())
                .await
                .expect("a reconcile");
        }
    });
    // The client goes with the task: no more requests once it is done.
    let mut seen = Vec::new();
    while let Some((request, send)) = handle.next_request().await {
        seen.push((request.method().clone(), request.uri().path().to_string()));
        respond(send, StatusCode::OK, &json!({}));
    }
    reconciling.await.expect("every reconcile succeeds");
    seen
}

fn pod_named(name: String, condition: Option<PodCondition>) -> Pod {
    let mut pod = pod(true, None, condition);
    pod.metadata.name = Some(name);
    pod
}

#[tokio::test]
async fn a_hundred_pods_cost_one_patch_each_and_nothing_once_released() {
    let names: Vec<String> = (0..100).map(|i| format!("web-{i}")).collect();

    // New pods of a Ready SchemaMigration: one status patch each, no read.
    let new = names.iter().map(|n| pod_named(n.clone(), None)).collect();
    let requests = requests_for(new, smig(true, "30", "30")).await;
    let expected: Vec<(Method, String)> = names
        .iter()
        .map(|n| {
            (
                Method::PATCH,
                format!("/api/v1/namespaces/apps/pods/{n}/status"),
            )
        })
        .collect();
    assert_eq!(requests, expected);

    // The same pods, released, when a later migration lands: nothing at all.
    let released = names
        .iter()
        .map(|n| {
            let c = condition(
                "True",
                "SchemaReady",
                "needs revision 30; the database is at 30",
                LONG_AGO,
            );
            pod_named(n.clone(), Some(c))
        })
        .collect();
    assert_eq!(requests_for(released, smig(true, "40", "40")).await, []);
}

#[tokio::test]
async fn a_hundred_held_pods_cost_nothing_while_the_run_moves_and_one_patch_each_to_release() {
    let names: Vec<String> = (0..100).map(|i| format!("web-{i}")).collect();
    let held = |at: &str| -> Vec<Pod> {
        names
            .iter()
            .map(|n| {
                let c = condition(
                    "False",
                    "WaitingForRevision",
                    &format!("needs revision 40; the database was at {at}"),
                    LONG_AGO,
                );
                pod_named(n.clone(), Some(c))
            })
            .collect()
    };

    // Held at 30 while the run goes on to 35: no request at all.
    assert_eq!(requests_for(held("30"), smig(false, "35", "40")).await, []);

    // Ready at 40: one status patch each, no read.
    let expected: Vec<(Method, String)> = names
        .iter()
        .map(|n| {
            (
                Method::PATCH,
                format!("/api/v1/namespaces/apps/pods/{n}/status"),
            )
        })
        .collect();
    assert_eq!(
        requests_for(held("35"), smig(true, "40", "40")).await,
        expected
    );
}
