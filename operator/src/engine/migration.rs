//! One migration: its version, its scripts and their checksums.

use std::fmt;

use sha2::{Digest, Sha256};

/// A migration's version: a positive integer, ordered numerically, so both
/// `0007` and `20261121093000` work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct Version(pub i64);

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for Version {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.parse::<i64>() {
            Ok(v) if v > 0 => Ok(Version(v)),
            _ => Err(format!(
                "{s:?} is not a version: use a positive integer such as 7 or 20261121093000"
            )),
        }
    }
}

/// SHA-256 of a script with CRLF normalised to LF, so a checkout on Windows
/// does not look like an edit.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Checksum(pub [u8; 32]);

impl Checksum {
    pub fn of(text: &str) -> Self {
        let normalised = text.replace("\r\n", "\n");
        Checksum(Sha256::digest(normalised.as_bytes()).into())
    }

    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn from_hex(hex: &str) -> Option<Self> {
        if hex.len() != 64 || !hex.is_ascii() {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Checksum(out))
    }

    /// The first 12 hex digits: enough to tell two versions of a file apart in a message.
    pub fn short(&self) -> String {
        self.to_hex()[..12].to_string()
    }
}

impl fmt::Debug for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Checksum({})", self.short())
    }
}

/// The SQL of one direction of a migration, as loaded from its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    /// The file the text came from, for error messages.
    pub file: String,
    pub sql: String,
    /// False when the file starts with `-- schemaop:no-transaction` (or
    /// sqlx's `-- no-transaction`): each statement then runs on its own.
    pub transactional: bool,
    pub checksum: Checksum,
    /// Only comments or white space, as `schemaop new` writes it: loaded,
    /// so that read-only commands keep working, and refused when it would run.
    pub empty: bool,
}

/// The leading comments that mark a script as unable to run in a transaction.
pub const NO_TRANSACTION_DIRECTIVES: [&str; 2] =
    ["-- schemaop:no-transaction", "-- no-transaction"];

/// A UTF-8 byte-order mark, which some editors put at the start of a file.
const BOM: char = '\u{feff}';

impl Script {
    /// A leading byte-order mark is dropped before anything reads the SQL
    /// (PostgreSQL would take it for part of a name) and before the checksum:
    /// adding or removing one is an editor setting, not an edit. No file with
    /// one could run before, so no stored checksum includes one.
    pub fn new(file: impl Into<String>, sql: impl Into<String>) -> Self {
        let mut sql = sql.into();
        if sql.starts_with(BOM) {
            sql.drain(..BOM.len_utf8());
        }
        Script {
            file: file.into(),
            transactional: !has_no_transaction_directive(&sql),
            checksum: Checksum::of(&sql),
            empty: !super::sql::has_code(&sql),
            sql,
        }
    }
}

/// The directive counts in the comment block at the top of the file, before
/// any SQL, which is where people put it and where sqlx looks.
fn has_no_transaction_directive(sql: &str) -> bool {
    // Lines end at LF, CRLF or a lone CR, as in the lexer's `--` comments.
    for line in sql.split(['\n', '\r']).map(str::trim) {
        if line.is_empty() {
            continue;
        }
        if !line.starts_with("--") {
            return false;
        }
        if NO_TRANSACTION_DIRECTIVES.contains(&line) {
            return true;
        }
    }
    false
}

/// A migration: an up script and, when it can be reverted, a down script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    pub version: Version,
    /// The description from the file name, with underscores shown as spaces.
    pub description: String,
    pub up: Script,
    pub down: Option<Script>,
}

impl Migration {
    /// The checksum recorded in the history table: that of the up script,
    /// which is what ran.
    pub fn checksum(&self) -> &Checksum {
        &self.up.checksum
    }
}

impl fmt::Display for Migration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.version, self.description)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_ignores_line_endings() {
        assert_eq!(Checksum::of("a\r\nb\n"), Checksum::of("a\nb\n"));
        assert_ne!(Checksum::of("a\nb\n"), Checksum::of("a\nc\n"));
    }

    #[test]
    fn a_byte_order_mark_changes_neither_the_text_nor_the_checksum() {
        let plain = Script::new("a.sql", "CREATE TABLE t ();");
        let marked = Script::new("a.sql", "\u{feff}CREATE TABLE t ();");
        assert_eq!(marked.sql, plain.sql);
        assert_eq!(marked.checksum, plain.checksum);
        // Files without one keep the checksum they were applied with.
        assert_eq!(
            plain.checksum.to_hex(),
            "8f7546eb92f99623b073c127963b5f40272971088b9121255485aa8fb15a3599"
        );
    }

    #[test]
    fn checksum_round_trips_through_hex() {
        let sum = Checksum::of("CREATE TABLE t ()");
        assert_eq!(Checksum::from_hex(&sum.to_hex()), Some(sum));
        assert_eq!(Checksum::from_hex("zz"), None);
    }

    #[test]
    fn no_transaction_directive_is_read_from_the_leading_comments() {
        assert!(
            !Script::new(
                "a.sql",
                "-- schemaop:no-transaction\nCREATE INDEX CONCURRENTLY i ON t (x);"
            )
            .transactional
        );
        assert!(
            !Script::new(
                "a.sql",
                "-- adds an index\n-- no-transaction\nCREATE INDEX CONCURRENTLY i ON t (x);"
            )
            .transactional
        );
        assert!(Script::new("a.sql", "SELECT 1;\n-- no-transaction\n").transactional);
        assert!(Script::new("a.sql", "CREATE TABLE t ();").transactional);
    }

    #[test]
    fn versions_must_be_positive_integers() {
        assert_eq!("0007".parse::<Version>(), Ok(Version(7)));
        assert_eq!(
            "20261121093000".parse::<Version>(),
            Ok(Version(20261121093000))
        );
        assert!("0".parse::<Version>().is_err());
        assert!("-3".parse::<Version>().is_err());
        assert!("v1".parse::<Version>().is_err());
    }
}
