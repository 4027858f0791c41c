//! Where migrations come from: a folder on disk for the CLI, or a map of file
//! name to text for the operator (ConfigMaps, inline SQL). Both go through the
//! same parsing, so a file means the same thing wherever it lives.

use std::collections::BTreeMap;
use std::path::Path;

use super::error::{Error, Result};
use super::migration::{Migration, Script, Version};
use super::script_check;

/// A validated, ordered set of migrations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrationSource {
    migrations: Vec<Migration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Up,
    Down,
    /// A plain `.sql` file: up only, cannot be reverted.
    UpOnly,
}

struct FileName<'a> {
    version: Version,
    description: &'a str,
    direction: Direction,
}

impl MigrationSource {
    /// Loads every `*.sql` file of `dir`. Other files (a README, `.gitkeep`)
    /// and sub-folders are ignored.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let read_error = |source| Error::ReadSource {
            path: dir.to_path_buf(),
            source,
        };
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(read_error)? {
            let entry = entry.map_err(read_error)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".sql") || name.starts_with('.') {
                continue;
            }
            // A link to nothing is a migration that went missing, not a
            // file to skip: skipping it would make `verify` say "no gaps".
            if entry.file_type().is_ok_and(|t| t.is_symlink())
                && std::fs::metadata(entry.path()).is_err()
            {
                return Err(Error::DanglingLink {
                    file: name,
                    target: std::fs::read_link(entry.path()).unwrap_or_default(),
                });
            }
            if !entry.path().is_file() {
                continue;
            }
            let bytes = std::fs::read(entry.path()).map_err(read_error)?;
            files.push((name, bytes));
        }
        Self::from_files(files)
    }

    /// Builds a source from file names and their contents.
    pub fn from_files<N, B>(files: impl IntoIterator<Item = (N, B)>) -> Result<Self>
    where
        N: Into<String>,
        B: Into<Vec<u8>>,
    {
        // Sorting by name first makes errors about pairs of files deterministic.
        let files: BTreeMap<String, Vec<u8>> = files
            .into_iter()
            .map(|(n, b)| (n.into(), b.into()))
            .collect();
        let mut ups: BTreeMap<Version, (String, Script)> = BTreeMap::new();
        let mut downs: BTreeMap<Version, (String, Script)> = BTreeMap::new();

        for (file, bytes) in files {
            let name = parse_file_name(&file).ok_or_else(|| invalid_name(&file))?;
            let text =
                String::from_utf8(bytes).map_err(|_| Error::NotUtf8 { file: file.clone() })?;
            let script = Script::new(file.clone(), text);
            script_check::check(&script)?;
            let slot = match name.direction {
                Direction::Up | Direction::UpOnly => &mut ups,
                Direction::Down => &mut downs,
            };
            if let Some((_, existing)) = slot.get(&name.version) {
                return Err(Error::DuplicateVersion {
                    version: name.version,
                    first: existing.file.clone(),
                    second: file,
                });
            }
            slot.insert(name.version, (name.description.to_string(), script));
        }

        let mut migrations = Vec::with_capacity(ups.len());
        for (version, (description, up)) in ups {
            let down = match downs.remove(&version) {
                Some((down_description, down)) if down_description != description => {
                    return Err(Error::DuplicateVersion {
                        version,
                        first: up.file,
                        second: down.file,
                    });
                }
                Some((_, down)) if up.file.ends_with(".up.sql") => Some(down),
                // `N_x.sql` declares itself up-only; a down file beside it is a mistake.
                Some((_, down)) => return Err(Error::DownWithoutUp { file: down.file }),
                None => None,
            };
            migrations.push(Migration {
                version,
                description: description.replace('_', " "),
                up,
                down,
            });
        }
        if let Some((_, (_, orphan))) = downs.into_iter().next() {
            return Err(Error::DownWithoutUp { file: orphan.file });
        }
        Ok(MigrationSource { migrations })
    }

    /// All migrations, oldest first.
    pub fn migrations(&self) -> &[Migration] {
        &self.migrations
    }

    pub fn get(&self, version: Version) -> Option<&Migration> {
        self.migrations
            .binary_search_by_key(&version, |m| m.version)
            .ok()
            .map(|i| &self.migrations[i])
    }

    pub fn latest(&self) -> Option<Version> {
        self.migrations.last().map(|m| m.version)
    }

    pub fn is_empty(&self) -> bool {
        self.migrations.is_empty()
    }
}

/// The version of a migration file and how many digits its name spells it
/// with, from the name alone; `None` for a name that is not a migration's.
pub fn version_of_file(file: &str) -> Option<(Version, usize)> {
    let name = parse_file_name(file)?;
    Some((name.version, file.find('_').unwrap_or(0)))
}

fn parse_file_name(file: &str) -> Option<FileName<'_>> {
    let (stem, direction) = if let Some(stem) = file.strip_suffix(".up.sql") {
        (stem, Direction::Up)
    } else if let Some(stem) = file.strip_suffix(".down.sql") {
        (stem, Direction::Down)
    } else {
        (file.strip_suffix(".sql")?, Direction::UpOnly)
    };
    let (version, description) = stem.split_once('_')?;
    if description.is_empty() || !version.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(FileName {
        version: version.parse().ok()?,
        description,
        direction,
    })
}

/// Says why a name does not parse; a version past `i64::MAX` gets its own
/// message, since its digits look right.
fn invalid_name(file: &str) -> Error {
    let digits: String = file.chars().take_while(char::is_ascii_digit).collect();
    if file[digits.len()..].starts_with('_') && digits.parse::<i64>().is_err() && !digits.is_empty()
    {
        return Error::VersionTooLarge {
            file: file.to_string(),
        };
    }
    Error::InvalidFileName {
        file: file.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(files: &[(&str, &str)]) -> Result<MigrationSource> {
        MigrationSource::from_files(files.iter().map(|(n, t)| (*n, t.as_bytes().to_vec())))
    }

    #[test]
    fn pairs_up_and_down_files_and_orders_numerically() {
        let s = source(&[
            ("10_ten.sql", "SELECT 10;"),
            ("0002_add_users.up.sql", "CREATE TABLE users ();"),
            ("0002_add_users.down.sql", "DROP TABLE users;"),
            ("9_nine.up.sql", "SELECT 9;"),
        ])
        .unwrap();
        let versions: Vec<i64> = s.migrations().iter().map(|m| m.version.0).collect();
        assert_eq!(versions, vec![2, 9, 10]);
        let users = s.get(Version(2)).unwrap();
        assert_eq!(users.description, "add users");
        assert_eq!(users.down.as_ref().unwrap().file, "0002_add_users.down.sql");
        assert!(s.get(Version(10)).unwrap().down.is_none());
        assert_eq!(s.latest(), Some(Version(10)));
    }

    #[test]
    fn rejects_duplicate_versions_naming_both_files() {
        let err =
            source(&[("1_a.up.sql", "SELECT 1;"), ("0001_b.up.sql", "SELECT 1;")]).unwrap_err();
        let message = err.to_string();
        assert!(matches!(
            err,
            Error::DuplicateVersion {
                version: Version(1),
                ..
            }
        ));
        assert!(
            message.contains("0001_b.up.sql") && message.contains("1_a.up.sql"),
            "{message}"
        );
    }

    #[test]
    fn rejects_a_plain_file_and_an_up_file_of_one_version() {
        let err = source(&[("1_a.sql", "SELECT 1;"), ("1_a.up.sql", "SELECT 1;")]).unwrap_err();
        assert!(matches!(err, Error::DuplicateVersion { .. }), "{err}");
    }

    #[test]
    fn rejects_unparsable_names() {
        for name in [
            "abc.sql",
            "1.sql",
            "1_.up.sql",
            "x1_a.sql",
            "-1_a.sql",
            "0_zero.sql",
        ] {
            let err = source(&[(name, "SELECT 1;")]).unwrap_err();
            assert!(
                matches!(&err, Error::InvalidFileName { file } if file == name),
                "{name}: {err}"
            );
        }
    }

    #[test]
    fn a_version_past_the_largest_integer_is_called_too_large() {
        let name = "9223372036854775808_big.sql";
        let err = source(&[(name, "SELECT 1;")]).unwrap_err();
        assert!(
            matches!(&err, Error::VersionTooLarge { file } if file == name),
            "{err}"
        );
        assert!(err.to_string().contains("9223372036854775807"), "{err}");
        source(&[("9223372036854775807_largest.sql", "SELECT 1;")]).unwrap();
    }

    #[test]
    fn a_link_to_a_missing_file_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("1_a.sql"), "SELECT 1;").unwrap();
        let kept = dir.path().join("store");
        std::os::unix::fs::symlink(kept.join("gone.sql"), dir.path().join("2_b.sql")).unwrap();
        let err = MigrationSource::from_dir(dir.path()).unwrap_err();
        assert!(
            matches!(&err, Error::DanglingLink { file, .. } if file == "2_b.sql"),
            "{err}"
        );
        assert!(err.to_string().contains("gone.sql"), "{err}");
        // A link to a file that exists is an ordinary migration.
        std::fs::create_dir(&kept).unwrap();
        std::fs::write(kept.join("gone.sql"), "SELECT 2;").unwrap();
        assert_eq!(
            MigrationSource::from_dir(dir.path())
                .unwrap()
                .migrations()
                .len(),
            2
        );
    }

    #[test]
    fn rejects_a_down_file_without_its_up_file() {
        let err =
            source(&[("1_a.up.sql", "SELECT 1;"), ("2_b.down.sql", "SELECT 1;")]).unwrap_err();
        assert!(
            matches!(&err, Error::DownWithoutUp { file } if file == "2_b.down.sql"),
            "{err}"
        );
        let err = source(&[("1_a.sql", "SELECT 1;"), ("1_a.down.sql", "SELECT 1;")]).unwrap_err();
        assert!(
            matches!(&err, Error::DownWithoutUp { file } if file == "1_a.down.sql"),
            "{err}"
        );
    }

    #[test]
    fn comment_only_files_load_as_empty_for_read_only_commands() {
        for text in ["", "  \n", "-- todo\n"] {
            let s = source(&[("1_a.sql", text)]).unwrap();
            assert!(s.migrations()[0].up.empty, "{text:?}");
        }
        assert!(
            !source(&[("1_a.sql", "SELECT 1;")]).unwrap().migrations()[0]
                .up
                .empty
        );
    }

    #[test]
    fn rejects_text_that_is_not_utf8() {
        let err = MigrationSource::from_files([("1_a.sql", vec![0x53, 0xff, 0xfe])]).unwrap_err();
        assert!(
            matches!(&err, Error::NotUtf8 { file } if file == "1_a.sql"),
            "{err}"
        );
    }

    #[test]
    fn rejects_transaction_control_in_a_transactional_migration() {
        let err = source(&[(
            "1_a.sql",
            "CREATE TABLE t ();\n\nCOMMIT;\nCREATE TABLE u ();",
        )])
        .unwrap_err();
        assert!(
            matches!(&err, Error::TransactionControl { file, line: 3, keyword } if file == "1_a.sql" && keyword == "COMMIT"),
            "{err}"
        );
    }

    #[test]
    fn ignores_files_that_are_not_migrations() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("README.md"), "notes").unwrap();
        std::fs::write(dir.path().join(".gitkeep"), "").unwrap();
        std::fs::write(dir.path().join("1_a.sql"), "SELECT 1;").unwrap();
        let s = MigrationSource::from_dir(dir.path()).unwrap();
        assert_eq!(s.migrations().len(), 1);
    }

    #[test]
    fn a_missing_folder_is_named() {
        let err = MigrationSource::from_dir(Path::new("/nonexistent/migrations")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/migrations"), "{err}");
    }

    #[test]
    fn begin_atomic_is_not_transaction_control() {
        let sql = "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END;\nCREATE TABLE t ();";
        source(&[("1_a.sql", sql)]).unwrap();
    }

    #[test]
    fn a_commit_after_an_identifier_ending_in_e_is_found() {
        let err = source(&[(
            "1_a.sql",
            "CREATE DOMAIN a$e AS text;\nCREATE TABLE t (x a$e DEFAULT a$e'\\');\nCOMMIT;\nCREATE TABLE u (y text DEFAULT 'it''s');",
        )])
        .unwrap_err();
        assert!(
            err.to_string().starts_with("1_a.sql, line 3: COMMIT"),
            "{err}"
        );
    }

    #[test]
    fn rejects_transaction_control_in_a_no_transaction_migration() {
        for (sql, line, keyword) in [
            (
                "-- no-transaction\nCREATE TABLE t ();\nBEGIN;\nCREATE TABLE u ();",
                3,
                "BEGIN",
            ),
            (
                "-- no-transaction\nBEGIN;\nSELECT 1 / 0;\nROLLBACK;",
                2,
                "BEGIN",
            ),
            ("-- no-transaction\nSAVEPOINT s;", 2, "SAVEPOINT"),
            (
                "-- no-transaction\n\nprepare transaction 'x';",
                3,
                "PREPARE TRANSACTION",
            ),
        ] {
            let err = source(&[("1_a.sql", sql)]).unwrap_err();
            let message = err.to_string();
            assert!(
                message.starts_with(&format!("1_a.sql, line {line}: {keyword}")),
                "{sql:?}: {message}"
            );
            assert!(
                message.contains("each statement already runs on its own"),
                "{message}"
            );
        }
    }

    #[test]
    fn rejects_copy_from_stdin_and_psql_meta_commands() {
        for (sql, line, says) in [
            (
                "CREATE TABLE t (x text);\nCOPY t FROM stdin;\na\n\\.\n",
                2,
                "COPY ... FROM STDIN",
            ),
            (
                "-- no-transaction\nCOPY t (x) FROM pstdin;",
                2,
                "COPY ... FROM STDIN",
            ),
            ("CREATE TABLE t ();\n\\i other.sql\n", 2, "\\i"),
            ("SELECT 'CREATE TABLE u ()' \\gexec\n", 1, "\\gexec"),
            ("\\set x 1\nSELECT 1;", 1, "\\set"),
        ] {
            let err = source(&[("1_a.sql", sql)]).unwrap_err();
            let message = err.to_string();
            assert!(
                message.starts_with(&format!("1_a.sql, line {line}: ")) && message.contains(says),
                "{sql:?}: {message}"
            );
        }
        // Backslashes inside strings, comments and dollar quotes are text.
        source(&[(
            "1_a.sql",
            "SELECT E'\\\\', '\\', $$\\i x$$; -- \\i y\n/* \\gexec */",
        )])
        .unwrap();
        // COPY from a file on the server, or to stdout, is SQL.
        source(&[("1_a.sql", "COPY t FROM '/tmp/data.csv';")]).unwrap();
    }

    #[test]
    fn a_byte_order_mark_is_stripped_and_the_marker_seen_after_it() {
        let s = source(&[(
            "1_a.sql",
            "\u{feff}-- schemaop:no-transaction\nCREATE INDEX CONCURRENTLY i ON t (x);",
        )])
        .unwrap();
        let script = &s.migrations()[0].up;
        assert!(!script.transactional);
        assert!(script.sql.starts_with("-- schemaop"), "{:?}", script.sql);
        let s = source(&[("1_a.sql", "\u{feff}\n")]).unwrap();
        assert!(s.migrations()[0].up.empty);
    }

    #[test]
    fn a_file_with_carriage_return_line_endings_is_not_empty() {
        let s = source(&[("1_a.sql", "-- creates t\rCREATE TABLE t ();\r")]).unwrap();
        assert!(s.migrations()[0].up.transactional);
        assert!(!s.migrations()[0].up.empty);
        let s = source(&[(
            "1_a.sql",
            "-- schemaop:no-transaction\rCREATE INDEX CONCURRENTLY i ON t (x);\r",
        )])
        .unwrap();
        assert!(!s.migrations()[0].up.transactional);
    }
}
