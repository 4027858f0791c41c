//! Connecting to PostgreSQL: the URL, the session settings every migration
//! session runs with, and errors that never show a password.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_postgres::config::Host;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config};

use super::error::{Error, Failure, Result};
use super::redact;
use super::tls::{GIVEN_ROOTS, OpenError, Tls, TlsMode, TlsParams, TlsSettings};
use super::watchdog::Liveness;

/// A database to connect to, parsed from a URL or built field by field.
/// Cheap to clone: the TLS configuration is shared.
#[derive(Clone)]
pub struct Database {
    config: Config,
    tls: Tls,
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
    /// How a run notices a server that stopped answering while it holds
    /// the migration lock; `None` turns the checks off.
    pub liveness: Option<Liveness>,
}

impl Default for SessionSettings {
    fn default() -> Self {
        SessionSettings {
            // Measured with benches/locks.rs: the application's queries
            // queue behind a waiting ALTER for at most this long per attempt.
            lock_timeout: Duration::from_millis(200),
            statement_timeout: None,
            application_name: "schemaop".into(),
            connect_timeout: Duration::from_secs(10),
            liveness: Some(Liveness::default()),
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
    /// Parses a `postgres://`, `postgresql://` or SQLAlchemy
    /// `postgresql+DRIVER://` URL or a `key=value` connection string, with
    /// libpq's `sslmode` (all five) and `sslrootcert`, whose file it reads.
    /// The error never repeats the input, which may hold a password.
    pub fn from_url(url: &str) -> Result<Self> {
        let url = super::database_url::normalize(url)?;
        // tokio-postgres's parser refuses verify-ca, verify-full and
        // sslrootcert: take them out and handle them here.
        let params = TlsParams::strip(&url);
        let config: Config =
            params
                .rest
                .parse()
                .map_err(|e: tokio_postgres::Error| Error::InvalidUrl {
                    reason: redact_parse_error(&e.to_string()),
                })?;
        if config.get_hosts().is_empty() {
            return Err(no_host());
        }
        let tls = Tls::new(&params.settings()?, &params.root_origin())?;
        Ok(Database { config, tls })
    }

    /// A database given field by field, as a custom resource gives it. A
    /// `host` starting with `/` is the directory of a Unix socket.
    pub fn from_parts(
        host: &str,
        port: u16,
        dbname: &str,
        user: &str,
        password: Option<&str>,
        tls: TlsSettings,
    ) -> Result<Self> {
        if host.is_empty() {
            return Err(no_host());
        }
        let mut config = Config::new();
        config.host(host).port(port).dbname(dbname).user(user);
        if let Some(password) = password {
            config.password(password);
        }
        Ok(Database {
            config,
            tls: Tls::new(&tls, GIVEN_ROOTS)?,
        })
    }

    /// Only tokio-postgres's own modes (disable, prefer, require) can be set
    /// on a `Config`; use `with_tls` for the others.
    pub fn from_config(config: Config) -> Self {
        let tls = Tls::for_driver_mode(config.get_ssl_mode());
        Database { config, tls }
    }

    /// The same database with other TLS settings. Fails if the root
    /// certificates are not PEM certificates.
    pub fn with_tls(self, tls: TlsSettings) -> Result<Self> {
        Ok(Database {
            tls: Tls::new(&tls, GIVEN_ROOTS)?,
            config: self.config,
        })
    }

    /// The same database and mode, checking the server's certificate against
    /// these PEM root certificates: for a URL whose CA comes from elsewhere,
    /// such as a Secret.
    pub fn with_root_certificates(self, pem: impl Into<Vec<u8>>) -> Result<Self> {
        let tls = TlsSettings::new(self.tls.mode()).with_root_certificates(pem);
        self.with_tls(tls)
    }

    pub fn tls_mode(&self) -> TlsMode {
        self.tls.mode()
    }

    pub fn user(&self) -> &str {
        self.config.get_user().unwrap_or("")
    }

    pub fn has_password(&self) -> bool {
        self.config.get_password().is_some()
    }

    /// `text` with every occurrence of this database's password replaced by
    /// `***`: for text schemaop did not write, such as another program's log.
    pub fn hide_password(&self, text: &str) -> String {
        match self.config.get_password().map(String::from_utf8_lossy) {
            Some(password) if !password.is_empty() => text.replace(password.as_ref(), "***"),
            _ => text.to_string(),
        }
    }

    /// For a password that comes from elsewhere than the URL: libpq's
    /// environment or password file.
    pub(crate) fn set_password(&mut self, password: &str) {
        self.config.password(password);
    }

    /// The first host (a socket directory starts with `/`) and its port.
    pub(crate) fn first_host_port(&self) -> (String, u16) {
        let host = match self.config.get_hosts().first() {
            Some(Host::Tcp(name)) => name.clone(),
            Some(Host::Unix(path)) => path.display().to_string(),
            None => String::new(),
        };
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        (host, port)
    }

    /// The database name, which defaults to the user name as in libpq.
    pub fn name(&self) -> &str {
        self.config.get_dbname().unwrap_or_else(|| self.user())
    }

    /// `postgres://user@host:port/database`, with `?sslmode=` when it is not
    /// the default, safe to print.
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
        let mode = match self.tls.mode() {
            TlsMode::Prefer => String::new(),
            mode => format!("?sslmode={mode}"),
        };
        format!(
            "postgres://{}@{}/{}{mode}",
            self.user(),
            hosts.join(","),
            self.name()
        )
    }

    /// Opens one dedicated connection with the migration session settings.
    pub async fn connect(&self, settings: &SessionSettings) -> Result<Session> {
        let (client, driver) = self
            .tls
            .open(self.session_config(settings))
            .await
            .map_err(|e| self.connect_error(e))?;
        Ok(Session { client, driver })
    }

    fn session_config(&self, settings: &SessionSettings) -> Config {
        let mut config = self.config.clone();
        let mut options = config.get_options().map(str::to_string).unwrap_or_default();
        // Startup options cost no round trip, unlike SET.
        options.push_str(&format!(
            " -c lock_timeout={} -c statement_timeout={} -c standard_conforming_strings=on",
            settings.lock_timeout.as_millis(),
            settings.statement_timeout.map_or(0, |t| t.as_millis()),
        ));
        if let Some(liveness) = &settings.liveness {
            options.push_str(&liveness.startup_options());
        }
        config.options(options.trim());
        if config.get_application_name().is_none() {
            config.application_name(truncate(&settings.application_name, 63));
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(settings.connect_timeout);
        }
        if let Some(liveness) = &settings.liveness {
            liveness.apply_to_client(&mut config);
        }
        config
    }

    fn connect_error(&self, error: OpenError) -> Error {
        let target = self.redacted();
        let error = match error {
            OpenError::Tls(reason) => return Error::Unreachable { target, reason },
            OpenError::Driver(error) => error,
        };
        // Each failure gets its own next step: "check the network" is only
        // right where the network is the cause.
        match error.as_db_error() {
            Some(db) if *db.code() == SqlState::INVALID_CATALOG_NAME => Error::DatabaseMissing {
                target,
                database: self.name().to_string(),
            },
            // PostgreSQL says 28000 for a role that does not exist, and for a
            // pg_hba rejection; only the first names the role as missing.
            Some(db)
                if *db.code() == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
                    && db.message().starts_with("role ")
                    && db.message().ends_with("does not exist") =>
            {
                Error::UnknownRole {
                    target,
                    user: self.user().to_string(),
                }
            }
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
            None => {
                let reason = describe_io_error(&error);
                let io_kind =
                    std::iter::successors(std::error::Error::source(&error), |e| e.source())
                        .find_map(|e| e.downcast_ref::<std::io::Error>())
                        .map(std::io::Error::kind);
                if io_kind == Some(std::io::ErrorKind::ConnectionRefused) {
                    Error::ConnectionRefused { target }
                } else if reason.contains("failed to lookup address") {
                    Error::HostNotFound {
                        host: self.host_names(),
                    }
                } else {
                    Error::Unreachable { target, reason }
                }
            }
        }
    }

    /// The TCP host names, for a name that does not resolve.
    fn host_names(&self) -> String {
        let names: Vec<&str> = self
            .config
            .get_hosts()
            .iter()
            .filter_map(|h| match h {
                Host::Tcp(name) => Some(name.as_str()),
                Host::Unix(_) => None,
            })
            .collect();
        names.join(",")
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

/// What PostgreSQL said, string literals hidden, with its position turned into a line and column of
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
    // Redacted here, once, so no printed, stored or audited copy holds them.
    Failure {
        code: db.code().code().to_string(),
        message: redact::literals(db.message()),
        detail: db.detail().map(redact::literals),
        hint: db.hint().map(redact::literals),
        line,
        column,
    }
}

pub fn is_lock_timeout(error: &tokio_postgres::Error) -> bool {
    error.code() == Some(&SqlState::LOCK_NOT_AVAILABLE)
}

/// The driver's text for I/O errors, with the source chain, which holds
/// "connection refused" and the like but never the connection string.
pub(super) fn describe_io_error(error: &tokio_postgres::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn no_host() -> Error {
    Error::InvalidUrl {
        reason: "no host given".into(),
    }
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

    #[test]
    fn libpq_tls_settings_are_read_from_both_forms() {
        for (url, mode) in [
            (
                "postgres://app@db/orders?sslmode=verify-full",
                TlsMode::VerifyFull,
            ),
            (
                "postgres://app@db/orders?sslmode=verify-ca",
                TlsMode::VerifyCa,
            ),
            ("host=db user=app sslmode=verify-full", TlsMode::VerifyFull),
            ("host=db user=app sslmode=disable", TlsMode::Disable),
            ("postgres://app@db/orders", TlsMode::Prefer),
        ] {
            let db = Database::from_url(url).unwrap();
            assert_eq!(db.tls_mode(), mode, "{url}");
        }
    }

    #[test]
    fn redacted_shows_a_mode_that_is_not_the_default() {
        let db =
            Database::from_url("postgres://app:hunter2@db/orders?sslmode=verify-full").unwrap();
        assert_eq!(
            db.redacted(),
            "postgres://app@db:5432/orders?sslmode=verify-full"
        );
        let db = Database::from_url("postgres://app@db/orders?sslmode=prefer").unwrap();
        assert_eq!(db.redacted(), "postgres://app@db:5432/orders");
    }

    #[test]
    fn from_config_keeps_the_drivers_mode() {
        let config: Config = "host=db user=app sslmode=require".parse().unwrap();
        assert_eq!(Database::from_config(config).tls_mode(), TlsMode::Require);
    }

    #[test]
    fn from_parts_builds_the_same_database_as_a_url() {
        let db = Database::from_parts(
            "db.example",
            6543,
            "orders",
            "app",
            Some("hunter2"),
            TlsSettings::new(TlsMode::Require),
        )
        .unwrap();
        assert_eq!(
            db.redacted(),
            "postgres://app@db.example:6543/orders?sslmode=require"
        );
        assert!(!format!("{db:?}").contains("hunter2"));
        let no_host = Database::from_parts("", 5432, "x", "app", None, TlsSettings::default());
        assert!(matches!(no_host, Err(Error::InvalidUrl { .. })));
    }

    #[test]
    fn a_database_and_its_connect_future_can_cross_threads() {
        // The operator connects from spawned tasks.
        fn assert_send_sync<T: Send + Sync>(_: &T) {}
        fn assert_send<T: Send>(_: &T) {}
        let db = Database::from_url("postgres://app@db/orders?sslmode=verify-full").unwrap();
        assert_send_sync(&db);
        let settings = SessionSettings::default();
        assert_send(&db.connect(&settings));
    }

    #[test]
    fn root_certificates_keep_the_mode_and_must_be_pem() {
        let db =
            Database::from_url("postgres://app:hunter2@db/orders?sslmode=verify-full").unwrap();
        let err = db.with_root_certificates(&b"hunter2"[..]).unwrap_err();
        assert!(matches!(err, Error::InvalidTls { .. }), "{err}");
        assert!(err.to_string().contains("PEM"), "{err}");
    }
}
