//! Structured logs on stderr: text for people, JSON for log collectors.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// The modules of tokio-postgres that log every statement's text (and
/// parameters) at DEBUG. Migrations hold passwords (`CREATE ROLE ...
/// PASSWORD '...'`), so these stay quiet whatever the level or `RUST_LOG`
/// says, unless SQL logging is asked for by name.
const STATEMENT_TARGETS: [&str; 3] = [
    "tokio_postgres::prepare",
    "tokio_postgres::query",
    "tokio_postgres::simple_query",
];

/// Installs the global subscriber. `level` is a filter such as `info` or
/// `schemaop=debug,kube=info`; `RUST_LOG`, when set, wins over it, so a
/// deployment can turn up one module without a new flag. Statement text is
/// logged only when `log_sql` is set.
///
/// A subscriber can be installed once per process; later calls (tests, or a
/// library embedding us that installed its own) leave the first one in place.
pub fn init(format: LogFormat, level: &str, log_sql: bool) {
    let filter = filter(
        std::env::var(EnvFilter::DEFAULT_ENV).ok().as_deref(),
        level,
        log_sql,
    );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours help at a terminal; in a pod's log they are noise.
        .with_ansi(std::io::stderr().is_terminal());
    let _already_installed = match format {
        LogFormat::Text => builder.try_init(),
        // The event's fields at the top level, next to its spans', so a
        // collector can index them without unnesting.
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// The filter from `RUST_LOG` if it is set and valid, otherwise from `level`,
/// otherwise `info`. A typo must not silence the logs that would explain it.
/// Without `log_sql`, the statement targets are capped at INFO; added last,
/// they replace any directive the user gave for the same target.
fn filter(rust_log: Option<&str>, level: &str, log_sql: bool) -> EnvFilter {
    let filter = rust_log
        .filter(|directives| !directives.trim().is_empty())
        .and_then(|directives| EnvFilter::try_new(directives).ok())
        .or_else(|| EnvFilter::try_new(level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    if log_sql {
        return filter;
    }
    STATEMENT_TARGETS.iter().fold(filter, |filter, target| {
        filter.add_directive(
            format!("{target}=info")
                .parse()
                .expect("a target and a level make a directive"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The filter less the statement caps every filter carries.
    fn user_part(filter: EnvFilter) -> String {
        let text = filter.to_string();
        let directives: Vec<&str> = text
            .split(',')
            .filter(|d| !d.starts_with("tokio_postgres::"))
            .collect();
        directives.join(",")
    }

    #[test]
    fn rust_log_overrides_the_level() {
        assert_eq!(
            user_part(filter(Some("kube=debug"), "warn", false)),
            "kube=debug"
        );
    }

    #[test]
    fn the_level_applies_without_rust_log() {
        assert_eq!(user_part(filter(None, "warn", false)), "warn");
        assert_eq!(user_part(filter(Some("  "), "debug", false)), "debug");
    }

    #[test]
    fn invalid_directives_fall_back_instead_of_silencing_logs() {
        assert_eq!(user_part(filter(Some("kube=loud"), "warn", false)), "warn");
        assert_eq!(user_part(filter(None, "very=much=wrong", false)), "info");
    }

    #[test]
    fn statement_text_stays_out_unless_asked_for() {
        for (rust_log, level) in [
            (None, "trace"),
            (Some("debug"), "warn"),
            (Some("tokio_postgres=trace"), "warn"),
            (Some("tokio_postgres::simple_query=debug"), "warn"),
        ] {
            let text = filter(rust_log, level, false).to_string();
            for target in STATEMENT_TARGETS {
                assert!(text.contains(&format!("{target}=info")), "{text}");
                assert!(!text.contains(&format!("{target}=debug")), "{text}");
            }
        }
        assert_eq!(filter(None, "debug", true).to_string(), "debug");
    }

    #[test]
    fn formats_parse_from_the_command_line() {
        use clap::ValueEnum;
        assert_eq!(LogFormat::from_str("json", true), Ok(LogFormat::Json));
        assert_eq!(LogFormat::from_str("text", true), Ok(LogFormat::Text));
    }
}
