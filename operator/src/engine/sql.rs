//! Just enough SQL lexing to split a script into statements, find where each
//! starts, and quote names and values we build into scripts.
//!
//! A no-transaction migration must send each statement on its own: PostgreSQL
//! runs a multi-statement query string as one implicit transaction, and
//! `CREATE INDEX CONCURRENTLY` refuses to run inside one. Splitting needs to
//! know about quotes, dollar quotes and comments, and nothing more.

/// One top-level statement of a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement<'a> {
    /// The statement's text, without its terminating `;`.
    pub text: &'a str,
    /// Byte offset of `text` in the script, to report positions in the file.
    pub offset: usize,
}

/// Splits `script` into its top-level statements. Statements that hold only
/// white space and comments are dropped.
pub fn split_statements(script: &str) -> Vec<Statement<'_>> {
    let bytes = script.as_bytes();
    let mut statements = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b';' => {
                push_statement(script, start, i, &mut statements);
                start = i + 1;
                i += 1;
            }
            _ => i = skip_token(script, i),
        }
    }
    push_statement(script, start, bytes.len(), &mut statements);
    statements
}

fn push_statement<'a>(script: &'a str, start: usize, end: usize, out: &mut Vec<Statement<'a>>) {
    let text = &script[start..end];
    if has_code(text) {
        out.push(Statement {
            text,
            offset: start,
        });
    }
}

/// True when `text` holds something other than white space and comments.
pub fn has_code(text: &str) -> bool {
    first_code_offset(text).is_some()
}

/// Byte offset of the first character that is not white space or a comment.
fn first_code_offset(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let next = skip_token(text, i);
        let is_comment = (bytes[i] == b'-' || bytes[i] == b'/') && next > i + 1;
        if !bytes[i].is_ascii_whitespace() && !is_comment {
            return Some(i);
        }
        i = next;
    }
    None
}

/// The first keyword of a statement, upper-cased, such as `BEGIN` or `CREATE`.
pub fn leading_keyword(statement: &str) -> Option<String> {
    let start = first_code_offset(statement)?;
    let word: String = statement[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect();
    (!word.is_empty()).then(|| word.to_ascii_uppercase())
}

/// Returns the index just past the token that starts at `i`: a quoted string,
/// a quoted identifier, a dollar-quoted string, a comment, or one character.
/// An unterminated token runs to the end; PostgreSQL reports it better than we can.
fn skip_token(script: &str, i: usize) -> usize {
    let bytes = script.as_bytes();
    let len = bytes.len();
    match bytes[i] {
        b'\'' => {
            // E'...' strings allow backslash escapes; the lexer treats a
            // preceding E as part of the string so `\'` does not end it.
            let escapes =
                i > 0 && matches!(bytes[i - 1], b'e' | b'E') && !is_ident_byte_before(bytes, i - 1);
            let mut j = i + 1;
            while j < len {
                match bytes[j] {
                    b'\\' if escapes => j += 2,
                    b'\'' if j + 1 < len && bytes[j + 1] == b'\'' => j += 2,
                    b'\'' => return j + 1,
                    _ => j += 1,
                }
            }
            len
        }
        b'"' => {
            let mut j = i + 1;
            while j < len {
                match bytes[j] {
                    b'"' if j + 1 < len && bytes[j + 1] == b'"' => j += 2,
                    b'"' => return j + 1,
                    _ => j += 1,
                }
            }
            len
        }
        b'-' if i + 1 < len && bytes[i + 1] == b'-' => match script[i..].find('\n') {
            Some(n) => i + n + 1,
            None => len,
        },
        b'/' if i + 1 < len && bytes[i + 1] == b'*' => {
            // Block comments nest in PostgreSQL.
            let mut depth = 0usize;
            let mut j = i;
            while j + 1 < len {
                if bytes[j] == b'/' && bytes[j + 1] == b'*' {
                    depth += 1;
                    j += 2;
                } else if bytes[j] == b'*' && bytes[j + 1] == b'/' {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        return j;
                    }
                } else {
                    j += 1;
                }
            }
            len
        }
        b'$' if !is_ident_byte_before(bytes, i) => match dollar_tag(&script[i..]) {
            Some(tag) => {
                let body = i + tag.len();
                match script[body..].find(tag) {
                    Some(n) => body + n + tag.len(),
                    None => len,
                }
            }
            None => i + 1,
        },
        // Skip identifiers whole, so `$` inside one (legal in PostgreSQL) is not a quote.
        b if b.is_ascii_alphanumeric() || b == b'_' => {
            let mut j = i + 1;
            while j < len
                && (bytes[j].is_ascii_alphanumeric() || bytes[j] == b'_' || bytes[j] == b'$')
            {
                j += 1;
            }
            j
        }
        _ => i + script[i..].chars().next().map_or(1, char::len_utf8),
    }
}

fn is_ident_byte_before(bytes: &[u8], i: usize) -> bool {
    i > 0 && (bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_' || bytes[i - 1] >= 0x80)
}

/// `$tag$` or `$$` at the start of `s`; `$1` (a parameter) is not a tag.
fn dollar_tag(s: &str) -> Option<&str> {
    let rest = &s[1..];
    let end = rest.find('$')?;
    let tag = &rest[..end];
    let valid = tag
        .chars()
        .enumerate()
        .all(|(n, c)| c == '_' || c.is_alphabetic() || (n > 0 && c.is_ascii_digit()));
    valid.then(|| &s[..end + 2])
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
pub fn line_col(text: &str, byte_offset: usize) -> (usize, usize) {
    let before = &text[..byte_offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
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
    fn finds_leading_keyword_past_comments() {
        assert_eq!(leading_keyword("-- hi\n  commit"), Some("COMMIT".into()));
        assert_eq!(leading_keyword("/* x */ begin work"), Some("BEGIN".into()));
        assert_eq!(leading_keyword("-- only a comment"), None);
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
    }
}
