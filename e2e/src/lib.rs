//! The harness for schemaop's end-to-end tests, which run the operator's
//! controller in this process against a real Kubernetes API server and a real
//! PostgreSQL server. See `e2e/README.md` for how to run them.
//!
//! - [`cluster`] finds the cluster, or tells why the tests skip.
//! - [`TestNamespace`] and [`TestDatabase`] are a namespace and a database
//!   for one test, removed when the test ends, passed or failed.
//! - [`Operator`] is the controller, running in-process on one namespace.
//! - [`Setup`] and [`App`] put those together with the sample app's
//!   migrations from the repository's `migrations/` folder.
//! - [`deployed`] finds the operator as `e2e/run.sh` deploys it (image, Helm
//!   chart, in-cluster PostgreSQL) for `tests/ship.rs`, or tells why those
//!   tests skip; [`ClusterDatabase`] is a database for one of them there.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use k8s_openapi::api::core::v1::{Pod, PodCondition};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, Client, Config, ResourceExt};
use schemaop::controller::metrics::Metrics;
use schemaop::controller::{self, Context, ControllerConfig};
use schemaop::crd::conditions::{READY, RECONCILING, STALLED};
use schemaop::crd::{Condition, SchemaMigration};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// `SCHEMAOP_E2E`: unset (or `auto`) runs the tests when a cluster is
/// reachable and skips them otherwise; `require` fails them instead of
/// skipping; `skip` always skips.
pub const MODE_VAR: &str = "SCHEMAOP_E2E";

/// An admin URL of a PostgreSQL server reachable from where the tests run;
/// each test creates and drops a database of its own there.
pub const DATABASE_URL_VAR: &str = "SCHEMAOP_E2E_DATABASE_URL";

/// What `scripts/test` exports for the operator's own tests; used when
/// [`DATABASE_URL_VAR`] is not set.
pub const TEST_ADMIN_URL_VAR: &str = "SCHEMAOP_TEST_ADMIN_URL";

/// The server and role that `scripts/postgres.sh` sets up.
pub const DEFAULT_DATABASE_URL: &str =
    "postgres://schemaop_test:schemaop_test@127.0.0.1:5432/postgres";

/// The field manager for everything the tests write.
pub const FIELD_MANAGER: &str = "schemaop-e2e";

/// Labels every namespace the tests create, so leftovers are easy to find:
/// `kubectl get ns -l app.kubernetes.io/managed-by=schemaop-e2e`.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "schemaop-e2e");

/// How long the cluster has to answer before the tests skip.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a status change may take to show.
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(90);

// ---------------------------------------------------------------------------
// Errors

/// A test failure: what was being done and why it failed, printed as is.
pub struct Failure(String);

impl Failure {
    pub fn new(message: impl Into<String>) -> Failure {
        Failure(message.into())
    }
}

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<E: std::error::Error> From<E> for Failure {
    fn from(error: E) -> Failure {
        Failure(chain(&error))
    }
}

/// The error and its sources, on one line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    text
}

pub type Result<T = (), E = Failure> = std::result::Result<T, E>;

/// Says what was being done when an error happened.
pub trait ErrorContext<T> {
    fn context(self, doing: impl fmt::Display) -> Result<T>;
}

impl<T, E: std::error::Error> ErrorContext<T> for std::result::Result<T, E> {
    fn context(self, doing: impl fmt::Display) -> Result<T> {
        self.map_err(|error| Failure(format!("{doing}: {}", chain(&error))))
    }
}

/// Prints to the terminal even while the test harness captures output, so a
/// skip is seen without `--nocapture`.
fn say(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

// ---------------------------------------------------------------------------
// The cluster

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Auto,
    Require,
    Skip,
}

fn mode() -> Mode {
    match std::env::var(MODE_VAR).unwrap_or_default().trim() {
        "" | "auto" => Mode::Auto,
        "require" => Mode::Require,
        "skip" => Mode::Skip,
        other => panic!(
            "{MODE_VAR}={other:?} is not understood: use `require` (fail without a cluster), \
             `skip` (never run), or leave it unset (run when a cluster is reachable)"
        ),
    }
}

/// A client for the cluster of the current kubeconfig context, or `None`
/// after printing why the test skips. With `SCHEMAOP_E2E=require` a missing
/// cluster fails the test instead.
///
/// The tests install the SchemaMigration CRD and create namespaces there:
/// point KUBECONFIG at a throwaway cluster such as kind.
pub async fn cluster() -> Option<Client> {
    if mode() == Mode::Skip {
        static SAID: OnceLock<()> = OnceLock::new();
        SAID.get_or_init(|| say(&format!("skipping e2e: {MODE_VAR}=skip")));
        return None;
    }
    // One failed probe is enough for the whole test binary: the tests of a
    // binary would otherwise each wait for the same timeout.
    static UNREACHABLE: OnceLock<String> = OnceLock::new();
    let error = match UNREACHABLE.get() {
        Some(error) => error.clone(),
        None => match probe().await {
            Ok(client) => return Some(client),
            Err(error) => UNREACHABLE.get_or_init(|| error).clone(),
        },
    };
    let kubeconfig = match std::env::var("KUBECONFIG") {
        Ok(path) => format!("KUBECONFIG={path}"),
        Err(_) => "KUBECONFIG unset, so ~/.kube/config".to_owned(),
    };
    if mode() == Mode::Require {
        panic!(
            "{MODE_VAR}=require, but no Kubernetes cluster is reachable ({kubeconfig}, error: {error}); \
             see e2e/README.md"
        );
    }
    // Once per test binary: every test of it skips for the same reason.
    static SAID: OnceLock<()> = OnceLock::new();
    SAID.get_or_init(|| {
        say(&format!(
            "skipping e2e: no Kubernetes cluster reachable ({kubeconfig}, error: {error}); \
             see e2e/README.md"
        ));
    });
    None
}

/// What `Client::try_default()` does, then one cheap request, each within
/// [`PROBE_TIMEOUT`].
async fn probe() -> std::result::Result<Client, String> {
    let one_line = |text: String| text.split_whitespace().collect::<Vec<_>>().join(" ");
    let config = match tokio::time::timeout(PROBE_TIMEOUT, Config::infer()).await {
        Ok(Ok(config)) => config,
        Ok(Err(error)) => return Err(one_line(chain(&error))),
        Err(_) => return Err(format!("no kubeconfig loaded within {PROBE_TIMEOUT:?}")),
    };
    let server = config.cluster_url.to_string();
    let client = Client::try_from(config).map_err(|error| one_line(chain(&error)))?;
    match tokio::time::timeout(PROBE_TIMEOUT, client.apiserver_version()).await {
        Ok(Ok(version)) => {
            log_to_test_output();
            static ANNOUNCED: OnceLock<()> = OnceLock::new();
            ANNOUNCED.get_or_init(|| {
                say(&format!(
                    "e2e: running against {server} (Kubernetes {}), the current kubeconfig context",
                    version.git_version
                ));
            });
            Ok(client)
        }
        Ok(Err(error)) => Err(one_line(format!("{server}: {}", chain(&error)))),
        Err(_) => Err(format!("{server} did not answer within {PROBE_TIMEOUT:?}")),
    }
}

/// Sends the controller's logs to the test's output, which the test harness
/// shows when a test fails (or always, with `--nocapture`). `RUST_LOG`
/// overrides the default filter.
fn log_to_test_output() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,schemaop=info"));
    // Fails only when a subscriber is already set, by an earlier test.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// A short random suffix for names, in lower-case hex.
pub fn random_suffix() -> String {
    // RandomState is seeded randomly per process and differs per instance.
    let mut hasher = std::hash::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.write_u32(std::process::id());
    format!("{:08x}", hasher.finish() as u32)
}

/// Runs `cleanup` to completion on a runtime of its own, on another thread:
/// it works from `Drop`, also while the test's runtime unwinds a panic.
fn run_detached<F, Fut>(cleanup: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let _ = std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        runtime.block_on(async move {
            let _ = tokio::time::timeout(Duration::from_secs(30), cleanup()).await;
        });
    })
    .join();
}

/// A namespace for one test, deleted when dropped, also when the test panics.
pub struct TestNamespace {
    pub name: String,
}

impl TestNamespace {
    /// Creates `schemaop-e2e-<random>`.
    pub async fn create(client: &Client) -> Result<TestNamespace> {
        let name = format!("schemaop-e2e-{}", random_suffix());
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some([(MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned())].into()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .context(format!("creating the namespace {name}"))?;
        Ok(TestNamespace { name })
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let name = self.name.clone();
        // A client of its own: the test's client lives on the test's runtime,
        // which cannot make progress while this blocks it.
        run_detached(move || async move {
            let result = match Client::try_default().await {
                Ok(client) => Api::<Namespace>::all(client)
                    .delete(&name, &DeleteParams::background())
                    .await
                    .map(|_| ())
                    .map_err(|e| chain(&e)),
                Err(error) => Err(chain(&error)),
            };
            if let Err(error) = result {
                say(&format!(
                    "e2e: could not delete the namespace {name} ({error}); delete it with \
                     `kubectl delete namespace {name}`"
                ));
            }
        });
    }
}

// ---------------------------------------------------------------------------
// The CustomResourceDefinition

/// The repository's root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e/ sits in the repository")
        .to_path_buf()
}

/// `crds/schemamigration.yaml`, as checked in.
pub fn crd_manifest() -> Result<CustomResourceDefinition> {
    let path = repo_root().join("crds/schemamigration.yaml");
    let yaml = std::fs::read_to_string(&path).context(format!("reading {}", path.display()))?;
    serde_saphyr::from_str(&yaml).context(format!("parsing {}", path.display()))
}

/// Server-side applies the checked-in CRD and waits until it is Established.
/// Every test calls it; applying the same manifest again changes nothing.
pub async fn install_crd(client: &Client) -> Result<CustomResourceDefinition> {
    let crd = crd_manifest()?;
    let name = crd.name_any();
    let api = Api::<CustomResourceDefinition>::all(client.clone());
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&crd),
    )
    .await
    .context(format!("applying the CustomResourceDefinition {name}"))?;
    let established = await_condition(api, &name, conditions::is_crd_established());
    match tokio::time::timeout(Duration::from_secs(30), established).await {
        Ok(Ok(Some(crd))) => Ok(crd),
        Ok(Ok(None)) => Err(Failure::new(format!(
            "{name} disappeared while waiting for it"
        ))),
        Ok(Err(error)) => Err(error).context(format!("waiting for {name} to be Established")),
        Err(_) => Err(Failure::new(format!(
            "{name} was not Established within 30s; see `kubectl describe crd {name}`"
        ))),
    }
}

// ---------------------------------------------------------------------------
// The database

/// The admin URL: [`DATABASE_URL_VAR`], else [`TEST_ADMIN_URL_VAR`], else
/// [`DEFAULT_DATABASE_URL`].
pub fn admin_url() -> String {
    [DATABASE_URL_VAR, TEST_ADMIN_URL_VAR]
        .iter()
        .find_map(|var| std::env::var(var).ok().filter(|url| !url.trim().is_empty()))
        .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned())
}

/// `url` with another database name.
pub fn url_for(url: &str, database: &str) -> Result<String> {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let Some((scheme, rest)) = base.split_once("://") else {
        return Err(Failure::new(format!(
            "{DATABASE_URL_VAR} is not a URL: {}",
            redact(url)
        )));
    };
    let server = rest.split_once('/').map_or(rest, |(server, _)| server);
    Ok(match query {
        Some(query) => format!("{scheme}://{server}/{database}?{query}"),
        None => format!("{scheme}://{server}/{database}"),
    })
}

/// `url` without its password, for messages.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<not a URL>".to_owned();
    };
    match rest.split_once('@') {
        Some((user_info, server)) => {
            let user = user_info
                .split_once(':')
                .map_or(user_info, |(user, _)| user);
            format!("{scheme}://{user}:***@{server}")
        }
        None => url.to_owned(),
    }
}

/// Connects without TLS, as to the local server of `scripts/postgres.sh`.
pub async fn connect(url: &str) -> Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(|error| {
            Failure::new(format!(
                "cannot connect to PostgreSQL at {} ({}); start the local server with \
                 `scripts/postgres.sh`, or set {DATABASE_URL_VAR} to an admin URL of a server \
                 reachable from here (see e2e/README.md)",
                redact(url),
                chain(&error)
            ))
        })?;
    tokio::spawn(connection);
    Ok(client)
}

/// A database for one test, dropped when this is dropped.
pub struct TestDatabase {
    pub name: String,
    /// Its URL, as the operator gets it from the Secret.
    pub url: String,
    admin_url: String,
}

impl TestDatabase {
    pub async fn create() -> Result<TestDatabase> {
        let admin_url = admin_url();
        let name = format!("schemaop_e2e_{}", random_suffix());
        let url = url_for(&admin_url, &name)?;
        connect(&admin_url)
            .await?
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .context(format!(
                "creating the database {name} on {}",
                redact(&admin_url)
            ))?;
        Ok(TestDatabase {
            name,
            url,
            admin_url,
        })
    }

    pub async fn client(&self) -> Result<tokio_postgres::Client> {
        connect(&self.url).await
    }

    /// The tables of `schema`, sorted.
    pub async fn tables(&self, schema: &str) -> Result<Vec<String>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT table_name::text FROM information_schema.tables \
                 WHERE table_schema = $1 AND table_type = 'BASE TABLE' ORDER BY 1",
                &[&schema],
            )
            .await
            .context(format!("listing the tables of {}", self.name))?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    /// The history rows in state `applied` as (version, applied_by), oldest
    /// version first.
    pub async fn applied(&self) -> Result<Vec<(i64, String)>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT version, applied_by FROM public.schemaop_migrations \
                 WHERE state = 'applied' ORDER BY version",
                &[],
            )
            .await
            .context(format!("reading the history of {}", self.name))?;
        Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (name, admin_url) = (self.name.clone(), self.admin_url.clone());
        run_detached(move || async move {
            if let Ok(client) = connect(&admin_url).await {
                let _ = client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await;
            }
        });
    }
}

// ---------------------------------------------------------------------------
// The operator

/// The controller, running in this process and watching one namespace, as
/// `schemaop run --watch-namespace` does once it leads.
pub struct Operator {
    shutdown: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Operator {
    pub fn start(client: &Client, namespace: &str, identity: &str) -> Operator {
        let shutdown = CancellationToken::new();
        let ctx = controller_context(client, namespace, identity);
        let task = tokio::spawn(controller::run(ctx, shutdown.clone()));
        Operator {
            shutdown,
            task: Some(task),
        }
    }

    /// Stops the controller and waits for it to return.
    pub async fn stop(mut self) -> Result {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .map_err(|_| Failure::new("the controller did not stop within 30s of shutdown"))?
                .context("the controller task")?;
        }
        Ok(())
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The operator's image in the cluster, for the Jobs of `spec.job`;
/// `e2e/run.sh` sets it to the image it built and loaded.
pub const WRAPPER_IMAGE_ENV: &str = "SCHEMAOP_E2E_IMAGE";

/// The controller's context for `namespace`, as `schemaop run` builds it.
pub fn controller_context(client: &Client, namespace: &str, identity: &str) -> Arc<Context> {
    let config = ControllerConfig {
        watch_namespace: Some(namespace.to_owned()),
        max_concurrent_runs: 2,
        identity: identity.to_owned(),
        job: schemaop::controller::job::JobSettings {
            wrapper_image: std::env::var(WRAPPER_IMAGE_ENV).ok(),
        },
    };
    Context::new(client.clone(), config, Arc::new(Metrics::new()))
}

// ---------------------------------------------------------------------------
// A test's world

/// What a controller test needs: the CRD, a namespace, a database and the
/// controller. Fields drop in order: the controller stops first.
pub struct Setup {
    pub operator: Operator,
    pub database: TestDatabase,
    pub namespace: TestNamespace,
    pub client: Client,
}

impl Setup {
    pub async fn new(client: Client) -> Result<Setup> {
        install_crd(&client).await?;
        let namespace = TestNamespace::create(&client).await?;
        let database = TestDatabase::create().await?;
        let operator = Operator::start(&client, &namespace.name, "schemaop-e2e");
        Ok(Setup {
            operator,
            database,
            namespace,
            client,
        })
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.namespace.name)
    }
}

/// The sample app's migration files, from the repository's `migrations/`.
pub fn sample_migrations() -> Result<BTreeMap<String, String>> {
    let dir = repo_root().join("migrations");
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).context(format!("reading {}", dir.display()))? {
        let path = entry.context(format!("reading {}", dir.display()))?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if name.ends_with(".sql") {
            let sql =
                std::fs::read_to_string(&path).context(format!("reading {}", path.display()))?;
            files.insert(name.to_owned(), sql);
        }
    }
    Ok(files)
}

/// The versions of `files`, each once, oldest first.
pub fn versions(files: &BTreeMap<String, String>) -> Vec<i64> {
    let mut versions: Vec<i64> = files
        .keys()
        .filter_map(|name| {
            let digits: String = name.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect();
    versions.sort_unstable();
    versions.dedup();
    versions
}

/// The sample app in a test namespace: a Secret with the database's URL, a
/// ConfigMap with the migrations, and a SchemaMigration using both.
pub struct App {
    pub name: String,
    pub secret: String,
    pub config_map: String,
    pub files: BTreeMap<String, String>,
}

impl App {
    /// Creates the Secret, the ConfigMap and the SchemaMigration `app` in
    /// the setup's namespace, with `spec` merged over the references to the
    /// other two.
    pub async fn deploy(setup: &Setup, spec: Value) -> Result<App> {
        App::deploy_in(&setup.client, &setup.namespace.name, &setup.database, spec).await
    }

    /// [`App::deploy`] in any namespace.
    pub async fn deploy_in(
        client: &Client,
        namespace: &str,
        database: &TestDatabase,
        spec: Value,
    ) -> Result<App> {
        let app = App {
            name: "app".to_owned(),
            secret: "app-db".to_owned(),
            config_map: "app-migrations".to_owned(),
            files: sample_migrations()?,
        };
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(app.secret.clone()),
                ..ObjectMeta::default()
            },
            string_data: Some([("url".to_owned(), database.url.clone())].into()),
            ..Secret::default()
        };
        Api::<Secret>::namespaced(client.clone(), namespace)
            .create(&PostParams::default(), &secret)
            .await
            .context("creating the database Secret")?;
        let config_map = ConfigMap {
            metadata: ObjectMeta {
                name: Some(app.config_map.clone()),
                ..ObjectMeta::default()
            },
            data: Some(app.files.clone()),
            ..ConfigMap::default()
        };
        Api::<ConfigMap>::namespaced(client.clone(), namespace)
            .create(&PostParams::default(), &config_map)
            .await
            .context("creating the migrations ConfigMap")?;

        let mut full_spec = json!({
            "database": {"urlSecretRef": {"name": app.secret, "key": "url"}},
            "source": {"configMapRefs": [{"name": app.config_map}]},
        });
        merge(&mut full_spec, spec);
        let object = schema_migration(&app.name, full_spec)?;
        Api::<SchemaMigration>::namespaced(client.clone(), namespace)
            .create(&PostParams::default(), &object)
            .await
            .context(format!("creating the SchemaMigration {}", app.name))?;
        Ok(app)
    }

    /// The versions of the sample files, oldest first.
    pub fn versions(&self) -> Vec<i64> {
        versions(&self.files)
    }

    /// The newest version among the sample files.
    pub fn latest(&self) -> i64 {
        versions(&self.files).last().copied().unwrap_or_default()
    }
}

/// A SchemaMigration from its spec as JSON.
pub fn schema_migration(name: &str, spec: Value) -> Result<SchemaMigration> {
    serde_json::from_value(json!({
        "apiVersion": "schemaop.dev/v1alpha1",
        "kind": "SchemaMigration",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .context("building a SchemaMigration")
}

/// Merges `patch` into `target` as a JSON merge patch does.
pub fn merge(target: &mut Value, patch: Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    target.remove(&key);
                } else {
                    merge(target.entry(key).or_insert(Value::Null), value);
                }
            }
        }
        (target, patch) => *target = patch,
    }
}

/// Merge-patches the spec of a SchemaMigration.
pub async fn patch_spec(
    api: &Api<SchemaMigration>,
    name: &str,
    spec: Value,
) -> Result<SchemaMigration> {
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "spec": spec })),
    )
    .await
    .context(format!("patching the spec of {name}"))
}

// ---------------------------------------------------------------------------
// Reading the status

/// The condition of `type_`, if the status has it.
pub fn condition<'a>(object: &'a SchemaMigration, type_: &str) -> Option<&'a Condition> {
    object.status.as_ref()?.condition(type_)
}

/// `(status, reason)` of a condition, as `kubectl get` shows them.
pub fn state(object: &SchemaMigration, type_: &str) -> Option<(String, String)> {
    condition(object, type_).map(|c| (c.status.to_string(), c.reason.clone()))
}

/// True when the status describes the current spec.
pub fn observed(object: &SchemaMigration) -> bool {
    object.status.as_ref().and_then(|s| s.observed_generation) == object.metadata.generation
        && object.metadata.generation.is_some()
}

/// Done with the current spec, and Ready.
pub fn ready(object: &SchemaMigration) -> bool {
    observed(object) && condition(object, READY).is_some_and(Condition::is_true)
}

/// Done with the current spec, and Stalled with `reason`.
pub fn stalled_with(reason: &str) -> impl Fn(&SchemaMigration) -> bool + '_ {
    move |object| {
        observed(object)
            && condition(object, STALLED).is_some_and(|c| c.is_true() && c.reason == reason)
    }
}

/// The three kstatus conditions as `Type=Status/Reason`, for messages.
pub fn summary(object: &SchemaMigration) -> String {
    let conditions = [READY, RECONCILING, STALLED]
        .iter()
        .map(|type_| match condition(object, type_) {
            Some(c) => format!("{type_}={}/{} ({:?})", c.status, c.reason, c.message),
            None => format!("{type_}=absent"),
        })
        .collect::<Vec<_>>()
        .join(", ");
    let status = object.status.as_ref();
    format!(
        "generation {:?}, observedGeneration {:?}, currentRevision {:?}, {conditions}",
        object.metadata.generation,
        status.and_then(|s| s.observed_generation),
        status.and_then(|s| s.current_revision.as_deref()),
    )
}

/// Polls `name` until `done` holds, for at most `timeout`; the error shows
/// the last status seen.
pub async fn wait_for(
    api: &Api<SchemaMigration>,
    name: &str,
    what: &str,
    timeout: Duration,
    done: impl Fn(&SchemaMigration) -> bool,
) -> Result<SchemaMigration> {
    let started = Instant::now();
    loop {
        let last = match api.get_opt(name).await {
            Ok(Some(object)) if done(&object) => return Ok(object),
            Ok(Some(object)) => summary(&object),
            Ok(None) => "the object does not exist".to_owned(),
            Err(error) => format!("cannot read it: {}", chain(&error)),
        };
        if started.elapsed() > timeout {
            return Err(Failure::new(format!(
                "SchemaMigration {name} was not {what} within {timeout:?}; last seen: {last}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The Events about the object with `uid`, as the operator's recorder wrote
/// them.
pub async fn events_about(client: &Client, namespace: &str, uid: &str) -> Result<Vec<Event>> {
    let events = Api::<Event>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .context(format!("listing the Events in {namespace}"))?;
    Ok(events
        .items
        .into_iter()
        .filter(|event| event.regarding.as_ref().and_then(|r| r.uid.as_deref()) == Some(uid))
        .collect())
}

/// How many times an Event with `reason` was recorded: a repeated Event is
/// one object whose series counts the repetitions.
pub fn occurrences(events: &[Event], reason: &str) -> i32 {
    events
        .iter()
        .filter(|event| event.reason.as_deref() == Some(reason))
        .map(|event| event.series.as_ref().map_or(1, |s| s.count))
        .sum()
}

// ---------------------------------------------------------------------------
// The deployed operator
//
// `tests/ship.rs` tests the operator as `e2e/run.sh` ships it: the image,
// installed with the Helm chart in `schemaop-system`, next to PostgreSQL from
// `e2e/manifests/postgres.yaml` in `schemaop-e2e-app`. Nothing runs in this
// process but the tests; they talk to the operator through the API server and
// to the database through `kubectl exec`.

/// `SCHEMAOP_E2E_OPERATOR`: unset (or `auto`) skips the ship tests when the
/// operator or its PostgreSQL is not deployed in the cluster; `require`
/// fails them instead, as `e2e/run.sh` sets it.
pub const OPERATOR_VAR: &str = "SCHEMAOP_E2E_OPERATOR";

/// Where `e2e/run.sh` installs the chart, and the Deployment it creates.
pub const OPERATOR_NAMESPACE: &str = "schemaop-system";
pub const OPERATOR_DEPLOYMENT: &str = "schemaop";

/// The PostgreSQL of `e2e/manifests/postgres.yaml`: its namespace, and the
/// name of its Deployment, Service and Secret.
pub const POSTGRES_NAMESPACE: &str = "schemaop-e2e-app";
pub const POSTGRES_NAME: &str = "postgres";

/// How long a Deployment may take to roll out, image pulls included.
pub const ROLLOUT_TIMEOUT: Duration = Duration::from_secs(300);

/// How long one `kubectl exec ... psql` may take.
const PSQL_TIMEOUT: Duration = Duration::from_secs(60);

/// The operator and the PostgreSQL server deployed in the cluster.
pub struct Deployed {
    /// The operator's Deployment, rolled out.
    pub operator: Deployment,
    pub postgres: ClusterPostgres,
}

impl Deployed {
    /// The label selector of the operator's pods, as `kubectl -l` takes it.
    pub fn operator_selector(&self) -> String {
        let labels = self
            .operator
            .spec
            .as_ref()
            .and_then(|spec| spec.selector.match_labels.clone())
            .unwrap_or_default();
        labels
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// How many replicas the chart runs.
    pub fn operator_replicas(&self) -> i32 {
        self.operator
            .spec
            .as_ref()
            .and_then(|spec| spec.replicas)
            .unwrap_or(1)
    }

    /// The container port of `/metrics`, named `metrics` by the chart.
    pub fn metrics_port(&self) -> Option<i32> {
        self.operator
            .spec
            .as_ref()?
            .template
            .spec
            .as_ref()?
            .containers
            .iter()
            .flat_map(|c| c.ports.iter().flatten())
            .find(|port| port.name.as_deref() == Some("metrics"))
            .map(|port| port.container_port)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OperatorMode {
    Auto,
    Require,
}

fn operator_mode() -> OperatorMode {
    match std::env::var(OPERATOR_VAR).unwrap_or_default().trim() {
        "" | "auto" => OperatorMode::Auto,
        "require" => OperatorMode::Require,
        other => panic!(
            "{OPERATOR_VAR}={other:?} is not understood: use `require` (fail when the operator \
             is not deployed), or leave it unset (skip then)"
        ),
    }
}

/// The operator and PostgreSQL as `e2e/run.sh` deploys them, once both are
/// rolled out; or `None`, after printing why the test skips, when either is
/// missing or the operator watches one namespace only (the tests create
/// namespaces of their own). With `SCHEMAOP_E2E_OPERATOR=require` those are
/// failures instead.
pub async fn deployed(client: &Client) -> Result<Option<Deployed>> {
    let deployments = |namespace: &str| Api::<Deployment>::namespaced(client.clone(), namespace);
    let Some(operator) = deployments(OPERATOR_NAMESPACE)
        .get_opt(OPERATOR_DEPLOYMENT)
        .await
        .context(format!(
            "looking for the Deployment {OPERATOR_DEPLOYMENT} in {OPERATOR_NAMESPACE}"
        ))?
    else {
        return not_deployed(format!(
            "the operator is not installed (no Deployment {OPERATOR_DEPLOYMENT} in the \
             namespace {OPERATOR_NAMESPACE}); e2e/run.sh builds and installs it"
        ));
    };
    if let Some(namespace) = watched_namespace(&operator) {
        return not_deployed(format!(
            "the operator watches only the namespace {namespace} (rbac.scope=namespaced), and \
             the tests work in namespaces of their own; install the chart with its default \
             rbac.scope=cluster"
        ));
    }
    if deployments(POSTGRES_NAMESPACE)
        .get_opt(POSTGRES_NAME)
        .await
        .context(format!(
            "looking for the Deployment {POSTGRES_NAME} in {POSTGRES_NAMESPACE}"
        ))?
        .is_none()
    {
        return not_deployed(format!(
            "PostgreSQL is not deployed (no Deployment {POSTGRES_NAME} in the namespace \
             {POSTGRES_NAMESPACE}); start it with `kubectl apply -f e2e/manifests/postgres.yaml`"
        ));
    }
    let operator = wait_for_rollout(
        client,
        OPERATOR_NAMESPACE,
        OPERATOR_DEPLOYMENT,
        ROLLOUT_TIMEOUT,
    )
    .await?;
    wait_for_rollout(client, POSTGRES_NAMESPACE, POSTGRES_NAME, ROLLOUT_TIMEOUT).await?;
    let secret = Api::<Secret>::namespaced(client.clone(), POSTGRES_NAMESPACE)
        .get(POSTGRES_NAME)
        .await
        .context(format!(
            "reading the Secret {POSTGRES_NAME} in {POSTGRES_NAMESPACE}"
        ))?;
    let password = secret
        .data
        .as_ref()
        .and_then(|data| data.get("password"))
        .map(|bytes| String::from_utf8_lossy(&bytes.0).into_owned())
        .ok_or_else(|| {
            Failure::new(format!(
                "the Secret {POSTGRES_NAMESPACE}/{POSTGRES_NAME} has no key `password`; \
                 apply e2e/manifests/postgres.yaml again"
            ))
        })?;
    Ok(Some(Deployed {
        operator,
        postgres: ClusterPostgres { password },
    }))
}

fn not_deployed(reason: String) -> Result<Option<Deployed>> {
    if operator_mode() == OperatorMode::Require {
        return Err(Failure::new(format!(
            "{OPERATOR_VAR}=require, but {reason}; see \"Full flow on kind\" in e2e/README.md"
        )));
    }
    // Once per test binary: every test of it skips for the same reason.
    static SAID: OnceLock<()> = OnceLock::new();
    SAID.get_or_init(|| {
        say(&format!(
            "skipping the ship tests: {reason}; see \"Full flow on kind\" in e2e/README.md"
        ));
    });
    Ok(None)
}

/// The `--watch-namespace` the operator runs with, if any.
fn watched_namespace(operator: &Deployment) -> Option<String> {
    operator
        .spec
        .as_ref()?
        .template
        .spec
        .as_ref()?
        .containers
        .iter()
        .flat_map(|c| c.args.iter().flatten())
        .find_map(|arg| arg.strip_prefix("--watch-namespace="))
        .map(str::to_owned)
}

/// Whether the Deployment's latest spec is rolled out: every replica updated,
/// ready and available, and no old pod left.
pub fn rolled_out(deployment: &Deployment) -> bool {
    let want = deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1);
    let Some(status) = &deployment.status else {
        return false;
    };
    status.observed_generation >= deployment.metadata.generation
        && status.updated_replicas == Some(want)
        && status.replicas == Some(want)
        && status.ready_replicas == Some(want)
        && status.available_replicas == Some(want)
}

/// A Deployment's replica counts, for messages.
pub fn rollout_summary(deployment: &Deployment) -> String {
    let want = deployment.spec.as_ref().and_then(|s| s.replicas);
    let status = deployment.status.clone().unwrap_or_default();
    format!(
        "generation {:?} (observed {:?}), replicas {:?} wanted, {:?} current, {:?} updated, \
         {:?} ready, {:?} available",
        deployment.metadata.generation,
        status.observed_generation,
        want,
        status.replicas,
        status.updated_replicas,
        status.ready_replicas,
        status.available_replicas,
    )
}

/// Polls the Deployment until [`rolled_out`], for at most `timeout`.
pub async fn wait_for_rollout(
    client: &Client,
    namespace: &str,
    name: &str,
    timeout: Duration,
) -> Result<Deployment> {
    let api = Api::<Deployment>::namespaced(client.clone(), namespace);
    let started = Instant::now();
    loop {
        let last = match api.get_opt(name).await {
            Ok(Some(deployment)) if rolled_out(&deployment) => return Ok(deployment),
            Ok(Some(deployment)) => rollout_summary(&deployment),
            Ok(None) => "it does not exist".to_owned(),
            Err(error) => format!("cannot read it: {}", chain(&error)),
        };
        if started.elapsed() > timeout {
            return Err(Failure::new(format!(
                "the Deployment {namespace}/{name} did not roll out within {timeout:?}; last seen: \
                 {last}; see `kubectl -n {namespace} describe deployment {name}`"
            )));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The condition of `type_` on a pod, if it has one.
pub fn pod_condition<'a>(pod: &'a Pod, type_: &str) -> Option<&'a PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

/// Whether the pod's condition `type_` has `status` (`True` or `False`).
pub fn pod_condition_is(pod: &Pod, type_: &str, status: &str) -> bool {
    pod_condition(pod, type_).is_some_and(|c| c.status == status)
}

/// The PostgreSQL server of `e2e/manifests/postgres.yaml`, in the cluster.
#[derive(Clone)]
pub struct ClusterPostgres {
    password: String,
}

impl ClusterPostgres {
    /// The URL of `database` as the operator, in the cluster, reaches it.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://postgres:{}@{POSTGRES_NAME}.{POSTGRES_NAMESPACE}:5432/{database}",
            percent_encode(&self.password)
        )
    }

    /// Runs `sql` in `database` with psql inside the PostgreSQL pod, and
    /// returns its output: one line per row, columns separated by `|`.
    pub async fn psql(&self, database: &str, sql: &str) -> Result<String> {
        let mut command = tokio::process::Command::new("kubectl");
        command
            .args(psql_args(database, sql))
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        let output = match tokio::time::timeout(PSQL_TIMEOUT, command.output()).await {
            Ok(output) => output.map_err(|error| {
                Failure::new(format!(
                    "cannot run kubectl, which the ship tests use to query the database: {error}"
                ))
            })?,
            Err(_) => {
                return Err(Failure::new(format!(
                    "psql in {POSTGRES_NAMESPACE}/{POSTGRES_NAME} did not answer within \
                     {PSQL_TIMEOUT:?}: {sql}"
                )));
            }
        };
        if !output.status.success() {
            return Err(Failure::new(format!(
                "psql in {POSTGRES_NAMESPACE}/{POSTGRES_NAME} failed ({}) on `{sql}`: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

/// `kubectl exec` running psql as the server's superuser over the Unix
/// socket (which the official image trusts), printing bare rows.
fn psql_args(database: &str, sql: &str) -> Vec<String> {
    [
        "--namespace",
        POSTGRES_NAMESPACE,
        "exec",
        &format!("deployment/{POSTGRES_NAME}"),
        "--container",
        POSTGRES_NAME,
        "--",
        "psql",
        "--username=postgres",
        &format!("--dbname={database}"),
        "--no-psqlrc",
        "--no-align",
        "--tuples-only",
        "--quiet",
        "--set=ON_ERROR_STOP=1",
        &format!("--command={sql}"),
    ]
    .map(str::to_owned)
    .to_vec()
}

/// psql's unaligned output as rows of columns.
pub fn psql_rows(output: &str) -> Vec<Vec<String>> {
    output
        .lines()
        .filter(|line| !line.is_empty())
        .map(|line| line.split('|').map(str::to_owned).collect())
        .collect()
}

/// Percent-encodes what may not appear as is in a URL's user information.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A database of its own for one test, on the cluster's PostgreSQL, dropped
/// when this is dropped, also when the test panics.
pub struct ClusterDatabase {
    pub name: String,
    /// Its URL, as the operator in the cluster reaches it.
    pub url: String,
    postgres: ClusterPostgres,
}

impl ClusterDatabase {
    /// Creates `schemaop_e2e_<random>`.
    pub async fn create(postgres: &ClusterPostgres) -> Result<ClusterDatabase> {
        let name = format!("schemaop_e2e_{}", random_suffix());
        postgres
            .psql("postgres", &format!("CREATE DATABASE {name}"))
            .await?;
        Ok(ClusterDatabase {
            url: postgres.url(&name),
            name,
            postgres: postgres.clone(),
        })
    }

    /// The rows `sql` returns in this database.
    pub async fn query(&self, sql: &str) -> Result<Vec<Vec<String>>> {
        Ok(psql_rows(&self.postgres.psql(&self.name, sql).await?))
    }
}

impl Drop for ClusterDatabase {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        // Blocking: this may run while the test's runtime unwinds a panic.
        let dropped = std::process::Command::new("kubectl")
            .args(psql_args("postgres", &sql))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .is_ok_and(|mut child| {
                let started = Instant::now();
                loop {
                    match child.try_wait() {
                        Ok(Some(status)) => return status.success(),
                        Ok(None) if started.elapsed() < PSQL_TIMEOUT => {
                            std::thread::sleep(Duration::from_millis(100));
                        }
                        _ => {
                            let _ = child.kill();
                            let _ = child.wait();
                            return false;
                        }
                    }
                }
            });
        if !dropped {
            say(&format!(
                "e2e: could not drop the database {} on the cluster's PostgreSQL; drop it with \
                 `kubectl -n {POSTGRES_NAMESPACE} exec deployment/{POSTGRES_NAME} -- psql -U \
                 postgres -c '{sql}'`",
                self.name
            ));
        }
    }
}

#[cfg(test)]
mod deployed_tests {
    use super::*;

    #[test]
    fn cluster_urls_reach_the_service_and_encode_the_password() {
        let postgres = ClusterPostgres {
            password: "p@ss:w/rd".to_owned(),
        };
        assert_eq!(
            postgres.url("schemaop_e2e_1"),
            "postgres://postgres:p%40ss%3Aw%2Frd@postgres.schemaop-e2e-app:5432/schemaop_e2e_1"
        );
    }

    #[test]
    fn psql_runs_one_command_in_the_postgres_pod() {
        let args = psql_args("db1", "SELECT 1, 'a b'");
        assert_eq!(
            args[..6],
            [
                "--namespace",
                "schemaop-e2e-app",
                "exec",
                "deployment/postgres",
                "--container",
                "postgres"
            ]
        );
        assert!(args.contains(&"--dbname=db1".to_owned()));
        assert_eq!(args.last().unwrap(), "--command=SELECT 1, 'a b'");
        assert_eq!(
            psql_rows("1|up|succeeded\n2|up|failed\n\n"),
            [["1", "up", "succeeded"], ["2", "up", "failed"]]
        );
    }

    /// Every field of the manifests is one the API knows: read into the
    /// API's types and written back, each document comes out unchanged (a
    /// misspelt field would be dropped on the way).
    #[test]
    fn the_ship_manifests_use_known_fields_only() {
        fn round_trip<
            K: k8s_openapi::serde::de::DeserializeOwned + k8s_openapi::serde::Serialize,
        >(
            document: &Value,
        ) -> Value {
            let typed: K = serde_json::from_value(document.clone()).unwrap();
            serde_json::to_value(typed).unwrap()
        }
        let dir = repo_root().join("e2e/manifests");
        let mut kinds = Vec::new();
        for file in ["app.yaml", "postgres.yaml"] {
            let yaml = std::fs::read_to_string(dir.join(file)).unwrap();
            let documents: Vec<Value> = serde_saphyr::from_multiple(&yaml).unwrap();
            for document in &documents {
                let kind = document["kind"].as_str().unwrap_or_default().to_owned();
                let back = match kind.as_str() {
                    "Namespace" => round_trip::<Namespace>(document),
                    "Secret" => round_trip::<Secret>(document),
                    "Deployment" => round_trip::<Deployment>(document),
                    "Service" => round_trip::<k8s_openapi::api::core::v1::Service>(document),
                    other => panic!("{file}: unexpected kind {other:?}"),
                };
                assert_eq!(&back, document, "{file}: {kind}");
                kinds.push(format!("{file}: {kind}"));
            }
        }
        assert_eq!(
            kinds,
            [
                "app.yaml: Deployment",
                "app.yaml: Service",
                "postgres.yaml: Namespace",
                "postgres.yaml: Secret",
                "postgres.yaml: Deployment",
                "postgres.yaml: Service",
            ]
        );
    }

    #[test]
    fn rollouts_count_every_replica() {
        let mut deployment: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "app", "generation": 2},
            "spec": {"replicas": 2, "selector": {}, "template": {}},
            "status": {"observedGeneration": 2, "replicas": 3, "updatedReplicas": 2,
                       "readyReplicas": 3, "availableReplicas": 3},
        }))
        .unwrap();
        assert!(!rolled_out(&deployment), "an old pod is still there");
        let status = deployment.status.as_mut().unwrap();
        status.replicas = Some(2);
        status.ready_replicas = Some(2);
        status.available_replicas = Some(2);
        assert!(rolled_out(&deployment));
        deployment.metadata.generation = Some(3);
        assert!(!rolled_out(&deployment), "the new spec is not observed yet");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_swap_the_database_and_keep_the_rest() {
        let admin = "postgres://u:p@db.example:6432/postgres?sslmode=disable";
        assert_eq!(
            url_for(admin, "schemaop_e2e_1").unwrap(),
            "postgres://u:p@db.example:6432/schemaop_e2e_1?sslmode=disable"
        );
        assert_eq!(
            url_for("postgres://u@127.0.0.1", "x").unwrap(),
            "postgres://u@127.0.0.1/x"
        );
        assert!(url_for("not a url", "x").is_err());
        assert_eq!(
            redact(admin),
            "postgres://u:***@db.example:6432/postgres?sslmode=disable"
        );
        assert_eq!(
            redact(DEFAULT_DATABASE_URL),
            "postgres://schemaop_test:***@127.0.0.1:5432/postgres"
        );
    }

    #[test]
    fn the_sample_app_and_the_crd_load() {
        let files = sample_migrations().unwrap();
        let versions = versions(&files);
        assert!(versions.len() >= 4, "{versions:?}");
        assert!(versions.windows(2).all(|w| w[0] < w[1]));
        let crd = crd_manifest().unwrap();
        assert_eq!(crd.name_any(), "schemamigrations.schemaop.dev");
    }

    #[test]
    fn specs_merge_like_a_merge_patch() {
        let mut spec = json!({
            "database": {"urlSecretRef": {"name": "a", "key": "url"}},
            "source": {"configMapRefs": [{"name": "m"}]},
        });
        merge(
            &mut spec,
            json!({"database": {"urlSecretRef": null}, "targetRevision": "3"}),
        );
        assert_eq!(
            spec,
            json!({
                "database": {},
                "source": {"configMapRefs": [{"name": "m"}]},
                "targetRevision": "3",
            })
        );
        let object = schema_migration(
            "app",
            json!({
                "database": {"urlSecretRef": {"name": "a", "key": "url"}},
                "source": {"configMapRefs": [{"name": "m"}]},
                "targetRevision": "3",
                "allowDowngrade": true,
            }),
        )
        .unwrap();
        assert!(object.spec.allow_downgrade);
        assert_eq!(object.spec.target_revision.to_string(), "3");
    }

    #[test]
    fn suffixes_are_short_and_differ() {
        let (a, b) = (random_suffix(), random_suffix());
        assert_eq!(a.len(), 8);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_ne!(a, b);
    }
}
