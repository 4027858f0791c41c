//! The environment libpq reads, so that `schemaop` connects wherever `psql`
//! would: `PGHOST`, `PGPORT`, `PGDATABASE`, `PGUSER`, `PGPASSWORD`,
//! `PGSSLMODE`, `PGSSLROOTCERT`, and the password file (`PGPASSFILE`, or
//! `~/.pgpass`). A URL still wins for every part it gives, as in libpq.
//!
//! The password file is read here rather than through a crate: the one crate
//! made for it brings the synchronous `postgres` client along, and the format
//! is five colon-separated fields a line.

use std::path::{Path, PathBuf};

use super::connection::Database;
use super::error::Result;

/// Where libpq looks for the server's Unix socket on Debian and most Linux
/// packages, when neither a URL nor `PGHOST` names a host.
const DEFAULT_SOCKET_DIR: &str = "/var/run/postgresql";

/// The database a command should use: from `url` when there is one, otherwise
/// from libpq's variables when any of them names a server, a database or a
/// user. `None` means nothing was given. `env` reads a variable (tests pass
/// their own).
pub fn database(
    url: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Database>> {
    let mut database = match url {
        Some(url) => Database::from_url(url)?,
        None => {
            let given = ["PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGUSER"]
                .iter()
                .any(|name| env(name).is_some_and(|v| !v.is_empty()));
            if !given {
                return Ok(None);
            }
            Database::from_url(&connection_string(env))?
        }
    };
    if !database.has_password() {
        let password = env("PGPASSWORD")
            .filter(|p| !p.is_empty())
            .or_else(|| password_from_file(&database, env));
        if let Some(password) = password {
            database.set_password(&password);
        }
    }
    Ok(Some(database))
}

/// A `key=value` connection string from the variables, with libpq's defaults
/// for what they leave out.
fn connection_string(env: &dyn Fn(&str) -> Option<String>) -> String {
    let var = |name: &str| env(name).filter(|v| !v.is_empty());
    let user = var("PGUSER")
        .or_else(|| var("USER"))
        .unwrap_or_else(|| "postgres".into());
    let host = var("PGHOST")
        .or_else(|| var("PGHOSTADDR"))
        .unwrap_or_else(|| {
            if Path::new(DEFAULT_SOCKET_DIR).is_dir() {
                DEFAULT_SOCKET_DIR.into()
            } else {
                "localhost".into()
            }
        });
    let mut pairs = vec![
        ("host", host),
        ("port", var("PGPORT").unwrap_or_else(|| "5432".into())),
        ("dbname", var("PGDATABASE").unwrap_or_else(|| user.clone())),
        ("user", user),
    ];
    if let Some(mode) = var("PGSSLMODE") {
        pairs.push(("sslmode", mode));
    }
    if let Some(root) = var("PGSSLROOTCERT") {
        pairs.push(("sslrootcert", root));
    }
    pairs
        .iter()
        .map(|(key, value)| {
            format!(
                "{key}='{}'",
                value.replace('\\', "\\\\").replace('\'', "\\'")
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The first matching line of the password file, as libpq matches it: a
/// socket connection matches the host name `localhost`, `*` matches anything,
/// and a file that others may read is ignored.
fn password_from_file(database: &Database, env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    let path = env("PGPASSFILE")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|home| Path::new(&home).join(".pgpass")))?;
    let text = std::fs::read_to_string(&path).ok()?;
    if readable_by_others(&path) {
        tracing::warn!(
            path = %path.display(),
            "the password file is readable by group or others; it is ignored, as libpq does (chmod 0600 it)"
        );
        return None;
    }
    let (host, port) = database.first_host_port();
    let host = if host.starts_with('/') {
        "localhost".to_string()
    } else {
        host
    };
    let wanted = [
        host,
        port.to_string(),
        database.name().to_string(),
        database.user().to_string(),
    ];
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .filter_map(|line| {
            let fields = split_fields(line);
            (fields.len() == 5).then_some(fields)
        })
        .find(|fields| {
            fields[..4]
                .iter()
                .zip(&wanted)
                .all(|(f, w)| f == "*" || f == w)
        })
        .map(|mut fields| fields.swap_remove(4))
}

/// Splits a line on `:`, where `\:` and `\\` stand for themselves.
fn split_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    fields.last_mut().expect("one field").push(next);
                }
            }
            ':' => fields.push(String::new()),
            c => fields.last_mut().expect("one field").push(c),
        }
    }
    fields
}

#[cfg(unix)]
fn readable_by_others(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 != 0)
}

#[cfg(not(unix))]
fn readable_by_others(_: &Path) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn nothing_given_is_nothing() {
        assert!(database(None, &env(&[("USER", "me")])).unwrap().is_none());
    }

    #[test]
    fn the_variables_name_the_server_as_for_psql() {
        let vars = env(&[
            ("PGHOST", "db.internal"),
            ("PGPORT", "6432"),
            ("PGUSER", "app"),
            ("PGDATABASE", "orders"),
            ("PGPASSWORD", "it's \\ secret"),
        ]);
        let db = database(None, &vars).unwrap().unwrap();
        assert_eq!(db.redacted(), "postgres://app@db.internal:6432/orders");
        assert!(db.has_password());
        // The database defaults to the user, as in libpq.
        let db = database(None, &env(&[("PGHOST", "h"), ("PGUSER", "app")]))
            .unwrap()
            .unwrap();
        assert_eq!(db.name(), "app");
    }

    #[test]
    fn a_url_without_a_password_takes_pgpassword() {
        let vars = env(&[("PGPASSWORD", "pw")]);
        let db = database(Some("postgres://app@h/orders"), &vars)
            .unwrap()
            .unwrap();
        assert!(db.has_password());
        let db = database(Some("postgres://app@h/orders"), &env(&[]))
            .unwrap()
            .unwrap();
        assert!(!db.has_password());
    }

    #[test]
    fn the_password_file_matches_like_libpq() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pgpass");
        std::fs::write(
            &file,
            "# a comment\nother:5432:orders:app:wrong\nh:*:orders:app:pa\\:ss\n*:*:*:*:fallback\n",
        )
        .unwrap();
        set_mode(&file, 0o600);
        let vars = env(&[("PGPASSFILE", file.to_str().unwrap())]);
        let db = database(Some("postgres://app@h:5433/orders"), &vars)
            .unwrap()
            .unwrap();
        assert_eq!(password_from_file(&db, &vars).as_deref(), Some("pa:ss"));
        let db = database(Some("postgres://x@elsewhere/y"), &vars)
            .unwrap()
            .unwrap();
        assert_eq!(password_from_file(&db, &vars).as_deref(), Some("fallback"));

        // A file others may read is ignored.
        set_mode(&file, 0o644);
        let db = database(Some("postgres://app@h/orders"), &vars)
            .unwrap()
            .unwrap();
        assert!(!db.has_password());
    }

    fn set_mode(path: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
}
