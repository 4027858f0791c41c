//! The engine reads SQL files the way psql does. Every file of
//! `tests/sql_corpus/` goes to two fresh databases: psql runs it in one
//! (`-1` for a transactional file, statement by statement for a
//! no-transaction one), the engine applies it as a migration in the other;
//! the two schema dumps must be identical. A file whose name holds `_no_tx`
//! carries the no-transaction marker. Every file of
//! `tests/sql_corpus/refused/` must be refused when it is loaded, naming the
//! file and the line its first comment gives (`-- refused at line N`).

mod common;

use std::path::{Path, PathBuf};

use common::{TestDb, pg_program, run_program as run};
use schemaop::engine::{Direction, Event, HistoryTable, MigrationSource, MigratorOptions, Target};

/// The history tables live in a schema of their own, left out of the dumps.
const HISTORY_SCHEMA: &str = "schemaop_meta";

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sql_corpus")
}

fn sql_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    files
}

/// The schema, without the lines that differ between any two dumps (the
/// header and psql's `\restrict` keys).
fn dump(db: &TestDb) -> String {
    let text = run(
        &pg_program("pg_dump"),
        &[
            "--schema-only",
            "--no-owner",
            "--no-privileges",
            &format!("--exclude-schema={HISTORY_SCHEMA}"),
            &format!("--dbname={}", db.url),
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    text.lines()
        .filter(|l| {
            !l.starts_with("\\restrict")
                && !l.starts_with("\\unrestrict")
                && !l.starts_with("-- Dumped")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn load(path: &Path) -> Result<MigrationSource, schemaop::engine::Error> {
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    MigrationSource::from_files([(name, std::fs::read(path).unwrap())])
}

fn quiet(_: Event<'_>) {}

async fn with_psql(path: &Path, transactional: bool) -> Result<String, String> {
    let db = TestDb::new().await;
    let file = path.to_string_lossy();
    let mut args = vec![
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "-d",
        &db.url,
        "-f",
        &file,
    ];
    if transactional {
        args.push("-1");
    }
    run(&pg_program("psql"), &args)?;
    Ok(dump(&db))
}

async fn with_engine(source: &MigrationSource) -> Result<String, String> {
    let db = TestDb::new().await;
    let options = MigratorOptions {
        history: HistoryTable::new(HISTORY_SCHEMA, "schemaop_migrations"),
        actor: "sql-corpus".into(),
        ..MigratorOptions::default()
    };
    db.migrator(source, options)
        .run(Target::Latest, Direction::Up, &quiet)
        .await
        .map_err(|e| e.to_string())?;
    Ok(dump(&db))
}

#[tokio::test]
async fn the_engine_and_psql_build_the_same_schema_from_every_corpus_file() {
    let files = sql_files(&corpus());
    assert!(
        files.len() >= 40,
        "the corpus should hold at least 40 files, not {}",
        files.len()
    );
    let mut failures = Vec::new();
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let source = match load(path) {
            Ok(source) => source,
            Err(e) => {
                failures.push(format!("{name}: refused at load: {e}"));
                continue;
            }
        };
        // The file's name says how psql must run it; the engine must agree.
        let transactional = !name.contains("_no_tx");
        if source.migrations()[0].up.transactional != transactional {
            failures.push(format!(
                "{name}: the engine misread the no-transaction marker"
            ));
            continue;
        }
        let expected = match with_psql(path, transactional).await {
            Ok(dump) => dump,
            Err(e) => {
                failures.push(format!("{name}: psql: {e}"));
                continue;
            }
        };
        assert!(
            expected.contains("CREATE "),
            "{name} should create something to compare"
        );
        match with_engine(&source).await {
            Ok(actual) if actual == expected => {}
            Ok(actual) => failures.push(format!(
                "{name}: the schemas differ\n--- psql\n{expected}\n--- engine\n{actual}"
            )),
            Err(e) => failures.push(format!("{name}: engine: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} files disagree:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n\n")
    );
}

#[test]
fn every_file_that_must_be_refused_is_refused_at_load_with_its_line() {
    let files = sql_files(&corpus().join("refused"));
    assert!(files.len() >= 10, "{} refused files", files.len());
    let mut failures = Vec::new();
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(path).unwrap();
        let line: usize = text
            .lines()
            .find_map(|l| l.strip_prefix("-- refused at line "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} needs a `-- refused at line N` comment"));
        match load(path) {
            Ok(_) => failures.push(format!("{name}: accepted")),
            Err(e) => {
                let message = e.to_string();
                if !message.starts_with(&format!("{name}, line {line}: ")) {
                    failures.push(format!("{name}: expected line {line}: {message}"));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} files:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}
