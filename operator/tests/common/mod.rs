//! A throwaway database per test, on the server that `scripts/test` set up.

#![allow(dead_code)] // Each test binary uses its own part of this module.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use schemaop::engine::{Database, MigrationSource, Migrator, MigratorOptions};
use tokio_postgres::{Client, NoTls};

/// `scripts/test` exports this; the default matches what it sets up.
pub fn admin_url() -> String {
    std::env::var("SCHEMAOP_TEST_ADMIN_URL")
        .unwrap_or_else(|_| "postgres://schemaop_test:schemaop_test@127.0.0.1:5432/postgres".into())
}

/// The admin URL with another database name.
pub fn url_for(database: &str) -> String {
    let admin = admin_url();
    let (base, query) = admin
        .split_once('?')
        .map_or((admin.as_str(), None), |(b, q)| (b, Some(q)));
    let (server, _) = base
        .rsplit_once('/')
        .expect("SCHEMAOP_TEST_ADMIN_URL needs a /database part");
    match query {
        Some(q) => format!("{server}/{database}?{q}"),
        None => format!("{server}/{database}"),
    }
}

pub async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| {
            panic!("cannot connect to the test server ({e}); run the tests with ./scripts/test")
        });
    tokio::spawn(connection);
    client
}

/// A database that exists for one test and is dropped after it.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

impl TestDb {
    pub async fn new() -> TestDb {
        let name = format!(
            "schemaop_test_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst),
            jiff::Timestamp::now().as_nanosecond() % 1_000_000
        );
        let admin = connect(&admin_url()).await;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("cannot create a test database: {e}"));
        TestDb {
            url: url_for(&name),
            name,
        }
    }

    pub async fn client(&self) -> Client {
        connect(&self.url).await
    }

    pub fn database(&self) -> Database {
        Database::from_url(&self.url).expect("test URL parses")
    }

    pub fn migrator<'s>(
        &self,
        source: &'s MigrationSource,
        options: MigratorOptions,
    ) -> Migrator<'s> {
        Migrator::new(source, self.database(), options)
    }

    /// One value of the first row, as text.
    pub async fn scalar(&self, sql: &str) -> Option<String> {
        let client = self.client().await;
        let messages = client
            .simple_query(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        messages.iter().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some(row.get(0).map(str::to_string)),
            _ => None,
        })?
    }

    pub async fn count(&self, sql: &str) -> i64 {
        self.scalar(sql)
            .await
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{sql} gave no count"))
    }

    /// Every table, column, index, constraint, type and function of the
    /// `public` schema, but for schemaop's own tables: two equal catalogs
    /// mean two equal schemas.
    pub async fn catalog(&self) -> Vec<String> {
        let sql = "
            SELECT 'column ' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
                   || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
                   || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')
              FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
              LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
             WHERE n.nspname = 'public' AND c.relname NOT LIKE 'schemaop_migrations%'
            UNION ALL
            SELECT 'index ' || indexname || ': ' || indexdef FROM pg_indexes
             WHERE schemaname = 'public' AND tablename NOT LIKE 'schemaop_migrations%'
            UNION ALL
            SELECT 'constraint ' || conname || ': ' || pg_get_constraintdef(oid) FROM pg_constraint
             WHERE connamespace = 'public'::regnamespace AND conrelid::regclass::text NOT LIKE 'schemaop_migrations%'
            UNION ALL
            SELECT 'type ' || typname FROM pg_type
             WHERE typnamespace = 'public'::regnamespace AND typtype IN ('e', 'c', 'd') AND typrelid = 0
            UNION ALL
            SELECT 'function ' || proname || '(' || pg_get_function_arguments(oid) || ')' FROM pg_proc
             WHERE pronamespace = 'public'::regnamespace
            UNION ALL
            SELECT 'trigger ' || tgname FROM pg_trigger WHERE NOT tgisinternal
            ORDER BY 1";
        let client = self.client().await;
        client
            .query(sql, &[])
            .await
            .unwrap_or_else(|e| panic!("reading the catalog: {e}"))
            .iter()
            .map(|row| row.get::<_, String>(0))
            .collect()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        as_admin_after_test(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
    }
}

/// Runs clean-up SQL as the admin from a `Drop`, which runs outside the
/// test's runtime (that may be shutting down): on a thread and runtime of
/// its own. Best effort, like any clean-up.
fn as_admin_after_test(sql: String) {
    let _ = std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        runtime.block_on(async {
            if let Ok((client, connection)) = tokio_postgres::connect(&admin_url(), NoTls).await {
                tokio::spawn(connection);
                let _ = client.batch_execute(&sql).await;
            }
        });
    })
    .join();
}

/// The sample app's migrations at the root of the repository.
pub fn sample_migrations() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations")
}

/// A folder of migration files for one test.
pub fn migrations_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).expect("write migration");
    }
    dir
}

pub fn source(files: &[(&str, &str)]) -> MigrationSource {
    MigrationSource::from_files(files.iter().map(|(n, t)| (*n, t.as_bytes().to_vec())))
        .expect("valid source")
}

/// The test server's URL for `database`, logged in as `user` with `password`.
pub fn url_as(user: &str, password: &str, database: &str) -> String {
    let admin = admin_url();
    let (scheme, rest) = admin
        .split_once("://")
        .expect("SCHEMAOP_TEST_ADMIN_URL is a URL");
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let server = authority.rsplit_once('@').map_or(authority, |(_, s)| s);
    let query = path
        .split_once('?')
        .map(|(_, q)| format!("?{q}"))
        .unwrap_or_default();
    format!("{scheme}://{user}:{password}@{server}/{database}{query}")
}

/// A login role with a password, for tests about credentials. Create it
/// before the databases it is granted, so it is dropped after them.
pub struct TestRole {
    pub name: String,
    pub password: String,
}

impl TestRole {
    pub async fn new(password: &str) -> TestRole {
        let name = format!(
            "schemaop_role_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let admin = connect(&admin_url()).await;
        admin
            // Membership lets the admin role read what the test role creates.
            .batch_execute(&format!(
                "CREATE ROLE {name} LOGIN PASSWORD '{password}'; GRANT {name} TO CURRENT_USER;"
            ))
            .await
            .unwrap_or_else(|e| panic!("cannot create a test role: {e}"));
        TestRole {
            name,
            password: password.to_string(),
        }
    }

    /// Lets the role do everything in `db` a migration runner needs: connect,
    /// create schemas and create objects in `public`.
    pub async fn grant_all_on(&self, db: &TestDb) {
        let client = db.client().await;
        client
            .batch_execute(&format!(
                "GRANT ALL ON DATABASE {db} TO {role}; GRANT ALL ON SCHEMA public TO {role};",
                db = db.name,
                role = self.name
            ))
            .await
            .unwrap_or_else(|e| panic!("cannot grant the test role: {e}"));
    }

    /// The URL of `db`, logged in as this role with its password.
    pub fn url(&self, db: &TestDb) -> String {
        url_as(&self.name, &self.password, &db.name)
    }
}

impl Drop for TestRole {
    fn drop(&mut self) {
        as_admin_after_test(format!("DROP ROLE IF EXISTS {}", self.name));
    }
}

/// A PostgreSQL client program: from PATH, or from Debian's versioned folder.
pub fn pg_program(name: &str) -> PathBuf {
    let in_path = std::process::Command::new(name).arg("--version").output();
    if in_path.is_ok_and(|o| o.status.success()) {
        return PathBuf::from(name);
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dir| dir.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    versions.sort();
    versions
        .into_iter()
        .rev()
        .map(|v| v.join("bin").join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} not found; install postgresql-client"))
}

/// Runs a program to its end: its stdout, or all it said when it failed.
pub fn run_program(program: &Path, args: &[&str]) -> Result<String, String> {
    let output = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "{} {args:?} failed: {}{stdout}",
            program.display(),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// What one run of a process left: its exit code and everything it printed.
#[derive(Debug)]
pub struct Outcome {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    /// Panics, showing everything printed, unless the run exited with `code`.
    #[track_caller]
    pub fn expect(self, code: impl Into<i32>) -> Self {
        let code = code.into();
        assert_eq!(
            self.code,
            Some(code),
            "expected exit code {code}\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }

    #[track_caller]
    pub fn assert_never_shows(&self, secret: &str) {
        assert!(
            !self.stdout.contains(secret) && !self.stderr.contains(secret),
            "{secret:?} was printed\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
    }
}

/// Runs `command` to its end, keeping what it printed; one still running
/// after `guard` fails the test instead of hanging it.
pub async fn outcome_of(
    mut command: tokio::process::Command,
    guard: std::time::Duration,
) -> Outcome {
    let output = tokio::time::timeout(guard, command.output())
        .await
        .unwrap_or_else(|_| panic!("{command:?} did not finish within {guard:?}"))
        .unwrap_or_else(|e| panic!("{command:?} did not start: {e}"));
    Outcome {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}
