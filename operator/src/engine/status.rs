//! The source compared with the history, migration by migration: what
//! `status` shows and what `verify` checks.

use super::history::{History, RecordState};
use super::migration::Version;
use super::plan;
use super::source::MigrationSource;

/// Where one migration stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Applied,
    Pending,
    /// Applied, but the file changed since.
    Drifted,
    /// Applied, but the file is gone from the source.
    Missing,
    /// Pending, but older than the newest applied migration: a gap.
    OutOfOrder,
    /// A no-transaction migration that failed or was interrupted.
    Blocked(RecordState),
    /// Pending, and its file holds no SQL yet (as `schemaop new` writes it).
    Empty,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Entry {
    pub version: Version,
    pub description: String,
    pub state: State,
    pub file: Option<String>,
    pub applied_at: Option<jiff::Timestamp>,
    pub duration_ms: Option<i64>,
    pub applied_by: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Status {
    pub current: Option<Version>,
    pub latest: Option<Version>,
    pub entries: Vec<Entry>,
}

impl Status {
    pub fn count(&self, state: State) -> usize {
        self.entries.iter().filter(|e| e.state == state).count()
    }

    /// Entries that `verify` reports: anything but applied and pending.
    pub fn problems(&self) -> impl Iterator<Item = &Entry> {
        self.entries
            .iter()
            .filter(|e| !matches!(e.state, State::Applied | State::Pending))
    }

    /// Entries that block or endanger a run and need a person, for `status`:
    /// the problems but a migration still being written.
    pub fn needs_a_person(&self) -> bool {
        self.problems().any(|e| e.state != State::Empty)
    }
}

/// Compares every migration of the source and the history, in version order.
pub fn status(source: &MigrationSource, history: &History) -> Status {
    let current = history.current();
    let drifted: Vec<Version> = plan::drift(source, history)
        .iter()
        .map(|d| d.version)
        .collect();
    let mut entries: Vec<Entry> = history
        .records
        .iter()
        .map(|r| {
            let file = source.get(r.version).map(|m| m.up.file.clone());
            let state = match r.state {
                RecordState::Applied if file.is_none() => State::Missing,
                RecordState::Applied if drifted.contains(&r.version) => State::Drifted,
                RecordState::Applied => State::Applied,
                other => State::Blocked(other),
            };
            Entry {
                version: r.version,
                description: r.description.clone(),
                state,
                file,
                applied_at: Some(r.applied_at),
                duration_ms: Some(r.duration_ms),
                applied_by: Some(r.applied_by.clone()),
            }
        })
        .collect();
    entries.extend(plan::pending(source, history).into_iter().map(|m| Entry {
        version: m.version,
        description: m.description.clone(),
        state: if Some(m.version) < current {
            State::OutOfOrder
        } else if m.up.empty {
            State::Empty
        } else {
            State::Pending
        },
        file: Some(m.up.file.clone()),
        applied_at: None,
        duration_ms: None,
        applied_by: None,
    }));
    entries.sort_by_key(|e| e.version);
    Status {
        current,
        latest: source.latest(),
        entries,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::history::AppliedMigration;
    use crate::engine::migration::Checksum;

    #[test]
    fn classifies_every_migration() {
        let source = MigrationSource::from_files([
            ("1_a.sql", "SELECT 1;"),
            ("2_b.sql", "SELECT 2;"),
            ("3_c.sql", "SELECT 3;"),
            ("4_d.sql", "SELECT 4;"),
            ("6_f.sql", "SELECT 6;"),
        ])
        .unwrap();
        let record = |v: i64, checksum: Checksum, state| AppliedMigration {
            version: Version(v),
            description: "x".into(),
            checksum,
            state,
            applied_at: jiff::Timestamp::UNIX_EPOCH,
            duration_ms: 0,
            applied_by: "t".into(),
            error: None,
        };
        let history = History {
            exists: true,
            records: vec![
                record(1, Checksum::of("SELECT 1;"), RecordState::Applied),
                record(3, Checksum::of("edited"), RecordState::Applied),
                record(4, Checksum::of("SELECT 4;"), RecordState::ApplyFailed),
                record(5, Checksum::of("gone"), RecordState::Applied),
            ],
        };
        let status = status(&source, &history);
        let states: Vec<(i64, State)> = status
            .entries
            .iter()
            .map(|e| (e.version.0, e.state))
            .collect();
        assert_eq!(
            states,
            vec![
                (1, State::Applied),
                (2, State::OutOfOrder),
                (3, State::Drifted),
                (4, State::Blocked(RecordState::ApplyFailed)),
                (5, State::Missing),
                (6, State::Pending),
            ]
        );
        assert_eq!(status.current, Some(Version(5)));
        assert_eq!(status.problems().count(), 4);
    }
}
