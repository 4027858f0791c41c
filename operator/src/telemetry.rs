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

/// Installs the global subscriber. `level` is a filter such as `info` or
/// `schemaop=debug,kube=info`; `RUST_LOG`, when set, wins over it, so a
/// deployment can turn up one module without a new flag.
///
/// A subscriber can be installed once per process; later calls (tests, or a
/// library embedding us that installed its own) leave the first one in place.
pub fn init(format: LogFormat, level: &str) {
    let filter = filter(std::env::var(EnvFilter::DEFAULT_ENV).ok().as_deref(), level);
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
fn filter(rust_log: Option<&str>, level: &str) -> EnvFilter {
    rust_log
        .filter(|directives| !directives.trim().is_empty())
        .and_then(|directives| EnvFilter::try_new(directives).ok())
        .or_else(|| EnvFilter::try_new(level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_log_overrides_the_level() {
        assert_eq!(filter(Some("kube=debug"), "warn").to_string(), "kube=debug");
    }

    #[test]
    fn the_level_applies_without_rust_log() {
        assert_eq!(filter(None, "warn").to_string(), "warn");
        assert_eq!(filter(Some("  "), "debug").to_string(), "debug");
    }

    #[test]
    fn invalid_directives_fall_back_instead_of_silencing_logs() {
        assert_eq!(filter(Some("kube=loud"), "warn").to_string(), "warn");
        assert_eq!(filter(None, "very=much=wrong").to_string(), "info");
    }

    #[test]
    fn formats_parse_from_the_command_line() {
        use clap::ValueEnum;
        assert_eq!(LogFormat::from_str("json", true), Ok(LogFormat::Json));
        assert_eq!(LogFormat::from_str("text", true), Ok(LogFormat::Text));
    }
}
