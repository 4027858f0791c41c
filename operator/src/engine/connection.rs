//! Connecting to PostgreSQL: the URL, the session settings every migration
//! session runs with, and errors that never show a password.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_postgres::config::Host;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config, NoTls};

use super::error::{Error, Failure, Result};

/// A database to connect to, parsed from a URL or built field by field.
#[derive(Clone)]
pub struct Database {
    config: Config,
}

/// Session settings for migration sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSettings {
    /// How long a statement may wait for a lock before it fails with 55P03
    /// and is retried; short, so a migration never queues the application's
    /// queries behind it for long.
    pub lock_timeout: Duration,
    /// How long one statement may run; `None` is no limit.
    pub statement_timeout: Option<Duration>,
    /// Shown in `pg_stat_activity`, so a person can see who holds the lock.
    pub application_name: String,
    pub connect_timeout: Duration,
}

impl Default for SessionSettings {
    fn default() -> Self {
        SessionSettings {
            lock_timeout: Duration::from_secs(5),
            statement_timeout: None,
            application_name: "schemaop".into(),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Config's own Debug hides the password too; this is shorter.
        f.write_str(&self.redacted())
    }
}

impl Database {
    /// Parses a `postgres://` URL or a `key=value` connection string. The
    /// error never repeats the input, which may hold a password.
    pub fn from_url(url: &str) -> Result<Self> {
        let config: Config = url
            .parse()
            .map_err(|e: tokio_postgres::Error| Error::InvalidUrl {
                reason: redact_parse_error(&e.to_string()),
            })?;
        if config.get_hosts().is_empty() {
            return Err(Error::InvalidUrl {
                reason: "no host given".into(),
            });
        }
        Ok(Database { config })
    }

    pub fn from_config(config: Config) -> Self {
        Database { config }
    }

    pub fn user(&self) -> &str {
        self.config.get_user().unwrap_or("")
    }

    /// The database name, which defaults to the user name as in libpq.
    pub fn name(&self) -> &str {
        self.config.get_dbname().unwrap_or_else(|| self.user())
    }

    /// `postgres://user@host:port/database`, safe to print.
    pub fn redacted(&self) -> String {
        let hosts: Vec<String> = self
            .config
            .get_hosts()
            .iter()
            .enumerate()
            .map(|(i, host)| {
                let port = self
                    .config
                    .get_ports()
                    .get(i)
                    .or(self.config.get_ports().first())
                    .copied()
                    .unwrap_or(5432);
                match host {
                    Host::Tcp(name) => format!("{name}:{port}"),
                    Host::Unix(path) => format!("[{}]:{port}", path.display()),
                }
            })
            .collect();
        format!(
            "postgres://{}@{}/{}",
            self.user(),
            hosts.join(","),
            self.name()
        )
    }

    /// Opens one dedicated connection with the migration session settings.
    pub async fn connect(&self, settings: &SessionSettings) -> Result<Session> {
        let mut config = self.config.clone();
        let mut options = config.get_options().map(str::to_string).unwrap_or_default();
        // Startup options cost no round trip, unlike SET.
        options.push_str(&format!(
            " -c lock_timeout={} -c statement_timeout={} -c standard_conforming_strings=on",
            settings.lock_timeout.as_millis(),
            settings.statement_timeout.map_or(0, |t| t.as_millis()),
        ));
        config.options(options.trim());
        if config.get_application_name().is_none() {
            config.application_name(truncate(&settings.application_name, 63));
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(settings.connect_timeout);
        }
        let (client, connection) = config
            .connect(NoTls)
            .await
            .map_err(|e| self.connect_error(e))?;
        let driver = tokio::spawn(async move {
            // The error, if any, surfaces on the client's next call.
            let _ = connection.await;
        });
        Ok(Session { client, driver })
    }

    fn connect_error(&self, error: tokio_postgres::Error) -> Error {
        let target = self.redacted();
        match error.as_db_error() {
            Some(db)
                if matches!(
                    *db.code(),
                    SqlState::INVALID_PASSWORD | SqlState::INVALID_AUTHORIZATION_SPECIFICATION
                ) =>
            {
                Error::AuthenticationFailed {
                    target,
                    user: self.user().to_string(),
                    reason: db.message().to_string(),
                }
            }
            Some(db) => Error::Unreachable {
                target,
                reason: db.message().to_string(),
            },
            None => Error::Unreachable {
                target,
                reason: describe_io_error(&error),
            },
        }
    }
}

/// A dedicated connection. Dropping it closes the socket at once, so a
/// cancelled run's open transaction is rolled back by the server.
pub struct Session {
    pub client: Client,
    driver: JoinHandle<()>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl Session {
    /// Runs `sql` (one or more statements) as a simple query: one round trip.
    pub async fn execute(&self, sql: &str, action: &str) -> Result<()> {
        self.client
            .batch_execute(sql)
            .await
            .map_err(|e| database_error(action, &e))
    }
}

/// Maps a driver error to ours, keeping what PostgreSQL said.
pub fn database_error(action: &str, error: &tokio_postgres::Error) -> Error {
    match error.as_db_error() {
        Some(_) => Error::Database {
            action: action.to_string(),
            failure: Box::new(failure(error, None)),
        },
        None => Error::ConnectionLost {
            reason: describe_io_error(error),
        },
    }
}

/// What PostgreSQL said, with its position turned into a line and column of
/// `script`. The shift is added to the position to make it count characters
/// of the script rather than of the query string that was sent.
pub fn failure(error: &tokio_postgres::Error, script: Option<(&str, isize)>) -> Failure {
    let Some(db) = error.as_db_error() else {
        return Failure {
            code: String::new(),
            message: describe_io_error(error),
            detail: None,
            hint: None,
            line: None,
            column: None,
        };
    };
    let (line, column) = match (db.position(), script) {
        (Some(tokio_postgres::error::ErrorPosition::Original(pos)), Some((text, shift))) => {
            // Positions count characters from 1 across the whole query string.
            let index = usize::try_from(*pos as isize - 1 + shift).ok();
            match index.and_then(|i| text.char_indices().nth(i)) {
                Some((byte, _)) => {
                    let (l, c) = super::sql::line_col(text, byte);
                    (Some(l), Some(c))
                }
                None => (None, None),
            }
        }
        _ => (None, None),
    };
    Failure {
        code: db.code().code().to_string(),
        message: db.message().to_string(),
        detail: db.detail().map(str::to_string),
        hint: db.hint().map(str::to_string),
        line,
        column,
    }
}

pub fn is_lock_timeout(error: &tokio_postgres::Error) -> bool {
    error.code() == Some(&SqlState::LOCK_NOT_AVAILABLE)
}

/// The driver's text for I/O errors, with the source chain, which holds
/// "connection refused" and the like but never the connection string.
fn describe_io_error(error: &tokio_postgres::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Parse errors may quote part of the input; keep only the kind of problem.
fn redact_parse_error(message: &str) -> String {
    message
        .split(':')
        .next()
        .unwrap_or("could not parse the connection string")
        .trim()
        .to_string()
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacted_url_never_shows_the_password() {
        let db = Database::from_url("postgres://app:hunter2@db.example:6543/orders").unwrap();
        assert_eq!(db.redacted(), "postgres://app@db.example:6543/orders");
        assert!(!format!("{db:?}").contains("hunter2"));
    }

    #[test]
    fn database_defaults_to_the_user_name() {
        let db = Database::from_url("postgres://app@localhost").unwrap();
        assert_eq!(db.name(), "app");
        assert_eq!(db.redacted(), "postgres://app@localhost:5432/app");
    }

    #[test]
    fn a_bad_url_is_rejected_without_echoing_it() {
        for url in [
            "postgres://app:hunter2@host:notaport/db",
            "postgres://app:hunter2@/db?sslmode=bogus",
        ] {
            let err = Database::from_url(url).unwrap_err();
            assert!(matches!(err, Error::InvalidUrl { .. }), "{url}: {err}");
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
    }
}
