//! Readiness gates against kube's mock API server: for each situation, the
//! exact requests, the exact pod status patch, and no patch at all when the
//! condition already says the right thing.

use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use k8s_openapi::api::core::v1::{Pod, PodCondition, PodReadinessGate, PodSpec, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock::Handle;

use super::{CONDITION_TYPE, MIGRATION_LABEL, MIN_REVISION_ANNOTATION, reconcile};
use crate::controller::fixtures::schema_migration;
use crate::controller::metrics::Metrics;
use crate::controller::{Context, ControllerConfig};
use crate::crd::SchemaMigrationStatus;
use crate::crd::conditions::{self, Condition};

const NS: &str = "apps";
const SMIG: &str = "app-db";
const SMIG_PATH: &str = "/apis/schemaop.dev/v1alpha1/namespaces/apps/schemamigrations/app-db";
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

async fn serve_smig(handle: &mut ApiHandle, smig: Value) {
    serve(handle, Method::GET, SMIG_PATH, StatusCode::OK, smig).await;
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

/// Runs one reconcile of `pod` while `api` serves it; then no request may be left.
async fn scenario<F, Fut>(pod: Pod, api: F)
where
    F: FnOnce(ApiHandle) -> Fut,
    Fut: Future<Output = ApiHandle>,
{
    let (ctx, handle) = context();
    let reconciling = tokio::spawn(reconcile(Arc::new(pod), ctx));
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
    scenario(pod(true, None, None), |mut api| async move {
        serve_smig(&mut api, smig(true, "30", "30")).await;
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
    })
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
    scenario(pod(true, None, Some(released)), |mut api| async move {
        serve_smig(&mut api, smig(true, "30", "30")).await;
        api
    })
    .await;
}

#[tokio::test]
async fn a_new_pod_during_a_migration_is_held_back_with_an_event() {
    scenario(pod(true, None, None), |mut api| async move {
        serve_smig(&mut api, smig(false, "30", "40")).await;
        let (body, _) = serve_patch(&mut api).await;
        assert_eq!(
            body,
            patch(
                "False",
                "WaitingForRevision",
                "needs revision 40; the database is at 30"
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
        assert_eq!(event["note"], "needs revision 40; the database is at 30");
        api
    })
    .await;
}

#[tokio::test]
async fn progress_updates_the_message_but_keeps_the_transition_time_and_sends_no_event() {
    let waiting = condition(
        "False",
        "WaitingForRevision",
        "needs revision 40; the database is at 30",
        LONG_AGO,
    );
    scenario(pod(true, None, Some(waiting)), |mut api| async move {
        serve_smig(&mut api, smig(false, "35", "40")).await;
        let (body, time) = serve_patch(&mut api).await;
        assert_eq!(
            body,
            patch(
                "False",
                "WaitingForRevision",
                "needs revision 40; the database is at 35"
            )
        );
        assert_eq!(time.as_deref(), Some(LONG_AGO));
        api
    })
    .await;
}

#[tokio::test]
async fn a_waiting_pod_is_released_when_its_schema_migration_is_ready() {
    let waiting = condition(
        "False",
        "WaitingForRevision",
        "needs revision 40; the database is at 35",
        LONG_AGO,
    );
    scenario(pod(true, None, Some(waiting)), |mut api| async move {
        serve_smig(&mut api, smig(true, "40", "40")).await;
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
    })
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
    scenario(pod(true, None, Some(released)), |mut api| async move {
        // Stalled on the way to 40, still at 30: nothing to change for this pod.
        serve_smig(&mut api, smig(false, "30", "40")).await;
        api
    })
    .await;
}

#[tokio::test]
async fn min_revision_releases_during_the_run_once_the_revision_is_there() {
    scenario(pod(true, Some("35"), None), |mut api| async move {
        serve_smig(&mut api, smig(false, "35", "40")).await;
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
    })
    .await;
}

#[tokio::test]
async fn a_missing_schema_migration_holds_the_pod_and_says_which() {
    scenario(pod(true, None, None), |mut api| async move {
        let not_found = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"});
        serve(&mut api, Method::GET, SMIG_PATH, StatusCode::NOT_FOUND, not_found).await;
        let (body, _) = serve_patch(&mut api).await;
        assert_eq!(body["status"]["conditions"][0]["status"], "False");
        assert_eq!(body["status"]["conditions"][0]["reason"], "MigrationNotFound");
        assert!(body["status"]["conditions"][0]["message"].as_str().unwrap().contains("SchemaMigration app-db"));
        serve(&mut api, Method::POST, EVENTS_PATH, StatusCode::CREATED, json!({})).await;
        api
    })
    .await;
}

#[tokio::test]
async fn a_pod_without_the_gate_is_left_alone() {
    scenario(pod(false, None, None), |api| async move { api }).await;
}
