//! What a migration file may not hold, found when it is loaded, before any
//! of it runs: transaction control, `COPY ... FROM STDIN` and psql
//! meta-commands. Each would otherwise fail half-way through a run, or
//! worse, seem to succeed.

use pg_query::protobuf::Token as Kind;

use super::error::{Error, Result};
use super::migration::Script;
use super::sql::{self, Statement};

/// Refuses `script` when it holds a statement the engine cannot run for it.
pub fn check(script: &Script) -> Result<()> {
    let statements = sql::statements(&script.sql).map_err(|e| Error::UnreadableSql {
        file: script.file.clone(),
        reason: e.0,
    })?;
    for statement in &statements {
        check_statement(script, statement)?;
    }
    Ok(())
}

fn check_statement(script: &Script, statement: &Statement<'_>) -> Result<()> {
    let file = || script.file.clone();
    let line = |offset| sql::line_col(&script.sql, offset).0;
    let start = statement
        .code()
        .next()
        .map_or(statement.offset, |t| t.start);
    if let Some(keyword) = transaction_control(&statement.leading_words(2)) {
        let line = line(start);
        return Err(if script.transactional {
            Error::TransactionControl {
                file: file(),
                line,
                keyword,
            }
        } else {
            Error::TransactionControlWithoutTransaction {
                file: file(),
                line,
                keyword,
            }
        });
    }
    if copies_from_stdin(statement) {
        return Err(Error::CopyFromStdin {
            file: file(),
            line: line(start),
        });
    }
    // The scanner keeps backslashes inside strings, quoted names and
    // comments to their tokens: one on its own starts a psql meta-command.
    if let Some(backslash) = statement.code().find(|t| t.kind == Kind::Ascii92) {
        let name: String = script.sql[backslash.end..]
            .chars()
            .take_while(|c| !c.is_whitespace())
            .take(20)
            .collect();
        return Err(Error::PsqlMetaCommand {
            file: file(),
            line: line(backslash.start),
            command: format!("\\{name}"),
        });
    }
    Ok(())
}

/// The statement's transaction-control command, such as `COMMIT` or
/// `PREPARE TRANSACTION`; `None` for any other statement.
fn transaction_control(words: &[String]) -> Option<String> {
    let first = words.first()?.as_str();
    let second = words.get(1).map(String::as_str);
    let keyword = match (first, second) {
        ("START" | "PREPARE", Some("TRANSACTION")) => format!("{first} TRANSACTION"),
        ("COMMIT" | "ROLLBACK", Some("PREPARED")) => format!("{first} PREPARED"),
        ("BEGIN" | "COMMIT" | "END" | "ROLLBACK" | "ABORT" | "SAVEPOINT" | "RELEASE", _) => {
            first.to_string()
        }
        _ => return None,
    };
    Some(keyword)
}

/// `COPY ... FROM STDIN` (or psql's `pstdin`): the data would have to follow
/// in the file, which only psql reads.
fn copies_from_stdin(statement: &Statement<'_>) -> bool {
    if statement.leading_words(1).first().map(String::as_str) != Some("COPY") {
        return false;
    }
    let mut depth = 0usize;
    let mut after_from = false;
    for token in statement.code() {
        match token.kind {
            Kind::Ascii40 => depth += 1,
            Kind::Ascii41 => depth = depth.saturating_sub(1),
            _ if depth == 0 && after_from => {
                let word = statement.text_of(token);
                return token.is_word
                    && (word.eq_ignore_ascii_case("stdin") || word.eq_ignore_ascii_case("pstdin"));
            }
            Kind::From if depth == 0 => after_from = true,
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_sql(sql: &str) -> Result<()> {
        check(&Script::new("1_a.sql", sql))
    }

    #[test]
    fn finds_transaction_control_by_its_leading_words() {
        let words = |s: &str| s.split(' ').map(str::to_string).collect::<Vec<_>>();
        assert_eq!(transaction_control(&words("COMMIT")), Some("COMMIT".into()));
        assert_eq!(
            transaction_control(&words("ROLLBACK PREPARED")),
            Some("ROLLBACK PREPARED".into())
        );
        assert_eq!(
            transaction_control(&words("START TRANSACTION")),
            Some("START TRANSACTION".into())
        );
        assert_eq!(transaction_control(&words("PREPARE q")), None);
        assert_eq!(transaction_control(&words("CREATE TABLE")), None);
    }

    #[test]
    fn transaction_control_inside_bodies_and_quotes_is_allowed() {
        check_sql("DO $$ BEGIN COMMIT; END $$;").unwrap();
        check_sql("CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END;")
            .unwrap();
        check_sql("SELECT 'COMMIT; BEGIN;'; -- ROLLBACK;\nPREPARE q AS SELECT 1;").unwrap();
    }

    #[test]
    fn an_unreadable_script_names_its_file() {
        let err = check_sql("SELECT 'unterminated;").unwrap_err();
        assert!(
            matches!(&err, Error::UnreadableSql { file, .. } if file == "1_a.sql"),
            "{err}"
        );
        assert!(err.to_string().contains("unterminated"), "{err}");
    }
}
