//! `spec.job`: the app's own migration command, run as a Kubernetes Job.
//!
//! The Job is a pure function of the SchemaMigration ([`build`]): named from
//! the SchemaMigration and a hash of what it runs, so that a second leader
//! that tries to create it meets AlreadyExists and adopts it, and owned by
//! the SchemaMigration. What to do next is a pure function of the Jobs found
//! and of the status ([`step`]). The I/O around them lives in
//! [`super::job_reconcile`].

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, EnvVar, EnvVarSource, KeyToPath,
    PodSecurityContext, PodSpec, PodTemplateSpec, SeccompProfile, SecretKeySelector,
    SecretVolumeSource, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};
use sha2::{Digest, Sha256};

use super::error::{Error, Result};
use crate::crd::{self, JobSource, RunPhase, RunStatus, SchemaMigration, Tool};
use crate::engine::redact;

/// The label on every Job (and its pods) naming its SchemaMigration. Not the
/// readiness gates' `schemaop.dev/migration`: a migration pod is no app pod.
pub const OWNER_LABEL: &str = "schemaop.dev/schemamigration";
/// The label Kubernetes puts on a Job's pods.
pub const POD_JOB_LABEL: &str = "batch.kubernetes.io/job-name";
/// The container that runs the migration command; its log is what a failure
/// reports.
pub const CONTAINER: &str = "migrate";
/// Where the init container puts the `schemaop` binary.
pub const WRAPPER_DIR: &str = "/schemaop";
/// The `schemaop` binary in the operator's image.
pub const WRAPPER_SOURCE: &str = "/usr/local/bin/schemaop";
/// How many lines of a failed container's log go into the status.
pub const LOG_LINES: i64 = 20;
/// Variables the operator sets, which `spec.job.env` cannot override.
pub const RESERVED_ENV: [&str; 8] = [
    "TARGET_REVISION",
    "DATABASE_URL",
    "PGHOST",
    "PGPORT",
    "PGDATABASE",
    "PGUSER",
    "PGPASSWORD",
    "PGSSLMODE",
];

const BIN_VOLUME: &str = "schemaop-bin";
const TMP_VOLUME: &str = "schemaop-tmp";
const CA_VOLUME: &str = "schemaop-ca";
const CA_DIR: &str = "/schemaop-ca";
/// How many hex digits of the spec hash the Job's name carries.
const HASH_LEN: usize = 10;
/// Job names end up in the `job-name` label of their pods: 63 at most.
const NAME_MAX: usize = 63;

/// What the operator itself brings to a Job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSettings {
    /// The operator's own image, whose `schemaop` binary wraps the command;
    /// `None` when `schemaop run` was not told it.
    pub wrapper_image: Option<String>,
}

/// The Job for `obj`'s `spec.job`, with its deterministic name. No I/O.
pub fn build(obj: &SchemaMigration, source: &JobSource, settings: &JobSettings) -> Result<Job> {
    let spec = &obj.spec;
    let invalid = |field: &'static str, message: String| Error::InvalidSpec { field, message };
    let version_table = source
        .version_table()
        .map_err(|e| invalid("spec.job.versionTable", e))?;
    if version_table.is_some() && source.tool == Tool::None {
        return Err(invalid(
            "spec.job.versionTable",
            "tool none keeps no version table; remove versionTable or name the tool".into(),
        ));
    }
    if let Some(reserved) = source
        .env
        .iter()
        .find(|e| RESERVED_ENV.contains(&e.name.as_str()))
    {
        return Err(invalid(
            "spec.job.env",
            format!(
                "{} is set by the operator from spec.database and spec.targetRevision; remove it \
                 from spec.job.env",
                reserved.name
            ),
        ));
    }
    let deadline = spec
        .timeouts
        .run_deadline()
        .map_err(|e| invalid("spec.timeouts.runDeadline", e.to_string()))?;

    let mut env = vec![plain("TARGET_REVISION", &spec.target_revision)];
    let mut volumes = vec![empty_dir(TMP_VOLUME)];
    let mut mounts = vec![mount(TMP_VOLUME, "/tmp", false)];
    match &spec.database {
        crd::Database::UrlSecretRef(reference) => env.push(from_secret("DATABASE_URL", reference)),
        crd::Database::Connection(c) => {
            env.push(plain("PGHOST", &c.host));
            env.push(plain("PGPORT", &c.port.to_string()));
            env.push(plain("PGDATABASE", &c.database));
            env.push(plain("PGUSER", &c.user));
            env.push(from_secret("PGPASSWORD", &c.password_secret_ref));
            env.push(plain("PGSSLMODE", c.ssl_mode.as_str()));
            if let Some(ca) = &c.ca_secret_ref {
                // Mounted from the Secret, never copied.
                env.push(plain("PGSSLROOTCERT", &format!("{CA_DIR}/ca.crt")));
                volumes.push(Volume {
                    name: CA_VOLUME.into(),
                    secret: Some(SecretVolumeSource {
                        secret_name: Some(ca.name.clone()),
                        items: Some(vec![KeyToPath {
                            key: ca.key.clone(),
                            path: "ca.crt".into(),
                            mode: None,
                        }]),
                        ..SecretVolumeSource::default()
                    }),
                    ..Volume::default()
                });
                mounts.push(mount(CA_VOLUME, CA_DIR, true));
            }
        }
    }
    env.extend(source.env.iter().cloned());

    let mut init_containers = vec![];
    let command = if source.wrap {
        let Some(image) = &settings.wrapper_image else {
            return Err(invalid(
                "spec.job.wrap",
                "the operator was started without --job-wrapper-image, so it cannot put \
                 schemaop exec into the Job; set the chart's jobWrapper.image (or the flag), or \
                 set spec.job.wrap to false"
                    .into(),
            ));
        };
        volumes.push(empty_dir(BIN_VOLUME));
        mounts.push(mount(BIN_VOLUME, WRAPPER_DIR, true));
        init_containers.push(Container {
            name: "schemaop".into(),
            image: Some(image.clone()),
            command: Some(vec![
                WRAPPER_SOURCE.into(),
                "copy-binary".into(),
                format!("{WRAPPER_DIR}/schemaop"),
            ]),
            volume_mounts: Some(vec![mount(BIN_VOLUME, WRAPPER_DIR, false)]),
            security_context: Some(safe_container(true)),
            ..Container::default()
        });
        let mut command = vec![
            format!("{WRAPPER_DIR}/schemaop"),
            "exec".into(),
            "--tool".into(),
            source.tool.name().into(),
        ];
        if let Some(table) = &source.version_table {
            command.extend(["--version-table".into(), table.clone()]);
        }
        // The audit log goes where the SchemaMigration keeps schemaop's history.
        if spec.history != crd::History::default() {
            command.extend([
                "--history-schema".into(),
                spec.history.schema.clone(),
                "--history-table".into(),
                spec.history.table.clone(),
            ]);
        }
        command.push("--".into());
        command.extend(source.command.iter().cloned());
        command
    } else {
        source.command.clone()
    };
    volumes.extend(source.volumes.iter().cloned());
    mounts.extend(source.volume_mounts.iter().cloned());

    let mut security = source
        .security_context
        .clone()
        .unwrap_or_else(|| safe_container(source.read_only_root_filesystem));
    if security.read_only_root_filesystem.is_none() {
        security.read_only_root_filesystem = Some(source.read_only_root_filesystem);
    }
    let container = Container {
        name: CONTAINER.into(),
        image: Some(source.image.clone()),
        command: Some(command),
        args: (!source.args.is_empty()).then(|| source.args.clone()),
        env: Some(env),
        env_from: (!source.env_from.is_empty()).then(|| source.env_from.clone()),
        resources: source.resources.clone(),
        volume_mounts: Some(mounts),
        security_context: Some(security),
        ..Container::default()
    };
    let pod = PodSpec {
        restart_policy: Some("Never".into()),
        service_account_name: source.service_account_name.clone(),
        image_pull_secrets: (!source.image_pull_secrets.is_empty())
            .then(|| source.image_pull_secrets.clone()),
        node_selector: (!source.node_selector.is_empty()).then(|| source.node_selector.clone()),
        tolerations: (!source.tolerations.is_empty()).then(|| source.tolerations.clone()),
        security_context: Some(source.pod_security_context.clone().unwrap_or_else(safe_pod)),
        init_containers: (!init_containers.is_empty()).then_some(init_containers),
        containers: vec![container],
        volumes: Some(volumes),
        ..PodSpec::default()
    };
    let labels = BTreeMap::from([
        (
            "app.kubernetes.io/managed-by".to_string(),
            "schemaop".to_string(),
        ),
        (OWNER_LABEL.to_string(), owner_label_value(&obj.name_any())),
    ]);
    let job_spec = JobSpec {
        // A failed pod is retried by the Job controller, up to spec.retry.limit.
        backoff_limit: Some(spec.retry.limit),
        active_deadline_seconds: Some(i64::try_from(deadline.as_secs().max(1)).unwrap_or(i64::MAX)),
        // No ttlSecondsAfterFinished: a TTL set at creation would remove a
        // failed Job too, and the operator may not patch Jobs. Instead the
        // operator deletes a Job it saw succeed once the database shows its
        // revision (and with it older finished Jobs of the same
        // SchemaMigration), and keeps a failed one, with its pod and log,
        // until a later Job for a fixed spec succeeds.
        template: PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(labels.clone()),
                ..ObjectMeta::default()
            }),
            spec: Some(pod),
        },
        ..JobSpec::default()
    };
    let retry = obj
        .annotations()
        .get(super::inputs::RETRY_ANNOTATION)
        .cloned()
        .unwrap_or_default();
    let name = job_name(&obj.name_any(), &hash(&job_spec, &retry));
    Ok(Job {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: obj.namespace(),
            labels: Some(labels),
            owner_references: Some(vec![owner(obj)]),
            ..ObjectMeta::default()
        },
        spec: Some(job_spec),
        status: None,
    })
}

/// A hash of everything the Job runs: image, command, arguments, target,
/// tool, wrapper, environment, pod settings, retries and deadline; and the
/// retry annotation, so that asking for a retry makes a new Job. Not the
/// wrapper's image: upgrading the operator must not run migrations again.
fn hash(spec: &JobSpec, retry: &str) -> String {
    let mut spec = spec.clone();
    if let Some(pod) = spec.template.spec.as_mut() {
        for init in pod.init_containers.iter_mut().flatten() {
            init.image = None;
        }
    }
    let mut hash = Sha256::new();
    hash.update(serde_json::to_vec(&spec).expect("a JobSpec serializes"));
    hash.update([0]);
    hash.update(retry.as_bytes());
    hash.finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()[..HASH_LEN]
        .to_string()
}

/// The [`OWNER_LABEL`] value for a SchemaMigration: its name, cut to the 63
/// characters a label value may have. Two long names may then share a value;
/// the owner reference tells their Jobs apart.
pub fn owner_label_value(migration: &str) -> String {
    let mut value: String = migration.chars().take(NAME_MAX).collect();
    while value.ends_with(['-', '.']) {
        value.pop();
    }
    value
}

/// `<name>-<hash>`, the name cut so the whole is at most 63 characters.
pub fn job_name(migration: &str, hash: &str) -> String {
    let room = NAME_MAX - 1 - hash.len();
    let mut prefix: String = migration.chars().take(room).collect();
    while prefix.ends_with(['-', '.']) {
        prefix.pop();
    }
    format!("{prefix}-{hash}")
}

fn owner(obj: &SchemaMigration) -> OwnerReference {
    OwnerReference {
        api_version: SchemaMigration::api_version(&()).into(),
        kind: SchemaMigration::kind(&()).into(),
        name: obj.name_any(),
        uid: obj.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

fn plain(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    }
}

/// A variable read from a Secret by the kubelet: the value never passes
/// through the operator or the Job object.
fn from_secret(name: &str, reference: &crd::SecretKeyRef) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: reference.name.clone(),
                key: reference.key.clone(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
    }
}

fn empty_dir(name: &str) -> Volume {
    Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    }
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

fn runtime_default() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".into(),
        localhost_profile: None,
    }
}

fn safe_container(read_only_root: bool) -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: None,
        }),
        read_only_root_filesystem: Some(read_only_root),
        run_as_non_root: Some(true),
        seccomp_profile: Some(runtime_default()),
        ..SecurityContext::default()
    }
}

fn safe_pod() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        seccomp_profile: Some(runtime_default()),
        ..PodSecurityContext::default()
    }
}

// --- what to do next ---------------------------------------------------------

/// A Job of this SchemaMigration as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub name: String,
    pub state: JobState,
    /// Being deleted: it has a deletion timestamp.
    pub deleting: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    Active,
    Succeeded,
    /// Past its retries or its deadline; the Job controller's reason and
    /// message.
    Failed {
        reason: String,
        message: String,
    },
}

impl Found {
    pub fn from_job(job: &Job) -> Found {
        let conditions = job
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .cloned()
            .unwrap_or_default();
        let holds = |type_: &str| {
            conditions
                .iter()
                .find(|c| c.type_ == type_ && c.status == "True")
        };
        let state = if holds("Complete").is_some() {
            JobState::Succeeded
        } else if let Some(failed) = holds("Failed") {
            JobState::Failed {
                reason: failed.reason.clone().unwrap_or_default(),
                message: failed.message.clone().unwrap_or_default(),
            }
        } else {
            JobState::Active
        };
        Found {
            name: job.name_any(),
            state,
            deleting: job.metadata.deletion_timestamp.is_some(),
        }
    }
}

/// What the reconciler does next in job mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Jobs for an older spec still run: delete `delete` (foreground), and
    /// wait for every one of `old` to be gone before the new Job starts.
    StopOld {
        delete: Vec<String>,
        old: Vec<String>,
    },
    /// No Job for this spec yet, nor a record of one: create it.
    Create,
    /// The Job for this spec runs.
    Running,
    /// The Job for this spec succeeded: read the revision, report Ready,
    /// then delete it and the older finished Jobs in `cleanup`.
    Succeeded { cleanup: Vec<String> },
    /// The Job for this spec failed past its retries: report it, with its log.
    Failed { reason: String, message: String },
    /// The status already tells how the Job for this spec ended: only the
    /// revision is read again (after success), nothing is run again.
    Recorded(RunPhase),
}

/// Decides from the Jobs found and the status; `desired` is [`build`]'s name.
pub fn step(desired: &str, found: &[Found], run: Option<&RunStatus>) -> Step {
    let old: Vec<&Found> = found
        .iter()
        .filter(|f| f.name != desired && f.state == JobState::Active)
        .collect();
    if !old.is_empty() {
        return Step::StopOld {
            delete: old
                .iter()
                .filter(|f| !f.deleting)
                .map(|f| f.name.clone())
                .collect(),
            old: old.iter().map(|f| f.name.clone()).collect(),
        };
    }
    let recorded = run
        .filter(|r| r.job.as_deref() == Some(desired))
        .and_then(|r| r.phase)
        .filter(|p| matches!(p, RunPhase::Succeeded | RunPhase::Failed));
    match found.iter().find(|f| f.name == desired) {
        None | Some(Found { deleting: true, .. }) => match recorded {
            Some(phase) => Step::Recorded(phase),
            None => Step::Create,
        },
        Some(job) => match &job.state {
            JobState::Active => Step::Running,
            JobState::Succeeded => Step::Succeeded {
                cleanup: found
                    .iter()
                    .filter(|f| f.state != JobState::Active && !f.deleting)
                    .map(|f| f.name.clone())
                    .collect(),
            },
            JobState::Failed { .. } if recorded == Some(RunPhase::Failed) => {
                Step::Recorded(RunPhase::Failed)
            }
            JobState::Failed { reason, message } => Step::Failed {
                reason: reason.clone(),
                message: message.clone(),
            },
        },
    }
}

/// The last lines of a container's log as a status may carry them: anything
/// that looks like a password in a URL or a `password=...` hidden, at most
/// [`LOG_LINES`] lines of at most 500 characters each.
pub fn log_tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    let start = lines
        .len()
        .saturating_sub(usize::try_from(LOG_LINES).unwrap_or(20));
    lines[start..]
        .iter()
        .map(|line| {
            let line = redact::secrets_in(line);
            match line.char_indices().nth(500) {
                Some((cut, _)) => format!("{}...", &line[..cut]),
                None => line,
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The Stalled message for a failed Job.
pub fn failure_message(
    job: &str,
    reason: &str,
    message: &str,
    log: Result<String, String>,
) -> String {
    let why = match (reason.is_empty(), message.is_empty()) {
        (false, false) => format!(" ({reason}: {message})"),
        (false, true) => format!(" ({reason})"),
        _ => String::new(),
    };
    let log = match log {
        Ok(text) if text.trim().is_empty() => {
            format!("its container {CONTAINER:?} logged nothing")
        }
        Ok(text) => format!(
            "the last lines of container {CONTAINER:?} (passwords hidden):\n{}",
            log_tail(&text)
        ),
        Err(why) => format!("its log could not be read: {why}"),
    };
    format!(
        "Job {job} failed{why}; fix the migration or the spec, then change the spec or annotate \
         the SchemaMigration with schemaop.dev/retry to run it again. {log}"
    )
}

#[cfg(test)]
mod tests;
