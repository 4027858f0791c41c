//! The `schemaop` binary, run as a child process against a real PostgreSQL,
//! one throwaway database per test.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Outcome, TestDb, TestRole, migrations_dir, url_as};
use schemaop::cli::exit;
use schemaop::engine::HistoryTable;
use serde_json::Value;
use tokio::process::Command;

/// A password no output may ever show.
const SECRET: &str = "s3cr3t-PASSWORD-xyz";

/// A guard against hangs, not a measure of speed.
const HANG_GUARD: Duration = Duration::from_secs(120);

// --- running the binary ---------------------------------------------------

/// `schemaop` pointed at a database (or none) and a folder of migrations.
struct Schemaop {
    url: Option<String>,
    dir: std::path::PathBuf,
}

impl Schemaop {
    fn new(url: &str, dir: &Path) -> Self {
        Schemaop {
            url: Some(url.to_string()),
            dir: dir.to_path_buf(),
        }
    }

    fn without_database(dir: &Path) -> Self {
        Schemaop {
            url: None,
            dir: dir.to_path_buf(),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_schemaop"));
        command
            .env_remove("DATABASE_URL")
            .env_remove("RUST_LOG")
            .env_remove("PGHOST")
            .env_remove("PGHOSTADDR")
            .env_remove("PGPORT")
            .env_remove("PGDATABASE")
            .env_remove("PGUSER")
            .env_remove("PGPASSWORD")
            .env_remove("PGPASSFILE")
            // Colour is tested on purpose, never by an inherited setting.
            .env_remove("NO_COLOR")
            .env_remove("CLICOLOR")
            .env_remove("CLICOLOR_FORCE")
            .arg("--dir")
            .arg(&self.dir);
        if let Some(url) = &self.url {
            command.arg("--database-url").arg(url);
        }
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }

    async fn run(&self, args: &[&str]) -> Outcome {
        run(self.command(args)).await
    }
}

async fn run(command: Command) -> Outcome {
    common::outcome_of(command, HANG_GUARD).await
}

// --- reading the database -------------------------------------------------

/// The first column of every row, as text.
async fn column(db: &TestDb, sql: &str) -> Vec<String> {
    let client = db.client().await;
    let messages = client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| match e.as_db_error() {
            Some(db) => panic!("{sql}: {}", db.message()),
            None => panic!("{sql}: {e}"),
        });
    messages
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => {
                Some(row.get(0).unwrap_or("NULL").to_string())
            }
            _ => None,
        })
        .collect()
}

/// The state table as `version state` lines, oldest first.
async fn history(db: &TestDb) -> Vec<String> {
    column(
        db,
        "SELECT version || ' ' || state FROM public.schemaop_migrations ORDER BY version",
    )
    .await
}

/// The audit log as `version action outcome` lines, by version, then in order.
async fn audit(db: &TestDb) -> Vec<String> {
    column(
        db,
        "SELECT coalesce(version::text, '-') || ' ' || action || ' ' || outcome \
         FROM public.schemaop_migrations_audit ORDER BY version, id",
    )
    .await
}

async fn history_table_exists(db: &TestDb) -> bool {
    db.scalar("SELECT to_regclass('public.schemaop_migrations') IS NOT NULL")
        .await
        .as_deref()
        == Some("t")
}

async fn table_exists(db: &TestDb, table: &str) -> bool {
    db.scalar(&format!("SELECT to_regclass('public.{table}') IS NOT NULL"))
        .await
        .as_deref()
        == Some("t")
}

/// Tables, indexes, sequences and views outside the system schemas.
async fn relation_count(db: &TestDb) -> i64 {
    db.count(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'",
    )
    .await
}

/// Polls `check` until it holds; panics after `limit`.
async fn wait_until(what: &str, limit: Duration, mut check: impl AsyncFnMut() -> bool) {
    let started = Instant::now();
    while !check().await {
        assert!(
            started.elapsed() < limit,
            "gave up after {limit:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Three reversible migrations: users, orders, invoices.
fn three_tables() -> tempfile::TempDir {
    migrations_dir(&[
        (
            "0001_create_users.up.sql",
            "CREATE TABLE users (id int PRIMARY KEY);",
        ),
        ("0001_create_users.down.sql", "DROP TABLE users;"),
        (
            "0002_create_orders.up.sql",
            "CREATE TABLE orders (id int PRIMARY KEY, user_id int REFERENCES users);",
        ),
        ("0002_create_orders.down.sql", "DROP TABLE orders;"),
        (
            "0003_create_invoices.up.sql",
            "CREATE TABLE invoices (id int PRIMARY KEY, order_id int REFERENCES orders);",
        ),
        ("0003_create_invoices.down.sql", "DROP TABLE invoices;"),
    ])
}

// --- many runners, one database -------------------------------------------

#[tokio::test]
async fn eight_concurrent_runners_apply_each_migration_exactly_once() {
    // Five migrations, three of them slow, one outside a transaction, and
    // each of them would fail if it ran a second time.
    let db = TestDb::new().await;
    let dir = migrations_dir(&[
        (
            "0001_create_items.sql",
            "CREATE TABLE items (id int PRIMARY KEY, name text);\n\
             CREATE TABLE counter (id int PRIMARY KEY);\n\
             SELECT pg_sleep(0.3);",
        ),
        (
            "0002_count_once.sql",
            "INSERT INTO counter VALUES (1);\nSELECT pg_sleep(0.3);",
        ),
        (
            "0003_index_item_names.sql",
            "-- schemaop:no-transaction\nCREATE INDEX CONCURRENTLY items_name_idx ON items (name);",
        ),
        (
            "0004_add_created_at.sql",
            "ALTER TABLE items ADD COLUMN created_at timestamptz;\nSELECT pg_sleep(0.3);",
        ),
        ("0005_create_tags.sql", "CREATE TABLE tags (id int);"),
    ]);
    let cli = Schemaop::new(&db.url, dir.path());

    // Eight runners start at once.
    let runners: Vec<_> = (0..8)
        .map(|_| {
            let command = cli.command(&["--output", "json", "upgrade"]);
            tokio::spawn(run(command))
        })
        .collect();
    let mut outcomes = Vec::new();
    for runner in runners {
        outcomes.push(runner.await.expect("runner task").expect(exit::OK));
    }

    // Exactly one runner did the work; the others found nothing left to do.
    let steps: Vec<usize> = outcomes
        .iter()
        .map(|o| {
            o.json()["upgrade"]["steps"]
                .as_array()
                .expect("steps")
                .len()
        })
        .collect();
    assert_eq!(steps.iter().filter(|n| **n == 5).count(), 1, "{steps:?}");
    assert_eq!(steps.iter().filter(|n| **n == 0).count(), 7, "{steps:?}");
    for outcome in &outcomes {
        assert_eq!(outcome.json()["upgrade"]["to"], 5, "{}", outcome.stdout);
    }

    assert_eq!(
        history(&db).await,
        [
            "1 applied",
            "2 applied",
            "3 applied",
            "4 applied",
            "5 applied"
        ]
    );
    assert_eq!(
        audit(&db).await,
        [
            "1 up succeeded",
            "2 up succeeded",
            "3 up succeeded",
            "4 up succeeded",
            "5 up succeeded"
        ]
    );
    assert_eq!(db.count("SELECT count(*) FROM counter").await, 1);
    assert_eq!(
        db.scalar("SELECT indisvalid FROM pg_index WHERE indexrelid = 'items_name_idx'::regclass")
            .await
            .as_deref(),
        Some("t")
    );
}

/// Four reversible migrations; the second sleeps, so an upgrade holds the
/// lock long enough for another runner to start behind it.
fn four_tables_one_slow() -> tempfile::TempDir {
    let mut files = Vec::new();
    for (version, table) in [(1, "a"), (2, "b"), (3, "c"), (4, "d")] {
        let sleep = if version == 2 {
            "SELECT pg_sleep(2);\n"
        } else {
            ""
        };
        files.push((
            format!("000{version}_create_{table}.up.sql"),
            format!("{sleep}CREATE TABLE {table} (id int);"),
        ));
        files.push((
            format!("000{version}_create_{table}.down.sql"),
            format!("DROP TABLE {table};"),
        ));
    }
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(name, sql)| (name.as_str(), sql.as_str()))
        .collect();
    migrations_dir(&files)
}

async fn migration_lock_is_held(db: &TestDb) -> bool {
    db.count(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .await
        > 0
}

#[tokio::test]
async fn downgrade_steps_started_during_an_upgrade_count_from_where_the_upgrade_ends() {
    // An upgrade of a fresh database holds the lock; a `downgrade --steps 1`
    // starts behind it, when at most one migration is applied.
    let db = TestDb::new().await;
    let dir = four_tables_one_slow();
    let cli = Schemaop::new(&db.url, dir.path());
    let upgrade = tokio::spawn(run(cli.command(&["upgrade"])));
    wait_until("the upgrade holds the lock", HANG_GUARD, async || {
        migration_lock_is_held(&db).await
    })
    .await;
    let downgrade = tokio::spawn(run(cli.command(&[
        "--output",
        "json",
        "downgrade",
        "--steps",
        "1",
    ])));

    upgrade.await.expect("upgrade task").expect(exit::OK);
    let downgrade = downgrade.await.expect("downgrade task").expect(exit::OK);

    // One step back from where the upgrade ended, not from where it began.
    let report = &downgrade.json()["downgrade"];
    assert_eq!(
        report["steps"].as_array().expect("steps").len(),
        1,
        "{report}"
    );
    assert_eq!(
        (report["from"].clone(), report["to"].clone()),
        (4.into(), 3.into())
    );
    assert_eq!(history(&db).await, ["1 applied", "2 applied", "3 applied"]);
    assert!(table_exists(&db, "c").await && !table_exists(&db, "d").await);
    assert_eq!(
        audit(&db).await,
        [
            "1 up succeeded",
            "2 up succeeded",
            "3 up succeeded",
            "4 up succeeded",
            "4 down succeeded"
        ]
    );
}

#[tokio::test]
async fn eight_upgrades_and_eight_one_step_downgrades_each_move_by_their_own_steps() {
    let db = TestDb::new().await;
    let dir = four_tables_one_slow();
    let cli = Schemaop::new(&db.url, dir.path());
    let upgrades: Vec<_> = (0..8)
        .map(|_| tokio::spawn(run(cli.command(&["--output", "json", "upgrade"]))))
        .collect();
    let downgrades: Vec<_> = (0..8)
        .map(|_| {
            tokio::spawn(run(cli.command(&[
                "--output",
                "json",
                "downgrade",
                "--steps",
                "1",
            ])))
        })
        .collect();

    for upgrade in upgrades {
        upgrade.await.expect("upgrade task").expect(exit::OK);
    }
    let mut reverted = 0;
    for downgrade in downgrades {
        let outcome = downgrade.await.expect("downgrade task");
        match outcome.code {
            // Each downgrade that ran reverted exactly one migration...
            Some(0) => {
                let steps = outcome.json()["downgrade"]["steps"]
                    .as_array()
                    .unwrap()
                    .len();
                assert_eq!(steps, 1, "{}", outcome.stdout);
                reverted += 1;
            }
            // ...or found nothing applied when its turn came, and said so.
            _ => {
                let outcome = outcome.expect(exit::REFUSED);
                assert_eq!(outcome.json()["error"]["reason"], "TargetNotFound");
                assert!(
                    outcome.stdout.contains("0 are applied"),
                    "{}",
                    outcome.stdout
                );
            }
        }
    }
    let downs = audit(&db)
        .await
        .iter()
        .filter(|line| line.ends_with("down succeeded"))
        .count();
    assert_eq!(downs, reverted);
}

// --- a runner killed mid-migration ----------------------------------------

#[tokio::test]
async fn a_runner_killed_mid_migration_leaves_nothing_of_it_and_a_rerun_finishes() {
    // The second migration creates a table, sleeps, then creates another:
    // killed in the sleep, the first table must not survive.
    let db = TestDb::new().await;
    let dir = migrations_dir(&[
        (
            "0001_create_accounts.sql",
            "CREATE TABLE accounts (id int PRIMARY KEY);",
        ),
        (
            "0002_slow_backfill.sql",
            "CREATE TABLE before_sleep (id int);\nSELECT pg_sleep(5);\nCREATE TABLE after_sleep (id int);",
        ),
        ("0003_create_ledger.sql", "CREATE TABLE ledger (id int);"),
    ]);
    let cli = Schemaop::new(&db.url, dir.path());
    let in_migration_sleep = "SELECT count(*) FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name LIKE 'schemaop %' \
         AND wait_event = 'PgSleep' AND query LIKE '%pg_sleep%'";
    let runner_backends = "SELECT count(*) FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name LIKE 'schemaop %'";

    let mut doomed = cli.command(&["upgrade"]);
    doomed.stdout(Stdio::null()).stderr(Stdio::null());
    let mut doomed = doomed.spawn().expect("spawn schemaop");
    wait_until(
        "the runner sleeps inside migration 2",
        Duration::from_secs(30),
        async || {
            if let Some(status) = doomed.try_wait().expect("child status") {
                panic!("the runner ended ({status}) before it could be killed");
            }
            db.count(in_migration_sleep).await == 1
        },
    )
    .await;
    doomed.kill().await.expect("SIGKILL the runner");

    // The server notices the dead client and rolls its transaction back
    // instead of running the migration to the end for nobody.
    wait_until(
        "the killed runner's backend is gone",
        Duration::from_secs(30),
        async || db.count(runner_backends).await == 0,
    )
    .await;
    assert_eq!(history(&db).await, ["1 applied"]);
    assert!(table_exists(&db, "accounts").await);
    assert!(!table_exists(&db, "before_sleep").await);
    assert!(!table_exists(&db, "after_sleep").await);

    cli.run(&["upgrade"]).await.expect(exit::OK);

    assert_eq!(history(&db).await, ["1 applied", "2 applied", "3 applied"]);
    assert_eq!(
        audit(&db).await,
        ["1 up succeeded", "2 up succeeded", "3 up succeeded"]
    );
    for table in ["before_sleep", "after_sleep", "ledger"] {
        assert!(table_exists(&db, table).await, "{table} missing");
    }
}

// --- malformed migration folders ------------------------------------------

/// Runs `upgrade` on `dir` and checks it is refused as malformed, naming
/// every file in `offending`, before anything touches the database.
async fn assert_malformed(dir: &Path, offending: &[&str]) {
    let db = TestDb::new().await;
    let outcome = Schemaop::new(&db.url, dir)
        .run(&["upgrade"])
        .await
        .expect(exit::INVALID_SOURCE);
    for file in offending {
        assert!(
            outcome.stderr.contains(file),
            "{file} not named in: {}",
            outcome.stderr
        );
    }
    assert!(!history_table_exists(&db).await);
    assert_eq!(relation_count(&db).await, 0);
}

#[tokio::test]
async fn a_duplicate_version_is_refused_naming_both_files() {
    let dir = migrations_dir(&[
        ("0001_create_users.sql", "CREATE TABLE users ();"),
        ("1_create_people.sql", "CREATE TABLE people ();"),
    ]);
    assert_malformed(
        dir.path(),
        &["0001_create_users.sql", "1_create_people.sql"],
    )
    .await;
}

#[tokio::test]
async fn an_unparsable_file_name_is_refused() {
    let dir = migrations_dir(&[
        ("0001_create_users.sql", "CREATE TABLE users ();"),
        ("add_orders.sql", "CREATE TABLE orders ();"),
    ]);
    assert_malformed(dir.path(), &["add_orders.sql"]).await;
}

#[tokio::test]
async fn a_down_file_without_its_up_file_is_refused() {
    let dir = migrations_dir(&[
        ("0001_create_users.up.sql", "CREATE TABLE users ();"),
        ("0002_create_orders.down.sql", "DROP TABLE orders;"),
    ]);
    assert_malformed(dir.path(), &["0002_create_orders.down.sql"]).await;
}

#[tokio::test]
async fn an_empty_file_is_refused() {
    let dir = migrations_dir(&[
        ("0001_create_users.sql", "CREATE TABLE users ();"),
        ("0002_todo.sql", "-- write me\n"),
    ]);
    assert_malformed(dir.path(), &["0002_todo.sql"]).await;
}

#[tokio::test]
async fn a_file_that_is_not_utf8_is_refused() {
    let dir = migrations_dir(&[("0001_create_users.sql", "CREATE TABLE users ();")]);
    // "CREATE TABLE café ();" saved as Latin-1.
    std::fs::write(
        dir.path().join("0002_latin1.sql"),
        b"CREATE TABLE caf\xe9 ();".as_slice(),
    )
    .unwrap();
    assert_malformed(dir.path(), &["0002_latin1.sql"]).await;
}

#[tokio::test]
async fn transaction_control_in_a_transactional_migration_is_refused() {
    let dir = migrations_dir(&[
        ("0001_create_users.sql", "CREATE TABLE users ();"),
        (
            "0002_half_committed.sql",
            "CREATE TABLE orders ();\nCOMMIT;\nCREATE TABLE invoices ();",
        ),
    ]);
    assert_malformed(dir.path(), &["0002_half_committed.sql", "line 2", "COMMIT"]).await;
}

#[tokio::test]
async fn a_history_table_name_without_room_for_its_audit_log_is_a_usage_error() {
    let db = TestDb::new().await;
    let dir = three_tables();
    let cli = Schemaop::new(&db.url, dir.path());
    let long = "h".repeat(58);

    let outcome = cli
        .run(&["--history-table", &long, "upgrade"])
        .await
        .expect(exit::USAGE);

    assert!(
        outcome.stderr.contains("at most 57 bytes"),
        "{}",
        outcome.stderr
    );
    assert_eq!(relation_count(&db).await, 0);
}

#[tokio::test]
async fn a_missing_migrations_folder_is_refused_naming_it() {
    let parent = tempfile::tempdir().unwrap();
    let missing = parent.path().join("no-such-folder");
    assert_malformed(&missing, &["no-such-folder"]).await;
}

#[tokio::test]
async fn a_malformed_folder_is_reported_as_json_for_scripts() {
    let db = TestDb::new().await;
    let dir = migrations_dir(&[("add_orders.sql", "CREATE TABLE orders ();")]);
    let outcome = Schemaop::new(&db.url, dir.path())
        .run(&["--output", "json", "upgrade"])
        .await
        .expect(exit::INVALID_SOURCE);
    let json = outcome.json();
    assert_eq!(json["error"]["reason"], "InvalidSource");
    let message = json["error"]["message"].as_str().expect("message");
    assert!(message.contains("add_orders.sql"), "{message}");
}

// --- targets, drift, failures ---------------------------------------------

#[tokio::test]
async fn an_unknown_target_is_refused_naming_it_and_the_known_versions() {
    let db = TestDb::new().await;
    let dir = three_tables();

    let outcome = Schemaop::new(&db.url, dir.path())
        .run(&["upgrade", "--to", "999"])
        .await
        .expect(exit::REFUSED);

    assert!(outcome.stderr.contains("999"), "{}", outcome.stderr);
    assert!(
        outcome.stderr.contains("known: 1, 2, 3"),
        "{}",
        outcome.stderr
    );
    assert!(!table_exists(&db, "users").await);
}

#[tokio::test]

async fn a_refused_run_leaves_a_fresh_database_untouched() {
    let dir = three_tables();
    for refused in [&["upgrade", "--to", "999"][..], &["downgrade", "--to", "2"]] {
        let db = TestDb::new().await;

        Schemaop::new(&db.url, dir.path())
            .run(refused)
            .await
            .expect(exit::REFUSED);

        assert!(!history_table_exists(&db).await, "{refused:?}");
        assert_eq!(relation_count(&db).await, 0, "{refused:?}");
    }
}

/// Two migrations applied, then someone edits the second one's file.
async fn applied_then_edited(db: &TestDb) -> (tempfile::TempDir, Schemaop) {
    let dir = migrations_dir(&[
        ("0001_create_users.sql", "CREATE TABLE users (id int);"),
        (
            "0002_add_email.sql",
            "ALTER TABLE users ADD COLUMN email text;",
        ),
    ]);
    let cli = Schemaop::new(&db.url, dir.path());
    cli.run(&["upgrade"]).await.expect(exit::OK);
    std::fs::write(
        dir.path().join("0002_add_email.sql"),
        "ALTER TABLE users ADD COLUMN email varchar(320);",
    )
    .unwrap();
    (dir, cli)
}

#[tokio::test]
async fn an_edited_applied_migration_is_refused_until_its_new_text_is_accepted() {
    let db = TestDb::new().await;
    let (_dir, cli) = applied_then_edited(&db).await;

    let refused = cli.run(&["upgrade"]).await.expect(exit::REFUSED);
    for needle in ["2 (0002_add_email.sql", "repair --accept-checksum"] {
        assert!(
            refused.stderr.contains(needle),
            "{needle} not in: {}",
            refused.stderr
        );
    }
    let verify = cli.run(&["verify"]).await.expect(exit::REFUSED);
    assert!(verify.stdout.contains("DRIFTED"), "{}", verify.stdout);
    // The way out names the version, not a placeholder.
    for text in [&refused.stderr, &verify.stdout] {
        assert!(text.contains("--accept-checksum 2`"), "{text}");
        assert!(!text.contains("VERSION`"), "{text}");
    }
    // status says so too, counts the drifted row, and fails like verify.
    let status = cli.run(&["status"]).await.expect(exit::REFUSED);
    assert!(
        status.stdout.contains("(1 applied, 1 drifted)"),
        "{}",
        status.stdout
    );

    cli.run(&["repair", "--accept-checksum", "2"])
        .await
        .expect(exit::OK);
    cli.run(&["verify"]).await.expect(exit::OK);
    cli.run(&["upgrade"]).await.expect(exit::OK);

    // The edit was accepted, not run.
    assert_eq!(
        db.scalar(
            "SELECT data_type FROM information_schema.columns \
             WHERE table_name = 'users' AND column_name = 'email'"
        )
        .await
        .as_deref(),
        Some("text")
    );
    assert_eq!(
        audit(&db).await,
        ["1 up succeeded", "2 up succeeded", "2 repair succeeded"]
    );
}

#[tokio::test]
async fn a_failing_migration_exits_1_naming_file_and_line_and_leaves_nothing() {
    let db = TestDb::new().await;
    let dir = migrations_dir(&[
        ("0001_create_users.sql", "CREATE TABLE users (id int);"),
        (
            "0002_broken.sql",
            "CREATE TABLE orders (id int);\nINSERT INTO no_such_table VALUES (1);",
        ),
    ]);

    let outcome = Schemaop::new(&db.url, dir.path())
        .run(&["upgrade"])
        .await
        .expect(exit::FAILED);

    for needle in ["0002_broken.sql", "line 2", "no_such_table"] {
        assert!(
            outcome.stderr.contains(needle),
            "{needle} not in: {}",
            outcome.stderr
        );
    }
    assert_eq!(history(&db).await, ["1 applied"]);
    assert!(!table_exists(&db, "orders").await);
    assert_eq!(audit(&db).await, ["1 up succeeded", "2 up failed"]);
}

#[tokio::test]
async fn a_literal_quoted_by_a_syntax_error_is_never_printed_or_stored() {
    // PostgreSQL quotes the statement near a syntax error, literal and all.
    let secret = "s3cr3t-in-a-literal";
    for (file, sql) in [
        (
            "0001_role.sql",
            format!("SELECT 1;\nCREATE ROLE r WITH LOGIN '{secret}';"),
        ),
        (
            "0001_role.sql",
            format!("-- schemaop:no-transaction\nSELECT 1;\nCREATE ROLE r WITH LOGIN '{secret}';"),
        ),
    ] {
        let db = TestDb::new().await;
        let dir = migrations_dir(&[(file, &sql)]);
        let cli = Schemaop::new(&db.url, dir.path());

        let human = cli.run(&["upgrade"]).await.expect(exit::FAILED);
        human.assert_never_shows(secret);
        for needle in ["0001_role.sql", "syntax error at or near", "line"] {
            assert!(human.stderr.contains(needle), "{needle}: {}", human.stderr);
        }
        let json = cli.run(&["--output", "json", "upgrade"]).await;
        assert_ne!(json.code, Some(0), "{json:?}");
        json.assert_never_shows(secret);

        let stored = column(
            &db,
            "SELECT coalesce(error, '') FROM public.schemaop_migrations \
             UNION ALL SELECT coalesce(detail, '') FROM public.schemaop_migrations_audit",
        )
        .await;
        assert!(
            stored.iter().any(|text| text.contains("syntax error")),
            "the failure is recorded: {stored:?}"
        );
        for text in &stored {
            assert!(!text.contains(secret), "stored: {text}");
        }
    }
}

#[tokio::test]
async fn migration_text_stays_out_of_the_logs_at_every_level_unless_asked_for() {
    let secret = "pw-secret-in-a-migration";
    let role = format!("schemaop_logged_{}", std::process::id());
    let dir = migrations_dir(&[
        (
            "0001_role.sql",
            &format!("CREATE ROLE {role} LOGIN PASSWORD '{secret}';"),
        ),
        ("0002_drop_role.sql", &format!("DROP ROLE {role};")),
    ]);
    let runs: [(Option<&str>, &[&str]); 4] = [
        (Some("debug"), &["upgrade"]),
        (Some("trace"), &["upgrade"]),
        (None, &["--log-level", "trace", "upgrade"]),
        (
            Some("tokio_postgres=trace"),
            &["--log-level", "debug", "upgrade"],
        ),
    ];
    for (rust_log, args) in runs {
        let db = TestDb::new().await;
        let cli = Schemaop::new(&db.url, dir.path());
        let mut command = cli.command(args);
        if let Some(rust_log) = rust_log {
            command.env("RUST_LOG", rust_log);
        }
        let outcome = run(command).await.expect(exit::OK);
        assert!(
            outcome.stderr.contains(" DEBUG ") || outcome.stderr.contains(" TRACE "),
            "{rust_log:?} {args:?} logs below info: {}",
            outcome.stderr
        );
        outcome.assert_never_shows(secret);
    }

    // Asked for by name, the text is there: the check above can see it.
    let db = TestDb::new().await;
    let mut command =
        Schemaop::new(&db.url, dir.path()).command(&["--log-level", "debug", "upgrade"]);
    command.env("SCHEMAOP_LOG_SQL", "1");
    let outcome = run(command).await.expect(exit::OK);
    assert!(outcome.stderr.contains(secret), "{}", outcome.stderr);
}

#[tokio::test]
async fn a_lock_held_too_long_exits_6_and_changes_nothing() {
    let db = TestDb::new().await;
    let dir = three_tables();
    // Another session holds the migration lock of this database.
    let holder = db.client().await;
    let key = HistoryTable::default().lock_key(&db.name);
    holder
        .batch_execute(&format!("SELECT pg_advisory_lock({key})"))
        .await
        .unwrap();

    let outcome = Schemaop::new(&db.url, dir.path())
        .run(&["--lock-wait-timeout", "1s", "upgrade"])
        .await
        .expect(exit::LOCKED);

    assert!(
        outcome.stderr.contains("holds the migration lock"),
        "{}",
        outcome.stderr
    );
    assert!(!history_table_exists(&db).await);
    drop(holder);
}

// --- credentials and connections ------------------------------------------

#[tokio::test]
async fn bad_credentials_exit_5_naming_the_user_and_never_the_password() {
    let db = TestDb::new().await;
    let dir = three_tables();
    let user = format!("schemaop_nobody_{}", std::process::id());
    let url = url_as(&user, SECRET, &db.name);
    let cli = Schemaop::new(&url, dir.path());

    let human = cli.run(&["upgrade"]).await.expect(exit::UNREACHABLE);
    assert!(human.stderr.contains(&user), "{}", human.stderr);
    human.assert_never_shows(SECRET);

    let json = cli
        .run(&["--output", "json", "upgrade"])
        .await
        .expect(exit::UNREACHABLE);
    json.assert_never_shows(SECRET);
    let error = &json.json()["error"];
    assert_eq!(error["reason"], "AuthenticationFailed");
    assert!(
        error["message"].as_str().unwrap_or("").contains(&user),
        "{error}"
    );
    assert!(!history_table_exists(&db).await);
}

#[tokio::test]
async fn libpq_environment_variables_reach_the_database_as_for_psql() {
    let db = TestDb::new().await;
    let dir = three_tables();
    let config: tokio_postgres::Config = db.url.parse().expect("test URL");
    let host = match &config.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(host) => host.clone(),
        other => panic!("the tests use TCP, not {other:?}"),
    };
    let password = String::from_utf8(config.get_password().unwrap_or_default().to_vec()).unwrap();
    let mut upgrade = Schemaop::without_database(dir.path()).command(&["upgrade"]);
    upgrade
        .env("PGHOST", &host)
        .env("PGPORT", config.get_ports()[0].to_string())
        .env("PGUSER", config.get_user().expect("a user"))
        .env("PGDATABASE", &db.name)
        .env("PGPASSWORD", &password);

    let outcome = run(upgrade).await.expect(exit::OK);

    assert!(outcome.stdout.contains(&db.name), "{}", outcome.stdout);
    assert_eq!(history(&db).await, ["1 applied", "2 applied", "3 applied"]);
}

#[tokio::test]
async fn each_connection_failure_says_its_own_next_step() {
    let db = TestDb::new().await;
    let dir = three_tables();
    let missing_db = common::url_for("no_such_database_here");
    let role = url_as("no_such_role", "whatever", &db.name);
    for (url, needle) in [
        (missing_db.as_str(), "createdb no_such_database_here"),
        (role.as_str(), "has no role \"no_such_role\""),
        (
            &format!("postgres://app:{SECRET}@127.0.0.1:1/app"),
            "nothing accepts connections at",
        ),
        (
            &format!("postgres://app:{SECRET}@no-such-host.invalid/app"),
            "\"no-such-host.invalid\" does not resolve",
        ),
    ] {
        let outcome = Schemaop::new(url, dir.path())
            .run(&["status"])
            .await
            .expect(exit::UNREACHABLE);
        assert!(
            outcome.stderr.contains(needle),
            "{needle:?} missing:\n{}",
            outcome.stderr
        );
        outcome.assert_never_shows(SECRET);
        if !needle.contains("accepts") && !needle.contains("resolve") {
            assert!(
                !outcome.stderr.contains("check the host"),
                "{}",
                outcome.stderr
            );
        }
    }
}

#[tokio::test]
async fn an_unreachable_server_exits_5_naming_it_and_never_the_password() {
    let dir = three_tables();
    for url in [
        format!("postgres://app:{SECRET}@127.0.0.1:1/app"),
        format!("postgres://app@127.0.0.1:1/app?password={SECRET}"),
        format!("host=127.0.0.1 port=1 user=app password={SECRET} dbname=app"),
    ] {
        let outcome = Schemaop::new(&url, dir.path())
            .run(&["upgrade"])
            .await
            .expect(exit::UNREACHABLE);

        assert!(
            outcome.stderr.contains("127.0.0.1:1"),
            "{url}: {}",
            outcome.stderr
        );
        outcome.assert_never_shows(SECRET);
    }
}

#[tokio::test]

async fn a_role_that_may_only_create_tables_in_public_can_upgrade() {
    // The usual least-privilege application role: it may create tables in
    // `public`, but not schemas in the database.
    let role = TestRole::new("Pw-app-role-2b8d").await;
    let db = TestDb::new().await;
    db.client()
        .await
        .batch_execute(&format!(
            "GRANT USAGE, CREATE ON SCHEMA public TO {}",
            role.name
        ))
        .await
        .unwrap();
    common::connect(&role.url(&db))
        .await
        .batch_execute("CREATE TABLE probe (); DROP TABLE probe;")
        .await
        .expect("the role can create tables in public");
    let dir = three_tables();

    Schemaop::new(&role.url(&db), dir.path())
        .run(&["upgrade"])
        .await
        .expect(exit::OK);

    assert_eq!(history(&db).await, ["1 applied", "2 applied", "3 applied"]);
}

#[tokio::test]
async fn an_invalid_url_exits_5_without_echoing_it() {
    let dir = three_tables();
    for url in [
        format!("postgres://app:{SECRET}@127.0.0.1:notaport/app"),
        format!("postgres://app:{SECRET}@127.0.0.1:5432/app?sslmode={SECRET}"),
        format!("postgres://app:{SECRET}@127.0.0.1:5432/app?{SECRET}=1"),
        format!("host=127.0.0.1 port=notaport user=app password={SECRET}"),
    ] {
        for output in ["human", "json"] {
            let outcome = Schemaop::new(&url, dir.path())
                .run(&["--output", output, "status"])
                .await
                .expect(exit::UNREACHABLE);
            // An unknown sslmode is a TLS setting; the rest are the URL's.
            let said = format!("{}{}", outcome.stdout, outcome.stderr);
            assert!(
                said.contains("invalid database URL") || said.contains("invalid TLS settings"),
                "{url}: {outcome:?}"
            );
            outcome.assert_never_shows(SECRET);
        }
    }
}

/// Passwords made of pieces no message would hold by chance, joined by the
/// characters URLs reserve, plus a space and non-ASCII letters.
const NASTY_PASSWORDS: [&str; 8] = [
    "Qz1@Wx2",
    "Qz1:Wx2",
    "Qz1/Wx2",
    "Qz1%Wx2",
    "Qz1#Wx2",
    "Qz1 Wx2",
    "Qz1\u{e9}\u{20ac}\u{1F511}Wx2",
    "Qz1@Wx2:Ev3/Rt4%Yu5#Io6?Pa7 Sd8",
];

/// No piece of any nasty password, nor the non-ASCII characters of one.
const PASSWORD_PIECES: [&str; 11] = [
    "Qz1",
    "Wx2",
    "Ev3",
    "Rt4",
    "Yu5",
    "Io6",
    "Pa7",
    "Sd8",
    "\u{e9}",
    "\u{20ac}",
    "\u{1F511}",
];

#[tokio::test]
async fn no_error_from_a_url_shows_any_piece_of_a_nasty_password() {
    let db = TestDb::new().await;
    let dir = three_tables();
    let nobody = format!("schemaop_nobody_{}", std::process::id());
    let server = url_as("u", "p", &db.name);
    let server = server.split_once('@').expect("a URL with credentials").1;
    let server = server.split_once('/').expect("a URL with a path").0;
    for password in NASTY_PASSWORDS {
        let encoded =
            percent_encoding::utf8_percent_encode(password, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        for written in [password.to_string(), encoded] {
            for (path, url) in [
                (
                    "parse",
                    format!("postgres://app:{written}@127.0.0.1:notaport/app"),
                ),
                (
                    "dns",
                    format!("postgres://app:{written}@schemaop-no-such-host.invalid:5432/app"),
                ),
                (
                    "refused",
                    format!("postgres://app:{written}@127.0.0.1:1/app"),
                ),
                (
                    "auth",
                    format!("postgres://{nobody}:{written}@{server}/{}", db.name),
                ),
            ] {
                for output in ["human", "json"] {
                    let outcome = Schemaop::new(&url, dir.path())
                        .run(&["--output", output, "status"])
                        .await
                        .expect(exit::UNREACHABLE);
                    for piece in PASSWORD_PIECES {
                        assert!(
                            !outcome.stdout.contains(piece) && !outcome.stderr.contains(piece),
                            "{path}, {output}, password {password:?} written {written:?}: \
                             {piece:?} was printed\n{outcome:?}"
                        );
                    }
                }
            }
        }
    }
}

#[tokio::test]
async fn an_unencoded_at_in_the_password_is_refused_saying_how_to_encode_it() {
    let dir = three_tables();
    // From the report: the end of the password showed in a DNS error.
    let url = "postgres://u:p@ss%w0rd@127.0.0.1/db";
    let cli = Schemaop::new(url, dir.path());

    let human = cli.run(&["status"]).await.expect(exit::UNREACHABLE);
    for needle in ["password", "%40", "%25"] {
        assert!(human.stderr.contains(needle), "{needle}: {}", human.stderr);
    }
    human.assert_never_shows("ss%w0rd");
    human.assert_never_shows("w0rd");

    let json = cli
        .run(&["--output", "json", "status"])
        .await
        .expect(exit::UNREACHABLE);
    json.assert_never_shows("w0rd");
    let error = &json.json()["error"];
    assert_eq!(error["reason"], "InvalidDatabaseUrl");
    assert!(
        error["message"].as_str().unwrap_or("").contains("%40"),
        "{error}"
    );
}

#[tokio::test]
async fn sqlalchemy_urls_connect_with_the_driver_dropped() {
    let db = TestDb::new().await;
    let dir = three_tables();
    let url = db.url.split_once("://").expect("a URL").1.to_string();
    for scheme in [
        "postgresql+asyncpg",
        "postgresql+psycopg2",
        "postgresql+psycopg",
        "postgresql+pg8000",
        "postgresql",
        "postgres",
    ] {
        Schemaop::new(&format!("{scheme}://{url}"), dir.path())
            .run(&["status"])
            .await
            .expect(exit::OK);
    }
    let outcome = Schemaop::new(&format!("mysql+pymysql://{url}"), dir.path())
        .run(&["status"])
        .await
        .expect(exit::UNREACHABLE);
    assert!(
        outcome.stderr.contains("`mysql+pymysql://`"),
        "{}",
        outcome.stderr
    );
}

#[tokio::test]
async fn no_database_url_is_a_usage_error_saying_how_to_give_one() {
    let dir = three_tables();
    let outcome = Schemaop::without_database(dir.path())
        .run(&["status"])
        .await
        .expect(exit::USAGE);
    assert!(
        outcome.stderr.contains("DATABASE_URL"),
        "{}",
        outcome.stderr
    );
}

#[tokio::test]
async fn no_verb_ever_prints_the_password() {
    // A real role whose password is in the URL of every run.
    let password = "Pw-only-in-the-URL-7f3a";
    let role = TestRole::new(password).await;
    let verbs: &[(&[&str], u8)] = &[
        (&["upgrade"], exit::OK),
        (&["status"], exit::OK),
        (&["history"], exit::OK),
        (&["current"], exit::OK),
        (&["plan"], exit::OK),
        (&["verify"], exit::OK),
        (&["downgrade", "--steps", "1"], exit::OK),
        (&["plan"], exit::OK),
        (&["plan", "--sql"], exit::OK),
        (&["upgrade"], exit::OK),
        (&["stamp", "latest"], exit::OK),
        (&["repair", "--accept-checksum", "1"], exit::OK),
        (&["downgrade", "--to", "base"], exit::OK),
        (&["--log-level", "trace", "upgrade"], exit::OK),
        (&["upgrade", "--to", "999"], exit::REFUSED),
    ];
    for output in ["human", "json"] {
        let db = TestDb::new().await;
        role.grant_all_on(&db).await;
        let dir = three_tables();
        let cli = Schemaop::new(&role.url(&db), dir.path());
        for (verb, code) in verbs {
            let args: Vec<&str> = ["--output", output].iter().chain(*verb).copied().collect();
            let outcome = cli.run(&args).await;
            assert_eq!(
                outcome.code,
                Some(i32::from(*code)),
                "{output} {verb:?}: {outcome:?}"
            );
            outcome.assert_never_shows(password);
        }
        // The runs really were this role's.
        assert_eq!(
            db.scalar("SELECT tableowner FROM pg_tables WHERE tablename = 'schemaop_migrations'")
                .await,
            Some(role.name.clone())
        );
        assert_eq!(history(&db).await, ["1 applied", "2 applied", "3 applied"]);
    }
}

#[tokio::test]
async fn verify_pending_fails_while_the_database_is_not_at_head() {
    let db = TestDb::new().await;
    let dir = three_tables();
    let cli = Schemaop::new(&db.url, dir.path());
    cli.run(&["upgrade", "0002"]).await.expect(exit::OK);

    cli.run(&["verify"]).await.expect(exit::OK);
    let behind = cli
        .run(&["verify", "--pending-fails"])
        .await
        .expect(exit::REFUSED);
    assert!(
        behind
            .stdout
            .contains("not at head: 1 migration pending (3)"),
        "{}",
        behind.stdout
    );
    let json = cli
        .run(&["--output", "json", "verify", "--pending-fails"])
        .await;
    assert_eq!(
        json.expect(exit::REFUSED).json()["verify"]["pending"],
        serde_json::json!([3])
    );

    cli.run(&["upgrade"]).await.expect(exit::OK);
    cli.run(&["verify", "--pending-fails"])
        .await
        .expect(exit::OK);
}

#[tokio::test]
async fn current_and_history_need_only_the_database() {
    let db = TestDb::new().await;
    let dir = three_tables();
    Schemaop::new(&db.url, dir.path())
        .run(&["upgrade"])
        .await
        .expect(exit::OK);
    let nowhere = dir.path().join("not-here");
    let cli = Schemaop::new(&db.url, &nowhere);

    assert_eq!(cli.run(&["current"]).await.expect(exit::OK).stdout, "3\n");
    let history = cli.run(&["history"]).await.expect(exit::OK).stdout;
    assert!(history.contains("create invoices"), "{history}");
    // Verbs that compare with the files still need them.
    cli.run(&["status"]).await.expect(exit::INVALID_SOURCE);
}

#[tokio::test]
async fn history_verbose_shows_what_the_table_has_no_room_for() {
    let db = TestDb::new().await;
    let dir = three_tables();
    let cli = Schemaop::new(&db.url, dir.path());
    cli.run(&["upgrade"]).await.expect(exit::OK);
    let checksum = db
        .scalar("SELECT checksum FROM public.schemaop_migrations WHERE version = 2")
        .await
        .expect("a checksum");

    for flag in ["--verbose", "-v"] {
        let out = cli.run(&["history", flag]).await.expect(exit::OK).stdout;
        assert!(
            out.contains("2 (create orders)\n  state:    applied"),
            "{out}"
        );
        assert!(out.contains(&format!("  checksum: {checksum}")), "{out}");
    }
    let plain = cli.run(&["history"]).await.expect(exit::OK).stdout;
    assert!(!plain.contains("checksum:"), "{plain}");
}

#[tokio::test]
async fn a_folder_without_migrations_is_an_error_unless_allowed() {
    let db = TestDb::new().await;
    let empty = tempfile::tempdir().unwrap();
    std::fs::write(empty.path().join("README.md"), "not a migration").unwrap();
    let cli = Schemaop::new(&db.url, empty.path());

    let outcome = cli.run(&["upgrade"]).await.expect(exit::INVALID_SOURCE);
    assert!(
        outcome.stderr.contains("no migrations found in"),
        "{}",
        outcome.stderr
    );
    assert!(
        outcome.stderr.contains("--allow-empty"),
        "{}",
        outcome.stderr
    );
    assert!(!history_table_exists(&db).await);

    cli.run(&["--allow-empty", "upgrade"])
        .await
        .expect(exit::OK);
}

#[tokio::test]
async fn one_migration_is_spoken_of_in_the_singular_and_base_by_its_name() {
    let db = TestDb::new().await;
    let dir = three_tables();
    let cli = Schemaop::new(&db.url, dir.path());

    let one = cli.run(&["upgrade", "+1"]).await.expect(exit::OK).stdout;
    assert!(one.contains("(1 migration,"), "{one}");
    let all = cli.run(&["upgrade"]).await.expect(exit::OK).stdout;
    assert!(all.contains("(2 migrations,"), "{all}");
    // An upgrade never goes down, and says how to, in the CLI's own words.
    let down = cli
        .run(&["upgrade", "--to", "base"])
        .await
        .expect(exit::REFUSED);
    assert!(
        down.stderr.contains("the target base is below it"),
        "{}",
        down.stderr
    );
    assert!(
        down.stderr.contains("schemaop downgrade"),
        "{}",
        down.stderr
    );
    assert!(
        !down.stderr.contains("spec.allowDowngrade"),
        "{}",
        down.stderr
    );
}

#[tokio::test]
async fn a_new_migration_not_yet_written_stops_only_the_commands_that_would_run_it() {
    let db = TestDb::new().await;
    let dir = three_tables();
    let cli = Schemaop::new(&db.url, dir.path());
    cli.run(&["upgrade"]).await.expect(exit::OK);
    cli.run(&["new", "add users"]).await.expect(exit::OK);
    let up = "0004_add_users.up.sql";

    // Read-only verbs keep working and show it.
    let status = cli.run(&["status"]).await.expect(exit::OK).stdout;
    assert!(status.contains("EMPTY (pending)"), "{status}");
    assert_eq!(cli.run(&["current"]).await.expect(exit::OK).stdout, "3\n");
    cli.run(&["history"]).await.expect(exit::OK);
    let plan = cli.run(&["plan"]).await.expect(exit::OK).stdout;
    assert!(plan.contains("EMPTY"), "{plan}");
    let sql = cli.run(&["plan", "--sql"]).await.expect(exit::OK).stdout;
    assert!(
        sql.contains("-- Not printed") && !sql.contains("INSERT"),
        "{sql}"
    );

    // Those that would run it refuse, naming the file and the way on.
    let upgrade = cli.run(&["upgrade"]).await.expect(exit::INVALID_SOURCE);
    assert!(upgrade.stderr.contains(up), "{}", upgrade.stderr);
    assert!(
        upgrade.stderr.contains("write the migration's SQL"),
        "{}",
        upgrade.stderr
    );
    cli.run(&["verify"]).await.expect(exit::REFUSED);

    // Written, it runs; its down file, still empty, is named on the way back.
    std::fs::write(dir.path().join(up), "CREATE TABLE people (id int);").unwrap();
    cli.run(&["upgrade"]).await.expect(exit::OK);
    let down = cli
        .run(&["downgrade", "-1"])
        .await
        .expect(exit::INVALID_SOURCE);
    assert!(
        down.stderr.contains("0004_add_users.down.sql"),
        "{}",
        down.stderr
    );
    assert!(
        down.stderr.contains("delete the down file"),
        "{}",
        down.stderr
    );
    assert!(table_exists(&db, "people").await);
}

#[tokio::test]
async fn new_takes_its_name_as_alembic_takes_a_message() {
    let dir = one_sequential_migration();
    Schemaop::without_database(dir.path())
        .run(&["new", "-m", "add email"])
        .await
        .expect(exit::OK);
    assert!(
        files_in(dir.path()).contains(&"0002_add_email.up.sql".to_string()),
        "{:?}",
        files_in(dir.path())
    );
    let help = Schemaop::without_database(dir.path())
        .run(&["new", "--help"])
        .await
        .expect(exit::OK)
        .stdout;
    // The sentence ends where it should, however the terminal wraps it.
    let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        help.contains("the folder decides: sequential numbers when its files have them"),
        "{help}"
    );
}

#[tokio::test]
async fn database_url_from_the_environment_is_used_but_never_shown_in_help() {
    let password = "Pw-env-only-9c1e";
    let role = TestRole::new(password).await;
    let db = TestDb::new().await;
    role.grant_all_on(&db).await;
    let dir = three_tables();
    let cli = Schemaop::without_database(dir.path());

    for args in [
        &["--help"][..],
        &["upgrade", "--help"],
        &["status", "--help"],
    ] {
        let mut command = cli.command(args);
        command.env("DATABASE_URL", role.url(&db));
        let outcome = run(command).await.expect(exit::OK);
        assert!(
            outcome.stdout.contains("DATABASE_URL"),
            "{}",
            outcome.stdout
        );
        outcome.assert_never_shows(password);
        outcome.assert_never_shows(&db.name);
    }

    let mut command = cli.command(&["upgrade"]);
    command.env("DATABASE_URL", role.url(&db));
    run(command)
        .await
        .expect(exit::OK)
        .assert_never_shows(password);
    assert_eq!(history(&db).await, ["1 applied", "2 applied", "3 applied"]);
}

// --- output for scripts ---------------------------------------------------

#[tokio::test]
async fn json_output_parses_and_carries_the_state() {
    let db = TestDb::new().await;
    let dir = migrations_dir(&[
        ("0001_create_users.sql", "CREATE TABLE users (id int);"),
        (
            "0002_index_users.sql",
            "-- schemaop:no-transaction\nCREATE INDEX CONCURRENTLY users_id_idx ON users (id);",
        ),
        ("0003_create_orders.up.sql", "CREATE TABLE orders (id int);"),
        ("0003_create_orders.down.sql", "DROP TABLE orders;"),
    ]);
    let cli = Schemaop::new(&db.url, dir.path());
    let json = async |args: &[&str]| {
        let args: Vec<&str> = ["--output", "json"].iter().chain(args).copied().collect();
        cli.run(&args).await.expect(exit::OK).json()
    };

    let plan = &json(&["plan"]).await["plan"];
    assert_eq!(plan["current"], Value::Null);
    assert_eq!(plan["target"], 3);
    assert_eq!(plan["sql"], Value::Null);
    let steps = plan["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 3);
    assert_eq!(steps[1]["version"], 2);
    assert_eq!(steps[1]["file"], "0002_index_users.sql");
    assert_eq!(steps[1]["transactional"], false);
    assert_eq!(steps[2]["description"], "create orders");
    assert_eq!(steps[2]["direction"], "up");

    let upgrade = json(&["upgrade"]).await;
    assert_eq!(upgrade["upgrade"]["from"], Value::Null);
    assert_eq!(upgrade["upgrade"]["to"], 3);
    let versions: Vec<&Value> = upgrade["upgrade"]["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| &s["version"])
        .collect();
    assert_eq!(versions, [1, 2, 3]);
    let database = upgrade["database"].as_str().expect("database");
    assert!(database.ends_with(&format!("/{}", db.name)), "{database}");

    assert_eq!(
        json(&["current"]).await["current"],
        serde_json::json!({ "version": 3 })
    );

    let history = json(&["history"]).await;
    let records = history["history"].as_array().expect("history");
    assert_eq!(records.len(), 3);
    assert_eq!(records[0]["version"], 1);
    assert_eq!(records[0]["description"], "create users");
    assert_eq!(records[0]["state"], "applied");
    assert_eq!(records[0]["checksum"].as_str().map(str::len), Some(64));

    let status = &json(&["status"]).await["status"];
    assert_eq!(status["current"], 3);
    assert_eq!(status["latest"], 3);
    let states: Vec<&Value> = status["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| &e["state"])
        .collect();
    assert_eq!(states, ["applied", "applied", "applied"]);

    let plan = &json(&["plan"]).await["plan"];
    assert_eq!(plan["current"], 3);
    assert_eq!(plan["steps"], serde_json::json!([]));

    assert_eq!(
        json(&["verify"]).await["verify"],
        serde_json::json!({ "ok": true, "problems": [], "pending": [] })
    );
}

/// The top-level keys of a JSON document, sorted.
fn keys(document: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = document
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {document}"))
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    keys
}

#[tokio::test]
async fn every_verb_prints_one_envelope_keyed_by_its_name_with_the_database() {
    let db = TestDb::new().await;
    let dir = three_tables();
    let cli = Schemaop::new(&db.url, dir.path());
    let verbs: &[(&str, &[&str])] = &[
        ("upgrade", &["upgrade", "2"]),
        ("plan", &["plan"]),
        ("status", &["status"]),
        ("verify", &["verify"]),
        ("current", &["current"]),
        ("history", &["history"]),
        ("downgrade", &["downgrade", "-1"]),
        ("stamp", &["stamp", "2"]),
        ("repair", &["repair", "--accept-checksum", "1"]),
        ("wait", &["wait", "--revision", "1", "--timeout", "10s"]),
    ];
    for (verb, args) in verbs {
        let args: Vec<&str> = ["--output", "json"].iter().chain(*args).copied().collect();

        let document = cli.run(&args).await.expect(exit::OK).json();

        let mut expected = vec!["database", verb];
        expected.sort();
        assert_eq!(keys(&document), expected, "{verb}: {document}");
        let database = document["database"].as_str().expect("database");
        assert!(
            database.ends_with(&format!("/{}", db.name)),
            "{verb}: {database}"
        );
    }

    let new = Schemaop::without_database(dir.path())
        .run(&["--output", "json", "new", "add orders"])
        .await
        .expect(exit::OK)
        .json();
    assert_eq!(keys(&new), ["database", "new"], "{new}");
    assert_eq!(new["database"], Value::Null);
    assert_eq!(
        new["new"]["created"].as_array().map(Vec::len),
        Some(2),
        "{new}"
    );
}

#[tokio::test]
async fn an_error_is_the_same_envelope_with_its_reason_and_exit_code() {
    let db = TestDb::new().await;
    let dir = three_tables();
    let cli = Schemaop::new(&db.url, dir.path());

    let document = cli
        .run(&["--output", "json", "upgrade", "99"])
        .await
        .expect(exit::REFUSED)
        .json();

    assert_eq!(keys(&document), ["database", "error"], "{document}");
    assert!(document["database"].as_str().is_some(), "{document}");
    assert_eq!(document["error"]["reason"], "TargetNotFound");
    assert_eq!(document["error"]["exit_code"], exit::REFUSED);
    assert!(
        document["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("99")),
        "{document}"
    );
    let usage = Schemaop::without_database(dir.path())
        .run(&["--output", "json", "status"])
        .await
        .expect(exit::USAGE)
        .json();
    assert_eq!(keys(&usage), ["database", "error"], "{usage}");
    assert_eq!(usage["database"], Value::Null);
}

// --- help -------------------------------------------------------------------

#[tokio::test]
async fn each_verbs_help_lists_only_the_options_it_uses() {
    let dir = tempfile::tempdir().unwrap();
    let cli = Schemaop::without_database(dir.path());
    let help = async |verb: &str| cli.run(&[verb, "--help"]).await.expect(exit::OK).stdout;
    let cases: &[(&str, &[&str], &[&str])] = &[
        (
            "new",
            &["--dir", "--output"],
            &["--database-url", "--lock-timeout", "--history-table"],
        ),
        (
            "crd",
            &[],
            &["--database-url", "--dir", "--output", "--lock-timeout"],
        ),
        (
            "current",
            &["--database-url", "--history-table"],
            &["--dir", "--lock-timeout", "--allow-empty"],
        ),
        (
            "status",
            &["--database-url", "--dir"],
            &["--lock-timeout", "--lock-retry-budget"],
        ),
        (
            "upgrade",
            &[
                "--database-url",
                "--dir",
                "--lock-timeout",
                "--lock-retry-budget",
            ],
            &[],
        ),
    ];
    for (verb, listed, left_out) in cases {
        let text = help(verb).await;

        for option in *listed {
            assert!(
                text.contains(option),
                "`{verb} --help` lacks {option}:\n{text}"
            );
        }
        for option in *left_out {
            assert!(
                !text.contains(option),
                "`{verb} --help` lists {option}:\n{text}"
            );
        }
    }
}

#[tokio::test]
async fn options_a_verb_does_not_use_are_still_accepted_before_or_after_it() {
    let db = TestDb::new().await;
    let dir = three_tables();
    let cli = Schemaop::new(&db.url, dir.path());
    cli.run(&["upgrade"]).await.expect(exit::OK);

    // One alias with --dir and --lock-timeout serves every verb.
    let current = cli
        .run(&["--lock-timeout", "1s", "current", "--allow-empty"])
        .await
        .expect(exit::OK);
    assert_eq!(current.stdout, "3\n");
    let json = cli
        .run(&["current", "--output", "json", "--lock-timeout", "1s"])
        .await
        .expect(exit::OK)
        .json();
    assert_eq!(json["current"]["version"], 3, "{json}");
}

// --- colour -----------------------------------------------------------------

const ESCAPE: &str = "\x1b[";

#[tokio::test]
async fn colour_marks_drift_errors_and_the_current_version_only_when_asked_or_on_a_terminal() {
    let db = TestDb::new().await;
    let (_dir, cli) = applied_then_edited(&db).await;

    // Piped, as in CI logs and scripts: no escapes anywhere.
    let piped = cli.run(&["status"]).await.expect(exit::REFUSED);
    assert!(!piped.stdout.contains(ESCAPE), "{:?}", piped.stdout);
    let refused = cli.run(&["upgrade"]).await.expect(exit::REFUSED);
    assert!(!refused.stderr.contains(ESCAPE), "{:?}", refused.stderr);

    let coloured = cli
        .run(&["status", "--color", "always"])
        .await
        .expect(exit::REFUSED);
    let drifted = coloured
        .stdout
        .lines()
        .find(|l| l.contains("DRIFTED"))
        .unwrap_or_else(|| panic!("{}", coloured.stdout));
    assert!(
        drifted.contains(&format!("{ESCAPE}1m{ESCAPE}31m")),
        "{drifted:?}"
    );
    let applied = coloured
        .stdout
        .lines()
        .find(|l| l.starts_with("1 "))
        .unwrap();
    assert!(applied.contains(&format!("{ESCAPE}32m")), "{applied:?}");
    let error = cli
        .run(&["upgrade", "--color", "always"])
        .await
        .expect(exit::REFUSED);
    assert!(error.stderr.starts_with(ESCAPE), "{:?}", error.stderr);
    let current = cli
        .run(&["current", "--color", "always"])
        .await
        .expect(exit::OK);
    assert!(current.stdout.contains(ESCAPE), "{:?}", current.stdout);

    // NO_COLOR turns `auto` off, and an explicit `never` beats CLICOLOR_FORCE.
    let mut forced = cli.command(&["status", "--color", "never"]);
    forced.env("CLICOLOR_FORCE", "1");
    let never = run(forced).await.expect(exit::REFUSED);
    assert!(!never.stdout.contains(ESCAPE), "{:?}", never.stdout);
    let mut forced_auto = cli.command(&["status"]);
    forced_auto.env("CLICOLOR_FORCE", "1");
    let auto = run(forced_auto).await.expect(exit::REFUSED);
    assert!(auto.stdout.contains(ESCAPE), "{:?}", auto.stdout);
    let mut no_color = cli.command(&["status"]);
    no_color.env("CLICOLOR_FORCE", "1").env("NO_COLOR", "1");
    let plain = run(no_color).await.expect(exit::REFUSED);
    assert!(!plain.stdout.contains(ESCAPE), "{:?}", plain.stdout);

    // JSON is for scripts: never coloured.
    let json = cli
        .run(&["status", "--color", "always", "--output", "json"])
        .await
        .expect(exit::REFUSED);
    assert!(!json.stdout.contains(ESCAPE), "{:?}", json.stdout);
}

// --- plan --sql -----------------------------------------------------------

/// The text between `sql` and the `COMMIT;` that ends its transaction,
/// checking that `BEGIN;` comes right before it.
#[track_caller]
fn rest_of_transaction<'a>(script: &'a str, sql: &str) -> &'a str {
    let at = script
        .find(sql)
        .unwrap_or_else(|| panic!("{sql} not in:\n{script}"));
    assert!(
        script[..at].trim_end().ends_with("BEGIN;"),
        "no BEGIN; right before {sql}:\n{script}"
    );
    let rest = &script[at + sql.len()..];
    let end = rest
        .find("COMMIT;")
        .unwrap_or_else(|| panic!("no COMMIT; after {sql}:\n{script}"));
    &rest[..end]
}

#[tokio::test]
async fn plan_sql_prints_each_transaction_and_executes_nothing() {
    let db = TestDb::new().await;
    let dir = three_tables();

    let outcome = Schemaop::new(&db.url, dir.path())
        .run(&["plan", "--sql"])
        .await
        .expect(exit::OK);

    let script = outcome.stdout;
    for (version, sql) in [
        (1, "CREATE TABLE users (id int PRIMARY KEY);"),
        (
            3,
            "CREATE TABLE invoices (id int PRIMARY KEY, order_id int REFERENCES orders);",
        ),
    ] {
        let rest = rest_of_transaction(&script, sql);
        assert!(
            rest.contains(r#"INSERT INTO "public"."schemaop_migrations" ("#)
                && rest.contains(&format!("VALUES ({version}, ")),
            "no history row for {version} in:\n{rest}"
        );
        assert!(
            rest.contains(r#"INSERT INTO "public"."schemaop_migrations_audit""#),
            "no audit row for {version} in:\n{rest}"
        );
    }
    assert_eq!(relation_count(&db).await, 0);
    assert_eq!(
        db.count("SELECT count(*) FROM pg_namespace WHERE nspname NOT LIKE 'pg_%' AND nspname NOT IN ('public', 'information_schema')")
            .await,
        0
    );
}

#[tokio::test]
async fn plan_sql_writes_each_history_row_and_its_audit_row_in_one_statement() {
    let db = TestDb::new().await;
    let dir = three_tables();

    let script = Schemaop::new(&db.url, dir.path())
        .run(&["plan", "--sql"])
        .await
        .expect(exit::OK)
        .stdout;

    for sql in [
        "CREATE TABLE users (id int PRIMARY KEY);",
        "CREATE TABLE invoices (id int PRIMARY KEY, order_id int REFERENCES orders);",
    ] {
        let rest = rest_of_transaction(&script, sql);
        let writes: Vec<&str> = rest
            .split(";\n")
            .filter(|statement| statement.contains("INSERT INTO"))
            .collect();
        assert_eq!(writes.len(), 1, "after {sql}:\n{rest}");
        assert!(
            writes[0].contains(r#""public"."schemaop_migrations" ("#)
                && writes[0].contains(r#""public"."schemaop_migrations_audit""#),
            "after {sql}:\n{rest}"
        );
    }
}

#[tokio::test]
async fn plan_sql_run_by_hand_leaves_the_database_where_upgrade_would() {
    let db = TestDb::new().await;
    let dir = three_tables();
    let cli = Schemaop::new(&db.url, dir.path());
    let script = cli.run(&["plan", "--sql"]).await.expect(exit::OK).stdout;

    db.client()
        .await
        .batch_execute(&script)
        .await
        .unwrap_or_else(|e| panic!("the printed script fails ({e}):\n{script}"));

    cli.run(&["verify"]).await.expect(exit::OK);
    assert_eq!(cli.run(&["current"]).await.expect(exit::OK).stdout, "3\n");
    assert_eq!(history(&db).await, ["1 applied", "2 applied", "3 applied"]);
    let nothing = cli.run(&["upgrade"]).await.expect(exit::OK);
    assert!(nothing.stdout.contains("up to date"), "{}", nothing.stdout);
}

/// Three migrations as a DBA would get them: a trailing comment with no
/// `;` after it, and an index built outside a transaction.
fn commented_with_an_index() -> tempfile::TempDir {
    migrations_dir(&[
        (
            "0001_create_users.up.sql",
            "-- who signs in\nCREATE TABLE users (id int PRIMARY KEY, email text);\n\
             INSERT INTO users VALUES (1, 'a@example.com') -- the first user",
        ),
        ("0001_create_users.down.sql", "DROP TABLE users;"),
        (
            "0002_index_email.up.sql",
            "-- no-transaction\nCREATE INDEX CONCURRENTLY users_email ON users (email);",
        ),
        (
            "0002_index_email.down.sql",
            "-- no-transaction\nDROP INDEX CONCURRENTLY users_email;",
        ),
        (
            "0003_create_orders.up.sql",
            "CREATE TABLE orders (id int PRIMARY KEY, user_id int REFERENCES users);",
        ),
        ("0003_create_orders.down.sql", "DROP TABLE orders;"),
    ])
}

/// Runs a script as a DBA would: psql, stopping at the first error.
fn psql(db: &TestDb, script: &str) {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), script).unwrap();
    let path = file.path().to_string_lossy().into_owned();
    common::run_program(
        &common::pg_program("psql"),
        &[
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            &db.url,
            "-f",
            &path,
        ],
    )
    .unwrap_or_else(|e| panic!("psql fails on the printed script ({e}):\n{script}"));
}

#[track_caller]
fn assert_no_placeholders(script: &str) {
    assert!(
        !script.lines().any(|l| l.trim() == ";"),
        "a lone `;` line in:\n{script}"
    );
    assert!(
        !script.contains("duration_ms = 0"),
        "a duration a run would not write in:\n{script}"
    );
}

#[tokio::test]
async fn plan_sql_offline_needs_no_database_and_psql_runs_it_to_where_upgrade_goes() {
    let dir = commented_with_an_index();

    let script = Schemaop::without_database(dir.path())
        .run(&["plan", "--sql", "--offline"])
        .await
        .expect(exit::OK)
        .stdout;

    assert_no_placeholders(&script);
    assert!(script.contains("CREATE TABLE IF NOT EXISTS"), "{script}");
    let by_hand = TestDb::new().await;
    psql(&by_hand, &script);
    let cli = Schemaop::new(&by_hand.url, dir.path());
    cli.run(&["verify"]).await.expect(exit::OK);
    assert_eq!(
        history(&by_hand).await,
        ["1 applied", "2 applied", "3 applied"]
    );
    assert_eq!(
        by_hand
            .count("SELECT count(*) FROM pg_indexes WHERE indexname = 'users_email'")
            .await,
        1
    );
    assert_eq!(
        by_hand
            .count("SELECT count(*) FROM schemaop_migrations_audit WHERE outcome = 'succeeded'")
            .await,
        3
    );
    let nothing = cli.run(&["upgrade"]).await.expect(exit::OK);
    assert!(nothing.stdout.contains("up to date"), "{}", nothing.stdout);
}

#[tokio::test]
async fn plan_sql_from_a_version_prints_only_what_follows_it() {
    let db = TestDb::new().await;
    let dir = commented_with_an_index();
    let cli = Schemaop::new(&db.url, dir.path());
    cli.run(&["upgrade", "1"]).await.expect(exit::OK);

    let script = Schemaop::without_database(dir.path())
        .run(&["plan", "--sql", "--from", "1"])
        .await
        .expect(exit::OK)
        .stdout;

    assert!(!script.contains("CREATE TABLE users"), "{script}");
    assert!(!script.contains("CREATE TABLE IF NOT EXISTS"), "{script}");
    psql(&db, &script);
    cli.run(&["verify"]).await.expect(exit::OK);
    assert_eq!(history(&db).await, ["1 applied", "2 applied", "3 applied"]);
}

#[tokio::test]
async fn plan_sql_offline_down_from_head_reverts_what_psql_is_given() {
    let db = TestDb::new().await;
    let dir = commented_with_an_index();
    let cli = Schemaop::new(&db.url, dir.path());
    cli.run(&["upgrade"]).await.expect(exit::OK);

    let script = Schemaop::without_database(dir.path())
        .run(&["plan", "--sql", "--down", "--from", "head", "-2"])
        .await
        .expect(exit::OK)
        .stdout;

    assert_no_placeholders(&script);
    psql(&db, &script);
    assert_eq!(history(&db).await, ["1 applied"]);
    assert_eq!(
        db.count("SELECT count(*) FROM pg_indexes WHERE indexname = 'users_email'")
            .await,
        0
    );
}

#[tokio::test]
async fn plan_sql_online_prints_no_lone_semicolons_or_placeholder_durations() {
    let db = TestDb::new().await;
    let dir = commented_with_an_index();

    let script = Schemaop::new(&db.url, dir.path())
        .run(&["plan", "--sql"])
        .await
        .expect(exit::OK)
        .stdout;

    assert_no_placeholders(&script);
    assert!(
        script.contains("INSERT INTO users VALUES (1, 'a@example.com'); -- the first user"),
        "{script}"
    );
}

#[tokio::test]
async fn upgrade_head_sql_prints_the_offline_script_as_alembic_does_and_runs_nothing() {
    let dir = commented_with_an_index();

    let upgrade = Schemaop::without_database(dir.path())
        .run(&["upgrade", "head", "--sql"])
        .await
        .expect(exit::OK)
        .stdout;
    let plan = Schemaop::without_database(dir.path())
        .run(&["plan", "head", "--sql", "--offline"])
        .await
        .expect(exit::OK)
        .stdout;
    let downgrade = Schemaop::without_database(dir.path())
        .run(&["downgrade", "-1", "--sql"])
        .await
        .expect(exit::OK)
        .stdout;

    assert_eq!(upgrade, plan);
    assert!(downgrade.contains("DROP TABLE orders;"), "{downgrade}");
    assert!(!downgrade.contains("DROP INDEX"), "{downgrade}");
}

#[tokio::test]
async fn plan_offline_refuses_steps_as_a_starting_point() {
    let dir = commented_with_an_index();

    let outcome = Schemaop::without_database(dir.path())
        .run(&["plan", "--sql", "--from", "+1"])
        .await
        .expect(exit::USAGE);

    assert!(
        outcome.stderr.contains("--from +1") && outcome.stderr.contains("`base`"),
        "{}",
        outcome.stderr
    );
}

// --- new ------------------------------------------------------------------

/// File names in `dir`, sorted.
fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn one_sequential_migration() -> tempfile::TempDir {
    migrations_dir(&[
        ("0001_a.up.sql", "CREATE TABLE a ();"),
        ("0001_a.down.sql", "DROP TABLE a;"),
    ])
}

#[tokio::test]
async fn new_creates_the_next_sequential_up_and_down_files() {
    let dir = one_sequential_migration();

    let outcome = Schemaop::without_database(dir.path())
        .run(&["new", "Add users!"])
        .await
        .expect(exit::OK);

    assert_eq!(
        files_in(dir.path()),
        [
            "0001_a.down.sql",
            "0001_a.up.sql",
            "0002_add_users.down.sql",
            "0002_add_users.up.sql"
        ]
    );
    assert!(
        outcome.stdout.contains("0002_add_users.up.sql")
            && outcome.stdout.contains("0002_add_users.down.sql"),
        "{}",
        outcome.stdout
    );
}

#[tokio::test]
async fn new_irreversible_creates_a_single_file() {
    let dir = one_sequential_migration();

    Schemaop::without_database(dir.path())
        .run(&["new", "--irreversible", "--no-transaction", "index users"])
        .await
        .expect(exit::OK);

    assert_eq!(
        files_in(dir.path()),
        ["0001_a.down.sql", "0001_a.up.sql", "0002_index_users.sql"]
    );
    let text = std::fs::read_to_string(dir.path().join("0002_index_users.sql")).unwrap();
    assert!(text.starts_with("-- schemaop:no-transaction\n"), "{text:?}");
}

#[tokio::test]

async fn new_twice_in_a_row_numbers_the_second_after_the_first() {
    let dir = one_sequential_migration();
    let cli = Schemaop::without_database(dir.path());

    cli.run(&["new", "add users"]).await.expect(exit::OK);
    cli.run(&["new", "add orders"]).await.expect(exit::OK);

    assert_eq!(
        files_in(dir.path()),
        [
            "0001_a.down.sql",
            "0001_a.up.sql",
            "0002_add_users.down.sql",
            "0002_add_users.up.sql",
            "0003_add_orders.down.sql",
            "0003_add_orders.up.sql"
        ]
    );
}

#[tokio::test]
async fn new_with_a_name_without_letters_exits_2_and_creates_nothing() {
    let dir = one_sequential_migration();

    let outcome = Schemaop::without_database(dir.path())
        .run(&["new", "!!! ---"])
        .await
        .expect(exit::USAGE);

    assert!(outcome.stderr.contains("!!! ---"), "{}", outcome.stderr);
    assert_eq!(files_in(dir.path()), ["0001_a.down.sql", "0001_a.up.sql"]);
}

// --- downgrade and stamp --------------------------------------------------

#[tokio::test]
async fn downgrade_one_step_goes_back_to_the_previous_version() {
    let db = TestDb::new().await;
    let dir = three_tables();
    let cli = Schemaop::new(&db.url, dir.path());
    cli.run(&["upgrade"]).await.expect(exit::OK);

    cli.run(&["downgrade", "--steps", "1"])
        .await
        .expect(exit::OK);

    assert_eq!(cli.run(&["current"]).await.expect(exit::OK).stdout, "2\n");
    assert!(!table_exists(&db, "invoices").await);
    assert!(table_exists(&db, "orders").await);
    assert_eq!(history(&db).await, ["1 applied", "2 applied"]);
    assert_eq!(
        audit(&db).await,
        [
            "1 up succeeded",
            "2 up succeeded",
            "3 up succeeded",
            "3 down succeeded"
        ]
    );
}

#[tokio::test]
async fn targets_are_taken_as_alembic_users_type_them() {
    let db = TestDb::new().await;
    let dir = three_tables();
    let cli = Schemaop::new(&db.url, dir.path());
    let current = async || cli.run(&["current"]).await.expect(exit::OK).stdout;

    cli.run(&["upgrade", "+1"]).await.expect(exit::OK);
    assert_eq!(current().await, "1\n");
    cli.run(&["upgrade", "0002"]).await.expect(exit::OK);
    assert_eq!(current().await, "2\n");
    cli.run(&["upgrade", "head"]).await.expect(exit::OK);
    assert_eq!(current().await, "3\n");
    cli.run(&["downgrade", "-1"]).await.expect(exit::OK);
    assert_eq!(current().await, "2\n");
    cli.run(&["upgrade", "--to", "head"]).await.expect(exit::OK);
    cli.run(&["downgrade", "--to", "-2"]).await.expect(exit::OK);
    assert_eq!(current().await, "1\n");
    cli.run(&["upgrade", "--steps", "2"]).await.expect(exit::OK);
    assert_eq!(current().await, "3\n");
    let plan = cli.run(&["--output", "json", "plan", "--down", "-2"]).await;
    let steps = plan.expect(exit::OK).json()["plan"]["steps"].clone();
    assert_eq!(steps.as_array().map(Vec::len), Some(2), "{steps}");
    cli.run(&["downgrade", "base"]).await.expect(exit::OK);
    assert_eq!(current().await, "base\n");
}

#[tokio::test]
async fn a_target_that_cannot_be_meant_is_refused_saying_what_is_taken() {
    let db = TestDb::new().await;
    let dir = three_tables();
    let cli = Schemaop::new(&db.url, dir.path());
    cli.run(&["upgrade"]).await.expect(exit::OK);

    let none = cli.run(&["downgrade"]).await.expect(exit::USAGE);
    for form in [
        "downgrade base",
        "--to VERSION",
        "downgrade -N",
        "--steps N",
    ] {
        assert!(
            none.stderr.contains(form),
            "{form:?} missing:\n{}",
            none.stderr
        );
    }
    let wrong_way = cli.run(&["upgrade", "-1"]).await.expect(exit::USAGE);
    assert!(
        wrong_way.stderr.contains("schemaop downgrade -1"),
        "{}",
        wrong_way.stderr
    );
    let unknown = cli
        .run(&["downgrade", "--to", "999"])
        .await
        .expect(exit::REFUSED);
    assert!(unknown.stderr.contains("use `base`"), "{}", unknown.stderr);
    // A sign is never read as a version.
    let zero = cli.run(&["upgrade", "+0"]).await.expect(exit::USAGE);
    assert!(zero.stderr.contains("+N or -N"), "{}", zero.stderr);
    assert_eq!(history(&db).await, ["1 applied", "2 applied", "3 applied"]);
}

#[tokio::test]
async fn downgrade_past_a_migration_without_a_down_file_exits_4_naming_it() {
    let db = TestDb::new().await;
    let dir = migrations_dir(&[
        ("0001_create_users.up.sql", "CREATE TABLE users (id int);"),
        ("0001_create_users.down.sql", "DROP TABLE users;"),
        (
            "0002_backfill_users.sql",
            "INSERT INTO users VALUES (1), (2);",
        ),
    ]);
    let cli = Schemaop::new(&db.url, dir.path());
    cli.run(&["upgrade"]).await.expect(exit::OK);

    let outcome = cli
        .run(&["downgrade", "--steps", "1"])
        .await
        .expect(exit::REFUSED);

    assert!(
        outcome.stderr.contains("0002_backfill_users.sql"),
        "{}",
        outcome.stderr
    );
    assert_eq!(cli.run(&["current"]).await.expect(exit::OK).stdout, "2\n");
    assert_eq!(db.count("SELECT count(*) FROM users").await, 2);
}

#[tokio::test]
async fn stamp_adopts_an_existing_schema_and_upgrade_runs_only_the_rest() {
    // The first two tables were made by hand before schemaop came along;
    // their migrations would fail if they ran.
    let db = TestDb::new().await;
    db.client()
        .await
        .batch_execute(
            "CREATE TABLE users (id int PRIMARY KEY);\n\
             CREATE TABLE orders (id int PRIMARY KEY, user_id int REFERENCES users);",
        )
        .await
        .unwrap();
    let dir = three_tables();
    let cli = Schemaop::new(&db.url, dir.path());

    cli.run(&["stamp", "2"]).await.expect(exit::OK);

    assert_eq!(history(&db).await, ["1 applied", "2 applied"]);
    assert_eq!(audit(&db).await, ["2 stamp succeeded"]);
    assert!(!table_exists(&db, "invoices").await);

    cli.run(&["upgrade"]).await.expect(exit::OK);

    assert_eq!(history(&db).await, ["1 applied", "2 applied", "3 applied"]);
    assert_eq!(audit(&db).await, ["2 stamp succeeded", "3 up succeeded"]);
    assert!(table_exists(&db, "invoices").await);
}

// --- copy-binary: the init container of a spec.job Job ------------------------

#[tokio::test]
async fn copy_binary_puts_a_runnable_schemaop_where_the_job_looks_for_it() {
    let folder = tempfile::tempdir().unwrap();
    let copy = folder.path().join("schemaop");
    let schemaop = Schemaop::without_database(folder.path());
    schemaop
        .run(&["copy-binary", copy.to_str().unwrap()])
        .await
        .expect(exit::OK);
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&copy).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o755, "runnable by the app image's own user");
    let version = run({
        let mut command = Command::new(&copy);
        command
            .arg("--version")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    })
    .await
    .expect(exit::OK);
    assert!(
        version.stdout.starts_with("schemaop "),
        "{}",
        version.stdout
    );

    // Nowhere to write: the error says where, and what to mount.
    let failed = schemaop
        .run(&["copy-binary", "/proc/no-such-dir/schemaop"])
        .await
        .expect(exit::USAGE);
    assert!(
        failed
            .stderr
            .contains("cannot copy schemaop to /proc/no-such-dir/schemaop"),
        "{}",
        failed.stderr
    );
    assert!(
        failed.stderr.contains("mount a writable volume there"),
        "{}",
        failed.stderr
    );
}
