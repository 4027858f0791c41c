//! Noticing that the server stopped answering while a run holds the
//! migration lock, so that neither the runner nor the lock waits for ever.
//!
//! TCP alone is not enough: a frozen proxy, or one that reads and discards,
//! still acknowledges every packet, so keepalives on either side never fire
//! and a query simply never gets its reply. Three parts cover it:
//!
//! - the server ends a held session that sits idle (in or out of a
//!   transaction) for [`Liveness::server_idle_timeout`], rolling back what was
//!   open and freeing the lock;
//! - a healthy runner is never idle that long: while its session is idle the
//!   watchdog sends it a `SELECT 1` heartbeat;
//! - a second, light connection asks every [`Liveness::check_interval`]
//!   whether the server answers and what the held session is doing. No
//!   answer within [`Liveness::reply_timeout`], or a heartbeat left
//!   unanswered while the server says the session is idle, stops the run
//!   with a retryable error. A session the server shows as `active` is
//!   working, however long it takes: a long migration is never cut short.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use tokio_postgres::{Config, SimpleQueryMessage};

use super::connection::{Database, Session, SessionSettings, database_error};
use super::error::{Error, Result};

/// How quickly a run gives up on a server that stopped answering, and how
/// quickly the server frees the lock of such a run. With the defaults both
/// happen within about half a minute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Liveness {
    /// How often the second connection checks the server and the held
    /// session. 5s by default.
    pub check_interval: Duration,
    /// How long a check or a heartbeat may go unanswered before the run
    /// stops as unreachable; also the TCP user timeout on both sides. 20s by
    /// default.
    pub reply_timeout: Duration,
    /// How long the server keeps a held session that sits idle before it
    /// ends it (`idle_session_timeout`, PostgreSQL 14 and later, and
    /// `idle_in_transaction_session_timeout`). 30s by default; keep it above
    /// `check_interval`, which bounds how long a healthy run stays idle.
    pub server_idle_timeout: Duration,
}

impl Default for Liveness {
    fn default() -> Self {
        Liveness {
            check_interval: Duration::from_secs(5),
            reply_timeout: Duration::from_secs(20),
            server_idle_timeout: Duration::from_secs(30),
        }
    }
}

impl Liveness {
    /// TCP keepalives on our side: the first probe after half the reply
    /// timeout of silence, then one every check interval, three in all; and
    /// sent data unacknowledged for the reply timeout ends the connection.
    /// They catch a path that drops packets; a URL's own values are kept
    /// when they are stricter.
    pub(super) fn apply_to_client(&self, config: &mut Config) {
        if !config.get_keepalives() {
            return;
        }
        config
            .keepalives_idle(config.get_keepalives_idle().min(self.keepalive_idle()))
            .keepalives_interval(self.keepalive_interval())
            .keepalives_retries(KEEPALIVE_RETRIES);
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(self.reply_timeout);
        }
    }

    /// The same keepalives on the server's side, as startup options: every
    /// supported version knows them, and they cost no round trip.
    pub(super) fn startup_options(&self) -> String {
        format!(
            " -c tcp_keepalives_idle={} -c tcp_keepalives_interval={} -c tcp_keepalives_count={KEEPALIVE_RETRIES}",
            self.keepalive_idle().as_secs(),
            self.keepalive_interval().as_secs(),
        )
    }

    fn keepalive_idle(&self) -> Duration {
        (self.reply_timeout / 2).max(Duration::from_secs(1))
    }

    fn keepalive_interval(&self) -> Duration {
        self.check_interval.max(Duration::from_secs(1))
    }

    /// Settings for the server's side of a held session, in one query that
    /// also returns the session's pid. `set_config` rather than startup
    /// options: a setting an older server does not know would refuse the
    /// connection.
    fn server_settings_sql(&self) -> String {
        let idle = self.server_idle_timeout.as_millis().max(1);
        let user = self.reply_timeout.as_millis().max(1);
        format!(
            "SELECT pg_backend_pid(), \
             set_config('idle_in_transaction_session_timeout', '{idle}', false), \
             CASE WHEN current_setting('server_version_num')::int >= 120000 \
             THEN set_config('tcp_user_timeout', '{user}', false) END, \
             CASE WHEN current_setting('server_version_num')::int >= 140000 \
             THEN set_config('idle_session_timeout', '{idle}', false) END"
        )
    }
}

/// Watches one held session; see the module documentation.
pub struct Watchdog {
    database: Database,
    settings: SessionSettings,
    liveness: Liveness,
    /// The held session's backend.
    pid: i32,
    /// The second connection; opened at the first check, reopened if it breaks.
    probe: Option<Session>,
}

const KEEPALIVE_RETRIES: u32 = 3;

type Heartbeat<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// What a check saw of the held session.
enum Seen {
    /// The server answered and the session is working on a statement.
    Active,
    /// The server answered and the session has waited for its client this long.
    Waiting(Duration),
    /// The session no longer exists: its lock is gone with it.
    Gone,
}

/// Runs `work`, which holds (or waits for) the migration lock on `session`,
/// and stops it with a retryable error as soon as the server stops
/// answering; the caller then drops the session, whose socket may still
/// hold a half-sent query. Without [`SessionSettings::liveness`] it only
/// runs `work`.
pub async fn guard<T>(
    database: &Database,
    session: &Session,
    settings: &SessionSettings,
    work: impl Future<Output = Result<T>>,
) -> Result<T> {
    let Some(mut watchdog) = Watchdog::start(database, session, settings).await? else {
        return work.await;
    };
    tokio::select! {
        result = work => result,
        error = watchdog.watch(session) => Err(error),
    }
}

impl Watchdog {
    /// Sets the server's side of `session`. The second connection opens at
    /// the first check: a run shorter than the check interval never pays
    /// for it. `None` when `settings` turn the watchdog off.
    async fn start(
        database: &Database,
        session: &Session,
        settings: &SessionSettings,
    ) -> Result<Option<Watchdog>> {
        let Some(liveness) = settings.liveness.clone() else {
            return Ok(None);
        };
        let mut probe_settings = settings.clone();
        probe_settings.application_name = format!("{} liveness", settings.application_name);
        let setup = liveness.server_settings_sql();
        let rows = tokio::time::timeout(
            liveness.reply_timeout,
            session.client.simple_query(&setup),
        )
        .await
        .map_err(|_| Error::Unreachable {
            target: database.redacted(),
            reason: format!(
                "the server did not answer within {:?}, before the migration lock was taken",
                liveness.reply_timeout
            ),
        })?
        .map_err(|e| database_error("setting the session's timeouts", &e))?;
        let pid = first_row(&rows)
            .and_then(|row| row.first().cloned().flatten())
            .and_then(|pid| pid.parse().ok())
            .ok_or_else(|| Error::ConnectionLost {
                reason: "the server did not say which backend runs the session".into(),
            })?;
        Ok(Some(Watchdog {
            database: database.clone(),
            settings: probe_settings,
            liveness,
            pid,
            probe: None,
        }))
    }

    /// Returns only when the run must stop.
    async fn watch(&mut self, session: &Session) -> Error {
        let liveness = self.liveness.clone();
        let mut heartbeat: Option<(Instant, Heartbeat<'_>)> = None;
        loop {
            // Waits out the interval while taking in the heartbeat's reply.
            let pause = tokio::time::sleep(liveness.check_interval);
            tokio::pin!(pause);
            loop {
                match heartbeat.as_mut() {
                    Some((_, beat)) => tokio::select! {
                        _ = &mut pause => break,
                        _ = beat.as_mut() => heartbeat = None,
                    },
                    None => {
                        (&mut pause).await;
                        break;
                    }
                }
            }
            let seen = match self.check().await {
                Ok(seen) => seen,
                Err(reason) => return self.lost(reason).await,
            };
            match seen {
                Seen::Active => {}
                Seen::Gone => {
                    return self
                        .lost(format!(
                            "the server ended the migration session (pid {})",
                            self.pid
                        ))
                        .await;
                }
                Seen::Waiting(idle) => match &heartbeat {
                    // A heartbeat waits behind nothing once the session
                    // idles: its reply went missing on the way.
                    Some((sent, _))
                        if sent.elapsed() >= liveness.reply_timeout
                            && idle >= liveness.reply_timeout =>
                    {
                        return self
                            .lost(format!(
                                "the migration session (pid {}) got no reply from the server for {:?}",
                                self.pid,
                                sent.elapsed()
                            ))
                            .await;
                    }
                    Some(_) => {}
                    None => {
                        let client = &session.client;
                        heartbeat = Some((
                            Instant::now(),
                            Box::pin(async move {
                                // Any reply will do, an error included: in a
                                // failed transaction `SELECT 1` is refused.
                                let _ = client.simple_query("SELECT 1").await;
                            }),
                        ));
                    }
                },
            }
        }
    }

    /// Asks the server, on the second connection, what the held session is
    /// doing. `Err` says why no answer came.
    async fn check(&mut self) -> std::result::Result<Seen, String> {
        let timeout = self.liveness.reply_timeout;
        let sql = format!(
            "SELECT state = 'active', extract(epoch FROM clock_timestamp() - state_change) \
             FROM pg_stat_activity WHERE pid = {}",
            self.pid
        );
        let asked = async {
            if self.probe.is_none() {
                let opened = self.database.connect(&self.settings).await;
                self.probe = Some(opened.map_err(|e| match e {
                    // The caller names the database and the next step.
                    Error::Unreachable { reason, .. } => {
                        format!("a second connection to check the server failed: {reason}")
                    }
                    other => other.to_string(),
                })?);
            }
            let probe = self.probe.as_ref().expect("opened above");
            probe
                .client
                .simple_query(&sql)
                .await
                .map_err(|e| database_error("checking the migration session", &e).to_string())
        };
        let answer = tokio::time::timeout(timeout, asked).await;
        let rows = match answer {
            Ok(Ok(rows)) => rows,
            Ok(Err(reason)) => {
                self.probe = None;
                return Err(reason);
            }
            Err(_) => {
                self.probe = None;
                return Err(format!(
                    "the server did not answer a check within {timeout:?}"
                ));
            }
        };
        Ok(match first_row(&rows) {
            None => Seen::Gone,
            Some(row) if row.first().cloned().flatten().as_deref() == Some("t") => Seen::Active,
            Some(row) => Seen::Waiting(
                row.get(1)
                    .cloned()
                    .flatten()
                    .and_then(|s| s.parse::<f64>().ok())
                    .map_or(Duration::ZERO, |s| {
                        Duration::try_from_secs_f64(s).unwrap_or_default()
                    }),
            ),
        })
    }

    /// The error that stops the run. If the second connection still works,
    /// it ends the held session first, so the lock is free at once.
    async fn lost(&mut self, reason: String) -> Error {
        let mut ended = false;
        if let Some(probe) = self.probe.take() {
            let end = format!("SELECT pg_terminate_backend({})", self.pid);
            let answer =
                tokio::time::timeout(self.liveness.reply_timeout, probe.client.simple_query(&end))
                    .await;
            let said = |rows: &[SimpleQueryMessage]| first_row(rows)?.first().cloned().flatten();
            ended = matches!(answer, Ok(Ok(rows)) if said(&rows).as_deref() == Some("t"));
        }
        let cleanup = if ended {
            "it ended its session on the server, which rolled back what was open and freed the \
             migration lock"
                .to_string()
        } else {
            format!(
                "the server rolls back what was open and frees the migration lock within {:?} \
                 of the session's last statement",
                self.liveness.server_idle_timeout
            )
        };
        Error::Unreachable {
            target: self.database.redacted(),
            reason: format!(
                "{reason}, so this run stopped; {cleanup}, and a new run takes over from there"
            ),
        }
    }
}

fn first_row(messages: &[SimpleQueryMessage]) -> Option<Vec<Option<String>>> {
    messages.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(row) => Some(
            (0..row.len())
                .map(|i| row.get(i).map(str::to_string))
                .collect(),
        ),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_settings_fit_every_supported_version() {
        let sql = Liveness::default().server_settings_sql();
        assert!(sql.contains("'idle_in_transaction_session_timeout', '30000'"));
        // Unknown to older servers: only set where they exist.
        assert!(sql.contains(">= 140000 THEN set_config('idle_session_timeout', '30000'"));
        assert!(sql.contains(">= 120000 THEN set_config('tcp_user_timeout', '20000'"));
    }
}
