//! The two tables the engine keeps in the database: the state table, one row
//! per applied migration, and an append-only audit log of everything done.
//!
//! Every statement that writes to them is built here as text, so `plan --sql`
//! prints exactly what `upgrade` sends.

use std::fmt;

use sha2::{Digest, Sha256};

use super::migration::{Checksum, Migration, Version};
use super::sql::{quote_ident, quote_literal};

/// Where the history lives. Defaults to `public.schemaop_migrations`, with the
/// audit log beside it as `public.schemaop_migrations_audit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryTable {
    pub schema: String,
    pub table: String,
}

impl Default for HistoryTable {
    fn default() -> Self {
        HistoryTable {
            schema: "public".into(),
            table: "schemaop_migrations".into(),
        }
    }
}

/// What a row of the state table says about its migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordState {
    Applied,
    /// A no-transaction migration is running, or its runner died while it ran.
    Applying,
    ApplyFailed,
    /// A no-transaction down migration is running, or its runner died.
    Reverting,
    RevertFailed,
}

impl RecordState {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordState::Applied => "applied",
            RecordState::Applying => "applying",
            RecordState::ApplyFailed => "apply_failed",
            RecordState::Reverting => "reverting",
            RecordState::RevertFailed => "revert_failed",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "applied" => RecordState::Applied,
            "applying" => RecordState::Applying,
            "apply_failed" => RecordState::ApplyFailed,
            "reverting" => RecordState::Reverting,
            "revert_failed" => RecordState::RevertFailed,
            _ => return None,
        })
    }

    /// How an error message says what happened, when a row blocks further runs.
    pub fn describe_blocked(self) -> &'static str {
        match self {
            RecordState::Applied => "is applied",
            RecordState::Applying => "was interrupted while being applied",
            RecordState::ApplyFailed => "failed while being applied",
            RecordState::Reverting => "was interrupted while being reverted",
            RecordState::RevertFailed => "failed while being reverted",
        }
    }
}

impl fmt::Display for RecordState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `schemaop exec` as the audit log recorded it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ExecRecord {
    pub at: jiff::Timestamp,
    pub actor: String,
    /// The command line, passwords hidden.
    pub command: String,
    /// `succeeded` or `failed`.
    pub outcome: String,
    /// None when the command could not be started.
    pub exit_code: Option<i32>,
    pub revision_before: Option<String>,
    pub revision_after: Option<String>,
    pub duration_ms: i64,
}

impl ExecRecord {
    /// Parses one row of [`HistoryTable::select_exec_sql`], as text columns.
    pub fn parse_row(columns: &[Option<&str>]) -> Option<ExecRecord> {
        let [
            at,
            actor,
            command,
            outcome,
            exit_code,
            before,
            after,
            duration,
        ] = columns
        else {
            return None;
        };
        let text = |c: &Option<&str>| c.map(str::to_string);
        Some(ExecRecord {
            at: jiff::Timestamp::from_microsecond((*at)?.parse().ok()?).ok()?,
            actor: text(actor)?,
            command: text(command)?,
            outcome: text(outcome)?,
            exit_code: exit_code.and_then(|c| c.parse().ok()),
            revision_before: text(before),
            revision_after: text(after),
            duration_ms: (*duration)?.parse().ok()?,
        })
    }
}

/// One row of the state table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AppliedMigration {
    pub version: Version,
    pub description: String,
    #[serde(serialize_with = "checksum_hex")]
    pub checksum: Checksum,
    pub state: RecordState,
    pub applied_at: jiff::Timestamp,
    pub duration_ms: i64,
    pub applied_by: String,
    /// For failed no-transaction migrations: what PostgreSQL said.
    pub error: Option<String>,
}

fn checksum_hex<S: serde::Serializer>(c: &Checksum, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&c.to_hex())
}

/// The state table as read from the database, ordered by version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    /// False when the state table does not exist yet: nothing has run.
    pub exists: bool,
    pub records: Vec<AppliedMigration>,
}

impl History {
    /// The newest applied version: where the database is.
    pub fn current(&self) -> Option<Version> {
        self.records
            .iter()
            .rev()
            .find(|r| r.state == RecordState::Applied)
            .map(|r| r.version)
    }

    pub fn get(&self, version: Version) -> Option<&AppliedMigration> {
        self.records
            .binary_search_by_key(&version, |r| r.version)
            .ok()
            .map(|i| &self.records[i])
    }
}

/// What the audit log records an entry for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditAction {
    Up,
    Down,
    Stamp,
    Repair,
    /// Another tool's command, run under the migration lock by `schemaop exec`.
    Exec,
}

impl AuditAction {
    pub const ALL: [AuditAction; 5] = [
        AuditAction::Up,
        AuditAction::Down,
        AuditAction::Stamp,
        AuditAction::Repair,
        AuditAction::Exec,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Up => "up",
            AuditAction::Down => "down",
            AuditAction::Stamp => "stamp",
            AuditAction::Repair => "repair",
            AuditAction::Exec => "exec",
        }
    }

    /// The audit table's CHECK on `action`, every action listed.
    fn check() -> String {
        let actions: Vec<String> = AuditAction::ALL
            .iter()
            .map(|a| format!("'{}'", a.as_str()))
            .collect();
        format!("CHECK (action IN ({}))", actions.join(", "))
    }
}

/// The audit table's columns for `schemaop exec`, added after the first
/// release: a table made by an older schemaop gets them on the first exec.
pub(crate) const EXEC_COLUMNS: [(&str, &str); 5] = [
    ("tool", "text"),
    ("command", "text"),
    ("exit_code", "integer"),
    ("revision_before", "text"),
    ("revision_after", "text"),
];

/// One `schemaop exec`, as its audit entry records it. Every text is
/// already free of secrets: the command line is redacted by the caller.
pub struct ExecAuditEntry<'a> {
    pub actor: &'a str,
    pub tool: &'a str,
    /// The command line, any password in it replaced.
    pub command: &'a str,
    pub duration_ms: i64,
    pub succeeded: bool,
    /// The child's exit code, 128+N for a child killed by signal N; `None`
    /// when it could not be started.
    pub exit_code: Option<i32>,
    pub revision_before: Option<&'a str>,
    pub revision_after: Option<&'a str>,
    /// How it ended, in words: `exited with 3`, `killed by signal 9`.
    pub detail: &'a str,
}

/// One audit entry, as the engine writes it.
pub struct AuditEntry<'a> {
    pub actor: &'a str,
    pub action: AuditAction,
    pub version: Option<Version>,
    pub description: &'a str,
    pub elapsed: Elapsed,
    pub succeeded: bool,
    pub detail: Option<&'a str>,
}

/// Milliseconds since the transaction began, computed by the server so a
/// transactional migration records its own duration in the same round trip.
const ELAPSED_IN_TRANSACTION_MS: &str =
    "(extract(epoch FROM clock_timestamp() - transaction_timestamp()) * 1000)::bigint";

/// The session setting a printed no-transaction step starts its clock in.
const STEP_STARTED: &str = "schemaop.step_started";

/// How long a step took, as the history writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Elapsed {
    /// Measured by the runner, in milliseconds.
    Measured(i64),
    /// Since the transaction began, computed by the server.
    InTransaction,
    /// Since [`Elapsed::start_clock`] ran in this session, computed by the
    /// server: printed scripts run by hand have no runner to measure them.
    SinceClockStarted,
}

impl Elapsed {
    /// Starts the clock [`Elapsed::SinceClockStarted`] reads; session-level,
    /// since a no-transaction step spans several transactions. A `DO` block,
    /// so psql prints no result for it.
    pub fn start_clock() -> String {
        format!(
            "DO $$ BEGIN PERFORM set_config('{STEP_STARTED}', clock_timestamp()::text, false); END $$;\n"
        )
    }

    fn sql(self) -> String {
        match self {
            Elapsed::Measured(ms) => ms.to_string(),
            Elapsed::InTransaction => ELAPSED_IN_TRANSACTION_MS.to_string(),
            Elapsed::SinceClockStarted => format!(
                "(extract(epoch FROM clock_timestamp() - current_setting('{STEP_STARTED}')::timestamptz) * 1000)::bigint"
            ),
        }
    }
}

impl HistoryTable {
    pub fn new(schema: impl Into<String>, table: impl Into<String>) -> Self {
        HistoryTable {
            schema: schema.into(),
            table: table.into(),
        }
    }

    /// PostgreSQL truncates names to 63 bytes: a longer `NAME_audit` would
    /// silently become the same table as a name that differs only past the
    /// cut, or as the state table itself.
    pub fn check_table_name(table: &str) -> Result<(), String> {
        const MAX: usize = 63 - "_audit".len();
        if table.is_empty() {
            return Err("the history table needs a name".into());
        }
        if table.len() > MAX {
            return Err(format!(
                "the history table name {table:?} has {} bytes; its audit log {table}_audit must fit \
                 PostgreSQL's 63-byte names, so use at most {MAX} bytes",
                table.len()
            ));
        }
        Ok(())
    }

    pub fn audit_table_name(&self) -> String {
        format!("{}_audit", self.table)
    }

    fn state(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.table))
    }

    fn audit(&self) -> String {
        format!(
            "{}.{}",
            quote_ident(&self.schema),
            quote_ident(&self.audit_table_name())
        )
    }

    /// The advisory lock key for this history in `database`. Two runners
    /// against the same history table always agree on it; different history
    /// tables in one database do not block each other.
    pub fn lock_key(&self, database: &str) -> i64 {
        let mut hash = Sha256::new();
        for part in ["schemaop", database, &self.schema, &self.table] {
            hash.update(part.as_bytes());
            hash.update([0]);
        }
        let digest = hash.finalize();
        let mut key = [0u8; 8];
        key.copy_from_slice(&digest[..8]);
        i64::from_be_bytes(key)
    }

    /// Whether the history's schema exists, as one row with `t` or `f`.
    pub fn schema_exists_sql(&self) -> String {
        format!(
            "SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = {})",
            quote_literal(&self.schema)
        )
    }

    /// Creates both tables, in a transaction of their own. The schema is
    /// created only when asked: PostgreSQL checks the database's CREATE
    /// privilege even for `CREATE SCHEMA IF NOT EXISTS` on an existing
    /// schema, which a least-privilege application role does not have.
    pub fn create_script(&self, create_schema: bool) -> String {
        let schema = if create_schema {
            format!(
                "CREATE SCHEMA IF NOT EXISTS {};\n",
                quote_ident(&self.schema)
            )
        } else {
            String::new()
        };
        format!(
            "BEGIN;\n\
             {schema}\
             CREATE TABLE IF NOT EXISTS {state} (\n  \
               version bigint PRIMARY KEY CHECK (version > 0),\n  \
               description text NOT NULL,\n  \
               checksum text NOT NULL,\n  \
               state text NOT NULL CHECK (state IN ('applied', 'applying', 'apply_failed', 'reverting', 'revert_failed')),\n  \
               applied_at timestamptz NOT NULL DEFAULT now(),\n  \
               duration_ms bigint NOT NULL DEFAULT 0,\n  \
               applied_by text NOT NULL,\n  \
               error text\n\
             );\n\
             CREATE TABLE IF NOT EXISTS {audit} (\n  \
               id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,\n  \
               at timestamptz NOT NULL DEFAULT now(),\n  \
               actor text NOT NULL,\n  \
               action text NOT NULL {action_check},\n  \
               version bigint,\n  \
               description text NOT NULL,\n  \
               duration_ms bigint NOT NULL,\n  \
               outcome text NOT NULL CHECK (outcome IN ('succeeded', 'failed')),\n  \
               detail text,\n  \
               {exec_columns}\n\
             );\n\
             COMMIT;\n",
            state = self.state(),
            audit = self.audit(),
            action_check = AuditAction::check(),
            exec_columns = EXEC_COLUMNS
                .iter()
                .map(|(name, kind)| format!("{name} {kind}"))
                .collect::<Vec<_>>()
                .join(",\n  "),
        )
    }

    /// What an audit table made by an older schemaop lacks, in one row: the
    /// number of [`EXEC_COLUMNS`] it has, and the names of the CHECK
    /// constraints on `action` that do not allow every action yet.
    pub fn audit_shape_sql(&self) -> String {
        let names: Vec<String> = EXEC_COLUMNS
            .iter()
            .map(|(name, _)| quote_literal(name))
            .collect();
        let audit = quote_literal(&self.audit());
        format!(
            "SELECT (SELECT count(*) FROM pg_attribute WHERE attrelid = {audit}::regclass                AND NOT attisdropped AND attname IN ({names})),              (SELECT coalesce(string_agg(c.conname, ',' ORDER BY c.conname), '')                FROM pg_constraint c JOIN pg_attribute a                  ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey)                WHERE c.conrelid = {audit}::regclass AND c.contype = 'c'                  AND a.attname = 'action' AND pg_get_constraintdef(c.oid) NOT LIKE '%''exec''%')",
            names = names.join(", "),
        )
    }

    /// Brings an audit table made by an older schemaop up to this one, in
    /// one transaction: the exec columns, and `action` CHECKs (named in
    /// `stale_checks`, as [`Self::audit_shape_sql`] found them) that allow
    /// every action. Idempotent; run under the migration lock.
    pub fn upgrade_audit_script(&self, stale_checks: &[&str]) -> String {
        let audit = self.audit();
        let columns: Vec<String> = EXEC_COLUMNS
            .iter()
            .map(|(name, kind)| format!("ADD COLUMN IF NOT EXISTS {name} {kind}"))
            .collect();
        let mut script = format!("BEGIN;\nALTER TABLE {audit} {};\n", columns.join(", "));
        for name in stale_checks {
            let name = quote_ident(name);
            script.push_str(&format!(
                "ALTER TABLE {audit} DROP CONSTRAINT {name}, ADD CONSTRAINT {name} {};\n",
                AuditAction::check()
            ));
        }
        script.push_str("COMMIT;\n");
        script
    }

    /// Records one `schemaop exec`.
    pub fn insert_exec_audit(&self, entry: &ExecAuditEntry<'_>) -> String {
        let text = |v: Option<&str>| v.map_or_else(|| "NULL".to_string(), quote_literal);
        format!(
            "INSERT INTO {} (actor, action, description, duration_ms, outcome, detail, \
             tool, command, exit_code, revision_before, revision_after) \
             VALUES ({}, '{}', {}, {}, '{}', {}, {}, {}, {}, {}, {});\n",
            self.audit(),
            quote_literal(entry.actor),
            AuditAction::Exec.as_str(),
            quote_literal(entry.command),
            entry.duration_ms,
            if entry.succeeded {
                "succeeded"
            } else {
                "failed"
            },
            quote_literal(entry.detail),
            quote_literal(entry.tool),
            quote_literal(entry.command),
            entry
                .exit_code
                .map_or_else(|| "NULL".to_string(), |c| c.to_string()),
            text(entry.revision_before),
            text(entry.revision_after),
        )
    }

    /// Reads the audit log's `schemaop exec` entries for `tool`, oldest
    /// first; timestamps as microseconds, as [`Self::select_sql`] reads them.
    pub fn select_exec_sql(&self, tool: &str) -> String {
        format!(
            "SELECT (extract(epoch FROM at) * 1000000)::bigint, actor, command, outcome, \
             exit_code, revision_before, revision_after, duration_ms \
             FROM {} WHERE action = 'exec' AND tool = {} ORDER BY id",
            self.audit(),
            quote_literal(tool)
        )
    }

    /// Reads the state table in one round trip. Timestamps come as
    /// microseconds so the text protocol needs no date parsing.
    pub fn select_sql(&self) -> String {
        format!(
            "SELECT version, description, checksum, state, \
             (extract(epoch FROM applied_at) * 1000000)::bigint, duration_ms, applied_by, error \
             FROM {} ORDER BY version",
            self.state()
        )
    }

    /// Parses one row of [`Self::select_sql`], given as text columns.
    pub fn parse_row(&self, columns: &[Option<&str>]) -> Option<AppliedMigration> {
        let [
            version,
            description,
            checksum,
            state,
            applied_at,
            duration,
            by,
            error,
        ] = columns
        else {
            return None;
        };
        Some(AppliedMigration {
            version: Version((*version)?.parse().ok()?),
            description: (*description)?.to_string(),
            checksum: Checksum::from_hex((*checksum)?)?,
            state: RecordState::parse((*state)?)?,
            applied_at: jiff::Timestamp::from_microsecond((*applied_at)?.parse().ok()?).ok()?,
            duration_ms: (*duration)?.parse().ok()?,
            applied_by: (*by)?.to_string(),
            error: error.map(str::to_string),
        })
    }

    /// Records a migration as applied and audits it, in one statement: the
    /// server parses, plans and runs one statement instead of two, a
    /// measurable part of a small migration's time. The audit entry copies
    /// the row it accompanies, so both carry the same time and duration.
    pub fn insert_applied_audited(&self, m: &Migration, actor: &str) -> String {
        format!(
            "WITH applied AS (INSERT INTO {} \
             (version, description, checksum, state, duration_ms, applied_by) \
             VALUES ({}, {}, {}, 'applied', {ELAPSED_IN_TRANSACTION_MS}, {}) \
             RETURNING applied_at, applied_by, version, description, duration_ms) \
             INSERT INTO {} (at, actor, action, version, description, duration_ms, outcome) \
             SELECT applied_at, applied_by, '{}', version, description, duration_ms, 'succeeded' \
             FROM applied;\n",
            self.state(),
            m.version,
            quote_literal(&m.description),
            quote_literal(&m.checksum().to_hex()),
            quote_literal(actor),
            self.audit(),
            AuditAction::Up.as_str(),
        )
    }

    /// Marks a no-transaction migration as started, so a failure or a crash
    /// halfway leaves a visible record.
    pub fn insert_started(&self, m: &Migration, actor: &str) -> String {
        format!(
            "INSERT INTO {} (version, description, checksum, state, applied_by) \
             VALUES ({}, {}, {}, 'applying', {});\n",
            self.state(),
            m.version,
            quote_literal(&m.description),
            quote_literal(&m.checksum().to_hex()),
            quote_literal(actor),
        )
    }

    pub fn set_state(
        &self,
        version: Version,
        state: RecordState,
        elapsed: Option<Elapsed>,
        error: Option<&str>,
    ) -> String {
        let duration = elapsed
            .map(|e| format!(", duration_ms = {}", e.sql()))
            .unwrap_or_default();
        let applied_at = if state == RecordState::Applied {
            ", applied_at = now()"
        } else {
            ""
        };
        format!(
            "UPDATE {} SET state = '{}', error = {}{duration}{applied_at} WHERE version = {version};\n",
            self.state(),
            state.as_str(),
            error.map_or_else(|| "NULL".to_string(), quote_literal),
        )
    }

    pub fn delete(&self, version: Version) -> String {
        format!("DELETE FROM {} WHERE version = {version};\n", self.state())
    }

    pub fn delete_above(&self, version: Option<Version>) -> String {
        format!(
            "DELETE FROM {} WHERE version > {};\n",
            self.state(),
            version.map_or(0, |v| v.0)
        )
    }

    pub fn insert_stamped(&self, m: &Migration, actor: &str) -> String {
        format!(
            "INSERT INTO {} (version, description, checksum, state, applied_by) \
             VALUES ({}, {}, {}, 'applied', {}) ON CONFLICT (version) DO NOTHING;\n",
            self.state(),
            m.version,
            quote_literal(&m.description),
            quote_literal(&m.checksum().to_hex()),
            quote_literal(actor),
        )
    }

    pub fn set_checksum(&self, version: Version, checksum: &Checksum) -> String {
        format!(
            "UPDATE {} SET checksum = {} WHERE version = {version};\n",
            self.state(),
            quote_literal(&checksum.to_hex())
        )
    }

    pub fn insert_audit(&self, entry: &AuditEntry<'_>) -> String {
        format!(
            "INSERT INTO {} (actor, action, version, description, duration_ms, outcome, detail) \
             VALUES ({}, '{}', {}, {}, {}, '{}', {});\n",
            self.audit(),
            quote_literal(entry.actor),
            entry.action.as_str(),
            entry
                .version
                .map_or_else(|| "NULL".to_string(), |v| v.to_string()),
            quote_literal(entry.description),
            entry.elapsed.sql(),
            if entry.succeeded {
                "succeeded"
            } else {
                "failed"
            },
            entry
                .detail
                .map_or_else(|| "NULL".to_string(), quote_literal),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_key_depends_on_database_schema_and_table() {
        let default = HistoryTable::default();
        assert_eq!(
            default.lock_key("app"),
            HistoryTable::default().lock_key("app")
        );
        assert_ne!(default.lock_key("app"), default.lock_key("other"));
        assert_ne!(
            default.lock_key("app"),
            HistoryTable::new("audit", "schemaop_migrations").lock_key("app")
        );
        assert_ne!(
            default.lock_key("app"),
            HistoryTable::new("public", "other").lock_key("app")
        );
    }

    #[test]
    fn a_table_name_leaves_room_for_its_audit_log() {
        let longest = "t".repeat(57);
        assert_eq!(HistoryTable::check_table_name(&longest), Ok(()));
        assert_eq!(
            HistoryTable::new("public", &longest)
                .audit_table_name()
                .len(),
            63
        );
        let err = HistoryTable::check_table_name(&"t".repeat(58)).unwrap_err();
        assert!(err.contains("at most 57 bytes"), "{err}");
        // Bytes, not characters: PostgreSQL truncates by bytes.
        assert!(HistoryTable::check_table_name(&"é".repeat(29)).is_err());
        assert!(HistoryTable::check_table_name("").is_err());
    }

    #[test]
    fn quotes_every_identifier() {
        let odd = HistoryTable::new("my \"schema\"", "t; DROP TABLE x");
        let script = odd.create_script(true);
        assert!(
            script.contains("\"my \"\"schema\"\"\".\"t; DROP TABLE x\""),
            "{script}"
        );
        assert!(script.contains("\"t; DROP TABLE x_audit\""), "{script}");
    }

    #[test]
    fn a_new_audit_table_takes_exec_entries() {
        let script = HistoryTable::default().create_script(false);
        assert!(
            script.contains("CHECK (action IN ('up', 'down', 'stamp', 'repair', 'exec'))"),
            "{script}"
        );
        for (column, _) in EXEC_COLUMNS {
            assert!(script.contains(&format!("{column} ")), "{column}: {script}");
        }
    }

    #[test]
    fn an_old_audit_table_is_upgraded_in_one_transaction() {
        let table = HistoryTable::default();
        let script = table.upgrade_audit_script(&["schemaop_migrations_audit_action_check"]);
        assert!(
            script.starts_with("BEGIN;\n") && script.ends_with("COMMIT;\n"),
            "{script}"
        );
        assert!(
            script.contains("ADD COLUMN IF NOT EXISTS revision_after text"),
            "{script}"
        );
        assert!(
            script.contains(
                "DROP CONSTRAINT \"schemaop_migrations_audit_action_check\", ADD CONSTRAINT \
                 \"schemaop_migrations_audit_action_check\" CHECK (action IN ('up', 'down', \
                 'stamp', 'repair', 'exec'))"
            ),
            "{script}"
        );
    }

    #[test]
    fn parses_the_rows_it_selects() {
        let table = HistoryTable::default();
        let sum = Checksum::of("x").to_hex();
        let row = [
            Some("7"),
            Some("add users"),
            Some(sum.as_str()),
            Some("apply_failed"),
            Some("1763700000000000"),
            Some("12"),
            Some("ci"),
            Some("boom"),
        ];
        let parsed = table.parse_row(&row).unwrap();
        assert_eq!(parsed.version, Version(7));
        assert_eq!(parsed.state, RecordState::ApplyFailed);
        assert_eq!(parsed.error.as_deref(), Some("boom"));
        assert!(table.parse_row(&row[..3]).is_none());
    }
}
