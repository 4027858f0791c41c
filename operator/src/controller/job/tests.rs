//! The Job builder and job-mode decisions, without a server.

use serde_json::{Value, json};

use super::*;
use crate::controller::fixtures::{NAME, NAMESPACE, WRAPPER_IMAGE, alembic_job, schema_migration};
use crate::crd::SslMode;

fn settings() -> JobSettings {
    JobSettings {
        wrapper_image: Some(WRAPPER_IMAGE.into()),
    }
}

fn built(obj: &SchemaMigration) -> Job {
    build(obj, obj.spec.job.as_ref().expect("a job spec"), &settings()).expect("a Job")
}

fn name_of(obj: &SchemaMigration) -> String {
    built(obj).name_any()
}

fn alembic() -> SchemaMigration {
    schema_migration().job(alembic_job()).target("head").build()
}

#[test]
fn the_job_runs_the_command_under_schemaop_exec_with_the_database_by_reference() {
    let job = built(&alembic());
    let name = job.name_any();
    assert!(
        name.starts_with("app-db-") && name.len() == "app-db-".len() + 10,
        "{name}"
    );
    let safe = json!({
        "allowPrivilegeEscalation": false,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": true,
        "runAsNonRoot": true,
        "seccompProfile": {"type": "RuntimeDefault"},
    });
    let labels = json!({
        "app.kubernetes.io/managed-by": "schemaop",
        "schemaop.dev/schemamigration": NAME,
    });
    assert_eq!(
        serde_json::to_value(&job).unwrap(),
        json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": name,
                "namespace": NAMESPACE,
                "labels": labels,
                "ownerReferences": [{
                    "apiVersion": "schemaop.dev/v1alpha1",
                    "kind": "SchemaMigration",
                    "name": NAME,
                    "uid": "6f1c1c4e-2b7d-4f57-9a0e-3d1f5b2c7a10",
                    "controller": true,
                    "blockOwnerDeletion": true,
                }],
            },
            "spec": {
                "backoffLimit": 5,
                "activeDeadlineSeconds": 1800,
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "restartPolicy": "Never",
                        "securityContext": {
                            "runAsNonRoot": true,
                            "seccompProfile": {"type": "RuntimeDefault"},
                        },
                        "initContainers": [{
                            "name": "schemaop",
                            "image": WRAPPER_IMAGE,
                            "command": ["/usr/local/bin/schemaop", "copy-binary", "/schemaop/schemaop"],
                            "volumeMounts": [{"name": "schemaop-bin", "mountPath": "/schemaop"}],
                            "securityContext": safe,
                        }],
                        "containers": [{
                            "name": "migrate",
                            "image": "registry.example.com/getanswers-backend:1.4.2",
                            "command": [
                                "/schemaop/schemaop", "exec", "--tool", "alembic", "--",
                                "alembic", "upgrade", "head",
                            ],
                            "env": [
                                {"name": "TARGET_REVISION", "value": "head"},
                                {"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {
                                    "name": "app-db-url", "key": "url", "optional": false,
                                }}},
                            ],
                            "volumeMounts": [
                                {"name": "schemaop-tmp", "mountPath": "/tmp"},
                                {"name": "schemaop-bin", "mountPath": "/schemaop", "readOnly": true},
                            ],
                            "securityContext": safe,
                        }],
                        "volumes": [
                            {"name": "schemaop-tmp", "emptyDir": {}},
                            {"name": "schemaop-bin", "emptyDir": {}},
                        ],
                    },
                },
            },
        })
    );
}

/// Every string anywhere in `value`.
fn strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
        Value::Object(map) => map.iter().for_each(|(k, v)| {
            out.push(k.clone());
            strings(v, out);
        }),
        _ => {}
    }
}

#[test]
fn a_connection_reaches_the_pod_as_libpq_variables_with_the_password_and_ca_by_reference() {
    let connection: crd::Connection = serde_json::from_value(json!({
        "host": "db.example",
        "port": 6432,
        "database": "app",
        "user": "migrator",
        "passwordSecretRef": {"name": "app-db-password", "key": "password"},
        "sslMode": "verify-full",
        "caSecretRef": {"name": "app-db-ca", "key": "ca.crt"},
    }))
    .unwrap();
    let obj = schema_migration()
        .connection(connection)
        .job(alembic_job())
        .build();
    let job = serde_json::to_value(built(&obj)).unwrap();
    let pod = &job["spec"]["template"]["spec"];
    let env = &pod["containers"][0]["env"];
    assert_eq!(
        env,
        &json!([
            {"name": "TARGET_REVISION", "value": "latest"},
            {"name": "PGHOST", "value": "db.example"},
            {"name": "PGPORT", "value": "6432"},
            {"name": "PGDATABASE", "value": "app"},
            {"name": "PGUSER", "value": "migrator"},
            {"name": "PGPASSWORD", "valueFrom": {"secretKeyRef": {
                "name": "app-db-password", "key": "password", "optional": false,
            }}},
            {"name": "PGSSLMODE", "value": SslMode::VerifyFull.as_str()},
            {"name": "PGSSLROOTCERT", "value": "/schemaop-ca/ca.crt"},
        ])
    );
    assert_eq!(
        pod["volumes"][1],
        json!({"name": "schemaop-ca", "secret": {
            "secretName": "app-db-ca", "items": [{"key": "ca.crt", "path": "ca.crt"}],
        }})
    );
    // The builder never reads a Secret: every value it could hold is a
    // reference. The scenarios check the same with real Secret values.
    let mut all = vec![];
    strings(&job, &mut all);
    assert!(
        !all.iter()
            .any(|s| s.contains("PASSWORD=") || s.contains("BEGIN CERTIFICATE"))
    );
}

#[test]
fn the_name_is_stable_for_a_spec_and_changes_with_what_it_runs() {
    let base = name_of(&alembic());
    assert_eq!(name_of(&alembic()), base, "the same spec, the same name");
    // The generation and the status are not what runs.
    assert_eq!(
        name_of(
            &schema_migration()
                .job(alembic_job())
                .target("head")
                .generation(9)
                .build()
        ),
        base
    );
    // Nor is the operator's own image: an upgrade of the operator runs
    // nothing again.
    let upgraded = JobSettings {
        wrapper_image: Some("registry.example.com/schemaop:0.2.0".into()),
    };
    let obj = alembic();
    let job = build(&obj, obj.spec.job.as_ref().unwrap(), &upgraded).unwrap();
    assert_eq!(job.name_any(), base);
    let mut changed = vec![];
    let mut other = alembic_job();
    other.image = "registry.example.com/getanswers-backend:1.4.3".into();
    changed.push((
        "image",
        schema_migration().job(other).target("head").build(),
    ));
    let mut other = alembic_job();
    other.command = vec!["alembic".into(), "upgrade".into(), "+1".into()];
    changed.push((
        "command",
        schema_migration().job(other).target("head").build(),
    ));
    let mut other = alembic_job();
    other.args = vec!["--verbose".into()];
    changed.push(("args", schema_migration().job(other).target("head").build()));
    changed.push((
        "target",
        schema_migration()
            .job(alembic_job())
            .target("ae1027a6acf")
            .build(),
    ));
    let mut other = alembic_job();
    other.wrap = false;
    changed.push(("wrap", schema_migration().job(other).target("head").build()));
    let mut other = alembic_job();
    other.tool = Tool::Flyway;
    changed.push(("tool", schema_migration().job(other).target("head").build()));
    changed.push((
        "retry annotation",
        schema_migration()
            .job(alembic_job())
            .target("head")
            .annotation(crate::controller::inputs::RETRY_ANNOTATION, "1")
            .build(),
    ));
    for (what, obj) in changed {
        assert_ne!(name_of(&obj), base, "a new {what} must make a new Job");
    }
}

#[test]
fn a_long_name_is_cut_to_sixty_three_characters() {
    let long = "a-very-long-schema-migration-name-that-goes-on-and-on-and-on-and-on";
    let name = job_name(long, "0123456789");
    assert_eq!(name.len(), 63, "{name}");
    assert!(name.ends_with("-0123456789"));
    // A cut never leaves a dash before the hash's own.
    assert_eq!(
        job_name(&format!("{}-b", "a".repeat(51)), "0123456789"),
        format!("{}-0123456789", "a".repeat(51))
    );
}

#[test]
fn a_long_name_is_cut_for_the_owner_label_too() {
    assert_eq!(owner_label_value("app-db"), "app-db");
    let long = format!("{}-{}", "a".repeat(62), "b".repeat(100));
    assert_eq!(owner_label_value(&long), "a".repeat(62));
    let mut obj = alembic();
    obj.metadata.name = Some("x".repeat(200));
    let job = built(&obj);
    assert_eq!(job.labels()[OWNER_LABEL], "x".repeat(63));
    assert!(job.name_any().len() <= 63);
}

#[test]
fn without_the_wrapper_the_command_runs_as_given_with_the_users_pod_settings() {
    let job: crd::JobSource = serde_json::from_value(json!({
        "image": "app:1",
        "command": ["flyway"],
        "args": ["migrate"],
        "tool": "flyway",
        "wrap": false,
        "readOnlyRootFilesystem": false,
        "env": [{"name": "FLYWAY_LOCATIONS", "value": "filesystem:/sql"}],
        "serviceAccountName": "migrator",
        "nodeSelector": {"pool": "batch"},
    }))
    .unwrap();
    let obj = schema_migration().job(job).build();
    let job = serde_json::to_value(built(&obj)).unwrap();
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(pod.get("initContainers"), None);
    let container = &pod["containers"][0];
    assert_eq!(container["command"], json!(["flyway"]));
    assert_eq!(container["args"], json!(["migrate"]));
    assert_eq!(
        container["securityContext"]["readOnlyRootFilesystem"],
        false
    );
    assert_eq!(
        container["env"][2],
        json!({"name": "FLYWAY_LOCATIONS", "value": "filesystem:/sql"})
    );
    assert_eq!(pod["serviceAccountName"], "migrator");
    assert_eq!(pod["nodeSelector"], json!({"pool": "batch"}));
    assert_eq!(
        pod["volumes"],
        json!([{"name": "schemaop-tmp", "emptyDir": {}}])
    );
}

#[test]
fn what_cannot_be_built_names_the_field_and_the_fix() {
    let refuse = |obj: SchemaMigration, settings: JobSettings, field: &str, says: &str| {
        let error = build(&obj, obj.spec.job.as_ref().unwrap(), &settings).unwrap_err();
        let text = error.to_string();
        assert!(text.starts_with(field) && text.contains(says), "{text}");
        assert_eq!(error.reason(), "InvalidSpec");
    };
    refuse(
        alembic(),
        JobSettings {
            wrapper_image: None,
        },
        "spec.job.wrap",
        "--job-wrapper-image",
    );
    let mut job = alembic_job();
    job.env = vec![serde_json::from_value(json!({"name": "DATABASE_URL", "value": "x"})).unwrap()];
    refuse(
        schema_migration().job(job).build(),
        settings(),
        "spec.job.env",
        "DATABASE_URL is set by the operator",
    );
    let mut job = alembic_job();
    job.tool = Tool::None;
    job.version_table = Some("app.versions".into());
    refuse(
        schema_migration().job(job).build(),
        settings(),
        "spec.job.versionTable",
        "tool none keeps no version table",
    );
}

#[test]
fn the_retry_limit_and_the_deadline_become_the_jobs() {
    let mut obj = alembic();
    obj.spec.retry.limit = 0;
    obj.spec.timeouts.run_deadline = "1h30m".into();
    let spec = built(&obj).spec.unwrap();
    assert_eq!(spec.backoff_limit, Some(0));
    assert_eq!(spec.active_deadline_seconds, Some(5400));
    assert_eq!(
        spec.ttl_seconds_after_finished, None,
        "a failed Job is kept"
    );
}

// --- decisions ------------------------------------------------------------------

fn found(name: &str, state: JobState) -> Found {
    Found {
        name: name.into(),
        state,
        deleting: false,
    }
}

fn failed() -> JobState {
    JobState::Failed {
        reason: "BackoffLimitExceeded".into(),
        message: "Job has reached the specified backoff limit".into(),
    }
}

fn recorded(job: &str, phase: RunPhase) -> RunStatus {
    RunStatus {
        phase: Some(phase),
        job: Some(job.into()),
        ..RunStatus::default()
    }
}

#[test]
fn no_job_and_no_record_creates_one() {
    assert_eq!(step("new", &[], None), Step::Create);
    // A record of another spec's Job does not count.
    assert_eq!(
        step("new", &[], Some(&recorded("old", RunPhase::Succeeded))),
        Step::Create
    );
}

#[test]
fn the_jobs_state_decides_while_it_exists() {
    assert_eq!(
        step("j", &[found("j", JobState::Active)], None),
        Step::Running
    );
    assert_eq!(
        step(
            "j",
            &[found("j", JobState::Succeeded), found("old", failed())],
            None
        ),
        Step::Succeeded {
            cleanup: vec!["j".into(), "old".into()]
        }
    );
    assert_eq!(
        step("j", &[found("j", failed())], None),
        Step::Failed {
            reason: "BackoffLimitExceeded".into(),
            message: "Job has reached the specified backoff limit".into(),
        }
    );
}

#[test]
fn an_ended_job_is_not_run_again_once_the_status_records_it() {
    // Deleted after success: only the revision is read again.
    let done = recorded("j", RunPhase::Succeeded);
    assert_eq!(
        step("j", &[], Some(&done)),
        Step::Recorded(RunPhase::Succeeded)
    );
    // Failed, reported: its log is not read again, and it is not recreated
    // if someone deletes it.
    let failure = recorded("j", RunPhase::Failed);
    assert_eq!(
        step("j", &[found("j", failed())], Some(&failure)),
        Step::Recorded(RunPhase::Failed)
    );
    assert_eq!(
        step("j", &[], Some(&failure)),
        Step::Recorded(RunPhase::Failed)
    );
}

#[test]
fn an_older_specs_running_job_is_deleted_and_waited_for_first() {
    assert_eq!(
        step("new", &[found("old", JobState::Active)], None),
        Step::StopOld {
            delete: vec!["old".into()],
            old: vec!["old".into()],
        }
    );
    let mut going = found("old", JobState::Active);
    going.deleting = true;
    assert_eq!(
        step("new", &[going], None),
        Step::StopOld {
            delete: vec![],
            old: vec!["old".into()],
        }
    );
    // A finished older Job does not hold the new one back.
    assert_eq!(step("new", &[found("old", failed())], None), Step::Create);
}

// --- the log in a failure -----------------------------------------------------------

#[test]
fn a_log_tail_keeps_the_last_lines_and_hides_url_passwords() {
    let log: String = (1..=30).map(|i| format!("line {i}\n")).collect::<String>()
        + "sqlalchemy.exc.OperationalError: postgresql+asyncpg://app:hunter2@db:5432/app refused\n"
        + "retrying with password=hunter2\n";
    let tail = log_tail(&log);
    let lines: Vec<&str> = tail.lines().collect();
    assert_eq!(lines.len(), 20);
    assert_eq!(lines[0], "line 13");
    assert!(!tail.contains("hunter2"), "{tail}");
    assert!(
        tail.contains("postgresql+asyncpg://app:***@db:5432/app refused"),
        "{tail}"
    );
}

#[test]
fn a_failure_message_names_the_job_and_says_when_the_log_cannot_be_read() {
    let message = failure_message(
        "app-db-0123456789",
        "BackoffLimitExceeded",
        "Job has reached the specified backoff limit",
        Err("its failed pod is gone".into()),
    );
    assert!(
        message.starts_with("Job app-db-0123456789 failed (BackoffLimitExceeded: "),
        "{message}"
    );
    assert!(
        message.contains("annotate the SchemaMigration with schemaop.dev/retry"),
        "{message}"
    );
    assert!(
        message.ends_with("its log could not be read: its failed pod is gone"),
        "{message}"
    );
    let message = failure_message("j", "", "", Ok("boom\n".into()));
    assert!(message.ends_with("(passwords hidden):\nboom"), "{message}");
}
