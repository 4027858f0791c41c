//! The reconcile decisions as plain functions, testable without a server:
//! from what the reconciler found, the status to report and what to do next.

use std::time::Duration;

use super::error::Error;
use crate::crd::conditions::{self, Condition, ConditionStatus};
use crate::crd::{REVISION_NONE, SchemaMigrationStatus};
use crate::engine::{self, Plan, Version};

/// What a reconcile found, in the order it looks.
#[derive(Debug)]
pub enum Finding<'a> {
    Suspended,
    /// A Secret, ConfigMap, migration file or field is wrong.
    InvalidInput(&'a Error),
    /// The database could not be reached or read.
    DatabaseUnavailable(&'a engine::Error),
    /// The engine refuses to plan: drift, an unknown target, a downgrade
    /// that is not allowed, a blocked migration.
    Refused {
        current: Option<Version>,
        error: &'a engine::Error,
    },
    /// The last run failed for these same inputs; it is not started again
    /// until the spec, the files or the database change.
    FailedBefore {
        plan: &'a Plan<'a>,
        reason: &'a str,
        message: &'a str,
    },
    UpToDate {
        plan: &'a Plan<'a>,
    },
    NeedsRun {
        plan: &'a Plan<'a>,
    },
}

/// What to do after reporting the finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    StartRun,
    Requeue(Duration),
}

/// The three kstatus conditions, which always tell one story together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub ready: bool,
    pub reconciling: bool,
    pub stalled: bool,
    pub reason: String,
    pub message: String,
}

/// How often a resource is looked at again with nothing pending: catches
/// changes made to the database behind the operator's back (a manual
/// `schemaop repair`, a restored backup). Costs one query.
pub const RECHECK: Duration = Duration::from_secs(300);

/// Maps a finding to the conditions and the next step.
pub fn decide(finding: &Finding<'_>, retry_after: Duration) -> (Verdict, Next) {
    let verdict = |ready, reconciling, stalled, reason: &str, message: String| Verdict {
        ready,
        reconciling,
        stalled,
        reason: reason.to_string(),
        message,
    };
    match finding {
        Finding::Suspended => (
            verdict(
                false,
                false,
                false,
                "Suspended",
                "reconciliation is suspended; set spec.suspend to false to resume".into(),
            ),
            Next::Requeue(RECHECK),
        ),
        Finding::InvalidInput(error) if !error.needs_a_person() => (
            verdict(
                false,
                true,
                false,
                error.reason(),
                format!("{error}; retrying"),
            ),
            Next::Requeue(retry_after),
        ),
        Finding::InvalidInput(error) => (
            verdict(false, false, true, error.reason(), error.to_string()),
            Next::Requeue(RECHECK),
        ),
        Finding::DatabaseUnavailable(error) if error.needs_a_person() => (
            verdict(false, false, true, error.reason(), error.to_string()),
            Next::Requeue(RECHECK),
        ),
        Finding::DatabaseUnavailable(error) => (
            verdict(
                false,
                true,
                false,
                error.reason(),
                format!("{error}; retrying"),
            ),
            Next::Requeue(retry_after),
        ),
        Finding::Refused { error, .. } => (
            verdict(false, false, true, error.reason(), error.to_string()),
            Next::Requeue(RECHECK),
        ),
        Finding::FailedBefore {
            reason, message, ..
        } => (
            verdict(false, false, true, reason, message.to_string()),
            Next::Requeue(RECHECK),
        ),
        Finding::UpToDate { plan } => (
            verdict(
                true,
                false,
                false,
                "UpToDate",
                format!("the database is at {}", revision(plan.current)),
            ),
            Next::Requeue(RECHECK),
        ),
        Finding::NeedsRun { plan } => {
            let direction = if plan.steps.first().is_some_and(|s| s.is_revert()) {
                "reverting"
            } else {
                "applying"
            };
            (
                verdict(
                    false,
                    true,
                    false,
                    "Migrating",
                    format!(
                        "{direction} {} migration(s) to go from {} to {}",
                        plan.steps.len(),
                        revision(plan.current),
                        revision(plan.target)
                    ),
                ),
                Next::StartRun,
            )
        }
    }
}

/// How a revision reads in status: a version, or `none` before any migration.
pub fn revision(version: Option<Version>) -> String {
    version.map_or_else(|| REVISION_NONE.to_string(), |v| v.to_string())
}

/// The status after a finding: the three conditions, the revisions and the
/// pending count. The run and the recent migrations are the run's to write,
/// so they are carried over.
pub fn status(
    previous: Option<&SchemaMigrationStatus>,
    generation: Option<i64>,
    verdict: &Verdict,
    finding: &Finding<'_>,
) -> SchemaMigrationStatus {
    let mut status = previous.cloned().unwrap_or_default();
    status.observed_generation = generation;
    match finding {
        Finding::UpToDate { plan }
        | Finding::NeedsRun { plan }
        | Finding::FailedBefore { plan, .. } => {
            status.current_revision = Some(revision(plan.current));
            status.target_revision = Some(revision(plan.target));
            status.pending_migrations = Some(i32::try_from(plan.steps.len()).unwrap_or(i32::MAX));
        }
        Finding::Refused { current, .. } => status.current_revision = Some(revision(*current)),
        _ => {}
    }
    set_conditions(&mut status, generation, verdict);
    status
}

/// Writes Ready, Reconciling and Stalled together. `lastTransitionTime`
/// moves only for a condition whose status flips.
pub fn set_conditions(
    status: &mut SchemaMigrationStatus,
    generation: Option<i64>,
    verdict: &Verdict,
) {
    for (type_, holds) in [
        (conditions::READY, verdict.ready),
        (conditions::RECONCILING, verdict.reconciling),
        (conditions::STALLED, verdict.stalled),
    ] {
        status.set_condition(
            Condition::new(
                type_,
                ConditionStatus::from(holds),
                verdict.reason.as_str(),
                verdict.message.as_str(),
            )
            .observed_generation(generation),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Direction, History, MigrationSource, PlanOptions, Target, plan};

    fn source() -> MigrationSource {
        MigrationSource::from_files([
            ("1_a.up.sql", "CREATE TABLE a ();"),
            ("1_a.down.sql", "DROP TABLE a;"),
            ("2_b.sql", "CREATE TABLE b ();"),
        ])
        .unwrap()
    }

    const OPERATOR: PlanOptions = PlanOptions {
        direction: Direction::Either {
            allow_downgrade: false,
        },
        allow_out_of_order: false,
    };

    fn condition<'a>(status: &'a SchemaMigrationStatus, type_: &str) -> &'a Condition {
        status.condition(type_).unwrap()
    }

    fn story(
        status: &SchemaMigrationStatus,
    ) -> (ConditionStatus, ConditionStatus, ConditionStatus, String) {
        (
            condition(status, conditions::READY).status,
            condition(status, conditions::RECONCILING).status,
            condition(status, conditions::STALLED).status,
            condition(status, conditions::READY).reason.clone(),
        )
    }

    const T: ConditionStatus = ConditionStatus::True;
    const F: ConditionStatus = ConditionStatus::False;

    fn report(finding: &Finding<'_>) -> (SchemaMigrationStatus, Next) {
        let (verdict, next) = decide(finding, Duration::from_secs(10));
        (status(None, Some(3), &verdict, finding), next)
    }

    #[test]
    fn a_fresh_database_needs_a_run() {
        let s = source();
        let plan = plan::plan(&s, &History::default(), Target::Latest, OPERATOR).unwrap();
        let (status, next) = report(&Finding::NeedsRun { plan: &plan });
        assert_eq!(next, Next::StartRun);
        assert_eq!(story(&status), (F, T, F, "Migrating".into()));
        assert_eq!(status.current_revision.as_deref(), Some("none"));
        assert_eq!(status.target_revision.as_deref(), Some("2"));
        assert_eq!(status.pending_migrations, Some(2));
        assert_eq!(status.observed_generation, Some(3));
        assert!(
            condition(&status, conditions::READY)
                .message
                .contains("applying 2 migration(s) to go from none to 2")
        );
    }

    #[test]
    fn an_up_to_date_database_is_ready() {
        let s = source();
        let plan = Plan {
            current: Some(Version(2)),
            target: Some(Version(2)),
            steps: vec![],
        };
        let (status, next) = report(&Finding::UpToDate { plan: &plan });
        assert_eq!(story(&status), (T, F, F, "UpToDate".into()));
        assert_eq!(next, Next::Requeue(RECHECK));
        assert_eq!(status.pending_migrations, Some(0));
        drop(s);
    }

    #[test]
    fn suspended_does_nothing_and_says_so() {
        let (status, next) = report(&Finding::Suspended);
        assert_eq!(story(&status), (F, F, F, "Suspended".into()));
        assert!(matches!(next, Next::Requeue(_)));
    }

    #[test]
    fn missing_secrets_and_bad_sources_stall_with_their_reason() {
        let cases = [
            (
                Error::SecretNotFound {
                    namespace: "apps".into(),
                    name: "db".into(),
                },
                "SecretNotFound",
            ),
            (
                Error::SecretKeyNotFound {
                    name: "db".into(),
                    key: "url".into(),
                },
                "SecretKeyNotFound",
            ),
            (
                Error::ConfigMapNotFound {
                    namespace: "apps".into(),
                    name: "m".into(),
                },
                "InvalidSource",
            ),
            (
                Error::Engine(engine::Error::EmptyFile {
                    file: "1_a.sql".into(),
                }),
                "InvalidSource",
            ),
        ];
        for (error, reason) in cases {
            let (status, next) = report(&Finding::InvalidInput(&error));
            assert_eq!(story(&status), (F, F, T, reason.into()), "{error}");
            assert_eq!(next, Next::Requeue(RECHECK));
            assert_eq!(
                condition(&status, conditions::STALLED).message,
                error.to_string()
            );
        }
    }

    #[test]
    fn an_unreachable_database_is_retried_but_bad_credentials_stall() {
        let unreachable = engine::Error::Unreachable {
            target: "postgres://app@db:5432/app".into(),
            reason: "connection refused".into(),
        };
        let (status, next) = report(&Finding::DatabaseUnavailable(&unreachable));
        assert_eq!(story(&status), (F, T, F, "DatabaseUnreachable".into()));
        assert_eq!(next, Next::Requeue(Duration::from_secs(10)));

        let refused = engine::Error::AuthenticationFailed {
            target: "postgres://app@db:5432/app".into(),
            user: "app".into(),
            reason: "password authentication failed".into(),
        };
        let (status, _) = report(&Finding::DatabaseUnavailable(&refused));
        assert_eq!(story(&status), (F, F, T, "AuthenticationFailed".into()));
    }

    #[test]
    fn refusals_stall_with_the_engine_reason() {
        let s = source();
        let drift = engine::Error::ChecksumMismatch(vec![]);
        let target = plan::plan(
            &s,
            &History::default(),
            Target::Version(Version(9)),
            OPERATOR,
        )
        .unwrap_err();
        let down = engine::Error::DowngradeNotAllowed {
            current: Version(2),
            target: "1".into(),
            how: "set spec.allowDowngrade: true on the SchemaMigration",
        };
        let out_of_order = engine::Error::OutOfOrder {
            pending: vec![Version(1)],
            newest_applied: Version(2),
        };
        for (error, reason) in [
            (&drift, "ChecksumMismatch"),
            (&target, "TargetNotFound"),
            (&down, "DowngradeNotAllowed"),
            (&out_of_order, "OutOfOrder"),
        ] {
            let (status, _) = report(&Finding::Refused {
                current: Some(Version(2)),
                error,
            });
            assert_eq!(story(&status), (F, F, T, reason.into()), "{error}");
            assert_eq!(status.current_revision.as_deref(), Some("2"));
        }
    }

    #[test]
    fn a_failed_run_is_not_started_again_for_the_same_inputs() {
        let s = source();
        let plan = plan::plan(&s, &History::default(), Target::Latest, OPERATOR).unwrap();
        let (status, next) = report(&Finding::FailedBefore {
            plan: &plan,
            reason: "MigrationFailed",
            message: "migration 1 failed in 1_a.up.sql: boom",
        });
        assert_eq!(story(&status), (F, F, T, "MigrationFailed".into()));
        assert_eq!(next, Next::Requeue(RECHECK));

        // A run that gave up on the database keeps its own reason.
        let (status, _) = report(&Finding::FailedBefore {
            plan: &plan,
            reason: "DeadlineExceeded",
            message: "the run did not finish within spec.timeouts.runDeadline (30m)",
        });
        assert_eq!(story(&status), (F, F, T, "DeadlineExceeded".into()));
    }

    #[test]
    fn transition_time_moves_only_when_a_condition_flips() {
        let s = source();
        let plan = plan::plan(&s, &History::default(), Target::Latest, OPERATOR).unwrap();
        let finding = Finding::NeedsRun { plan: &plan };
        let (verdict, _) = decide(&finding, Duration::ZERO);
        let mut first = status(None, Some(1), &verdict, &finding);
        let long_ago = jiff::Timestamp::from_second(1_000_000_000).unwrap();
        for c in &mut first.conditions {
            c.last_transition_time = long_ago;
        }

        // Same story again: nothing moves.
        let again = status(Some(&first), Some(1), &verdict, &finding);
        assert!(
            again
                .conditions
                .iter()
                .all(|c| c.last_transition_time == long_ago)
        );

        // Ready flips to True and Reconciling to False; Stalled stays False.
        let done = Plan {
            current: Some(Version(2)),
            target: Some(Version(2)),
            steps: vec![],
        };
        let finding = Finding::UpToDate { plan: &done };
        let (verdict, _) = decide(&finding, Duration::ZERO);
        let ready = status(Some(&again), Some(1), &verdict, &finding);
        assert_ne!(
            condition(&ready, conditions::READY).last_transition_time,
            long_ago
        );
        assert_ne!(
            condition(&ready, conditions::RECONCILING).last_transition_time,
            long_ago
        );
        assert_eq!(
            condition(&ready, conditions::STALLED).last_transition_time,
            long_ago
        );
        assert_eq!(condition(&ready, conditions::STALLED).reason, "UpToDate");
    }
}
