//! The migration lock: a session-level advisory lock on the run's own
//! connection, so it dies with the backend that runs the migrations.
//!
//! Waiting runners poll `pg_try_advisory_lock` outside any transaction. A
//! runner blocked in `pg_advisory_lock` would hold a snapshot, and `CREATE
//! INDEX CONCURRENTLY` on the holder waits for every older snapshot to go:
//! the two would wait on each other forever.

use std::fmt;
use std::time::{Duration, Instant};

use super::connection::{Session, database_error};
use super::error::{Error, Result};

/// Who holds the lock, as PostgreSQL sees them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LockHolder {
    pub pid: i32,
    pub application_name: String,
    /// When the holder's connection started.
    pub since: Option<jiff::Timestamp>,
}

impl fmt::Display for LockHolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "held by pid {}", self.pid)?;
        if !self.application_name.is_empty() {
            write!(f, " ({})", self.application_name)?;
        }
        if let Some(since) = self.since {
            write!(
                f,
                ", connected since {}",
                since.strftime("%Y-%m-%d %H:%M:%S UTC")
            )?;
        }
        Ok(())
    }
}

/// Waits for the lock, calling `on_wait` whenever the holder changes.
/// Returns the session's backend pid, asked for in the same query, so that
/// the sessions a migration waits on can be looked up without a round trip.
pub async fn acquire(
    session: &Session,
    key: i64,
    poll: Duration,
    max_wait: Option<Duration>,
    mut on_wait: impl FnMut(Option<&LockHolder>),
) -> Result<i32> {
    // Set on the first poll: from then on the server notices within a second
    // when this runner dies mid-statement, and rolls back and frees the lock
    // instead of running to the end for nobody. PostgreSQL 14 added it.
    let try_lock = format!(
        "SELECT pg_try_advisory_lock({key}), \
         CASE WHEN current_setting('server_version_num')::int >= 140000 \
         THEN set_config('client_connection_check_interval', '1000', false) END, \
         pg_backend_pid()"
    );
    let started = Instant::now();
    let mut last_holder: Option<Option<LockHolder>> = None;
    loop {
        let rows = session
            .client
            .simple_query(&try_lock)
            .await
            .map_err(|e| database_error("taking the migration lock", &e))?;
        if first_value(&rows).as_deref() == Some("t") {
            return Ok(backend_pid(&rows));
        }
        let holder = holder(session, key).await?;
        if last_holder.as_ref() != Some(&holder) {
            on_wait(holder.as_ref());
            last_holder = Some(holder.clone());
        }
        if let Some(max) = max_wait
            && started.elapsed() >= max
        {
            return Err(Error::LockWaitTimeout {
                waited: started.elapsed(),
                holder: holder.map(|h| h.to_string()),
            });
        }
        tokio::time::sleep(poll).await;
    }
}

pub async fn release(session: &Session, key: i64) -> Result<()> {
    session
        .execute(
            &format!("SELECT pg_advisory_unlock({key})"),
            "releasing the migration lock",
        )
        .await
}

/// The session holding the lock, if any still does.
pub async fn holder(session: &Session, key: i64) -> Result<Option<LockHolder>> {
    // A bigint key is stored as two oids: the high and low 32 bits.
    let (high, low) = ((key as u64) >> 32, (key as u64) & 0xffff_ffff);
    let sql = format!(
        "SELECT a.pid, coalesce(a.application_name, ''), (extract(epoch FROM a.backend_start) * 1000000)::bigint \
         FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
         WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 \
         AND l.classid::bigint = {high} AND l.objid::bigint = {low} \
         AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
         LIMIT 1"
    );
    let rows = session
        .client
        .simple_query(&sql)
        .await
        .map_err(|e| database_error("looking up the lock holder", &e))?;
    Ok(rows.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(row) => Some(LockHolder {
            pid: row.get(0)?.parse().ok()?,
            application_name: row.get(1).unwrap_or("").to_string(),
            since: row
                .get(2)
                .and_then(|s| s.parse().ok())
                .and_then(|us| jiff::Timestamp::from_microsecond(us).ok()),
        }),
        _ => None,
    }))
}

fn first_value(messages: &[tokio_postgres::SimpleQueryMessage]) -> Option<String> {
    messages.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
        _ => None,
    })
}

fn backend_pid(messages: &[tokio_postgres::SimpleQueryMessage]) -> i32 {
    messages
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(2)?.parse().ok(),
            _ => None,
        })
        .unwrap_or(0)
}
