//! `schemaop exec`: another tool's migration command (Alembic, Flyway,
//! golang-migrate, ...) run under schemaop's migration lock, and audited.
//!
//! The lock is the one `upgrade` takes, on the same key, so a wrapped
//! `alembic upgrade head` and a schemaop run never overlap, and eight
//! replicas starting at once run it one after the other. It is a
//! session-level advisory lock on schemaop's own connection, kept alive by
//! the engine's watchdog while the child runs: if schemaop dies, the server
//! frees it with the session, and the kernel sends the child SIGTERM.
//!
//! The child gets stdin, stdout, stderr and the environment untouched
//! (`DATABASE_URL` as the app wrote it, `+asyncpg` and all); schemaop speaks
//! only on stderr, and exits with the child's exit code.

use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use clap::Args;
use tokio::process::{Child, Command};
use tokio::signal::unix::{SignalKind, signal};

use super::tools::ToolArgs;
use super::{CliError, GlobalArgs, exit};
use crate::adapters::{self, Tool, ToolState, VersionTable, alembic};
use crate::engine::connection::Session;
use crate::engine::history::ExecAuditEntry;
use crate::engine::{Error, MigrationSource, Migrator, lock, redact, watchdog};

pub const EXEC_AFTER_HELP: &str = "\
Exit codes of exec: the command's own exit code (128+N when a signal N ended it); or, when
the command did not run,
  2    the command line was wrong, or no database was given
  5    the database could not be reached, or refused the credentials (also when it stopped
       answering while the command ran: the command is then asked to stop with SIGTERM)
  6    another runner held the migration lock for longer than --lock-wait-timeout
  126  the command could not be started (not executable)
  127  the command was not found
Every run is recorded in the audit log, with the command line (passwords hidden), the
tool's revision before and after, its duration and exit code.";

/// Runs a migration command under the migration lock.
#[derive(Debug, Args)]
#[command(after_help = EXEC_AFTER_HELP)]
pub struct ExecArgs {
    #[command(flatten)]
    pub tool: ToolArgs,

    /// The command and its arguments, after `--`: `-- alembic upgrade head`.
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    pub command: Vec<String>,
}

/// Exit codes for a command that could not be started, as shells use them.
pub const NOT_EXECUTABLE: u8 = 126;
pub const NOT_FOUND: u8 = 127;

/// How long `alembic history` may take to print the revision graph.
const HISTORY_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `schemaop exec`; returns the exit code.
pub async fn run(args: &ExecArgs, global: &GlobalArgs) -> Result<u8, CliError> {
    let tool = args.tool.tool.unwrap_or(Tool::None);
    let table = args.tool.table();
    let command_line = redact::command_line(&args.command);
    let source = MigrationSource::default();
    let migrator = Migrator::new(&source, super::database(global)?, super::options(global));
    let session = migrator.connect().await?;
    let settings = &migrator.options().session;
    let key = migrator.lock_key();

    // Take the lock, make sure the audit log can take the entry, and see
    // where the tool is, before anything runs.
    let before = watchdog::guard(migrator.database(), &session, settings, async {
        lock::acquire(
            &session,
            key,
            migrator.options().lock_poll_interval,
            migrator.options().lock_wait_timeout,
            |holder| {
                let who = holder.map_or_else(|| "another runner".into(), |h| h.to_string());
                eprintln!("schemaop: waiting for the migration lock ({who})");
            },
        )
        .await?;
        migrator.ensure_tables(&session).await?;
        adapters::read(&session.client, tool, table.as_ref()).await
    })
    .await?;
    if let Some(problem) = &before.needs_a_person {
        eprintln!("schemaop: before the command: {problem}");
    }

    // Forwarding is set up before the child exists: a SIGTERM between the
    // two must not end schemaop and leave the child running unlocked.
    let mut signals = match Signals::new() {
        Ok(signals) => signals,
        Err(error) => {
            eprintln!(
                "error: cannot listen for SIGTERM and SIGINT to pass them on: {error}; the \
                 command was not started"
            );
            return Ok(exit::FAILED);
        }
    };
    let started = Instant::now();
    let mut command = Command::new(&args.command[0]);
    command
        .args(&args.command[1..])
        .stdin(Stdio::inherit())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit());
    stop_with_parent(&mut command);
    let spawned = command.spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(error) => {
            let code = match error.kind() {
                std::io::ErrorKind::NotFound => NOT_FOUND,
                _ => NOT_EXECUTABLE,
            };
            let detail = format!(
                "could not start {:?}: {error}; check that it is installed and on PATH",
                redact::secrets_in(&args.command[0])
            );
            eprintln!("schemaop: {detail}");
            let entry = Audit {
                tool,
                command: &command_line,
                duration: started.elapsed(),
                exit_code: None,
                succeeded: false,
                detail: &detail,
                before: &before,
                after: &before,
            };
            entry.write(&migrator, &session).await;
            let _ = lock::release(&session, key).await;
            return Ok(code);
        }
    };

    let waited = watchdog::guard(migrator.database(), &session, settings, async {
        Ok(signals.wait_forwarding(&mut child).await)
    })
    .await;
    let status = match waited {
        Ok(status) => status,
        Err(error) => return Err(lost_lock(&mut child, &mut signals, error).await),
    };
    let duration = started.elapsed();
    let (exit_code, detail) = describe(status);

    let after = match adapters::read(&session.client, tool, table.as_ref()).await {
        Ok(after) => after,
        Err(error) => {
            eprintln!("schemaop: cannot read {tool}'s version table after the command: {error}");
            before.clone()
        }
    };
    if exit_code == 0
        && tool == Tool::Alembic
        && let Some(table) = &table
    {
        learn_alembic_graph(&args.command, &migrator, &session, table).await;
    }
    let entry = Audit {
        tool,
        command: &command_line,
        duration,
        exit_code: Some(exit_code),
        succeeded: exit_code == 0,
        detail: &detail,
        before: &before,
        after: &after,
    };
    entry.write(&migrator, &session).await;
    if let Err(error) = lock::release(&session, key).await {
        // Closing the session frees it all the same.
        tracing::debug!(%error, "releasing the migration lock");
    }
    tracing::info!(
        tool = %tool,
        exit_code,
        duration_ms = duration.as_millis() as u64,
        "exec finished"
    );
    // Exit codes above 255 do not exist on Unix; 128+N stays below.
    Ok(u8::try_from(exit_code).unwrap_or(exit::FAILED))
}

/// The child's exit code, 128+N for a signal N, and the same in words.
fn describe(status: ExitStatus) -> (i32, String) {
    match (status.code(), status.signal()) {
        (Some(code), _) => (code, format!("exited with {code}")),
        (None, Some(signal)) => (128 + signal, format!("killed by signal {signal}")),
        (None, None) => (i32::from(exit::FAILED), "ended without an exit code".into()),
    }
}

/// The server stopped answering while the child ran: the lock cannot be
/// vouched for, so the child is asked to stop (it talks to the same server,
/// and another runner may take the lock), and schemaop says why.
async fn lost_lock(child: &mut Child, signals: &mut Signals, error: Error) -> CliError {
    eprintln!("schemaop: {error}; asking the command to stop with SIGTERM");
    signals.send(child, libc::SIGTERM);
    let _ = signals.wait_forwarding(child).await;
    CliError::Engine(error)
}

/// One exec's audit entry, written best effort: the command has run by
/// then, and its exit code is what the caller needs.
struct Audit<'a> {
    tool: Tool,
    command: &'a str,
    /// How long the command ran.
    duration: Duration,
    exit_code: Option<i32>,
    succeeded: bool,
    detail: &'a str,
    before: &'a ToolState,
    after: &'a ToolState,
}

impl Audit<'_> {
    async fn write(&self, migrator: &Migrator<'_>, session: &Session) {
        let revision = |state: &ToolState| (state.tool != Tool::None).then(|| state.current_text());
        let (before, after) = (revision(self.before), revision(self.after));
        let actor = &migrator.options().actor;
        let sql = migrator
            .options()
            .history
            .insert_exec_audit(&ExecAuditEntry {
                actor,
                tool: self.tool.name(),
                command: self.command,
                duration_ms: self.duration.as_millis() as i64,
                succeeded: self.succeeded,
                exit_code: self.exit_code,
                revision_before: before.as_deref(),
                revision_after: after.as_deref(),
                detail: self.detail,
            });
        if let Err(error) = session.execute(&sql, "writing the audit entry").await {
            eprintln!(
                "schemaop: the command {} but its audit entry could not be written: {error}",
                self.detail
            );
        }
    }
}

/// Asks Alembic for its revision graph, run as the child ran it (same
/// program, options, working directory and environment), and keeps it for
/// `wait --tool alembic`. Best effort: without it, `wait` accepts only a
/// current head, and says so.
async fn learn_alembic_graph(
    command: &[String],
    migrator: &Migrator<'_>,
    session: &Session,
    table: &VersionTable,
) {
    let unknown = |why: String| {
        eprintln!(
            "schemaop: cannot learn Alembic's revision graph ({why}); `schemaop wait --tool \
             alembic` will accept only a current head"
        );
    };
    let Some(history) = alembic::history_command(command) else {
        return unknown("the command does not run `alembic` or `python -m alembic` by name".into());
    };
    let output = Command::new(&history[0])
        .args(&history[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let shown = redact::command_line(&history);
    let output = match tokio::time::timeout(HISTORY_TIMEOUT, output).await {
        Ok(Ok(output)) if output.status.success() => output,
        Ok(Ok(output)) => {
            return unknown(format!("`{shown}` {}", describe(output.status).1));
        }
        Ok(Err(error)) => return unknown(format!("`{shown}` could not start: {error}")),
        Err(_) => return unknown(format!("`{shown}` took longer than {HISTORY_TIMEOUT:?}")),
    };
    let graph = match alembic::parse_history(&String::from_utf8_lossy(&output.stdout)) {
        Ok(graph) => graph,
        Err(why) => return unknown(format!("`{shown}`: {why}")),
    };
    let store = alembic::GraphTable::new(&migrator.options().history)
        .store_script(&table.to_string(), &graph);
    if let Err(error) = session
        .execute(&store, "storing Alembic's revision graph")
        .await
    {
        let _ = session.client.batch_execute("ROLLBACK").await;
        unknown(error.to_string());
    }
}

/// SIGTERM and SIGINT, caught so they reach the child.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Waits for the child, passing SIGTERM and SIGINT on to it.
    async fn wait_forwarding(&mut self, child: &mut Child) -> ExitStatus {
        loop {
            tokio::select! {
                status = child.wait() => {
                    // A child that cannot be waited for is gone: report a failure.
                    return status.unwrap_or_else(|_| ExitStatus::from_raw(i32::from(exit::FAILED) << 8));
                }
                Some(()) = self.term.recv() => self.send(child, libc::SIGTERM),
                Some(()) = self.int.recv() => {
                    // Ctrl-C at a terminal reaches every process of the
                    // foreground group, the child included: a second SIGINT
                    // would interrupt its own clean-up.
                    if !in_terminal_foreground() {
                        self.send(child, libc::SIGINT);
                    }
                }
            }
        }
    }

    fn send(&self, child: &Child, signal: i32) {
        let Some(pid) = child.id().and_then(|pid| i32::try_from(pid).ok()) else {
            return; // already reaped
        };
        // SAFETY: kill(2) with a pid of our own child; no memory is shared.
        unsafe {
            libc::kill(pid, signal);
        }
    }
}

/// A schemaop that is killed (SIGKILL, the OOM killer) loses its session,
/// and with it the lock: the command must not go on unlocked. On Linux the
/// kernel sends it SIGTERM when schemaop dies (`PR_SET_PDEATHSIG`), as it
/// would get from a stopping container. exec runs on a one-thread runtime,
/// so the thread that spawns the command lives as long as schemaop.
fn stop_with_parent(command: &mut Command) {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: getpid before the fork; prctl, getppid and raise are
        // async-signal-safe, as the code between fork and exec must be.
        let parent = unsafe { libc::getpid() };
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // schemaop died before the line above: nobody will send it.
                if libc::getppid() != parent {
                    libc::raise(libc::SIGTERM);
                }
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = command;
}

/// Whether schemaop is in the foreground process group of the terminal on
/// its stdin, where the terminal itself sends SIGINT to the whole group.
fn in_terminal_foreground() -> bool {
    // SAFETY: plain calls on a file descriptor and the process's own group.
    unsafe {
        libc::isatty(libc::STDIN_FILENO) == 1
            && libc::tcgetpgrp(libc::STDIN_FILENO) == libc::getpgrp()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signal_becomes_128_plus_its_number() {
        assert_eq!(
            describe(ExitStatus::from_raw(3 << 8)),
            (3, "exited with 3".into())
        );
        assert_eq!(
            describe(ExitStatus::from_raw(libc::SIGKILL)),
            (128 + 9, "killed by signal 9".into())
        );
    }
}
