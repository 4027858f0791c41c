//! Everything that can stop the engine, each error naming the file, version
//! or setting at fault and what to do next.

use std::path::PathBuf;

use super::blockers::Blocker;
use super::history::RecordState;
use super::migration::Version;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An applied migration whose file no longer matches what ran.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Drift {
    pub version: Version,
    pub file: String,
    pub applied_checksum: String,
    pub file_checksum: String,
}

/// Where PostgreSQL said a migration failed, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Failure {
    /// SQLSTATE, such as `42P07`.
    pub code: String,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
    /// 1-based line and column in the file, when PostgreSQL reported a position.
    pub line: Option<usize>,
    pub column: Option<usize>,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let (Some(line), Some(column)) = (self.line, self.column) {
            write!(f, "line {line}, column {column}: ")?;
        }
        write!(f, "{} (SQLSTATE {})", self.message, self.code)?;
        if let Some(detail) = &self.detail {
            write!(f, "; detail: {detail}")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "; hint: {hint}")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // --- the migration source ---
    #[error("cannot read migrations from {}: {source}; check --dir", path.display())]
    ReadSource {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "{file}: the name must be <version>_<description>.up.sql, .down.sql or .sql, \
         with a positive integer version (for example 0007_add_users.up.sql); rename the file"
    )]
    InvalidFileName { file: String },

    #[error("{first} and {second} both define version {version}; give one of them a new version")]
    DuplicateVersion {
        version: Version,
        first: String,
        second: String,
    },

    #[error(
        "{file}: a down migration needs an up migration of the same version and description; add it or remove this file"
    )]
    DownWithoutUp { file: String },

    #[error(
        "{file}: the version is too large; versions go up to {max} (the largest 64-bit integer). \
         Rename the file with a smaller version, such as a UTC timestamp like 20261121093000",
        max = i64::MAX
    )]
    VersionTooLarge { file: String },

    #[error(
        "{file}: a link to {} which does not exist; restore the file it points to, or remove the link",
        target.display()
    )]
    DanglingLink { file: String, target: PathBuf },

    #[error("{file}: the file holds no SQL yet; {}", if file.ends_with(".down.sql") {
        "write the SQL that reverts the migration, or delete the down file to make the migration irreversible"
    } else {
        "write the migration's SQL, or delete the file"
    })]
    EmptyFile { file: String },

    #[error("{file}: the file is not valid UTF-8; save it as UTF-8")]
    NotUtf8 { file: String },

    #[error(
        "{file}, line {line}: {keyword} inside a migration that runs in a transaction; \
         remove it: each migration already gets its own transaction. To run statements outside \
         one, start the file with `-- schemaop:no-transaction` (and leave transaction control out)"
    )]
    TransactionControl {
        file: String,
        line: usize,
        keyword: String,
    },

    #[error(
        "{file}, line {line}: {keyword} in a migration marked no-transaction; remove it: each statement \
         already runs on its own, and transaction control here would put the statements after it in a \
         transaction the engine does not track (a BEGIN without COMMIT rolls them back, unreported). \
         To run statements in one transaction, move them to a migration without the marker"
    )]
    TransactionControlWithoutTransaction {
        file: String,
        line: usize,
        keyword: String,
    },

    #[error(
        "{file}, line {line}: COPY ... FROM STDIN reads rows that only psql sends; write the rows \
         as INSERT statements, or load the data with psql outside the migrations"
    )]
    CopyFromStdin { file: String, line: usize },

    #[error(
        "{file}, line {line}: `{command}` is a psql meta-command, which only psql understands; \
         write it as SQL, or run this file with psql outside the migrations"
    )]
    PsqlMetaCommand {
        file: String,
        line: usize,
        command: String,
    },

    #[error(
        "{file}: PostgreSQL's scanner cannot read the SQL: {reason}; close the string, quoted name, \
         dollar quote or comment it names"
    )]
    UnreadableSql { file: String, reason: String },

    // --- planning ---
    #[error(
        "target {target} is not a migration in the source ({known}); use {instead} or one of these versions"
    )]
    TargetNotFound {
        target: String,
        known: String,
        /// The word that fits the command: `base` when going down.
        instead: &'static str,
    },

    #[error(
        "target {target} needs {steps} {direction} migration{s}, and {available} {is} {direction}; {next}",
        steps = target.to_string().trim_start_matches(['+', '-']).to_string(),
        s = if target.to_string() == "+1" || target.to_string() == "-1" { "" } else { "s" },
        is = if *available == 1 { "is" } else { "are" },
        next = if *direction == "applied" {
            "use `base` to revert everything, or fewer steps"
        } else {
            "use `latest` to apply everything, or fewer steps"
        }
    )]
    NotEnoughSteps {
        target: super::plan::Target,
        available: usize,
        /// `pending` or `applied`.
        direction: &'static str,
    },

    #[error(
        "applied migrations changed since they ran: {}; restore the files, or accept the new text with {}",
        describe_drift(.0),
        .0.iter()
            .map(|d| format!("`schemaop repair --accept-checksum {}`", d.version))
            .collect::<Vec<_>>()
            .join(" and ")
    )]
    ChecksumMismatch(Vec<Drift>),

    #[error(
        "applied migrations have no file in the source: {}; restore the files, or run with the source they came from",
        join(.0)
    )]
    MissingMigrations(Vec<Version>),

    #[error(
        "pending migrations {} are older than the newest applied migration {newest_applied}; \
         give them newer versions, or allow out-of-order migrations (--allow-out-of-order, or spec.allowOutOfOrder)",
        join(pending)
    )]
    OutOfOrder {
        pending: Vec<Version>,
        newest_applied: Version,
    },

    #[error(
        "cannot go below {version}: {file} has no down migration; add a .down.sql file for it, or choose a target at or above {version}"
    )]
    Irreversible { version: Version, file: String },

    #[error(
        "the database is at {current} and the target {target} is below it; downgrading is not allowed here: {how}"
    )]
    DowngradeNotAllowed {
        current: Version,
        /// A version, or `base`.
        target: String,
        /// The way to allow it where the plan was asked for: the CLI's verb
        /// or the resource's field.
        how: &'static str,
    },

    #[error(
        "the database is at {current} and the target {target} is above it; use `schemaop upgrade --to {target}`"
    )]
    UpgradeNotAllowed { current: String, target: Version },

    #[error(
        "migration {version} ({description}) {state} outside a transaction{when}; its statements may have partly run: {error}. \
         Inspect the database (for example `SELECT indexrelid::regclass FROM pg_index WHERE NOT indisvalid` for a failed \
         CREATE INDEX CONCURRENTLY), put it right, then run `schemaop repair --mark-applied {version}` if the migration's \
         effect is complete or `schemaop repair --mark-reverted {version}` if it is not there at all",
        state = state.describe_blocked(), when = when.as_deref().map(|w| format!(" ({w})")).unwrap_or_default()
    )]
    Blocked {
        version: Version,
        description: String,
        state: RecordState,
        when: Option<String>,
        error: String,
    },

    #[error("{reason} (--history-table, or spec.history.table)")]
    InvalidHistoryTable { reason: String },

    #[error(
        "migration {version} is applied; --mark-reverted is for a no-transaction migration that failed or was \
         interrupted and left nothing behind. Forgetting an applied migration would run it again over its own \
         effect: to undo it, use `schemaop downgrade`"
    )]
    RepairApplied { version: Version },

    #[error("version {version} is not in the history table; nothing to repair")]
    NotInHistory { version: Version },

    // --- the database ---
    #[error(
        "invalid database URL: {reason}; use the form postgres://USER:PASSWORD@HOST:PORT/DATABASE"
    )]
    InvalidUrl { reason: String },

    #[error("invalid TLS settings: {reason}")]
    InvalidTls { reason: String },

    #[error(
        "cannot reach the database at {target}: {reason}; check the host, port and network, and that PostgreSQL is running"
    )]
    Unreachable { target: String, reason: String },

    #[error(
        "nothing accepts connections at {target}; check that PostgreSQL is running and listens on that host and port"
    )]
    ConnectionRefused { target: String },

    #[error("the host name {host:?} does not resolve; check the host name")]
    HostNotFound { host: String },

    #[error(
        "the server at {target} has no database {database:?}; create it (for example `createdb {database}`), \
         or check the database name"
    )]
    DatabaseMissing { target: String, database: String },

    #[error("the server at {target} has no role {user:?}; check the user name, or create the role")]
    UnknownRole { target: String, user: String },

    #[error(
        "the database at {target} refused user {user:?}: {reason}; check the user name and password"
    )]
    AuthenticationFailed {
        target: String,
        user: String,
        reason: String,
    },

    #[error("{action} failed: {failure}")]
    Database {
        action: String,
        failure: Box<Failure>,
    },

    #[error("migration {version} failed in {file}{at}: {failure}. {after}",
        at = statement.map(|n| format!(" (statement {n})")).unwrap_or_default(),
        after = match statement {
            None => "Nothing of it stays: its transaction was rolled back; fix the file and run again".to_string(),
            Some(n) => format!(
                "It ran outside a transaction: {before}statement {n} may have left work behind, such as an \
                 invalid index from a failed CREATE INDEX CONCURRENTLY (find it with `SELECT indexrelid::regclass \
                 FROM pg_index WHERE NOT indisvalid`, and drop it). The migration is recorded as failed and blocks \
                 further runs: put the database right, then run `schemaop repair --mark-applied {version}` if its \
                 effect is complete, or `schemaop repair --mark-reverted {version}` if nothing of it is left",
                before = match n {
                    1 => String::new(),
                    2 => "statement 1 stays applied, and ".to_string(),
                    n => format!("statements 1 to {} stay applied, and ", n - 1),
                },
            ),
        })]
    MigrationFailed {
        version: Version,
        file: String,
        /// For no-transaction migrations: the 1-based statement that failed.
        statement: Option<usize>,
        failure: Box<Failure>,
    },

    #[error(
        "migration {version} ({file}) gave up after {attempts} attempts in {waited:.1?}: each time it waited longer than lock_timeout ({lock_timeout:?}) for a lock {held}; \
         end that session or wait for it to finish, then run again, or give the migration more time (--lock-retry-budget and --lock-timeout, or spec.timeouts.lockTimeout)",
        held = describe_blockers(blockers)
    )]
    LockTimeout {
        version: Version,
        file: String,
        attempts: usize,
        waited: std::time::Duration,
        lock_timeout: std::time::Duration,
        /// The sessions last seen holding the locks it waited for.
        blockers: Vec<Blocker>,
    },

    #[error("another runner still holds the migration lock after {waited:?}{holder}; wait for it to finish, or stop it",
        holder = holder.as_deref().map(|h| format!(" ({h})")).unwrap_or_default())]
    LockWaitTimeout {
        waited: std::time::Duration,
        holder: Option<String>,
    },

    #[error(
        "the connection to the database was lost: {reason}; run again, the engine resumes where it stopped"
    )]
    ConnectionLost { reason: String },
}

impl Error {
    /// A CamelCase reason for conditions, Events and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::ReadSource { .. }
            | Error::InvalidFileName { .. }
            | Error::DuplicateVersion { .. }
            | Error::DownWithoutUp { .. }
            | Error::EmptyFile { .. }
            | Error::VersionTooLarge { .. }
            | Error::DanglingLink { .. }
            | Error::NotUtf8 { .. }
            | Error::TransactionControl { .. }
            | Error::TransactionControlWithoutTransaction { .. }
            | Error::CopyFromStdin { .. }
            | Error::PsqlMetaCommand { .. }
            | Error::UnreadableSql { .. } => "InvalidSource",
            Error::TargetNotFound { .. } | Error::NotEnoughSteps { .. } => "TargetNotFound",
            Error::ChecksumMismatch(_) => "ChecksumMismatch",
            Error::MissingMigrations(_) => "MissingMigrations",
            Error::OutOfOrder { .. } => "OutOfOrder",
            Error::Irreversible { .. } => "Irreversible",
            Error::DowngradeNotAllowed { .. } => "DowngradeNotAllowed",
            Error::UpgradeNotAllowed { .. } => "UpgradeNotAllowed",
            Error::Blocked { .. } => "MigrationBlocked",
            Error::NotInHistory { .. } => "NotInHistory",
            Error::RepairApplied { .. } => "RepairRefused",
            Error::InvalidHistoryTable { .. } => "InvalidHistoryTable",
            Error::InvalidUrl { .. } => "InvalidDatabaseUrl",
            Error::InvalidTls { .. } => "InvalidTlsSettings",
            Error::Unreachable { .. }
            | Error::ConnectionRefused { .. }
            | Error::HostNotFound { .. }
            | Error::DatabaseMissing { .. }
            | Error::ConnectionLost { .. } => "DatabaseUnreachable",
            Error::AuthenticationFailed { .. } | Error::UnknownRole { .. } => {
                "AuthenticationFailed"
            }
            Error::Database { .. } => "DatabaseError",
            Error::MigrationFailed { .. } => "MigrationFailed",
            Error::LockTimeout { .. } => "LockTimeout",
            Error::LockWaitTimeout { .. } => "WaitingForLock",
        }
    }

    /// True for failures a person must fix: retrying without a change cannot help.
    pub fn needs_a_person(&self) -> bool {
        match self {
            // A database or server another system is still creating comes
            // by itself.
            Error::Unreachable { .. }
            | Error::ConnectionRefused { .. }
            | Error::HostNotFound { .. }
            | Error::DatabaseMissing { .. }
            | Error::ConnectionLost { .. }
            | Error::LockTimeout { .. }
            | Error::LockWaitTimeout { .. }
            | Error::Database { .. } => false,
            // Deadlocks and serialization failures (class 40) and a server
            // shutting down or starting up (57P01-57P03) pass by themselves.
            Error::MigrationFailed { failure, .. } => {
                !(failure.code.starts_with("40")
                    || matches!(failure.code.as_str(), "57P01" | "57P02" | "57P03"))
            }
            _ => true,
        }
    }
}

fn join(versions: &[Version]) -> String {
    versions
        .iter()
        .map(Version::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn describe_blockers(blockers: &[Blocker]) -> String {
    if blockers.is_empty() {
        return "another session holds (look for it with pg_blocking_pids in pg_stat_activity)"
            .into();
    }
    let held = blockers
        .iter()
        .map(Blocker::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    format!("held by {held}")
}

fn describe_drift(drift: &[Drift]) -> String {
    drift
        .iter()
        .map(|d| {
            format!(
                "{} ({}: applied {}, file now {})",
                d.version, d.file, d.applied_checksum, d.file_checksum
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(code: &str) -> Error {
        Error::MigrationFailed {
            version: Version(1),
            file: "1_a.sql".into(),
            statement: None,
            failure: Box::new(Failure {
                code: code.into(),
                message: "m".into(),
                detail: None,
                hint: None,
                line: None,
                column: None,
            }),
        }
    }

    #[test]
    fn transient_database_failures_are_retried_and_mistakes_are_not() {
        assert!(
            !failed("40P01").needs_a_person(),
            "a deadlock passes by itself"
        );
        assert!(
            !failed("40001").needs_a_person(),
            "so does a serialization failure"
        );
        assert!(!failed("57P01").needs_a_person(), "and a server restart");
        assert!(
            failed("42P07").needs_a_person(),
            "a table that already exists does not"
        );
        assert!(
            Error::EmptyFile {
                file: "1_a.sql".into()
            }
            .needs_a_person()
        );
        assert!(
            !Error::Unreachable {
                target: "t".into(),
                reason: "r".into()
            }
            .needs_a_person()
        );
    }
}
