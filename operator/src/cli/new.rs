//! `schemaop new`: the next migration's files, numbered the way the folder
//! already numbers them.

use std::path::{Path, PathBuf};

use clap::Args;

use super::CliError;
use crate::engine::source::version_of_file;
use crate::engine::{Error, Version};

#[derive(Debug, Args)]
pub struct NewArgs {
    /// What the migration does, such as "add users"; becomes the file name's description.
    #[arg(required_unless_present = "message", conflicts_with = "message")]
    pub name: Option<String>,
    /// The same, as Alembic takes it: `new -m "add users"`.
    #[arg(short, long, value_name = "NAME")]
    pub message: Option<String>,
    /// Number with the next integer (0001, 0002, ...) instead of a UTC
    /// timestamp. Without it, the folder decides: sequential numbers when its
    /// files have them, timestamps when they have timestamps or there are none.
    #[arg(long)]
    pub sequential: bool,
    /// Create one up-only `.sql` file, with no down file.
    #[arg(long)]
    pub irreversible: bool,
    /// Start the files with `-- schemaop:no-transaction`, for statements such as
    /// CREATE INDEX CONCURRENTLY.
    #[arg(long)]
    pub no_transaction: bool,
}

/// Timestamps have 14 digits; anything shorter is a sequence.
const TIMESTAMP_DIGITS: usize = 14;

pub fn create(dir: &Path, args: &NewArgs) -> Result<Vec<PathBuf>, CliError> {
    // clap makes exactly one of the two present.
    let name = args
        .name
        .as_deref()
        .or(args.message.as_deref())
        .unwrap_or_default();
    let description = slug(name).ok_or_else(|| {
        CliError::Usage(format!(
            "{name:?} has no letters or digits to name a file with; give the migration a name such as \"add users\""
        ))
    })?;
    let existing = existing_versions(dir)?;
    let (version, width) = next_version(&existing, args.sequential, jiff::Timestamp::now())
        .ok_or_else(|| {
            CliError::Usage(format!(
                "the newest version in {} is already the largest a version can be ({}); \
                 no version can follow it. Renumber the folder's migrations before adding one",
                dir.display(),
                i64::MAX
            ))
        })?;
    let stem = format!("{:0width$}_{description}", version.0);
    let header = if args.no_transaction {
        "-- schemaop:no-transaction\n"
    } else {
        ""
    };
    let files: Vec<(PathBuf, String)> = if args.irreversible {
        vec![(
            dir.join(format!("{stem}.sql")),
            format!("{header}-- {}\n", name),
        )]
    } else {
        vec![
            (
                dir.join(format!("{stem}.up.sql")),
                format!("{header}-- {}\n", name),
            ),
            (
                dir.join(format!("{stem}.down.sql")),
                format!("{header}-- Revert: {}\n", name),
            ),
        ]
    };
    std::fs::create_dir_all(dir).map_err(|source| CliError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    for (path, text) in &files {
        std::fs::write(path, text).map_err(|source| CliError::Write {
            path: path.clone(),
            source,
        })?;
    }
    Ok(files.into_iter().map(|(p, _)| p).collect())
}

/// The versions of the folder's files, from their names only: the files
/// `new` just made hold no SQL yet, which the full loader rightly refuses.
fn existing_versions(dir: &Path) -> Result<Vec<(Version, usize)>, CliError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(Error::ReadSource {
                path: dir.to_path_buf(),
                source,
            }
            .into());
        }
    };
    Ok(entries
        .filter_map(|entry| version_of_file(&entry.ok()?.file_name().to_string_lossy()))
        .collect())
}

/// The next version, and how many digits to pad it to, given the existing
/// versions and the digits each file name spells it with; `None` when the
/// newest version is `i64::MAX`.
fn next_version(
    existing: &[(Version, usize)],
    sequential: bool,
    now: jiff::Timestamp,
) -> Option<(Version, usize)> {
    let latest = existing.iter().max().copied();
    let width = latest.map_or(
        if sequential { 4 } else { TIMESTAMP_DIGITS },
        |(_, digits)| digits,
    );
    let follows_sequence = sequential || (latest.is_some() && width < TIMESTAMP_DIGITS);
    let latest = latest.map(|(v, _)| v);
    let after_latest = match latest {
        Some(v) => Some(v.0.checked_add(1)?),
        None => None,
    };
    if follows_sequence {
        return Some((Version(after_latest.unwrap_or(1)), width));
    }
    let stamp: i64 = now
        .strftime("%Y%m%d%H%M%S")
        .to_string()
        .parse()
        .unwrap_or(1);
    // Two files made in the same second, or a clock behind the newest file,
    // must still sort after it.
    let version = after_latest.map_or(stamp, |next| stamp.max(next));
    Some((Version(version), TIMESTAMP_DIGITS))
}

/// `Add users!` becomes `add_users`.
fn slug(name: &str) -> Option<String> {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_alphanumeric() {
            out.extend(c.to_lowercase());
        } else if !out.ends_with('_') && !out.is_empty() {
            out.push('_');
        }
    }
    let out = out.trim_end_matches('_').to_string();
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(files: &[&str]) -> Vec<(Version, usize)> {
        files.iter().filter_map(|f| version_of_file(f)).collect()
    }

    fn at(text: &str) -> jiff::Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn follows_a_sequential_folder_with_its_padding() {
        let s = source(&["0001_a.sql", "0002_b.sql"]);
        assert_eq!(
            next_version(&s, false, at("2026-11-21T09:30:00Z")),
            Some((Version(3), 4))
        );
    }

    #[test]
    fn uses_a_utc_timestamp_in_a_timestamped_or_empty_folder() {
        let now = at("2026-11-21T09:30:00Z");
        let expected = Some((Version(20261121093000), 14));
        assert_eq!(next_version(&[], false, now), expected);
        let s = source(&["20261101000000_a.sql"]);
        assert_eq!(next_version(&s, false, now), expected);
    }

    #[test]
    fn never_goes_backwards_when_the_clock_does() {
        let s = source(&["20301101000000_future.sql"]);
        assert_eq!(
            next_version(&s, false, at("2026-11-21T09:30:00Z")).map(|(v, _)| v),
            Some(Version(20301101000001))
        );
    }

    #[test]
    fn sequential_flag_starts_at_one() {
        assert_eq!(
            next_version(&[], true, at("2026-11-21T09:30:00Z")),
            Some((Version(1), 4))
        );
    }

    #[test]
    fn nothing_follows_the_largest_version() {
        let now = at("2026-11-21T09:30:00Z");
        let s = source(&["9223372036854775807_last.sql"]);
        assert_eq!(next_version(&s, true, now), None);
        assert_eq!(next_version(&s, false, now), None);
        let s = source(&["9223372036854775806_almost.sql"]);
        assert_eq!(next_version(&s, true, now), Some((Version(i64::MAX), 19)));
    }

    #[test]
    fn slugs_names() {
        assert_eq!(slug("Add users!").as_deref(), Some("add_users"));
        assert_eq!(
            slug("  index runs (status) ").as_deref(),
            Some("index_runs_status")
        );
        assert_eq!(slug("!!!"), None);
    }
}
