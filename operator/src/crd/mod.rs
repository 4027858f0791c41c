//! The `SchemaMigration` custom resource: which database to migrate, where its
//! migrations come from, and which revision it should be at.
//!
//! Field doc comments become the schema's descriptions, which is what
//! `kubectl explain schemamigration.spec` prints: they are written for the
//! people who write the manifests, and each says what the field does, its
//! default and its limits.

pub mod conditions;
pub mod job;
pub mod status;

#[cfg(test)]
mod tests;

use std::{collections::BTreeMap, fmt, str::FromStr, time::Duration};

use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use crate::duration::{
    DURATION_MAX_LENGTH, DURATION_PATTERN, ParseDurationError, format_duration, parse_duration,
};
pub use conditions::{Condition, ConditionStatus, Reason, find_condition, set_condition};
pub use job::{JobSource, Tool};
pub use status::{
    AppliedMigration, LockHolder, MigrationProgress, REVISION_NONE, RunPhase, RunStatus,
    SchemaMigrationStatus,
};

/// Kubernetes object names (DNS-1123 subdomains), as Secrets and ConfigMaps use.
const OBJECT_NAME_PATTERN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// Keys of a Secret's or ConfigMap's data.
const DATA_KEY_PATTERN: &str = r"^[-._a-zA-Z0-9]+$";

/// Lower-case PostgreSQL identifiers: they mean the same quoted or unquoted,
/// so nobody has to wonder which one the operator uses.
const IDENTIFIER_PATTERN: &str = r"^[a-z_][a-z0-9_]*$";

/// The desired state of a SchemaMigration.
// Clippy reads the `type_ = "string"` that each printer column repeats as a
// duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "schemaop.dev",
    version = "v1alpha1",
    kind = "SchemaMigration",
    namespaced,
    status = "SchemaMigrationStatus",
    derive = "PartialEq",
    shortname = "smig",
    category = "schemaop",
    doc = "A SchemaMigration keeps the schema of one PostgreSQL database at a \
           chosen revision by applying versioned SQL migrations from ConfigMaps \
           or from the resource itself.",
    printcolumn(
        name = "Current",
        type_ = "string",
        json_path = ".status.currentRevision",
        description = "The version of the newest migration applied to the database"
    ),
    printcolumn(
        name = "Target",
        type_ = "string",
        json_path = ".spec.targetRevision",
        description = "The revision the database should be at"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether the database is at the target revision"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        description = "Why the database is, or is not, at the target revision"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.source) != has(self.job)")
    .message("set exactly one of spec.source (SQL migration files) or spec.job (the app's own migration tool, run as a Job)"))]
#[x_kube(validation = Rule::new(TARGET_REVISION_RULE)
    .message("targetRevision must be `latest` or a positive integer version such as \"7\" (at most 18 digits) with spec.source; free text is only taken with spec.job"))]
pub struct SchemaMigrationSpec {
    /// The PostgreSQL database to migrate, and how to log in to it. Set
    /// exactly one of `urlSecretRef` or `connection`. The user needs the
    /// privileges that the migrations' SQL needs, and the right to create the
    /// history table.
    #[x_kube(validation = Rule::new("has(self.urlSecretRef) != has(self.connection)")
        .message("set exactly one of urlSecretRef or connection"))]
    pub database: Database,

    /// Where the migration files come from: SQL files that schemaop runs
    /// itself. Set exactly one of `source` or `job`, and within `source`
    /// exactly one of `configMapRefs` or `inline`. Each file is named
    /// `<version>_<description>.up.sql` (with an optional matching
    /// `.down.sql`, needed to downgrade) or `<version>_<description>.sql`,
    /// where the version is a positive integer such as `0007` or
    /// `20260101120000`.
    #[x_kube(validation = Rule::new("has(self.configMapRefs) != has(self.inline)")
        .message("set exactly one of configMapRefs or inline"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,

    /// The app's own migration tool (Alembic, Flyway, golang-migrate, sqlx,
    /// dbmate, Django), run by the operator as a Kubernetes Job from the
    /// app's image, under schemaop's migration lock. Set exactly one of
    /// `source` or `job`. `allowDowngrade`, `allowOutOfOrder` and the lock
    /// and statement timeouts are the tool's business here and are not
    /// used; `retry.limit` becomes the Job's `backoffLimit` and
    /// `timeouts.runDeadline` its `activeDeadlineSeconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<JobSource>,

    /// The revision the database should be at. With `source`: `latest` for
    /// the newest migration in the source, or a version, written as a string
    /// (quote it in YAML: `targetRevision: "7"`); leading zeros are ignored,
    /// and a version below the current revision is reached by running down
    /// migrations, which needs `allowDowngrade`. With `job`: free text, handed
    /// to the container as the environment variable `TARGET_REVISION`, such
    /// as `head`; changing it starts a new Job. At most 253 characters.
    /// Default: `latest`.
    #[serde(default = "default_target_revision")]
    #[schemars(length(min = 1, max = 253))]
    pub target_revision: String,

    /// Allow reaching a target below the current revision by running down
    /// migrations, which usually drops data. When false, such a target stops
    /// with reason `DowngradeNotAllowed`. Default: `false`.
    #[serde(default)]
    pub allow_downgrade: bool,

    /// Allow applying pending migrations whose version is below that of the
    /// newest applied migration, as happens when branches merge. When false,
    /// such migrations stop the run with reason `OutOfOrder`. Default:
    /// `false`.
    #[serde(default)]
    pub allow_out_of_order: bool,

    /// Where in the database the history of applied migrations is kept. It
    /// cannot change once set: in another table the history would look empty
    /// and every migration would run again. Default: table
    /// `schemaop_migrations` in schema `public`.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == oldSelf")
        .message("history cannot change: the applied migrations are recorded in the old table; create a new SchemaMigration instead"))]
    pub history: History,

    /// Time limits for the migration's SQL and for a whole run. Each is a
    /// duration such as `5s`, `10m` or `1h30m`: numbers, optionally with a
    /// fraction, each followed by a unit, `h`, `m`, `s` or `ms`.
    #[serde(default)]
    pub timeouts: Timeouts,

    /// How failed runs are retried: after the first failure the operator
    /// waits `minBackoff`, and doubles the wait after each further failure,
    /// up to `maxBackoff`. Failures that a retry cannot cure, such as a
    /// changed migration file, are not retried: they mark the resource
    /// Stalled at once.
    #[serde(default)]
    pub retry: Retry,

    /// Stop starting runs. A run already in progress is not interrupted;
    /// while suspended the Ready condition has reason `Suspended`. Default:
    /// `false`.
    #[serde(default)]
    pub suspend: bool,
}

fn default_target_revision() -> String {
    "latest".to_owned()
}

/// `targetRevision` must be a SQL source's revision unless the spec has a
/// job: `latest`, or a positive integer of at most 18 significant digits so
/// that it always fits PostgreSQL's `bigint`; leading zeros are allowed, as
/// in file names such as `0007_add_users.up.sql`.
const TARGET_REVISION_RULE: &str =
    "has(self.job) || self.targetRevision.matches('^(latest|0*[1-9][0-9]{0,17})$')";

impl SchemaMigrationSpec {
    /// `targetRevision` read as a SQL source's revision.
    pub fn target(&self) -> Result<TargetRevision, ParseTargetRevisionError> {
        self.target_revision.parse()
    }
}

/// The database to migrate: either a full URL from a Secret or the parts of a
/// connection.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum Database {
    /// A key of a Secret in the same namespace holding a full PostgreSQL
    /// connection URL, such as
    /// `postgresql://app:secret@db.example:5432/app?sslmode=require`.
    /// Settings in the URL, such as `sslmode`, apply as written.
    UrlSecretRef(SecretKeyRef),

    /// The parts of a connection, with the password and CA certificate read
    /// from Secrets in the same namespace.
    Connection(Connection),
}

/// A connection to PostgreSQL given field by field.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.sslMode != 'verify-full' || has(self.caSecretRef)")
    .message("sslMode verify-full needs caSecretRef, the CA that signed the server's certificate"))]
#[x_kube(validation = Rule::new("self.sslMode == 'verify-full' || !has(self.caSecretRef)")
    .message("caSecretRef is only used with sslMode verify-full; set that mode or remove caSecretRef"))]
pub struct Connection {
    /// The server's host name or IP address, for example
    /// `app-db-rw.databases.svc`. At most 253 characters.
    #[schemars(length(min = 1, max = 253))]
    pub host: String,

    /// The server's TCP port, from 1 to 65535. Default: `5432`.
    #[serde(default = "default_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,

    /// The name of the database to migrate. At most 63 bytes, PostgreSQL's
    /// limit.
    #[schemars(length(min = 1, max = 63))]
    pub database: String,

    /// The user to log in as. At most 63 bytes, PostgreSQL's limit.
    #[schemars(length(min = 1, max = 63))]
    pub user: String,

    /// The Secret key holding the user's password.
    pub password_secret_ref: SecretKeyRef,

    /// Whether and how the connection uses TLS: `disable` (plain text),
    /// `require` (encrypted, but the server's certificate is not checked), or
    /// `verify-full` (encrypted, and the server's certificate must be signed
    /// by the CA in `caSecretRef` and name `host`). Default: `require`.
    #[serde(default)]
    pub ssl_mode: SslMode,

    /// The Secret key holding the PEM-encoded CA certificate that signed the
    /// server's certificate. Required with, and only allowed with, `sslMode:
    /// verify-full`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeyRef>,
}

fn default_port() -> i32 {
    5432
}

/// How the connection to PostgreSQL uses TLS.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    Disable,
    #[default]
    Require,
    VerifyFull,
}

impl SslMode {
    pub const fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Require => "require",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A key of a Secret in the SchemaMigration's namespace.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, Hash)]
pub struct SecretKeyRef {
    /// The name of the Secret, in the SchemaMigration's namespace.
    #[schemars(length(min = 1, max = 253), regex(pattern = OBJECT_NAME_PATTERN))]
    pub name: String,

    /// The key within the Secret's data.
    #[schemars(length(min = 1, max = 253), regex(pattern = DATA_KEY_PATTERN))]
    pub key: String,
}

/// Where the migration files come from.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum Source {
    /// ConfigMaps in the same namespace whose keys are file names and whose
    /// values are the files' SQL. Their files are taken together, so one
    /// migration may sit in any of them, but a file name may appear only
    /// once. Use several when the migrations outgrow one ConfigMap, which
    /// holds at most 1 MiB. At least one; each ConfigMap listed once.
    ConfigMapRefs(
        #[schemars(
            length(min = 1),
            extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"])
        )]
        Vec<ConfigMapRef>,
    ),

    /// The migration files themselves: a map from file name to SQL. Handy for
    /// a few small migrations; the whole resource must stay under about
    /// 1.5 MiB. At least one file.
    Inline(#[schemars(extend("minProperties" = 1))] BTreeMap<String, String>),
}

/// A ConfigMap in the SchemaMigration's namespace.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, Hash)]
pub struct ConfigMapRef {
    /// The name of the ConfigMap, in the SchemaMigration's namespace.
    #[schemars(length(min = 1, max = 253), regex(pattern = OBJECT_NAME_PATTERN))]
    pub name: String,
}

/// The revision a database should be at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum TargetRevision {
    /// The newest migration in the source.
    #[default]
    Latest,
    /// A migration version.
    Version(i64),
}

/// A `targetRevision` that is neither `latest` nor a positive integer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid target revision {0:?}: use `latest` or a positive integer version such as \"7\"")]
pub struct ParseTargetRevisionError(String);

impl FromStr for TargetRevision {
    type Err = ParseTargetRevisionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "latest" {
            return Ok(TargetRevision::Latest);
        }
        // The schema pattern admits digits only; `parse` alone would also take a sign.
        if !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseTargetRevisionError(s.to_owned()));
        }
        match s.parse::<i64>() {
            Ok(version) if version > 0 => Ok(TargetRevision::Version(version)),
            _ => Err(ParseTargetRevisionError(s.to_owned())),
        }
    }
}

impl fmt::Display for TargetRevision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetRevision::Latest => f.write_str("latest"),
            TargetRevision::Version(version) => version.fmt(f),
        }
    }
}

impl Serialize for TargetRevision {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TargetRevision {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Where the history of applied migrations is kept.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, Hash)]
pub struct History {
    /// The schema holding the history table; it is created if missing.
    /// Lower-case letters, digits and underscores, starting with a letter or
    /// an underscore, at most 63 characters. Default: `public`.
    #[serde(default = "default_history_schema")]
    #[schemars(length(min = 1, max = 63), regex(pattern = IDENTIFIER_PATTERN))]
    pub schema: String,

    /// The name of the history table; it is created if missing. Lower-case
    /// letters, digits and underscores, starting with a letter or an
    /// underscore, at most 57 characters, so that its audit log
    /// `<table>_audit` fits PostgreSQL's 63. Default: `schemaop_migrations`.
    #[serde(default = "default_history_table")]
    #[schemars(length(min = 1, max = 57), regex(pattern = IDENTIFIER_PATTERN))]
    pub table: String,
}

fn default_history_schema() -> String {
    "public".to_owned()
}

fn default_history_table() -> String {
    "schemaop_migrations".to_owned()
}

impl Default for History {
    fn default() -> Self {
        History {
            schema: default_history_schema(),
            table: default_history_table(),
        }
    }
}

/// Time limits for the migration's SQL and for a whole run.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub struct Timeouts {
    /// How long a migration statement waits for a table lock before giving
    /// up (PostgreSQL's `lock_timeout`), so that a migration stuck behind a
    /// long transaction does not block the application's queries queued
    /// behind it. The migration is rolled back and tried again after a
    /// jittered wait, for up to a minute; then the run fails, naming the
    /// sessions in the way, and is retried. `0` waits forever. At most
    /// `24h`. Default: `200ms`.
    #[serde(default = "default_lock_timeout")]
    #[schemars(length(min = 1, max = DURATION_MAX_LENGTH), regex(pattern = DURATION_PATTERN))]
    #[x_kube(validation = Rule::new("duration(self) <= duration('24h')").message("must be at most 24h"))]
    pub lock_timeout: String,

    /// How long one migration statement may run before PostgreSQL cancels it
    /// (PostgreSQL's `statement_timeout`). `0` turns the limit off. At most
    /// `24h`. Default: `0`.
    #[serde(default = "default_statement_timeout")]
    #[schemars(length(min = 1, max = DURATION_MAX_LENGTH), regex(pattern = DURATION_PATTERN))]
    #[x_kube(validation = Rule::new("duration(self) <= duration('24h')").message("must be at most 24h"))]
    pub statement_timeout: String,

    /// How long a whole run, waiting for the migration lock included, may
    /// take before the operator cancels it and marks it failed. More than
    /// zero. Default: `30m`.
    #[serde(default = "default_run_deadline")]
    #[schemars(length(min = 1, max = DURATION_MAX_LENGTH), regex(pattern = DURATION_PATTERN))]
    #[x_kube(validation = Rule::new("duration(self) > duration('0s')").message("must be more than zero"))]
    pub run_deadline: String,
}

fn default_lock_timeout() -> String {
    "200ms".to_owned()
}

fn default_statement_timeout() -> String {
    "0".to_owned()
}

fn default_run_deadline() -> String {
    "30m".to_owned()
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            lock_timeout: default_lock_timeout(),
            statement_timeout: default_statement_timeout(),
            run_deadline: default_run_deadline(),
        }
    }
}

impl Timeouts {
    /// `lockTimeout`; zero means no limit.
    pub fn lock_timeout(&self) -> Result<Duration, ParseDurationError> {
        parse_duration(&self.lock_timeout)
    }

    /// `statementTimeout`; zero means no limit.
    pub fn statement_timeout(&self) -> Result<Duration, ParseDurationError> {
        parse_duration(&self.statement_timeout)
    }

    pub fn run_deadline(&self) -> Result<Duration, ParseDurationError> {
        parse_duration(&self.run_deadline)
    }
}

/// How failed runs are retried, with exponential backoff.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("duration(self.minBackoff) <= duration(self.maxBackoff)")
    .message("minBackoff must not be longer than maxBackoff"))]
pub struct Retry {
    /// How many times a failed run is retried before the resource is marked
    /// Stalled; `0` never retries. A change to the spec starts the count
    /// again. From 0 to 100. Default: `5`.
    #[serde(default = "default_retry_limit")]
    #[schemars(range(min = 0, max = 100))]
    pub limit: i32,

    /// The wait before the first retry, a duration such as `10s`. More than
    /// zero. Default: `10s`.
    #[serde(default = "default_min_backoff")]
    #[schemars(length(min = 1, max = DURATION_MAX_LENGTH), regex(pattern = DURATION_PATTERN))]
    #[x_kube(validation = Rule::new("duration(self) > duration('0s')").message("must be more than zero"))]
    pub min_backoff: String,

    /// The longest wait between retries, a duration such as `5m`. At least
    /// `minBackoff`. Default: `5m`.
    #[serde(default = "default_max_backoff")]
    #[schemars(length(min = 1, max = DURATION_MAX_LENGTH), regex(pattern = DURATION_PATTERN))]
    pub max_backoff: String,
}

fn default_retry_limit() -> i32 {
    5
}

fn default_min_backoff() -> String {
    "10s".to_owned()
}

fn default_max_backoff() -> String {
    "5m".to_owned()
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            limit: default_retry_limit(),
            min_backoff: default_min_backoff(),
            max_backoff: default_max_backoff(),
        }
    }
}

impl Retry {
    pub fn min_backoff(&self) -> Result<Duration, ParseDurationError> {
        parse_duration(&self.min_backoff)
    }

    pub fn max_backoff(&self) -> Result<Duration, ParseDurationError> {
        parse_duration(&self.max_backoff)
    }

    /// The wait before retry number `retry` (1 for the first): `minBackoff`
    /// doubled `retry - 1` times, capped at `maxBackoff`.
    pub fn backoff(&self, retry: u32) -> Result<Duration, ParseDurationError> {
        let min = self.min_backoff()?;
        let max = self.max_backoff()?;
        // Past u32's range the wait is far beyond any sensible maximum anyway.
        let wait = 2u32
            .checked_pow(retry.saturating_sub(1))
            .and_then(|factor| min.checked_mul(factor));
        Ok(wait.map_or(max, |wait| wait.min(max)))
    }
}

/// Renders the CustomResourceDefinition as YAML, ready for `kubectl apply -f`.
///
/// # Panics
///
/// Never in practice: the definition is plain data (strings, numbers, maps),
/// which always serializes.
pub fn crd_yaml() -> String {
    let yaml = serde_saphyr::to_string(&SchemaMigration::crd())
        .expect("a CustomResourceDefinition always serializes to YAML");
    format!(
        "# Generated by `schemaop crd` from operator/src/crd; edit the Rust types, not this file.\n{yaml}"
    )
}

/// The schema of a timestamp field, which serializes as RFC 3339.
fn timestamp_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "string", "format": "date-time" })
}

fn optional_timestamp_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": ["string", "null"], "format": "date-time" })
}
