//! Each tool's version table, created with the DDL that tool uses on
//! PostgreSQL and filled as the tool fills it, read by schemaop's adapter
//! on a real server, one throwaway database per test.

mod common;

use common::TestDb;
use schemaop::adapters::{self, Tool, ToolState, VersionTable};

/// Creates the tool's table with `ddl`, runs `rows`, and reads it back.
async fn read_after(tool: Tool, table: Option<&str>, ddl: &str) -> ToolState {
    let db = TestDb::new().await;
    let client = db.client().await;
    client
        .batch_execute(ddl)
        .await
        .unwrap_or_else(|e| panic!("{ddl}: {e}"));
    let table = table.map(|t| VersionTable::parse(t).expect("a table name"));
    adapters::read(&client, tool, table.as_ref())
        .await
        .unwrap_or_else(|e| panic!("reading {tool}'s table: {e}"))
}

#[tokio::test]
async fn a_missing_version_table_means_nothing_applied_for_every_tool() {
    let db = TestDb::new().await;
    let client = db.client().await;
    for tool in Tool::ALL {
        let state = adapters::read(&client, tool, None).await.unwrap();
        assert!(!state.exists, "{tool}");
        assert!(state.current.is_empty(), "{tool}");
        assert_eq!(state.current_text(), "base", "{tool}");
    }
    // A schema that does not exist either.
    let elsewhere = VersionTable::parse("nowhere.alembic_version").unwrap();
    let state = adapters::read(&client, Tool::Alembic, Some(&elsewhere))
        .await
        .unwrap();
    assert!(!state.exists);
}

#[tokio::test]
async fn alembic_version_with_two_branches_has_two_heads() {
    // As Alembic creates it (alembic/runtime/migration.py).
    let state = read_after(
        Tool::Alembic,
        None,
        "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, \
           CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num));
         INSERT INTO alembic_version VALUES ('c3f1'), ('a9e2');",
    )
    .await;
    assert!(state.exists);
    assert_eq!(state.current, ["a9e2", "c3f1"]);
    assert_eq!(state.needs_a_person, None);
}

#[tokio::test]
async fn alembic_version_table_in_another_schema_is_read_where_told() {
    let state = read_after(
        Tool::Alembic,
        Some("billing.alembic_version"),
        "CREATE SCHEMA billing;
         CREATE TABLE billing.alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY);
         INSERT INTO billing.alembic_version VALUES ('0007_invoices');",
    )
    .await;
    assert_eq!(state.current, ["0007_invoices"]);
    assert_eq!(state.table.as_deref(), Some("billing.alembic_version"));
}

/// Flyway's table on PostgreSQL, as `flyway migrate` creates it.
const FLYWAY_DDL: &str = "CREATE TABLE flyway_schema_history (
    installed_rank integer NOT NULL,
    version character varying(50),
    description character varying(200) NOT NULL,
    type character varying(20) NOT NULL,
    script character varying(1000) NOT NULL,
    checksum integer,
    installed_by character varying(100) NOT NULL,
    installed_on timestamp without time zone NOT NULL DEFAULT now(),
    execution_time integer NOT NULL,
    success boolean NOT NULL,
    CONSTRAINT flyway_schema_history_pk PRIMARY KEY (installed_rank));
  CREATE INDEX flyway_schema_history_s_idx ON flyway_schema_history (success);";

#[tokio::test]
async fn flyway_is_at_its_latest_successful_version() {
    let state = read_after(
        Tool::Flyway,
        None,
        &format!(
            "{FLYWAY_DDL}
             INSERT INTO flyway_schema_history (installed_rank, version, description, type, script, \
               checksum, installed_by, execution_time, success) VALUES
               (1, '1', '<< Flyway Baseline >>', 'BASELINE', '<< Flyway Baseline >>', NULL, 'app', 0, true),
               (2, '1.9', 'users', 'SQL', 'V1_9__users.sql', 12, 'app', 8, true),
               (3, '1.10', 'orders', 'SQL', 'V1_10__orders.sql', 13, 'app', 9, true),
               (4, NULL, 'views', 'SQL', 'R__views.sql', 14, 'app', 3, true);"
        ),
    )
    .await;
    assert_eq!(state.current, ["1.10"]);
    assert_eq!(state.needs_a_person, None);
}

#[tokio::test]
async fn a_failed_flyway_row_needs_a_person() {
    let state = read_after(
        Tool::Flyway,
        None,
        &format!(
            "{FLYWAY_DDL}
             INSERT INTO flyway_schema_history (installed_rank, version, description, type, script, \
               checksum, installed_by, execution_time, success) VALUES
               (1, '1', 'init', 'SQL', 'V1__init.sql', 1, 'app', 5, true),
               (2, '2', 'concurrent index', 'SQL', 'V2__concurrent_index.sql', 2, 'app', 5, false);"
        ),
    )
    .await;
    assert_eq!(state.current, ["1"]);
    let problem = state.needs_a_person.expect("a failed row needs a person");
    assert!(
        problem.contains("version 2 (concurrent index)"),
        "{problem}"
    );
}

/// golang-migrate's table on PostgreSQL (database/postgres): one row.
const MIGRATE_DDL: &str = "CREATE TABLE IF NOT EXISTS schema_migrations \
    (version bigint NOT NULL PRIMARY KEY, dirty boolean NOT NULL);";

#[tokio::test]
async fn golang_migrate_reports_its_version() {
    let state = read_after(
        Tool::GolangMigrate,
        None,
        &format!("{MIGRATE_DDL} INSERT INTO schema_migrations VALUES (20261115090000, false);"),
    )
    .await;
    assert_eq!(state.current, ["20261115090000"]);
    assert_eq!(state.needs_a_person, None);
}

#[tokio::test]
async fn a_dirty_golang_migrate_version_needs_a_person() {
    let state = read_after(
        Tool::GolangMigrate,
        None,
        &format!("{MIGRATE_DDL} INSERT INTO schema_migrations VALUES (4, true);"),
    )
    .await;
    assert_eq!(state.current, ["4"]);
    let problem = state.needs_a_person.expect("dirty needs a person");
    assert!(problem.contains("version 4 dirty"), "{problem}");
}

#[tokio::test]
async fn sqlx_counts_successful_migrations_only() {
    // sqlx's ensure_migrations_table for PostgreSQL.
    let state = read_after(
        Tool::Sqlx,
        None,
        "CREATE TABLE IF NOT EXISTS _sqlx_migrations (
           version BIGINT PRIMARY KEY,
           description TEXT NOT NULL,
           installed_on TIMESTAMPTZ NOT NULL DEFAULT now(),
           success BOOLEAN NOT NULL,
           checksum BYTEA NOT NULL,
           execution_time BIGINT NOT NULL);
         INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES
           (20261101000000, 'init', true, '\\x00', 10),
           (20261102000000, 'users', true, '\\x01', 10),
           (20261103000000, 'index', false, '\\x02', 10);",
    )
    .await;
    assert_eq!(state.current, ["20261102000000"]);
    let problem = state.needs_a_person.expect("a partly applied row");
    assert!(problem.contains("20261103000000 (index)"), "{problem}");
}

#[tokio::test]
async fn dbmate_is_at_its_newest_version() {
    // dbmate's postgres driver: versions are the files' timestamps, as text.
    let state = read_after(
        Tool::Dbmate,
        None,
        "CREATE TABLE IF NOT EXISTS schema_migrations (version varchar(128) PRIMARY KEY);
         INSERT INTO schema_migrations VALUES ('20261002093000'), ('20261115090000'), ('20261101120000');",
    )
    .await;
    assert_eq!(state.current, ["20261115090000"]);
}

#[tokio::test]
async fn django_is_at_each_apps_last_migration() {
    // Django's MigrationRecorder on PostgreSQL (BigAutoField id).
    let state = read_after(
        Tool::Django,
        None,
        "CREATE TABLE django_migrations (
           id bigint NOT NULL PRIMARY KEY GENERATED BY DEFAULT AS IDENTITY,
           app varchar(255) NOT NULL,
           name varchar(255) NOT NULL,
           applied timestamp with time zone NOT NULL);
         INSERT INTO django_migrations (app, name, applied) VALUES
           ('contenttypes', '0001_initial', now()),
           ('auth', '0001_initial', now()),
           ('contenttypes', '0002_remove_content_type_name', now()),
           ('billing', '0001_initial', now());",
    )
    .await;
    assert_eq!(
        state.current,
        [
            "auth.0001_initial",
            "billing.0001_initial",
            "contenttypes.0002_remove_content_type_name"
        ]
    );
}

#[tokio::test]
async fn the_wrong_tool_for_a_table_is_an_error_naming_both_flags() {
    let db = TestDb::new().await;
    let client = db.client().await;
    client.batch_execute(MIGRATE_DDL).await.unwrap();
    // dbmate's default table has golang-migrate's name but not its columns:
    // reading golang-migrate's table as sqlx's must say what to check.
    let table = VersionTable::parse("schema_migrations").unwrap();
    let error = adapters::read(&client, Tool::Sqlx, Some(&table))
        .await
        .expect_err("sqlx's columns are not there");
    let text = error.to_string();
    assert!(text.contains("--tool and --version-table"), "{text}");
}
