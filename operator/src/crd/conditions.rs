//! Status conditions, shaped like `metav1.Condition` so that kubectl, `kubectl
//! wait --for=condition=Ready` and generic tooling read them as they read the
//! conditions of built-in resources.

use std::fmt;

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The condition that summarises the resource: True once the database is at
/// the target revision.
pub const READY: &str = "Ready";

/// True while the operator is working towards the target: connecting,
/// waiting for the migration lock or applying migrations.
pub const RECONCILING: &str = "Reconciling";

/// True when the operator has stopped trying, because retrying cannot help
/// (a person must change the spec, the source or the database) or the retry
/// limit is spent.
pub const STALLED: &str = "Stalled";

/// Whether a condition holds.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

impl From<bool> for ConditionStatus {
    fn from(holds: bool) -> Self {
        if holds {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        }
    }
}

impl fmt::Display for ConditionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConditionStatus::True => "True",
            ConditionStatus::False => "False",
            ConditionStatus::Unknown => "Unknown",
        })
    }
}

/// The machine-readable reasons the operator gives in its conditions.
///
/// [`Condition::reason`] is a plain string, so reasons from elsewhere (such as
/// the migration engine's error kinds) fit as well; these are the ones the
/// operator's own logic sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The database is at the target revision.
    UpToDate,
    /// Migrations are being applied.
    Migrating,
    /// Another session holds the migration lock.
    WaitingForLock,
    /// The migration files cannot be used: a bad name, a duplicate version, an
    /// empty file, or a ConfigMap that does not exist.
    InvalidSource,
    /// A referenced Secret does not exist.
    SecretNotFound,
    /// A referenced Secret exists but lacks the key.
    SecretKeyNotFound,
    /// The database cannot be reached.
    DatabaseUnreachable,
    /// The database refused the credentials.
    AuthenticationFailed,
    /// An applied migration's file changed since it ran.
    ChecksumMismatch,
    /// `targetRevision` names a version that no migration file has.
    TargetNotFound,
    /// The target is below the current revision and `allowDowngrade` is false.
    DowngradeNotAllowed,
    /// A pending migration is older than the newest applied one and
    /// `allowOutOfOrder` is false.
    OutOfOrder,
    /// A migration's SQL failed.
    MigrationFailed,
    /// `suspend` is true.
    Suspended,
}

impl Reason {
    pub const ALL: [Reason; 14] = [
        Reason::UpToDate,
        Reason::Migrating,
        Reason::WaitingForLock,
        Reason::InvalidSource,
        Reason::SecretNotFound,
        Reason::SecretKeyNotFound,
        Reason::DatabaseUnreachable,
        Reason::AuthenticationFailed,
        Reason::ChecksumMismatch,
        Reason::TargetNotFound,
        Reason::DowngradeNotAllowed,
        Reason::OutOfOrder,
        Reason::MigrationFailed,
        Reason::Suspended,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::UpToDate => "UpToDate",
            Reason::Migrating => "Migrating",
            Reason::WaitingForLock => "WaitingForLock",
            Reason::InvalidSource => "InvalidSource",
            Reason::SecretNotFound => "SecretNotFound",
            Reason::SecretKeyNotFound => "SecretKeyNotFound",
            Reason::DatabaseUnreachable => "DatabaseUnreachable",
            Reason::AuthenticationFailed => "AuthenticationFailed",
            Reason::ChecksumMismatch => "ChecksumMismatch",
            Reason::TargetNotFound => "TargetNotFound",
            Reason::DowngradeNotAllowed => "DowngradeNotAllowed",
            Reason::OutOfOrder => "OutOfOrder",
            Reason::MigrationFailed => "MigrationFailed",
            Reason::Suspended => "Suspended",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl AsRef<str> for Reason {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl From<Reason> for String {
    fn from(reason: Reason) -> Self {
        reason.as_str().to_owned()
    }
}

impl std::str::FromStr for Reason {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reason::ALL
            .into_iter()
            .find(|reason| reason.as_str() == s)
            .ok_or_else(|| format!("{s:?} is not a schemaop condition reason"))
    }
}

/// One aspect of the resource's state, with the JSON shape of
/// `metav1.Condition`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// The aspect this condition describes: `Ready`, `Reconciling` or `Stalled`.
    #[serde(rename = "type")]
    #[schemars(
        length(min = 1, max = 316),
        regex(
            pattern = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
        )
    )]
    pub type_: String,

    /// Whether the condition holds: `True`, `False` or `Unknown`.
    pub status: ConditionStatus,

    /// The `.metadata.generation` the condition was computed from. When it is
    /// lower than the current generation, the condition is out of date.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub observed_generation: Option<i64>,

    /// When the status last changed from one value to another; a new reason
    /// or message with the same status keeps the time.
    #[schemars(schema_with = "super::timestamp_schema")]
    pub last_transition_time: Timestamp,

    /// A CamelCase word saying why the condition has its status, such as
    /// `UpToDate`, `WaitingForLock` or `ChecksumMismatch`. Meant for programs
    /// and for `kubectl get`; the message says the same for people.
    #[schemars(
        length(min = 1, max = 1024),
        regex(pattern = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
    )]
    pub reason: String,

    /// What happened and, when something is wrong, what to do about it. May
    /// be empty.
    #[schemars(length(max = 32768))]
    pub message: String,
}

impl Condition {
    /// A condition whose last transition is now.
    pub fn new(
        type_: impl Into<String>,
        status: impl Into<ConditionStatus>,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Condition {
            type_: type_.into(),
            status: status.into(),
            observed_generation: None,
            last_transition_time: whole_seconds(Timestamp::now()),
            reason: reason.into(),
            message: message.into(),
        }
    }

    /// Records the generation the condition was computed from.
    pub fn observed_generation(mut self, generation: Option<i64>) -> Self {
        self.observed_generation = generation;
        self
    }

    /// Sets the transition time, which [`Condition::new`] takes from the clock.
    pub fn at(mut self, time: Timestamp) -> Self {
        self.last_transition_time = whole_seconds(time);
        self
    }

    pub fn is_true(&self) -> bool {
        self.status == ConditionStatus::True
    }
}

/// `metav1.Time` has second precision; matching it keeps our timestamps
/// looking like every other resource's.
fn whole_seconds(time: Timestamp) -> Timestamp {
    Timestamp::from_second(time.as_second()).unwrap_or(time)
}

/// The condition of the given type, if present.
pub fn find_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Adds `condition`, or replaces the one of the same type.
///
/// When the status is unchanged, the existing `lastTransitionTime` is kept, so
/// that it records when the status last flipped rather than when the operator
/// last looked. Returns whether anything visible changed, which lets the caller
/// skip a status patch that would change nothing.
pub fn set_condition(conditions: &mut Vec<Condition>, mut condition: Condition) -> bool {
    match conditions.iter_mut().find(|c| c.type_ == condition.type_) {
        Some(existing) => {
            if existing.status == condition.status {
                condition.last_transition_time = existing.last_transition_time;
            }
            let changed = *existing != condition;
            *existing = condition;
            changed
        }
        None => {
            conditions.push(condition);
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn ready(status: ConditionStatus, reason: Reason, at: &str) -> Condition {
        Condition::new(READY, status, reason, format!("{reason}"))
            .observed_generation(Some(1))
            .at(time(at))
    }

    #[test]
    fn set_condition_adds_a_new_type() {
        let mut conditions = vec![];
        let changed = set_condition(
            &mut conditions,
            ready(
                ConditionStatus::False,
                Reason::Migrating,
                "2026-01-01T00:00:00Z",
            ),
        );
        assert!(changed);
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].reason, "Migrating");
    }

    #[test]
    fn set_condition_keeps_transition_time_when_status_does_not_flip() {
        let mut conditions = vec![ready(
            ConditionStatus::False,
            Reason::Migrating,
            "2026-01-01T00:00:00Z",
        )];
        let changed = set_condition(
            &mut conditions,
            ready(
                ConditionStatus::False,
                Reason::WaitingForLock,
                "2026-01-01T00:05:00Z",
            ),
        );
        assert!(changed, "the reason changed");
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].reason, "WaitingForLock");
        assert_eq!(
            conditions[0].last_transition_time,
            time("2026-01-01T00:00:00Z")
        );
    }

    #[test]
    fn set_condition_moves_transition_time_when_status_flips() {
        let mut conditions = vec![ready(
            ConditionStatus::False,
            Reason::Migrating,
            "2026-01-01T00:00:00Z",
        )];
        assert!(set_condition(
            &mut conditions,
            ready(
                ConditionStatus::True,
                Reason::UpToDate,
                "2026-01-01T00:05:00Z"
            ),
        ));
        assert_eq!(conditions[0].status, ConditionStatus::True);
        assert_eq!(
            conditions[0].last_transition_time,
            time("2026-01-01T00:05:00Z")
        );
    }

    #[test]
    fn set_condition_reports_no_change_for_the_same_state() {
        let mut conditions = vec![ready(
            ConditionStatus::True,
            Reason::UpToDate,
            "2026-01-01T00:00:00Z",
        )];
        let changed = set_condition(
            &mut conditions,
            ready(
                ConditionStatus::True,
                Reason::UpToDate,
                "2026-01-02T00:00:00Z",
            ),
        );
        assert!(!changed);
        assert_eq!(
            conditions[0].last_transition_time,
            time("2026-01-01T00:00:00Z")
        );
    }

    #[test]
    fn set_condition_leaves_other_types_alone() {
        let stalled =
            Condition::new(STALLED, false, Reason::UpToDate, "").at(time("2026-01-01T00:00:00Z"));
        let mut conditions = vec![stalled.clone()];
        set_condition(
            &mut conditions,
            ready(
                ConditionStatus::True,
                Reason::UpToDate,
                "2026-01-01T00:05:00Z",
            ),
        );
        assert_eq!(conditions.len(), 2);
        assert_eq!(find_condition(&conditions, STALLED), Some(&stalled));
        assert!(find_condition(&conditions, READY).is_some_and(Condition::is_true));
        assert_eq!(find_condition(&conditions, RECONCILING), None);
    }

    #[test]
    fn serializes_like_metav1_condition() {
        let condition = Condition::new(READY, true, Reason::UpToDate, "at 3")
            .observed_generation(Some(4))
            .at(time("2026-01-01T10:00:00.123456Z"));
        assert_eq!(
            serde_json::to_value(&condition).unwrap(),
            serde_json::json!({
                "type": "Ready",
                "status": "True",
                "observedGeneration": 4,
                "lastTransitionTime": "2026-01-01T10:00:00Z",
                "reason": "UpToDate",
                "message": "at 3",
            })
        );
    }

    #[test]
    fn reasons_round_trip_through_strings() {
        for reason in Reason::ALL {
            assert_eq!(reason.as_str().parse::<Reason>(), Ok(reason));
            assert_eq!(String::from(reason), reason.to_string());
        }
        assert!("NoSuchReason".parse::<Reason>().is_err());
    }
}
