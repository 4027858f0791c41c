//! Who keeps a migration from its table locks. PostgreSQL gives up the wait
//! the moment `lock_timeout` strikes, and with it the answer, so the sessions
//! in the way are looked up from a second connection while the migration
//! still waits. A migration that gets its locks in time never opens it.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use tokio_postgres::SimpleQueryMessage;

use super::connection::{Database, Session, SessionSettings};

/// A session holding a lock that a migration waited for.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Blocker {
    pub pid: i32,
    pub application_name: String,
    /// `active`, `idle in transaction`, ...
    pub state: String,
    /// When its current (or, if idle, last) query started.
    pub query_start: Option<jiff::Timestamp>,
}

impl fmt::Display for Blocker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pid {}", self.pid)?;
        if !self.application_name.is_empty() {
            write!(f, " ({})", self.application_name)?;
        }
        if !self.state.is_empty() {
            write!(f, ", {}", self.state)?;
        }
        if let Some(start) = self.query_start {
            write!(
                f,
                ", query started {}",
                start.strftime("%Y-%m-%d %H:%M:%S UTC")
            )?;
        }
        Ok(())
    }
}

/// Watches one migration session's lock waits; keeps the last blockers seen.
pub struct Watch<'a> {
    database: &'a Database,
    settings: SessionSettings,
    /// The backend pid of the migration session.
    pid: i32,
    watcher: Option<Session>,
    pub last_seen: Vec<Blocker>,
}

impl<'a> Watch<'a> {
    pub fn new(database: &'a Database, settings: &SessionSettings, pid: i32) -> Self {
        let settings = SessionSettings {
            application_name: format!("{} (lock watch)", settings.application_name),
            ..settings.clone()
        };
        Watch {
            database,
            settings,
            pid,
            watcher: None,
            last_seen: Vec::new(),
        }
    }

    /// Awaits `attempt`. If it has not finished after `patience`, asks who
    /// blocks it while it goes on waiting; the question may take at most
    /// `bound`, so a slow or unreachable server cannot hold up the attempt's
    /// result for longer than that.
    pub async fn wait<F: Future>(
        &mut self,
        attempt: F,
        patience: Duration,
        bound: Duration,
    ) -> F::Output {
        let mut attempt = std::pin::pin!(attempt);
        tokio::select! {
            out = &mut attempt => return out,
            () = tokio::time::sleep(patience) => {}
        }
        let (out, _) = tokio::join!(&mut attempt, tokio::time::timeout(bound, self.look()));
        out
    }

    /// Best effort: the lock timeout is reported either way.
    async fn look(&mut self) {
        if self.watcher.is_none() {
            self.watcher = self.database.connect(&self.settings).await.ok();
        }
        let Some(watcher) = &self.watcher else {
            return;
        };
        match blockers(watcher, self.pid).await {
            Ok(found) if !found.is_empty() => self.last_seen = found,
            Ok(_) => {}
            Err(_) => self.watcher = None,
        }
    }
}

/// The sessions `pid` waits for, by pid.
async fn blockers(watcher: &Session, pid: i32) -> Result<Vec<Blocker>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT pid, coalesce(application_name, ''), coalesce(state, ''), \
         (extract(epoch FROM query_start) * 1000000)::bigint \
         FROM pg_stat_activity WHERE pid = ANY (pg_blocking_pids({pid})) ORDER BY pid"
    );
    let rows = watcher.client.simple_query(&sql).await?;
    Ok(rows
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(Blocker {
                pid: row.get(0)?.parse().ok()?,
                application_name: row.get(1).unwrap_or("").to_string(),
                state: row.get(2).unwrap_or("").to_string(),
                query_start: row
                    .get(3)
                    .and_then(|s| s.parse().ok())
                    .and_then(|us| jiff::Timestamp::from_microsecond(us).ok()),
            }),
            _ => None,
        })
        .collect())
}
