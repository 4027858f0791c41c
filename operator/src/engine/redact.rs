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

    #[test]
    fn a_word_ending_in_e_does_not_start_an_escape_string() {
        // Were `role'` read as E'...', the backslash would hide the close.
        assert_eq!(literals(r#"near "role'a\' b""#), r#"near "role'***' b""#);
    }
}
