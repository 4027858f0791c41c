//! Leader election, so that one replica at a time reconciles and runs
//! migrations while the others stand by.
//!
//! The replicas compete for a `coordination.k8s.io/v1` Lease; the holder
//! renews it while it works. [`lead`] is the whole life of one replica:
//!
//! ```text
//!   follow ──(lease acquired)──► lead ──(lost, or renewal failed)──► follow
//!     │                           │
//!     └────────── shutdown ───────┴──► (release the Lease if held) return
//! ```
//!
//! Stepping down cancels the work and waits for it to return before anything
//! else happens, so a replica never reconciles without the lease for longer
//! than its work takes to notice the cancellation.

use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use kube_lease_manager::{LeaseManager, LeaseManagerBuilder, LeaseManagerError, LeaseParams};
use tokio_util::sync::CancellationToken;

use crate::controller::metrics::Metrics;

/// The Lease the replicas compete for, in the operator's namespace.
pub const LEASE_NAME: &str = "schemaop-leader";

/// How long a lease lasts without renewal: the longest a crashed leader
/// leaves the operator without one.
pub const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(15);

/// How long to wait before asking the API server again after an error.
const RETRY_DELAY: Duration = Duration::from_secs(2);

/// How often a follower reads the Lease afresh. The lease manager looks at a
/// Lease held by another replica again only when that replica's lease would
/// expire, so it would not notice a leader that released the Lease on
/// shutdown; a fresh look this often does.
const FOLLOWER_POLL: Duration = Duration::from_secs(2);

/// How long shutdown waits to hand the Lease back; past that the next replica
/// takes over when the lease expires instead.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the Lease is and how this replica holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderSettings {
    pub namespace: String,
    pub lease_name: String,
    /// Unique among the replicas: the pod name (see [`identity`]).
    pub identity: String,
    /// How long the lease is valid after each renewal.
    pub lease_duration: Duration,
    /// How long before expiry the holder renews. It is also the clock skew
    /// between nodes that election tolerates.
    pub renew_grace: Duration,
}

impl LeaderSettings {
    /// Settings for the [`LEASE_NAME`] Lease with a [`DEFAULT_LEASE_DURATION`].
    pub fn new(namespace: impl Into<String>, identity: impl Into<String>) -> LeaderSettings {
        LeaderSettings {
            namespace: namespace.into(),
            lease_name: LEASE_NAME.to_owned(),
            identity: identity.into(),
            lease_duration: DEFAULT_LEASE_DURATION,
            renew_grace: renew_grace(DEFAULT_LEASE_DURATION),
        }
    }

    /// Sets the lease duration, and the renew grace to a third of it.
    pub fn with_lease_duration(self, lease_duration: Duration) -> LeaderSettings {
        LeaderSettings {
            lease_duration,
            renew_grace: renew_grace(lease_duration),
            ..self
        }
    }

    /// The Lease works in whole seconds; the manager needs
    /// `0 < grace < duration` (and would panic otherwise).
    fn lease_params(&self) -> Result<LeaseParams, LeaderError> {
        let duration = self.lease_duration.as_secs();
        let grace = self.renew_grace.as_secs();
        if grace == 0 || grace >= duration {
            return Err(LeaderError::InvalidTimings {
                lease_duration: self.lease_duration,
                renew_grace: self.renew_grace,
            });
        }
        Ok(LeaseParams::new(self.identity.clone(), duration, grace))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error(
        "a lease duration of {lease_duration:?}, renewed {renew_grace:?} before it expires, is not usable: \
         both count in whole seconds, and the renewal must come after the lease starts; \
         use a --lease-duration of 2s or more"
    )]
    InvalidTimings {
        lease_duration: Duration,
        renew_grace: Duration,
    },
    #[error(
        "cannot tell this replica's identity for leader election: POD_NAME and the hostname are both empty; \
         set POD_NAME from the pod's metadata.name with the downward API"
    )]
    NoIdentity,
    #[error(
        "the operator's work stopped while this replica led; the Lease {namespace}/{lease_name} was \
         released so another replica takes over; the log lines above say why it stopped"
    )]
    WorkStopped {
        namespace: String,
        lease_name: String,
    },
}

/// Renew a third of the lease before it expires (5s of 15s): seldom enough to
/// keep API traffic low, early enough that after a failed renewal this
/// replica can still win the lease back before it runs out.
fn renew_grace(lease_duration: Duration) -> Duration {
    (lease_duration / 3).max(Duration::from_secs(1))
}

/// This replica's identity: the pod name from `POD_NAME` (set it with the
/// downward API), else the hostname, which Kubernetes sets to the pod name.
pub fn identity() -> Result<String, LeaderError> {
    choose_identity(std::env::var("POD_NAME").ok(), hostname).ok_or(LeaderError::NoIdentity)
}

fn choose_identity(
    pod_name: Option<String>,
    hostname: impl FnOnce() -> Option<String>,
) -> Option<String> {
    fn non_empty(name: String) -> Option<String> {
        let name = name.trim();
        (!name.is_empty()).then(|| name.to_owned())
    }
    pod_name
        .and_then(non_empty)
        .or_else(|| hostname().and_then(non_empty))
}

fn hostname() -> Option<String> {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|name| !name.trim().is_empty())
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
}

/// Runs `work` whenever this replica holds the Lease, until `shutdown`.
///
/// - While another replica leads, waits.
/// - Once leading, sets the `schemaop_leader` gauge and runs
///   `work(token)`. `work` must return soon after `token` is cancelled.
/// - If the lease is lost, or cannot be renewed (the API server is out of
///   reach, so another replica may soon take it), cancels the token, waits
///   for `work` to return and competes again.
/// - On `shutdown`, cancels the work, waits for it, and releases the Lease so
///   the next replica takes over at once rather than when the lease expires.
///
/// Returns an error if the settings are unusable, or if `work` returns while
/// it was neither cancelled nor stripped of the lease: the caller should exit
/// so the pod restarts, and another replica leads in the meantime.
pub async fn lead<W, F>(
    client: kube::Client,
    settings: LeaderSettings,
    shutdown: CancellationToken,
    metrics: Arc<Metrics>,
    work: W,
) -> Result<(), LeaderError>
where
    W: Fn(CancellationToken) -> F,
    F: Future<Output = ()>,
{
    let params = settings.lease_params()?;
    tracing::info!(
        lease = %settings.lease_name,
        namespace = %settings.namespace,
        identity = %settings.identity,
        "joining leader election"
    );

    loop {
        // A replica stopped in the instant it wins the lease keeps it until it
        // expires; every other shutdown below hands it back.
        let Some(manager) = until(&shutdown, follow(&client, &settings, &params)).await else {
            return Ok(());
        };

        tracing::info!(identity = %settings.identity, "leading: this replica now reconciles");
        match hold(&manager, &shutdown, &metrics, &work).await {
            Term::Shutdown => {
                release(&manager, &settings).await;
                return Ok(());
            }
            Term::WorkStopped => {
                release(&manager, &settings).await;
                return Err(LeaderError::WorkStopped {
                    namespace: settings.namespace,
                    lease_name: settings.lease_name,
                });
            }
            Term::Lost => {
                tracing::warn!("lost the leader lease to another replica; stopped reconciling");
            }
            Term::RenewFailed(error) => {
                tracing::warn!(
                    %error,
                    "cannot renew the leader lease; stopped reconciling until it is certain who leads"
                );
            }
        }
        // Follow again. If this replica still holds the lease (the renewal
        // failure was brief), the next look at the Lease says so at once.
    }
}

/// Waits until this replica holds the lease, and returns the manager that
/// holds it. Each round starts from a fresh manager, which reads the Lease
/// anew, and re-creates it if it was deleted.
async fn follow(
    client: &kube::Client,
    settings: &LeaderSettings,
    params: &LeaseParams,
) -> LeaseManager {
    loop {
        let manager = join(client, settings, params).await;
        match tokio::time::timeout(FOLLOWER_POLL, acquired(&manager)).await {
            Ok(Ok(())) => return manager,
            // Another replica still holds it: look again.
            Err(_still_held) => {}
            Ok(Err(error)) => {
                tracing::warn!(
                    %error,
                    lease = %settings.lease_name,
                    "cannot take part in leader election; retrying in {RETRY_DELAY:?}"
                );
                tokio::time::sleep(RETRY_DELAY).await;
            }
        }
    }
}

/// Joins the election: reads the Lease, creating it if it is missing.
/// Retries until it succeeds, since without the API server there is nothing
/// else to do.
async fn join(
    client: &kube::Client,
    settings: &LeaderSettings,
    params: &LeaseParams,
) -> LeaseManager {
    loop {
        let manager = LeaseManagerBuilder::new(client.clone(), &settings.lease_name)
            .with_namespace(&settings.namespace)
            .with_parameters(params.clone())
            .build()
            .await;
        match manager {
            Ok(manager) => return manager,
            Err(error) => {
                tracing::warn!(
                    %error,
                    "cannot read or create the Lease {}/{}; retrying in {RETRY_DELAY:?}; check that the \
                     operator's service account may get, create and patch leases in that namespace",
                    settings.namespace,
                    settings.lease_name,
                );
                tokio::time::sleep(RETRY_DELAY).await;
            }
        }
    }
}

/// Returns once the manager holds the lease. It takes the lease whenever it
/// is free, or its holder let it expire.
async fn acquired(manager: &LeaseManager) -> Result<(), LeaseManagerError> {
    // `changed` reports changes of our own state; a new manager starts as a
    // follower, so the first `true` is the one we wait for.
    while !manager.changed().await? {}
    Ok(())
}

/// Why a term as leader ended.
enum Term {
    Shutdown,
    WorkStopped,
    Lost,
    RenewFailed(LeaseManagerError),
}

/// Leads until the lease is lost, the work stops or shutdown; then cancels
/// the work and waits for it to return, holding on to the lease meanwhile.
async fn hold<W, F>(
    manager: &LeaseManager,
    shutdown: &CancellationToken,
    metrics: &Metrics,
    work: &W,
) -> Term
where
    W: Fn(CancellationToken) -> F,
    F: Future<Output = ()>,
{
    let token = shutdown.child_token();
    let mut running = pin!(work(token.clone()));
    metrics.set_leader(true);

    let term = loop {
        tokio::select! {
            // Shutdown first: it also cancels the work's token, and the work
            // returning then is not a failure.
            biased;
            () = shutdown.cancelled() => break Term::Shutdown,
            // Polling `changed` is also what renews the lease.
            changed = manager.changed() => match changed {
                // Still ours: keep leading.
                Ok(true) => continue,
                Ok(false) => break Term::Lost,
                Err(error) => break Term::RenewFailed(error),
            },
            () = &mut running => {
                metrics.set_leader(false);
                return Term::WorkStopped;
            }
        }
    };

    token.cancel();
    // Keep the lease renewed while the work winds down (a migration may be
    // finishing its transaction), so no other replica starts meanwhile.
    tokio::select! {
        () = running => {}
        never = keep_renewing(manager) => match never {},
    }
    metrics.set_leader(false);
    term
}

/// Keeps the lease renewed for as long as it is polled. Failures only mean
/// that another replica may take over; the work is already stopping.
async fn keep_renewing(manager: &LeaseManager) -> Infallible {
    loop {
        if let Err(error) = manager.changed().await {
            tracing::debug!(%error, "cannot renew the leader lease while the work stops");
            tokio::time::sleep(RETRY_DELAY).await;
        }
    }
}

/// Hands the Lease back if this replica holds it. Bounded in time: shutdown
/// must not hang on an unreachable API server.
async fn release(manager: &LeaseManager, settings: &LeaderSettings) {
    match tokio::time::timeout(RELEASE_TIMEOUT, manager.release()).await {
        Ok(Ok(())) => tracing::info!(lease = %settings.lease_name, "left leader election"),
        Ok(Err(error)) => tracing::warn!(
            %error,
            "cannot release the Lease {}/{}; another replica takes over when it expires, within {:?}",
            settings.namespace,
            settings.lease_name,
            settings.lease_duration,
        ),
        Err(_) => tracing::warn!(
            "releasing the Lease {}/{} took over {RELEASE_TIMEOUT:?}; another replica takes over when \
             it expires, within {:?}",
            settings.namespace,
            settings.lease_name,
            settings.lease_duration,
        ),
    }
}

/// Runs `future` unless `shutdown` comes first.
async fn until<T>(shutdown: &CancellationToken, future: impl Future<Output = T>) -> Option<T> {
    tokio::select! {
        biased;
        () = shutdown.cancelled() => None,
        value = future => Some(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    use http::{Method, Request, Response, StatusCode};
    use kube::client::Body;
    use serde_json::{Value, json};
    use tokio::sync::mpsc;

    #[test]
    fn identity_is_the_pod_name_then_the_hostname() {
        let host = || Some("host-1\n".to_owned());
        assert_eq!(
            choose_identity(Some("schemaop-7d9f-abcde".into()), host).as_deref(),
            Some("schemaop-7d9f-abcde")
        );
        assert_eq!(choose_identity(None, host).as_deref(), Some("host-1"));
        assert_eq!(
            choose_identity(Some(" ".into()), host).as_deref(),
            Some("host-1")
        );
        assert_eq!(choose_identity(None, || None), None);
        assert_eq!(
            choose_identity(Some(String::new()), || Some(String::new())),
            None
        );
    }

    #[test]
    fn defaults_renew_five_seconds_before_a_fifteen_second_lease_expires() {
        let settings = LeaderSettings::new("schemaop-system", "pod-a");
        assert_eq!(settings.lease_name, "schemaop-leader");
        assert_eq!(settings.lease_duration, Duration::from_secs(15));
        assert_eq!(settings.renew_grace, Duration::from_secs(5));
        assert!(settings.lease_params().is_ok());
    }

    #[test]
    fn leases_too_short_to_renew_are_refused_instead_of_panicking() {
        for seconds in [0, 1] {
            let settings = LeaderSettings::new("ns", "pod-a")
                .with_lease_duration(Duration::from_secs(seconds));
            assert!(
                matches!(
                    settings.lease_params(),
                    Err(LeaderError::InvalidTimings { .. })
                ),
                "{seconds}s"
            );
        }
        let shortest =
            LeaderSettings::new("ns", "pod-a").with_lease_duration(Duration::from_secs(2));
        assert!(shortest.lease_params().is_ok());
    }

    /// A stand-in for the API server that knows one Lease, kept in memory.
    /// Patches merge into its spec, `null` deleting a field, which is what
    /// both apply and strategic merge do for the flat fields the manager sets.
    fn fake_api_server() -> (kube::Client, Arc<Mutex<Option<Value>>>) {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let lease = Arc::new(Mutex::new(None::<Value>));
        let stored = lease.clone();
        tokio::spawn(async move {
            while let Some((request, respond)) = handle.next_request().await {
                assert!(
                    request.uri().path().contains("/leases"),
                    "{}",
                    request.uri()
                );
                let method = request.method().clone();
                let body = request
                    .into_body()
                    .collect_bytes()
                    .await
                    .expect("a request body");
                let mut lease = stored.lock().expect("the lease lock");
                let answer = match method {
                    Method::GET => lease.clone(),
                    Method::POST => {
                        *lease = Some(serde_json::from_slice(&body).expect("a JSON Lease"));
                        lease.clone()
                    }
                    Method::PATCH => {
                        let patch: Value = serde_json::from_slice(&body).expect("a JSON patch");
                        if let Some(lease) = lease.as_mut() {
                            merge_spec(lease, &patch);
                        }
                        lease.clone()
                    }
                    other => panic!("unexpected {other} {}", body.len()),
                };
                respond.send_response(match answer {
                    Some(lease) => json_response(StatusCode::OK, &lease),
                    None => json_response(
                        StatusCode::NOT_FOUND,
                        &json!({
                            "kind": "Status", "apiVersion": "v1", "metadata": {},
                            "status": "Failure", "reason": "NotFound", "code": 404,
                            "message": "leases.coordination.k8s.io \"schemaop-leader\" not found",
                        }),
                    ),
                });
            }
        });
        (kube::Client::new(service, "default"), lease)
    }

    fn merge_spec(lease: &mut Value, patch: &Value) {
        let Some(fields) = patch["spec"].as_object() else {
            return;
        };
        if !lease["spec"].is_object() {
            lease["spec"] = json!({});
        }
        let spec = lease["spec"].as_object_mut().expect("spec is an object");
        for (field, value) in fields {
            if value.is_null() {
                spec.remove(field);
            } else {
                spec.insert(field.clone(), value.clone());
            }
        }
    }

    fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(value).expect("JSON")))
            .expect("a valid response")
    }

    fn holder(lease: &Mutex<Option<Value>>) -> Option<String> {
        let lease = lease.lock().expect("the lease lock");
        lease.as_ref()?["spec"]["holderIdentity"]
            .as_str()
            .map(str::to_owned)
    }

    /// Sets fields of the stored Lease's spec, as another replica would.
    fn edit_lease(lease: &Mutex<Option<Value>>, patch: Value) {
        let mut lease = lease.lock().expect("the lease lock");
        merge_spec(lease.as_mut().expect("a Lease"), &json!({ "spec": patch }));
    }

    /// A Lease that `holder` renewed just now, for `seconds`.
    fn lease_held_by(holder: &str, seconds: u64) -> Value {
        json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": LEASE_NAME, "namespace": "schemaop-system"},
            "spec": {
                "holderIdentity": holder,
                "leaseDurationSeconds": seconds,
                "renewTime": k8s_openapi::jiff::Timestamp::now().to_string(),
            },
        })
    }

    /// One replica running [`lead`] with work that reports when it starts
    /// and stops, and runs until cancelled. The lease lasts 2s, renewed 1s
    /// before it expires, to keep the tests short.
    struct Replica {
        election: tokio::task::JoinHandle<Result<(), LeaderError>>,
        events: mpsc::UnboundedReceiver<&'static str>,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    }

    impl Replica {
        fn start(client: kube::Client, identity: &str) -> Replica {
            let settings = LeaderSettings::new("schemaop-system", identity)
                .with_lease_duration(Duration::from_secs(2));
            let metrics = Arc::new(Metrics::new());
            let shutdown = CancellationToken::new();
            let (sender, events) = mpsc::unbounded_channel();
            let work = move |token: CancellationToken| {
                let sender = sender.clone();
                async move {
                    let _ = sender.send("started");
                    token.cancelled().await;
                    let _ = sender.send("stopped");
                }
            };
            let election = tokio::spawn(lead(
                client,
                settings,
                shutdown.clone(),
                metrics.clone(),
                work,
            ));
            Replica {
                election,
                events,
                metrics,
                shutdown,
            }
        }

        async fn next_event(&mut self) -> &'static str {
            tokio::time::timeout(Duration::from_secs(10), self.events.recv())
                .await
                .expect("an event within 10s")
                .expect("the work's channel is open")
        }

        fn leader_gauge(&self) -> String {
            self.metrics
                .render()
                .lines()
                .find(|line| line.starts_with("schemaop_leader "))
                .unwrap_or_default()
                .to_owned()
        }

        /// The gauge is set once the work has returned, a moment after its
        /// last event.
        async fn wait_for_gauge(&self, expected: &str) {
            for _ in 0..100 {
                if self.leader_gauge() == expected {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert_eq!(self.leader_gauge(), expected);
        }

        async fn stop(self) {
            self.shutdown.cancel();
            let result = tokio::time::timeout(Duration::from_secs(10), self.election)
                .await
                .expect("lead returns within 10s of shutdown")
                .expect("lead does not panic");
            assert!(result.is_ok(), "{result:?}");
        }
    }

    #[tokio::test]
    async fn creates_the_lease_leads_and_releases_it_on_shutdown() {
        let (client, lease) = fake_api_server();
        let mut replica = Replica::start(client, "pod-a");

        assert_eq!(replica.next_event().await, "started");
        assert_eq!(holder(&lease).as_deref(), Some("pod-a"));
        assert_eq!(replica.leader_gauge(), "schemaop_leader 1");

        replica.shutdown.cancel();
        assert_eq!(replica.next_event().await, "stopped");
        let metrics = replica.metrics.clone();
        replica.stop().await;
        assert_eq!(holder(&lease), None, "the lease is released");
        assert!(metrics.render().contains("\nschemaop_leader 0\n"));
    }

    #[tokio::test]
    async fn a_lost_lease_stops_the_work_until_the_lease_is_won_back() {
        let (client, lease) = fake_api_server();
        let mut replica = Replica::start(client, "pod-a");
        assert_eq!(replica.next_event().await, "started");

        // Another replica takes the lease over; pod-a finds out when it next
        // renews, a second later, and must stop working.
        let now = k8s_openapi::jiff::Timestamp::now().to_string();
        edit_lease(&lease, json!({"holderIdentity": "pod-b", "renewTime": now}));
        assert_eq!(replica.next_event().await, "stopped");
        replica.wait_for_gauge("schemaop_leader 0").await;
        assert!(!replica.election.is_finished());

        // pod-b never renews; once its lease expires pod-a leads again.
        assert_eq!(replica.next_event().await, "started");
        assert_eq!(holder(&lease).as_deref(), Some("pod-a"));

        replica.stop().await;
    }

    #[tokio::test]
    async fn a_released_lease_is_taken_over_within_seconds() {
        let (client, lease) = fake_api_server();
        *lease.lock().expect("the lease lock") = Some(lease_held_by("pod-b", 60));
        let mut replica = Replica::start(client, "pod-a");
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(replica.events.try_recv().is_err(), "pod-b leads");

        // pod-b shuts down and hands the Lease back, 59s before it expires.
        edit_lease(
            &lease,
            json!({"holderIdentity": null, "renewTime": null, "leaseDurationSeconds": null}),
        );
        let released = std::time::Instant::now();
        assert_eq!(replica.next_event().await, "started");
        assert!(
            released.elapsed() < FOLLOWER_POLL + Duration::from_secs(2),
            "took {:?}",
            released.elapsed()
        );
        replica.stop().await;
    }

    #[tokio::test]
    async fn a_follower_shuts_down_without_working_or_touching_the_lease() {
        let (client, lease) = fake_api_server();
        *lease.lock().expect("the lease lock") = Some(lease_held_by("pod-b", 60));
        let mut replica = Replica::start(client, "pod-a");

        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(replica.leader_gauge(), "schemaop_leader 0");
        assert!(replica.events.try_recv().is_err(), "the work never ran");
        replica.stop().await;
        assert_eq!(holder(&lease).as_deref(), Some("pod-b"));
    }

    #[tokio::test]
    async fn work_that_stops_by_itself_hands_the_lease_over_and_fails() {
        let (client, lease) = fake_api_server();
        let result = tokio::time::timeout(
            Duration::from_secs(10),
            lead(
                client,
                LeaderSettings::new("schemaop-system", "pod-a"),
                CancellationToken::new(),
                Arc::new(Metrics::new()),
                |_token| async {},
            ),
        )
        .await
        .expect("lead returns within 10s");
        assert!(
            matches!(result, Err(LeaderError::WorkStopped { .. })),
            "{result:?}"
        );
        assert_eq!(holder(&lease), None, "the lease is released");
    }

    #[tokio::test]
    async fn unusable_timings_fail_before_any_request() {
        let (client, lease) = fake_api_server();
        let settings = LeaderSettings::new("schemaop-system", "pod-a")
            .with_lease_duration(Duration::from_secs(1));
        let result = lead(
            client,
            settings,
            CancellationToken::new(),
            Arc::new(Metrics::new()),
            |_token| async {},
        )
        .await;
        assert!(
            matches!(result, Err(LeaderError::InvalidTimings { .. })),
            "{result:?}"
        );
        assert!(lease.lock().expect("the lease lock").is_none());
    }
}
