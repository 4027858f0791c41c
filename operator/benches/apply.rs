//! How fast the `schemaop` binary applies and inspects 1,000 small migrations
//! on the local PostgreSQL, next to `psql` running the same statements. It
//! prints figures and never fails on time: `cargo bench --bench apply`.
//!
//! Reads `SCHEMAOP_TEST_ADMIN_URL` (a role that may create databases, as
//! `scripts/postgres.sh` sets up) and `SCHEMAOP_BENCH_RUNS` (runs per figure,
//! default 5). Every run gets a fresh `schemaop_bench_*` database; they are
//! dropped at the end, and take some 25 MB each until then.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use schemaop::engine::MigrationSource;
use support::{with_database, with_query};
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

const MIGRATIONS: usize = 1_000;
const DEFAULT_RUNS: usize = 5;
/// schemaop's budget over the single-transaction psql floor.
const TARGET_RATIO: f64 = 1.05;
const DEFAULT_ADMIN_URL: &str = "postgres://schemaop_test:schemaop_test@127.0.0.1:5432/postgres";
const SCHEMAOP: &str = env!("CARGO_BIN_EXE_schemaop");
/// Lets the server acknowledge a commit before its WAL is flushed to disk.
/// tokio-postgres reads it from the URL; it ignores `PGOPTIONS`.
const ASYNC_COMMIT: &str = "options=-c%20synchronous_commit%3Doff";

fn main() {
    let runs = runs();
    let admin = Admin::connect();
    let work = Workload::create(&admin);
    admin.check_async_commit_url();

    println!("{}", header(&admin, runs));
    let apply = measure_apply(&admin, &work, runs);
    print_apply(&apply);
    println!("{}", lock_table_note(&admin));
    let timelines = [Apply::Schemaop, Apply::SchemaopAsyncCommit]
        .map(|case| admin.timeline(apply.last_database(case), apply.samples(case)));
    print_timelines(&timelines, apply.samples(Apply::Psql).median());
    let status = measure_status(&work, &apply.last_database(Apply::Schemaop).url, runs);
    print_status(&status, &measure_loading(&work.dir, runs));
}

fn runs() -> usize {
    match std::env::var("SCHEMAOP_BENCH_RUNS") {
        Ok(text) => match text.parse() {
            Ok(n) if n > 0 => n,
            _ => panic!("SCHEMAOP_BENCH_RUNS must be a positive integer, not {text:?}"),
        },
        Err(_) => DEFAULT_RUNS,
    }
}

/// The migrations as files for schemaop, and the scripts psql runs; in a
/// temporary folder removed with the value.
struct Workload {
    _root: tempfile::TempDir,
    dir: PathBuf,
    /// The same statements, one after the other.
    script: PathBuf,
    /// The exact SQL schemaop sends for the migrations, history rows included.
    replay: PathBuf,
}

impl Workload {
    fn create(admin: &Admin) -> Workload {
        let root = tempfile::tempdir().expect("temporary folder");
        let dir = root.path().join("migrations");
        // Outside `dir`: schemaop would reject `all.sql` as a migration name.
        let script = root.path().join("all.sql");
        std::fs::create_dir(&dir).expect("migrations folder");
        let mut all = String::new();
        for i in 1..=MIGRATIONS {
            let sql = format!(
                "CREATE TABLE t{i:04} (id bigint PRIMARY KEY, name text NOT NULL, \
                 created_at timestamptz NOT NULL DEFAULT now());\n"
            );
            std::fs::write(dir.join(format!("{i:04}_t{i:04}.sql")), &sql).expect("migration file");
            all.push_str(&sql);
        }
        std::fs::write(&script, all).expect("psql script");
        let replay = root.path().join("replay.sql");
        std::fs::write(&replay, planned_sql(admin, &dir)).expect("replay script");
        Workload {
            _root: root,
            dir,
            script,
            replay,
        }
    }
}

/// What `schemaop plan --sql` prints for an empty database: the SQL an
/// upgrade would send, taken from the engine rather than copied here.
fn planned_sql(admin: &Admin, dir: &Path) -> Vec<u8> {
    let db = admin.scratch();
    run(schemaop(&db.url, dir, &["plan", "--sql"])).stdout
}

/// The connection that creates and drops the scratch databases.
struct Admin {
    runtime: tokio::runtime::Runtime,
    client: Client,
    url: String,
}

impl Admin {
    fn connect() -> Admin {
        let url =
            std::env::var("SCHEMAOP_TEST_ADMIN_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.into());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let client = runtime.block_on(open(&url));
        Admin {
            runtime,
            client,
            url,
        }
    }

    fn execute(&self, sql: &str) {
        self.runtime
            .block_on(self.client.batch_execute(sql))
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// The first row `sql` returns on `url`, as text, over a connection of its own.
    fn first_row(&self, url: &str, sql: &str) -> Vec<String> {
        self.runtime.block_on(async {
            let client = open(url).await;
            let messages = client
                .simple_query(sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            messages
                .iter()
                .find_map(|m| match m {
                    SimpleQueryMessage::Row(row) => (0..row.len())
                        .map(|i| row.get(i).map(str::to_string))
                        .collect(),
                    _ => None,
                })
                .unwrap_or_else(|| panic!("{sql} returned no row, or a NULL"))
        })
    }

    fn scalar(&self, url: &str, sql: &str) -> String {
        self.first_row(url, sql).swap_remove(0)
    }

    fn scratch(&self) -> ScratchDb<'_> {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "schemaop_bench_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        self.execute(&format!("CREATE DATABASE {name}"));
        ScratchDb {
            url: with_database(&self.url, &name),
            name,
            admin: self,
        }
    }

    /// The variant's figure is worthless if the option did not reach the server.
    fn check_async_commit_url(&self) {
        let url = with_query(&self.url, ASYNC_COMMIT);
        let setting = self.scalar(&url, "SHOW synchronous_commit");
        assert_eq!(
            setting, "off",
            "the URL option did not set synchronous_commit"
        );
    }

    /// How the schemaop run that filled `db` spent its time, read back from
    /// the history rows it wrote; its wall time is the last of `samples`.
    fn timeline(&self, db: &ScratchDb<'_>, samples: &Samples) -> Timeline {
        let sql = "SELECT count(*) FILTER (WHERE state = 'applied'), \
                   extract(epoch FROM max(applied_at) - min(applied_at)) * 1000, \
                   avg(duration_ms) \
                   FROM schemaop_migrations";
        let values: Vec<f64> = self
            .first_row(&db.url, sql)
            .iter()
            .map(|v| v.parse().expect("a number"))
            .collect();
        // The figures only count if schemaop really applied every migration.
        assert_eq!(values[0], MIGRATIONS as f64, "migrations applied");
        Timeline {
            wall_ms: samples.last(),
            span_ms: values[1],
            in_transaction_ms: values[2],
        }
    }
}

async fn open(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect ({e}); run `source scripts/postgres.sh`"));
    tokio::spawn(connection);
    client
}

/// A database for one run, dropped with the value.
struct ScratchDb<'a> {
    admin: &'a Admin,
    name: String,
    url: String,
}

impl Drop for ScratchDb<'_> {
    fn drop(&mut self) {
        // Best effort, and quiet: this also runs while unwinding from a panic.
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let _ = self
            .admin
            .runtime
            .block_on(self.admin.client.batch_execute(&sql));
    }
}

/// One way to apply the 1,000 migrations into an empty database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Apply {
    /// The floor: every statement in one transaction, one commit.
    Psql,
    /// Profile: psql committing each statement, as schemaop commits each migration.
    PsqlPerStatement,
    Schemaop,
    /// Profile: schemaop without waiting for a WAL flush at each commit.
    SchemaopAsyncCommit,
    /// Profile: psql running schemaop's own SQL, without schemaop's process.
    PsqlReplay,
}

impl Apply {
    /// Run in turns, so drift on the machine hits every case alike. The
    /// profile cases always run, so that they share the turns.
    const ALL: [Apply; 5] = [
        Apply::Psql,
        Apply::Schemaop,
        Apply::PsqlPerStatement,
        Apply::SchemaopAsyncCommit,
        Apply::PsqlReplay,
    ];

    fn shown(self) -> &'static str {
        match self {
            Apply::Psql => "psql -X -q -1 -v ON_ERROR_STOP=1 -f all.sql",
            Apply::PsqlPerStatement => "psql -X -q -v ON_ERROR_STOP=1 -f all.sql",
            Apply::Schemaop => "schemaop upgrade --dir DIR",
            Apply::SchemaopAsyncCommit => "schemaop upgrade --dir DIR, synchronous_commit=off",
            Apply::PsqlReplay => "psql -X -q -v ON_ERROR_STOP=1 -f replay.sql",
        }
    }

    fn command(self, work: &Workload, url: &str) -> Command {
        match self {
            Apply::Psql => {
                let mut command = psql(url);
                command.arg("-1").arg("-f").arg(&work.script);
                command
            }
            Apply::PsqlPerStatement => {
                let mut command = psql(url);
                command.arg("-f").arg(&work.script);
                command
            }
            Apply::Schemaop => schemaop(url, &work.dir, &["upgrade"]),
            Apply::SchemaopAsyncCommit => {
                schemaop(&with_query(url, ASYNC_COMMIT), &work.dir, &["upgrade"])
            }
            Apply::PsqlReplay => {
                let mut command = psql(url);
                command.arg("-f").arg(&work.replay);
                command
            }
        }
    }
}

fn psql(url: &str) -> Command {
    let mut command = Command::new("psql");
    // The URL alone sets up the session, as it does for schemaop.
    command
        .env_remove("PGOPTIONS")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url]);
    command
}

fn schemaop(url: &str, dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(SCHEMAOP);
    // RUST_LOG would add logging the figures are not meant to include.
    command
        .env("DATABASE_URL", url)
        .env_remove("RUST_LOG")
        .args(args)
        .arg("--dir")
        .arg(dir);
    command
}

/// Runs `command` to its end, which must be a success.
fn run(mut command: Command) -> Output {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", command.get_program()));
    // Not the command line: it holds the URL and its password.
    assert!(
        output.status.success(),
        "{:?} failed ({}): {}",
        command.get_program(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Wall time from spawn to exit, output collected as it comes.
fn time(command: Command) -> Duration {
    let started = Instant::now();
    run(command);
    started.elapsed()
}

/// Wall times of one command, in milliseconds.
#[derive(Debug, Default)]
struct Samples(Vec<f64>);

impl Samples {
    fn push(&mut self, elapsed: Duration) {
        self.0.push(elapsed.as_secs_f64() * 1000.0);
    }

    fn sorted(&self) -> Vec<f64> {
        let mut sorted = self.0.clone();
        sorted.sort_by(f64::total_cmp);
        sorted
    }

    fn min(&self) -> f64 {
        self.sorted()[0]
    }

    fn max(&self) -> f64 {
        self.sorted()[self.0.len() - 1]
    }

    fn last(&self) -> f64 {
        self.0[self.0.len() - 1]
    }

    fn median(&self) -> f64 {
        let sorted = self.sorted();
        let mid = sorted.len() / 2;
        if sorted.len().is_multiple_of(2) {
            (sorted[mid - 1] + sorted[mid]) / 2.0
        } else {
            sorted[mid]
        }
    }
}

/// The figures of every [`Apply`] case, and the databases the runs filled.
struct ApplyResults<'a> {
    /// In the order of [`Apply::ALL`].
    samples: Vec<Samples>,
    /// Each with the case that filled it, oldest first. Dropping a database
    /// of 1,000 tables deletes thousands of files, and the run after that
    /// took two to three times as long here; so none is dropped until every
    /// run is done, and a run always follows the filling of another.
    databases: Vec<(Apply, ScratchDb<'a>)>,
}

impl<'a> ApplyResults<'a> {
    fn samples(&self, case: Apply) -> &Samples {
        let index = Apply::ALL.iter().position(|c| *c == case);
        &self.samples[index.expect("every case is measured")]
    }

    /// The database of `case`'s last run, which holds every migration.
    fn last_database(&self, case: Apply) -> &ScratchDb<'a> {
        let last = self.databases.iter().rev().find(|(c, _)| *c == case);
        &last.expect("every case is measured").1
    }
}

/// Times every [`Apply`] case `runs` times, each run into a fresh database,
/// after one untimed run that takes the cost of a cold start.
fn measure_apply<'a>(admin: &'a Admin, work: &Workload, runs: usize) -> ApplyResults<'a> {
    let mut results = ApplyResults {
        samples: Apply::ALL.iter().map(|_| Samples::default()).collect(),
        databases: Vec::with_capacity(runs * Apply::ALL.len() + 1),
    };
    let mut apply = |case: Apply| {
        let db = admin.scratch();
        settle();
        let elapsed = time(case.command(work, &db.url));
        results.databases.push((case, db));
        elapsed
    };
    apply(Apply::PsqlPerStatement);
    let cases = Apply::ALL.len();
    for round in 0..runs {
        // Each round starts one case further, so no case always runs first.
        for index in (0..cases).map(|k| (round + k) % cases) {
            let elapsed = apply(Apply::ALL[index]);
            results.samples[index].push(elapsed);
        }
    }
    results
}

/// Writes out what earlier runs left to the disk (the previous run's
/// thousands of new files, the new database's), so that no run pays for the
/// writeback of another. Best effort: without `sync` the figures are noisier.
fn settle() {
    let _ = Command::new("sync").status();
}

/// One schemaop run as its history rows tell it. `applied_at` defaults to
/// `now()`, the start of each migration's transaction, and `duration_ms`
/// is the server's own measure, in whole ms, from there to the history row,
/// which follows the migration's SQL.
struct Timeline {
    wall_ms: f64,
    /// From the first migration's transaction start to the last one's.
    span_ms: f64,
    /// The average `duration_ms`.
    in_transaction_ms: f64,
}

impl Timeline {
    /// From one transaction's start to the next one's.
    fn cycle_ms(&self) -> f64 {
        self.span_ms / (MIGRATIONS - 1) as f64
    }

    /// Everything but the loop over migrations: process start, loading the
    /// files, connecting, the lock, the history tables, and exit.
    fn outside_loop_ms(&self) -> f64 {
        self.wall_ms - self.span_ms - self.cycle_ms()
    }
}

/// A read-only command on the database that holds the 1,000 migrations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
    /// Process start and connection, nothing else.
    SelectOne,
    Status,
    StatusJson,
    /// Loads, connects and reads the history, then finds nothing to do.
    UpgradeNothingPending,
}

impl Probe {
    const ALL: [Probe; 4] = [
        Probe::SelectOne,
        Probe::Status,
        Probe::StatusJson,
        Probe::UpgradeNothingPending,
    ];

    fn shown(self) -> &'static str {
        match self {
            Probe::SelectOne => "psql -X -q -c 'SELECT 1'",
            Probe::Status => "schemaop status --dir DIR",
            Probe::StatusJson => "schemaop status --output json --dir DIR",
            Probe::UpgradeNothingPending => "schemaop upgrade --dir DIR (nothing pending)",
        }
    }

    fn command(self, work: &Workload, url: &str) -> Command {
        match self {
            Probe::SelectOne => {
                let mut command = psql(url);
                command.args(["-c", "SELECT 1"]);
                command
            }
            Probe::Status => schemaop(url, &work.dir, &["status"]),
            Probe::StatusJson => schemaop(url, &work.dir, &["status", "--output", "json"]),
            Probe::UpgradeNothingPending => schemaop(url, &work.dir, &["upgrade"]),
        }
    }
}

/// Times every [`Probe`] `runs` times, round-robin, on `url`.
fn measure_status(work: &Workload, url: &str, runs: usize) -> Vec<Samples> {
    let mut samples: Vec<Samples> = Probe::ALL.iter().map(|_| Samples::default()).collect();
    for _ in 0..runs {
        for (probe, figures) in Probe::ALL.iter().zip(&mut samples) {
            figures.push(time(probe.command(work, url)));
        }
    }
    samples
}

/// Reading, parsing and hashing the files in this process: the part of every
/// command's start-up that grows with the number of migrations.
fn measure_loading(dir: &Path, runs: usize) -> Samples {
    let mut samples = Samples::default();
    for _ in 0..runs {
        let started = Instant::now();
        let source = MigrationSource::from_dir(dir).expect("the generated migrations load");
        samples.push(started.elapsed());
        assert_eq!(source.migrations().len(), MIGRATIONS);
    }
    samples
}

fn header(admin: &Admin, runs: usize) -> String {
    let setting = |name: &str| admin.scalar(&admin.url, &format!("SHOW {name}"));
    let psql_version = Command::new("psql")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|e| format!("psql not runnable: {e}"));
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let runs_text = if runs == 1 {
        "1 run"
    } else {
        &format!("{runs} runs")
    };
    format!(
        "schemaop apply benchmark\n\
         \n  PostgreSQL server  {} (fsync={}, synchronous_commit={}, wal_sync_method={})\
         \n  client             {psql_version}; schemaop release build; {cpus} CPUs\
         \n  workload           1,000 migrations, one `CREATE TABLE tNNNN (id bigint PRIMARY KEY, \
         name text NOT NULL,\
         \n                     created_at timestamptz NOT NULL DEFAULT now())` each\
         \n  method             wall time from process spawn to exit; {runs_text} per command, \
         commands taking turns;\
         \n                     each apply run into a fresh empty database, after a `sync`;\
         \n                     one untimed run first; databases dropped only once all runs are done\
         \n  load average       {} at the start (other work on the machine widens the spread)\n",
        setting("server_version"),
        setting("fsync"),
        setting("synchronous_commit"),
        setting("wal_sync_method"),
        load_average(),
    )
}

/// The 1-minute load average, to tell a quiet machine from a busy one.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

const LABEL_WIDTH: usize = 58;

fn table_head(title: &str) -> String {
    format!(
        "{title:<width$} {:>9} {:>9} {:>9}",
        "min ms",
        "median ms",
        "max ms",
        width = LABEL_WIDTH + 2
    )
}

fn row(label: &str, samples: &Samples) -> String {
    format!(
        "  {label:<LABEL_WIDTH$} {:>9.1} {:>9.1} {:>9.1}",
        samples.min(),
        samples.median(),
        samples.max()
    )
}

fn print_apply(apply: &ApplyResults<'_>) {
    let ratio = apply.samples(Apply::Schemaop).median() / apply.samples(Apply::Psql).median();
    let verdict = if ratio <= TARGET_RATIO {
        "met"
    } else {
        "MISSED"
    };
    println!("{}", table_head("1. Apply 1,000 migrations"));
    for case in [Apply::Psql, Apply::Schemaop] {
        println!("{}", row(case.shown(), apply.samples(case)));
    }
    println!(
        "  ratio of medians, schemaop / psql floor: {ratio:.2}x \
         (target <= {TARGET_RATIO:.2}x: {verdict})"
    );
    println!(
        "  (psql -1 commits once; schemaop commits once per migration, its history rows included)"
    );
    println!();

    println!(
        "{}",
        table_head("   Profile: the same 1,000 statements, one thing changed")
    );
    for case in [
        Apply::PsqlPerStatement,
        Apply::SchemaopAsyncCommit,
        Apply::PsqlReplay,
    ] {
        println!("{}", row(case.shown(), apply.samples(case)));
    }
    println!(
        "  (replay.sql is `schemaop plan --sql` on an empty database, history rows included;\n   \
         psql sends it statement by statement, where schemaop sends each migration in one round trip)"
    );
    println!();
    print_spread(apply);
    print_derived(apply);
}

/// The floor's own limit. psql -1 holds every table's locks until its one
/// commit, and they share the server's lock table; each migration here is
/// committed on its own, releasing its locks. The workload has a fixed size,
/// and runs past the limit would take minutes, so this is said, not measured.
fn lock_table_note(admin: &Admin) -> String {
    let setting = |name: &str| admin.scalar(&admin.url, &format!("SHOW {name}"));
    format!(
        "  NOTE: past about 2,000 migrations like these the floor itself fails: psql -1 ran out of\n  \
         shared memory at about 2,050 CREATE TABLEs with the default max_locks_per_transaction (64),\n  \
         as the transaction's locks outgrow the lock table (here max_locks_per_transaction={}, \
         max_connections={}).\n  \
         schemaop, one transaction per migration, has no such limit.\n",
        setting("max_locks_per_transaction"),
        setting("max_connections"),
    )
}

/// Above this max/min of one command, other work on the machine weighs as
/// much as the differences measured.
const NOISY_SPREAD: f64 = 1.5;

fn print_spread(apply: &ApplyResults<'_>) {
    let spread = |case| {
        let samples = apply.samples(case);
        samples.max() / samples.min()
    };
    let worst = Apply::ALL.map(spread).into_iter().fold(1.0, f64::max);
    if worst > NOISY_SPREAD {
        println!(
            "  NOTE: one command's slowest run took {worst:.1}x its fastest: the machine was busy.\n  \
             The minimums are the better estimate; for a clean ratio, rerun on a quiet machine\n  \
             or with more runs (SCHEMAOP_BENCH_RUNS)."
        );
        println!();
    }
}

/// Ratios and per-migration differences, from the medians and, as a check
/// on a busy machine, from the minimums.
fn print_derived(apply: &ApplyResults<'_>) {
    let by = |stat: fn(&Samples) -> f64| move |case| stat(apply.samples(case));
    let (median, min) = (by(Samples::median), by(Samples::min));
    let ratio = |label: &str, a, b| {
        println!(
            "  {label:<LABEL_WIDTH$} {:>8.2}x {:>8.2}x",
            median(a) / median(b),
            min(a) / min(b)
        );
    };
    let per_migration = |label: &str, a, b| {
        let each = |stat: &dyn Fn(Apply) -> f64| (stat(a) - stat(b)) / MIGRATIONS as f64;
        println!(
            "  {label:<LABEL_WIDTH$} {:>9.2} {:>9.2}",
            each(&median),
            each(&min)
        );
    };
    println!(
        "{:<width$} {:>9} {:>9}",
        "   Derived",
        "medians",
        "minimums",
        width = LABEL_WIDTH + 2
    );
    ratio("schemaop / psql floor", Apply::Schemaop, Apply::Psql);
    ratio(
        "schemaop, synchronous_commit=off / psql floor",
        Apply::SchemaopAsyncCommit,
        Apply::Psql,
    );
    ratio(
        "schemaop / psql per statement (as many commits)",
        Apply::Schemaop,
        Apply::PsqlPerStatement,
    );
    ratio(
        "schemaop / psql replaying schemaop's SQL",
        Apply::Schemaop,
        Apply::PsqlReplay,
    );
    per_migration(
        "ms per migration: schemaop - psql floor, made of",
        Apply::Schemaop,
        Apply::Psql,
    );
    per_migration(
        "  a commit each (psql per statement - psql -1)",
        Apply::PsqlPerStatement,
        Apply::Psql,
    );
    per_migration(
        "  history rows, more round trips (replay - per statement)",
        Apply::PsqlReplay,
        Apply::PsqlPerStatement,
    );
    per_migration(
        "  schemaop's client, fewer round trips (schemaop - replay)",
        Apply::Schemaop,
        Apply::PsqlReplay,
    );
    per_migration(
        "ms per commit waiting for WAL flush (sync on - off)",
        Apply::Schemaop,
        Apply::SchemaopAsyncCommit,
    );
    println!();
}

/// Where the last run of each schemaop case spent its time.
fn print_timelines(timelines: &[Timeline; 2], floor_ms: f64) {
    let line = |label: &str, value: fn(&Timeline) -> f64| {
        println!(
            "  {label:<LABEL_WIDTH$} {:>9.2} {:>9.2}",
            value(&timelines[0]),
            value(&timelines[1])
        );
    };
    println!(
        "{:<width$} {:>9} {:>9}",
        "   Inside schemaop's last run, from its history rows",
        "sync on",
        "sync off",
        width = LABEL_WIDTH + 2
    );
    line("wall time of the run, ms", |t| t.wall_ms);
    line("first to last migration's transaction start, ms", |t| {
        t.span_ms
    });
    line(
        "outside the loop (start, load, connect, lock...), ms",
        |t| t.outside_loop_ms(),
    );
    line(
        "per migration: transaction start to the next one, ms",
        |t| t.cycle_ms(),
    );
    line(
        "  BEGIN to its history row (duration_ms, averaged), ms",
        |t| t.in_transaction_ms,
    );
    line("  the rest: COMMIT, round trip, client, ms", |t| {
        t.cycle_ms() - t.in_transaction_ms
    });
    println!(
        "  {:<LABEL_WIDTH$} {:>9.2}   (psql -1 median / 1,000)",
        "for scale: psql floor per statement, ms",
        floor_ms / MIGRATIONS as f64
    );
    println!();
}

fn print_status(samples: &[Samples], loading: &Samples) {
    println!(
        "{}",
        table_head("2. Read-only commands, 1,000 migrations applied")
    );
    for (probe, figures) in Probe::ALL.iter().zip(samples) {
        println!("{}", row(probe.shown(), figures));
    }
    println!(
        "{}",
        row(
            "in-process MigrationSource::from_dir (read, parse, hash)",
            loading
        )
    );
    println!();
    println!("DIR is a temporary folder of files 0001_t0001.sql .. 1000_t1000.sql;");
    println!("all.sql holds the same 1,000 statements in one file.");
    println!("Load average at the end: {}.", load_average());
}
