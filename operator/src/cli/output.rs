//! What the CLI prints: tables and a progress bar for people, one JSON
//! document for scripts. Results go to stdout, progress to stderr; errors
//! go to stderr for people and, as JSON, to stdout for scripts.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use anstyle::{AnsiColor, Style};
use clap::ValueEnum;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use super::CliError;
use crate::adapters::{Tool, ToolState};
use crate::engine::history::ExecRecord;
use crate::engine::status::{State, Status};
use crate::engine::{Database, Event, History, Plan, RecordState, RunReport, Step, Version};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Human,
    Json,
}

/// When people's output is coloured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Color {
    /// On a terminal, unless `NO_COLOR` is set (or `CLICOLOR=0`).
    Auto,
    /// Also when piped, and despite `NO_COLOR`.
    Always,
    /// Plain text.
    Never,
}

impl Color {
    /// Sets the choice for every later line on stdout and stderr.
    pub fn apply(self) {
        match self {
            Color::Auto => anstream::ColorChoice::Auto,
            Color::Always => anstream::ColorChoice::Always,
            Color::Never => anstream::ColorChoice::Never,
        }
        .write_global();
    }
}

/// What needs a person: errors, drifted, missing and failed rows.
const ERROR: Style = AnsiColor::Red.on_default().bold();
/// What is still to come: pending and empty migrations.
const PENDING: Style = AnsiColor::Yellow.on_default();
const APPLIED: Style = AnsiColor::Green.on_default();
/// Where the database is.
const CURRENT: Style = AnsiColor::Green.on_default().bold();

/// `text` in `style`; anstream drops the escapes where colour is off.
fn paint(style: Style, text: &str) -> String {
    format!("{style}{text}{style:#}")
}

fn state_style(state: State) -> Style {
    match state {
        State::Applied => APPLIED,
        State::Pending | State::Empty => PENDING,
        State::Drifted | State::Missing | State::OutOfOrder | State::Blocked(_) => ERROR,
    }
}

/// One JSON document per command, the same shape for every verb:
/// `{"database": ..., "<verb>": ...}`, or `{"database": ..., "error": ...}`.
/// `database` is the URL without its password, or null where the verb
/// needs none or failed before it knew one.
pub struct Reporter {
    output: Output,
    /// The verb, as the key of its result in the JSON document.
    verb: &'static str,
    database: OnceLock<String>,
    /// Drawn only on a terminal; elsewhere each step is a line on stderr.
    progress: Mutex<Option<ProgressBar>>,
}

fn version_text(v: Option<Version>) -> String {
    v.map_or_else(|| "base".into(), |v| v.to_string())
}

fn timestamp(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M:%S").to_string()
}

/// A line of progress on stderr, where no progress bar is drawn.
fn progress_line(line: &str) {
    write_line(&mut std::io::stderr().lock(), line);
}

/// The line and its newline in one `write`: stderr is unbuffered, and
/// `eprintln!` makes two system calls of it, once per migration.
fn write_line(out: &mut impl Write, line: &str) {
    let mut text = String::with_capacity(line.len() + 1);
    text.push_str(line);
    text.push('\n');
    // Progress is best effort: a closed stderr must not stop a run.
    let _ = out.write_all(text.as_bytes());
}

impl Reporter {
    pub fn new(output: Output, verb: &'static str) -> Self {
        Reporter {
            output,
            verb,
            database: OnceLock::new(),
            progress: Mutex::new(None),
        }
    }

    pub fn is_json(&self) -> bool {
        self.output == Output::Json
    }

    /// The database the command works on, for every later line and document.
    pub fn set_database(&self, database: &Database) {
        let _ = self.database.set(database.redacted());
    }

    fn database(&self) -> &str {
        self.database.get().map_or("the database", String::as_str)
    }

    /// Prints the verb's result in the envelope every verb shares.
    pub fn json(&self, result: serde_json::Value) {
        self.envelope(self.verb, result);
    }

    fn envelope(&self, key: &str, value: serde_json::Value) {
        let mut document = serde_json::Map::new();
        document.insert("database".into(), json!(self.database.get()));
        document.insert(key.into(), value);
        println!("{:#}", serde_json::Value::Object(document));
    }

    /// A failure: on stderr for people, in the envelope for scripts.
    pub fn failure(&self, reason: &str, message: &str, exit_code: u8) {
        if let Ok(mut progress) = self.progress.lock()
            && let Some(bar) = progress.take()
        {
            bar.abandon();
        }
        match self.output {
            Output::Json => self.envelope(
                "error",
                json!({ "reason": reason, "message": message, "exit_code": exit_code }),
            ),
            Output::Human => anstream::eprintln!("{}: {message}", paint(ERROR, "error")),
        }
    }

    fn human(&self) -> bool {
        self.output == Output::Human
    }

    /// Progress of a run, on stderr.
    pub fn event(&self, event: &Event<'_>) {
        if !self.human() {
            return;
        }
        let Ok(mut progress) = self.progress.lock() else {
            return;
        };
        match event {
            Event::WaitingForLock { holder } => {
                let who = holder.map_or_else(|| "another runner".to_string(), |h| h.to_string());
                progress_line(&format!("waiting for the migration lock ({who})"));
            }
            Event::Planned { plan } if std::io::stderr().is_terminal() && plan.steps.len() > 1 => {
                let bar = ProgressBar::new(plan.steps.len() as u64);
                if let Ok(style) =
                    ProgressStyle::with_template("{bar:30} {pos}/{len} {elapsed} {msg}")
                {
                    bar.set_style(style);
                }
                *progress = Some(bar);
            }
            Event::Planned { .. } => {}
            Event::StepStarted { step, .. } => {
                if let Some(bar) = progress.as_ref() {
                    bar.set_message(step.migration().to_string());
                }
            }
            Event::StepFinished {
                index,
                total,
                step,
                duration,
                ..
            } => {
                let verb = if step.is_revert() {
                    "reverted"
                } else {
                    "applied"
                };
                let line = format!(
                    "[{index}/{total}] {verb} {} in {} ms",
                    step.migration(),
                    duration.as_millis()
                );
                match progress.as_ref() {
                    Some(bar) => {
                        bar.println(line);
                        bar.inc(1);
                        if index == total {
                            bar.finish_and_clear();
                        }
                    }
                    None => progress_line(&line),
                }
            }
            Event::Retrying {
                step,
                attempt,
                delay,
            } => {
                let line = format!(
                    "{} hit lock_timeout (attempt {attempt}); retrying in {} ms",
                    step.migration(),
                    delay.as_millis()
                );
                match progress.as_ref() {
                    Some(bar) => bar.println(line),
                    None => progress_line(&line),
                }
            }
        }
    }

    pub fn run_report(&self, report: &RunReport) {
        let database = self.database();
        if !self.human() {
            return self.json(json!(report));
        }
        if report.steps.is_empty() {
            anstream::println!("{database} is up to date at {}", version_text(report.from));
            return;
        }
        let total: u64 = report.steps.iter().map(|s| s.duration_ms).sum();
        let verb = if report.steps[0].direction == "down" {
            "downgraded"
        } else {
            "upgraded"
        };
        anstream::println!(
            "{verb} {database} from {} to {} ({}, {total} ms)",
            version_text(report.from),
            version_text(report.to),
            migrations(report.steps.len())
        );
    }

    pub fn current(&self, current: Option<Version>) {
        match self.output {
            Output::Json => self.json(json!({ "version": current })),
            Output::Human => anstream::println!("{}", paint(CURRENT, &version_text(current))),
        }
    }

    /// Another tool's current revision(s), from its own version table.
    pub fn tool_current(&self, state: &ToolState) {
        match self.output {
            Output::Json => self.json(json!({
                "tool": state.tool,
                "table": state.table,
                "exists": state.exists,
                "version": state.current,
                "needs_a_person": state.needs_a_person,
            })),
            Output::Human => {
                anstream::println!("{}", paint(CURRENT, &state.current_text()));
                if let Some(problem) = &state.needs_a_person {
                    anstream::eprintln!("{}: {problem}", paint(ERROR, "warning"));
                }
            }
        }
    }

    /// `history --tool T`: the tool's runs under `schemaop exec`.
    pub fn exec_history(&self, tool: Tool, records: &[ExecRecord]) {
        if !self.human() {
            return self.json(json!(records));
        }
        if records.is_empty() {
            anstream::println!("no {tool} command has run under schemaop exec");
            return;
        }
        let text = |r: &Option<String>| r.clone().unwrap_or_else(|| "base".into());
        let rows: Vec<[String; 7]> = records
            .iter()
            .map(|r| {
                [
                    timestamp(r.at),
                    r.outcome.clone(),
                    r.exit_code.map_or_else(|| "-".into(), |c| c.to_string()),
                    format!(
                        "{} -> {}",
                        text(&r.revision_before),
                        text(&r.revision_after)
                    ),
                    format!("{} ms", r.duration_ms),
                    r.actor.clone(),
                    r.command.clone(),
                ]
            })
            .collect();
        print_table(
            [
                "AT (UTC)", "OUTCOME", "EXIT", "REVISION", "DURATION", "BY", "COMMAND",
            ],
            &rows,
            |row, column| match column {
                1 if records[row].outcome != "succeeded" => ERROR,
                _ => Style::new(),
            },
        );
    }

    pub fn history(&self, history: &History, verbose: bool) {
        if !self.human() {
            return self.json(json!(history.records));
        }
        if history.records.is_empty() {
            anstream::println!("no migration applied");
            return;
        }
        let rows: Vec<[String; 5]> = history
            .records
            .iter()
            .map(|r| {
                [
                    r.version.to_string(),
                    r.description.clone(),
                    timestamp(r.applied_at),
                    format!("{} ms", r.duration_ms),
                    r.applied_by.clone(),
                ]
            })
            .collect();
        print_table(
            [
                "VERSION",
                "DESCRIPTION",
                "APPLIED AT (UTC)",
                "DURATION",
                "BY",
            ],
            &rows,
            |_, _| Style::new(),
        );
        if verbose {
            // One block per migration: what the table has no room for.
            for r in &history.records {
                anstream::println!();
                anstream::println!("{} ({})", r.version, r.description);
                let state = match r.state {
                    RecordState::Applied => APPLIED,
                    _ => ERROR,
                };
                anstream::println!("  state:    {}", paint(state, r.state.as_str()));
                anstream::println!("  checksum: {}", r.checksum.to_hex());
                if let Some(error) = &r.error {
                    anstream::println!("  error:    {}", paint(ERROR, error));
                }
            }
        }
    }

    pub fn status(&self, status: &Status) {
        let database = self.database();
        if !self.human() {
            return self.json(json!(status));
        }
        // Every row is counted: a header that leaves out drifted rows reads
        // as healthy when it is not.
        let mut counts: Vec<(String, usize)> = Vec::new();
        for entry in &status.entries {
            let label = state_text(entry.state).to_lowercase();
            match counts.iter_mut().find(|(l, _)| *l == label) {
                Some((_, n)) => *n += 1,
                None => counts.push((label, 1)),
            }
        }
        let counts: Vec<String> = counts.iter().map(|(l, n)| format!("{n} {l}")).collect();
        anstream::println!(
            "{database}: at {}, latest {} ({})",
            paint(CURRENT, &version_text(status.current)),
            version_text(status.latest),
            if counts.is_empty() {
                "no migrations".into()
            } else {
                counts.join(", ")
            },
        );
        let rows: Vec<[String; 4]> = status
            .entries
            .iter()
            .map(|e| {
                [
                    e.version.to_string(),
                    state_text(e.state),
                    e.description.clone(),
                    e.applied_at.map(timestamp).unwrap_or_default(),
                ]
            })
            .collect();
        if !rows.is_empty() {
            anstream::println!();
            print_table(
                ["VERSION", "STATE", "DESCRIPTION", "APPLIED AT (UTC)"],
                &rows,
                |row, column| match column {
                    1 => state_style(status.entries[row].state),
                    _ => Style::new(),
                },
            );
        }
    }

    /// With `pending_fails`, pending migrations are a failure too.
    pub fn verify(&self, status: &Status, pending_fails: bool) {
        let problems: Vec<_> = status.problems().collect();
        let pending: Vec<Version> = status
            .entries
            .iter()
            .filter(|e| pending_fails && e.state == State::Pending)
            .map(|e| e.version)
            .collect();
        if !self.human() {
            return self.json(json!({
                "ok": problems.is_empty() && pending.is_empty(),
                "problems": problems,
                "pending": pending,
            }));
        }
        if !pending.is_empty() {
            let list: Vec<String> = pending.iter().map(Version::to_string).collect();
            anstream::println!(
                "not at head: {} pending ({}); run `schemaop upgrade`",
                migrations(pending.len()),
                list.join(", ")
            );
        }
        if problems.is_empty() && pending.is_empty() {
            anstream::println!(
                "ok: {}, checksums match, no gaps",
                migrations(status.entries.len())
            );
            return;
        }
        for p in &problems {
            let what = match p.state {
                State::Drifted => format!(
                    "its file changed since it was applied; restore it or run \
                     `schemaop repair --accept-checksum {}`",
                    p.version
                ),
                State::Missing => "it is applied but its file is gone; restore the file".into(),
                State::OutOfOrder => "it is pending but older than the newest applied migration; \
                                      give it a newer version or use --allow-out-of-order"
                    .into(),
                State::Blocked(_) => "a no-transaction migration failed or was interrupted; \
                                      see `schemaop status` and repair it"
                    .into(),
                State::Empty => {
                    "its file holds no SQL yet; write the migration's SQL, or delete the file"
                        .into()
                }
                State::Applied | State::Pending => String::new(),
            };
            anstream::println!(
                "{} ({}): {}: {what}",
                p.version,
                p.description,
                paint(state_style(p.state), &state_text(p.state))
            );
        }
        let n = problems.len();
        if n > 0 {
            anstream::println!("{n} problem{} found", if n == 1 { "" } else { "s" });
        }
    }

    pub fn plan(&self, plan: &Plan<'_>, sql: Option<&str>) {
        if !self.human() {
            let steps: Vec<_> = plan
                .steps
                .iter()
                .map(|s| {
                    json!({
                        "version": s.migration().version,
                        "description": s.migration().description,
                        "direction": if s.is_revert() { "down" } else { "up" },
                        "transactional": script_of(s).transactional,
                        "file": script_of(s).file,
                    })
                })
                .collect();
            return self.json(
                json!({ "current": plan.current, "target": plan.target, "steps": steps, "sql": sql }),
            );
        }
        if let Some(sql) = sql {
            print!("{sql}");
            return;
        }
        if plan.is_up_to_date() {
            anstream::println!("nothing to do: at {}", version_text(plan.current));
            return;
        }
        anstream::println!(
            "from {} to {}: {} migration(s)",
            version_text(plan.current),
            version_text(plan.target),
            plan.steps.len()
        );
        for s in &plan.steps {
            let verb = if s.is_revert() { "revert" } else { "apply " };
            let tx = if script_of(s).transactional {
                ""
            } else {
                "  (no transaction)"
            };
            let empty = if script_of(s).empty {
                "  (EMPTY: its file holds no SQL yet; a run refuses it)"
            } else {
                ""
            };
            anstream::println!(
                "  {verb} {}  {}{tx}{empty}",
                s.migration(),
                script_of(s).file
            );
        }
    }

    pub fn stamped(&self, target: Option<Version>, recorded: usize, removed: usize) {
        match self.output {
            Output::Json => {
                self.json(json!({ "version": target, "recorded": recorded, "forgotten": removed }))
            }
            Output::Human => anstream::println!(
                "stamped at {}: recorded {recorded} migration(s) as applied, forgot {removed}",
                version_text(target)
            ),
        }
    }

    pub fn repaired(&self, detail: &str) {
        match self.output {
            Output::Json => self.json(json!({ "message": detail })),
            Output::Human => anstream::println!("{detail}"),
        }
    }

    pub fn created(&self, files: &[PathBuf]) {
        match self.output {
            Output::Json => self.json(json!({ "created": files })),
            Output::Human => files
                .iter()
                .for_each(|f| anstream::println!("created {}", f.display())),
        }
    }

    pub fn error(&self, error: &CliError) {
        let reason = match error {
            CliError::Engine(e) => e.reason(),
            CliError::Usage(_) => "Usage",
            CliError::NoMigrations(_) => "NoMigrations",
            CliError::Write { .. } => "Write",
        };
        self.failure(reason, &error.to_string(), error.exit_code());
    }
}

fn script_of<'a>(step: &Step<'a>) -> &'a crate::engine::Script {
    match step {
        Step::Apply(m) => &m.up,
        Step::Revert(m) => m.down.as_ref().unwrap_or(&m.up),
    }
}

fn state_text(state: State) -> String {
    match state {
        State::Applied => "applied".into(),
        State::Pending => "pending".into(),
        State::Drifted => "DRIFTED".into(),
        State::Missing => "MISSING FILE".into(),
        State::OutOfOrder => "OUT OF ORDER".into(),
        State::Blocked(s) => s.as_str().to_uppercase(),
        State::Empty => "EMPTY (pending)".into(),
    }
}

/// `1 migration`, `2 migrations`.
fn migrations(n: usize) -> String {
    format!("{n} migration{}", if n == 1 { "" } else { "s" })
}

/// Left-aligned columns; `style` colours the cell in a row and column,
/// after padding, so escapes never count toward a width.
fn print_table<const N: usize>(
    headers: [&str; N],
    rows: &[[String; N]],
    style: impl Fn(usize, usize) -> Style,
) {
    let mut widths = headers.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; N], row: Option<usize>| {
        let text: Vec<String> = cells
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(column, (c, w))| {
                let padded = format!("{c:<w$}");
                match row.map(|r| style(r, column)) {
                    Some(s) if s != Style::new() => paint(s, &padded),
                    _ => padded,
                }
            })
            .collect();
        anstream::println!("{}", text.join("  ").trim_end());
    };
    line(headers, None);
    for (i, row) in rows.iter().enumerate() {
        line(row.each_ref().map(String::as_str), Some(i));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keeps each `write` call apart.
    #[derive(Default)]
    struct Writes(Vec<String>);

    impl Write for Writes {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.push(String::from_utf8_lossy(buf).into_owned());
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_progress_line_and_its_newline_go_out_in_one_write() {
        let mut out = Writes::default();

        write_line(&mut out, "[1/2] applied 1 t0001 in 3 ms");

        assert_eq!(out.0, ["[1/2] applied 1 t0001 in 3 ms\n"]);
    }
}
