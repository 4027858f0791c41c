//! Leader election on a real API server: two replicas, run in this process
//! with different identities, compete for the same Lease; only the leader
//! runs the controller, and stopping it hands over to the other.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use schemaop::controller::{self, metrics::Metrics};
use schemaop::crd::SchemaMigration;
use schemaop::leader::{self, LeaderError, LeaderSettings};
use schemaop_e2e::{
    App, ErrorContext, Failure, Result, SETTLE_TIMEOUT, TestDatabase, TestNamespace, cluster,
    controller_context, install_crd, patch_spec, ready, sample_migrations, versions, wait_for,
};
use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Short, so that the test does not wait long, yet long enough that a
/// leader on a busy machine renews in time (2s before expiry).
const LEASE_DURATION: Duration = Duration::from_secs(6);

const A: &str = "schemaop-e2e-replica-a";
const B: &str = "schemaop-e2e-replica-b";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Work {
    Started(&'static str),
    Stopped(&'static str),
}

/// One replica: `leader::lead` running the controller whenever it leads,
/// reporting when the controller starts and stops.
struct Replica {
    shutdown: CancellationToken,
    election: JoinHandle<std::result::Result<(), LeaderError>>,
}

impl Replica {
    fn start(
        client: &Client,
        namespace: &str,
        identity: &'static str,
        report: mpsc::UnboundedSender<Work>,
    ) -> Replica {
        let shutdown = CancellationToken::new();
        let ctx = controller_context(client, namespace, identity);
        let settings = LeaderSettings::new(namespace, identity).with_lease_duration(LEASE_DURATION);
        let work = move |token: CancellationToken| {
            let (ctx, report) = (ctx.clone(), report.clone());
            async move {
                let _ = report.send(Work::Started(identity));
                controller::run(ctx, token).await;
                let _ = report.send(Work::Stopped(identity));
            }
        };
        let election = tokio::spawn(leader::lead(
            client.clone(),
            settings,
            shutdown.clone(),
            Arc::new(Metrics::new()),
            work,
        ));
        Replica { shutdown, election }
    }

    /// Shuts the replica down as SIGTERM does, and waits for it.
    async fn stop(mut self) -> Result {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), &mut self.election)
            .await
            .map_err(|_| Failure::new("leader::lead did not return within 30s of shutdown"))?
            .context("the election task")?
            .context("leader::lead")
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The next report within `timeout`, if any.
async fn next(reports: &mut mpsc::UnboundedReceiver<Work>, timeout: Duration) -> Option<Work> {
    tokio::time::timeout(timeout, reports.recv())
        .await
        .ok()
        .flatten()
}

async fn holder(leases: &Api<Lease>) -> Result<Option<String>> {
    let lease = leases
        .get_opt(leader::LEASE_NAME)
        .await
        .context("reading the Lease")?;
    Ok(lease.and_then(|l| l.spec).and_then(|s| s.holder_identity))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes cluster: e2e/run.sh, or cargo test -p schemaop-e2e -- --ignored (e2e/README.md)"]
async fn leader_election_hands_over() -> Result {
    let Some(client) = cluster().await else {
        return Ok(());
    };
    install_crd(&client).await?;
    let namespace = TestNamespace::create(&client).await?;
    let database = TestDatabase::create().await?;
    let ns = namespace.name.as_str();
    let leases = Api::<Lease>::namespaced(client.clone(), ns);
    let migrations = Api::<SchemaMigration>::namespaced(client.clone(), ns);
    let (report, mut reports) = mpsc::unbounded_channel();

    // A joins first and leads.
    let a = Replica::start(&client, ns, A, report.clone());
    assert_eq!(
        next(&mut reports, Duration::from_secs(30)).await,
        Some(Work::Started(A)),
        "replica A should lead: it is alone"
    );
    assert_eq!(holder(&leases).await?.as_deref(), Some(A));

    // B joins and stands by through two lease durations: A keeps renewing.
    let b = Replica::start(&client, ns, B, report.clone());
    assert_eq!(
        next(&mut reports, LEASE_DURATION * 2).await,
        None,
        "only the leader runs the controller"
    );
    assert_eq!(holder(&leases).await?.as_deref(), Some(A));

    // The leader's controller does the work: up to the third migration.
    let versions = versions(&sample_migrations()?);
    assert!(
        versions.len() >= 4,
        "the sample app has too few migrations: {versions:?}"
    );
    let third = versions[2].to_string();
    let app = App::deploy_in(&client, ns, &database, json!({"targetRevision": third})).await?;
    wait_for(
        &migrations,
        &app.name,
        &format!("Ready at {third}"),
        SETTLE_TIMEOUT,
        |o| {
            ready(o)
                && o.status
                    .as_ref()
                    .and_then(|s| s.current_revision.as_deref())
                    == Some(third.as_str())
        },
    )
    .await?;

    // A shuts down: its controller stops, the Lease is released, B leads.
    let stopping = Instant::now();
    a.stop().await?;
    assert_eq!(
        next(&mut reports, Duration::from_secs(5)).await,
        Some(Work::Stopped(A)),
        "A's controller stops before A leaves the election"
    );
    assert_ne!(
        holder(&leases).await?.as_deref(),
        Some(A),
        "A released the Lease on shutdown"
    );
    // A standby re-reads the Lease when the copy it last read expires, so
    // it takes over within one lease duration of the release.
    let handover = LEASE_DURATION + Duration::from_secs(2);
    assert_eq!(
        next(&mut reports, handover.saturating_sub(stopping.elapsed())).await,
        Some(Work::Started(B)),
        "B should lead within {handover:?} of A's shutdown"
    );
    eprintln!(
        "B led {:?} after A began to shut down (lease duration {LEASE_DURATION:?})",
        stopping.elapsed()
    );
    assert_eq!(holder(&leases).await?.as_deref(), Some(B));

    // B's controller picks the work up.
    patch_spec(&migrations, &app.name, json!({"targetRevision": "latest"})).await?;
    wait_for(
        &migrations,
        &app.name,
        "Ready at the newest version",
        SETTLE_TIMEOUT,
        |o| {
            ready(o)
                && o.status.as_ref().and_then(|s| s.current_revision.clone())
                    == Some(app.latest().to_string())
        },
    )
    .await?;
    let applied = database.applied().await?;
    let by = |identity: &str| format!("schemaop-operator/{identity}");
    for (version, applied_by) in &applied {
        let expected = if *version <= versions[2] {
            by(A)
        } else {
            by(B)
        };
        assert_eq!(applied_by, &expected, "who applied {version}");
    }
    assert_eq!(applied.len(), versions.len());

    b.stop().await?;
    assert_eq!(
        next(&mut reports, Duration::from_secs(5)).await,
        Some(Work::Stopped(B))
    );
    assert_eq!(
        holder(&leases).await?,
        None,
        "B released the Lease on shutdown"
    );
    Ok(())
}
