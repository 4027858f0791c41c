//! String literals taken out of PostgreSQL's error texts.
//!
//! A syntax error quotes the statement near the error, so `CREATE ROLE r
//! WITH LOGIN 's3cr3t'` fails with `syntax error at or near "'s3cr3t'"`. The
//! text is printed, written to the history table and the audit log, and put
//! in status and Events, which people with less access than the migration
//! runner read. Identifiers and keywords stay, so the message still says what
//! is wrong; the position is reported apart from the text and stays too.

/// What a literal's contents become.
const HIDDEN: &str = "***";

/// Names whose value is a secret, in `NAME=value` and `--NAME value`.
const SECRET_NAMES: [&str; 5] = ["password", "passwd", "pwd", "secret", "token"];

/// A command line as it may be printed and stored: each argument
/// shell-quoted where needed, with every secret in it hidden whole: a URL's
/// password (`postgresql+asyncpg://app:***@db/app`, JDBC URLs too),
/// `password=...` in a query string, a libpq keyword string or an
/// environment assignment (`PGPASSWORD=...`), and the value after a
/// `--password` style flag. When in doubt, more is hidden.
pub fn command_line(args: &[String]) -> String {
    let mut out = Vec::with_capacity(args.len());
    let mut hide_next = false;
    for arg in args {
        let shown = if hide_next {
            HIDDEN.to_string()
        } else {
            secrets_in(arg)
        };
        hide_next = is_secret_flag(arg);
        out.push(shell_quote(&shown));
    }
    out.join(" ")
}

/// `text` with URL passwords and `name=value` secrets hidden.
pub fn secrets_in(text: &str) -> String {
    named_values(&url_passwords(text))
}

/// `--password`, `-password`, `--db-password`: a flag whose value follows.
fn is_secret_flag(arg: &str) -> bool {
    if !arg.starts_with('-') || arg.contains('=') {
        return false;
    }
    let name = arg.trim_start_matches('-').to_ascii_lowercase();
    SECRET_NAMES.iter().any(|secret| {
        name == *secret
            || name.ends_with(&format!("-{secret}"))
            || name.ends_with(&format!("_{secret}"))
    })
}

/// Hides what lies between a URL's `user:` and the last `@` before the next
/// space: the password, however it was (or was not) encoded.
fn url_passwords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        out.push_str(&rest[..at + 3]);
        let after = &rest[at + 3..];
        let end = after.find(char::is_whitespace).unwrap_or(after.len());
        let segment = &after[..end];
        match segment.rfind('@') {
            Some(at) => {
                let credentials = &segment[..at];
                match credentials.find(':') {
                    Some(colon) => {
                        out.push_str(&credentials[..=colon]);
                        out.push_str(HIDDEN);
                    }
                    None => out.push_str(credentials),
                }
                out.push_str(&segment[at..]);
            }
            None => out.push_str(segment),
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// Hides the value of every `NAME=` whose name ends in a secret's name
/// (`password=`, `PGPASSWORD=`, `sslpassword=`), up to `&`, `;` or a space,
/// or to its closing quote.
fn named_values(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        let found = SECRET_NAMES
            .iter()
            .filter_map(|name| {
                lower[i..]
                    .find(&format!("{name}="))
                    .map(|at| (at, name.len()))
            })
            .min();
        let Some((at, len)) = found else {
            break;
        };
        let value_start = i + at + len + 1;
        out.push_str(&text[i..value_start]);
        let value = &text[value_start..];
        let end = match value.chars().next() {
            Some(quote @ ('\'' | '"')) => value[1..]
                .find(quote)
                .map_or(value.len(), |close| close + 2),
            _ => value
                .find(|c: char| c == '&' || c == ';' || c.is_whitespace())
                .unwrap_or(value.len()),
        };
        if end > 0 {
            out.push_str(HIDDEN);
        }
        i = value_start + end;
    }
    out.push_str(&text[i.min(text.len())..]);
    out
}

/// The argument as a POSIX shell reads it back: as it is when it holds only
/// safe characters, else in single quotes.
fn shell_quote(arg: &str) -> String {
    let safe = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,*^".contains(c));
    if safe {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// `text` with the contents of every `'...'` (with `''` inside), `E'...'`
/// (with backslash escapes) and `$tag$...$tag$` literal replaced. A literal
/// that does not end is hidden to the end of the text: PostgreSQL cuts
/// quoted statements short, and a lone quote may start a secret.
pub fn literals(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(['\'', '$']) {
        let (before, from) = rest.split_at(start);
        out.push_str(before);
        if let Some(body) = from.strip_prefix('\'') {
            let escapes = before
                .strip_suffix(['E', 'e'])
                .is_some_and(|word| !word.ends_with(is_identifier_char));
            out.push('\'');
            match quoted_end(body, escapes) {
                Some(end) => {
                    out.push_str(HIDDEN);
                    out.push('\'');
                    rest = &body[end + 1..];
                }
                None => {
                    out.push_str(HIDDEN);
                    return out;
                }
            }
        } else if let Some(tag) = dollar_tag(from) {
            out.push_str(tag);
            let body = &from[tag.len()..];
            match body.find(tag) {
                Some(end) => {
                    out.push_str(HIDDEN);
                    out.push_str(tag);
                    rest = &body[end + tag.len()..];
                }
                None => {
                    out.push_str(HIDDEN);
                    return out;
                }
            }
        } else {
            out.push('$');
            rest = &from[1..];
        }
    }
    out.push_str(rest);
    out
}

/// The byte index of the quote that closes a literal whose contents start
/// `body`.
fn quoted_end(body: &str, escapes: bool) -> Option<usize> {
    let bytes = body.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if escapes => i += 2,
            b'\'' if bytes.get(i + 1) == Some(&b'\'') => i += 2,
            b'\'' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// `$$` or `$tag$` at the start of `text`; a tag never starts with a digit,
/// so `$1` is a parameter, not a quote.
fn dollar_tag(text: &str) -> Option<&str> {
    let after = text.strip_prefix('$')?;
    let end = after.find(|c: char| !is_identifier_char(c))?;
    let tag = &after[..end];
    let valid = !tag.starts_with(|c: char| c.is_ascii_digit()) && after[end..].starts_with('$');
    valid.then(|| &text[..end + 2])
}

fn is_identifier_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quoted_statement_keeps_its_shape_but_not_its_literals() {
        for (text, expected) in [
            (
                r#"syntax error at or near "'s3cr3t'""#,
                r#"syntax error at or near "'***'""#,
            ),
            (
                r#"syntax error at or near "'it''s s3cr3t' VALID""#,
                r#"syntax error at or near "'***' VALID""#,
            ),
            (r#"near "E'a\'s3cr3t' x""#, r#"near "E'***' x""#),
            (r#"near "$pw$ s3cr3t ' $pw$ x""#, r#"near "$pw$***$pw$ x""#),
            (r#"near "$$s3cr3t$$""#, r#"near "$$***$$""#),
            (
                r#"unterminated quoted string at or near "'s3cr3t"#,
                r#"unterminated quoted string at or near "'***"#,
            ),
            (r#"near "$x$ s3cr3t"#, r#"near "$x$***"#),
            (
                r#"column "email" of relation "users" does not exist"#,
                r#"column "email" of relation "users" does not exist"#,
            ),
            ("there is no parameter $1", "there is no parameter $1"),
            ("costs $ 5", "costs $ 5"),
        ] {
            assert_eq!(literals(text), expected, "{text}");
        }
    }

    fn line(args: &[&str]) -> String {
        command_line(&args.iter().map(|a| a.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn a_command_line_shows_no_password_in_any_form() {
        for (args, expected) in [
            (
                &[
                    "alembic",
                    "-x",
                    "url=postgresql+asyncpg://app:s3cr3t@db:5432/app",
                    "upgrade",
                    "head",
                ][..],
                "alembic -x url=postgresql+asyncpg://app:***@db:5432/app upgrade head",
            ),
            (
                &[
                    "migrate",
                    "-database",
                    "postgres://app:p@ss:w/rd@db/app?sslmode=disable",
                    "up",
                ],
                "migrate -database 'postgres://app:***@db/app?sslmode=disable' up",
            ),
            (
                &[
                    "flyway",
                    "-url=jdbc:postgresql://db/app?user=app&password=s3cr3t&ssl=true",
                    "migrate",
                ],
                "flyway '-url=jdbc:postgresql://db/app?user=app&password=***&ssl=true' migrate",
            ),
            (
                &["flyway", "-password=s3cr3t", "migrate"],
                "flyway -password=*** migrate",
            ),
            (
                &["tool", "--db-password", "s3cr3t", "--password", "s3cr3t"],
                "tool --db-password *** --password ***",
            ),
            (
                &[
                    "env",
                    "PGPASSWORD=s3cr3t",
                    "psql",
                    "host=db password='s 3cr3t' user=app",
                ],
                "env PGPASSWORD=*** psql 'host=db password=*** user=app'",
            ),
            (
                &["dbmate", "--url", "postgres://app@db/app", "up"],
                "dbmate --url postgres://app@db/app up",
            ),
        ] {
            let shown = line(args);
            assert_eq!(shown, expected, "{args:?}");
            assert!(
                !shown.contains("s3cr3t") && !shown.contains("rd@"),
                "{shown}"
            );
        }
    }

    #[test]
    fn a_command_line_reads_back_in_a_shell() {
        assert_eq!(
            line(&["echo", "it's", "", "a b"]),
            r"echo 'it'\''s' '' 'a b'"
        );
    }

    #[test]
    fn a_word_ending_in_e_does_not_start_an_escape_string() {
        // Were `role'` read as E'...', the backslash would hide the close.
        assert_eq!(literals(r#"near "role'a\' b""#), r#"near "role'***' b""#);
    }
}
