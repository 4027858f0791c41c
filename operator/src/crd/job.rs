//! `spec.job`: the app's own migration tool (Alembic, Flyway, golang-migrate,
//! ...) run by the operator as a Kubernetes Job, instead of SQL files.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    EnvFromSource, EnvVar, LocalObjectReference, PodSecurityContext, ResourceRequirements,
    SecurityContext, Toleration, Volume, VolumeMount,
};
use kube::KubeSchema;
use schemars::{Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

pub use crate::adapters::Tool;

/// The app's migration command, run as a Job from the app's own image.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct JobSource {
    /// The container image that holds the migrations and the tool, usually
    /// the app's own image, such as `registry.example.com/app:1.4.2`. Pin a
    /// tag or digest: a new image is a new Job.
    #[schemars(length(min = 1, max = 1024))]
    pub image: String,

    /// The command to run, as the container's `command` (the image's
    /// entrypoint is not used), such as `["alembic", "upgrade", "head"]`.
    /// The target revision is in the environment as `TARGET_REVISION`;
    /// Kubernetes replaces `$(TARGET_REVISION)` in `command` and `args` with
    /// it, as in `["alembic", "upgrade", "$(TARGET_REVISION)"]`. At least one
    /// element.
    #[schemars(length(min = 1, max = 64))]
    pub command: Vec<String>,

    /// Arguments appended to `command`. Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub args: Vec<String>,

    /// The migration tool, which says where the database's current revision
    /// is kept and so what `status.currentRevision` and readiness gates read:
    /// `alembic` (table `alembic_version`), `flyway`
    /// (`flyway_schema_history`), `golang-migrate` (`schema_migrations`),
    /// `sqlx` (`_sqlx_migrations`), `dbmate` (`schema_migrations`), `django`
    /// (`django_migrations`), or `none`, where only the Job's outcome is
    /// known and `currentRevision` is not reported.
    #[schemars(schema_with = "tool_schema")]
    pub tool: Tool,

    /// The tool's version table, when not the tool's default: `TABLE` or
    /// `SCHEMA.TABLE`, such as `app.alembic_version`. Not allowed with tool
    /// `none`. Default: the tool's own default table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 127), regex(pattern = r"^[^.]+(\.[^.]+)?$"))]
    pub version_table: Option<String>,

    /// Run the command under `schemaop exec`: the operator's own binary,
    /// copied into the pod by an init container, takes schemaop's migration
    /// lock for the database first (so the command never runs twice at
    /// once, even next to a `schemaop exec` in an app container), and
    /// records the run in schemaop's audit log. Turn it off only for images
    /// that cannot run a static Linux binary. Default: `true`.
    #[serde(default = "default_true")]
    pub wrap: bool,

    /// Extra environment variables for the migration container. The
    /// database variables (`DATABASE_URL`, or `PGHOST`, `PGPORT`,
    /// `PGDATABASE`, `PGUSER`, `PGPASSWORD`, `PGSSLMODE`) and
    /// `TARGET_REVISION` are set by the operator and cannot be overridden
    /// here. Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 128))]
    pub env: Vec<EnvVar>,

    /// ConfigMaps and Secrets whose keys become environment variables of the
    /// migration container, referenced, never copied. Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub env_from: Vec<EnvFromSource>,

    /// The ServiceAccount the Job's pod runs as, in the SchemaMigration's
    /// namespace. Default: the namespace's `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub service_account_name: Option<String>,

    /// CPU and memory for the migration container. Default: none (the
    /// namespace's defaults apply).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Secrets to pull `image` with. Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub image_pull_secrets: Vec<LocalObjectReference>,

    /// Labels a node must have to run the Job's pod. Default: none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,

    /// Taints the Job's pod tolerates. Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub tolerations: Vec<Toleration>,

    /// The migration container's security context, replacing the safe
    /// default: run as non-root, no privilege escalation, every capability
    /// dropped, the RuntimeDefault seccomp profile. Its
    /// `readOnlyRootFilesystem` is taken from `readOnlyRootFilesystem` below
    /// when unset. Default: that safe context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<SecurityContext>,

    /// The pod's security context, replacing the default: `runAsNonRoot`
    /// and the RuntimeDefault seccomp profile. Default: that context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_security_context: Option<PodSecurityContext>,

    /// Extra volumes for the Job's pod, for the containers' `volumeMounts`.
    /// The names `schemaop-bin`, `schemaop-tmp` and `schemaop-ca` are the
    /// operator's. Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub volumes: Vec<Volume>,

    /// Where `volumes` are mounted in the migration container. The paths
    /// `/schemaop`, `/tmp` and `/schemaop-ca` are the operator's. Default:
    /// none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub volume_mounts: Vec<VolumeMount>,

    /// Mount the migration container's root filesystem read-only; `/tmp` is
    /// always a writable empty directory. Set to `false` for a tool that
    /// writes elsewhere (Python writing `__pycache__` next to the
    /// migrations is harmless: it gives up quietly). Default: `true`.
    #[serde(default = "default_true")]
    pub read_only_root_filesystem: bool,
}

fn default_true() -> bool {
    true
}

/// `tool` as the CRD takes it: one of the adapters' names.
fn tool_schema(_: &mut SchemaGenerator) -> Schema {
    let names: Vec<&str> = Tool::ALL.iter().map(|t| t.name()).collect();
    json_schema!({ "type": "string", "enum": names })
}

impl JobSource {
    /// The version table, parsed; `None` for the tool's default.
    pub fn version_table(&self) -> Result<Option<crate::adapters::VersionTable>, String> {
        self.version_table
            .as_deref()
            .map(crate::adapters::VersionTable::parse)
            .transpose()
    }
}
