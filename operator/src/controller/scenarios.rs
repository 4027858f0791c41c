//! The controller against a scripted API server and a real PostgreSQL: each
//! test tells one story, from the situation through the exact requests the
//! controller sends, in order, to what the reconcile asks for next.
//!
//! The database tests need the server that `scripts/postgres.sh` sets up.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::runtime::controller::Action;
use serde_json::json;

use super::decide::{self, Finding, RECHECK};
use super::fixtures::{
    CapturedLogs, EventIs, Expect, GENERATION, Gate, Harness, REQUEST_TIMEOUT, StatusIs, TestDb,
    TestRole, Transcript, URL_SECRET, as_admin, config_map, connection_to, places_mentioning,
    schema_migration, secret, url_as, url_secret,
};
use super::{Error, error_policy, reconcile};
use crate::crd::conditions;
use crate::crd::{RunPhase, SchemaMigrationStatus};
use crate::engine::{self, Target};

const USERS_UP: (&str, &str) = (
    "1_create_users.up.sql",
    "CREATE TABLE users (id bigint PRIMARY KEY, email text NOT NULL);",
);
const USERS_DOWN: (&str, &str) = ("1_create_users.down.sql", "DROP TABLE users;");
const ORDERS_UP: (&str, &str) = (
    "2_create_orders.up.sql",
    "CREATE TABLE orders (id bigint PRIMARY KEY, user_id bigint NOT NULL REFERENCES users);",
);
const ORDERS_DOWN: (&str, &str) = ("2_create_orders.down.sql", "DROP TABLE orders;");

/// Two migrations that can both be reverted.
const MIGRATIONS: [(&str, &str); 4] = [USERS_UP, USERS_DOWN, ORDERS_UP, ORDERS_DOWN];

/// Nothing listens on port 1; the password must never show.
const UNREACHABLE_PASSWORD: &str = "s3cr3t-pw";
const UNREACHABLE_URL: &str = "postgres://app:s3cr3t-pw@127.0.0.1:1/db";

/// What a run from an empty database to [`MIGRATIONS`]' latest sends, once
/// the reconcile has started it.
fn run_from_none_to_2() -> Vec<Expect> {
    vec![
        // The run takes over the status the reconcile computed and, with a
        // slot free, starts its first attempt at once: Pending is not shown...
        Expect::status(
            StatusIs::reconciling("Migrating")
                .saying("applying 2 migration(s) to go from none to 2")
                .revision("none")
                .target("2")
                .pending(2)
                .run(RunPhase::Running)
                .attempt(1),
        ),
        // ...and shows the first migration; later progress is written at
        // most once a second, and these two take milliseconds.
        Expect::status(
            StatusIs::reconciling("Migrating")
                .saying("running migration 1 of 2: 1 (create users)")
                .run(RunPhase::Running)
                .migrating(1),
        ),
        // One Event for the run, naming each migration; one action a
        // target, or the recorder would fold the next run's into its series.
        Expect::event(
            EventIs::normal("Migrated")
                .action("Migrate2")
                .saying("applied 2 migrations from none to 2 in ")
                .saying(" ms: 1 (create users, ")
                .saying("; 2 (create orders, "),
        ),
        Expect::status(
            StatusIs::ready("UpToDate")
                .saying("the database is at 2")
                .revision("2")
                .target("2")
                .pending(0)
                .run(RunPhase::Succeeded),
        ),
    ]
}

fn then(mut first: Vec<Expect>, rest: Vec<Expect>) -> Vec<Expect> {
    first.extend(rest);
    first
}

#[tokio::test]
async fn a_run_waiting_for_a_free_slot_shows_pending_until_it_starts() {
    let db = TestDb::new().await;
    let secret = url_secret(&db.url);
    let mut harness = Harness::new(schema_migration().inline(&MIGRATIONS).build());
    // Runs of other objects hold every slot until the Pending status is seen.
    let busy = harness.ctx.runs.occupy_every_slot();

    let mut started = run_from_none_to_2();
    started[0] = Expect::status(
        StatusIs::reconciling("Migrating")
            .run(RunPhase::Running)
            .attempt(1),
    );
    let (action, _) = harness
        .reconcile(then(
            vec![
                Expect::get_secret(&secret),
                Expect::status(
                    StatusIs::reconciling("Migrating")
                        .saying("applying 2 migration(s) to go from none to 2")
                        .revision("none")
                        .target("2")
                        .pending(2)
                        .run(RunPhase::Pending),
                )
                .before_answering(move || async move { drop(busy) }),
            ],
            started,
        ))
        .await;
    assert_eq!(action.expect("a reconcile"), Action::await_change());
    assert_eq!(db.applied().await, [1, 2]);
}

// --- 1. up to date -------------------------------------------------------------

#[tokio::test]
async fn an_up_to_date_database_is_reported_ready_once_then_left_alone() {
    // The engine already brought the database to 2; the resource asks for latest.
    let db = TestDb::new().await;
    db.migrate(&MIGRATIONS, Target::Latest).await;
    let secret = url_secret(&db.url);
    let mut harness = Harness::new(schema_migration().inline(&MIGRATIONS).build());

    // The first look reads the Secret and the history, and reports Ready.
    let (action, _) = harness
        .reconcile(vec![
            Expect::get_secret(&secret),
            Expect::status(
                StatusIs::ready("UpToDate")
                    .saying("the database is at 2")
                    .revision("2")
                    .target("2")
                    .pending(0)
                    .without_run(),
            ),
        ])
        .await;
    assert_eq!(action.expect("a reconcile"), Action::requeue(RECHECK));

    // The next look, with that status on the object, finds the same and
    // writes nothing.
    let (action, _) = harness.reconcile(vec![Expect::get_secret(&secret)]).await;
    assert_eq!(action.expect("a reconcile"), Action::requeue(RECHECK));
    assert_eq!(db.applied().await, [1, 2]);
}

// --- 2. migrate to latest -----------------------------------------------------

#[tokio::test]
async fn a_fresh_database_is_migrated_to_the_latest_revision_by_a_run() {
    let db = TestDb::new().await;
    let secret = url_secret(&db.url);
    let mut harness = Harness::new(schema_migration().inline(&MIGRATIONS).build());

    // The reconcile finds two pending migrations and hands them to a run,
    // which writes every status from then on.
    let (action, _) = harness
        .reconcile(then(
            vec![Expect::get_secret(&secret)],
            run_from_none_to_2(),
        ))
        .await;
    assert_eq!(action.expect("a reconcile"), Action::await_change());

    assert_eq!(db.applied().await, [1, 2]);
    assert_eq!(db.tables().await, ["orders", "users"]);
    let status = harness.object().status.clone().expect("a status");
    let recent: Vec<i64> = status.recent_migrations.iter().map(|m| m.version).collect();
    assert_eq!(recent, [1, 2]);
    let run = status.run.expect("the run");
    assert!(
        run.started_at.is_some() && run.finished_at >= run.started_at,
        "{run:?}"
    );
    assert_eq!(run.migration, None, "no migration is in progress");

    // The run's last status is the one the next look computes: it writes
    // nothing.
    let (action, _) = harness.reconcile(vec![Expect::get_secret(&secret)]).await;
    assert_eq!(action.expect("a reconcile"), Action::requeue(RECHECK));
}

/// A quick first migration, then one that runs for two seconds: longer than
/// the status window.
const SLOW_ORDERS_UP: (&str, &str) = (
    "2_create_orders.up.sql",
    "SELECT pg_sleep(2);\nCREATE TABLE orders (id bigint PRIMARY KEY);",
);

#[tokio::test]
async fn a_long_migration_shows_itself_once_the_status_window_ends() {
    let db = TestDb::new().await;
    let secret = url_secret(&db.url);
    let mut harness = Harness::new(
        schema_migration()
            .inline(&[USERS_UP, SLOW_ORDERS_UP])
            .build(),
    );

    // Migration 1 ends and migration 2 starts within the first write's
    // window. Dropped, those updates left "migration 1 of 2" and revision
    // none on show for the two seconds migration 2 ran; coalesced, the
    // latest is written as soon as the window ends.
    let (action, _) = harness
        .reconcile(vec![
            Expect::get_secret(&secret),
            Expect::status(
                StatusIs::reconciling("Migrating")
                    .run(RunPhase::Running)
                    .attempt(1),
            ),
            Expect::status(StatusIs::reconciling("Migrating").migrating(1)),
            Expect::status(
                StatusIs::reconciling("Migrating")
                    .saying("running migration 2 of 2: 2 (create orders)")
                    .revision("1")
                    .pending(1)
                    .migrating(2),
            ),
            Expect::event(EventIs::normal("Migrated").action("Migrate2")),
            Expect::status(
                StatusIs::ready("UpToDate")
                    .revision("2")
                    .run(RunPhase::Succeeded),
            ),
        ])
        .await;

    assert_eq!(action.expect("a reconcile"), Action::await_change());
    assert_eq!(db.applied().await, [1, 2]);
}

// --- 3. invalid source ----------------------------------------------------------

#[tokio::test]
async fn a_badly_named_file_stalls_with_invalid_source() {
    let secret = url_secret(UNREACHABLE_URL);
    let mut harness = Harness::new(
        schema_migration()
            .inline(&[USERS_UP, ("create_orders.sql", "CREATE TABLE orders ();")])
            .build(),
    );

    // The Secret is read first; the source is refused before any connection.
    let (action, _) = harness
        .reconcile(vec![
            Expect::get_secret(&secret),
            Expect::status(
                StatusIs::stalled("InvalidSource")
                    .saying("create_orders.sql: the name must be <version>_<description>"),
            ),
            Expect::event(
                EventIs::warning("InvalidSource")
                    .action("Reconcile")
                    .saying("create_orders.sql"),
            ),
        ])
        .await;
    assert_eq!(action.expect("a reconcile"), Action::requeue(RECHECK));
}

// --- 4. missing Secret --------------------------------------------------------

#[tokio::test]
async fn a_missing_secret_stalls_and_is_announced_once() {
    let mut harness = Harness::new(schema_migration().inline(&MIGRATIONS).build());
    let not_found = format!("Secret {URL_SECRET:?} was not found in namespace \"apps\"");

    let (action, _) = harness
        .reconcile(vec![
            Expect::get_missing_secret(URL_SECRET),
            Expect::status(StatusIs::stalled("SecretNotFound").saying(&not_found)),
            Expect::event(
                EventIs::warning("SecretNotFound")
                    .action("Reconcile")
                    .saying(&not_found),
            ),
        ])
        .await;
    assert_eq!(action.expect("a reconcile"), Action::requeue(RECHECK));

    // Still missing: the status already says so, and nobody is told twice.
    let (action, _) = harness
        .reconcile(vec![Expect::get_missing_secret(URL_SECRET)])
        .await;
    assert_eq!(action.expect("a reconcile"), Action::requeue(RECHECK));
}

#[tokio::test]
async fn a_stalled_resource_recovers_once_its_secret_appears() {
    let db = TestDb::new().await;
    db.migrate(&MIGRATIONS, Target::Latest).await;
    let mut harness = Harness::new(schema_migration().inline(&MIGRATIONS).build());
    let (action, _) = harness
        .reconcile(vec![
            Expect::get_missing_secret(URL_SECRET),
            Expect::status(StatusIs::stalled("SecretNotFound")),
            Expect::event(EventIs::warning("SecretNotFound")),
        ])
        .await;
    assert_eq!(action.expect("a reconcile"), Action::requeue(RECHECK));

    // The Secret is created; its watch brings the object back. Stalled
    // clears, and recovering is no news worth an Event.
    let (action, _) = harness
        .reconcile(vec![
            Expect::get_secret(&url_secret(&db.url)),
            Expect::status(StatusIs::ready("UpToDate").revision("2")),
        ])
        .await;
    assert_eq!(action.expect("a reconcile"), Action::requeue(RECHECK));
}

#[tokio::test]
async fn a_new_generation_is_observed_even_when_the_database_needs_nothing() {
    let db = TestDb::new().await;
    db.migrate(&MIGRATIONS, Target::Latest).await;
    let secret = url_secret(&db.url);
    let mut before = Harness::new(schema_migration().inline(&MIGRATIONS).build());
    let (action, _) = before
        .reconcile(vec![
            Expect::get_secret(&secret),
            Expect::status(StatusIs::ready("UpToDate")),
        ])
        .await;
    assert_eq!(action.expect("a reconcile"), Action::requeue(RECHECK));
    let observed = before.object().status.clone().expect("a status");

    // Someone edits the spec without changing what it asks for: generation
    // 4, with the status that observed generation 3.
    let mut harness = Harness::new(
        schema_migration()
            .inline(&MIGRATIONS)
            .generation(GENERATION + 1)
            .status(observed.clone())
            .build(),
    );
    let (action, transcript) = harness
        .reconcile(vec![
            Expect::get_secret(&secret),
            Expect::status(StatusIs::ready("UpToDate").revision("2")),
        ])
        .await;
    assert_eq!(action.expect("a reconcile"), Action::requeue(RECHECK));

    // Ready did not flip, so it keeps the time it became True.
    let written = &transcript.statuses()[0];
    let since = |status: &SchemaMigrationStatus| {
        status
            .condition(conditions::READY)
            .expect("Ready")
            .last_transition_time
    };
    assert_eq!(since(written), since(&observed));
}

#[tokio::test]
async fn a_connection_given_field_by_field_reads_only_the_password_from_its_secret() {
    let db = TestDb::new().await;
    db.migrate(&MIGRATIONS, Target::Latest).await;
    let (connection, password) = connection_to(&db, "app-db-password", "password");
    let password_secret = secret("app-db-password", &[("password", &password)]);
    let mut harness = Harness::new(
        schema_migration()
            .connection(connection)
            .inline(&MIGRATIONS)
            .build(),
    );

    let (action, _) = harness
        .reconcile(vec![
            Expect::get_secret(&password_secret),
            Expect::status(StatusIs::ready("UpToDate").revision("2")),
        ])
        .await;
    assert_eq!(action.expect("a reconcile"), Action::requeue(RECHECK));
}

// --- 5. missing key ---------------------------------------------------------------

#[tokio::test]
async fn a_secret_without_the_key_stalls_naming_secret_and_key() {
    // The Secret has a `url`, but the spec names `DATABASE_URL`.
    let secret = url_secret(UNREACHABLE_URL);
    let mut harness = Harness::new(
        schema_migration()
            .url_secret(URL_SECRET, "DATABASE_URL")
            .inline(&MIGRATIONS)
            .build(),
    );
    let no_key = format!("Secret {URL_SECRET:?} has no key \"DATABASE_URL\"");

    let (action, _) = harness
        .reconcile(vec![
            Expect::get_secret(&secret),
            Expect::status(StatusIs::stalled("SecretKeyNotFound").saying(&no_key)),
            Expect::event(EventIs::warning("SecretKeyNotFound").saying(&no_key)),
        ])
        .await;
    assert_eq!(action.expect("a reconcile"), Action::requeue(RECHECK));
}

// --- 6. database unreachable --------------------------------------------------

#[tokio::test]
async fn an_unreachable_database_is_retried_after_the_minimum_backoff_without_an_event() {
    let secret = url_secret(UNREACHABLE_URL);
    let mut harness = Harness::new(
        schema_migration()
            .inline(&MIGRATIONS)
            .retry(5, "7s")
            .build(),
    );

    // Transient: Reconciling, not Stalled, and no Event.
    let (action, _) = harness
        .reconcile(vec![
            Expect::get_secret(&secret),
            Expect::status(
                StatusIs::reconciling("DatabaseUnreachable")
                    .saying("nothing accepts connections at postgres://app@127.0.0.1:1/db")
                    .saying("; retrying"),
            ),
        ])
        .await;
    assert_eq!(
        action.expect("a reconcile"),
        Action::requeue(Duration::from_secs(7))
    );
}

// --- 7. checksum drift ----------------------------------------------------------

#[tokio::test]
async fn an_edited_applied_migration_stalls_with_checksum_mismatch() {
    let db = TestDb::new().await;
    db.migrate(&MIGRATIONS, Target::Latest).await;
    let secret = url_secret(&db.url);
    let edited = (
        USERS_UP.0,
        "CREATE TABLE users (id bigint PRIMARY KEY, email text NOT NULL, name text);",
    );
    let mut harness = Harness::new(
        schema_migration()
            .inline(&[edited, USERS_DOWN, ORDERS_UP, ORDERS_DOWN])
            .build(),
    );

    let (action, _) = harness
        .reconcile(vec![
            Expect::get_secret(&secret),
            Expect::status(
                StatusIs::stalled("ChecksumMismatch")
                    .saying("applied migrations changed since they ran: 1 (1_create_users.up.sql")
                    .revision("2"),
            ),
            Expect::event(
                EventIs::warning("ChecksumMismatch")
                    .action("Reconcile")
                    .saying("1 (1_create_users.up.sql"),
            ),
        ])
        .await;
    assert_eq!(action.expect("a reconcile"), Action::requeue(RECHECK));
    assert_eq!(
        db.columns("users").await,
        ["id", "email"],
        "the edit never ran"
    );
}

// --- 8. and 9. downgrades ---------------------------------------------------------

#[tokio::test]
async fn a_downgrade_is_refused_when_not_allowed() {
    let db = TestDb::new().await;
    db.migrate(&MIGRATIONS, Target::Latest).await;
    let secret = url_secret(&db.url);
    let mut harness = Harness::new(schema_migration().inline(&MIGRATIONS).target("1").build());

    let (action, _) = harness
        .reconcile(vec![
            Expect::get_secret(&secret),
            Expect::status(
                StatusIs::stalled("DowngradeNotAllowed")
                    .saying("the database is at 2 and the target 1 is below it")
                    .revision("2"),
            ),
            Expect::event(EventIs::warning("DowngradeNotAllowed").action("Reconcile")),
        ])
        .await;
    assert_eq!(action.expect("a reconcile"), Action::requeue(RECHECK));
    assert_eq!(db.applied().await, [1, 2]);
    assert_eq!(db.tables().await, ["orders", "users"]);
}

#[tokio::test]
async fn an_allowed_downgrade_reverts_in_a_run() {
    let db = TestDb::new().await;
    db.migrate(&MIGRATIONS, Target::Latest).await;
    let secret = url_secret(&db.url);
    let mut harness = Harness::new(
        schema_migration()
            .inline(&MIGRATIONS)
            .target("1")
            .allow_downgrade()
            .build(),
    );

    let (action, _) = harness
        .reconcile(vec![
            Expect::get_secret(&secret),
            Expect::status(
                StatusIs::reconciling("Migrating")
                    .saying("reverting 1 migration(s) to go from 2 to 1")
                    .revision("2")
                    .target("1")
                    .pending(1)
                    .run(RunPhase::Running)
                    .attempt(1),
            ),
            Expect::status(
                StatusIs::reconciling("Migrating")
                    .saying("running migration 1 of 1: 2 (create orders)")
                    .migrating(2),
            ),
            Expect::event(
                EventIs::normal("Reverted")
                    .action("Migrate1")
                    .saying("reverted 1 migration from 2 to 1 in ")
                    .saying(" ms: 2 (create orders, "),
            ),
            Expect::status(
                StatusIs::ready("UpToDate")
                    .saying("the database is at 1")
                    .revision("1")
                    .target("1")
                    .pending(0)
                    .run(RunPhase::Succeeded),
            ),
        ])
        .await;
    assert_eq!(action.expect("a reconcile"), Action::await_change());
    assert_eq!(db.applied().await, [1]);
    assert_eq!(db.tables().await, ["users"], "the orders table is gone");
}

// --- 10. suspended ------------------------------------------------------------------

#[tokio::test]
async fn a_suspended_resource_says_so_and_reads_nothing() {
    let mut harness = Harness::new(schema_migration().inline(&MIGRATIONS).suspend().build());

    // Not even the Secret is read, so no database can be reached.
    let (action, _) = harness
        .reconcile(vec![Expect::status(
            StatusIs::idle("Suspended").saying("reconciliation is suspended"),
        )])
        .await;
    assert_eq!(action.expect("a reconcile"), Action::requeue(RECHECK));
}

// --- 11. ConfigMaps -----------------------------------------------------------------

#[tokio::test]
async fn migrations_from_two_config_maps_are_read_in_order_and_applied() {
    let db = TestDb::new().await;
    let secret = url_secret(&db.url);
    let users = config_map("app-db-migrations-1", &[USERS_UP, USERS_DOWN]);
    let orders = config_map("app-db-migrations-2", &[ORDERS_UP, ORDERS_DOWN]);
    let mut harness = Harness::new(
        schema_migration()
            .config_maps(&["app-db-migrations-1", "app-db-migrations-2"])
            .build(),
    );

    let (action, _) = harness
        .reconcile(then(
            vec![
                Expect::get_secret(&secret),
                Expect::get_config_map(&users),
                Expect::get_config_map(&orders),
            ],
            run_from_none_to_2(),
        ))
        .await;
    assert_eq!(action.expect("a reconcile"), Action::await_change());
    assert_eq!(db.applied().await, [1, 2]);
    assert_eq!(db.tables().await, ["orders", "users"]);
}

#[tokio::test]
async fn a_missing_config_map_stalls_with_invalid_source() {
    let secret = url_secret(UNREACHABLE_URL);
    let users = config_map("app-db-migrations-1", &[USERS_UP]);
    let mut harness = Harness::new(
        schema_migration()
            .config_maps(&["app-db-migrations-1", "app-db-migrations-2"])
            .build(),
    );
    let not_found = "ConfigMap \"app-db-migrations-2\" was not found in namespace \"apps\"";

    let (action, _) = harness
        .reconcile(vec![
            Expect::get_secret(&secret),
            Expect::get_config_map(&users),
            Expect::get_missing_config_map("app-db-migrations-2"),
            Expect::status(StatusIs::stalled("InvalidSource").saying(not_found)),
            Expect::event(EventIs::warning("InvalidSource").saying(not_found)),
        ])
        .await;
    assert_eq!(action.expect("a reconcile"), Action::requeue(RECHECK));
}

// --- failed runs, runs in progress, deletion, API server failures ------------------

/// Migration 2 fails in the database.
const BROKEN: [(&str, &str); 2] = [
    USERS_UP,
    (
        "2_backfill_orders.up.sql",
        "INSERT INTO orders (id) VALUES (1);",
    ),
];

/// What a run of [`BROKEN`] from an empty database sends.
fn run_failing_at_2() -> Vec<Expect> {
    vec![
        Expect::status(
            StatusIs::reconciling("Migrating")
                .run(RunPhase::Running)
                .attempt(1),
        ),
        Expect::status(StatusIs::reconciling("Migrating").migrating(1)),
        // A failing SQL statement needs a person: no retry. The run's one
        // Event is its failure; the status lists what it applied.
        Expect::event(
            EventIs::warning("MigrationFailed")
                .action("Migrate")
                .saying("migration 2 failed in 2_backfill_orders.up.sql"),
        ),
        Expect::status(
            StatusIs::stalled("MigrationFailed")
                .saying("relation \"orders\" does not exist")
                .revision("1")
                .pending(1)
                .run(RunPhase::Failed),
        ),
    ]
}

#[tokio::test]
async fn a_failed_migration_is_reported_once_and_not_run_again() {
    let db = TestDb::new().await;
    let secret = url_secret(&db.url);
    let mut harness = Harness::new(schema_migration().inline(&BROKEN).build());

    let (action, _) = harness
        .reconcile(then(vec![Expect::get_secret(&secret)], run_failing_at_2()))
        .await;
    assert_eq!(action.expect("a reconcile"), Action::await_change());
    assert_eq!(db.applied().await, [1], "migration 1 stays, 2 rolled back");

    // The same inputs again: the failure is already on the status and is
    // not run, written or announced again.
    let (action, _) = harness.reconcile(vec![Expect::get_secret(&secret)]).await;
    assert_eq!(action.expect("a reconcile"), Action::requeue(RECHECK));
    assert_eq!(db.applied().await, [1]);
}

#[tokio::test]
async fn a_run_that_gave_up_on_the_database_is_reported_once() {
    let db = TestDb::new().await;
    let secret = url_secret(&db.url);
    let mut harness = Harness::new(
        schema_migration()
            .inline(&MIGRATIONS)
            .retry(0, "1s")
            .build(),
    );
    let name = db.name.clone();
    let close = format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false");

    // The database stops taking connections between the reconcile's look and
    // the run's attempt; with no retries left, the run gives up.
    let (action, _) = harness
        .reconcile(vec![
            Expect::get_secret(&secret),
            Expect::status(
                StatusIs::reconciling("Migrating")
                    .run(RunPhase::Running)
                    .attempt(1),
            )
            .before_answering(move || as_admin(close)),
            // The Event and the condition give the same reason.
            Expect::event(
                EventIs::warning("DatabaseUnreachable")
                    .action("Migrate")
                    .saying("is not currently accepting connections"),
            ),
            Expect::status(StatusIs::stalled("DatabaseUnreachable").run(RunPhase::Failed)),
        ])
        .await;
    assert_eq!(action.expect("a reconcile"), Action::await_change());
    as_admin(format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true")).await;

    // The database is back, but the run gave up for these inputs: the next
    // look has nothing new to say.
    let (action, _) = harness.reconcile(vec![Expect::get_secret(&secret)]).await;
    assert_eq!(action.expect("a reconcile"), Action::requeue(RECHECK));
}

/// [`run_from_none_to_2`] after the reconcile's GET of `secret`, with the
/// run's first status write held at the API server.
fn run_held_at_its_first_write(secret: &Secret) -> (Vec<Expect>, Gate) {
    let mut expected = then(vec![Expect::get_secret(secret)], run_from_none_to_2());
    let (first_write, gate) = expected.remove(1).held();
    expected.insert(1, first_write);
    (expected, gate)
}

#[tokio::test]
async fn a_reconcile_during_a_run_keeps_out_of_its_way() {
    let db = TestDb::new().await;
    let mut harness = Harness::new(schema_migration().inline(&MIGRATIONS).build());
    let (expected, mut gate) = run_held_at_its_first_write(&url_secret(&db.url));
    let serving = harness.expect(expected);
    let action = reconcile(harness.object(), harness.ctx.clone()).await;
    assert_eq!(action.expect("a reconcile"), Action::await_change());
    gate.reached().await;

    // A watch event brings the object back while its run is under way: the
    // reconcile sends nothing, reads nothing, and looks again later.
    let again = tokio::time::timeout(
        REQUEST_TIMEOUT,
        reconcile(harness.object(), harness.ctx.clone()),
    )
    .await
    .expect("a reconcile that does not wait on the API server");
    assert_eq!(again.expect("a reconcile"), Action::requeue(RECHECK));

    gate.open();
    harness.finish(serving).await;
    assert_eq!(db.applied().await, [1, 2]);
}

#[tokio::test]
async fn suspending_during_a_run_lets_the_run_finish() {
    let db = TestDb::new().await;
    let secret = url_secret(&db.url);
    let mut harness = Harness::new(schema_migration().inline(&MIGRATIONS).build());
    let (expected, mut gate) = run_held_at_its_first_write(&secret);
    let serving = harness.expect(expected);
    let action = reconcile(harness.object(), harness.ctx.clone()).await;
    assert_eq!(action.expect("a reconcile"), Action::await_change());
    gate.reached().await;

    // Someone suspends the resource (generation 4) while its run waits: the
    // run is not stopped, and the Suspended status waits for it.
    let mut suspended = (*harness.object()).clone();
    suspended.spec.suspend = true;
    suspended.metadata.generation = Some(GENERATION + 1);
    let action = tokio::time::timeout(
        REQUEST_TIMEOUT,
        reconcile(Arc::new(suspended), harness.ctx.clone()),
    )
    .await
    .expect("a reconcile that does not wait on the API server");
    assert_eq!(
        action.expect("a reconcile"),
        Action::requeue(Duration::from_secs(10))
    );

    // The run goes on to the end.
    gate.open();
    harness.finish(serving).await;
    assert_eq!(db.applied().await, [1, 2]);

    // Looked at again, the resource says it is suspended, at revision 2.
    harness.edit_spec(|spec| spec.suspend = true);
    let (action, _) = harness
        .reconcile(vec![Expect::status(
            StatusIs::idle("Suspended")
                .revision("2")
                .run(RunPhase::Succeeded),
        )])
        .await;
    assert_eq!(action.expect("a reconcile"), Action::requeue(RECHECK));
}

#[tokio::test]
async fn a_resource_being_deleted_is_left_alone() {
    let mut harness = Harness::new(schema_migration().inline(&MIGRATIONS).deleted().build());

    let (action, _) = harness.reconcile(vec![]).await;
    assert_eq!(action.expect("a reconcile"), Action::await_change());
}

#[tokio::test]
async fn api_server_failures_are_errors_that_error_policy_requeues() {
    let db = TestDb::new().await;
    db.migrate(&MIGRATIONS, Target::Latest).await;
    let secret = url_secret(&db.url);
    let mut harness = Harness::new(schema_migration().inline(&MIGRATIONS).build());

    // The Secret cannot be read: nothing is written, the error goes back.
    let (result, _) = harness
        .reconcile(vec![Expect::get_secret(&secret).failing_with(500)])
        .await;
    let error = result.expect_err("an API server failure is an error");
    assert!(matches!(error, Error::Kube(_)), "{error}");
    assert_eq!(error.reason(), "KubernetesApiError");
    assert_eq!(
        error_policy(harness.object(), &error, harness.ctx.clone()),
        Action::requeue(Duration::from_secs(15))
    );

    // The status cannot be written: an error too, so the write is tried again.
    let (result, _) = harness
        .reconcile(vec![
            Expect::get_secret(&secret),
            Expect::status(StatusIs::ready("UpToDate")).failing_with(409),
        ])
        .await;
    let error = result.expect_err("a refused status write is an error");
    assert!(matches!(error, Error::Kube(_)), "{error}");
    assert_eq!(
        error_policy(harness.object(), &error, harness.ctx.clone()),
        Action::requeue(Duration::from_secs(15))
    );
    assert_eq!(harness.object().status, None, "nothing was written");
}

#[tokio::test]
async fn error_policy_requeues_any_error_after_fifteen_seconds() {
    let harness = Harness::new(schema_migration().inline(&MIGRATIONS).build());
    let errors = [
        Error::SecretNotFound {
            namespace: "apps".into(),
            name: URL_SECRET.into(),
        },
        Error::Engine(engine::Error::ConnectionLost {
            reason: "reset by peer".into(),
        }),
    ];
    for error in errors {
        assert_eq!(
            error_policy(harness.object(), &error, harness.ctx.clone()),
            Action::requeue(Duration::from_secs(15)),
            "{error}"
        );
    }
}

// --- 12. secrets never leak -----------------------------------------------------

/// Fails with every place that shows `password`: a request's path, query
/// or body, or a log line.
fn assert_never_shown(password: &str, transcript: &Transcript, logs: &CapturedLogs) {
    let mut places = transcript.writings();
    places.extend(logs.lines());
    let shown = places_mentioning(password, &places);
    assert!(
        shown.is_empty(),
        "the password {password:?} was shown in:\n{}",
        shown.join("\n")
    );
}

/// The capture saw this test's requests being served, so it covered the
/// tasks that sent them.
fn assert_captured(logs: &CapturedLogs, transcript: &Transcript) {
    assert!(!transcript.requests.is_empty());
    let text = logs.text();
    for seen in &transcript.requests {
        let line = format!("the API server received {} {}", seen.method, seen.path);
        assert!(text.contains(&line), "the logs miss {line:?}:\n{text}");
    }
}

#[tokio::test]
async fn the_password_of_an_unreachable_database_is_never_shown() {
    let logs = CapturedLogs::default();
    let _capture = logs.install();
    let secret = url_secret(UNREACHABLE_URL);
    let mut harness = Harness::new(schema_migration().inline(&MIGRATIONS).build());

    let (action, transcript) = harness
        .reconcile(vec![
            Expect::get_secret(&secret),
            Expect::status(
                StatusIs::reconciling("DatabaseUnreachable")
                    .saying("postgres://app@127.0.0.1:1/db"),
            ),
        ])
        .await;
    assert_eq!(
        action.expect("a reconcile"),
        Action::requeue(Duration::from_secs(10))
    );

    assert_captured(&logs, &transcript);
    assert_never_shown(UNREACHABLE_PASSWORD, &transcript, &logs);
}

#[tokio::test]
async fn the_password_of_a_refused_login_is_never_shown() {
    let logs = CapturedLogs::default();
    let _capture = logs.install();
    // No such role on the server: the login is refused.
    let password = "n0-such-r0le-pw";
    let user = format!("schemaop_nobody_{}", std::process::id());
    let secret = url_secret(&url_as(&user, password, "postgres"));
    let mut harness = Harness::new(schema_migration().inline(&MIGRATIONS).build());

    // The API server refuses the Event too, so the controller logs a warning
    // about it: one more place the password must not be.
    let (action, transcript) = harness
        .reconcile(vec![
            Expect::get_secret(&secret),
            Expect::status(
                StatusIs::stalled("AuthenticationFailed").saying(format!("has no role {user:?}")),
            ),
            Expect::event(EventIs::warning("AuthenticationFailed").saying(&user)).failing_with(403),
        ])
        .await;
    assert_eq!(action.expect("a reconcile"), Action::requeue(RECHECK));

    assert_captured(&logs, &transcript);
    assert!(
        logs.text().contains("could not record an Event"),
        "{}",
        logs.text()
    );
    assert_never_shown(password, &transcript, &logs);
}

#[tokio::test]
async fn the_password_of_a_run_is_never_shown() {
    let role = TestRole::new("run-r0le-pw").await;
    let db = TestDb::new().await;
    role.grant_all_on(&db).await;
    let secret = url_secret(&role.url(&db));
    let mut harness = Harness::new(schema_migration().inline(&BROKEN).build());
    // From here on, only the operator speaks: the setup above sent the
    // password to the server, and the driver logged it.
    let logs = CapturedLogs::default();
    let _capture = logs.install();

    // A run that applies one migration, fails on the next, and says so in
    // Events and status, with the database's own error text.
    let (action, transcript) = harness
        .reconcile(then(vec![Expect::get_secret(&secret)], run_failing_at_2()))
        .await;
    assert_eq!(action.expect("a reconcile"), Action::await_change());
    assert_eq!(db.applied().await, [1]);

    assert_captured(&logs, &transcript);
    assert_never_shown(&role.password, &transcript, &logs);
}

#[test]
fn the_password_check_finds_a_url_in_a_status_message_or_a_log_line() {
    // Were the engine to name the database by its URL, password and all...
    let leaky = engine::Error::Unreachable {
        target: UNREACHABLE_URL.into(),
        reason: "connection refused".into(),
    };
    let finding = Finding::DatabaseUnavailable(&leaky);
    let (verdict, _) = decide::decide(&finding, Duration::from_secs(10));
    let status = decide::status(None, Some(GENERATION), &verdict, &finding);

    // ...the status patch would show it...
    let patch = json!({ "status": status }).to_string();
    let places = [("the status patch".to_string(), patch)];
    assert_eq!(places_mentioning(UNREACHABLE_PASSWORD, &places).len(), 1);

    // ...and so would a log line that prints the error.
    let logs = CapturedLogs::default();
    {
        let _capture = logs.install();
        tracing::warn!(error = %leaky, "reconcile failed");
    }
    assert_eq!(
        places_mentioning(UNREACHABLE_PASSWORD, &logs.lines()).len(),
        1
    );

    // The engine's real error names the database without the password.
    let real = engine::Database::from_url(UNREACHABLE_URL)
        .expect("a URL")
        .redacted();
    assert_eq!(real, "postgres://app@127.0.0.1:1/db");
}
