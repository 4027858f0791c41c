//! Whether a pod may take traffic, as a plain function of what it needs and
//! where its SchemaMigration is. No I/O: every case is tested without a server.

use crate::adapters::{Tool, compare_versions};
use crate::crd::conditions::{self, ConditionStatus};
use crate::crd::{REVISION_NONE, SchemaMigration};
use crate::engine::Version;

/// Where a SchemaMigration stands, as far as gates care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schema {
    /// Ready=True for the latest spec (observedGeneration is current).
    pub ready: bool,
    /// The database's revision; `None` before any migration or when unknown.
    pub current: Option<Version>,
    /// The resolved target of the latest spec, when the controller has seen it.
    pub target: Option<Version>,
}

impl Schema {
    pub fn of(obj: &SchemaMigration) -> Schema {
        let Some(status) = &obj.status else {
            return Schema {
                ready: false,
                current: None,
                target: None,
            };
        };
        let current_spec = status.observed_generation == obj.metadata.generation;
        let version = |v: &Option<String>| {
            v.as_deref()
                .filter(|v| *v != REVISION_NONE)
                .and_then(|v| v.parse().ok())
                .map(Version)
        };
        Schema {
            ready: current_spec
                && status
                    .condition(conditions::READY)
                    .is_some_and(|c| c.status == ConditionStatus::True),
            current: version(&status.current_revision),
            target: if current_spec {
                version(&status.target_revision)
            } else {
                None
            },
        }
    }
}

/// What the pod's own condition says from the last decision: the state that
/// must survive an operator restart lives there, not in the operator.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Previous {
    pub released: bool,
    pub needs: Option<Version>,
}

/// The condition to put on the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gate {
    pub ready: bool,
    pub reason: &'static str,
    pub message: String,
}

const NEEDS: &str = "needs revision ";

/// How a message ends: with the database's revision when it was written.
/// A released pod's is read as now; a held pod's as then, since a held pod
/// is not patched again while its wait stays the same.
const DATABASE_IS_AT: &str = "; the database is at ";
const DATABASE_WAS_AT: &str = "; the database was at ";

/// What a gate's message says the pod waits for, without the database's
/// revision at the time it was written.
pub fn wait_of(message: &str) -> &str {
    message
        .split_once("; the database ")
        .map_or(message, |(wait, _)| wait)
}

/// A held pod's message speaks of the database in the past tense.
fn as_written(mut gate: Gate) -> Gate {
    if !gate.ready {
        gate.message = gate.message.replacen(DATABASE_IS_AT, DATABASE_WAS_AT, 1);
    }
    gate
}

/// Reads back what [`Gate::message`] recorded.
pub fn previous(status: Option<&str>, message: Option<&str>) -> Option<Previous> {
    let status = status?;
    let needs = message
        .and_then(|m| m.strip_prefix(NEEDS))
        .map(|rest| {
            rest.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
        })
        .and_then(|digits| digits.parse().ok())
        .map(Version);
    Some(Previous {
        released: status == "True",
        needs,
    })
}

fn at(current: Option<Version>) -> String {
    current.map_or_else(|| REVISION_NONE.to_string(), |v| v.to_string())
}

fn needs_message(needs: Version, current: Option<Version>) -> String {
    format!("{NEEDS}{needs}; the database is at {}", at(current))
}

/// Decides the gate of one pod.
///
/// - With `schemaop.dev/min-revision`, the pod needs that version.
/// - Without it, the pod needs what the SchemaMigration targeted when the pod
///   was first seen, and is released the first time the SchemaMigration is
///   Ready at or past it.
/// - A released pod stays released while later migrations run, fail or
///   stall; it is held back again only if the database goes below what it
///   needs.
pub fn decide(
    min_revision: Result<Option<Version>, String>,
    previous: Option<&Previous>,
    schema: Option<&Schema>,
    migration: &str,
) -> Gate {
    as_written(decide_now(min_revision, previous, schema, migration))
}

fn decide_now(
    min_revision: Result<Option<Version>, String>,
    previous: Option<&Previous>,
    schema: Option<&Schema>,
    migration: &str,
) -> Gate {
    let released = previous.is_some_and(|p| p.released);
    let min_revision = match min_revision {
        Ok(min) => min,
        Err(bad) => {
            return Gate {
                ready: false,
                reason: "InvalidMinRevision",
                message: format!(
                    "annotation schemaop.dev/min-revision is {bad:?}, not a version; set it to a positive integer such as 20261121093000"
                ),
            };
        }
    };
    let Some(schema) = schema else {
        return match previous {
            // Nothing says the schema went away: a deleted resource leaves the database as it was.
            Some(p) if p.released => Gate {
                ready: true,
                reason: "SchemaReady",
                message: p.needs.map_or_else(
                    || format!("SchemaMigration {migration} is gone; the pod stays released"),
                    |n| format!("{NEEDS}{n}; SchemaMigration {migration} is gone, the pod stays released"),
                ),
            },
            _ => Gate {
                ready: false,
                reason: "MigrationNotFound",
                message: format!(
                    "SchemaMigration {migration} was not found in the pod's namespace; create it, or fix the pod's schemaop.dev/migration label"
                ),
            },
        };
    };
    let needs = min_revision.or(previous.and_then(|p| p.needs));
    match needs {
        Some(needs) => {
            let below = schema.current.is_none_or(|c| c < needs);
            // Unknown (no status yet) is not "below": a released pod keeps serving.
            let fell_below = schema.current.is_some_and(|c| c < needs);
            let ready = if released {
                !fell_below
            } else if min_revision.is_some() {
                !below
            } else {
                schema.ready && !below
            };
            Gate {
                ready,
                reason: match (ready, released) {
                    (true, _) => "SchemaReady",
                    (false, true) => "SchemaBelowRevision",
                    (false, false) => "WaitingForRevision",
                },
                message: needs_message(needs, schema.current),
            }
        }
        None if released => Gate {
            ready: true,
            reason: "SchemaReady",
            message: format!("the database is at {}", at(schema.current)),
        },
        // First sight of a pod without min-revision.
        None if schema.ready => Gate {
            ready: true,
            reason: "SchemaReady",
            message: match schema.current {
                Some(current) => needs_message(current, schema.current),
                None => "the database is at none".to_string(),
            },
        },
        None => match schema.target {
            Some(target) => Gate {
                ready: false,
                reason: "WaitingForRevision",
                message: needs_message(target, schema.current),
            },
            None => Gate {
                ready: false,
                reason: "WaitingForMigration",
                message: format!(
                    "waiting for SchemaMigration {migration} to be Ready; the database is at {}",
                    at(schema.current)
                ),
            },
        },
    }
}

/// Where a SchemaMigration of `spec.job` stands: its tool's revision(s),
/// which are names (Alembic's `ae1027a6acf`) more often than numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSchema {
    /// Ready=True for the latest spec.
    pub ready: bool,
    pub tool: Tool,
    /// The current revision(s) as `status.currentRevision` lists them;
    /// empty when unknown or at base.
    pub current: Vec<String>,
    /// For Alembic, `status.reachedRevisions`: the heads and every ancestor.
    pub reached: Option<Vec<String>>,
}

impl JobSchema {
    pub fn of(obj: &SchemaMigration, tool: Tool) -> JobSchema {
        let schema = Schema::of(obj);
        let current = obj
            .status
            .as_ref()
            .and_then(|s| s.current_revision.as_deref())
            .filter(|c| *c != "base")
            .map(|c| c.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default();
        let reached = obj
            .status
            .as_ref()
            .and_then(|s| s.reached_revisions.clone());
        JobSchema {
            ready: schema.ready,
            tool,
            current,
            reached,
        }
    }

    fn at(&self) -> String {
        if self.current.is_empty() {
            "base".into()
        } else {
            self.current.join(" ")
        }
    }
}

/// Whether the tool's current revision(s) have reached `wanted`, by the
/// tool's order: a version at or above it for Flyway, golang-migrate, sqlx
/// and dbmate; for Alembic, a head or an ancestor of one when the graph is
/// known (`reached`), else only a head; for Django, only `wanted` itself
/// among the apps' latest migrations; never for `none`, which keeps no
/// revision. Revisions are compared whole: a prefix could name another one.
pub fn reached(tool: Tool, current: &[String], reached: Option<&[String]>, wanted: &str) -> bool {
    match tool {
        Tool::Alembic => reached.unwrap_or(current).iter().any(|r| r == wanted),
        Tool::Django => current.iter().any(|c| c == wanted),
        Tool::Flyway | Tool::GolangMigrate | Tool::Sqlx | Tool::Dbmate => current
            .iter()
            .any(|c| compare_versions(c, wanted) != std::cmp::Ordering::Less),
        Tool::None => false,
    }
}

/// Decides the gate of one pod whose SchemaMigration runs a Job. The same
/// rules as [`decide`]: with `min-revision`, released once the tool's
/// revision reaches it; without, released the first time the
/// SchemaMigration is Ready for its latest spec; a released pod stays
/// released.
pub fn decide_job(
    min_revision: Option<&str>,
    previous: Option<&Previous>,
    schema: Option<&JobSchema>,
    migration: &str,
) -> Gate {
    as_written(decide_job_now(min_revision, previous, schema, migration))
}

fn decide_job_now(
    min_revision: Option<&str>,
    previous: Option<&Previous>,
    schema: Option<&JobSchema>,
    migration: &str,
) -> Gate {
    let released = previous.is_some_and(|p| p.released);
    let Some(schema) = schema else {
        return decide(Ok(None), previous, None, migration);
    };
    let (ready, message) = match min_revision {
        Some(wanted) if schema.tool != Tool::None => (
            released
                || reached(
                    schema.tool,
                    &schema.current,
                    schema.reached.as_deref(),
                    wanted,
                ),
            format!(
                "needs {} revision {wanted}; the database is at {}",
                schema.tool,
                schema.at()
            ),
        ),
        _ if released || schema.ready => (true, format!("the database is at {}", schema.at())),
        _ => (
            false,
            format!(
                "waiting for SchemaMigration {migration} to be Ready; the database is at {}",
                schema.at()
            ),
        ),
    };
    Gate {
        ready,
        reason: match (ready, min_revision.is_some() && schema.tool != Tool::None) {
            (true, _) => "SchemaReady",
            (false, true) => "WaitingForRevision",
            (false, false) => "WaitingForMigration",
        },
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(n: i64) -> Option<Version> {
        Some(Version(n))
    }

    fn schema(ready: bool, current: Option<Version>, target: Option<Version>) -> Schema {
        Schema {
            ready,
            current,
            target,
        }
    }

    fn released(needs: Option<Version>) -> Previous {
        Previous {
            released: true,
            needs,
        }
    }

    fn waiting(needs: Option<Version>) -> Previous {
        Previous {
            released: false,
            needs,
        }
    }

    /// Decides, then reads the decision back as the next reconcile would.
    fn gate(
        min: Option<i64>,
        previous: Option<Previous>,
        schema: Option<Schema>,
    ) -> (Gate, Option<Previous>) {
        let gate = decide(
            Ok(min.map(Version)),
            previous.as_ref(),
            schema.as_ref(),
            "app",
        );
        let status = if gate.ready { "True" } else { "False" };
        let next = super::previous(Some(status), Some(&gate.message));
        (gate, next)
    }

    #[test]
    fn min_revision_releases_once_the_database_reaches_it() {
        let (g, _) = gate(Some(20), None, Some(schema(false, v(10), v(30))));
        assert_eq!((g.ready, g.reason), (false, "WaitingForRevision"));
        assert_eq!(g.message, "needs revision 20; the database was at 10");

        // Mid-run, not Ready yet: min-revision asks only for the revision.
        let (g, _) = gate(
            Some(20),
            Some(waiting(v(20))),
            Some(schema(false, v(20), v(30))),
        );
        assert_eq!((g.ready, g.reason), (true, "SchemaReady"));
    }

    #[test]
    fn a_new_pod_whose_schema_is_there_is_released_at_once() {
        let (g, next) = gate(None, None, Some(schema(true, v(30), v(30))));
        assert!(g.ready);
        assert_eq!(next, Some(released(v(30))));
    }

    #[test]
    fn a_new_pod_during_a_migration_waits_for_the_target_of_its_time() {
        let (g, next) = gate(None, None, Some(schema(false, v(10), v(30))));
        assert_eq!((g.ready, g.reason), (false, "WaitingForRevision"));
        assert_eq!(next, Some(waiting(v(30))));

        // Past the revision but not Ready yet (the run goes on): still waiting.
        let (g, _) = gate(None, next.clone(), Some(schema(false, v(30), v(40))));
        assert!(!g.ready);

        // Ready at or past what it needs: released.
        let (g, next) = gate(None, next, Some(schema(true, v(40), v(40))));
        assert!(g.ready);
        assert_eq!(next, Some(released(v(30))), "it still needs 30, not 40");
    }

    #[test]
    fn a_new_pod_before_the_controller_saw_the_spec_waits_for_ready() {
        let (g, next) = gate(None, None, Some(schema(false, v(10), None)));
        assert_eq!((g.ready, g.reason), (false, "WaitingForMigration"));
        assert_eq!(next, Some(waiting(None)));
        let (g, next) = gate(None, next, Some(schema(true, v(30), v(30))));
        assert!(g.ready);
        assert_eq!(next, Some(released(v(30))));
    }

    #[test]
    fn a_released_pod_stays_released_while_later_migrations_run_fail_or_stall() {
        for later in [
            schema(false, v(30), v(40)), // migrating to 40
            schema(false, v(35), v(40)), // half way
            schema(false, v(30), None),  // stalled on a spec the controller refuses
            schema(false, None, None),   // status not known
        ] {
            let (g, next) = gate(None, Some(released(v(30))), Some(later));
            assert!(g.ready, "{later:?}");
            assert_eq!(next.unwrap().needs, v(30), "{later:?}");
        }
        let (g, _) = gate(
            Some(30),
            Some(released(v(30))),
            Some(schema(false, None, None)),
        );
        assert!(g.ready);
    }

    #[test]
    fn a_downgrade_below_the_need_holds_a_released_pod_back() {
        let (g, next) = gate(
            None,
            Some(released(v(30))),
            Some(schema(true, v(20), v(20))),
        );
        assert_eq!((g.ready, g.reason), (false, "SchemaBelowRevision"));
        assert_eq!(g.message, "needs revision 30; the database was at 20");
        // Back up: released again.
        let (g, _) = gate(None, next, Some(schema(true, v(30), v(30))));
        assert!(g.ready);
    }

    #[test]
    fn a_missing_schema_migration_holds_new_pods_but_not_released_ones() {
        let (g, _) = gate(None, None, None);
        assert_eq!((g.ready, g.reason), (false, "MigrationNotFound"));
        assert!(g.message.contains("SchemaMigration app"));
        let (g, next) = gate(None, Some(released(v(30))), None);
        assert!(g.ready);
        assert_eq!(next.unwrap().needs, v(30));
    }

    #[test]
    fn a_bad_min_revision_is_named() {
        let g = decide(
            Err("v2".into()),
            None,
            Some(&schema(true, v(30), v(30))),
            "app",
        );
        assert_eq!((g.ready, g.reason), (false, "InvalidMinRevision"));
        assert!(g.message.contains("\"v2\""));
    }

    #[test]
    fn an_empty_database_that_is_ready_releases() {
        let (g, _) = gate(None, None, Some(schema(true, None, None)));
        assert!(g.ready);
    }

    #[test]
    fn previous_reads_what_decide_wrote() {
        assert_eq!(
            previous(
                Some("True"),
                Some("needs revision 42; the database is at 50")
            ),
            Some(released(v(42)))
        );
        assert_eq!(
            previous(Some("False"), Some("waiting for SchemaMigration app")),
            Some(waiting(None))
        );
        assert_eq!(previous(None, Some("needs revision 42")), None);
    }

    fn job_schema(ready: bool, tool: Tool, current: &[&str]) -> JobSchema {
        JobSchema {
            ready,
            tool,
            current: current.iter().map(|c| c.to_string()).collect(),
            reached: None,
        }
    }

    #[test]
    fn a_job_pod_with_min_revision_waits_for_that_alembic_head() {
        let waiting = job_schema(false, Tool::Alembic, &["1975ea83b712"]);
        let g = decide_job(Some("ae1027a6acf"), None, Some(&waiting), "app");
        assert!(!g.ready);
        assert_eq!(g.reason, "WaitingForRevision");
        assert_eq!(
            g.message,
            "needs alembic revision ae1027a6acf; the database was at 1975ea83b712"
        );
        // Reached as a head, even before the SchemaMigration is Ready.
        let there = job_schema(false, Tool::Alembic, &["ae1027a6acf", "27c6a30d7c24"]);
        assert!(decide_job(Some("ae1027a6acf"), None, Some(&there), "app").ready);
    }

    #[test]
    fn an_alembic_ancestor_of_a_head_is_reached_when_the_graph_is_known() {
        // The database is at head c; b came before it, d is not applied.
        let mut at_c = job_schema(false, Tool::Alembic, &["c"]);
        let held = decide_job(Some("b"), None, Some(&at_c), "app");
        assert!(!held.ready, "without the graph only a head counts");

        at_c.reached = Some(vec!["a".into(), "b".into(), "c".into()]);

        assert!(decide_job(Some("b"), None, Some(&at_c), "app").ready);
        assert!(decide_job(Some("c"), None, Some(&at_c), "app").ready);
        assert!(!decide_job(Some("d"), None, Some(&at_c), "app").ready);
        assert!(
            !decide_job(Some("c0"), None, Some(&at_c), "app").ready,
            "whole revisions only"
        );
    }

    #[test]
    fn numbered_tools_compare_by_version_and_none_waits_for_ready() {
        assert!(reached(Tool::Flyway, &["1.10".into()], None, "1.9"));
        assert!(!reached(Tool::Flyway, &["1.9".into()], None, "1.10"));
        assert!(reached(
            Tool::GolangMigrate,
            &["20261121093000".into()],
            None,
            "20261121093000"
        ));
        assert!(
            !reached(Tool::Alembic, &["b".into()], None, "a"),
            "no order among Alembic names"
        );
        let none = job_schema(false, Tool::None, &[]);
        let g = decide_job(Some("anything"), None, Some(&none), "app");
        assert_eq!((g.ready, g.reason), (false, "WaitingForMigration"));
        let none = job_schema(true, Tool::None, &[]);
        assert!(decide_job(Some("anything"), None, Some(&none), "app").ready);
    }

    #[test]
    fn a_job_pod_without_min_revision_is_released_on_ready_and_stays_released() {
        let running = job_schema(false, Tool::Alembic, &[]);
        let g = decide_job(None, None, Some(&running), "app");
        assert_eq!(
            (g.ready, g.reason, g.message.as_str()),
            (
                false,
                "WaitingForMigration",
                "waiting for SchemaMigration app to be Ready; the database was at base"
            )
        );
        let ready = job_schema(true, Tool::Alembic, &["ae1027a6acf"]);
        let g = decide_job(None, None, Some(&ready), "app");
        assert_eq!(
            (g.ready, g.message.as_str()),
            (true, "the database is at ae1027a6acf")
        );
        // A later Job runs or fails: the released pod keeps serving.
        let released = Previous {
            released: true,
            needs: None,
        };
        let failing = job_schema(false, Tool::Alembic, &["ae1027a6acf"]);
        assert!(decide_job(None, Some(&released), Some(&failing), "app").ready);
        assert!(decide_job(Some("ffff"), Some(&released), Some(&failing), "app").ready);
    }
}
