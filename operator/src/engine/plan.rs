//! Deciding what to run: from the source, the history and a target, the
//! ordered steps that bring the database there, or the reason it must not.
//! Plain functions, no I/O: the CLI, the operator and the tests all call them.

use std::fmt;
use std::str::FromStr;

use super::error::{Drift, Error, Result};
use super::history::{History, RecordState};
use super::migration::{Migration, Version};
use super::source::MigrationSource;

/// Where the database should end up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The newest migration in the source.
    Latest,
    /// Before every migration: all reverted.
    Base,
    Version(Version),
    /// `+N`: the next N pending migrations, counted on the history read
    /// under the migration lock, never on one read before it.
    Forward(usize),
    /// `-N`: revert the last N applied migrations, counted on the history
    /// read under the migration lock. Counting earlier is how a downgrade
    /// that waited behind an upgrade once reverted everything that upgrade did.
    Back(usize),
}

impl FromStr for Target {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        let steps = |n: &str| match n.parse::<usize>() {
            Ok(count) if count > 0 && n.bytes().all(|b| b.is_ascii_digit()) => Ok(count),
            _ => Err(format!(
                "{s:?} is not a number of steps: use +N or -N with N at least 1, such as +1 or -2"
            )),
        };
        match s {
            "latest" | "head" => Ok(Target::Latest),
            "base" | "0" => Ok(Target::Base),
            // A sign always means steps: `+1` read as version 1 once sent
            // people to the wrong version.
            _ if s.starts_with('+') => steps(&s[1..]).map(Target::Forward),
            _ if s.starts_with('-') => steps(&s[1..]).map(Target::Back),
            v => v.parse().map(Target::Version).map_err(|_| {
                format!(
                    "{v:?} is not a target: use `latest` (or `head`), `base`, a version such as 20261121093000, \
                     or steps such as +1 or -1"
                )
            }),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Latest => f.write_str("latest"),
            Target::Base => f.write_str("base"),
            Target::Version(v) => v.fmt(f),
            Target::Forward(n) => write!(f, "+{n}"),
            Target::Back(n) => write!(f, "-{n}"),
        }
    }
}

/// Which ways a plan may move the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// `upgrade`: only forwards; a lower target is an error.
    Up,
    /// `downgrade`: only backwards; a higher target is an error.
    Down,
    /// The operator: forwards, and backwards only when the resource allows it.
    Either { allow_downgrade: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanOptions {
    pub direction: Direction,
    /// Apply pending migrations older than the newest applied one.
    pub allow_out_of_order: bool,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            direction: Direction::Up,
            allow_out_of_order: false,
        }
    }
}

/// One migration to run, forwards or backwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step<'a> {
    Apply(&'a Migration),
    Revert(&'a Migration),
}

impl<'a> Step<'a> {
    pub fn migration(&self) -> &'a Migration {
        match self {
            Step::Apply(m) | Step::Revert(m) => m,
        }
    }

    pub fn is_revert(&self) -> bool {
        matches!(self, Step::Revert(_))
    }
}

/// The steps from where the database is to the resolved target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan<'a> {
    pub current: Option<Version>,
    /// The target as a version; `None` is base (nothing applied).
    pub target: Option<Version>,
    pub steps: Vec<Step<'a>>,
}

impl Plan<'_> {
    pub fn is_up_to_date(&self) -> bool {
        self.steps.is_empty()
    }
}

/// Resolves `target` against the source and the history: a version must
/// name a migration, and steps must exist. Call it with the history read
/// under the migration lock.
pub fn resolve_target(
    source: &MigrationSource,
    history: &History,
    target: Target,
) -> Result<Option<Version>> {
    match target {
        Target::Latest => Ok(source.latest()),
        Target::Base => Ok(None),
        Target::Version(v) if source.get(v).is_some() => Ok(Some(v)),
        Target::Version(v) => Err(Error::TargetNotFound {
            target: v.to_string(),
            known: describe_known(source),
            instead: "`latest`, `base`",
        }),
        Target::Forward(steps) => {
            let pending = pending(source, history);
            match pending.get(steps - 1) {
                Some(m) => Ok(Some(m.version)),
                None => Err(Error::NotEnoughSteps {
                    target,
                    available: pending.len(),
                    direction: "pending",
                }),
            }
        }
        Target::Back(steps) => {
            let applied: Vec<Version> = history.records.iter().map(|r| r.version).collect();
            match applied.len().checked_sub(steps) {
                Some(0) => Ok(None),
                Some(i) => Ok(Some(applied[i - 1])),
                None => Err(Error::NotEnoughSteps {
                    target,
                    available: applied.len(),
                    direction: "applied",
                }),
            }
        }
    }
}

fn describe_known(source: &MigrationSource) -> String {
    let versions: Vec<String> = source
        .migrations()
        .iter()
        .map(|m| m.version.to_string())
        .collect();
    match versions.len() {
        0 => "the source has no migrations".into(),
        1..=6 => format!("known: {}", versions.join(", ")),
        n => format!(
            "known: {}, …, {} ({n} in all; see `schemaop history`)",
            versions[..3].join(", "),
            versions[n - 1]
        ),
    }
}

/// Applied migrations whose file no longer matches what ran.
pub fn drift(source: &MigrationSource, history: &History) -> Vec<Drift> {
    history
        .records
        .iter()
        .filter_map(|r| {
            let m = source.get(r.version)?;
            (r.checksum != *m.checksum()).then(|| Drift {
                version: r.version,
                file: m.up.file.clone(),
                applied_checksum: r.checksum.short(),
                file_checksum: m.checksum().short(),
            })
        })
        .collect()
}

/// Applied migrations that have no file in the source.
pub fn missing(source: &MigrationSource, history: &History) -> Vec<Version> {
    history
        .records
        .iter()
        .filter(|r| source.get(r.version).is_none())
        .map(|r| r.version)
        .collect()
}

/// Migrations in the source that are not in the history.
pub fn pending<'a>(source: &'a MigrationSource, history: &History) -> Vec<&'a Migration> {
    source
        .migrations()
        .iter()
        .filter(|m| history.get(m.version).is_none())
        .collect()
}

/// The first row that blocks every run: a no-transaction migration that
/// failed or was interrupted. The caller must hold the migration lock before
/// it calls an `Applying` row interrupted, since a live runner may own it.
pub fn blocked(history: &History) -> Option<Error> {
    let r = history
        .records
        .iter()
        .find(|r| r.state != RecordState::Applied)?;
    Some(Error::Blocked {
        version: r.version,
        description: r.description.clone(),
        state: r.state,
        when: Some(format!(
            "at {} by {}",
            r.applied_at.strftime("%Y-%m-%d %H:%M:%S UTC"),
            r.applied_by
        )),
        error: r
            .error
            .clone()
            .unwrap_or_else(|| "the runner stopped before it finished".into()),
    })
}

/// The first step whose file holds no SQL yet, as `schemaop new` leaves it:
/// such a file loads, so that read-only commands work, but never runs.
pub fn empty_step(plan: &Plan<'_>) -> Option<Error> {
    plan.steps.iter().find_map(|step| {
        let script = match step {
            Step::Apply(m) => &m.up,
            Step::Revert(m) => m.down.as_ref()?,
        };
        script.empty.then(|| Error::EmptyFile {
            file: script.file.clone(),
        })
    })
}

/// Computes the steps from the history to the target, or the reason not to run.
pub fn plan<'a>(
    source: &'a MigrationSource,
    history: &History,
    target: Target,
    options: PlanOptions,
) -> Result<Plan<'a>> {
    if let Some(error) = blocked(history) {
        return Err(error);
    }
    let drifted = drift(source, history);
    if !drifted.is_empty() {
        return Err(Error::ChecksumMismatch(drifted));
    }
    let missing = missing(source, history);
    if !missing.is_empty() {
        return Err(Error::MissingMigrations(missing));
    }
    let target = resolve_target(source, history, target).map_err(|error| match error {
        Error::TargetNotFound { target, known, .. } => Error::TargetNotFound {
            target,
            known,
            instead: match options.direction {
                Direction::Down => "`base`",
                Direction::Up | Direction::Either { .. } => "`latest`",
            },
        },
        error => error,
    })?;
    let current = history.current();

    if target >= current {
        let steps: Vec<Step<'a>> = pending(source, history)
            .into_iter()
            .filter(|m| Some(m.version) <= target)
            .map(Step::Apply)
            .collect();
        if let (Direction::Down, Some(first)) = (options.direction, steps.first()) {
            return Err(Error::UpgradeNotAllowed {
                current: current.map_or_else(|| "base".into(), |c| c.to_string()),
                target: target.unwrap_or(first.migration().version),
            });
        }
        if let Some(newest_applied) = current
            && !options.allow_out_of_order
        {
            let older: Vec<Version> = steps
                .iter()
                .map(|s| s.migration().version)
                .filter(|v| *v < newest_applied)
                .collect();
            if !older.is_empty() {
                return Err(Error::OutOfOrder {
                    pending: older,
                    newest_applied,
                });
            }
        }
        return Ok(Plan {
            current,
            target,
            steps,
        });
    }

    // Going down. `current` is Some here, since target < current.
    let current_version = current.unwrap_or(Version(0));
    let allowed = match options.direction {
        Direction::Up => false,
        Direction::Down => true,
        Direction::Either { allow_downgrade } => allow_downgrade,
    };
    if !allowed {
        return Err(Error::DowngradeNotAllowed {
            current: current_version,
            target: target.map_or_else(|| "base".into(), |v| v.to_string()),
            how: match options.direction {
                Direction::Either { .. } => "set spec.allowDowngrade: true on the SchemaMigration",
                Direction::Up | Direction::Down => "use `schemaop downgrade` to go down",
            },
        });
    }
    let mut steps = Vec::new();
    for record in history
        .records
        .iter()
        .rev()
        .filter(|r| Some(r.version) > target)
    {
        // `missing` was checked above, so every record has its migration.
        let Some(m) = source.get(record.version) else {
            continue;
        };
        if m.down.is_none() {
            return Err(Error::Irreversible {
                version: m.version,
                file: m.up.file.clone(),
            });
        }
        steps.push(Step::Revert(m));
    }
    Ok(Plan {
        current,
        target,
        steps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::history::AppliedMigration;
    use crate::engine::migration::Checksum;

    fn source() -> MigrationSource {
        MigrationSource::from_files([
            ("1_one.up.sql", "SELECT 1;"),
            ("1_one.down.sql", "SELECT -1;"),
            ("2_two.up.sql", "SELECT 2;"),
            ("2_two.down.sql", "SELECT -2;"),
            ("3_three.sql", "SELECT 3;"),
            ("4_four.up.sql", "SELECT 4;"),
            ("4_four.down.sql", "SELECT -4;"),
        ])
        .unwrap()
    }

    fn applied(source: &MigrationSource, versions: &[i64]) -> History {
        History {
            exists: true,
            records: versions
                .iter()
                .map(|v| {
                    let m = source.get(Version(*v)).unwrap();
                    AppliedMigration {
                        version: m.version,
                        description: m.description.clone(),
                        checksum: m.checksum().clone(),
                        state: RecordState::Applied,
                        applied_at: jiff::Timestamp::UNIX_EPOCH,
                        duration_ms: 1,
                        applied_by: "test".into(),
                        error: None,
                    }
                })
                .collect(),
        }
    }

    fn versions(plan: &Plan<'_>) -> Vec<(bool, i64)> {
        plan.steps
            .iter()
            .map(|s| (s.is_revert(), s.migration().version.0))
            .collect()
    }

    const UP: PlanOptions = PlanOptions {
        direction: Direction::Up,
        allow_out_of_order: false,
    };

    #[test]
    fn upgrades_to_latest_in_order() {
        let s = source();
        let plan = plan(&s, &History::default(), Target::Latest, UP).unwrap();
        assert_eq!(
            versions(&plan),
            vec![(false, 1), (false, 2), (false, 3), (false, 4)]
        );
        assert_eq!((plan.current, plan.target), (None, Some(Version(4))));
    }

    #[test]
    fn an_up_to_date_database_has_no_steps() {
        let s = source();
        let plan = plan(&s, &applied(&s, &[1, 2, 3, 4]), Target::Latest, UP).unwrap();
        assert!(plan.is_up_to_date());
    }

    #[test]
    fn upgrades_to_a_chosen_version() {
        let s = source();
        let plan = plan(&s, &applied(&s, &[1]), Target::Version(Version(3)), UP).unwrap();
        assert_eq!(versions(&plan), vec![(false, 2), (false, 3)]);
    }

    #[test]
    fn downgrades_in_reverse_order() {
        let s = source();
        let down = PlanOptions {
            direction: Direction::Down,
            ..UP
        };
        let plan = plan(&s, &applied(&s, &[1, 2]), Target::Base, down).unwrap();
        assert_eq!(versions(&plan), vec![(true, 2), (true, 1)]);
    }

    #[test]
    fn refuses_to_go_below_a_migration_without_a_down_file() {
        let s = source();
        let down = PlanOptions {
            direction: Direction::Down,
            ..UP
        };
        let err = plan(
            &s,
            &applied(&s, &[1, 2, 3, 4]),
            Target::Version(Version(2)),
            down,
        )
        .unwrap_err();
        assert!(
            matches!(&err, Error::Irreversible { version: Version(3), file } if file == "3_three.sql"),
            "{err}"
        );
    }

    #[test]
    fn upgrade_refuses_a_lower_target_and_downgrade_a_higher_one() {
        let s = source();
        let err = plan(&s, &applied(&s, &[1, 2]), Target::Version(Version(1)), UP).unwrap_err();
        assert!(matches!(err, Error::DowngradeNotAllowed { .. }), "{err}");
        let operator = PlanOptions {
            direction: Direction::Either {
                allow_downgrade: false,
            },
            ..UP
        };
        let err = plan(
            &s,
            &applied(&s, &[1, 2]),
            Target::Version(Version(1)),
            operator,
        )
        .unwrap_err();
        assert!(matches!(err, Error::DowngradeNotAllowed { .. }), "{err}");
        let down = PlanOptions {
            direction: Direction::Down,
            ..UP
        };
        let err = plan(&s, &applied(&s, &[1]), Target::Latest, down).unwrap_err();
        assert!(matches!(err, Error::UpgradeNotAllowed { .. }), "{err}");
    }

    #[test]
    fn an_allowed_downgrade_reverts() {
        let s = source();
        let operator = PlanOptions {
            direction: Direction::Either {
                allow_downgrade: true,
            },
            ..UP
        };
        let plan = plan(
            &s,
            &applied(&s, &[1, 2]),
            Target::Version(Version(1)),
            operator,
        )
        .unwrap();
        assert_eq!(versions(&plan), vec![(true, 2)]);
    }

    #[test]
    fn an_unknown_target_lists_known_versions() {
        let s = source();
        let err = plan(&s, &History::default(), Target::Version(Version(99)), UP).unwrap_err();
        assert!(matches!(err, Error::TargetNotFound { .. }));
        assert!(err.to_string().contains("known: 1, 2, 3, 4"), "{err}");
    }

    #[test]
    fn refuses_out_of_order_pending_migrations_unless_allowed() {
        let s = source();
        let history = applied(&s, &[1, 3]);
        let err = plan(&s, &history, Target::Latest, UP).unwrap_err();
        assert!(
            matches!(&err, Error::OutOfOrder { pending, newest_applied: Version(3) } if pending == &[Version(2)]),
            "{err}"
        );
        let allowed = PlanOptions {
            allow_out_of_order: true,
            ..UP
        };
        assert_eq!(
            versions(&plan(&s, &history, Target::Latest, allowed).unwrap()),
            vec![(false, 2), (false, 4)]
        );
    }

    #[test]
    fn refuses_drifted_and_missing_migrations() {
        let s = source();
        let mut history = applied(&s, &[1, 2]);
        history.records[1].checksum = Checksum::of("something else");
        let err = plan(&s, &history, Target::Latest, UP).unwrap_err();
        assert!(
            matches!(&err, Error::ChecksumMismatch(d) if d.len() == 1 && d[0].version == Version(2)),
            "{err}"
        );

        let mut history = applied(&s, &[1]);
        history.records[0].version = Version(9);
        let err = plan(&s, &history, Target::Latest, UP).unwrap_err();
        assert!(
            matches!(&err, Error::MissingMigrations(v) if v == &[Version(9)]),
            "{err}"
        );
    }

    #[test]
    fn a_failed_record_blocks_with_the_way_out() {
        let s = source();
        let mut history = applied(&s, &[1, 2]);
        history.records[1].state = RecordState::ApplyFailed;
        history.records[1].error = Some("deadlock detected".into());
        let err = plan(&s, &history, Target::Latest, UP).unwrap_err();
        let message = err.to_string();
        assert!(matches!(
            err,
            Error::Blocked {
                version: Version(2),
                ..
            }
        ));
        for needle in [
            "deadlock detected",
            "repair --mark-applied 2",
            "repair --mark-reverted 2",
        ] {
            assert!(message.contains(needle), "{needle} missing from: {message}");
        }
    }

    #[test]
    fn steps_count_from_the_history_they_are_given() {
        let s = source();
        let down = PlanOptions {
            direction: Direction::Down,
            ..UP
        };
        // The same `-1` reverts one migration whatever the history says.
        for (at, back_to) in [(&[1, 2][..], Some(1)), (&[1, 2, 3, 4][..], Some(3))] {
            let one = plan(&s, &applied(&s, at), Target::Back(1), down).unwrap();
            assert_eq!(one.steps.len(), 1, "from {at:?}");
            assert_eq!(one.target, back_to.map(Version));
        }
        let two = plan(&s, &applied(&s, &[1, 2]), Target::Back(2), down).unwrap();
        assert_eq!(versions(&two), vec![(true, 2), (true, 1)]);
        assert_eq!(two.target, None);

        let forward = plan(&s, &applied(&s, &[1]), Target::Forward(2), UP).unwrap();
        assert_eq!(versions(&forward), vec![(false, 2), (false, 3)]);
    }

    #[test]
    fn steps_beyond_the_history_are_refused_with_the_way_out() {
        let s = source();
        let down = PlanOptions {
            direction: Direction::Down,
            ..UP
        };
        let err = plan(&s, &applied(&s, &[1]), Target::Back(3), down).unwrap_err();
        assert!(
            matches!(err, Error::NotEnoughSteps { available: 1, .. }),
            "{err}"
        );
        let message = err.to_string();
        assert!(
            message.contains("-3") && message.contains("`base`"),
            "{message}"
        );

        let err = plan(&s, &applied(&s, &[1, 2, 3]), Target::Forward(2), UP).unwrap_err();
        assert!(err.to_string().contains("`latest`"), "{err}");
    }

    #[test]
    fn targets_parse() {
        assert_eq!("latest".parse(), Ok(Target::Latest));
        assert_eq!("base".parse(), Ok(Target::Base));
        assert_eq!("0042".parse(), Ok(Target::Version(Version(42))));
        assert_eq!("head".parse(), Ok(Target::Latest));
        assert_eq!("+2".parse(), Ok(Target::Forward(2)));
        assert_eq!("-1".parse(), Ok(Target::Back(1)));
        assert!("yesterday".parse::<Target>().is_err());
        // A sign is never a version.
        for bad in ["+0", "-0", "+", "-", "+-1", "++1", "+1.5", "- 1"] {
            assert!(bad.parse::<Target>().is_err(), "{bad}");
        }
    }
}
