//! What a migration blocked behind a long transaction costs the application.
//! pgbench (4 clients) reads and writes a table; a session holds a lock on
//! it; then an `ALTER TABLE` on that table is sent by `psql -c` (no lock
//! timeout, the baseline) and by `schemaop upgrade` with its defaults and
//! with other lock timeouts. For each it prints the application's worst
//! second (transactions, max latency), the seconds at zero throughput, and
//! whether and when the ALTER got through. It never fails on time:
//! `cargo bench --bench locks`.
//!
//! Reads `SCHEMAOP_TEST_ADMIN_URL` (a role that may create databases, as
//! `scripts/postgres.sh` sets up). Talks only to that server; each case gets
//! a fresh `schemaop_bench_locks_*` database, dropped at its end. About two
//! minutes in all. Installs PostgreSQL's server package (which holds
//! pgbench) with `scripts/postgres.sh` when pgbench is missing.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{with_database, with_query};
use tokio_postgres::{Client, NoTls};

const DEFAULT_ADMIN_URL: &str = "postgres://schemaop_test:schemaop_test@127.0.0.1:5432/postgres";
const SCHEMAOP: &str = env!("CARGO_BIN_EXE_schemaop");
const ROWS: usize = 10_000;
const CLIENTS: usize = 4;
/// The timeline of each case, from pgbench's start.
const RUN: Duration = Duration::from_secs(22);
const LOCK_AT: Duration = Duration::from_secs(3);
const MIGRATE_AT: Duration = Duration::from_secs(4);
const RELEASE_AT: Duration = Duration::from_secs(10);
/// schemaop's default `--lock-timeout`, which the goal is stated against.
const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_millis(200);

const APP_SCRIPT: &str = "\\set id random(1, 10000)
UPDATE accounts SET balance = balance + 1 WHERE id = :id;
SELECT balance FROM accounts WHERE id = :id;
";

#[derive(Clone, Copy)]
struct Case {
    name: &'static str,
    /// `None`: plain psql, which waits for the lock as long as it takes.
    schemaop_args: Option<&'static [&'static str]>,
    /// The lock_timeout the case runs with, for the latency ratio.
    lock_timeout: Option<Duration>,
}

const CASES: [Case; 5] = [
    Case {
        name: "psql -c 'ALTER TABLE ...'",
        schemaop_args: None,
        lock_timeout: None,
    },
    Case {
        name: "schemaop, old defaults (5s, 5 retries)",
        schemaop_args: Some(&["--lock-timeout", "5s", "--lock-retries", "5"]),
        lock_timeout: Some(Duration::from_secs(5)),
    },
    Case {
        name: "schemaop --lock-timeout 1s",
        schemaop_args: Some(&["--lock-timeout", "1s"]),
        lock_timeout: Some(Duration::from_secs(1)),
    },
    Case {
        name: "schemaop, defaults (200ms, 1m budget)",
        schemaop_args: Some(&[]),
        lock_timeout: Some(DEFAULT_LOCK_TIMEOUT),
    },
    Case {
        name: "schemaop --lock-timeout 50ms",
        schemaop_args: Some(&["--lock-timeout", "50ms"]),
        lock_timeout: Some(Duration::from_millis(50)),
    },
];

fn main() {
    let pgbench = pgbench();
    let admin_url =
        std::env::var("SCHEMAOP_TEST_ADMIN_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.into());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let admin = runtime.block_on(open(&admin_url));
    let work = tempfile::tempdir().expect("temporary folder");

    println!(
        "locks: pgbench -c {CLIENTS} on a {ROWS}-row table; a session takes ACCESS SHARE at {}s \
         and holds it until {}s; the ALTER starts at {}s; {}s per case; {} cores",
        LOCK_AT.as_secs(),
        RELEASE_AT.as_secs(),
        MIGRATE_AT.as_secs(),
        RUN.as_secs(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{:<40} {:>9} {:>10} {:>10} {:>8} {:>11} {:>12} {:>9}",
        "case", "base tps", "worst tps", "max lat", "0-tps s", "ALTER", "done after", "lat/lt"
    );
    let mut defaults = None;
    for (i, case) in CASES.iter().enumerate() {
        let name = format!("schemaop_bench_locks_{}_{i}", std::process::id());
        let url = with_database(&admin_url, &name);
        runtime.block_on(async {
            admin
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .await
                .expect("create the bench database");
            open(&url)
                .await
                .batch_execute(&format!(
                    "CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL DEFAULT 0);
                     INSERT INTO accounts (id) SELECT generate_series(1, {ROWS});
                     ANALYZE accounts;"
                ))
                .await
                .expect("create the table");
        });
        let dir = work.path().join(format!("case{i}"));
        std::fs::create_dir_all(dir.join("migrations")).expect("case folder");
        let outcome = run_case(&runtime, &pgbench, &url, &dir, case);
        runtime.block_on(async {
            let _ = admin
                .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await;
        });
        print_row(case, &outcome);
        if case.lock_timeout == Some(DEFAULT_LOCK_TIMEOUT) {
            defaults = Some(outcome);
        }
    }
    let defaults = defaults.expect("a case with the defaults");
    let met = defaults.seconds.iter().all(|s| s.transactions > 0)
        && max_latency(&defaults) < 2 * DEFAULT_LOCK_TIMEOUT;
    println!(
        "goal: with the defaults, no second at zero tps and max latency under 2 x lock_timeout ({} ms): {}",
        (2 * DEFAULT_LOCK_TIMEOUT).as_millis(),
        if met { "met" } else { "NOT met" }
    );
}

struct Outcome {
    seconds: Vec<Second>,
    baseline_tps: u64,
    altered: bool,
    /// When the ALTER ended, after the lock was released.
    done_after_release: Option<Duration>,
}

#[derive(Clone, Copy, Default)]
struct Second {
    transactions: u64,
    max_latency: Duration,
}

fn run_case(
    runtime: &tokio::runtime::Runtime,
    pgbench: &Path,
    url: &str,
    dir: &Path,
    case: &Case,
) -> Outcome {
    let script = dir.join("workload.sql");
    std::fs::write(&script, APP_SCRIPT).expect("pgbench script");
    std::fs::write(
        dir.join("migrations/1_add_note.sql"),
        "ALTER TABLE accounts ADD COLUMN note text;\n",
    )
    .expect("migration file");
    let log_prefix = dir.join("app");

    let started = Instant::now();
    let mut app = Command::new(pgbench)
        .args(["-n", "-c", &CLIENTS.to_string(), "-j", "1"])
        .args(["-T", &RUN.as_secs().to_string()])
        .args(["-l", "--aggregate-interval=1", "--log-prefix"])
        .arg(&log_prefix)
        .arg("-f")
        .arg(&script)
        .arg(url)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start pgbench");

    sleep_until(started + LOCK_AT);
    let holder = runtime.block_on(async {
        let holder = open(&with_query(url, "application_name=long-report")).await;
        holder
            .batch_execute("BEGIN; LOCK TABLE accounts IN ACCESS SHARE MODE;")
            .await
            .expect("take the lock");
        holder
    });

    sleep_until(started + MIGRATE_AT);
    let mut migration = match case.schemaop_args {
        None => {
            let mut command = Command::new("psql");
            command.env_remove("PGOPTIONS").args([
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                url,
                "-c",
                "ALTER TABLE accounts ADD COLUMN note text",
            ]);
            command
        }
        Some(args) => {
            let mut command = Command::new(SCHEMAOP);
            command
                .env("DATABASE_URL", url)
                .env_remove("RUST_LOG")
                .arg("upgrade")
                .arg("--dir")
                .arg(dir.join("migrations"))
                .args(args);
            command
        }
    };
    let mut migration = migration
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the migration");

    sleep_until(started + RELEASE_AT);
    runtime
        .block_on(holder.batch_execute("COMMIT"))
        .expect("release the lock");
    let released = Instant::now();

    let (succeeded, ended) = wait_until(&mut migration, started + RUN);
    let done_after_release = ended.map(|at| at.saturating_duration_since(released));
    let status = app.wait().expect("pgbench ends");
    assert!(status.success(), "pgbench failed: {status}");

    let columns = runtime.block_on(async {
        open(url)
            .await
            .query_one(
                "SELECT count(*) FROM information_schema.columns \
                 WHERE table_name = 'accounts' AND column_name = 'note'",
                &[],
            )
            .await
            .expect("look for the column")
            .get::<_, i64>(0)
    });
    let seconds = read_log(dir);
    let baseline = &seconds[..(MIGRATE_AT.as_secs() as usize - 1).min(seconds.len())];
    Outcome {
        baseline_tps: median(baseline.iter().map(|s| s.transactions).collect()),
        seconds,
        altered: succeeded && columns == 1,
        done_after_release,
    }
}

fn print_row(case: &Case, outcome: &Outcome) {
    let worst_tps = outcome
        .seconds
        .iter()
        .map(|s| s.transactions)
        .min()
        .unwrap_or(0);
    let max_latency = max_latency(outcome);
    let zero = outcome
        .seconds
        .iter()
        .filter(|s| s.transactions == 0)
        .count();
    let ratio = case.lock_timeout.map_or("-".to_string(), |lt| {
        format!("{:.2}", max_latency.as_secs_f64() / lt.as_secs_f64())
    });
    println!(
        "{:<40} {:>9} {:>10} {:>7} ms {:>8} {:>11} {:>12} {:>9}",
        case.name,
        outcome.baseline_tps,
        worst_tps,
        max_latency.as_millis(),
        zero,
        if outcome.altered {
            "succeeded"
        } else {
            "failed"
        },
        outcome
            .done_after_release
            .map_or("-".into(), |d| format!("{:.1}s", d.as_secs_f64())),
        ratio
    );
}

fn max_latency(outcome: &Outcome) -> Duration {
    outcome
        .seconds
        .iter()
        .map(|s| s.max_latency)
        .max()
        .unwrap_or_default()
}

/// pgbench's per-second aggregates (`interval_start count sum sum2 min max
/// ...`, latencies in microseconds), whole seconds only: the first and last
/// intervals are cut short by the start and the end of the run. A second
/// pgbench did not log had no transaction end in it.
fn read_log(dir: &Path) -> Vec<Second> {
    let mut rows: Vec<(u64, Second)> = Vec::new();
    for entry in std::fs::read_dir(dir).expect("case folder") {
        let path = entry.expect("folder entry").path();
        let is_log = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("app."));
        if !is_log {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("pgbench log");
        for line in text.lines() {
            let fields: Vec<u64> = line
                .split_whitespace()
                .take(6)
                .map(|f| f.parse().expect("pgbench log field"))
                .collect();
            rows.push((
                fields[0],
                Second {
                    transactions: fields[1],
                    max_latency: Duration::from_micros(fields[5]),
                },
            ));
        }
    }
    rows.sort_by_key(|(start, _)| *start);
    let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
        panic!("pgbench logged nothing in {}", dir.display());
    };
    let (first, last) = (first.0, last.0);
    let mut seconds = vec![Second::default(); (last - first + 1) as usize];
    for (start, second) in rows {
        let slot = &mut seconds[(start - first) as usize];
        slot.transactions += second.transactions;
        slot.max_latency = slot.max_latency.max(second.max_latency);
    }
    seconds[1..seconds.len().saturating_sub(1).max(1)].to_vec()
}

fn median(mut values: Vec<u64>) -> u64 {
    values.sort_unstable();
    values.get(values.len() / 2).copied().unwrap_or(0)
}

/// Waits for `child` until `deadline`, then kills it. Returns whether it
/// succeeded and when it ended.
fn wait_until(child: &mut Child, deadline: Instant) -> (bool, Option<Instant>) {
    loop {
        if let Some(status) = child.try_wait().expect("wait for the migration") {
            return (status.success(), Some(Instant::now()));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return (false, None);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn sleep_until(at: Instant) {
    std::thread::sleep(at.saturating_duration_since(Instant::now()));
}

/// pgbench from Debian's PostgreSQL server package, installed with the
/// project's own script when missing.
fn pgbench() -> PathBuf {
    let find = || {
        let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .map(|version| version.path().join("bin/pgbench"))
            .filter(|path| path.exists())
            .collect();
        found.sort();
        found.pop()
    };
    if let Some(path) = find() {
        return path;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/postgres.sh");
    let status = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source '{}' && ensure_postgres_installed",
            script.display()
        ))
        .status()
        .expect("run scripts/postgres.sh");
    assert!(status.success(), "installing PostgreSQL failed: {status}");
    find().expect("pgbench after installing PostgreSQL")
}

async fn open(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect ({e}); run `source scripts/postgres.sh`"));
    tokio::spawn(connection);
    client
}
