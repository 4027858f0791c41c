//! A path to the server that stops answering in the middle of a run: the
//! runner must stop with a retryable error, the server must free the lock,
//! and the next runner must finish the work, applying nothing twice. A
//! healthy but slow migration must not be cut short.
//!
//! The faults are TCP forwarders between the runner and the test server. A
//! frozen one is a process of its own, stopped with SIGSTOP: its kernel keeps
//! acknowledging packets, so TCP keepalives never fire. A dropping one reads
//! and discards everything, in both directions.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{TestDb, admin_url, source};
use schemaop::engine::{
    Direction, Error, Liveness, MigrationSource, Migrator, MigratorOptions, SessionSettings, Target,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_postgres::config::Host;

/// Short enough for a test, in the same proportions as the defaults.
fn liveness() -> Liveness {
    Liveness {
        check_interval: Duration::from_millis(250),
        reply_timeout: Duration::from_secs(2),
        server_idle_timeout: Duration::from_secs(3),
    }
}

/// The runner must give up within this of the fault: a reply timeout, a
/// check interval, and room for a loaded machine.
const RUNNER_GIVES_UP: Duration = Duration::from_secs(15);

/// The next runner must be done within this: the server's idle timeout
/// after the frozen session's last statement, and room.
const NEXT_RUNNER_DONE: Duration = Duration::from_secs(30);

/// The first migration sleeps, so the fault can strike while it runs.
fn slow_then_fast() -> MigrationSource {
    source(&[
        (
            "1_slow.sql",
            "SELECT pg_sleep(1.5);\nCREATE TABLE first (id int);",
        ),
        ("2_fast.sql", "CREATE TABLE second (id int);"),
    ])
}

fn options() -> MigratorOptions {
    options_with(liveness())
}

fn options_with(liveness: Liveness) -> MigratorOptions {
    MigratorOptions {
        session: SessionSettings {
            liveness: Some(liveness),
            ..SessionSettings::default()
        },
        lock_wait_timeout: Some(NEXT_RUNNER_DONE),
        ..MigratorOptions::default()
    }
}

// --- forwarders -----------------------------------------------------------

/// The test server's address, from `SCHEMAOP_TEST_ADMIN_URL`.
async fn server_address() -> SocketAddr {
    let config: tokio_postgres::Config = admin_url().parse().expect("the admin URL parses");
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(host)) => host.clone(),
        other => panic!("these tests need a TCP test server, not {other:?}"),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    tokio::net::lookup_host((host.as_str(), port))
        .await
        .expect("the test server's host resolves")
        .next()
        .expect("the test server has an address")
}

/// `url` with its server replaced by `127.0.0.1:port`.
fn url_on_port(url: &str, port: u16) -> String {
    let config: tokio_postgres::Config = url.parse().expect("the test URL parses");
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(host)) => host.clone(),
        other => panic!("these tests need a TCP test server, not {other:?}"),
    };
    let server_port = config.get_ports().first().copied().unwrap_or(5432);
    let server = format!("@{host}:{server_port}/");
    assert!(url.contains(&server), "{url} does not name {server}");
    url.replacen(&server, &format!("@127.0.0.1:{port}/"), 1)
}

/// What a forwarder drops: everything, or only its first connection.
#[derive(Default)]
struct Drops {
    everything: AtomicBool,
    first_connection: AtomicBool,
}

/// Copies every connection on `listener` both ways to `server`, but reads
/// and discards whatever `drops` says to.
async fn forward(listener: TcpListener, server: SocketAddr, drops: Arc<Drops>) {
    let mut first = true;
    while let Ok((client, _)) = listener.accept().await {
        let drops = drops.clone();
        let is_first = std::mem::take(&mut first);
        tokio::spawn(async move {
            let Ok(upstream) = TcpStream::connect(server).await else {
                return;
            };
            let dropping = || {
                drops.everything.load(Ordering::SeqCst)
                    || (is_first && drops.first_connection.load(Ordering::SeqCst))
            };
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = upstream.into_split();
            tokio::join!(
                pipe(client_read, server_write, dropping),
                pipe(server_read, client_write, dropping),
            );
        });
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    dropping: impl Fn() -> bool,
) {
    let mut buffer = vec![0; 64 * 1024];
    while let Ok(n @ 1..) = from.read(&mut buffer).await {
        if !dropping() && to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
    if dropping() {
        // A path that drops everything passes no close either: the other
        // side must find out by itself.
        std::future::pending::<()>().await;
    }
}

/// A forwarder in this process, which can start dropping traffic.
struct Dropper {
    port: u16,
    drops: Arc<Drops>,
}

impl Dropper {
    async fn start() -> Dropper {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let port = listener.local_addr().expect("a bound address").port();
        let drops = Arc::new(Drops::default());
        tokio::spawn(forward(listener, server_address().await, drops.clone()));
        Dropper { port, drops }
    }

    fn drop_everything(&self) {
        self.drops.everything.store(true, Ordering::SeqCst);
    }

    /// Only the run's own session loses its path; other connections,
    /// the watchdog's included, still get through.
    fn drop_the_first_connection(&self) {
        self.drops.first_connection.store(true, Ordering::SeqCst);
    }
}

const FORWARDER_PORT: &str = "SCHEMAOP_TEST_FORWARDER_PORT";

/// Not a test: the body of the forwarder process that [`Frozen`] starts,
/// from this same test binary. Without its variable it returns at once.
#[test]
#[ignore = "the forwarder process of the freezing tests; they start it"]
fn forwarder_process() {
    let Ok(port) = std::env::var(FORWARDER_PORT) else {
        return;
    };
    let port: u16 = port.parse().expect("a port number");
    tokio::runtime::Runtime::new()
        .expect("a runtime")
        .block_on(async {
            let listener = TcpListener::bind(("127.0.0.1", port))
                .await
                .expect("the port is free");
            forward(listener, server_address().await, Arc::default()).await;
        });
}

/// A forwarder in a process of its own, which can be frozen with SIGSTOP.
struct Frozen {
    port: u16,
    child: tokio::process::Child,
}

impl Frozen {
    async fn start() -> Frozen {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("a free port")
            .local_addr()
            .expect("a bound address")
            .port();
        let child = tokio::process::Command::new(std::env::current_exe().expect("the test binary"))
            .args(["forwarder_process", "--exact", "--ignored", "--nocapture"])
            .env(FORWARDER_PORT, port.to_string())
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("the forwarder process starts");
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the forwarder process does not listen"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Frozen { port, child }
    }

    fn freeze(&self) {
        let pid = self.child.id().expect("the forwarder is running") as libc::pid_t;
        // SAFETY: kill(2) only sends a signal, to our own child.
        let sent = unsafe { libc::kill(pid, libc::SIGSTOP) };
        assert_eq!(sent, 0, "cannot stop the forwarder process");
    }
}

// --- the story --------------------------------------------------------------

/// Waits until a statement containing `text` runs in `db`.
async fn until_running(db: &TestDb, text: &str) {
    let client = db.client().await;
    let sql = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' \
         AND datname = current_database() AND pid <> pg_backend_pid() \
         AND query LIKE '%{text}%'"
    );
    let started = Instant::now();
    loop {
        let row = client.query_one(&sql, &[]).await.expect("pg_stat_activity");
        if row.get::<_, i64>(0) > 0 {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{text} never ran"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs `source` through a forwarder on `port`; `fault` strikes once its
/// `pg_sleep` runs. Then checks the runner's error, and that a second
/// runner, connected directly, finishes the work, applying nothing twice.
/// Returns the versions the second runner applied.
async fn fault_strikes_mid_migration(
    db: &TestDb,
    source: &MigrationSource,
    port: u16,
    fault: impl FnOnce(),
) -> Vec<i64> {
    fault_strikes_with(db, source, liveness(), port, fault).await
}

async fn fault_strikes_with(
    db: &TestDb,
    source: &MigrationSource,
    liveness: Liveness,
    port: u16,
    fault: impl FnOnce(),
) -> Vec<i64> {
    let through_forwarder = schemaop::engine::Database::from_url(&url_on_port(&db.url, port))
        .expect("the forwarder's URL parses");
    let runner = Migrator::new(source, through_forwarder, options_with(liveness));

    let run = runner.run(Target::Latest, Direction::Up, &|_| {});
    let strike = async {
        until_running(db, "pg_sleep").await;
        fault();
        Instant::now()
    };
    let (result, struck) =
        tokio::time::timeout(RUNNER_GIVES_UP * 2, async { tokio::join!(run, strike) })
            .await
            .expect("the runner hangs on a path that stopped answering");
    let gave_up_after = struck.elapsed();
    let error = result.expect_err("the run cannot finish without its replies");
    assert!(
        matches!(error, Error::Unreachable { .. }) && !error.needs_a_person(),
        "not a retryable error: {error}"
    );
    assert_eq!(error.reason(), "DatabaseUnreachable", "{error}");
    assert!(
        error.to_string().contains("a new run takes over"),
        "the error must say what to do: {error}"
    );
    eprintln!("{error}");
    assert!(
        gave_up_after < RUNNER_GIVES_UP,
        "the runner gave up only after {gave_up_after:?}"
    );
    eprintln!("the runner gave up {gave_up_after:?} after the fault");

    let started = Instant::now();
    let report = db
        .migrator(source, options())
        .run(Target::Latest, Direction::Up, &|_| {})
        .await
        .expect("the next runner gets the lock and finishes the work");
    eprintln!("the next runner finished {:?} later", started.elapsed());
    assert!(started.elapsed() < NEXT_RUNNER_DONE);
    assert_eq!(
        db.count("SELECT count(*) FROM schemaop_migrations WHERE state = 'applied'")
            .await,
        source.migrations().len() as i64
    );
    assert_eq!(
        db.count(
            "SELECT count(*) FROM schemaop_migrations_audit \
             WHERE action = 'up' AND outcome = 'succeeded' AND version = 1"
        )
        .await,
        1,
        "the slow migration ran twice"
    );
    assert_eq!(
        db.count(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        .await,
        0,
        "a lock is still held"
    );
    report.steps.iter().map(|s| s.version.0).collect()
}

#[tokio::test]
async fn a_frozen_forwarder_frees_the_lock_and_the_next_runner_finishes() {
    let db = TestDb::new().await;
    let forwarder = Frozen::start().await;
    let source = slow_then_fast();
    let applied =
        fault_strikes_mid_migration(&db, &source, forwarder.port, || forwarder.freeze()).await;
    // The server ran the slow migration to its end and committed it.
    assert_eq!(applied, [2]);
}

#[tokio::test]
async fn a_forwarder_that_drops_everything_frees_the_lock_and_the_next_runner_finishes() {
    let db = TestDb::new().await;
    let forwarder = Dropper::start().await;
    let source = slow_then_fast();
    let applied =
        fault_strikes_mid_migration(&db, &source, forwarder.port, || forwarder.drop_everything())
            .await;
    assert_eq!(applied, [2]);
}

#[tokio::test]
async fn a_run_whose_own_path_drops_is_stopped_and_its_session_ended_at_once() {
    let db = TestDb::new().await;
    let forwarder = Dropper::start().await;
    let source = slow_then_fast();
    // Were the stranded session left to the server, the next runner would
    // wait longer than it may.
    let liveness = Liveness {
        server_idle_timeout: NEXT_RUNNER_DONE * 2,
        ..liveness()
    };
    let applied = fault_strikes_with(&db, &source, liveness, forwarder.port, || {
        forwarder.drop_the_first_connection()
    })
    .await;
    assert_eq!(applied, [2]);
}

#[tokio::test]
async fn a_transaction_stuck_writing_to_a_frozen_path_is_rolled_back() {
    let db = TestDb::new().await;
    let forwarder = Frozen::start().await;
    // After the freeze the server blocks writing rows nobody reads, inside
    // the migration's open transaction.
    let source = source(&[
        (
            "1_loud.sql",
            "CREATE TABLE first (id int);\nSELECT pg_sleep(1);\n\
             SELECT repeat('x', 10000) FROM generate_series(1, 5000);",
        ),
        ("2_fast.sql", "CREATE TABLE second (id int);"),
    ]);
    let applied =
        fault_strikes_mid_migration(&db, &source, forwarder.port, || forwarder.freeze()).await;
    assert_eq!(applied, [1, 2], "the first attempt was not rolled back");
}

#[tokio::test]
async fn a_healthy_run_idle_longer_than_the_servers_idle_timeout_keeps_its_session() {
    let db = TestDb::new().await;
    db.client()
        .await
        .batch_execute("CREATE TABLE busy (id int)")
        .await
        .expect("a table to lock");
    let holder = db.client().await;
    holder
        .batch_execute("BEGIN; LOCK TABLE busy IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("the table is locked");
    let source = source(&[("1_alter.sql", "ALTER TABLE busy ADD COLUMN name text;")]);
    // The first attempt hits lock_timeout; the run then sleeps, its session
    // idle, for longer than the server lets an idle session live.
    let pause = liveness().server_idle_timeout + Duration::from_secs(1);
    let options = MigratorOptions {
        session: SessionSettings {
            lock_timeout: Duration::from_millis(100),
            ..options().session
        },
        retry_min_delay: pause,
        retry_max_delay: pause,
        ..options()
    };
    let migrator = db.migrator(&source, options);
    let run = migrator.run(Target::Latest, Direction::Up, &|_| {});
    let release = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        holder.batch_execute("COMMIT").await.expect("the lock goes");
    };
    let (report, ()) = tokio::time::timeout(pause * 4, async { tokio::join!(run, release) })
        .await
        .expect("the run finishes");
    let report = report.expect("the retry runs on the same, still open, session");
    assert_eq!(report.steps.len(), 1);
}

#[tokio::test]
async fn a_migration_longer_than_the_reply_timeout_is_not_cut_short() {
    let db = TestDb::new().await;
    let forwarder = Dropper::start().await;
    let long = liveness().reply_timeout + liveness().server_idle_timeout;
    let source = source(&[(
        "1_long.sql",
        &format!(
            "SELECT pg_sleep({});\nCREATE TABLE done (id int);",
            long.as_secs_f64()
        ),
    )]);
    let database = schemaop::engine::Database::from_url(&url_on_port(&db.url, forwarder.port))
        .expect("the forwarder's URL parses");
    let report = tokio::time::timeout(
        long + NEXT_RUNNER_DONE,
        Migrator::new(&source, database, options()).run(Target::Latest, Direction::Up, &|_| {}),
    )
    .await
    .expect("the run finishes")
    .expect("a slow migration on a healthy path succeeds");
    assert_eq!(report.steps.len(), 1);
    assert_eq!(db.count("SELECT count(*) FROM done").await, 0);
}
