//! Job mode against a scripted API server and a real PostgreSQL: the exact
//! requests, in order, from a SchemaMigration whose `spec.job` runs the app's
//! own Alembic, through its Job's life, to the status that tells it.

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use serde_json::json;

use super::cache;
use super::decide::RECHECK;
use super::fixtures::{
    CapturedLogs, EventIs, Expect, Harness, StatusIs, TestDb, URL_SECRET, WRAPPER_IMAGE,
    alembic_job, kubectl_applied, places_mentioning, schema_migration, url_secret,
};
use super::inputs::RETRY_ANNOTATION;
use super::job::{self, JobSettings};
use crate::adapters::alembic;
use crate::crd::{RunPhase, SchemaMigration};
use crate::engine::HistoryTable;

/// The password in the database URL's Secret: it must never leave it.
const PASSWORD: &str = "s3cr3t-job-pw";
const URL: &str = "postgresql+asyncpg://app:s3cr3t-job-pw@db.apps.svc:5432/app";
/// The head revision of the Alembic app.
const HEAD: &str = "ae1027a6acf";

fn alembic() -> SchemaMigration {
    schema_migration().job(alembic_job()).target("head").build()
}

/// The Job the controller must create for `obj`.
fn desired(obj: &SchemaMigration) -> Job {
    let settings = JobSettings {
        wrapper_image: Some(WRAPPER_IMAGE.into()),
    };
    job::build(obj, obj.spec.job.as_ref().unwrap(), &settings).unwrap()
}

/// `job` as the API server would hold it, with this status.
fn with_status(job: &Job, status: serde_json::Value) -> Job {
    let mut value = serde_json::to_value(job).unwrap();
    value["metadata"]["uid"] = json!("uid-job");
    value["metadata"]["resourceVersion"] = json!("600");
    value["status"] = status;
    serde_json::from_value(value).unwrap()
}

fn succeeded(job: &Job) -> Job {
    with_status(
        job,
        json!({
            "startTime": "2026-12-04T10:00:00Z",
            "completionTime": "2026-12-04T10:00:30Z",
            "succeeded": 1,
            "conditions": [
                {"type": "SuccessCriteriaMet", "status": "True"},
                {"type": "Complete", "status": "True"},
            ],
        }),
    )
}

fn failed(job: &Job) -> Job {
    with_status(
        job,
        json!({
            "startTime": "2026-12-04T10:00:00Z",
            "failed": 6,
            "conditions": [{
                "type": "Failed",
                "status": "True",
                "reason": "BackoffLimitExceeded",
                "message": "Job has reached the specified backoff limit",
                "lastTransitionTime": "2026-12-04T10:05:00Z",
            }],
        }),
    )
}

fn pod(job: &Job, suffix: &str, phase: &str, created: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {
            "name": format!("{}-{suffix}", job.name_any()),
            "namespace": "apps",
            "creationTimestamp": created,
        },
        "status": {"phase": phase},
    }))
    .unwrap()
}

#[tokio::test]
async fn a_job_spec_creates_its_job_with_the_exact_body_and_no_secret_value_anywhere() {
    let logs = CapturedLogs::default();
    let _logs = logs.install();
    let obj = alembic();
    let job = desired(&obj);
    let name = job.name_any();
    let mut harness = Harness::new(obj);

    let (action, transcript) = harness
        .reconcile(vec![
            Expect::get_secret(&url_secret(URL)),
            Expect::list_jobs(&[]),
            Expect::create_job(&job),
            Expect::event(
                EventIs::normal("JobCreated")
                    .action("Migrate")
                    .saying(format!("created Job {name}")),
            ),
            Expect::list_pods(&name, &[]),
            Expect::status(
                StatusIs::reconciling("Migrating")
                    .saying(format!("Job {name} runs the migration command"))
                    .target("head")
                    .run(RunPhase::Running)
                    .attempt(1)
                    .job(name.clone(), None),
            ),
        ])
        .await;
    assert_eq!(
        action.expect("a reconcile"),
        Action::requeue(Duration::from_secs(5))
    );
    let mut places = transcript.writings();
    places.extend(logs.lines());
    assert_eq!(places_mentioning(PASSWORD, &places), Vec::<String>::new());
    // What the Job holds of the database: a reference, by name and key.
    let created = transcript.requests[2].json();
    assert_eq!(
        created["spec"]["template"]["spec"]["containers"][0]["env"][1]["valueFrom"],
        json!({"secretKeyRef": {"name": URL_SECRET, "key": "url", "optional": false}})
    );
}

/// The controller reconciles what its watch cache holds: a kubectl-applied
/// object, trimmed. The retry annotation it keeps is part of the Job's name.
#[tokio::test]
async fn a_retried_job_spec_from_the_trimmed_cache_creates_the_job_of_the_whole_object() {
    let whole = kubectl_applied(
        schema_migration()
            .job(alembic_job())
            .target("head")
            .annotation(RETRY_ANNOTATION, "1733050000")
            .build(),
    );
    let job = desired(&whole);
    assert_ne!(job.name_any(), desired(&alembic()).name_any());
    let name = job.name_any();
    let mut cached = whole.clone();
    cache::trim(&mut cached);
    let mut harness = Harness::new(cached);

    let (action, _) = harness
        .reconcile(vec![
            Expect::get_secret(&url_secret(URL)),
            Expect::list_jobs(&[]),
            Expect::create_job(&job),
            Expect::event(EventIs::normal("JobCreated").action("Migrate")),
            Expect::list_pods(&name, &[]),
            Expect::status(
                StatusIs::reconciling("Migrating")
                    .run(RunPhase::Running)
                    .job(name.clone(), None),
            ),
        ])
        .await;
    assert_eq!(
        action.expect("a reconcile"),
        Action::requeue(Duration::from_secs(5))
    );
}

#[tokio::test]
async fn a_job_another_leader_created_is_adopted_not_created_twice() {
    let obj = alembic();
    let job = desired(&obj);
    let name = job.name_any();
    let theirs = with_status(
        &job,
        json!({"startTime": "2026-12-04T10:00:00Z", "active": 1}),
    );
    let mut harness = Harness::new(obj);

    let (action, _) = harness
        .reconcile(vec![
            Expect::get_secret(&url_secret(URL)),
            Expect::list_jobs(&[]),
            // Created between the list and the create: AlreadyExists.
            Expect::create_job(&job).failing_with(409),
            Expect::get_job(&theirs),
            Expect::list_pods(&name, &[pod(&job, "x1", "Running", "2026-12-04T10:00:01Z")]),
            Expect::status(
                StatusIs::reconciling("Migrating")
                    .saying("its pod is Running")
                    .run(RunPhase::Running)
                    .job(name.clone(), Some("Running")),
            ),
        ])
        .await;
    assert_eq!(
        action.expect("a reconcile"),
        Action::requeue(Duration::from_secs(5))
    );
}

#[tokio::test]
async fn a_succeeded_job_makes_it_ready_at_the_revision_alembic_recorded() {
    // The Job's Alembic left its head in alembic_version, in a real database.
    let db = TestDb::new().await;
    db.execute(&format!(
        "CREATE TABLE alembic_version (version_num varchar(32) NOT NULL PRIMARY KEY); \
         INSERT INTO alembic_version VALUES ('{HEAD}');"
    ))
    .await;
    let secret = url_secret(&db.url);
    let obj = alembic();
    let job = desired(&obj);
    let name = job.name_any();
    let mut harness = Harness::new(obj);

    let (action, _) = harness
        .reconcile(vec![
            Expect::get_secret(&secret),
            Expect::list_jobs(&[succeeded(&job)]),
            Expect::status(
                StatusIs::ready("UpToDate")
                    .saying(format!(
                        "Job {name} succeeded; alembic says the database is at {HEAD}"
                    ))
                    .revision(HEAD)
                    .target("head")
                    .run(RunPhase::Succeeded)
                    .job(name.clone(), None),
            ),
            Expect::event(EventIs::normal("Migrated").saying(HEAD)),
            // Its work is done and recorded: the Job goes.
            Expect::delete_job(&name, "Background"),
        ])
        .await;
    assert_eq!(action.expect("a reconcile"), Action::requeue(RECHECK));

    // Next time the Job is gone; the status remembers it succeeded, so
    // nothing runs again and, the revision being the same, nothing is written.
    let (action, _) = harness
        .reconcile(vec![Expect::get_secret(&secret), Expect::list_jobs(&[])])
        .await;
    assert_eq!(action.expect("a reconcile"), Action::requeue(RECHECK));
}

#[tokio::test]
async fn a_succeeded_job_lists_every_alembic_revision_reached_from_the_recorded_graph() {
    // Alembic is at HEAD; schemaop exec recorded the graph base -> mid -> HEAD
    // beside the history, and an unapplied branch off base.
    let db = TestDb::new().await;
    let graph = [
        ("base0000", vec![]),
        ("mid00000", vec!["base0000"]),
        (HEAD, vec!["mid00000"]),
        ("branch00", vec!["base0000"]),
    ]
    .map(|(revision, down)| alembic::Revision {
        revision: revision.into(),
        down_revisions: down.into_iter().map(str::to_string).collect(),
        depends_on: Vec::new(),
    });
    let store =
        alembic::GraphTable::new(&HistoryTable::default()).store_script("alembic_version", &graph);
    db.execute(&format!(
        "CREATE TABLE alembic_version (version_num varchar(32) NOT NULL PRIMARY KEY); \
         INSERT INTO alembic_version VALUES ('{HEAD}'); {store}"
    ))
    .await;
    let obj = alembic();
    let job = desired(&obj);
    let name = job.name_any();
    let mut harness = Harness::new(obj);

    let (action, _) = harness
        .reconcile(vec![
            Expect::get_secret(&url_secret(&db.url)),
            Expect::list_jobs(&[succeeded(&job)]),
            Expect::status(StatusIs::ready("UpToDate").revision(HEAD)),
            Expect::event(EventIs::normal("Migrated").saying(HEAD)),
            Expect::delete_job(&name, "Background"),
        ])
        .await;

    assert_eq!(action.expect("a reconcile"), Action::requeue(RECHECK));
    let status = harness.object().status.clone().expect("a status");
    assert_eq!(
        status.reached_revisions,
        Some(vec![HEAD.to_string(), "base0000".into(), "mid00000".into()])
    );
}

#[tokio::test]
async fn a_succeeded_job_is_recorded_even_when_the_database_cannot_be_read_then() {
    // Nothing listens on port 1.
    let unreachable = url_secret("postgres://app:s3cr3t-job-pw@127.0.0.1:1/app");
    let obj = alembic();
    let job = desired(&obj);
    let name = job.name_any();
    let mut harness = Harness::new(obj);

    let (action, transcript) = harness
        .reconcile(vec![
            Expect::get_secret(&unreachable),
            Expect::list_jobs(&[succeeded(&job)]),
            // Retrying the reading, with the run recorded as succeeded...
            Expect::status(
                StatusIs::reconciling("DatabaseUnreachable")
                    .saying("retrying")
                    .run(RunPhase::Succeeded)
                    .job(name.clone(), None),
            ),
            Expect::delete_job(&name, "Background"),
        ])
        .await;
    assert_eq!(
        action.expect("a reconcile"),
        Action::requeue(Duration::from_secs(10))
    );
    assert_eq!(
        places_mentioning(PASSWORD, &transcript.writings()),
        Vec::<String>::new()
    );

    // ...so that with the Job gone, nothing runs again: the next look only
    // tries the reading again.
    let (action, _) = harness
        .reconcile(vec![
            Expect::get_secret(&unreachable),
            Expect::list_jobs(&[]),
        ])
        .await;
    assert_eq!(
        action.expect("a reconcile"),
        Action::requeue(Duration::from_secs(10))
    );
}

#[tokio::test]
async fn a_failed_job_stalls_with_its_log_tail_and_no_password() {
    let obj = alembic();
    let job = desired(&obj);
    let name = job.name_any();
    let failed_job = failed(&job);
    let log = format!(
        "INFO  [alembic.runtime.migration] Running upgrade  -> 001_initial_schema\n\
         sqlalchemy.exc.ProgrammingError: relation \"plans\" already exists\n\
         while connected to {URL}\n\
         env: PGPASSWORD is {PASSWORD}\n"
    );
    let mut harness = Harness::new(obj);

    let (action, transcript) = harness
        .reconcile(vec![
            Expect::get_secret(&url_secret(URL)),
            Expect::list_jobs(std::slice::from_ref(&failed_job)),
            Expect::list_pods(
                &name,
                &[
                    pod(&job, "a1", "Failed", "2026-12-04T10:00:01Z"),
                    pod(&job, "b2", "Failed", "2026-12-04T10:04:00Z"),
                ],
            ),
            // The newest failed pod's migration container.
            Expect::pod_log(&format!("{name}-b2"), &log),
            Expect::status(
                StatusIs::stalled("JobFailed")
                    .saying(format!("Job {name} failed (BackoffLimitExceeded"))
                    .saying("relation \"plans\" already exists")
                    .saying("postgresql+asyncpg://app:***@db.apps.svc:5432/app")
                    .saying("env: PGPASSWORD is ***")
                    .run(RunPhase::Failed)
                    .attempt(6)
                    .job(name.clone(), None),
            ),
            Expect::event(EventIs::warning("JobFailed").saying(format!("Job {name} failed"))),
        ])
        .await;
    assert_eq!(action.expect("a reconcile"), Action::requeue(RECHECK));
    assert_eq!(
        places_mentioning(PASSWORD, &transcript.writings()),
        Vec::<String>::new()
    );

    // Reported once: the failed Job is kept, and neither read nor run again.
    let (action, _) = harness
        .reconcile(vec![
            Expect::get_secret(&url_secret(URL)),
            Expect::list_jobs(std::slice::from_ref(&failed_job)),
        ])
        .await;
    assert_eq!(action.expect("a reconcile"), Action::requeue(RECHECK));

    // A change to a field the Job does not use runs nothing new, but the
    // new generation is observed, still Stalled.
    harness.edit_spec(|spec| spec.allow_downgrade = true);
    let (action, _) = harness
        .reconcile(vec![
            Expect::get_secret(&url_secret(URL)),
            Expect::list_jobs(&[failed_job]),
            Expect::status(
                StatusIs::stalled("JobFailed")
                    .saying(format!("Job {name} failed"))
                    .job(name.clone(), None),
            ),
        ])
        .await;
    assert_eq!(action.expect("a reconcile"), Action::requeue(RECHECK));
}

#[tokio::test]
async fn a_suspended_job_spec_starts_no_job() {
    let obj = schema_migration()
        .job(alembic_job())
        .target("head")
        .suspend()
        .build();
    let mut harness = Harness::new(obj);

    // Not even the Jobs are listed.
    let (action, _) = harness
        .reconcile(vec![Expect::status(
            StatusIs::idle("Suspended").saying("set spec.suspend to false"),
        )])
        .await;
    assert_eq!(action.expect("a reconcile"), Action::requeue(RECHECK));
}

#[tokio::test]
async fn a_failed_job_whose_log_cannot_be_read_says_so() {
    let obj = alembic();
    let job = desired(&obj);
    let name = job.name_any();
    let pod_name = format!("{name}-a1");
    let mut harness = Harness::new(obj);

    let (action, _) = harness
        .reconcile(vec![
            Expect::get_secret(&url_secret(URL)),
            Expect::list_jobs(&[failed(&job)]),
            Expect::list_pods(&name, &[pod(&job, "a1", "Failed", "2026-12-04T10:00:01Z")]),
            Expect::pod_log(&pod_name, "").failing_with(403),
            Expect::status(StatusIs::stalled("JobFailed").saying(format!(
                "its log could not be read: reading pod {pod_name} failed (403"
            ))),
            Expect::event(EventIs::warning("JobFailed")),
        ])
        .await;
    assert_eq!(action.expect("a reconcile"), Action::requeue(RECHECK));
}

#[tokio::test]
async fn a_spec_change_deletes_the_running_job_and_creates_the_new_one_once_it_is_gone() {
    let obj = alembic();
    let old = with_status(
        &desired(&obj),
        json!({"startTime": "2026-12-04T10:00:00Z", "active": 1}),
    );
    let old_name = old.name_any();
    let mut harness = Harness::new(obj);
    // A new image while the old Job runs.
    harness.edit_spec(|spec| {
        spec.job.as_mut().unwrap().image = "registry.example.com/getanswers-backend:1.4.3".into();
    });
    let new = desired(&harness.object());
    let new_name = new.name_any();
    assert_ne!(new_name, old_name);

    let (action, _) = harness
        .reconcile(vec![
            Expect::get_secret(&url_secret(URL)),
            Expect::list_jobs(std::slice::from_ref(&old)),
            Expect::delete_job(&old_name, "Foreground"),
            Expect::status(StatusIs::reconciling("Migrating").saying(format!(
                "stopping Job {old_name} of an older spec; Job {new_name} starts once it is gone"
            ))),
        ])
        .await;
    assert_eq!(
        action.expect("a reconcile"),
        Action::requeue(Duration::from_secs(5))
    );

    // Still being deleted (its pods go first): no second delete, no new Job.
    let mut going = old.clone();
    going.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        "2026-12-04T10:01:00Z".parse().unwrap(),
    ));
    let (action, _) = harness
        .reconcile(vec![
            Expect::get_secret(&url_secret(URL)),
            Expect::list_jobs(&[going]),
        ])
        .await;
    assert_eq!(
        action.expect("a reconcile"),
        Action::requeue(Duration::from_secs(5))
    );

    // Gone: now the new one.
    let (action, _) = harness
        .reconcile(vec![
            Expect::get_secret(&url_secret(URL)),
            Expect::list_jobs(&[]),
            Expect::create_job(&new),
            Expect::event(EventIs::normal("JobCreated").saying(new_name.clone())),
            Expect::list_pods(&new_name, &[]),
            Expect::status(StatusIs::reconciling("Migrating").job(new_name.clone(), None)),
        ])
        .await;
    assert_eq!(
        action.expect("a reconcile"),
        Action::requeue(Duration::from_secs(5))
    );
}

#[tokio::test]
async fn once_leadership_is_lost_no_job_is_created() {
    let mut harness = Harness::new(alembic());
    // What the end of a term does: every run stopped, none accepted.
    harness.ctx.runs.stop_all().await;

    let (action, _) = harness
        .reconcile(vec![
            Expect::get_secret(&url_secret(URL)),
            Expect::list_jobs(&[]),
        ])
        .await;
    assert_eq!(action.expect("a reconcile"), Action::await_change());

    // A new term creates it.
    harness.ctx.runs.reopen();
    let job = desired(&harness.object());
    let name = job.name_any();
    let (action, _) = harness
        .reconcile(vec![
            Expect::get_secret(&url_secret(URL)),
            Expect::list_jobs(&[]),
            Expect::create_job(&job),
            Expect::event(EventIs::normal("JobCreated")),
            Expect::list_pods(&name, &[]),
            Expect::status(StatusIs::reconciling("Migrating").job(name.clone(), None)),
        ])
        .await;
    assert_eq!(
        action.expect("a reconcile"),
        Action::requeue(Duration::from_secs(5))
    );
}

#[tokio::test]
async fn a_job_spec_without_the_wrapper_image_stalls_naming_the_flag() {
    let obj = alembic();
    let mut harness = Harness::new(obj);
    let ctx = std::sync::Arc::get_mut(&mut harness.ctx).expect("the only reference");
    ctx.config.job.wrapper_image = None;

    let (action, _) = harness
        .reconcile(vec![
            Expect::status(
                StatusIs::stalled("InvalidSpec")
                    .saying("spec.job.wrap: the operator was started without --job-wrapper-image"),
            ),
            Expect::event(EventIs::warning("InvalidSpec")),
        ])
        .await;
    assert_eq!(action.expect("a reconcile"), Action::requeue(RECHECK));
}
