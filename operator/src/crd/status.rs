//! What the operator reports about a `SchemaMigration`.
//!
//! Every field is optional and omitted when unset: the controller writes the
//! status with server-side apply, where leaving a field out of the patch is how
//! it stops asserting a value.

use std::{fmt, time::Duration};

use jiff::Timestamp;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::conditions::{Condition, find_condition, set_condition};
use crate::duration::format_duration;

/// How many applied migrations `recentMigrations` keeps.
pub const RECENT_MIGRATIONS_LIMIT: usize = 10;

/// The `currentRevision` of a database in which no migration has been applied.
pub const REVISION_NONE: &str = "none";

/// The observed state of a SchemaMigration, written by the operator.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SchemaMigrationStatus {
    /// The `.metadata.generation` of the spec that this status describes. When
    /// it is lower than `.metadata.generation`, the operator has not yet acted
    /// on the latest change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub observed_generation: Option<i64>,

    /// The database's current revision: the version of the newest applied
    /// migration, as a decimal string, or `none` when no migration has been
    /// applied yet. With `spec.job`, what the tool's version table says:
    /// every Alembic head, separated by spaces, or the latest version for the
    /// other tools, `base` when nothing is applied; absent for tool `none`.
    /// Absent until the operator has read the database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub current_revision: Option<String>,

    /// With `spec.job` and tool `alembic`: every revision the database has
    /// reached, its heads and all their ancestors, from the revision graph
    /// that `schemaop exec` recorded when the Job ran under it. The
    /// readiness gates release a pod whose `schemaop.dev/min-revision` is
    /// among them. Absent when no graph was recorded (the Job ran without
    /// the wrapper) or it holds more than 2,000: then only a head counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2000))]
    pub reached_revisions: Option<Vec<String>>,

    /// The version that `spec.targetRevision` resolved to, as a decimal
    /// string; for `latest`, the newest version in the source. With
    /// `spec.job`, `spec.targetRevision` as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub target_revision: Option<String>,

    /// How many migrations remain to be applied (or, when downgrading,
    /// reverted) to reach the target revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub pending_migrations: Option<i32>,

    /// The current or most recent run: one attempt to bring the database to
    /// the target revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<RunStatus>,

    /// The most recently applied migrations, oldest first, at most 10.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = RECENT_MIGRATIONS_LIMIT))]
    pub recent_migrations: Vec<AppliedMigration>,

    /// The latest observations of the resource's state. `Ready` is True when
    /// the database is at the target revision; `Reconciling` is True while
    /// the operator works towards it; `Stalled` is True when it has stopped
    /// trying and a person must act. The reason and message say why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}

impl SchemaMigrationStatus {
    /// The condition of the given type, if present.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        find_condition(&self.conditions, type_)
    }

    /// Adds or replaces a condition; see [`set_condition`].
    pub fn set_condition(&mut self, condition: Condition) -> bool {
        set_condition(&mut self.conditions, condition)
    }

    /// Appends an applied migration, dropping the oldest beyond
    /// [`RECENT_MIGRATIONS_LIMIT`].
    pub fn record_applied(&mut self, applied: AppliedMigration) {
        self.recent_migrations.push(applied);
        let excess = self
            .recent_migrations
            .len()
            .saturating_sub(RECENT_MIGRATIONS_LIMIT);
        self.recent_migrations.drain(..excess);
    }
}

/// Where a run stands.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RunPhase {
    Pending,
    Running,
    Succeeded,
    Failed,
}

impl fmt::Display for RunPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RunPhase::Pending => "Pending",
            RunPhase::Running => "Running",
            RunPhase::Succeeded => "Succeeded",
            RunPhase::Failed => "Failed",
        })
    }
}

/// One attempt to bring the database to the target revision.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RunStatus {
    /// `Pending` until the run has the migration lock, `Running` while it
    /// applies migrations, then `Succeeded` or `Failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<RunPhase>,

    /// Which attempt this is, counting from 1; it grows with each retry after
    /// a failure and starts again at 1 when the spec changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub attempt: Option<i32>,

    /// When the run started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::optional_timestamp_schema")]
    pub started_at: Option<Timestamp>,

    /// When the run ended; absent while it is in progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::optional_timestamp_schema")]
    pub finished_at: Option<Timestamp>,

    /// The migration being applied right now; absent between migrations and
    /// once the run has ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration: Option<MigrationProgress>,

    /// The session holding the migration lock while this run waits for it;
    /// absent once the run has the lock. Look it up in `pg_stat_activity` to
    /// see what it is doing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock_holder: Option<LockHolder>,

    /// With `spec.job`: the name of the Job that runs, or last ran, the
    /// migration command, in the SchemaMigration's namespace (`kubectl logs
    /// job/NAME`). The operator keeps a Job that failed for inspection and
    /// deletes one that succeeded once the database shows its revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub job: Option<String>,

    /// With `spec.job`: the phase of the Job's newest pod (`Pending`,
    /// `Running`, `Succeeded`, `Failed`), absent before it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub pod_phase: Option<String>,
}

/// The migration a run is applying, rendered as `3 of 7, 20260101120000, add users`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct MigrationProgress {
    /// The position of this migration among those the run applies, counting
    /// from 1.
    #[schemars(range(min = 1))]
    pub index: i32,

    /// How many migrations the run applies in all.
    #[schemars(range(min = 1))]
    pub total: i32,

    /// The migration's version.
    #[schemars(range(min = 1))]
    pub version: i64,

    /// The migration's description, from its file name.
    #[schemars(length(max = 1024))]
    pub description: String,
}

impl fmt::Display for MigrationProgress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} of {}, {}", self.index, self.total, self.version)?;
        if !self.description.is_empty() {
            write!(f, ", {}", self.description)?;
        }
        Ok(())
    }
}

/// The PostgreSQL session that holds the migration lock.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LockHolder {
    /// The backend process ID of the session, as in `pg_stat_activity.pid`.
    pub pid: i32,

    /// The session's `application_name`, which usually tells which program
    /// it is; absent when the session did not set one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub application_name: Option<String>,

    /// Since when the session has held the lock, as far as PostgreSQL tells
    /// (the start of its current transaction).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::optional_timestamp_schema")]
    pub since: Option<Timestamp>,
}

impl fmt::Display for LockHolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pid {}", self.pid)?;
        if let Some(name) = self.application_name.as_deref().filter(|n| !n.is_empty()) {
            write!(f, " ({name})")?;
        }
        if let Some(since) = self.since {
            write!(f, " since {since}")?;
        }
        Ok(())
    }
}

/// A migration the operator applied.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AppliedMigration {
    /// The migration's version.
    #[schemars(range(min = 1))]
    pub version: i64,

    /// The migration's description, from its file name.
    #[schemars(length(max = 1024))]
    pub description: String,

    /// When the migration finished.
    #[schemars(schema_with = "super::timestamp_schema")]
    pub applied_at: Timestamp,

    /// How long the migration took, to the millisecond, such as `250ms`,
    /// `4.2s` or `1m30s`.
    #[schemars(length(max = 32))]
    pub duration: String,
}

impl AppliedMigration {
    pub fn new(
        version: i64,
        description: impl Into<String>,
        applied_at: Timestamp,
        took: Duration,
    ) -> Self {
        AppliedMigration {
            version,
            description: description.into(),
            applied_at,
            duration: format_duration(took),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::conditions::READY;

    #[test]
    fn migration_progress_renders_for_people() {
        let progress = MigrationProgress {
            index: 3,
            total: 7,
            version: 20260101120000,
            description: "add users".into(),
        };
        assert_eq!(progress.to_string(), "3 of 7, 20260101120000, add users");
        let unnamed = MigrationProgress {
            description: String::new(),
            ..progress
        };
        assert_eq!(unnamed.to_string(), "3 of 7, 20260101120000");
    }

    #[test]
    fn lock_holder_renders_for_people() {
        let holder = LockHolder {
            pid: 4242,
            application_name: Some("psql".into()),
            since: Some("2026-01-01T00:00:00Z".parse().unwrap()),
        };
        assert_eq!(
            holder.to_string(),
            "pid 4242 (psql) since 2026-01-01T00:00:00Z"
        );
        let bare = LockHolder {
            pid: 7,
            application_name: Some(String::new()),
            since: None,
        };
        assert_eq!(bare.to_string(), "pid 7");
    }

    #[test]
    fn recent_migrations_keep_the_newest() {
        let mut status = SchemaMigrationStatus::default();
        let at: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        for version in 1..=15 {
            status.record_applied(AppliedMigration::new(
                version,
                "m",
                at,
                Duration::from_millis(1500),
            ));
        }
        let versions: Vec<i64> = status.recent_migrations.iter().map(|m| m.version).collect();
        assert_eq!(versions, (6..=15).collect::<Vec<_>>());
        assert_eq!(status.recent_migrations[0].duration, "1.5s");
    }

    #[test]
    fn empty_status_serializes_to_an_empty_object() {
        // Server-side apply takes an absent field as "not mine"; a null or an
        // empty list would claim it.
        assert_eq!(
            serde_json::to_value(SchemaMigrationStatus::default()).unwrap(),
            serde_json::json!({})
        );
    }

    #[test]
    fn status_round_trips_through_json() {
        let at: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let mut status = SchemaMigrationStatus {
            observed_generation: Some(3),
            current_revision: Some("2".into()),
            target_revision: Some("5".into()),
            pending_migrations: Some(3),
            run: Some(RunStatus {
                phase: Some(RunPhase::Running),
                attempt: Some(1),
                started_at: Some(at),
                finished_at: None,
                migration: Some(MigrationProgress {
                    index: 1,
                    total: 3,
                    version: 3,
                    description: "add index".into(),
                }),
                lock_holder: None,
                job: None,
                pod_phase: None,
            }),
            ..Default::default()
        };
        status.set_condition(Condition::new(READY, false, "Migrating", "1 of 3").at(at));
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["run"]["phase"], "Running");
        assert_eq!(json["run"]["startedAt"], "2026-01-01T00:00:00Z");
        assert_eq!(json["conditions"][0]["type"], "Ready");
        let back: SchemaMigrationStatus = serde_json::from_value(json).unwrap();
        assert_eq!(back, status);
    }
}
