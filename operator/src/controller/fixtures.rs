//! What the controller's scenario tests are made of: SchemaMigrations,
//! Secrets and ConfigMaps as the API server would hold them, a [`Harness`]
//! whose [`Context`] talks to an [`ApiServerVerifier`] instead of a cluster,
//! throwaway PostgreSQL databases, and a way to read every log line a test
//! produces.
//!
//! The verifier plays one scenario at a time. It takes each request the
//! controller sends, in order, checks its method, path, query and body
//! against the next [`Expect`], and answers as the API server would: with
//! the object, a `404` Status, or the object as patched. A request that does
//! not come within [`REQUEST_TIMEOUT`] fails the test, and so does any
//! request left over once the scenario and every run it started are done.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use http::{Method, Request, Response, StatusCode};
use k8s_openapi::ByteString;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::client::Body;
use kube::runtime::controller::Action;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_postgres::{NoTls, SimpleQueryMessage};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::util::SubscriberInitExt;

use super::metrics::Metrics;
use super::{Context, ControllerConfig, Result};
use crate::crd::conditions::{self, ConditionStatus};
use crate::crd::{
    self, ConfigMapRef, RunPhase, SchemaMigration, SchemaMigrationSpec, SchemaMigrationStatus,
    SecretKeyRef,
};
use crate::engine::{Database, Direction, MigrationSource, Migrator, MigratorOptions, Target};

/// The namespace every fixture lives in.
pub const NAMESPACE: &str = "apps";
/// The SchemaMigration's name.
pub const NAME: &str = "app-db";
/// The SchemaMigration's `metadata.generation`: not 1, so that a status
/// copying a default cannot pass for one that observed the spec.
pub const GENERATION: i64 = 3;
/// The Secret and key holding the database URL.
pub const URL_SECRET: &str = "app-db-url";
pub const URL_KEY: &str = "url";
/// How long the verifier waits for each expected request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the runs a scenario started may take to end.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(30);
/// The operator's image, as `--job-wrapper-image` gives it.
pub const WRAPPER_IMAGE: &str = "registry.example.com/schemaop:0.1.0";
/// This replica's identity, as the controller reports it.
pub const IDENTITY: &str = "schemaop-test-0";

// --- objects ---------------------------------------------------------------

/// Builds a [`SchemaMigration`] as it would come from a watch: named,
/// namespaced, with a generation, uid and resourceVersion. By default it
/// reads its URL from [`URL_SECRET`] and has no migrations; give it some.
pub fn schema_migration() -> SchemaMigrationBuilder {
    let spec = SchemaMigrationSpec {
        database: crd::Database::UrlSecretRef(SecretKeyRef {
            name: URL_SECRET.into(),
            key: URL_KEY.into(),
        }),
        source: Some(crd::Source::Inline(BTreeMap::new())),
        job: None,
        target_revision: "latest".into(),
        allow_downgrade: false,
        allow_out_of_order: false,
        history: crd::History::default(),
        timeouts: crd::Timeouts::default(),
        retry: crd::Retry::default(),
        suspend: false,
    };
    let mut obj = SchemaMigration::new(NAME, spec);
    obj.metadata = ObjectMeta {
        name: Some(NAME.into()),
        namespace: Some(NAMESPACE.into()),
        generation: Some(GENERATION),
        uid: Some("6f1c1c4e-2b7d-4f57-9a0e-3d1f5b2c7a10".into()),
        resource_version: Some("1000".into()),
        ..ObjectMeta::default()
    };
    SchemaMigrationBuilder(obj)
}

pub struct SchemaMigrationBuilder(SchemaMigration);

impl SchemaMigrationBuilder {
    pub fn generation(mut self, generation: i64) -> Self {
        self.0.metadata.generation = Some(generation);
        self
    }

    /// The database URL comes from this key of this Secret.
    pub fn url_secret(mut self, name: &str, key: &str) -> Self {
        self.0.spec.database = crd::Database::UrlSecretRef(SecretKeyRef {
            name: name.into(),
            key: key.into(),
        });
        self
    }

    /// The database is given field by field.
    pub fn connection(mut self, connection: crd::Connection) -> Self {
        self.0.spec.database = crd::Database::Connection(connection);
        self
    }

    /// The migration files, inline in the spec.
    pub fn inline(mut self, files: &[(&str, &str)]) -> Self {
        let files = files
            .iter()
            .map(|(name, sql)| (name.to_string(), sql.to_string()));
        self.0.spec.source = Some(crd::Source::Inline(files.collect()));
        self
    }

    /// The migration files, from these ConfigMaps.
    pub fn config_maps(mut self, names: &[&str]) -> Self {
        let refs = names.iter().map(|name| ConfigMapRef {
            name: name.to_string(),
        });
        self.0.spec.source = Some(crd::Source::ConfigMapRefs(refs.collect()));
        self
    }

    /// The migrations are the app's own, run as a Job: no SQL source.
    pub fn job(mut self, job: crd::JobSource) -> Self {
        self.0.spec.source = None;
        self.0.spec.job = Some(job);
        self
    }

    /// An annotation, such as `schemaop.dev/retry`.
    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.0
            .metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(key.into(), value.into());
        self
    }

    /// `spec.targetRevision`, as written in a manifest: `latest` or a version.
    pub fn target(mut self, revision: &str) -> Self {
        self.0.spec.target_revision = revision.into();
        self
    }

    pub fn allow_downgrade(mut self) -> Self {
        self.0.spec.allow_downgrade = true;
        self
    }

    pub fn suspend(mut self) -> Self {
        self.0.spec.suspend = true;
        self
    }

    /// `spec.retry`: retries after a failed run, and the first wait, which is
    /// also how soon a transient problem is looked at again.
    pub fn retry(mut self, limit: i32, min_backoff: &str) -> Self {
        self.0.spec.retry.limit = limit;
        self.0.spec.retry.min_backoff = min_backoff.into();
        self
    }

    pub fn status(mut self, status: SchemaMigrationStatus) -> Self {
        self.0.status = Some(status);
        self
    }

    /// Marked for deletion.
    pub fn deleted(mut self) -> Self {
        self.0.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::now()));
        self
    }

    pub fn build(self) -> SchemaMigration {
        self.0
    }
}

/// `obj` as the API server sends it once `kubectl apply` made it and the
/// operator wrote its status: the manifest again, in kubectl's annotation,
/// and the managed fields of both writers.
pub fn kubectl_applied(obj: SchemaMigration) -> SchemaMigration {
    let mut value = serde_json::to_value(&obj).expect("a SchemaMigration serializes");
    let manifest = json!({
        "apiVersion": value["apiVersion"],
        "kind": value["kind"],
        "metadata": {
            "annotations": value["metadata"]["annotations"].as_object().cloned().unwrap_or_default(),
            "name": value["metadata"]["name"],
            "namespace": value["metadata"]["namespace"],
        },
        "spec": value["spec"],
    });
    let meta = value["metadata"].as_object_mut().expect("metadata");
    let annotations = meta
        .entry("annotations")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .expect("annotations");
    annotations.insert(
        super::cache::LAST_APPLIED_ANNOTATION.into(),
        json!(format!("{manifest}\n")),
    );
    let spec_fields = fields_of(&value["spec"]);
    let status_fields = fields_of(&value["status"]);
    value["metadata"]["managedFields"] = json!([
        {
            "manager": "kubectl-client-side-apply", "operation": "Update",
            "apiVersion": "schemaop.dev/v1alpha1", "time": "2026-12-01T10:00:00Z",
            "fieldsType": "FieldsV1",
            "fieldsV1": {
                "f:metadata": {"f:annotations": {".": {}, "f:kubectl.kubernetes.io/last-applied-configuration": {}}},
                "f:spec": spec_fields,
            },
        },
        {
            "manager": "schemaop", "operation": "Apply",
            "apiVersion": "schemaop.dev/v1alpha1", "time": "2026-12-01T10:00:05Z",
            "fieldsType": "FieldsV1", "subresource": "status",
            "fieldsV1": {"f:status": status_fields},
        },
    ]);
    serde_json::from_value(value).expect("still a SchemaMigration")
}

/// `{"f:KEY": {}}` for each key of `value`, as managed fields list them.
fn fields_of(value: &Value) -> serde_json::Map<String, Value> {
    value
        .as_object()
        .into_iter()
        .flatten()
        .map(|(key, _)| (format!("f:{key}"), json!({})))
        .collect()
}

/// `spec.job` for an Alembic app: `alembic upgrade head` from its image.
pub fn alembic_job() -> crd::JobSource {
    serde_json::from_value(json!({
        "image": "registry.example.com/getanswers-backend:1.4.2",
        "command": ["alembic", "upgrade", "head"],
        "tool": "alembic",
    }))
    .expect("a valid spec.job")
}

/// A Secret in [`NAMESPACE`] with these keys, stored as `data`.
pub fn secret(name: &str, data: &[(&str, &str)]) -> Secret {
    Secret {
        metadata: object_meta(name),
        data: Some(
            data.iter()
                .map(|(key, value)| (key.to_string(), ByteString(value.as_bytes().to_vec())))
                .collect(),
        ),
        type_: Some("Opaque".into()),
        ..Secret::default()
    }
}

/// The Secret the default SchemaMigration reads its database URL from.
pub fn url_secret(url: &str) -> Secret {
    secret(URL_SECRET, &[(URL_KEY, url)])
}

/// A ConfigMap in [`NAMESPACE`] holding migration files.
pub fn config_map(name: &str, files: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: object_meta(name),
        data: Some(
            files
                .iter()
                .map(|(file, sql)| (file.to_string(), sql.to_string()))
                .collect(),
        ),
        ..ConfigMap::default()
    }
}

fn object_meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(NAMESPACE.into()),
        uid: Some(format!("uid-{name}")),
        resource_version: Some("500".into()),
        ..ObjectMeta::default()
    }
}

// --- what the API server expects ---------------------------------------------

/// Something the verifier runs after it has checked a request and before it
/// answers, while the controller waits for the answer.
pub type Hook = Box<dyn FnOnce() -> BoxFuture<'static, ()> + Send>;

/// One request the controller must send next, and how it is answered.
pub struct Expect {
    request: Expected,
    answer: Answer,
    hook: Option<Hook>,
}

enum Expected {
    GetSecret(String),
    GetConfigMap(String),
    PatchStatus(StatusIs),
    CreateEvent(EventIs),
    /// Any other request, checked whole: method, path, query (decoded), and
    /// when given, the JSON body exactly.
    Call {
        method: Method,
        path: String,
        query: Vec<(String, String)>,
        body: Option<Value>,
    },
}

enum Answer {
    /// `200` with this object.
    Object(Value),
    /// `404` with a NotFound Status.
    NotFound,
    /// `200` with the SchemaMigration as patched.
    Patched,
    /// `201` with the Event as sent.
    Created,
    /// This HTTP status with a Status body.
    Error(u16),
    /// `200` with this text, as `pods/log` answers.
    Text(String),
}

impl Expect {
    /// `GET` of this Secret, answered with it.
    pub fn get_secret(secret: &Secret) -> Expect {
        Expect::new(
            Expected::GetSecret(secret.name_any()),
            Answer::Object(serde_json::to_value(secret).expect("a Secret serializes")),
        )
    }

    /// `GET` of a Secret that does not exist, answered `404`.
    pub fn get_missing_secret(name: &str) -> Expect {
        Expect::new(Expected::GetSecret(name.into()), Answer::NotFound)
    }

    /// `GET` of this ConfigMap, answered with it.
    pub fn get_config_map(config_map: &ConfigMap) -> Expect {
        Expect::new(
            Expected::GetConfigMap(config_map.name_any()),
            Answer::Object(serde_json::to_value(config_map).expect("a ConfigMap serializes")),
        )
    }

    /// `GET` of a ConfigMap that does not exist, answered `404`.
    pub fn get_missing_config_map(name: &str) -> Expect {
        Expect::new(Expected::GetConfigMap(name.into()), Answer::NotFound)
    }

    /// A server-side apply of the status that tells `status`; answered with
    /// the object carrying it.
    pub fn status(status: StatusIs) -> Expect {
        Expect::new(Expected::PatchStatus(status), Answer::Patched)
    }

    /// A new Event on the SchemaMigration.
    pub fn event(event: EventIs) -> Expect {
        Expect::new(Expected::CreateEvent(event), Answer::Created)
    }

    /// `GET` of the Jobs labelled as this SchemaMigration's, answered with
    /// `jobs`.
    pub fn list_jobs(jobs: &[Job]) -> Expect {
        Expect::call(
            Method::GET,
            format!("/apis/batch/v1/namespaces/{NAMESPACE}/jobs"),
            &[(
                "labelSelector",
                &format!("schemaop.dev/schemamigration={NAME}"),
            )],
            None,
            Answer::Object(json!({
                "apiVersion": "batch/v1",
                "kind": "JobList",
                "metadata": {"resourceVersion": "700"},
                "items": jobs,
            })),
        )
    }

    /// `POST` of exactly `job`; answered with it as created.
    pub fn create_job(job: &Job) -> Expect {
        Expect::call(
            Method::POST,
            format!("/apis/batch/v1/namespaces/{NAMESPACE}/jobs"),
            &[],
            Some(serde_json::to_value(job).expect("a Job serializes")),
            Answer::Created,
        )
    }

    /// `GET` of `job` by name, answered with it.
    pub fn get_job(job: &Job) -> Expect {
        Expect::call(
            Method::GET,
            format!(
                "/apis/batch/v1/namespaces/{NAMESPACE}/jobs/{}",
                job.name_any()
            ),
            &[],
            None,
            Answer::Object(serde_json::to_value(job).expect("a Job serializes")),
        )
    }

    /// `DELETE` of the Job `name` with this propagation policy.
    pub fn delete_job(name: &str, propagation: &str) -> Expect {
        Expect::call(
            Method::DELETE,
            format!("/apis/batch/v1/namespaces/{NAMESPACE}/jobs/{name}"),
            &[],
            Some(json!({"propagationPolicy": propagation})),
            Answer::Object(json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
            })),
        )
    }

    /// `GET` of the pods of the Job `job`, answered with `pods`.
    pub fn list_pods(job: &str, pods: &[Pod]) -> Expect {
        Expect::call(
            Method::GET,
            format!("/api/v1/namespaces/{NAMESPACE}/pods"),
            &[(
                "labelSelector",
                &format!("batch.kubernetes.io/job-name={job}"),
            )],
            None,
            Answer::Object(json!({
                "apiVersion": "v1",
                "kind": "PodList",
                "metadata": {"resourceVersion": "800"},
                "items": pods,
            })),
        )
    }

    /// `GET` of the last 20 lines of `pod`'s `migrate` container, answered
    /// with `log`.
    pub fn pod_log(pod: &str, log: &str) -> Expect {
        Expect::call(
            Method::GET,
            format!("/api/v1/namespaces/{NAMESPACE}/pods/{pod}/log"),
            &[("container", "migrate"), ("tailLines", "20")],
            None,
            Answer::Text(log.into()),
        )
    }

    fn call(
        method: Method,
        path: String,
        query: &[(&str, &str)],
        body: Option<Value>,
        answer: Answer,
    ) -> Expect {
        let query = query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Expect::new(
            Expected::Call {
                method,
                path,
                query,
                body,
            },
            answer,
        )
    }

    /// The request as expected, but the API server fails it with this HTTP
    /// status.
    pub fn failing_with(mut self, code: u16) -> Expect {
        self.answer = Answer::Error(code);
        self
    }

    /// Runs `hook` once the request has come and before it is answered: the
    /// controller is then waiting on the API server.
    pub fn before_answering<F, Fut>(mut self, hook: F) -> Expect
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.hook = Some(Box::new(move || hook().boxed()));
        self
    }

    /// The request as expected, but the API server holds its answer until
    /// the returned gate is opened; the controller waits meanwhile.
    pub fn held(self) -> (Expect, Gate) {
        let (reached, has_reached) = oneshot::channel();
        let (open, opened) = oneshot::channel();
        let expect = self.before_answering(move || async move {
            let _ = reached.send(());
            let _ = opened.await;
        });
        let gate = Gate {
            reached: Some(has_reached),
            open,
        };
        (expect, gate)
    }

    fn new(request: Expected, answer: Answer) -> Expect {
        Expect {
            request,
            answer,
            hook: None,
        }
    }
}

/// Where the API server holds a request; see [`Expect::held`].
pub struct Gate {
    reached: Option<oneshot::Receiver<()>>,
    open: oneshot::Sender<()>,
}

impl Gate {
    /// Returns once the held request has come.
    pub async fn reached(&mut self) {
        let reached = self.reached.take().expect("a gate is reached once");
        reached
            .await
            .expect("the API server stopped before the held request came; see its panic");
    }

    /// Lets the API server answer.
    pub fn open(self) {
        let _ = self.open.send(());
    }
}

impl fmt::Display for Expected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expected::GetSecret(name) => write!(f, "GET Secret {name:?}"),
            Expected::GetConfigMap(name) => write!(f, "GET ConfigMap {name:?}"),
            Expected::PatchStatus(status) => write!(f, "PATCH status {status}"),
            Expected::CreateEvent(event) => write!(f, "POST Event {event}"),
            Expected::Call { method, path, .. } => write!(f, "{method} {path}"),
        }
    }
}

/// What a status patch must say. Every patch must also carry the object's
/// generation as `observedGeneration`, on the status and on each of the three
/// conditions, which all give the same reason.
#[derive(Debug, Clone)]
pub struct StatusIs {
    ready: bool,
    reconciling: bool,
    stalled: bool,
    reason: &'static str,
    mentions: Vec<String>,
    current_revision: Option<&'static str>,
    target_revision: Option<&'static str>,
    pending: Option<i32>,
    run_phase: Option<Option<RunPhase>>,
    attempt: Option<i32>,
    migration: Option<i64>,
    job: Option<(String, Option<&'static str>)>,
}

impl StatusIs {
    /// Ready=True, Reconciling=False, Stalled=False.
    pub fn ready(reason: &'static str) -> StatusIs {
        StatusIs::new(true, false, false, reason)
    }

    /// Ready=False, Reconciling=True, Stalled=False.
    pub fn reconciling(reason: &'static str) -> StatusIs {
        StatusIs::new(false, true, false, reason)
    }

    /// Ready=False, Reconciling=False, Stalled=True.
    pub fn stalled(reason: &'static str) -> StatusIs {
        StatusIs::new(false, false, true, reason)
    }

    /// All three False: neither there nor working on it nor stuck.
    pub fn idle(reason: &'static str) -> StatusIs {
        StatusIs::new(false, false, false, reason)
    }

    /// The conditions' message contains `text`.
    pub fn saying(mut self, text: impl Into<String>) -> StatusIs {
        self.mentions.push(text.into());
        self
    }

    /// `currentRevision`.
    pub fn revision(mut self, revision: &'static str) -> StatusIs {
        self.current_revision = Some(revision);
        self
    }

    /// `targetRevision`.
    pub fn target(mut self, revision: &'static str) -> StatusIs {
        self.target_revision = Some(revision);
        self
    }

    /// `pendingMigrations`.
    pub fn pending(mut self, count: i32) -> StatusIs {
        self.pending = Some(count);
        self
    }

    /// `run.phase`.
    pub fn run(mut self, phase: RunPhase) -> StatusIs {
        self.run_phase = Some(Some(phase));
        self
    }

    /// No `run` at all.
    pub fn without_run(mut self) -> StatusIs {
        self.run_phase = Some(None);
        self
    }

    /// `run.attempt`.
    pub fn attempt(mut self, attempt: i32) -> StatusIs {
        self.attempt = Some(attempt);
        self
    }

    /// `run.migration.version`: the migration being applied or reverted.
    pub fn migrating(mut self, version: i64) -> StatusIs {
        self.migration = Some(version);
        self
    }

    /// `run.job` and `run.podPhase`: the Job of `spec.job`, and its pod's phase.
    pub fn job(mut self, name: impl Into<String>, pod_phase: Option<&'static str>) -> StatusIs {
        self.job = Some((name.into(), pod_phase));
        self
    }

    fn new(ready: bool, reconciling: bool, stalled: bool, reason: &'static str) -> StatusIs {
        StatusIs {
            ready,
            reconciling,
            stalled,
            reason,
            mentions: Vec::new(),
            current_revision: None,
            target_revision: None,
            pending: None,
            run_phase: None,
            attempt: None,
            migration: None,
            job: None,
        }
    }

    fn check(&self, status: &SchemaMigrationStatus, generation: Option<i64>, at: &str) {
        assert_eq!(
            status.observed_generation, generation,
            "{at}: status.observedGeneration"
        );
        let types: Vec<&str> = status.conditions.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(
            types,
            [
                conditions::READY,
                conditions::RECONCILING,
                conditions::STALLED
            ],
            "{at}: the conditions"
        );
        for (type_, holds) in [
            (conditions::READY, self.ready),
            (conditions::RECONCILING, self.reconciling),
            (conditions::STALLED, self.stalled),
        ] {
            let condition = status.condition(type_).expect("checked above");
            assert_eq!(
                condition.status,
                ConditionStatus::from(holds),
                "{at}: {type_}"
            );
            assert_eq!(condition.reason, self.reason, "{at}: the reason of {type_}");
            assert_eq!(
                condition.observed_generation, generation,
                "{at}: the observedGeneration of {type_}"
            );
            for text in &self.mentions {
                assert!(
                    condition.message.contains(text.as_str()),
                    "{at}: the message of {type_} does not mention {text:?}: {:?}",
                    condition.message
                );
            }
        }
        if let Some(revision) = self.current_revision {
            assert_eq!(
                status.current_revision.as_deref(),
                Some(revision),
                "{at}: currentRevision"
            );
        }
        if let Some(revision) = self.target_revision {
            assert_eq!(
                status.target_revision.as_deref(),
                Some(revision),
                "{at}: targetRevision"
            );
        }
        if let Some(pending) = self.pending {
            assert_eq!(
                status.pending_migrations,
                Some(pending),
                "{at}: pendingMigrations"
            );
        }
        let run = status.run.as_ref();
        if let Some(phase) = self.run_phase {
            assert_eq!(run.and_then(|r| r.phase), phase, "{at}: run.phase");
        }
        if let Some(attempt) = self.attempt {
            assert_eq!(
                run.and_then(|r| r.attempt),
                Some(attempt),
                "{at}: run.attempt"
            );
        }
        if let Some(version) = self.migration {
            let migrating = run.and_then(|r| r.migration.as_ref()).map(|m| m.version);
            assert_eq!(migrating, Some(version), "{at}: run.migration.version");
        }
        if let Some((job, pod_phase)) = &self.job {
            assert_eq!(
                run.and_then(|r| r.job.as_deref()),
                Some(job.as_str()),
                "{at}: run.job"
            );
            assert_eq!(
                run.and_then(|r| r.pod_phase.as_deref()),
                *pod_phase,
                "{at}: run.podPhase"
            );
        }
    }
}

impl fmt::Display for StatusIs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Ready={} Reconciling={} Stalled={} reason={}",
            ConditionStatus::from(self.ready),
            ConditionStatus::from(self.reconciling),
            ConditionStatus::from(self.stalled),
            self.reason
        )
    }
}

/// What an Event on the SchemaMigration must say.
#[derive(Debug, Clone)]
pub struct EventIs {
    warning: bool,
    reason: &'static str,
    action: Option<&'static str>,
    mentions: Vec<String>,
}

impl EventIs {
    pub fn normal(reason: &'static str) -> EventIs {
        EventIs {
            warning: false,
            reason,
            action: None,
            mentions: Vec::new(),
        }
    }

    pub fn warning(reason: &'static str) -> EventIs {
        EventIs {
            warning: true,
            ..EventIs::normal(reason)
        }
    }

    /// The Event's `action`: `Reconcile` or `Migrate`.
    pub fn action(mut self, action: &'static str) -> EventIs {
        self.action = Some(action);
        self
    }

    /// The Event's note contains `text`.
    pub fn saying(mut self, text: impl Into<String>) -> EventIs {
        self.mentions.push(text.into());
        self
    }

    fn check(&self, event: &Value, regarding: &SchemaMigration, at: &str) {
        let type_ = if self.warning { "Warning" } else { "Normal" };
        assert_eq!(event["type"], type_, "{at}: the Event's type in {event}");
        assert_eq!(
            event["reason"], self.reason,
            "{at}: the Event's reason in {event}"
        );
        if let Some(action) = self.action {
            assert_eq!(
                event["action"], action,
                "{at}: the Event's action in {event}"
            );
        }
        assert_eq!(event["reportingController"], "schemaop", "{at}: {event}");
        assert_eq!(event["reportingInstance"], IDENTITY, "{at}: {event}");
        let about = &event["regarding"];
        assert_eq!(
            about["kind"], "SchemaMigration",
            "{at}: the Event is about {about}"
        );
        assert_eq!(
            about["name"],
            regarding.name_any(),
            "{at}: the Event is about {about}"
        );
        assert_eq!(
            about["namespace"], NAMESPACE,
            "{at}: the Event is about {about}"
        );
        assert_eq!(about["uid"], json!(regarding.metadata.uid), "{at}: {about}");
        let note = event["note"].as_str().unwrap_or_default();
        for text in &self.mentions {
            assert!(
                note.contains(text.as_str()),
                "{at}: the Event's note does not mention {text:?}: {note:?}"
            );
        }
    }
}

impl fmt::Display for EventIs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let type_ = if self.warning { "Warning" } else { "Normal" };
        write!(f, "{type_} {}", self.reason)
    }
}

// --- what the controller sent --------------------------------------------------

/// One request as the API server received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    /// The query parameters, sorted.
    pub query: Vec<(String, String)>,
    pub content_type: Option<String>,
    /// The body exactly as sent.
    pub body: String,
}

impl Seen {
    async fn read(request: Request<Body>) -> Seen {
        let (parts, body) = request.into_parts();
        let body = body.collect_bytes().await.expect("a readable request body");
        let mut query: Vec<(String, String)> = parts
            .uri
            .query()
            .unwrap_or_default()
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                (key.to_string(), value.to_string())
            })
            .collect();
        query.sort();
        Seen {
            method: parts.method,
            path: parts.uri.path().to_string(),
            query,
            content_type: parts
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            body: String::from_utf8(body.to_vec()).expect("a UTF-8 request body"),
        }
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{self}: not JSON ({e})"))
    }

    fn query_is(&self, expected: &[(&str, &str)]) -> bool {
        let mut expected: Vec<(String, String)> = expected
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        expected.sort();
        self.query == expected
    }

    /// What the body says, in a few words, for transcripts.
    fn gist(&self) -> String {
        let Ok(body) = serde_json::from_str::<Value>(&self.body) else {
            return String::new();
        };
        if let Some(status) = body.get("status").filter(|s| s.is_object()) {
            let condition = |type_: &str| {
                status["conditions"]
                    .as_array()
                    .and_then(|all| all.iter().find(|c| c["type"] == type_))
                    .map_or("-".to_string(), |c| {
                        c["status"].as_str().unwrap_or("?").to_string()
                    })
            };
            let reason = status["conditions"][0]["reason"].as_str().unwrap_or("-");
            let mut gist = format!(
                "Ready={} Reconciling={} Stalled={} reason={reason}",
                condition(conditions::READY),
                condition(conditions::RECONCILING),
                condition(conditions::STALLED),
            );
            if let Some(revision) = status["currentRevision"].as_str() {
                gist.push_str(&format!(" currentRevision={revision}"));
            }
            if let Some(phase) = status["run"]["phase"].as_str() {
                gist.push_str(&format!(" run.phase={phase}"));
            }
            if let Some(attempt) = status["run"]["attempt"].as_i64() {
                gist.push_str(&format!(" run.attempt={attempt}"));
            }
            if let Some(version) = status["run"]["migration"]["version"].as_i64() {
                gist.push_str(&format!(" run.migration={version}"));
            }
            return gist;
        }
        if body["kind"] == "Event" || body.get("series").is_some() {
            let mut gist = format!(
                "{} {}: {}",
                body["type"].as_str().unwrap_or("?"),
                body["reason"].as_str().unwrap_or("?"),
                body["note"].as_str().unwrap_or_default()
            );
            if let Some(count) = body["series"]["count"].as_i64() {
                gist.push_str(&format!(" (series count {count})"));
            }
            return gist;
        }
        String::new()
    }
}

impl fmt::Display for Seen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.path)?;
        if !self.query.is_empty() {
            let query: Vec<String> = self.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
            write!(f, "?{}", query.join("&"))?;
        }
        let gist = self.gist();
        if !gist.is_empty() {
            write!(f, "  [{gist}]")?;
        }
        Ok(())
    }
}

/// Every request of one scenario, in the order they came.
#[derive(Debug, Clone, Default)]
pub struct Transcript {
    pub requests: Vec<Seen>,
}

impl Transcript {
    /// The statuses the controller applied, in order.
    pub fn statuses(&self) -> Vec<SchemaMigrationStatus> {
        self.requests
            .iter()
            .filter(|seen| seen.path.ends_with("/status"))
            .map(|seen| serde_json::from_value(seen.json()["status"].clone()).expect("a status"))
            .collect()
    }

    /// Everything the controller wrote, each labelled with where it went.
    pub fn writings(&self) -> Vec<(String, String)> {
        self.requests
            .iter()
            .enumerate()
            .map(|(i, seen)| {
                let query: Vec<String> =
                    seen.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
                (
                    format!("request {} ({} {})", i + 1, seen.method, seen.path),
                    format!("{}?{}\n{}", seen.path, query.join("&"), seen.body),
                )
            })
            .collect()
    }
}

impl fmt::Display for Transcript {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seen) in self.requests.iter().enumerate() {
            writeln!(f, "{:>3}. {seen}", i + 1)?;
        }
        Ok(())
    }
}

// --- the API server ----------------------------------------------------------

type ApiServerHandle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// Plays the API server for one scenario at a time, keeping the
/// SchemaMigration as the controller's status patches leave it.
pub struct ApiServerVerifier {
    handle: ApiServerHandle,
    object: SchemaMigration,
    transcript: Transcript,
}

impl ApiServerVerifier {
    fn new(handle: ApiServerHandle, object: SchemaMigration) -> Self {
        ApiServerVerifier {
            handle,
            object,
            transcript: Transcript::default(),
        }
    }

    /// Serves `expected` in order, in the background, then refuses anything
    /// more until `done`, when the controller has nothing left to send. The
    /// task panics on the first request that is not the one expected, on an
    /// expected request that does not come within [`REQUEST_TIMEOUT`] or
    /// before `done`, and on any request after the last one expected; the
    /// request it panics on fails, so the controller never waits for it.
    pub fn run(self, expected: Vec<Expect>, done: CancellationToken) -> JoinHandle<Self> {
        tokio::spawn(self.serve(expected, done))
    }

    async fn serve(mut self, expected: Vec<Expect>, done: CancellationToken) -> Self {
        let total = expected.len();
        for (i, expect) in expected.into_iter().enumerate() {
            let at = format!("request {} of {total} ({})", i + 1, expect.request);
            let so_far = &self.transcript;
            let (request, respond) = tokio::select! {
                biased;
                next = self.handle.next_request() => next.expect("the controller's client is gone"),
                () = done.cancelled() => {
                    panic!("{at} never came: the controller is done; the requests so far:\n{so_far}")
                }
                () = tokio::time::sleep(REQUEST_TIMEOUT) => {
                    panic!("{at} did not come within {REQUEST_TIMEOUT:?}; the requests so far:\n{so_far}")
                }
            };
            let seen = Seen::read(request).await;
            let line = format!("{} {}", seen.method, seen.path);
            tracing::debug!(target: "schemaop::fixtures", "the API server received {line}");
            self.transcript.requests.push(seen.clone());
            let at = format!("{at}; the requests so far:\n{}", self.transcript);
            let response = self.answer(&expect, &seen, &at);
            if let Some(hook) = expect.hook {
                hook().await;
            }
            respond.send_response(response);
        }
        tokio::select! {
            biased;
            next = self.handle.next_request() => {
                let (request, _refused) = next.expect("the controller's client is gone");
                let seen = Seen::read(request).await;
                panic!(
                    "unexpected request after the scenario: {seen}\n{}\nthe requests before it:\n{}",
                    seen.body, self.transcript
                );
            }
            () = done.cancelled() => self,
        }
    }

    fn answer(&mut self, expect: &Expect, seen: &Seen, at: &str) -> Response<Body> {
        let namespace = self.object.namespace().unwrap_or_default();
        let name = self.object.name_any();
        let generation = self.object.metadata.generation;
        let refused = match expect.answer {
            Answer::Error(code) => Some(code),
            _ => None,
        };
        match &expect.request {
            Expected::GetSecret(secret) => {
                assert_eq!(seen.method, Method::GET, "{at}");
                assert_eq!(
                    seen.path,
                    format!("/api/v1/namespaces/{namespace}/secrets/{secret}"),
                    "{at}"
                );
                assert!(seen.query_is(&[]), "{at}");
            }
            Expected::GetConfigMap(config_map) => {
                assert_eq!(seen.method, Method::GET, "{at}");
                assert_eq!(
                    seen.path,
                    format!("/api/v1/namespaces/{namespace}/configmaps/{config_map}"),
                    "{at}"
                );
                assert!(seen.query_is(&[]), "{at}");
            }
            Expected::PatchStatus(want) => {
                assert_eq!(seen.method, Method::PATCH, "{at}");
                assert_eq!(
                    seen.path,
                    format!(
                        "/apis/schemaop.dev/v1alpha1/namespaces/{namespace}/schemamigrations/{name}/status"
                    ),
                    "{at}"
                );
                assert!(
                    seen.query_is(&[("fieldManager", "schemaop"), ("force", "true")]),
                    "{at}: a forced server-side apply by schemaop"
                );
                assert_eq!(
                    seen.content_type.as_deref(),
                    Some("application/apply-patch+yaml"),
                    "{at}"
                );
                let body = seen.json();
                assert_eq!(body["apiVersion"], "schemaop.dev/v1alpha1", "{at}");
                assert_eq!(body["kind"], "SchemaMigration", "{at}");
                let status: SchemaMigrationStatus = serde_json::from_value(body["status"].clone())
                    .unwrap_or_else(|e| panic!("{at}: {e}"));
                want.check(&status, generation, at);
                if refused.is_none() {
                    self.object.status = Some(status);
                    let version: u64 = self
                        .object
                        .resource_version()
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    self.object.metadata.resource_version = Some((version + 1).to_string());
                }
            }
            Expected::CreateEvent(want) => {
                assert_eq!(seen.method, Method::POST, "{at}");
                assert_eq!(
                    seen.path,
                    format!("/apis/events.k8s.io/v1/namespaces/{namespace}/events"),
                    "{at}"
                );
                assert!(seen.query_is(&[]), "{at}");
                let event = seen.json();
                assert_eq!(event["apiVersion"], "events.k8s.io/v1", "{at}");
                assert_eq!(event["kind"], "Event", "{at}");
                want.check(&event, &self.object, at);
            }
            Expected::Call {
                method,
                path,
                query,
                body,
            } => {
                assert_eq!(&seen.method, method, "{at}");
                assert_eq!(&seen.path, path, "{at}");
                let mut decoded: Vec<(String, String)> = seen
                    .query
                    .iter()
                    .map(|(k, v)| {
                        let v = percent_encoding::percent_decode_str(v).decode_utf8_lossy();
                        (k.clone(), v.into_owned())
                    })
                    .collect();
                decoded.sort();
                let mut query = query.clone();
                query.sort();
                assert_eq!(decoded, query, "{at}: the query");
                if let Some(body) = body {
                    let sent = seen.json();
                    // A DELETE's body says more (kind, apiVersion): only
                    // what the expectation names must match there.
                    if *method == Method::DELETE {
                        for (key, value) in body.as_object().expect("an object") {
                            assert_eq!(&sent[key], value, "{at}: {key} in {sent}");
                        }
                    } else {
                        assert_eq!(&sent, body, "{at}: the body");
                    }
                }
            }
        }
        match &expect.answer {
            Answer::Object(object) => json_response(StatusCode::OK, object),
            Answer::Text(text) => Response::builder()
                .status(StatusCode::OK)
                .header(http::header::CONTENT_TYPE, "text/plain")
                .body(Body::from(text.clone().into_bytes()))
                .expect("a valid response"),
            Answer::NotFound => {
                let (kind, name) = match &expect.request {
                    Expected::GetSecret(name) => ("secrets", name),
                    Expected::GetConfigMap(name) => ("configmaps", name),
                    _ => unreachable!("only GETs are answered with NotFound"),
                };
                status_response(404, format!("{kind} {name:?} not found"))
            }
            Answer::Patched => json_response(
                StatusCode::OK,
                &serde_json::to_value(&self.object).expect("a SchemaMigration serializes"),
            ),
            Answer::Created => json_response(StatusCode::CREATED, &seen.json()),
            Answer::Error(code) => {
                status_response(*code, format!("the API server failed the request ({code})"))
            }
        }
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Body::from(serde_json::to_vec(body).expect("JSON")))
        .expect("a valid response")
}

/// A `Status` body, as the API server sends with every error.
fn status_response(code: u16, message: String) -> Response<Body> {
    let reason = match code {
        403 => "Forbidden",
        404 => "NotFound",
        409 => "Conflict",
        422 => "Invalid",
        _ => "InternalError",
    };
    json_response(
        StatusCode::from_u16(code).expect("an HTTP status"),
        &json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason,
            "code": code,
        }),
    )
}

// --- the harness ---------------------------------------------------------------

/// A [`Context`] whose client talks to an [`ApiServerVerifier`], and the
/// SchemaMigration as that API server holds it.
pub struct Harness {
    pub ctx: Arc<Context>,
    object: SchemaMigration,
    verifier: Option<ApiServerVerifier>,
}

/// A scenario being served; see [`Harness::finish`].
pub struct Serving {
    verifier: JoinHandle<ApiServerVerifier>,
    /// Tells the verifier that the controller has nothing left to send.
    done: CancellationToken,
}

impl Harness {
    pub fn new(object: SchemaMigration) -> Harness {
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(service, NAMESPACE);
        let config = ControllerConfig {
            watch_namespace: None,
            max_concurrent_runs: 2,
            identity: IDENTITY.into(),
            job: super::job::JobSettings {
                wrapper_image: Some(WRAPPER_IMAGE.into()),
            },
        };
        Harness {
            ctx: Context::new(client, config, Arc::new(Metrics::new())),
            verifier: Some(ApiServerVerifier::new(handle, object.clone())),
            object,
        }
    }

    /// The SchemaMigration as the API server holds it now: with the status
    /// the last scenario left on it.
    pub fn object(&self) -> Arc<SchemaMigration> {
        Arc::new(self.object.clone())
    }

    /// Changes the spec between scenarios, as a person would; the API
    /// server counts a new generation.
    pub fn edit_spec(&mut self, edit: impl FnOnce(&mut SchemaMigrationSpec)) {
        let verifier = self.verifier.as_mut().expect("no scenario in progress");
        let object = &mut verifier.object;
        edit(&mut object.spec);
        object.metadata.generation = Some(object.metadata.generation.unwrap_or(0) + 1);
        self.object = object.clone();
    }

    /// Reconciles the object while the API server expects exactly
    /// `expected`, in order, from the reconcile and from any run it starts;
    /// returns once both are done.
    pub async fn reconcile(&mut self, expected: Vec<Expect>) -> (Result<Action>, Transcript) {
        let serving = self.expect(expected);
        let result = super::reconcile(self.object(), self.ctx.clone()).await;
        let transcript = self.finish(serving).await;
        (result, transcript)
    }

    /// Starts serving `expected`; the test then drives the controller itself.
    pub fn expect(&mut self, expected: Vec<Expect>) -> Serving {
        let verifier = self.verifier.take().expect("one scenario at a time");
        let done = CancellationToken::new();
        Serving {
            verifier: verifier.run(expected, done.clone()),
            done,
        }
    }

    /// Once the test's reconciles have returned: waits until every run they
    /// started has ended, then for the verifier, which fails the test if an
    /// expected request never came or an unexpected one did.
    pub async fn finish(&mut self, serving: Serving) -> Transcript {
        let settled = tokio::time::timeout(RUN_TIMEOUT, self.ctx.runs.settle()).await;
        serving.done.cancel();
        let mut verifier = match serving.verifier.await {
            Ok(verifier) => verifier,
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(error) => panic!("the API server stopped: {error}"),
        };
        assert!(
            settled.is_ok(),
            "a run was still going after {RUN_TIMEOUT:?}"
        );
        let transcript = std::mem::take(&mut verifier.transcript);
        println!("{transcript}");
        self.object = verifier.object.clone();
        self.verifier = Some(verifier);
        transcript
    }
}

// --- databases -------------------------------------------------------------------

/// The test server's admin URL, as `scripts/postgres.sh` exports it.
pub fn admin_url() -> String {
    std::env::var("SCHEMAOP_TEST_ADMIN_URL")
        .unwrap_or_else(|_| "postgres://schemaop_test:schemaop_test@127.0.0.1:5432/postgres".into())
}

/// The test server's URL for `database`, as `user` with `password`.
pub fn url_as(user: &str, password: &str, database: &str) -> String {
    let admin = admin_url();
    let (scheme, rest) = admin.split_once("://").expect("the admin URL is a URL");
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let server = authority
        .rsplit_once('@')
        .map_or(authority, |(_, server)| server);
    let query = path
        .split_once('?')
        .map(|(_, q)| format!("?{q}"))
        .unwrap_or_default();
    format!("{scheme}://{user}:{password}@{server}/{database}{query}")
}

/// A connection to `db` given field by field, as the admin, without TLS,
/// with the password in `key` of the Secret `secret`; and that password.
pub fn connection_to(db: &TestDb, secret: &str, key: &str) -> (crd::Connection, String) {
    let admin: tokio_postgres::Config = admin_url().parse().expect("the admin URL parses");
    let host = match admin.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        other => panic!("the admin URL needs a TCP host, not {other:?}"),
    };
    let password = admin.get_password().expect("the admin URL has a password");
    let connection = crd::Connection {
        host,
        port: i32::from(admin.get_ports().first().copied().unwrap_or(5432)),
        database: db.name.clone(),
        user: admin.get_user().expect("the admin URL has a user").into(),
        password_secret_ref: SecretKeyRef {
            name: secret.into(),
            key: key.into(),
        },
        ssl_mode: crd::SslMode::Disable,
        ca_secret_ref: None,
    };
    (
        connection,
        String::from_utf8(password.to_vec()).expect("a text password"),
    )
}

/// The admin URL with another database.
fn admin_url_for(database: &str) -> String {
    let admin = admin_url();
    let (base, query) = admin
        .split_once('?')
        .map_or((admin.as_str(), None), |(b, q)| (b, Some(q)));
    let (server, _) = base
        .rsplit_once('/')
        .expect("the admin URL names a database");
    match query {
        Some(query) => format!("{server}/{database}?{query}"),
        None => format!("{server}/{database}"),
    }
}

static UNIQUE: AtomicUsize = AtomicUsize::new(0);

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        UNIQUE.fetch_add(1, Ordering::SeqCst)
    )
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| {
            panic!("cannot connect to the test server ({e}); start it with scripts/postgres.sh")
        });
    tokio::spawn(connection);
    client
}

/// Runs `sql` as the admin, connected to the admin URL's database.
pub async fn as_admin(sql: String) {
    connect(&admin_url())
        .await
        .batch_execute(&sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Runs `sql` as the admin on a thread of its own, for `Drop`: the test's
/// runtime may be shutting down.
fn admin_execute_blocking(sql: String) {
    let _ = std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        runtime.block_on(async {
            if let Ok((client, connection)) = tokio_postgres::connect(&admin_url(), NoTls).await {
                tokio::spawn(connection);
                let _ = client.batch_execute(&sql).await;
            }
        });
    })
    .join();
}

/// A database for one test, dropped after it.
pub struct TestDb {
    pub name: String,
    /// The admin's URL for this database.
    pub url: String,
}

impl TestDb {
    pub async fn new() -> TestDb {
        let name = unique("schemaop_scn");
        connect(&admin_url())
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("cannot create a test database: {e}"));
        TestDb {
            url: admin_url_for(&name),
            name,
        }
    }

    /// Brings the database to `target` with the engine, as `schemaop
    /// upgrade` or `downgrade` would, in the default history table.
    pub async fn migrate(&self, files: &[(&str, &str)], target: Target) {
        let source = MigrationSource::from_files(files.iter().copied()).expect("a valid source");
        let database = Database::from_url(&self.url).expect("the test URL parses");
        let migrator = Migrator::new(&source, database, MigratorOptions::default());
        migrator
            .run(
                target,
                Direction::Either {
                    allow_downgrade: true,
                },
                &|_| {},
            )
            .await
            .unwrap_or_else(|e| panic!("migrating the test database: {e}"));
    }

    /// Runs `sql` in this database as the admin, as another tool would.
    pub async fn execute(&self, sql: &str) {
        connect(&self.url)
            .await
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// The versions in the history table, oldest first.
    pub async fn applied(&self) -> Vec<i64> {
        self.column("SELECT version FROM public.schemaop_migrations ORDER BY version")
            .await
            .iter()
            .map(|v| v.parse().expect("a version"))
            .collect()
    }

    /// The tables of `public`, but for schemaop's own.
    pub async fn tables(&self) -> Vec<String> {
        self.column(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' \
             AND tablename NOT LIKE 'schemaop_migrations%' ORDER BY 1",
        )
        .await
    }

    /// The columns of a table in `public`, in order.
    pub async fn columns(&self, table: &str) -> Vec<String> {
        self.column(&format!(
            "SELECT column_name FROM information_schema.columns \
             WHERE table_schema = 'public' AND table_name = '{table}' ORDER BY ordinal_position"
        ))
        .await
    }

    async fn column(&self, sql: &str) -> Vec<String> {
        let messages = connect(&self.url)
            .await
            .simple_query(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        messages
            .iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
                _ => None,
            })
            .collect()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        admin_execute_blocking(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
    }
}

/// A login role with a password, for one test. Create it before the
/// databases it may use, so that it is dropped after them.
pub struct TestRole {
    pub name: String,
    pub password: String,
}

impl TestRole {
    pub async fn new(password: &str) -> TestRole {
        let name = unique("schemaop_scn_role");
        connect(&admin_url())
            .await
            // Membership lets the admin drop what the role creates.
            .batch_execute(&format!(
                "CREATE ROLE {name} LOGIN PASSWORD '{password}'; GRANT {name} TO CURRENT_USER;"
            ))
            .await
            .unwrap_or_else(|e| panic!("cannot create a test role: {e}"));
        TestRole {
            name,
            password: password.into(),
        }
    }

    /// Lets the role connect to `db` and create objects in its `public`.
    pub async fn grant_all_on(&self, db: &TestDb) {
        connect(&db.url)
            .await
            .batch_execute(&format!(
                "GRANT ALL ON DATABASE {db} TO {role}; GRANT ALL ON SCHEMA public TO {role};",
                db = db.name,
                role = self.name
            ))
            .await
            .unwrap_or_else(|e| panic!("cannot grant the test role: {e}"));
    }

    /// The URL of `db`, as this role with its password.
    pub fn url(&self, db: &TestDb) -> String {
        url_as(&self.name, &self.password, &db.name)
    }
}

impl Drop for TestRole {
    fn drop(&mut self) {
        admin_execute_blocking(format!("DROP ROLE IF EXISTS {}", self.name));
    }
}

// --- logs ------------------------------------------------------------------------

/// Every log line written while installed, at every level: `tracing`
/// events and spans, and `log` records from dependencies.
#[derive(Clone, Default)]
pub struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl CapturedLogs {
    /// Captures the current thread's logs until the guard is dropped. With
    /// the single-threaded test runtime, that is everything the test's tasks
    /// log, the controller's runs included.
    pub fn install(&self) -> tracing::subscriber::DefaultGuard {
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_span_events(FmtSpan::NEW)
            .with_ansi(false)
            .with_writer(self.clone())
            .finish()
            .set_default()
    }

    pub fn text(&self) -> String {
        let bytes = self.0.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Each line, labelled with its number.
    pub fn lines(&self) -> Vec<(String, String)> {
        self.text()
            .lines()
            .enumerate()
            .map(|(i, line)| (format!("log line {}", i + 1), line.to_string()))
            .collect()
    }
}

impl<'a> MakeWriter<'a> for CapturedLogs {
    type Writer = CapturedLogs;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl io::Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The labels of the places that contain `secret`.
pub fn places_mentioning(secret: &str, places: &[(String, String)]) -> Vec<String> {
    assert!(!secret.is_empty(), "an empty secret is everywhere");
    places
        .iter()
        .filter(|(_, text)| text.contains(secret))
        .map(|(label, text)| format!("{label}: {text}"))
        .collect()
}
