//! `schemaop run`: the operator process. Wiring only: logs, the API client,
//! the HTTP endpoints, signals, and the controller behind leader election.

use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use clap::builder::RangedU64ValueParser;
use tokio_util::sync::CancellationToken;

use crate::controller::metrics::Metrics;
use crate::controller::{self, Context, ControllerConfig};
use crate::duration;
use crate::gates;
use crate::leader::{self, LeaderError, LeaderSettings};
use crate::server::{self, ServerState};
use crate::telemetry::{self, LogFormat};

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Namespace of the leader-election Lease: the operator's own. Defaults to
    /// the service account's namespace in a pod, or the kubeconfig's.
    #[arg(long, env = "POD_NAMESPACE")]
    pub namespace: Option<String>,

    /// Reconcile SchemaMigrations in this namespace only; all namespaces when absent.
    #[arg(long)]
    pub watch_namespace: Option<String>,

    /// How many migrations may run at once, across all SchemaMigrations; as
    /// many reconciles may check their databases at once besides.
    // 8 from operator_scale: with runs that wait on their servers, 4 took
    // 1.7x as long as 8, 16 only 1.35x less than 8 while holding twice the
    // sessions, and 32 exhausted a server's default 100 connections.
    #[arg(long, default_value_t = 8, value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_concurrent_runs: usize,

    /// Address for /healthz, /readyz and /metrics.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,

    /// `text` for people, `json` for log collectors.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log level or filter (error, warn, info, debug, or e.g. schemaop=debug,kube=info); RUST_LOG overrides it.
    #[arg(long, default_value = "info")]
    pub log_level: String,

    /// Also log the text of every SQL statement at debug level. It prints
    /// secrets (`CREATE ROLE ... PASSWORD`); for debugging only.
    // Boolish, so SCHEMAOP_LOG_SQL=1 works as well as =true.
    #[arg(long, env = "SCHEMAOP_LOG_SQL", action = clap::ArgAction::SetTrue, value_parser = clap::builder::BoolishValueParser::new())]
    pub log_sql: bool,

    /// How long the leader's lease lasts unrenewed: how soon a standby replica
    /// takes over from a leader that died.
    #[arg(long, default_value = "15s", value_parser = duration::parse_duration)]
    pub lease_duration: Duration,

    /// The operator's own image, such as `ghcr.io/schemaop/schemaop:0.1.0`:
    /// the Jobs of `spec.job` copy its `schemaop` binary in to run the
    /// migration command under `schemaop exec`. The chart sets it to the
    /// image it deploys. Without it, a SchemaMigration with `spec.job.wrap`
    /// (the default) stalls, saying so.
    #[arg(long, env = "SCHEMAOP_JOB_WRAPPER_IMAGE")]
    pub job_wrapper_image: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error(
        "cannot reach the Kubernetes API server: {0}; in a pod, check the service account and network policy; \
         elsewhere, check KUBECONFIG and the current context"
    )]
    Connect(#[source] kube::Error),
    #[error("cannot listen for termination signals: {0}")]
    Signals(#[source] io::Error),
    #[error(
        "cannot serve /healthz, /readyz and /metrics on {addr}: {source}; choose another --metrics-addr"
    )]
    Server {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Leader(#[from] LeaderError),
}

/// What a stop does, as `Runs::stop_all` does it: a run is cancelled, not
/// finished; its open transaction rolls back and the next leader runs it.
const STOPPING: &str = "stopping: cancelling runs in progress (their open transactions roll back \
     and the next leader starts them again), then releasing the leader lease";

/// Runs the operator until SIGTERM or SIGINT.
pub async fn run(args: RunArgs) -> Result<(), OperatorError> {
    telemetry::init(args.log_format, &args.log_level, args.log_sql);

    let client = crate::kube_client::client()
        .await
        .map_err(OperatorError::Connect)?;
    // Fail now, with the reason, rather than retry quietly: a replica that
    // cannot reach the API server can never lead.
    let version = client
        .apiserver_version()
        .await
        .map_err(OperatorError::Connect)?;
    tracing::info!(server = %version.git_version, "connected to the Kubernetes API server");

    let identity = leader::identity()?;
    let lease_namespace = args
        .namespace
        .unwrap_or_else(|| client.default_namespace().to_owned());
    let election = LeaderSettings::new(lease_namespace, identity.clone())
        .with_lease_duration(args.lease_duration);

    let metrics = Arc::new(Metrics::new());
    let config = ControllerConfig {
        watch_namespace: args.watch_namespace,
        max_concurrent_runs: args.max_concurrent_runs,
        identity,
        job: controller::job::JobSettings {
            wrapper_image: args.job_wrapper_image.clone(),
        },
    };
    let ctx = Context::new(client.clone(), config, metrics.clone());

    let shutdown = CancellationToken::new();
    cancel_on_termination(shutdown.clone()).map_err(OperatorError::Signals)?;

    let state = ServerState::new(metrics.clone());
    state.set_ready();
    // The endpoints outlive the controller, on a token of their own: the
    // kubelet keeps probing while a stopping leader finishes its runs.
    let server_stop = CancellationToken::new();
    let mut serving = pin!(server::serve(args.metrics_addr, state, server_stop.clone()));
    let mut leading = pin!(leader::lead(
        client,
        election,
        shutdown.clone(),
        metrics,
        |token| {
            let ctx = ctx.clone();
            async move {
                // Both belong to the leader: one writes SchemaMigrations, the
                // other the gates of the pods that wait on them.
                tokio::join!(
                    controller::run(ctx.clone(), token.clone()),
                    gates::run(ctx, token)
                );
            }
        },
    ));

    let outcome = tokio::select! {
        outcome = &mut leading => outcome.map_err(OperatorError::from),
        served = &mut serving => {
            // The server returns early only if it cannot bind or its listener
            // breaks; stop the controller cleanly, then report it.
            shutdown.cancel();
            if let Err(error) = leading.await {
                tracing::warn!(%error, "leader election ended with an error while stopping");
            }
            let source = served
                .err()
                .unwrap_or_else(|| io::Error::other("the server stopped unexpectedly"));
            return Err(OperatorError::Server {
                addr: args.metrics_addr,
                source,
            });
        }
    };

    server_stop.cancel();
    if let Err(error) = serving.await {
        tracing::warn!(%error, "the HTTP server did not stop cleanly");
    }
    tracing::info!("stopped");
    outcome
}

/// Cancels `shutdown` on SIGTERM, which the kubelet sends to stop a pod, or
/// SIGINT (Ctrl-C). The handlers are installed before this returns, so no
/// signal is lost between startup and the first await.
fn cancel_on_termination(shutdown: CancellationToken) -> io::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        tokio::spawn(async move {
            let name = tokio::select! {
                _ = terminate.recv() => "SIGTERM",
                _ = interrupt.recv() => "SIGINT",
            };
            tracing::info!(signal = name, "{STOPPING}");
            shutdown.cancel();
        });
    }
    #[cfg(not(unix))]
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::info!("{STOPPING}");
            shutdown.cancel();
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    #[test]
    fn defaults() {
        let args = Cli::try_parse_from(["schemaop"])
            .expect("defaults parse")
            .run;
        assert_eq!(args.watch_namespace, None);
        assert_eq!(args.max_concurrent_runs, 8);
        assert_eq!(
            args.metrics_addr,
            "0.0.0.0:8080".parse().expect("an address")
        );
        assert_eq!(args.log_format, LogFormat::Text);
        assert_eq!(args.log_level, "info");
        assert_eq!(args.lease_duration, Duration::from_secs(15));
    }

    #[test]
    fn flags() {
        let args = Cli::try_parse_from([
            "schemaop",
            "--namespace=schemaop-system",
            "--watch-namespace=shop",
            "--max-concurrent-runs=2",
            "--metrics-addr=127.0.0.1:9090",
            "--log-format=json",
            "--log-level=debug",
            "--lease-duration=30s",
        ])
        .expect("flags parse")
        .run;
        assert_eq!(args.namespace.as_deref(), Some("schemaop-system"));
        assert_eq!(args.watch_namespace.as_deref(), Some("shop"));
        assert_eq!(args.max_concurrent_runs, 2);
        assert_eq!(args.log_format, LogFormat::Json);
        assert_eq!(args.lease_duration, Duration::from_secs(30));
    }

    #[test]
    fn zero_concurrent_runs_is_refused() {
        assert!(Cli::try_parse_from(["schemaop", "--max-concurrent-runs=0"]).is_err());
    }
}
