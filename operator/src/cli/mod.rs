//! The `schemaop` command line: the verbs an Alembic user expects, on the
//! same engine the operator drives.

pub mod exec;
mod new;
mod output;
mod runtime;
pub mod tools;
mod wait;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::duration;
use crate::engine::{
    self, Database, Direction, Error, HistoryTable, MigrationSource, Migrator, MigratorOptions,
    Repair, SessionSettings, Target, Version,
};
use crate::telemetry::{self, LogFormat};
use output::{Color, Output, Reporter};

/// Exit codes, documented in `schemaop --help` and the README.
pub mod exit {
    pub const OK: u8 = 0;
    /// A migration failed, or the database returned an error.
    pub const FAILED: u8 = 1;
    /// The command line was wrong.
    pub const USAGE: u8 = 2;
    /// A migration file is malformed.
    pub const INVALID_SOURCE: u8 = 3;
    /// The history and the source disagree in a way a person must settle:
    /// drift, missing files, out-of-order or blocked migrations, an unknown
    /// or disallowed target. Also `verify` finding a problem.
    pub const REFUSED: u8 = 4;
    /// The database could not be reached, or refused the credentials.
    pub const UNREACHABLE: u8 = 5;
    /// Another session held a lock for longer than allowed.
    pub const LOCKED: u8 = 6;
    /// `wait` gave up: the revision was not reached within `--timeout`.
    pub const TIMEOUT: u8 = 7;
    /// `exec`: the command could not be started (not executable).
    pub const NOT_EXECUTABLE: u8 = super::exec::NOT_EXECUTABLE;
    /// `exec`: the command was not found.
    pub const NOT_FOUND: u8 = super::exec::NOT_FOUND;
}

const AFTER_HELP: &str = "\
Exit codes:
  0  success
  1  a migration failed, or the database returned an error
  2  the command line was wrong
  3  a migration file is malformed
  4  refused: drift, missing files, out-of-order or blocked migrations, an unknown or
     disallowed target; or `verify` found a problem
  5  the database could not be reached, or refused the credentials
  6  a lock was held by another session for longer than allowed
  7  `wait` timed out before the revision was reached
  `exec` exits with its command's exit code (128+N for signal N) once the command ran;
  before that with the codes above, or 126 (command not executable) or 127 (not found)";

#[derive(Debug, Parser)]
#[command(name = "schemaop", version, about = "PostgreSQL schema migrations, from a laptop or as a Kubernetes operator", after_help = AFTER_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// PostgreSQL URL, such as postgres://app@localhost:5432/app. Never printed.
    #[arg(
        help_heading = "Database",
        long,
        env = "DATABASE_URL",
        hide_env_values = true,
        global = true
    )]
    pub database_url: Option<String>,

    /// Folder of migration files.
    #[arg(
        help_heading = "Migrations",
        long,
        default_value = "migrations",
        global = true
    )]
    pub dir: PathBuf,

    /// `human` for people, `json` for scripts.
    #[arg(help_heading = "Output", long, value_enum, default_value_t = Output::Human, global = true)]
    pub output: Output,

    /// Colour people's output: `auto` on a terminal unless NO_COLOR is set.
    #[arg(help_heading = "Output", long, value_enum, default_value_t = Color::Auto, global = true)]
    pub color: Color,

    /// Schema of the history tables.
    #[arg(
        help_heading = "Database",
        long,
        default_value = "public",
        global = true
    )]
    pub history_schema: String,

    /// Name of the history table; the audit log is NAME_audit, so NAME has
    /// at most 57 bytes.
    #[arg(help_heading = "Database", long, default_value = "schemaop_migrations", global = true,
          value_parser = |name: &str| HistoryTable::check_table_name(name).map(|()| name.to_string()))]
    pub history_table: String,

    /// How long a statement may wait for a lock before it is retried (lock_timeout).
    #[arg(help_heading = "Locks and timeouts", long, default_value = "200ms", value_parser = duration::parse_duration, global = true)]
    pub lock_timeout: Duration,

    /// How long one statement may run (statement_timeout); 0 is no limit.
    #[arg(help_heading = "Locks and timeouts", long, default_value = "0", value_parser = duration::parse_duration, global = true)]
    pub statement_timeout: Duration,

    /// How long to keep retrying a migration that hit lock_timeout, with
    /// jittered backoff, counted from its first attempt.
    #[arg(help_heading = "Locks and timeouts", long, default_value = "1m", value_parser = duration::parse_duration, global = true)]
    pub lock_retry_budget: Duration,

    /// At most this many retries within --lock-retry-budget; as many as fit if not given.
    #[arg(help_heading = "Locks and timeouts", long, global = true)]
    pub lock_retries: Option<usize>,

    /// How long to wait for another runner's migration lock; 0 waits for ever.
    #[arg(help_heading = "Locks and timeouts", long, default_value = "0", value_parser = duration::parse_duration, global = true)]
    pub lock_wait_timeout: Duration,

    /// Apply pending migrations that are older than the newest applied one.
    #[arg(help_heading = "Migrations", long, global = true)]
    pub allow_out_of_order: bool,

    /// Accept a migrations folder with no migrations in it; without it, such
    /// a folder is an error, since it is most often a wrong --dir.
    #[arg(help_heading = "Migrations", long, global = true)]
    pub allow_empty: bool,

    /// Log level for diagnostics on stderr (error, warn, info, debug).
    #[arg(help_heading = "Output", long, default_value = "warn", global = true)]
    pub log_level: String,

    /// Also log the text of every SQL statement at debug level. It prints
    /// secrets (`CREATE ROLE ... PASSWORD`); for local debugging only.
    // Boolish, so SCHEMAOP_LOG_SQL=1 works as well as =true.
    #[arg(help_heading = "Output", long, env = "SCHEMAOP_LOG_SQL", action = clap::ArgAction::SetTrue, value_parser = clap::builder::BoolishValueParser::new(), global = true)]
    pub log_sql: bool,
}

impl Command {
    /// The verb as typed, and as the key of its result in JSON output.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Upgrade(_) => "upgrade",
            Command::Downgrade(_) => "downgrade",
            Command::Current { .. } => "current",
            Command::History { .. } => "history",
            Command::Status => "status",
            Command::Plan { .. } => "plan",
            Command::Stamp { .. } => "stamp",
            Command::Verify { .. } => "verify",
            Command::New(_) => "new",
            Command::Repair(_) => "repair",
            Command::Crd => "crd",
            Command::CopyBinary { .. } => "copy-binary",
            Command::Run(_) => "run",
            Command::Wait(_) => "wait",
            Command::Exec(_) => "exec",
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply pending migrations up to a target (default: head): `upgrade head`,
    /// `upgrade 20261115090000`, `upgrade +1`.
    Upgrade(UpgradeArgs),
    /// Revert migrations down to a target: `downgrade base`, `downgrade
    /// 20261101090000`, `downgrade -1`.
    Downgrade(UpgradeArgs),
    /// Print the database's current version; with --tool, that tool's
    /// current revision(s) from its own version table.
    Current {
        #[command(flatten)]
        tool: tools::ToolArgs,
    },
    /// List applied migrations, oldest first; with --tool, that tool's
    /// commands run under `schemaop exec`, from the audit log.
    History {
        /// Also each migration's state, checksum and any error, as
        /// `alembic history --verbose` shows more.
        #[arg(short, long)]
        verbose: bool,
        /// List the runs of this tool's commands under `schemaop exec`:
        /// when, by whom, the command, its exit code and the tool's revision
        /// before and after.
        #[arg(long, value_name = "TOOL", value_parser = |s: &str| s.parse::<crate::adapters::Tool>())]
        tool: Option<crate::adapters::Tool>,
    },
    /// Show applied, pending and drifted migrations.
    Status,
    /// Print what an upgrade (or with --down, a downgrade) would run;
    /// executes nothing. Takes the same targets as upgrade and downgrade.
    Plan {
        #[command(flatten)]
        target: TargetArgs,
        /// Print the exact SQL, history writes included.
        #[arg(long)]
        sql: bool,
        /// Plan a downgrade instead of an upgrade.
        #[arg(long)]
        down: bool,
        /// Plan with no database: from --from, as a run would have left
        /// the history there. With --sql, a script to review or run with psql.
        #[arg(long)]
        offline: bool,
        /// Where the database is assumed to be (implies --offline): `base`,
        /// `head` or a version; `base` for an upgrade and `head` for a
        /// downgrade unless given.
        #[arg(long, value_name = "TARGET")]
        from: Option<Target>,
    },
    /// Record migrations up to a version as applied without running them (baseline an existing database).
    Stamp {
        /// `latest`, `base` or a version.
        version: Target,
    },
    /// Check checksums, missing files and gaps; exits 4 when something is wrong.
    Verify {
        /// Also fail while migrations are pending: for CI that wants the
        /// database at head.
        #[arg(long)]
        pending_fails: bool,
    },
    /// Create the next migration's files.
    New(new::NewArgs),
    /// Fix the history by hand; each fix is recorded in the audit log.
    Repair(RepairArgs),
    /// Print the SchemaMigration CustomResourceDefinition as YAML.
    Crd,
    /// Copy this binary to PATH, executable: the init container of a
    /// `spec.job` Job uses it, as the operator's image has no shell or `cp`.
    #[command(hide = true)]
    CopyBinary {
        /// Where the copy goes, such as /schemaop/schemaop.
        path: std::path::PathBuf,
    },
    /// Run the Kubernetes operator: leader election, the controller, and
    /// /healthz, /readyz and /metrics.
    Run(crate::operator::RunArgs),
    /// Wait until the database is at a revision, as an init container: watch a
    /// SchemaMigration (--migration) or read the history table (--database-url).
    Wait(wait::WaitArgs),
    /// Run another tool's migration command under schemaop's migration lock,
    /// audited: `exec --tool alembic -- alembic upgrade head`.
    Exec(exec::ExecArgs),
}

/// The global options each verb uses: its help lists only these. The others
/// are still accepted, so one alias (`schemaop --dir db/migrations`) serves
/// every verb.
fn options_used(verb: &str) -> Vec<&'static str> {
    const OUTPUT: &[&str] = &["output", "color", "log_level", "log_sql"];
    const DATABASE: &[&str] = &["database_url", "history_schema", "history_table"];
    const SOURCE: &[&str] = &["dir", "allow_empty", "allow_out_of_order"];
    const SESSION: &[&str] = &["lock_timeout", "statement_timeout", "lock_wait_timeout"];
    const RETRIES: &[&str] = &["lock_retry_budget", "lock_retries"];
    let groups: &[&[&str]] = match verb {
        "upgrade" | "downgrade" => &[OUTPUT, DATABASE, SOURCE, SESSION, RETRIES],
        "stamp" | "repair" => &[OUTPUT, DATABASE, SOURCE, SESSION],
        "status" | "verify" | "plan" => &[OUTPUT, DATABASE, SOURCE],
        "current" | "history" => &[OUTPUT, DATABASE],
        "wait" => &[OUTPUT, DATABASE, &["dir"]],
        "exec" => &[OUTPUT, DATABASE, &["lock_wait_timeout"]],
        "new" => &[&["dir", "output", "color", "log_level"]],
        // `crd` prints YAML; `run` has flags of its own.
        "crd" | "run" | "copy-binary" => &[],
        _ => &[OUTPUT, DATABASE, SOURCE, SESSION, RETRIES],
    };
    groups.concat()
}

/// The command line, with each verb's help cut down to the options it uses.
pub fn command() -> clap::Command {
    let mut command = Cli::command();
    let global: Vec<clap::Arg> = GlobalArgs::augment_args(clap::Command::new("global"))
        .get_arguments()
        .cloned()
        .collect();
    let verbs: Vec<String> = command
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect();
    for verb in verbs {
        let used = options_used(&verb);
        command = command.mut_subcommand(&verb, |mut verb| {
            // clap copies a global option into each verb unless the verb
            // has one of that name: a hidden copy keeps it out of the help.
            // Its value still reaches the global option.
            for arg in global
                .iter()
                .filter(|a| !used.contains(&a.get_id().as_str()))
            {
                verb = verb.arg(arg.clone().hide(true));
            }
            verb
        });
    }
    command
}

/// `upgrade` and `downgrade`: a target, or with --sql, only its SQL.
#[derive(Debug, Args)]
pub struct UpgradeArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Print the SQL instead of running it, with no database, as `alembic
    /// upgrade head --sql` does; the same as `plan --sql --offline`.
    #[arg(long)]
    pub sql: bool,
    /// With --sql: where the database is assumed to be, `base` for an
    /// upgrade and `head` for a downgrade unless given.
    #[arg(long, value_name = "TARGET", requires = "sql")]
    pub from: Option<Target>,
}

/// Where a run goes, as people type it: a positional target or `--to`, or
/// `--steps`. Steps count from the history read under the migration lock.
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// `head` (or `latest`), `base`, a version, or steps: `+N` forward, `-N` back.
    #[arg(value_name = "TARGET", allow_negative_numbers = true, conflicts_with_all = ["to", "steps"])]
    pub target: Option<Target>,
    /// The target, as an option.
    #[arg(
        long,
        value_name = "TARGET",
        allow_negative_numbers = true,
        conflicts_with = "steps"
    )]
    pub to: Option<Target>,
    /// N migrations: forward for upgrade, back for downgrade.
    #[arg(long, value_name = "N", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub steps: Option<usize>,
}

impl TargetArgs {
    /// The target for a run in `direction`; upgrades default to head,
    /// downgrades need one. A step the wrong way is a usage error.
    pub fn resolve(&self, direction: Direction) -> Result<Target, CliError> {
        let down = direction == Direction::Down;
        let target = match (self.target.or(self.to), self.steps) {
            (Some(target), _) => target,
            (None, Some(n)) if down => Target::Back(n),
            (None, Some(n)) => Target::Forward(n),
            (None, None) if down => {
                return Err(CliError::Usage(
                    "downgrade needs a target: `downgrade base` reverts everything, `downgrade VERSION` \
                     (or --to VERSION) goes down to that version, `downgrade -N` (or --steps N) reverts N"
                        .into(),
                ));
            }
            (None, None) => Target::Latest,
        };
        match target {
            Target::Back(n) if !down => Err(CliError::Usage(format!(
                "upgrade moves forward, and -{n} is {n} step{s} back; use `schemaop downgrade -{n}`",
                s = if n == 1 { "" } else { "s" }
            ))),
            Target::Forward(n) if down => Err(CliError::Usage(format!(
                "downgrade moves back, and +{n} is {n} step{s} forward; use `schemaop upgrade +{n}`",
                s = if n == 1 { "" } else { "s" }
            ))),
            target => Ok(target),
        }
    }
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct RepairArgs {
    /// Accept the current text of an applied migration whose file changed.
    #[arg(long, value_name = "VERSION")]
    pub accept_checksum: Option<Version>,
    /// Mark a failed or interrupted no-transaction migration as applied.
    #[arg(long, value_name = "VERSION")]
    pub mark_applied: Option<Version>,
    /// Forget a failed or interrupted no-transaction migration, so it runs again.
    #[arg(long, value_name = "VERSION")]
    pub mark_reverted: Option<Version>,
}

/// What can stop a command: the engine's errors, and the few of the CLI's own.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Engine(#[from] Error),
    #[error("{0}")]
    Usage(String),
    #[error(
        "no migrations found in {}: migration files are named <version>_<description>.sql \
         (or .up.sql and .down.sql); check --dir, or pass --allow-empty if an empty folder is meant",
        .0.display()
    )]
    NoMigrations(PathBuf),
    #[error("cannot write {}: {source}; check that the folder exists and is writable", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Engine(e) => exit_code(e),
            CliError::Usage(_) => exit::USAGE,
            CliError::NoMigrations(_) => exit::INVALID_SOURCE,
            CliError::Write { .. } => exit::FAILED,
        }
    }
}

/// Entry point of the `schemaop` binary.
pub fn main() -> ExitCode {
    let cli = Cli::from_arg_matches(&command().get_matches()).unwrap_or_else(|e| e.exit());
    let runtime = match runtime::build(&cli.command) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::FAILED);
        }
    };
    // The operator sets up its own logging, from its own flags.
    if let Command::Run(args) = cli.command {
        return match runtime.block_on(crate::operator::run(args)) {
            Ok(()) => ExitCode::from(exit::OK),
            Err(error) => {
                eprintln!("error: {error}");
                ExitCode::from(exit::FAILED)
            }
        };
    }
    telemetry::init(LogFormat::Text, &cli.global.log_level, cli.global.log_sql);
    cli.global.color.apply();
    let reporter = Reporter::new(cli.global.output, cli.command.name());
    match runtime.block_on(run(cli, &reporter)) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            reporter.error(&error);
            ExitCode::from(error.exit_code())
        }
    }
}

/// Maps an engine error to the documented exit code.
pub fn exit_code(error: &Error) -> u8 {
    match error {
        Error::ReadSource { .. }
        | Error::InvalidFileName { .. }
        | Error::DuplicateVersion { .. }
        | Error::DownWithoutUp { .. }
        | Error::EmptyFile { .. }
        | Error::VersionTooLarge { .. }
        | Error::DanglingLink { .. }
        | Error::NotUtf8 { .. }
        | Error::TransactionControl { .. }
        | Error::TransactionControlWithoutTransaction { .. }
        | Error::CopyFromStdin { .. }
        | Error::PsqlMetaCommand { .. }
        | Error::UnreadableSql { .. } => exit::INVALID_SOURCE,
        Error::TargetNotFound { .. }
        | Error::NotEnoughSteps { .. }
        | Error::ChecksumMismatch(_)
        | Error::MissingMigrations(_)
        | Error::OutOfOrder { .. }
        | Error::Irreversible { .. }
        | Error::DowngradeNotAllowed { .. }
        | Error::UpgradeNotAllowed { .. }
        | Error::Blocked { .. }
        | Error::NotInHistory { .. }
        | Error::RepairApplied { .. } => exit::REFUSED,
        Error::InvalidHistoryTable { .. } => exit::USAGE,
        Error::InvalidUrl { .. }
        | Error::InvalidTls { .. }
        | Error::Unreachable { .. }
        | Error::ConnectionRefused { .. }
        | Error::HostNotFound { .. }
        | Error::DatabaseMissing { .. }
        | Error::UnknownRole { .. }
        | Error::AuthenticationFailed { .. } => exit::UNREACHABLE,
        Error::LockTimeout { .. } | Error::LockWaitTimeout { .. } => exit::LOCKED,
        Error::Database { .. } | Error::MigrationFailed { .. } | Error::ConnectionLost { .. } => {
            exit::FAILED
        }
    }
}

/// Copies the running binary to `path`, readable and executable by all.
fn copy_binary(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::copy(std::env::current_exe()?, path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
}

async fn run(cli: Cli, reporter: &Reporter) -> Result<u8, CliError> {
    let global = &cli.global;
    if let Command::Crd = &cli.command {
        print!("{}", crate::crd::crd_yaml());
        return Ok(exit::OK);
    }
    if let Command::CopyBinary { path } = &cli.command {
        copy_binary(path).map_err(|e| {
            CliError::Usage(format!(
                "cannot copy schemaop to {}: {e}; mount a writable volume there",
                path.display()
            ))
        })?;
        return Ok(exit::OK);
    }
    if let Command::New(args) = &cli.command {
        let files = new::create(&global.dir, args)?;
        reporter.created(&files);
        return Ok(exit::OK);
    }
    if let Command::Wait(args) = &cli.command {
        return wait::run(args, global, reporter).await;
    }
    if let Command::Exec(args) = &cli.command {
        return exec::run(args, global, reporter).await;
    }
    if let Command::Current { tool } = &cli.command
        && tool.tool.is_some()
    {
        return tools::current(tool, global, reporter).await;
    }
    if let Command::History {
        tool: Some(tool), ..
    } = &cli.command
    {
        return tools::history(*tool, global, reporter).await;
    }
    let source = match &cli.command {
        // They read only the database: no folder is needed, and a broken
        // one must not hide what the database says.
        Command::Current { .. } | Command::History { .. } => MigrationSource::default(),
        _ => {
            let source = MigrationSource::from_dir(&global.dir)?;
            if source.is_empty() && !global.allow_empty {
                return Err(CliError::NoMigrations(global.dir.clone()));
            }
            source
        }
    };
    if let Command::Plan {
        target,
        sql,
        down,
        offline,
        from,
    } = &cli.command
        && (*offline || from.is_some())
    {
        return plan_offline(&source, global, target, *sql, *down, *from, reporter);
    }
    if let Command::Upgrade(args) | Command::Downgrade(args) = &cli.command
        && args.sql
    {
        let down = matches!(cli.command, Command::Downgrade(_));
        return plan_offline(
            &source,
            global,
            &args.target,
            true,
            down,
            args.from,
            reporter,
        );
    }
    let database = database(global)?;
    reporter.set_database(&database);
    let migrator = Migrator::new(&source, database, options(global));
    match cli.command {
        Command::Upgrade(args) => {
            let target = args.target.resolve(Direction::Up)?;
            let report = migrator
                .run(target, Direction::Up, &|e| reporter.event(&e))
                .await?;
            reporter.run_report(&report);
        }
        Command::Downgrade(args) => {
            let target = args.target.resolve(Direction::Down)?;
            let report = migrator
                .run(target, Direction::Down, &|e| reporter.event(&e))
                .await?;
            reporter.run_report(&report);
        }
        Command::Current { .. } => {
            let session = migrator.connect().await?;
            reporter.current(migrator.history(&session).await?.current());
        }
        Command::History { verbose, .. } => {
            let session = migrator.connect().await?;
            reporter.history(&migrator.history(&session).await?, verbose);
        }
        Command::Status => {
            let session = migrator.connect().await?;
            let history = migrator.history(&session).await?;
            let status = engine::status::status(&source, &history);
            reporter.status(&status);
            // As verify does: a row that needs a person fails the command.
            if status.needs_a_person() {
                return Ok(exit::REFUSED);
            }
        }
        Command::Verify { pending_fails } => {
            let session = migrator.connect().await?;
            let history = migrator.history(&session).await?;
            let status = engine::status::status(&source, &history);
            let pending = pending_fails && status.count(engine::status::State::Pending) > 0;
            reporter.verify(&status, pending_fails);
            if status.problems().next().is_some() || pending {
                return Ok(exit::REFUSED);
            }
        }
        Command::Plan {
            target, sql, down, ..
        } => {
            let direction = if down { Direction::Down } else { Direction::Up };
            let (plan, text) = migrator
                .plan_sql(target.resolve(direction)?, direction)
                .await?;
            reporter.plan(&plan, sql.then_some(text.as_str()));
        }
        Command::Stamp { version } => {
            let (target, recorded, removed) = migrator.stamp(version).await?;
            reporter.stamped(target, recorded, removed);
        }
        Command::Repair(args) => {
            let repair = match (args.accept_checksum, args.mark_applied, args.mark_reverted) {
                (Some(v), _, _) => Repair::AcceptChecksum(v),
                (_, Some(v), _) => Repair::MarkApplied(v),
                (_, _, Some(v)) => Repair::MarkReverted(v),
                // clap's group makes exactly one of them required.
                (None, None, None) => return Ok(exit::USAGE),
            };
            let detail = migrator.repair(repair).await?;
            reporter.repaired(&detail);
        }
        Command::New(_)
        | Command::Crd
        | Command::CopyBinary { .. }
        | Command::Run(_)
        | Command::Wait(_)
        | Command::Exec(_) => {}
    }
    Ok(exit::OK)
}

/// `plan --offline`: nothing connects. A database named by the URL or
/// libpq's environment only gives the lock key its name.
fn plan_offline(
    source: &MigrationSource,
    global: &GlobalArgs,
    target: &TargetArgs,
    sql: bool,
    down: bool,
    from: Option<Target>,
    reporter: &Reporter,
) -> Result<u8, CliError> {
    let direction = if down { Direction::Down } else { Direction::Up };
    let from = from.unwrap_or(if down { Target::Latest } else { Target::Base });
    if matches!(from, Target::Forward(_) | Target::Back(_)) {
        return Err(CliError::Usage(format!(
            "--from {from} counts steps from a database, and --offline has none; \
             give `base`, `head` or a version"
        )));
    }
    let options = options(global);
    let env = |name: &str| std::env::var(name).ok();
    let database = engine::libpq_env::database(global.database_url.as_deref(), &env)?;
    if let Some(database) = &database {
        reporter.set_database(database);
    }
    let step_sql = engine::step_sql::StepSql {
        table: &options.history,
        actor: &options.actor,
    };
    let (plan, text) = engine::step_sql::offline(
        source,
        &step_sql,
        from,
        target.resolve(direction)?,
        engine::PlanOptions {
            direction,
            allow_out_of_order: global.allow_out_of_order,
        },
        database.map(|d| options.history.lock_key(d.name())),
        // Only `public` is sure to be there; creating it would need a
        // privilege the script's runner may not have.
        global.history_schema != "public",
    )?;
    reporter.plan(&plan, sql.then_some(text.as_str()));
    Ok(exit::OK)
}

/// The database from --database-url (or DATABASE_URL), completed by libpq's
/// environment as psql completes it, or from that environment alone.
fn database(global: &GlobalArgs) -> Result<Database, CliError> {
    let env = |name: &str| std::env::var(name).ok();
    engine::libpq_env::database(global.database_url.as_deref(), &env)?.ok_or_else(|| {
        CliError::Usage(
            "no database given: pass --database-url, set DATABASE_URL, or set libpq's \
             PGHOST, PGPORT, PGDATABASE, PGUSER (and PGPASSWORD or ~/.pgpass) as for psql"
                .into(),
        )
    })
}

fn options(global: &GlobalArgs) -> MigratorOptions {
    let actor = actor();
    MigratorOptions {
        history: HistoryTable::new(&global.history_schema, &global.history_table),
        session: SessionSettings {
            lock_timeout: global.lock_timeout,
            statement_timeout: duration::none_if_zero(global.statement_timeout),
            application_name: format!("schemaop {actor}"),
            ..SessionSettings::default()
        },
        allow_out_of_order: global.allow_out_of_order,
        retry_budget: global.lock_retry_budget,
        lock_retries: global.lock_retries,
        lock_wait_timeout: duration::none_if_zero(global.lock_wait_timeout),
        actor,
        ..MigratorOptions::default()
    }
}

/// `user@host`, as the history and audit log record who ran a migration.
fn actor() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .or_else(login_name)
        .unwrap_or_else(|| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown".into());
    format!("{user}@{host}")
}

/// The login name of this process's user, for containers and CI jobs that
/// set no USER.
fn login_name() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .to_string();
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        (fields.nth(1)? == uid).then(|| name.to_string())
    })
}
