//! `schemaop exec` wrapping the real Alembic (from the venv scripts/test
//! makes) and plain commands, as child processes against a real
//! PostgreSQL, one throwaway database per test.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Outcome, TestDb};
use schemaop::engine::HistoryTable;
use tokio::process::Command;

/// A guard against hangs, not a measure of speed.
const HANG_GUARD: Duration = Duration::from_secs(180);

/// The fixture app's head revision.
const HEAD: &str = "004_messages_received_index";

/// A password no output or audit row may ever show.
const SECRET: &str = "s3cr3t-EXEC-pw";

// --- the pieces -----------------------------------------------------------

/// The venv with Alembic. scripts/test makes it and exports its path; a run
/// without it fails here, saying how to get it, rather than skipping.
fn alembic_venv() -> PathBuf {
    let venv = std::env::var_os("SCHEMAOP_TEST_ALEMBIC_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/alembic-venv"));
    assert!(
        venv.join("bin/alembic").is_file(),
        "no Alembic at {}: run the tests with ./scripts/test, or make the venv with \
         scripts/alembic-venv and export SCHEMAOP_TEST_ALEMBIC_VENV=<its path>",
        venv.display()
    );
    venv
}

fn fixture_app() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/alembic_app")
}

/// The database's URL as the teams keep it, for SQLAlchemy's asyncpg driver.
fn asyncpg_url(db: &TestDb) -> String {
    let (_, rest) = db.url.split_once("://").expect("a URL");
    format!("postgresql+asyncpg://{rest}")
}

/// A command run in the fixture app, with the venv first on PATH and
/// DATABASE_URL in the asyncpg form, as in the teams' containers.
fn in_app(db: &TestDb, program: &str, args: &[&str]) -> Command {
    let venv = alembic_venv();
    let path = format!(
        "{}:{}",
        venv.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut command = Command::new(program);
    command
        .args(args)
        .current_dir(fixture_app())
        .env("PATH", path)
        .env("DATABASE_URL", asyncpg_url(db))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

fn schemaop(db: &TestDb, args: &[&str]) -> Command {
    in_app(db, env!("CARGO_BIN_EXE_schemaop"), args)
}

async fn run(command: Command) -> Outcome {
    common::outcome_of(command, HANG_GUARD).await
}

/// Runs `n` copies of a command at once.
async fn all_at_once(n: usize, make: impl Fn() -> Command) -> Vec<Outcome> {
    let runs: Vec<_> = (0..n).map(|_| tokio::spawn(run(make()))).collect();
    let mut outcomes = Vec::new();
    for run in runs {
        outcomes.push(run.await.expect("the run's task"));
    }
    outcomes
}

/// Every row of `sql`, its columns joined by `|`.
async fn rows(db: &TestDb, sql: &str) -> Vec<String> {
    let client = db.client().await;
    client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).unwrap_or("NULL"))
                    .collect::<Vec<_>>()
                    .join("|"),
            ),
            _ => None,
        })
        .collect()
}

/// The exec audit entries, oldest first, as
/// `tool|command|outcome|exit_code|before|after|detail`.
async fn exec_audit(db: &TestDb) -> Vec<String> {
    rows(
        db,
        "SELECT tool, command, outcome, exit_code, coalesce(revision_before, '-'), \
         coalesce(revision_after, '-'), detail FROM public.schemaop_migrations_audit \
         WHERE action = 'exec' ORDER BY id",
    )
    .await
}

async fn wait_for_file(path: &Path, limit: Duration) -> String {
    let started = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && text.ends_with('\n')
        {
            return text;
        }
        assert!(
            started.elapsed() < limit,
            "{} did not appear within {limit:?}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn lock_is_held(db: &TestDb) -> bool {
    let key = HistoryTable::default().lock_key(&db.name);
    let (high, low) = ((key as u64) >> 32, (key as u64) & 0xffff_ffff);
    db.scalar(&format!(
        "SELECT EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory' AND granted \
         AND classid::bigint = {high} AND objid::bigint = {low})"
    ))
    .await
    .as_deref()
        == Some("t")
}

/// Whether `pid` runs (a zombie waiting to be reaped has stopped).
fn is_running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let (_, after_name) = stat.rsplit_once(')')?;
            after_name
                .split_whitespace()
                .next()
                .map(|state| state != "Z")
        })
        .unwrap_or(false)
}

fn signal(pid: u32, signal: i32) {
    // SAFETY: kill(2) on a process this test started.
    let sent = unsafe { libc::kill(pid as i32, signal) };
    assert_eq!(sent, 0, "kill({pid}, {signal})");
}

// --- the race schemaop exec removes ----------------------------------------

/// Alembic's own command line, started in `n` processes that first load
/// Python, SQLAlchemy and asyncpg, then wait for `barrier` to exist: the
/// replicas of a Deployment start together, so the test lines them up
/// rather than let Python's start-up spread them out.
const ALEMBIC_AT_THE_BARRIER: &str = r#"
import os, pathlib, sys, time
import alembic.config, asyncpg, sqlalchemy.ext.asyncio
ready, barrier = sys.argv[1], sys.argv[2]
pathlib.Path(ready, str(os.getpid())).touch()
while not os.path.exists(barrier):
    time.sleep(0.002)
alembic.config.main(argv=["upgrade", "head"])
"#;

async fn bare_alembic_at_once(db: &TestDb, n: usize) -> Vec<Outcome> {
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready");
    std::fs::create_dir(&ready).unwrap();
    let barrier = dir.path().join("go");
    let python = alembic_venv().join("bin/python");
    let args = [
        "-c",
        ALEMBIC_AT_THE_BARRIER,
        ready.to_str().unwrap(),
        barrier.to_str().unwrap(),
    ];
    let runs: Vec<_> = (0..n)
        .map(|_| tokio::spawn(run(in_app(db, python.to_str().unwrap(), &args))))
        .collect();
    let started = Instant::now();
    while std::fs::read_dir(&ready).unwrap().count() < n {
        assert!(
            started.elapsed() < HANG_GUARD,
            "the {n} Alembic processes did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    std::fs::write(&barrier, "").unwrap();
    let mut outcomes = Vec::new();
    for run in runs {
        outcomes.push(run.await.expect("the run's task"));
    }
    outcomes
}

/// Without a lock, Alembic's runners race: the reason for `exec`. The race
/// is a matter of timing, so up to three rounds are tried; measured on this
/// 4-revision app, each round crashes several of the 8.
#[tokio::test]
async fn eight_bare_alembic_upgrades_at_once_crash_some_of_them() {
    let mut rounds = Vec::new();
    for _ in 0..3 {
        let db = TestDb::new().await;
        let outcomes = bare_alembic_at_once(&db, 8).await;
        let failed: Vec<&Outcome> = outcomes.iter().filter(|o| o.code != Some(0)).collect();
        let errors: Vec<&str> = failed
            .iter()
            .filter_map(|o| {
                o.stderr.lines().rev().find(|l| {
                    l.starts_with("sqlalchemy.exc.") || l.starts_with("asyncpg.exceptions.")
                })
            })
            .collect();
        eprintln!("bare alembic: {} of 8 failed: {errors:#?}", failed.len());
        assert_eq!(
            errors.len(),
            failed.len(),
            "every crash says why: {failed:#?}"
        );
        rounds.push(failed.len());
        if !failed.is_empty() {
            // What crashed them is the race itself, not a broken app.
            assert!(
                errors.iter().all(|e| e.contains("UniqueViolation")
                    || e.contains("already exists")
                    || e.contains("DuplicateTable")
                    || e.contains("DuplicateObject")
                    || e.contains("deadlock detected")),
                "{errors:#?}"
            );
            return;
        }
    }
    panic!(
        "8 bare `alembic upgrade head` never raced in {rounds:?}: the test no longer shows the problem"
    );
}

// --- exec -------------------------------------------------------------------

#[tokio::test]
async fn eight_execs_at_once_all_succeed_and_run_each_revision_once() {
    let db = TestDb::new().await;
    let outcomes = all_at_once(8, || {
        schemaop(
            &db,
            &[
                "exec", "--tool", "alembic", "--", "alembic", "upgrade", "head",
            ],
        )
    })
    .await;
    for outcome in &outcomes {
        assert_eq!(outcome.code, Some(0), "{outcome:#?}");
    }
    // Alembic logs each revision it runs: four in all, across the eight.
    let ran: Vec<&str> = outcomes
        .iter()
        .flat_map(|o| o.stderr.lines())
        .filter(|l| l.contains("Running upgrade"))
        .collect();
    assert_eq!(ran.len(), 4, "{ran:#?}");
    // The data migration's rows, which a unique index refuses twice.
    assert_eq!(db.count("SELECT count(*) FROM plans").await, 3);
    assert!(
        outcomes.iter().any(|o| o
            .stderr
            .contains("waiting for the migration lock (held by pid")),
        "someone waited and said for whom"
    );

    let current = run(schemaop(&db, &["current", "--tool", "alembic"]))
        .await
        .expect(0);
    assert_eq!(current.stdout.trim(), HEAD);
    let json = run(schemaop(
        &db,
        &["current", "--tool", "alembic", "--output", "json"],
    ))
    .await
    .expect(0);
    let json: serde_json::Value = serde_json::from_str(&json.stdout).expect("JSON");
    assert_eq!(json["current"]["version"], serde_json::json!([HEAD]));
    assert_eq!(json["current"]["tool"], "alembic");
    assert!(json["database"].is_string(), "{json}");

    let audit = exec_audit(&db).await;
    assert_eq!(audit.len(), 8, "{audit:#?}");
    let first = format!("alembic|alembic upgrade head|succeeded|0|base|{HEAD}|exited with 0");
    let rest = format!("alembic|alembic upgrade head|succeeded|0|{HEAD}|{HEAD}|exited with 0");
    assert_eq!(audit[0], first);
    assert!(audit[1..].iter().all(|row| *row == rest), "{audit:#?}");
    assert!(!lock_is_held(&db).await, "the lock is released");
}

#[tokio::test]
async fn a_failing_command_passes_its_exit_code_through_and_is_audited_failed() {
    let db = TestDb::new().await;
    let url = format!("postgres://app:{SECRET}@db.example/app");
    let outcome = run(schemaop(
        &db,
        &[
            "exec",
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 42",
            "sh",
            &url,
        ],
    ))
    .await
    .expect(42);
    // The child's own output passes through untouched.
    assert_eq!(outcome.stdout, "out\n");
    assert!(outcome.stderr.contains("err\n"), "{}", outcome.stderr);
    let audit = exec_audit(&db).await;
    assert_eq!(
        audit,
        [
            "none|sh -c 'echo out; echo err >&2; exit 42' sh postgres://app:***@db.example/app|\
          failed|42|-|-|exited with 42"
        ]
    );
    let everything = rows(
        &db,
        "SELECT a::text FROM public.schemaop_migrations_audit a",
    )
    .await;
    assert!(
        everything.iter().all(|r| !r.contains(SECRET)),
        "{everything:#?}"
    );

    // A failing Alembic is audited with the revision it stopped at.
    let failed = run(schemaop(
        &db,
        &[
            "exec",
            "--tool",
            "alembic",
            "--",
            "alembic",
            "upgrade",
            "no_such_revision",
        ],
    ))
    .await;
    // Alembic exits 255 on its CommandError; schemaop passes that on too.
    assert_eq!(failed.code, Some(255), "{failed:#?}");
    let audit = exec_audit(&db).await;
    assert_eq!(
        audit[1],
        "alembic|alembic upgrade no_such_revision|failed|255|base|base|exited with 255"
    );

    // history --tool shows the tool's runs from the audit log, and only them.
    let history = run(schemaop(&db, &["history", "--tool", "alembic"]))
        .await
        .expect(0);
    let lines: Vec<&str> = history.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", history.stdout);
    assert!(lines[0].starts_with("AT (UTC)"), "{}", history.stdout);
    for needle in [
        "failed",
        "255",
        "base -> base",
        "alembic upgrade no_such_revision",
    ] {
        assert!(lines[1].contains(needle), "{needle}: {}", history.stdout);
    }
    let json = run(schemaop(
        &db,
        &["history", "--tool", "none", "--output", "json"],
    ))
    .await
    .expect(0);
    let json: serde_json::Value = serde_json::from_str(&json.stdout).expect("JSON");
    let runs = json["history"].as_array().expect("the runs");
    assert_eq!(runs.len(), 1, "{json}");
    assert_eq!(runs[0]["exit_code"], 42);
    assert_eq!(runs[0]["outcome"], "failed");
    assert!(!json.to_string().contains(SECRET), "{json}");
    let none_yet = TestDb::new().await;
    let empty = run(schemaop(&none_yet, &["history", "--tool", "flyway"]))
        .await
        .expect(0);
    assert_eq!(
        empty.stdout,
        "no flyway command has run under schemaop exec\n"
    );
}

#[tokio::test]
async fn a_command_that_does_not_exist_exits_127_and_is_audited() {
    let db = TestDb::new().await;
    let outcome = run(schemaop(
        &db,
        &["exec", "--", "no-such-migration-tool", "up"],
    ))
    .await
    .expect(127);
    assert!(
        outcome
            .stderr
            .contains("could not start \"no-such-migration-tool\""),
        "{}",
        outcome.stderr
    );
    let audit = exec_audit(&db).await;
    assert_eq!(audit.len(), 1);
    assert!(
        audit[0].starts_with("none|no-such-migration-tool up|failed|NULL|-|-|could not start"),
        "{audit:#?}"
    );
}

/// Sends `sig` to a running `schemaop exec` and checks that the command got
/// it and that its exit code came back.
async fn signal_reaches_the_command(sig: i32, name: &str) {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready");
    let got = dir.path().join("got");
    let script = format!(
        "trap 'echo {name} > {got}; exit 143' {name}; echo $$ > {ready}; \
         while :; do sleep 0.1; done",
        got = got.display(),
        ready = ready.display()
    );
    let mut exec = schemaop(&db, &["exec", "--", "sh", "-c", &script])
        .spawn()
        .unwrap();
    wait_for_file(&ready, Duration::from_secs(30)).await;
    signal(exec.id().unwrap(), sig);
    let status = tokio::time::timeout(HANG_GUARD, exec.wait())
        .await
        .expect("exec ends after the signal")
        .unwrap();
    assert_eq!(std::fs::read_to_string(&got).unwrap(), format!("{name}\n"));
    assert_eq!(status.code(), Some(143));
    let audit = exec_audit(&db).await;
    assert!(audit[0].contains("|failed|143|"), "{audit:#?}");
}

#[tokio::test]
async fn sigterm_to_schemaop_reaches_the_command() {
    signal_reaches_the_command(libc::SIGTERM, "TERM").await;
}

#[tokio::test]
async fn sigint_to_schemaop_reaches_the_command() {
    // Not from a terminal (stdin is not one here): schemaop passes it on.
    signal_reaches_the_command(libc::SIGINT, "INT").await;
}

#[tokio::test]
async fn a_killed_exec_frees_the_lock_and_a_waiting_one_names_the_holder() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready");
    let script = format!("echo $$ > {}; exec sleep 60", ready.display());
    let mut holder = schemaop(&db, &["exec", "--", "sh", "-c", &script])
        .spawn()
        .unwrap();
    let child_pid: u32 = wait_for_file(&ready, Duration::from_secs(30))
        .await
        .trim()
        .parse()
        .unwrap();
    assert!(lock_is_held(&db).await);

    // Another exec waits, says who holds the lock, and gives up as told.
    let started = Instant::now();
    let waiting = run(schemaop(
        &db,
        &["exec", "--lock-wait-timeout", "1s", "--", "true"],
    ))
    .await
    .expect(6);
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert!(
        waiting
            .stderr
            .contains("waiting for the migration lock (held by pid"),
        "{}",
        waiting.stderr
    );
    assert!(
        exec_audit(&db).await.is_empty(),
        "nothing ran, nothing audited"
    );

    // SIGKILL: schemaop cannot clean up; its session's end frees the lock,
    // and the kernel stops the command, which must not go on unlocked.
    signal(holder.id().unwrap(), libc::SIGKILL);
    holder.wait().await.unwrap();
    let started = Instant::now();
    while is_running(child_pid) {
        if started.elapsed() > Duration::from_secs(10) {
            signal(child_pid, libc::SIGKILL);
            panic!("the command (pid {child_pid}) outlived the killed schemaop");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let next = run(schemaop(
        &db,
        &["exec", "--lock-wait-timeout", "10s", "--", "true"],
    ))
    .await
    .expect(0);
    assert!(!next.stderr.contains("waiting"), "{}", next.stderr);
    assert_eq!(
        exec_audit(&db).await,
        ["none|true|succeeded|0|-|-|exited with 0"]
    );
}

/// The tables as schemaop 0.1.0 created them, before exec existed.
const OLD_TABLES: &str = "
CREATE TABLE public.schemaop_migrations (
  version bigint PRIMARY KEY CHECK (version > 0),
  description text NOT NULL,
  checksum text NOT NULL,
  state text NOT NULL CHECK (state IN ('applied', 'applying', 'apply_failed', 'reverting', 'revert_failed')),
  applied_at timestamptz NOT NULL DEFAULT now(),
  duration_ms bigint NOT NULL DEFAULT 0,
  applied_by text NOT NULL,
  error text
);
CREATE TABLE public.schemaop_migrations_audit (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  at timestamptz NOT NULL DEFAULT now(),
  actor text NOT NULL,
  action text NOT NULL CHECK (action IN ('up', 'down', 'stamp', 'repair')),
  version bigint,
  description text NOT NULL,
  duration_ms bigint NOT NULL,
  outcome text NOT NULL CHECK (outcome IN ('succeeded', 'failed')),
  detail text
);
INSERT INTO public.schemaop_migrations_audit (actor, action, version, description, duration_ms, outcome)
  VALUES ('ci@old', 'up', 1, 'init', 5, 'succeeded');";

#[tokio::test]
async fn an_audit_log_made_by_the_previous_version_is_upgraded_by_the_first_exec() {
    let db = TestDb::new().await;
    db.client().await.batch_execute(OLD_TABLES).await.unwrap();
    run(schemaop(&db, &["exec", "--", "true"])).await.expect(0);
    run(schemaop(&db, &["exec", "--", "true"])).await.expect(0);
    let audit = rows(
        &db,
        "SELECT actor, action, coalesce(command, '-') FROM public.schemaop_migrations_audit ORDER BY id",
    )
    .await;
    assert_eq!(audit[0], "ci@old|up|-", "the old entry stays as it was");
    assert_eq!(audit.len(), 3, "{audit:#?}");
    assert!(
        audit[1..].iter().all(|r| r.ends_with("|exec|true")),
        "{audit:#?}"
    );
    // Still a CHECK on action: nothing outside the known actions gets in.
    let refused = db
        .client()
        .await
        .batch_execute(
            "INSERT INTO public.schemaop_migrations_audit (actor, action, description, duration_ms, outcome) \
             VALUES ('x', 'bogus', '', 0, 'succeeded')",
        )
        .await;
    assert!(refused.is_err(), "the action CHECK was dropped");
}

// --- wait --tool --------------------------------------------------------------

#[tokio::test]
async fn wait_for_an_alembic_head_or_ancestor_after_exec_learnt_the_graph() {
    let db = TestDb::new().await;
    run(schemaop(
        &db,
        &[
            "exec",
            "--tool",
            "alembic",
            "--",
            "alembic",
            "upgrade",
            "002_plans",
        ],
    ))
    .await
    .expect(0);
    let wait = |revision: &str, timeout: &str| {
        schemaop(
            &db,
            &[
                "wait",
                "--tool",
                "alembic",
                "--revision",
                revision,
                "--timeout",
                timeout,
            ],
        )
    };
    // The head, and an ancestor of it: at once.
    for revision in ["002_plans", "001_initial_schema"] {
        let reached = run(wait(revision, "5s")).await.expect(0);
        assert!(
            reached
                .stdout
                .contains(&format!("alembic has reached {revision} (at 002_plans)")),
            "{reached:#?}"
        );
    }
    // Above the head: a timeout that says where the database is.
    let started = Instant::now();
    let above = run(wait(HEAD, "2s")).await.expect(7);
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert!(
        above.stderr.contains(&format!(
            "timed out after 2s waiting for alembic revision {HEAD}"
        )) && above.stderr.contains("heads 002_plans"),
        "{above:#?}"
    );
    // Reached while it waits: another exec moves the database to the head.
    let waiting = tokio::spawn(run(wait(HEAD, "60s")));
    tokio::time::sleep(Duration::from_millis(500)).await;
    run(schemaop(
        &db,
        &[
            "exec", "--tool", "alembic", "--", "alembic", "upgrade", "head",
        ],
    ))
    .await
    .expect(0);
    let reached = waiting.await.unwrap().expect(0);
    assert!(
        reached.stdout.contains(&format!("reached {HEAD}")),
        "{reached:#?}"
    );
}

#[tokio::test]
async fn without_a_recorded_graph_wait_accepts_only_a_current_head_and_says_so() {
    let db = TestDb::new().await;
    // Alembic run without schemaop: nobody recorded the graph.
    run(in_app(&db, "alembic", &["upgrade", "head"]))
        .await
        .expect(0);
    let wait = |revision: &str| {
        schemaop(
            &db,
            &[
                "wait",
                "--tool",
                "alembic",
                "--revision",
                revision,
                "--timeout",
                "1s",
            ],
        )
    };
    run(wait(HEAD)).await.expect(0);
    let ancestor = run(wait("002_plans")).await.expect(7);
    assert!(
        ancestor
            .stderr
            .contains("no record of Alembic's revision graph"),
        "{ancestor:#?}"
    );
}

#[tokio::test]
async fn a_dirty_golang_migrate_version_stops_wait_at_once_with_4() {
    let db = TestDb::new().await;
    db.client()
        .await
        .batch_execute(
            "CREATE TABLE schema_migrations (version bigint NOT NULL PRIMARY KEY, dirty boolean NOT NULL);
             INSERT INTO schema_migrations VALUES (3, true);",
        )
        .await
        .unwrap();
    let started = Instant::now();
    let outcome = run(schemaop(
        &db,
        &[
            "wait",
            "--tool",
            "golang-migrate",
            "--revision",
            "3",
            "--timeout",
            "60s",
        ],
    ))
    .await
    .expect(4);
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(outcome.stderr.contains("version 3 dirty"), "{outcome:#?}");
    let current = run(schemaop(&db, &["current", "--tool", "golang-migrate"]))
        .await
        .expect(0);
    assert_eq!(current.stdout, "3\n");
    assert!(current.stderr.contains("dirty"), "{current:#?}");
}
