//! The engine against a real PostgreSQL, one throwaway database per test.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{TestDb, sample_migrations, source};
use schemaop::engine::{
    Direction, Error, Event, HistoryTable, MigrationSource, MigratorOptions, Repair, Target,
    Version,
};
use tokio::sync::mpsc::UnboundedReceiver;

fn quiet(_: Event<'_>) {}

fn options() -> MigratorOptions {
    MigratorOptions {
        actor: "engine-test".into(),
        ..MigratorOptions::default()
    }
}

#[tokio::test]
async fn fresh_apply_then_a_rerun_does_nothing() {
    let db = TestDb::new().await;
    let source = MigrationSource::from_dir(&sample_migrations()).unwrap();
    let migrator = db.migrator(&source, options());

    let first = migrator
        .run(Target::Latest, Direction::Up, &quiet)
        .await
        .unwrap();
    assert_eq!(first.steps.len(), source.migrations().len());
    assert_eq!(first.to, source.latest());

    let second = migrator
        .run(Target::Latest, Direction::Up, &quiet)
        .await
        .unwrap();
    assert!(second.steps.is_empty(), "{second:?}");
    assert_eq!(second.from, source.latest());
    assert_eq!(
        db.count("SELECT count(*) FROM schemaop_migrations WHERE state = 'applied'")
            .await,
        source.migrations().len() as i64
    );
    assert_eq!(
        db.count("SELECT count(*) FROM schemaop_migrations_audit WHERE action = 'up' AND outcome = 'succeeded'")
            .await,
        source.migrations().len() as i64
    );
    assert_eq!(
        db.scalar("SELECT applied_by FROM schemaop_migrations LIMIT 1")
            .await
            .as_deref(),
        Some("engine-test")
    );
}

#[tokio::test]
async fn an_applied_migration_has_a_complete_history_row_and_audit_row() {
    let db = TestDb::new().await;
    let source = source(&[("1_add_users.sql", "CREATE TABLE users (id int);")]);
    let migrator = db.migrator(&source, options());

    migrator
        .run(Target::Latest, Direction::Up, &quiet)
        .await
        .unwrap();

    let checksum = source.migrations()[0].checksum().to_hex();
    assert_eq!(
        db.scalar(
            "SELECT concat_ws(' ', version, description, checksum, state, applied_by, \
             coalesce(error, 'no-error'), duration_ms >= 0, applied_at <= now()) \
             FROM schemaop_migrations"
        )
        .await
        .as_deref(),
        Some(format!("1 add users {checksum} applied engine-test no-error t t").as_str())
    );
    // The audit entry tells the same story as the row it accompanies.
    assert_eq!(
        db.scalar(
            "SELECT concat_ws(' ', a.actor, a.action, a.version, a.description, a.outcome, \
             coalesce(a.detail, 'no-detail'), a.at = s.applied_at, a.duration_ms = s.duration_ms) \
             FROM schemaop_migrations_audit a JOIN schemaop_migrations s USING (version)"
        )
        .await
        .as_deref(),
        Some("engine-test up 1 add users succeeded no-detail t t")
    );
}

#[tokio::test]
async fn up_down_up_leaves_the_same_schema() {
    let db = TestDb::new().await;
    let source = MigrationSource::from_dir(&sample_migrations()).unwrap();
    let migrator = db.migrator(&source, options());
    let empty = db.catalog().await;

    migrator
        .run(Target::Latest, Direction::Up, &quiet)
        .await
        .unwrap();
    let upgraded = db.catalog().await;
    assert!(
        upgraded.len() > 20,
        "the sample app should create a real schema: {upgraded:?}"
    );

    let down = migrator
        .run(Target::Base, Direction::Down, &quiet)
        .await
        .unwrap();
    assert_eq!(down.steps.len(), source.migrations().len());
    assert_eq!(down.to, None);
    assert_eq!(db.catalog().await, empty);
    assert_eq!(
        db.count("SELECT count(*) FROM schemaop_migrations").await,
        0
    );

    migrator
        .run(Target::Latest, Direction::Up, &quiet)
        .await
        .unwrap();
    assert_eq!(db.catalog().await, upgraded);
}

#[tokio::test]
async fn a_no_transaction_migration_builds_its_index_concurrently() {
    let db = TestDb::new().await;
    let source = MigrationSource::from_dir(&sample_migrations()).unwrap();
    let concurrent = source
        .migrations()
        .iter()
        .find(|m| !m.up.transactional)
        .expect("sample has one");
    assert!(concurrent.up.sql.contains("CONCURRENTLY"));

    db.migrator(&source, options())
        .run(Target::Latest, Direction::Up, &quiet)
        .await
        .unwrap();

    assert_eq!(
        db.scalar("SELECT indisvalid FROM pg_index WHERE indexrelid = 'runs_active_idx'::regclass")
            .await
            .as_deref(),
        Some("t")
    );
    let state = db
        .scalar(&format!(
            "SELECT state FROM schemaop_migrations WHERE version = {}",
            concurrent.version
        ))
        .await;
    assert_eq!(state.as_deref(), Some("applied"));
}

#[tokio::test]
async fn a_failing_transactional_migration_leaves_nothing_behind() {
    let db = TestDb::new().await;
    let source = source(&[
        ("1_base.sql", "CREATE TABLE base (id int);"),
        (
            "2_broken.sql",
            "CREATE TABLE half (id int);\nINSERT INTO half VALUES (1);\nINSERT INTO half VALUES ('x');\n",
        ),
    ]);
    let migrator = db.migrator(&source, options());

    let err = migrator
        .run(Target::Latest, Direction::Up, &quiet)
        .await
        .unwrap_err();

    match &err {
        Error::MigrationFailed {
            version,
            file,
            statement,
            failure,
        } => {
            assert_eq!(
                (*version, file.as_str(), *statement),
                (Version(2), "2_broken.sql", None)
            );
            assert_eq!(failure.code, "22P02", "{failure}");
            assert_eq!(
                (failure.line, failure.column),
                (Some(3), Some(26)),
                "{failure}"
            );
        }
        other => panic!("expected MigrationFailed, got {other}"),
    }
    assert!(err.to_string().contains("2_broken.sql"), "{err}");
    assert_eq!(db.scalar("SELECT to_regclass('half')::text").await, None);
    assert_eq!(
        db.scalar("SELECT to_regclass('base')::text")
            .await
            .as_deref(),
        Some("base")
    );
    assert_eq!(
        db.count("SELECT count(*) FROM schemaop_migrations").await,
        1
    );
    assert_eq!(
        db.count("SELECT count(*) FROM schemaop_migrations_audit WHERE version = 2 AND outcome = 'failed'").await,
        1
    );
}

#[tokio::test]
async fn a_failed_no_transaction_migration_blocks_until_repaired() {
    let db = TestDb::new().await;
    let broken = source(&[
        ("1_base.sql", "CREATE TABLE t (id int);"),
        (
            "2_index.sql",
            "-- schemaop:no-transaction\nCREATE INDEX CONCURRENTLY t_id ON t (id);\nCREATE INDEX CONCURRENTLY t_bad ON t (nope);\n",
        ),
        ("3_after.sql", "CREATE TABLE after (id int);"),
    ]);
    let err = db
        .migrator(&broken, options())
        .run(Target::Latest, Direction::Up, &quiet)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::MigrationFailed {
                version: Version(2),
                statement: Some(2),
                ..
            }
        ),
        "{err}"
    );
    // It says what may remain, not that nothing does.
    let message = err.to_string();
    for needle in [
        "statement 1 stays applied",
        "invalid index",
        "WHERE NOT indisvalid",
        "--mark-applied 2",
    ] {
        assert!(
            message.contains(needle),
            "{needle:?} missing from: {message}"
        );
    }
    assert!(!message.contains("Nothing of"), "{message}");
    assert_eq!(
        db.scalar("SELECT state FROM schemaop_migrations WHERE version = 2")
            .await
            .as_deref(),
        Some("apply_failed")
    );
    // The first statement ran and stays: that is what "no transaction" means.
    assert_eq!(
        db.scalar("SELECT to_regclass('t_id')::text")
            .await
            .as_deref(),
        Some("t_id")
    );

    // Every further run refuses, says what happened and how to get out.
    let err = db
        .migrator(&broken, options())
        .run(Target::Latest, Direction::Up, &quiet)
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(
            err,
            Error::Blocked {
                version: Version(2),
                ..
            }
        ),
        "{message}"
    );
    for needle in [
        "failed while being applied",
        "\"nope\" does not exist",
        "--mark-applied 2",
        "--mark-reverted 2",
    ] {
        assert!(
            message.contains(needle),
            "{needle:?} missing from: {message}"
        );
    }
    assert_eq!(db.scalar("SELECT to_regclass('after')::text").await, None);

    // A person cleans up, fixes the file and forgets the failed attempt.
    db.client()
        .await
        .batch_execute("DROP INDEX t_id")
        .await
        .unwrap();
    let fixed = source(&[
        ("1_base.sql", "CREATE TABLE t (id int);"),
        (
            "2_index.sql",
            "-- schemaop:no-transaction\nCREATE INDEX CONCURRENTLY t_id ON t (id);\n",
        ),
        ("3_after.sql", "CREATE TABLE after (id int);"),
    ]);
    let migrator = db.migrator(&fixed, options());
    migrator
        .repair(Repair::MarkReverted(Version(2)))
        .await
        .unwrap();
    let report = migrator
        .run(Target::Latest, Direction::Up, &quiet)
        .await
        .unwrap();
    assert_eq!(
        report.steps.iter().map(|s| s.version.0).collect::<Vec<_>>(),
        vec![2, 3]
    );
    assert_eq!(
        db.count(
            "SELECT count(*) FROM schemaop_migrations_audit WHERE action = 'repair' AND version = 2"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn mark_applied_accepts_a_no_transaction_migration_finished_by_hand() {
    let db = TestDb::new().await;
    let files = [
        ("1_base.sql", "CREATE TABLE t (id int);"),
        (
            "2_index.sql",
            "-- no-transaction\nCREATE INDEX CONCURRENTLY t_bad ON t (nope);\n",
        ),
    ];
    let source = source(&files);
    let migrator = db.migrator(&source, options());
    migrator
        .run(Target::Latest, Direction::Up, &quiet)
        .await
        .unwrap_err();

    migrator
        .repair(Repair::MarkApplied(Version(2)))
        .await
        .unwrap();

    // The checksum still matches the file, so the history is consistent again.
    let report = migrator
        .run(Target::Latest, Direction::Up, &quiet)
        .await
        .unwrap();
    assert!(report.steps.is_empty());
    assert_eq!(report.from, Some(Version(2)));
}

#[tokio::test]
async fn mark_reverted_refuses_an_applied_migration_and_changes_nothing() {
    let db = TestDb::new().await;
    let source = source(&[
        ("1_base.sql", "CREATE TABLE t (id int);"),
        ("2_more.sql", "CREATE TABLE u (id int);"),
    ]);
    let migrator = db.migrator(&source, options());
    migrator
        .run(Target::Latest, Direction::Up, &quiet)
        .await
        .unwrap();

    let err = migrator
        .repair(Repair::MarkReverted(Version(2)))
        .await
        .unwrap_err();

    assert!(
        matches!(
            err,
            Error::RepairApplied {
                version: Version(2)
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("schemaop downgrade"), "{err}");
    assert_eq!(
        db.count("SELECT count(*) FROM schemaop_migrations").await,
        2
    );
    assert_eq!(
        db.count("SELECT count(*) FROM schemaop_migrations_audit WHERE action = 'repair'")
            .await,
        0
    );
}

#[tokio::test]
async fn an_edited_applied_migration_is_refused_until_its_checksum_is_accepted() {
    let db = TestDb::new().await;
    let original = source(&[
        ("1_a.sql", "CREATE TABLE a (id int);"),
        ("2_b.sql", "CREATE TABLE b (id int);"),
    ]);
    db.migrator(&original, options())
        .run(Target::Latest, Direction::Up, &quiet)
        .await
        .unwrap();

    let edited = source(&[
        ("1_a.sql", "CREATE TABLE a (id bigint);"),
        ("2_b.sql", "CREATE TABLE b (id int);"),
        ("3_c.sql", "CREATE TABLE c (id int);"),
    ]);
    let migrator = db.migrator(&edited, options());
    let err = migrator
        .run(Target::Latest, Direction::Up, &quiet)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::ChecksumMismatch(d) if d.len() == 1 && d[0].version == Version(1)),
        "{err}"
    );
    assert!(
        err.to_string().contains("1_a.sql") && err.to_string().contains("repair --accept-checksum"),
        "{err}"
    );
    assert_eq!(db.scalar("SELECT to_regclass('c')::text").await, None);

    let detail = migrator
        .repair(Repair::AcceptChecksum(Version(1)))
        .await
        .unwrap();
    assert!(detail.contains("accepted checksum"), "{detail}");
    let report = migrator
        .run(Target::Latest, Direction::Up, &quiet)
        .await
        .unwrap();
    assert_eq!(report.steps.len(), 1);
    let audit = db
        .scalar(
            "SELECT detail FROM schemaop_migrations_audit WHERE action = 'repair' AND version = 1",
        )
        .await
        .unwrap();
    assert!(audit.contains("1_a.sql"), "{audit}");
}

#[tokio::test]
async fn an_out_of_order_migration_is_refused_unless_allowed() {
    let db = TestDb::new().await;
    let first = source(&[
        ("1_a.sql", "CREATE TABLE a ();"),
        ("3_c.sql", "CREATE TABLE c ();"),
    ]);
    db.migrator(&first, options())
        .run(Target::Latest, Direction::Up, &quiet)
        .await
        .unwrap();

    let late = source(&[
        ("1_a.sql", "CREATE TABLE a ();"),
        ("2_b.sql", "CREATE TABLE b ();"),
        ("3_c.sql", "CREATE TABLE c ();"),
    ]);
    let err = db
        .migrator(&late, options())
        .run(Target::Latest, Direction::Up, &quiet)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::OutOfOrder { pending, newest_applied: Version(3) } if pending == &[Version(2)]),
        "{err}"
    );
    assert_eq!(db.scalar("SELECT to_regclass('b')::text").await, None);

    let allow = MigratorOptions {
        allow_out_of_order: true,
        ..options()
    };
    let report = db
        .migrator(&late, allow)
        .run(Target::Latest, Direction::Up, &quiet)
        .await
        .unwrap();
    assert_eq!(
        report.steps.iter().map(|s| s.version.0).collect::<Vec<_>>(),
        vec![2]
    );
}

/// Every event a run reported so far, as one line each.
type Seen = Arc<Mutex<Vec<String>>>;

/// Collects what a run reports, for tests that wait on it.
fn recorder() -> (
    Seen,
    UnboundedReceiver<String>,
    impl Fn(Event<'_>) + Send + Sync,
) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let log = seen.clone();
    let observer = move |event: Event<'_>| {
        let line = match event {
            Event::WaitingForLock { holder } => format!(
                "waiting {}",
                holder.map(|h| h.to_string()).unwrap_or_default()
            ),
            Event::Retrying { attempt, .. } => format!("retrying {attempt}"),
            Event::StepFinished { step, .. } => format!("finished {}", step.migration().version),
            _ => return,
        };
        log.lock().unwrap().push(line.clone());
        let _ = tx.send(line);
    };
    (seen, rx, observer)
}

#[tokio::test]
async fn a_lock_timeout_is_retried_until_the_lock_is_free() {
    let db = TestDb::new().await;
    db.client()
        .await
        .batch_execute("CREATE TABLE busy (id int)")
        .await
        .unwrap();
    let source = source(&[("1_add_column.sql", "ALTER TABLE busy ADD COLUMN name text;")]);
    let holder = db.client().await;
    holder
        .batch_execute("BEGIN; LOCK TABLE busy IN ACCESS SHARE MODE;")
        .await
        .unwrap();

    let options = MigratorOptions {
        session: schemaop::engine::SessionSettings {
            lock_timeout: Duration::from_millis(100),
            ..Default::default()
        },
        lock_retries: Some(20),
        retry_min_delay: Duration::from_millis(20),
        retry_max_delay: Duration::from_millis(100),
        ..options()
    };
    let (seen, mut events, observer) = recorder();
    let run = tokio::spawn(async move {
        let migrator = db.migrator(&source, options);
        let result = migrator.run(Target::Latest, Direction::Up, &observer).await;
        (result.map(|r| r.steps.len()), db)
    });

    // Release the application's lock only once the migration has hit it.
    loop {
        let event = tokio::time::timeout(Duration::from_secs(30), events.recv())
            .await
            .unwrap()
            .unwrap();
        if event.starts_with("retrying") {
            break;
        }
    }
    holder.batch_execute("COMMIT").await.unwrap();

    let (result, db) = run.await.unwrap();
    assert_eq!(result.unwrap(), 1);
    assert!(seen.lock().unwrap().iter().any(|e| e == "retrying 1"));
    assert_eq!(
        db.count("SELECT count(*) FROM information_schema.columns WHERE table_name = 'busy' AND column_name = 'name'")
            .await,
        1
    );
}

#[tokio::test]
async fn a_lock_held_past_the_retry_budget_fails_cleanly() {
    let db = TestDb::new().await;
    db.client()
        .await
        .batch_execute("CREATE TABLE busy (id int)")
        .await
        .unwrap();
    let holder = db.client().await;
    holder
        .batch_execute("BEGIN; LOCK TABLE busy IN ACCESS SHARE MODE;")
        .await
        .unwrap();
    let source = source(&[(
        "1_add_column.sql",
        "CREATE TABLE other (id int);\nALTER TABLE busy ADD COLUMN name text;",
    )]);
    let options = MigratorOptions {
        session: schemaop::engine::SessionSettings {
            lock_timeout: Duration::from_millis(50),
            ..Default::default()
        },
        lock_retries: Some(2),
        retry_min_delay: Duration::from_millis(10),
        retry_max_delay: Duration::from_millis(20),
        ..options()
    };

    let err = db
        .migrator(&source, options)
        .run(Target::Latest, Direction::Up, &quiet)
        .await
        .unwrap_err();

    assert!(
        matches!(
            &err,
            Error::LockTimeout {
                version: Version(1),
                attempts: 3,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("1_add_column.sql"), "{err}");
    assert_eq!(db.scalar("SELECT to_regclass('other')::text").await, None);
    assert_eq!(
        db.count("SELECT count(*) FROM schemaop_migrations").await,
        0
    );
}

/// A table that a test connection keeps locked in an open transaction, as
/// a long report would, so that any ALTER TABLE on it waits.
async fn locked_table(db: &TestDb, application_name: &str) -> (tokio_postgres::Client, i32) {
    db.client()
        .await
        .batch_execute("CREATE TABLE busy (id int)")
        .await
        .unwrap();
    let holder = common::connect(&format!("{}?application_name={application_name}", db.url)).await;
    holder
        .batch_execute("BEGIN; LOCK TABLE busy IN ACCESS SHARE MODE;")
        .await
        .unwrap();
    let pid = holder
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get::<_, i32>(0);
    (holder, pid)
}

fn short_lock_options() -> MigratorOptions {
    MigratorOptions {
        session: schemaop::engine::SessionSettings {
            lock_timeout: Duration::from_millis(100),
            ..Default::default()
        },
        lock_retries: Some(2),
        retry_min_delay: Duration::from_millis(10),
        retry_max_delay: Duration::from_millis(20),
        ..options()
    }
}

#[tokio::test]
async fn a_migration_that_turns_lock_timeout_off_does_not_turn_it_off_for_the_next() {
    let db = TestDb::new().await;
    let (_holder, _) = locked_table(&db, "report").await;
    let source = source(&[
        (
            "1_no_limit.sql",
            "SET lock_timeout = 0;\nCREATE TABLE a ();",
        ),
        ("2_add_column.sql", "ALTER TABLE busy ADD COLUMN name text;"),
    ]);

    let migrator = db.migrator(&source, short_lock_options());
    let result = tokio::time::timeout(
        Duration::from_secs(20),
        migrator.run(Target::Latest, Direction::Up, &quiet),
    )
    .await
    .expect("migration 2 waited for the lock without a lock_timeout");

    let err = result.unwrap_err();
    assert!(
        matches!(
            &err,
            Error::LockTimeout {
                version: Version(2),
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        db.scalar("SELECT max(version)::text FROM schemaop_migrations")
            .await
            .as_deref(),
        Some("1")
    );
}

#[tokio::test]
async fn a_migration_that_turns_statement_timeout_off_does_not_turn_it_off_for_the_next() {
    let db = TestDb::new().await;
    let source = source(&[
        (
            "1_no_limit.sql",
            "SET statement_timeout = 0;\nCREATE TABLE a ();",
        ),
        ("2_slow.sql", "SELECT pg_sleep(30);"),
    ]);
    let options = MigratorOptions {
        session: schemaop::engine::SessionSettings {
            statement_timeout: Some(Duration::from_millis(300)),
            ..Default::default()
        },
        ..options()
    };

    let migrator = db.migrator(&source, options);
    let result = tokio::time::timeout(
        Duration::from_secs(20),
        migrator.run(Target::Latest, Direction::Up, &quiet),
    )
    .await
    .expect("migration 2 ran without its statement_timeout");

    let err = result.unwrap_err();
    assert!(
        matches!(&err, Error::MigrationFailed { version: Version(2), failure, .. } if failure.code == "57014"),
        "{err}"
    );
}

#[tokio::test]
async fn a_lock_timeout_error_names_the_session_holding_the_lock() {
    let db = TestDb::new().await;
    let (_holder, holder_pid) = locked_table(&db, "nightly-report").await;
    let source = source(&[("1_add_column.sql", "ALTER TABLE busy ADD COLUMN name text;")]);

    let err = db
        .migrator(&source, short_lock_options())
        .run(Target::Latest, Direction::Up, &quiet)
        .await
        .unwrap_err();

    assert!(matches!(&err, Error::LockTimeout { .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains(&format!("pid {holder_pid}")), "{message}");
    assert!(message.contains("nightly-report"), "{message}");
    assert!(message.contains("idle in transaction"), "{message}");
    assert!(message.contains("query started"), "{message}");
}

#[tokio::test]
async fn a_waiting_runner_names_the_lock_holder() {
    let db = TestDb::new().await;
    let source = source(&[("1_a.sql", "CREATE TABLE a ();")]);
    let key = HistoryTable::default().lock_key(&db.name);
    let holder = common::connect(&format!("{}?application_name=other-runner", db.url)).await;
    holder
        .batch_execute(&format!("SELECT pg_advisory_lock({key})"))
        .await
        .unwrap();
    let holder_pid = holder
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get::<_, i32>(0);

    let options = MigratorOptions {
        lock_poll_interval: Duration::from_millis(50),
        lock_wait_timeout: Some(Duration::from_millis(300)),
        ..options()
    };
    let (seen, _events, observer) = recorder();
    let err = db
        .migrator(&source, options)
        .run(Target::Latest, Direction::Up, &observer)
        .await
        .unwrap_err();

    assert!(matches!(err, Error::LockWaitTimeout { .. }), "{err}");
    assert!(err.to_string().contains("other-runner"), "{err}");
    let waiting = seen.lock().unwrap().clone();
    assert_eq!(
        waiting.len(),
        1,
        "one report per holder, not one per poll: {waiting:?}"
    );
    assert!(
        waiting[0].contains(&format!("pid {holder_pid}")),
        "{waiting:?}"
    );
    assert_eq!(db.scalar("SELECT to_regclass('a')::text").await, None);
}

#[tokio::test]
async fn an_up_to_date_database_is_checked_without_the_lock() {
    let db = TestDb::new().await;
    let source = source(&[("1_a.sql", "CREATE TABLE a ();")]);
    db.migrator(&source, options())
        .run(Target::Latest, Direction::Up, &quiet)
        .await
        .unwrap();
    let key = HistoryTable::default().lock_key(&db.name);
    let holder = db.client().await;
    holder
        .batch_execute(&format!("SELECT pg_advisory_lock({key})"))
        .await
        .unwrap();

    // With the lock held elsewhere, a runner that needed it would time out.
    let options = MigratorOptions {
        lock_wait_timeout: Some(Duration::from_millis(100)),
        ..options()
    };
    let report = db
        .migrator(&source, options)
        .run(Target::Latest, Direction::Up, &quiet)
        .await
        .unwrap();
    assert!(report.steps.is_empty());
}

#[tokio::test]
async fn a_cancelled_run_rolls_back_and_frees_the_lock() {
    let db = TestDb::new().await;
    let source = source(&[(
        "1_slow.sql",
        "CREATE TABLE slow (id int);\nSELECT pg_sleep(30);",
    )]);
    let migrator = db.migrator(&source, options());
    let run = migrator.run(Target::Latest, Direction::Up, &quiet);
    let outcome = tokio::time::timeout(Duration::from_millis(800), run).await;
    assert!(
        outcome.is_err(),
        "the slow migration should still be running"
    );

    // The server notices the closed connection, rolls back, and frees the lock.
    assert_eq!(db.scalar("SELECT to_regclass('slow')::text").await, None);
    let options = MigratorOptions {
        lock_wait_timeout: Some(Duration::from_secs(20)),
        ..options()
    };
    let quick = common::source(&[("1_slow.sql", "CREATE TABLE slow (id int);")]);
    let report = db
        .migrator(&quick, options)
        .run(Target::Latest, Direction::Up, &quiet)
        .await
        .unwrap();
    assert_eq!(report.steps.len(), 1);
    assert_eq!(
        db.count("SELECT count(*) FROM schemaop_migrations").await,
        1
    );
}

#[tokio::test]
async fn stamp_adopts_an_existing_schema() {
    let db = TestDb::new().await;
    db.client()
        .await
        .batch_execute("CREATE TABLE a (id int); CREATE TABLE b (id int);")
        .await
        .unwrap();
    let source = source(&[
        ("1_a.sql", "CREATE TABLE a (id int);"),
        ("2_b.sql", "CREATE TABLE b (id int);"),
        ("3_c.sql", "CREATE TABLE c (id int);"),
    ]);
    let migrator = db.migrator(&source, options());

    let (target, recorded, removed) = migrator.stamp(Target::Version(Version(2))).await.unwrap();
    assert_eq!((target, recorded, removed), (Some(Version(2)), 2, 0));

    let report = migrator
        .run(Target::Latest, Direction::Up, &quiet)
        .await
        .unwrap();
    assert_eq!(
        report.steps.iter().map(|s| s.version.0).collect::<Vec<_>>(),
        vec![3]
    );
    assert_eq!(
        db.count("SELECT count(*) FROM schemaop_migrations_audit WHERE action = 'stamp'")
            .await,
        1
    );

    // Stamping lower forgets what is above, without running any down script.
    let (_, recorded, removed) = migrator.stamp(Target::Version(Version(1))).await.unwrap();
    assert_eq!((recorded, removed), (0, 2));
    assert_eq!(
        db.scalar("SELECT to_regclass('c')::text").await.as_deref(),
        Some("c")
    );
}

#[tokio::test]
async fn history_lives_where_it_is_configured_with_any_name() {
    let db = TestDb::new().await;
    let source = source(&[("1_a.sql", "CREATE TABLE a ();")]);
    let options = MigratorOptions {
        history: HistoryTable::new("ops", "Schema \"History\""),
        ..options()
    };
    db.migrator(&source, options.clone())
        .run(Target::Latest, Direction::Up, &quiet)
        .await
        .unwrap();

    assert_eq!(
        db.count(r#"SELECT count(*) FROM ops."Schema ""History""""#)
            .await,
        1
    );
    assert_eq!(
        db.count(r#"SELECT count(*) FROM ops."Schema ""History""_audit""#)
            .await,
        1
    );
    assert_eq!(
        db.scalar("SELECT to_regclass('public.schemaop_migrations')::text")
            .await,
        None
    );
    let report = db
        .migrator(&source, options)
        .run(Target::Latest, Direction::Up, &quiet)
        .await
        .unwrap();
    assert!(report.steps.is_empty());
}

#[tokio::test]
async fn downgrading_reverts_in_reverse_order_and_refuses_past_an_irreversible_migration() {
    let db = TestDb::new().await;
    let source = source(&[
        ("1_a.up.sql", "CREATE TABLE a ();"),
        ("1_a.down.sql", "DROP TABLE a;"),
        ("2_b.sql", "CREATE TABLE b ();"),
        ("3_c.up.sql", "CREATE TABLE c ();"),
        ("3_c.down.sql", "DROP TABLE c;"),
    ]);
    let migrator = db.migrator(&source, options());
    migrator
        .run(Target::Latest, Direction::Up, &quiet)
        .await
        .unwrap();

    let report = migrator
        .run(Target::Version(Version(2)), Direction::Down, &quiet)
        .await
        .unwrap();
    assert_eq!(
        report
            .steps
            .iter()
            .map(|s| (s.version.0, s.direction))
            .collect::<Vec<_>>(),
        vec![(3, "down")]
    );
    assert_eq!(report.to, Some(Version(2)));

    let err = migrator
        .run(Target::Base, Direction::Down, &quiet)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Irreversible { version: Version(2), file } if file == "2_b.sql"),
        "{err}"
    );
    assert_eq!(
        db.scalar("SELECT to_regclass('a')::text").await.as_deref(),
        Some("a")
    );
}

#[tokio::test]
async fn only_the_last_commit_of_a_run_waits_for_the_disk() {
    let db = TestDb::new().await;
    let source = source(&[
        ("1_a.sql", "CREATE TABLE a ();"),
        ("2_b.sql", "CREATE TABLE b ();"),
        ("3_c.sql", "CREATE TABLE c ();"),
    ]);
    let migrator = db.migrator(&source, options());

    let (_, sql) = migrator
        .plan_sql(Target::Latest, Direction::Up)
        .await
        .unwrap();

    let steps: Vec<&str> = sql
        .split("\n-- ")
        .filter(|s| s.contains("BEGIN;"))
        .collect();
    assert_eq!(
        steps.len(),
        4,
        "the history tables, then three migrations: {sql}"
    );
    let asynchronous = "SET LOCAL synchronous_commit = off;\nCOMMIT;";
    assert!(
        steps[1].contains(asynchronous) && steps[2].contains(asynchronous),
        "{sql}"
    );
    assert!(
        !steps[3].contains("synchronous_commit"),
        "the last commit makes the run durable: {sql}"
    );

    // And the run does what the plan says.
    migrator
        .run(Target::Latest, Direction::Up, &quiet)
        .await
        .unwrap();
    assert_eq!(
        db.count("SELECT count(*) FROM schemaop_migrations").await,
        3
    );
}

/// Loads `files`; when they load, applies them, as an older engine did.
/// Returns the load error, if any, and the run's outcome.
async fn load_and_run(
    db: &TestDb,
    files: &[(&str, &str)],
) -> Result<Result<(), String>, schemaop::engine::Error> {
    let source =
        MigrationSource::from_files(files.iter().map(|(n, t)| (*n, t.as_bytes().to_vec())))?;
    let outcome = db
        .migrator(&source, options())
        .run(Target::Latest, Direction::Up, &quiet)
        .await;
    Ok(outcome.map(|_| ()).map_err(|e| e.to_string()))
}

#[tokio::test]
async fn sql_standard_function_bodies_and_rules_apply_in_both_kinds_of_migration() {
    let db = TestDb::new().await;
    let source = source(&[
        (
            "1_function.sql",
            "CREATE FUNCTION two() RETURNS int LANGUAGE sql\nBEGIN ATOMIC\n  SELECT 1;\n  SELECT 2;\nEND;\nCREATE TABLE a (x int);",
        ),
        (
            "2_no_tx.sql",
            "-- schemaop:no-transaction\n\
             CREATE FUNCTION three() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN true THEN 3 END; END;\n\
             CREATE TABLE b (x int);\nCREATE TABLE c (x int);\n\
             CREATE RULE r AS ON INSERT TO a DO ALSO (INSERT INTO b VALUES (NEW.x); INSERT INTO c VALUES (NEW.x));\n",
        ),
    ]);
    db.migrator(&source, options())
        .run(Target::Latest, Direction::Up, &quiet)
        .await
        .unwrap();

    assert_eq!(
        db.scalar("SELECT two() + three()").await.as_deref(),
        Some("5")
    );
    db.client()
        .await
        .batch_execute("INSERT INTO a VALUES (7)")
        .await
        .unwrap();
    assert_eq!(db.count("SELECT count(*) FROM b JOIN c USING (x)").await, 1);
}

#[tokio::test]
async fn a_commit_after_a_typed_literal_is_refused_and_nothing_is_left() {
    let db = TestDb::new().await;
    // `a$e'\'` is a string of type a$e, not an E-string: the COMMIT is a statement.
    let outcome = load_and_run(
        &db,
        &[(
            "1_hidden_commit.sql",
            "CREATE DOMAIN a$e AS text;\nCREATE TABLE t (x a$e DEFAULT a$e'\\');\nCOMMIT;\nCREATE TABLE u (y int DEFAULT 'x');\n",
        )],
    )
    .await;

    assert_eq!(
        db.count("SELECT count(*) FROM pg_class WHERE relname = 't'")
            .await,
        0,
        "the failed migration left table t behind: {outcome:?}"
    );
    let err = outcome.unwrap_err();
    assert!(
        err.to_string()
            .starts_with("1_hidden_commit.sql, line 3: COMMIT"),
        "{err}"
    );
}

#[tokio::test]
async fn a_no_transaction_migration_with_begin_is_refused_before_anything_runs() {
    let db = TestDb::new().await;
    let outcome = load_and_run(
        &db,
        &[(
            "1_swallowed.sql",
            "-- schemaop:no-transaction\nCREATE TABLE before_begin (id int);\nBEGIN;\nCREATE TABLE after_begin (id int);\n",
        )],
    )
    .await;

    assert_eq!(
        db.count(
            "SELECT count(*) FROM pg_class WHERE relname IN ('before_begin', 'schemaop_migrations')"
        )
        .await,
        0,
        "statements ran: {outcome:?}"
    );
    let message = outcome.unwrap_err().to_string();
    assert!(
        message.starts_with("1_swallowed.sql, line 3: BEGIN")
            && message.contains("each statement already runs on its own"),
        "{message}"
    );
}

#[tokio::test]
async fn a_failing_begin_rollback_in_a_no_transaction_migration_is_refused_with_its_line() {
    let db = TestDb::new().await;
    let outcome = load_and_run(
        &db,
        &[(
            "1_rollback.sql",
            "-- schemaop:no-transaction\nBEGIN;\nCREATE TABLE x (id int);\nSELECT 1 / 0;\nROLLBACK;\n",
        )],
    )
    .await;

    let message = match outcome {
        Err(e) => e.to_string(),
        Ok(run) => panic!("loaded; the run said: {run:?}"),
    };
    assert!(
        message.starts_with("1_rollback.sql, line 2: BEGIN"),
        "{message}"
    );
}

#[tokio::test]
async fn copy_from_stdin_and_meta_commands_are_refused_at_load_not_at_run() {
    let db = TestDb::new().await;
    for (file, sql, says) in [
        (
            "1_copy.sql",
            "CREATE TABLE people (name text);\nCOPY people (name) FROM stdin;\nalice\nbob\n\\.\n",
            "2: COPY ... FROM STDIN",
        ),
        (
            "1_gexec.sql",
            "CREATE TABLE a (id int);\nSELECT 'CREATE TABLE b ()' \\gexec\n",
            "2: `\\gexec` is a psql meta-command",
        ),
    ] {
        let outcome = load_and_run(&db, &[(file, sql)]).await;
        let message = match outcome {
            Err(e) => e.to_string(),
            Ok(run) => panic!("{file} loaded; the run said: {run:?}"),
        };
        assert!(
            message.starts_with(&format!("{file}, line {says}")),
            "{message}"
        );
    }
}
