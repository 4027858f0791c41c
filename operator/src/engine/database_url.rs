//! Reading a database URL before the driver does: the schemes teams keep
//! (SQLAlchemy's `postgresql+DRIVER://` included) and credentials that cannot
//! be read safely.
//!
//! tokio-postgres ends the credentials at the first `@`, so a password with an
//! unencoded `@` spills its end into the host name, and the DNS error that
//! follows prints it. Such a URL is refused here, before anything can repeat
//! it, with a message that names the part at fault but none of its text.

use std::borrow::Cow;

use super::error::{Error, Result};

/// How to write the characters a URL reserves, for the refusal message.
const HOW_TO_ENCODE: &str = "percent-encode it: @ as %40, : as %3A, / as %2F, % as %25, \
     # as %23, ? as %3F, space as %20 (in Python: urllib.parse.quote(password, safe=''))";

/// The connection string as tokio-postgres should read it: a URL's scheme
/// becomes `postgresql://` when it names an SQLAlchemy driver, whose part is
/// ours to drop since we connect with our own. A `key=value` string passes
/// through untouched.
pub(crate) fn normalize(connection: &str) -> Result<Cow<'_, str>> {
    let Some((scheme, rest)) = split_scheme(connection) else {
        return Ok(Cow::Borrowed(connection));
    };
    let lower = scheme.to_ascii_lowercase();
    let (base, driver) = match lower.split_once('+') {
        Some((base, driver)) => (base, Some(driver)),
        None => (lower.as_str(), None),
    };
    if !matches!(base, "postgres" | "postgresql") {
        return Err(Error::InvalidUrl {
            reason: format!(
                "the scheme `{scheme}://` is not PostgreSQL's; use postgres://, postgresql:// \
                 or an SQLAlchemy postgresql+DRIVER://"
            ),
        });
    }
    if driver == Some("") {
        return Err(Error::InvalidUrl {
            reason: format!("the scheme `{scheme}://` names no driver after `+`"),
        });
    }
    check_credentials(rest)?;
    Ok(if driver.is_some() || scheme != lower {
        Cow::Owned(format!("postgresql://{rest}"))
    } else {
        Cow::Borrowed(connection)
    })
}

/// `scheme` and what follows `://`, when the string is a URL at all.
fn split_scheme(connection: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = connection.split_once("://")?;
    let mut chars = scheme.chars();
    let is_scheme = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    is_scheme.then_some((scheme, rest))
}

/// Refuses credentials the driver would split in the wrong place. A second
/// `@` anywhere means the first one is not where the credentials end; `/`,
/// `?`, `#`, `[` or `]` before the `@`, or a `%` that starts no escape, means
/// other readers (libpq, SQLAlchemy, proxies) would cut the URL elsewhere.
/// A `:` inside the password is allowed: only the first one separates it.
fn check_credentials(rest: &str) -> Result<()> {
    let Some((credentials, after)) = rest.split_once('@') else {
        return Ok(());
    };
    if after.contains('@') {
        return Err(ambiguous(
            "the URL holds more than one `@`, so the user name or password holds an `@` that is \
             not percent-encoded",
        ));
    }
    let (user, password) = match credentials.split_once(':') {
        Some((user, password)) => (user, Some(password)),
        None => (credentials, None),
    };
    if password.is_some_and(needs_encoding) {
        return Err(ambiguous(
            "the password (between the first `:` and the `@`) holds a character that must be \
             percent-encoded",
        ));
    }
    if needs_encoding(user) {
        return Err(ambiguous(
            "the user name (before the `@`) holds a character that must be percent-encoded",
        ));
    }
    Ok(())
}

fn needs_encoding(part: &str) -> bool {
    let bytes = part.as_bytes();
    bytes.iter().enumerate().any(|(i, byte)| match byte {
        b'/' | b'?' | b'#' | b'[' | b']' => true,
        b'%' => !matches!(
            bytes.get(i + 1..i + 3),
            Some([high, low]) if high.is_ascii_hexdigit() && low.is_ascii_hexdigit()
        ),
        _ => false,
    })
}

/// The message never quotes the URL: every part of it may be the password.
fn ambiguous(what: &str) -> Error {
    Error::InvalidUrl {
        reason: format!("{what}; the URL cannot be read safely, so {HOW_TO_ENCODE}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlalchemy_drivers_are_dropped_from_the_scheme() {
        for (url, expected) in [
            (
                "postgresql+asyncpg://app:pw@db:5432/orders",
                "postgresql://app:pw@db:5432/orders",
            ),
            (
                "postgresql+psycopg2://app@db/orders",
                "postgresql://app@db/orders",
            ),
            (
                "postgresql+psycopg://app@db/orders",
                "postgresql://app@db/orders",
            ),
            ("postgresql+pg8000://app@db/x", "postgresql://app@db/x"),
            ("postgres+asyncpg://app@db/x", "postgresql://app@db/x"),
            ("POSTGRESQL://app@db/x", "postgresql://app@db/x"),
            ("postgres://app@db/x", "postgres://app@db/x"),
            ("postgresql://app@db/x", "postgresql://app@db/x"),
            (
                "host=db user=app password=p@ss",
                "host=db user=app password=p@ss",
            ),
        ] {
            assert_eq!(normalize(url).unwrap(), expected, "{url}");
        }
    }

    #[test]
    fn another_databases_scheme_is_named_in_the_refusal() {
        let err = normalize("mysql://app:hunter2@db/x").unwrap_err();
        assert!(err.to_string().contains("`mysql://`"), "{err}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
        let err = normalize("postgresql+://app@db/x").unwrap_err();
        assert!(err.to_string().contains("names no driver"), "{err}");
    }

    #[test]
    fn credentials_that_cannot_be_read_safely_are_refused_without_a_trace_of_them() {
        for (url, part) in [
            (
                "postgres://u:Kq7@Zr9w@127.0.0.1/db",
                "user name or password",
            ),
            ("postgres://u:Kq7/Zr9w@127.0.0.1/db", "password"),
            ("postgres://u:Kq7#Zr9w@127.0.0.1/db", "password"),
            ("postgres://u:Kq7?Zr9w@127.0.0.1/db", "password"),
            ("postgres://u:Kq7%Zr9w@127.0.0.1/db", "password"),
            ("postgres://u:Kq7%4Zr9w@127.0.0.1/db", "password"),
            ("postgres://u:Kq7Zr9w%@127.0.0.1/db", "password"),
            ("postgres://Kq7/Zr9w@127.0.0.1/db", "user name"),
            ("postgresql+asyncpg://u:Kq7@Zr9w@127.0.0.1/db", "password"),
        ] {
            let err = normalize(url).unwrap_err().to_string();
            assert!(err.contains(part), "{url}: {err}");
            assert!(err.contains("%40") && err.contains("%25"), "{url}: {err}");
            for piece in ["Kq7", "Zr9w"] {
                assert!(!err.contains(piece), "{url}: {err}");
            }
        }
    }

    #[test]
    fn encoded_and_unreserved_credentials_are_accepted() {
        for url in [
            "postgres://u:Kq7%40Zr9w%2F%25%23%3F@db/x",
            "postgres://u:a:b:c@db/x",
            "postgres://u:pä ss€!$&'()*+,;=@db/x",
            "postgres://u@db/x?application_name=app",
            "postgres://db/x",
        ] {
            assert!(normalize(url).is_ok(), "{url}");
        }
    }
}
