//! The statements of a script as psql sees them, and quoting for names and
//! values we build into scripts.
//!
//! A no-transaction migration must send each statement on its own: PostgreSQL
//! runs a multi-statement query string as one implicit transaction, and
//! `CREATE INDEX CONCURRENTLY` refuses to run inside one. Where a statement
//! ends is psql's decision, since files are written and tried with psql.
//!
//! The lexing is PostgreSQL's own scanner (libpg_query, through the
//! `pg_query` crate): strings, E-strings continued across lines, dollar
//! quotes with any identifier characters, nested comments and `U&` strings
//! come out exactly as the server reads them. On top of its tokens this
//! module applies psql's rule (src/fe_utils/psqlscan.l): a `;` ends a
//! statement only outside parentheses and outside the `BEGIN ... END` body of
//! `CREATE [OR REPLACE] FUNCTION|PROCEDURE`.

use pg_query::protobuf::{KeywordKind, Token as Kind};

/// One token of a script, with its byte range in the script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    pub kind: Kind,
    /// A keyword or a plain identifier: what psql calls an identifier.
    pub is_word: bool,
    pub start: usize,
    pub end: usize,
}

impl Token {
    pub fn is_comment(&self) -> bool {
        matches!(self.kind, Kind::SqlComment | Kind::CComment)
    }
}

/// One top-level statement of a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement<'a> {
    /// The statement's text, without its terminating `;`.
    pub text: &'a str,
    /// Byte offset of `text` in the script, to report positions in the file.
    pub offset: usize,
    /// Its tokens, comments included; their offsets are into the script.
    pub tokens: Vec<Token>,
}

impl Statement<'_> {
    /// The tokens that are not comments.
    pub fn code(&self) -> impl Iterator<Item = &Token> {
        self.tokens.iter().filter(|t| !t.is_comment())
    }

    /// The text of a token of this statement.
    pub fn text_of(&self, token: &Token) -> &str {
        &self.text[token.start - self.offset..token.end - self.offset]
    }

    /// The statement as a script would hold it, `;` included: the `;` goes
    /// right after its last token and before any trailing comment, which
    /// would otherwise swallow it (`CREATE ... -- note;`).
    pub fn terminated(&self) -> String {
        let end = self
            .code()
            .last()
            .map_or(self.text.len(), |t| t.end - self.offset);
        let (code, trailing) = self.text.split_at(end);
        let mut out = format!("{};", code.trim());
        if !trailing.trim().is_empty() {
            out.push(' ');
            out.push_str(trailing.trim());
        }
        out
    }

    /// The first `n` words of the statement, upper-cased, such as
    /// `["PREPARE", "TRANSACTION"]`; fewer when something else comes first.
    pub fn leading_words(&self, n: usize) -> Vec<String> {
        self.code()
            .take(n)
            .map_while(|t| t.is_word.then(|| self.text_of(t).to_ascii_uppercase()))
            .collect()
    }
}

/// PostgreSQL's scanner could not read the text: an unterminated string,
/// quoted name, dollar quote or comment, or a NUL byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanError(pub String);

/// The tokens of `script`, comments included.
pub fn tokens(script: &str) -> Result<Vec<Token>, ScanError> {
    // `pg_query::scan_tokens` would skip the protobuf round trip, but builds
    // a slice from a null pointer when there are no tokens, which aborts.
    let scanned = pg_query::scan(script).map_err(|e| ScanError(e.to_string()))?;
    Ok(scanned
        .tokens
        .into_iter()
        .map(|t| {
            let kind = Kind::try_from(t.token).unwrap_or(Kind::Nul);
            let start = t.start as usize;
            // Quoted identifiers are IDENT tokens too, but not words to psql.
            let is_word = t.keyword_kind != KeywordKind::NoKeyword as i32
                || (kind == Kind::Ident && !script[start..].starts_with('"'));
            Token {
                kind,
                is_word,
                start,
                end: t.end as usize,
            }
        })
        .collect())
}

/// Splits `script` into its top-level statements, where psql would.
/// Statements that hold only white space and comments are dropped.
pub fn statements(script: &str) -> Result<Vec<Statement<'_>>, ScanError> {
    let mut out = Vec::new();
    let mut split = PsqlSplit::default();
    let mut start = 0;
    let mut pending = Vec::new();
    for token in tokens(script)? {
        if split.ends_statement(&token, script) {
            push_statement(
                script,
                start,
                token.start,
                std::mem::take(&mut pending),
                &mut out,
            );
            start = token.end;
        } else {
            pending.push(token);
        }
    }
    push_statement(script, start, script.len(), pending, &mut out);
    Ok(out)
}

/// [`statements`] for a script that was checked when it was loaded. Should
/// the scanner still fail, the whole script goes as one statement: the
/// server then reports the error, with its position, before running any of it.
pub fn split_statements(script: &str) -> Vec<Statement<'_>> {
    statements(script).unwrap_or_else(|_| {
        vec![Statement {
            text: script,
            offset: 0,
            tokens: Vec::new(),
        }]
    })
}

fn push_statement<'a>(
    script: &'a str,
    start: usize,
    end: usize,
    tokens: Vec<Token>,
    out: &mut Vec<Statement<'a>>,
) {
    if tokens.iter().any(|t| !t.is_comment()) {
        out.push(Statement {
            text: &script[start..end],
            offset: start,
            tokens,
        });
    }
}

/// psql's state between two statements: parenthesis depth, `BEGIN ... END`
/// depth, and the first words of the statement, to know whether it is a
/// `CREATE [OR REPLACE] FUNCTION|PROCEDURE`.
#[derive(Default)]
struct PsqlSplit {
    parens: usize,
    begins: usize,
    words: usize,
    /// The first letter of each of the first four words, when the word is
    /// one of CREATE, OR, REPLACE, FUNCTION, PROCEDURE.
    initials: [u8; 4],
}

impl PsqlSplit {
    fn ends_statement(&mut self, token: &Token, script: &str) -> bool {
        match token.kind {
            Kind::Ascii40 => self.parens += 1,
            Kind::Ascii41 => self.parens = self.parens.saturating_sub(1),
            Kind::Ascii59 if self.parens == 0 && self.begins == 0 => {
                *self = PsqlSplit::default();
                return true;
            }
            _ if token.is_word => self.word(&script[token.start..token.end]),
            _ => {}
        }
        false
    }

    fn word(&mut self, word: &str) {
        let word = word.to_ascii_lowercase();
        if matches!(
            word.as_str(),
            "create" | "or" | "replace" | "function" | "procedure"
        ) && self.words < self.initials.len()
        {
            self.initials[self.words] = word.as_bytes()[0];
        }
        self.words += 1;
        let routine = matches!(
            self.initials,
            [b'c', b'f' | b'p', ..] | [b'c', b'o', b'r', b'f' | b'p']
        );
        if !routine || self.parens > 0 {
            return;
        }
        match word.as_str() {
            "begin" => self.begins += 1,
            // CASE also ends with END; it only matters inside a body.
            "case" if self.begins > 0 => self.begins += 1,
            "end" => self.begins = self.begins.saturating_sub(1),
            _ => {}
        }
    }
}

/// True when `text` holds something other than white space and comments.
pub fn has_code(text: &str) -> bool {
    match tokens(text) {
        Ok(tokens) => tokens.iter().any(|t| !t.is_comment()),
        // Something the scanner choked on is something.
        Err(_) => !text.trim().is_empty(),
    }
}

/// Quotes a name as a PostgreSQL identifier, so any table or schema name is safe.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes a value as a standard string literal. Sessions run with
/// `standard_conforming_strings = on` (the default since 9.1), where only the
/// quote needs doubling.
pub fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Line and column (both 1-based, column in characters) of a byte offset.
/// A line ends at LF, CRLF or a lone CR, as editors show it.
pub fn line_col(text: &str, byte_offset: usize) -> (usize, usize) {
    let before = &text[..byte_offset.min(text.len())];
    let mut line = 1;
    let mut column = 1;
    let mut chars = before.chars().peekable();
    while let Some(c) = chars.next() {
        let crlf = c == '\r' && chars.peek() == Some(&'\n');
        if (c == '\n' || c == '\r') && !crlf {
            line += 1;
            column = 1;
        } else if !crlf {
            column += 1;
        }
    }
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(script: &str) -> Vec<&str> {
        split_statements(script)
            .iter()
            .map(|s| s.text.trim())
            .collect()
    }

    #[test]
    fn a_trailing_comment_never_swallows_the_terminating_semicolon() {
        let script = "CREATE INDEX CONCURRENTLY i ON t (x) -- by x\n;\n\
                      /* lead */ DROP INDEX j /* tail */;\nSELECT 1";
        let out: Vec<String> = split_statements(script)
            .iter()
            .map(Statement::terminated)
            .collect();
        assert_eq!(
            out,
            [
                "CREATE INDEX CONCURRENTLY i ON t (x); -- by x",
                "/* lead */ DROP INDEX j; /* tail */",
                "SELECT 1;"
            ]
        );
    }

    #[test]
    fn splits_on_top_level_semicolons_only() {
        let script = "CREATE TABLE a (x text DEFAULT 'a;b');\n\
                      -- a comment; with a semicolon\n\
                      /* block; /* nested; */ still comment; */\n\
                      CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql;\n\
                      SELECT \"odd;name\" FROM a;\n\
                      SELECT E'it\\'s; fine';\n\
                      SELECT $$;$$";
        assert_eq!(
            texts(script),
            vec![
                "CREATE TABLE a (x text DEFAULT 'a;b')",
                "-- a comment; with a semicolon\n/* block; /* nested; */ still comment; */\nCREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql",
                "SELECT \"odd;name\" FROM a",
                "SELECT E'it\\'s; fine'",
                "SELECT $$;$$",
            ]
        );
    }

    #[test]
    fn drops_statements_that_are_only_comments() {
        assert_eq!(
            texts("SELECT 1;\n-- trailing comment\n;  ;"),
            vec!["SELECT 1"]
        );
        assert!(!has_code("  -- nothing\n/* here */ "));
    }

    #[test]
    fn keeps_offsets_into_the_script() {
        let script = "SELECT 1;\nSELECT 2;";
        let second = &split_statements(script)[1];
        assert_eq!(
            &script[second.offset..second.offset + second.text.len()],
            "\nSELECT 2"
        );
    }

    #[test]
    fn parameters_and_identifiers_with_dollars_are_not_quotes() {
        assert_eq!(
            texts("SELECT a$b, $1; SELECT 2"),
            vec!["SELECT a$b, $1", "SELECT 2"]
        );
    }

    #[test]
    fn finds_leading_words_past_comments() {
        let words = |s: &str| split_statements(s)[0].leading_words(2);
        assert_eq!(words("-- hi\n  commit"), vec!["COMMIT"]);
        assert_eq!(words("/* x */ begin work"), vec!["BEGIN", "WORK"]);
        assert_eq!(words("prepare \"transaction\""), vec!["PREPARE"]);
        assert!(split_statements("-- only a comment").is_empty());
    }

    #[test]
    fn reports_unreadable_text() {
        assert!(statements("SELECT 'open").is_err());
        assert!(statements("SELECT $$ open").is_err());
        assert!(statements("/* open /* nested */").is_err());
        // The migrator still gets the text, for the server to report.
        assert_eq!(split_statements("SELECT 'open").len(), 1);
    }

    #[test]
    fn quotes_names_and_values() {
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
    }

    #[test]
    fn reports_line_and_column() {
        assert_eq!(line_col("ab\ncdé\nf", 7), (2, 4));
        assert_eq!(line_col("x", 0), (1, 1));
        assert_eq!(line_col("a\r\nb\rc", 5), (3, 1));
    }

    #[test]
    fn begin_atomic_bodies_are_one_statement() {
        assert_eq!(
            texts(
                "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END; SELECT 3"
            ),
            vec![
                "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END",
                "SELECT 3"
            ]
        );
        // CASE ... END inside the body does not close it.
        assert_eq!(
            texts(
                "create or replace procedure p() language sql begin atomic select case when true then 1 end; select 2; end; select 3"
            ),
            vec![
                "create or replace procedure p() language sql begin atomic select case when true then 1 end; select 2; end",
                "select 3"
            ]
        );
        // Outside such a body, BEGIN and END are statements of their own.
        assert_eq!(
            texts("BEGIN; SELECT CASE WHEN true THEN 1 END; END;"),
            vec!["BEGIN", "SELECT CASE WHEN true THEN 1 END", "END"]
        );
        // BEGIN inside parentheses is a name.
        assert_eq!(
            texts("CREATE FUNCTION f(begin int) RETURNS int LANGUAGE sql RETURN (begin); SELECT 2"),
            vec![
                "CREATE FUNCTION f(begin int) RETURNS int LANGUAGE sql RETURN (begin)",
                "SELECT 2"
            ]
        );
        // Outside them psql counts it, even as a name, and so do we: the
        // rest of the script goes as one statement, as psql sends it.
        assert_eq!(
            texts("CREATE FUNCTION f(begin int) RETURNS int LANGUAGE sql RETURN begin; SELECT 2"),
            vec!["CREATE FUNCTION f(begin int) RETURNS int LANGUAGE sql RETURN begin; SELECT 2"]
        );
    }

    #[test]
    fn semicolons_inside_parentheses_do_not_end_a_statement() {
        assert_eq!(
            texts(
                "CREATE RULE r AS ON INSERT TO a DO ALSO (INSERT INTO b VALUES (NEW.x); INSERT INTO c VALUES (NEW.x)); SELECT 1"
            ),
            vec![
                "CREATE RULE r AS ON INSERT TO a DO ALSO (INSERT INTO b VALUES (NEW.x); INSERT INTO c VALUES (NEW.x))",
                "SELECT 1"
            ]
        );
    }

    #[test]
    fn an_identifier_ending_in_e_does_not_start_an_e_string() {
        assert_eq!(
            texts("SELECT a$e'\\'; COMMIT; SELECT 'x'"),
            vec!["SELECT a$e'\\'", "COMMIT", "SELECT 'x'"]
        );
    }

    #[test]
    fn an_e_string_continued_on_the_next_line_keeps_its_escapes() {
        assert_eq!(
            texts("SELECT E'a'\n'\\'; COMMIT; --'; SELECT 2"),
            vec!["SELECT E'a'\n'\\'; COMMIT; --'", "SELECT 2"]
        );
    }

    #[test]
    fn dollar_tags_may_hold_any_identifier_characters() {
        assert_eq!(
            texts("DO $€$ BEGIN PERFORM 1; END $€$; SELECT 2"),
            vec!["DO $€$ BEGIN PERFORM 1; END $€$", "SELECT 2"]
        );
    }

    #[test]
    fn a_line_comment_ends_at_a_carriage_return() {
        assert!(has_code("-- a comment\rCREATE TABLE t ()"));
        assert_eq!(
            texts("-- one\rSELECT 1;\rSELECT 2"),
            vec!["-- one\rSELECT 1", "SELECT 2"]
        );
    }
}
