//! Turning a SchemaMigration's references into what the engine needs: the
//! database (from Secrets), the migration source (from ConfigMaps or inline),
//! and the settings of a run.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{Api, Client, ResourceExt};
use sha2::{Digest, Sha256};

use super::error::{Error, Result};
use crate::crd::{self, SchemaMigration, SecretKeyRef, SslMode, TargetRevision};
use crate::duration::none_if_zero;
use crate::engine::tls::{TlsMode, TlsSettings};
use crate::engine::{
    Database, Direction, HistoryTable, MigrationSource, MigratorOptions, SessionSettings, Target,
    Version,
};

/// Everything a run needs, resolved from the cluster.
#[derive(Clone)]
pub struct Inputs {
    pub database: Database,
    pub source: MigrationSource,
    pub target: Target,
    pub direction: Direction,
    pub options: MigratorOptions,
    pub attempts: Attempts,
    /// Changes when the spec or the migration files change, and only then:
    /// a run for an older fingerprint is cancelled, and a failure is not
    /// retried until the fingerprint moves.
    pub fingerprint: String,
}

/// The Job-like limits of one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempts {
    /// Retries after the first attempt.
    pub retries: usize,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// For the whole run, every attempt and wait included.
    pub deadline: Duration,
}

/// Reads the Secrets and ConfigMaps `obj` refers to.
pub async fn resolve(client: &Client, obj: &SchemaMigration, identity: &str) -> Result<Inputs> {
    let namespace = obj.namespace().unwrap_or_default();
    let spec = &obj.spec;
    let database = database(client, obj).await?;
    let Some(source) = &spec.source else {
        return Err(Error::InvalidSpec {
            field: "spec.source",
            message: "SQL migrations need spec.source; with spec.job the Job runs them".into(),
        });
    };
    let files = match source {
        crd::Source::Inline(files) => files.clone(),
        crd::Source::ConfigMapRefs(refs) => {
            let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
            let mut files = BTreeMap::new();
            let mut origin: BTreeMap<String, String> = BTreeMap::new();
            for reference in refs {
                let config_map = config_maps.get_opt(&reference.name).await?.ok_or_else(|| {
                    Error::ConfigMapNotFound {
                        namespace: namespace.clone(),
                        name: reference.name.clone(),
                    }
                })?;
                for (file, sql) in config_map.data.unwrap_or_default() {
                    if let Some(first) = origin.insert(file.clone(), reference.name.clone()) {
                        return Err(Error::DuplicateFile {
                            file,
                            first,
                            second: reference.name.clone(),
                        });
                    }
                    files.insert(file, sql);
                }
            }
            files
        }
    };
    let source = MigrationSource::from_files(files)?;
    settings(obj, database, source, identity)
}

/// The database `obj` names, with its password read from the Secret: the
/// same for SQL runs and for reading a Job's tool's version table.
pub async fn database(client: &Client, obj: &SchemaMigration) -> Result<Database> {
    let namespace = obj.namespace().unwrap_or_default();
    let spec = &obj.spec;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let database = match &spec.database {
        crd::Database::UrlSecretRef(reference) => {
            Database::from_url(&secret_text(&secrets, &namespace, reference).await?)?
        }
        crd::Database::Connection(c) => {
            let password = secret_text(&secrets, &namespace, &c.password_secret_ref).await?;
            let root_certificates = match &c.ca_secret_ref {
                Some(reference) => Some(
                    secret_text(&secrets, &namespace, reference)
                        .await?
                        .into_bytes(),
                ),
                None => None,
            };
            let port = u16::try_from(c.port).map_err(|_| Error::InvalidSpec {
                field: "spec.database.connection.port",
                message: format!("{} is not a port; use 1 to 65535", c.port),
            })?;
            let tls = TlsSettings {
                mode: match c.ssl_mode {
                    SslMode::Disable => TlsMode::Disable,
                    SslMode::Require => TlsMode::Require,
                    SslMode::VerifyFull => TlsMode::VerifyFull,
                },
                root_certificates,
            };
            Database::from_parts(&c.host, port, &c.database, &c.user, Some(&password), tls)?
        }
    };
    Ok(database)
}

/// The settings of a run from the spec; no I/O, so tests can call it.
pub fn settings(
    obj: &SchemaMigration,
    database: Database,
    source: MigrationSource,
    identity: &str,
) -> Result<Inputs> {
    let spec = &obj.spec;
    let duration =
        |field: &'static str, parsed: std::result::Result<Duration, crd::ParseDurationError>| {
            parsed.map_err(|e| Error::InvalidSpec {
                field,
                message: e.to_string(),
            })
        };
    let actor = format!("schemaop-operator/{identity}");
    let options = MigratorOptions {
        history: HistoryTable::new(&spec.history.schema, &spec.history.table),
        session: SessionSettings {
            lock_timeout: duration("spec.timeouts.lockTimeout", spec.timeouts.lock_timeout())?,
            statement_timeout: none_if_zero(duration(
                "spec.timeouts.statementTimeout",
                spec.timeouts.statement_timeout(),
            )?),
            application_name: actor.clone(),
            ..SessionSettings::default()
        },
        allow_out_of_order: spec.allow_out_of_order,
        actor,
        ..MigratorOptions::default()
    };
    let attempts = Attempts {
        retries: usize::try_from(spec.retry.limit).unwrap_or(0),
        min_backoff: duration("spec.retry.minBackoff", spec.retry.min_backoff())?,
        max_backoff: duration("spec.retry.maxBackoff", spec.retry.max_backoff())?,
        deadline: duration("spec.timeouts.runDeadline", spec.timeouts.run_deadline())?,
    };
    let target = match spec.target().map_err(|e| Error::InvalidSpec {
        field: "spec.targetRevision",
        message: e.to_string(),
    })? {
        TargetRevision::Latest => Target::Latest,
        TargetRevision::Version(v) => Target::Version(Version(v)),
    };
    let retry = obj.annotations().get(RETRY_ANNOTATION).map(String::as_str);
    let fingerprint = fingerprint(obj.metadata.generation, retry, &source);
    Ok(Inputs {
        database,
        source,
        target,
        direction: Direction::Either {
            allow_downgrade: spec.allow_downgrade,
        },
        options,
        attempts,
        fingerprint,
    })
}

/// Changing this annotation's value asks for a failed run to be tried again
/// when nothing else changed, for instance after fixing the database by hand:
/// `kubectl annotate smig/NAME schemaop.dev/retry="$(date +%s)" --overwrite`.
pub const RETRY_ANNOTATION: &str = "schemaop.dev/retry";

fn fingerprint(generation: Option<i64>, retry: Option<&str>, source: &MigrationSource) -> String {
    let mut hash = Sha256::new();
    hash.update(generation.unwrap_or(0).to_be_bytes());
    hash.update(retry.unwrap_or("").as_bytes());
    hash.update([0]);
    for m in source.migrations() {
        hash.update(m.version.0.to_be_bytes());
        hash.update(m.checksum().0);
        if let Some(down) = &m.down {
            hash.update(down.checksum.0);
        }
    }
    hash.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One key of a Secret, as text. Errors name the Secret and key, never the value.
async fn secret_text(
    secrets: &Api<Secret>,
    namespace: &str,
    reference: &SecretKeyRef,
) -> Result<String> {
    let secret = secrets
        .get_opt(&reference.name)
        .await?
        .ok_or_else(|| Error::SecretNotFound {
            namespace: namespace.to_string(),
            name: reference.name.clone(),
        })?;
    let missing = || Error::SecretKeyNotFound {
        name: reference.name.clone(),
        key: reference.key.clone(),
    };
    let bytes = match (secret.data, secret.string_data) {
        (Some(mut data), _) if data.contains_key(&reference.key) => {
            data.remove(&reference.key).ok_or_else(missing)?.0
        }
        (_, Some(mut data)) => data
            .remove(&reference.key)
            .ok_or_else(missing)?
            .into_bytes(),
        _ => return Err(missing()),
    };
    String::from_utf8(bytes)
        .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
        .map_err(|_| Error::SecretNotText {
            name: reference.name.clone(),
            key: reference.key.clone(),
        })
}
