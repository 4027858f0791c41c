//! `schemaop wait` in database mode: the binary, run as a child process
//! against a real PostgreSQL, one throwaway database per test. Kubernetes
//! mode is tested in `cli::wait`, against a fake API server.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{TestDb, TestRole, admin_url, migrations_dir};
use schemaop::cli::exit;
use schemaop::engine::{Database, Direction, MigrationSource, Migrator, MigratorOptions, Target};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio_postgres::config::Host;

/// A password no output may ever show.
const SECRET: &str = "s3cr3t-WAIT-pw";

/// A guard against hangs, not a measure of speed.
const HANG_GUARD: Duration = Duration::from_secs(120);

/// Two migrations, so a wait can be below, at or above the newest.
fn two_tables() -> tempfile::TempDir {
    migrations_dir(&[
        ("1_users.sql", "CREATE TABLE users (id int PRIMARY KEY);"),
        ("2_orders.sql", "CREATE TABLE orders (id int PRIMARY KEY);"),
    ])
}

/// A role with a password, owning a throwaway database's `public` schema.
/// Fields drop in declaration order: the database goes first, so the role
/// owns nothing when it is dropped.
struct Setup {
    db: TestDb,
    role: TestRole,
}

impl Setup {
    async fn new() -> Setup {
        let role = TestRole::new(SECRET).await;
        let db = TestDb::new().await;
        role.grant_all_on(&db).await;
        Setup { role, db }
    }

    /// The database's URL, password included.
    fn url(&self) -> String {
        self.role.url(&self.db)
    }

    /// Applies the migrations of `dir` up to `target`, as the role.
    async fn migrate(&self, dir: &Path, target: Target) {
        let source = MigrationSource::from_dir(dir).expect("valid migrations");
        let database = Database::from_url(&self.url()).expect("the test URL parses");
        Migrator::new(&source, database, MigratorOptions::default())
            .run(target, Direction::Up, &|_| {})
            .await
            .expect("the migrations apply");
    }
}

// --- running the binary ---------------------------------------------------

/// `schemaop wait` with these arguments, and no DATABASE_URL or kubeconfig
/// from the environment.
fn wait(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_schemaop"));
    command
        .env_remove("DATABASE_URL")
        .env_remove("RUST_LOG")
        .env_remove("POD_NAMESPACE")
        .env_remove("CLICOLOR_FORCE")
        .arg("wait")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// What one run of the binary left: its exit code, everything it printed,
/// and how long it took.
#[derive(Debug)]
struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    took: Duration,
}

impl Outcome {
    /// Panics, showing everything printed, unless the run exited with `code`.
    #[track_caller]
    fn expect(self, code: u8) -> Self {
        assert_eq!(
            self.code,
            Some(i32::from(code)),
            "expected exit code {code}\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
        self.never_shows(SECRET)
    }

    #[track_caller]
    fn never_shows(self, secret: &str) -> Self {
        assert!(
            !self.stdout.contains(secret) && !self.stderr.contains(secret),
            "{secret:?} was printed\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
        self
    }
}

async fn run(mut command: Command) -> Outcome {
    let started = Instant::now();
    let child = command.spawn().expect("the schemaop binary starts");
    finish(child, started).await
}

async fn finish(child: Child, started: Instant) -> Outcome {
    let output = tokio::time::timeout(HANG_GUARD, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("schemaop wait did not finish within {HANG_GUARD:?}"))
        .expect("the schemaop binary runs");
    Outcome {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        took: started.elapsed(),
    }
}

/// Waits a moment, then checks that the child is still waiting.
async fn still_waiting_after(child: &mut Child, moment: Duration) {
    tokio::time::sleep(moment).await;
    let exited = child.try_wait().expect("the child can be polled");
    assert!(exited.is_none(), "wait ended too early: {exited:?}");
}

// --- a database that comes up late ----------------------------------------

/// The test server's address, from `SCHEMAOP_TEST_ADMIN_URL`.
fn server_address() -> (String, u16) {
    let config: tokio_postgres::Config = admin_url().parse().expect("the admin URL parses");
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(host)) => host.clone(),
        other => panic!("these tests need a TCP test server, not {other:?}"),
    };
    (host, config.get_ports().first().copied().unwrap_or(5432))
}

/// `url` with its `host:port` replaced by `127.0.0.1:port`.
fn url_on_port(url: &str, port: u16) -> String {
    let (host, server_port) = server_address();
    let server = format!("@{host}:{server_port}/");
    assert!(url.contains(&server), "{url} does not name {server}");
    url.replacen(&server, &format!("@127.0.0.1:{port}/"), 1)
}

/// A local port where nothing listens: bound, then released.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("a bound address").port()
}

/// Listens on `port` and copies each connection both ways to the test
/// server: from then on, a database answers on `port`.
async fn forward_to_server(port: u16) {
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("the port is still free");
    let (host, server_port) = server_address();
    let server: SocketAddr = tokio::net::lookup_host((host.as_str(), server_port))
        .await
        .expect("the test server's host resolves")
        .next()
        .expect("the test server has an address");
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut upstream) = TcpStream::connect(server).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                }
            });
        }
    });
}

// --- the tests ------------------------------------------------------------

#[tokio::test]
async fn returns_at_once_when_the_revision_is_applied() {
    let setup = Setup::new().await;
    let dir = two_tables();
    setup.migrate(dir.path(), Target::Latest).await;
    let url = setup.url();
    let (host, port) = server_address();
    let redacted = format!(
        "postgres://{}@{host}:{port}/{}",
        setup.role.name, setup.db.name
    );

    for args in [
        vec!["--revision", "2"],
        vec!["--revision", "1"],
        // Without --revision: the newest migration in --dir.
        vec!["--dir", dir.path().to_str().expect("a UTF-8 path")],
    ] {
        let outcome = run(wait(
            &[&["--database-url", &url, "--timeout", "30s"], &args[..]].concat(),
        ))
        .await
        .expect(exit::OK);
        assert!(
            outcome
                .stdout
                .contains(&format!("{redacted} is at revision 2")),
            "{args:?}: {outcome:?}"
        );
        assert!(
            outcome.took < Duration::from_secs(5),
            "{args:?} took {:?}",
            outcome.took
        );
    }
}

#[tokio::test]
async fn reads_database_url_from_the_environment_and_prints_json() {
    let setup = Setup::new().await;
    let dir = two_tables();
    setup.migrate(dir.path(), Target::Latest).await;

    let mut command = wait(&["--revision", "2", "--output", "json"]);
    command.env("DATABASE_URL", setup.url());
    let outcome = run(command).await.expect(exit::OK);
    let json: serde_json::Value = serde_json::from_str(&outcome.stdout).expect("JSON on stdout");
    assert_eq!(json["wait"], serde_json::json!({ "current": 2 }));
    assert!(
        json["database"]
            .as_str()
            .is_some_and(|d| d.starts_with("postgres")),
        "{json}"
    );
}

#[tokio::test]
async fn a_role_that_may_only_select_the_history_table_can_wait() {
    // Declared first, so dropped last: it holds grants in the database.
    let reader = TestRole::new(SECRET).await;
    let setup = Setup::new().await;
    let dir = two_tables();
    setup.migrate(dir.path(), Target::Latest).await;
    // Not even USAGE on public beyond PostgreSQL's default, nor any other table.
    setup
        .db
        .client()
        .await
        .batch_execute(&format!(
            "GRANT CONNECT ON DATABASE {db} TO {r}; GRANT USAGE ON SCHEMA public TO {r}; \
             GRANT SELECT ON public.schemaop_migrations TO {r};",
            db = setup.db.name,
            r = reader.name
        ))
        .await
        .expect("grants");

    run(wait(&[
        "--database-url",
        &reader.url(&setup.db),
        "--revision",
        "2",
        "--timeout",
        "30s",
    ]))
    .await
    .expect(exit::OK);
}

#[tokio::test]
async fn succeeds_once_migrations_are_applied_while_it_waits() {
    let setup = Setup::new().await;
    let dir = two_tables();
    let path = dir.path().to_str().expect("a UTF-8 path");
    let started = Instant::now();
    let mut child = wait(&[
        "--database-url",
        &setup.url(),
        "--dir",
        path,
        "--timeout",
        "60s",
    ])
    .spawn()
    .expect("the schemaop binary starts");

    still_waiting_after(&mut child, Duration::from_millis(1500)).await;
    setup
        .migrate(dir.path(), Target::Version("1".parse().expect("a version")))
        .await;
    still_waiting_after(&mut child, Duration::from_millis(1500)).await;
    setup.migrate(dir.path(), Target::Latest).await;

    let outcome = finish(child, started).await.expect(exit::OK);
    assert!(outcome.stdout.contains("is at revision 2"), "{outcome:?}");
    assert!(
        outcome
            .stderr
            .contains("waiting for revision 2: database at base (no history table yet)"),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn times_out_below_the_revision_and_says_where_the_database_is() {
    let setup = Setup::new().await;
    let dir = two_tables();
    setup
        .migrate(dir.path(), Target::Version("1".parse().expect("a version")))
        .await;

    let outcome = run(wait(&[
        "--database-url",
        &setup.url(),
        "--revision",
        "2",
        "--timeout",
        "1s",
    ]))
    .await
    .expect(exit::TIMEOUT);
    assert!(
        outcome.stderr.contains(&format!(
            "error: timed out after 1s waiting for revision 2: postgres://{}@",
            setup.role.name
        )),
        "{outcome:?}"
    );
    assert!(
        outcome
            .stderr
            .contains(&format!("/{} is at 1", setup.db.name)),
        "{outcome:?}"
    );
    assert!(
        outcome
            .stderr
            .contains("waiting for revision 2: database at 1"),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn waits_for_a_database_that_comes_up_later() {
    let setup = Setup::new().await;
    let dir = two_tables();
    setup.migrate(dir.path(), Target::Latest).await;
    let port = free_port();
    let url = url_on_port(&setup.url(), port);

    let started = Instant::now();
    let mut child = wait(&[
        "--database-url",
        &url,
        "--revision",
        "2",
        "--timeout",
        "60s",
    ])
    .spawn()
    .expect("the schemaop binary starts");
    still_waiting_after(&mut child, Duration::from_secs(1)).await;
    forward_to_server(port).await;

    let outcome = finish(child, started).await.expect(exit::OK);
    let redacted = format!(
        "postgres://{}@127.0.0.1:{port}/{}",
        setup.role.name, setup.db.name
    );
    assert!(
        outcome.stderr.contains(&format!(
            "waiting for revision 2: cannot connect to {redacted} ("
        )),
        "{outcome:?}"
    );
    assert!(
        outcome
            .stdout
            .contains(&format!("{redacted} is at revision 2")),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn a_database_still_down_at_the_timeout_is_unreachable() {
    let setup = Setup::new().await;
    let url = url_on_port(&setup.url(), free_port());

    let outcome = run(wait(&[
        "--database-url",
        &url,
        "--revision",
        "1",
        "--timeout",
        "2s",
    ]))
    .await
    .expect(exit::UNREACHABLE);
    assert!(
        outcome
            .stderr
            .contains("error: timed out after 2s waiting for revision 1: nothing accepts connections at postgres://"),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn a_failed_no_transaction_migration_needs_a_person() {
    let setup = Setup::new().await;
    let dir = migrations_dir(&[
        ("1_users.sql", "CREATE TABLE users (id int PRIMARY KEY);"),
        (
            "2_index.sql",
            "-- schemaop:no-transaction\nCREATE INDEX CONCURRENTLY users_nope_idx ON users (nope);",
        ),
    ]);
    let source = MigrationSource::from_dir(dir.path()).expect("valid migrations");
    let database = Database::from_url(&setup.url()).expect("the test URL parses");
    Migrator::new(&source, database, MigratorOptions::default())
        .run(Target::Latest, Direction::Up, &|_| {})
        .await
        .expect_err("migration 2 fails");

    let outcome = run(wait(&[
        "--database-url",
        &setup.url(),
        "--revision",
        "2",
        "--timeout",
        "60s",
    ]))
    .await
    .expect(exit::REFUSED);
    assert!(
        outcome
            .stderr
            .contains("error: migration 2 failed while being applied"),
        "{outcome:?}"
    );
    assert!(
        outcome.took < Duration::from_secs(10),
        "took {:?}",
        outcome.took
    );
}

#[tokio::test]
async fn the_mode_must_be_clear() {
    let url = format!("postgres://app:{SECRET}@127.0.0.1:1/app");
    let both = run(wait(&["--migration", "app", "--database-url", &url]))
        .await
        .expect(exit::USAGE);
    assert!(both.stderr.contains("not both"), "{both:?}");

    let neither = run(wait(&[])).await.expect(exit::USAGE);
    assert!(
        neither.stderr.contains("say what to wait for"),
        "{neither:?}"
    );

    // An app's DATABASE_URL, shared with its init container, does not turn
    // --migration into an error: Kubernetes mode is chosen, and fails here
    // only because there is no cluster.
    let mut shared = wait(&["--migration", "app", "--timeout", "5s"]);
    shared
        .env("DATABASE_URL", &url)
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST");
    let kubernetes = run(shared).await.expect(exit::FAILED);
    assert!(
        kubernetes
            .stderr
            .contains("cannot set up a Kubernetes client"),
        "{kubernetes:?}"
    );
}
