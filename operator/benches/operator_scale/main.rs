//! The whole operator at scale: the `schemaop run` binary, started against an
//! in-memory API server holding N SchemaMigrations (each with its Secret,
//! half with a ConfigMap of migrations, half inline) and N gated pods, with a
//! real PostgreSQL behind them. It prints, per case:
//!
//! - how long until every SchemaMigration is Ready and every pod released;
//! - the operator's resident memory then and after an idle spell, beside the
//!   same binary with no objects, measured in the same run (the baseline);
//! - the API requests it sent, per SchemaMigration and per pod, and while idle.
//!
//!   cargo bench --bench operator_scale                     N = 200 and 1,000
//!   SCHEMAOP_BENCH_SIZES=200 SCHEMAOP_BENCH_CONCURRENCY=4,16,32 cargo bench --bench operator_scale
//!   SCHEMAOP_BENCH_BINARIES=target/x86_64-unknown-linux-musl/release/schemaop cargo bench ...
//!   SCHEMAOP_BENCH_IDLE_SECS=60 (the default)
//!   SCHEMAOP_BENCH_SLEEP_MS=200: each run waits that long on the server
//!
//! Every SchemaMigration migrates its own tables, with its own history table,
//! in one database of the test server: the runs are independent (the
//! migration lock is per history table) as they are on separate databases.
//! The server's max_connections bounds the concurrency worth trying: a run
//! holds up to three connections.
//! Reads `SCHEMAOP_TEST_ADMIN_URL` like the other benchmarks.

mod apiserver;
#[path = "../support/mod.rs"]
#[allow(dead_code)]
mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use apiserver::{ApiServer, collection};
use k8s_openapi::ByteString;
use serde_json::{Value, json};
use tokio_postgres::NoTls;

const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const DATABASE: &str = "schemaop_bench_scale";
const NAMESPACES: usize = 10;
const SMIGS: &str = "schemaop.dev/v1alpha1/schemamigrations";
const GIVE_UP: Duration = Duration::from_secs(900);

fn main() {
    let admin_url =
        std::env::var("SCHEMAOP_TEST_ADMIN_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.into());
    let sizes = list("SCHEMAOP_BENCH_SIZES", "200,1000");
    let concurrency: Vec<Option<usize>> = match std::env::var("SCHEMAOP_BENCH_CONCURRENCY") {
        Ok(text) => text.split(',').map(|c| c.trim().parse().ok()).collect(),
        Err(_) => vec![None],
    };
    let idle = Duration::from_secs(
        std::env::var("SCHEMAOP_BENCH_IDLE_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(60),
    );
    let mut binaries = vec![PathBuf::from(env!("CARGO_BIN_EXE_schemaop"))];
    if let Ok(more) = std::env::var("SCHEMAOP_BENCH_BINARIES") {
        // cargo runs benchmarks in the package's folder; a path is more
        // likely given from the workspace's.
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        binaries.extend(
            more.split(',')
                .filter(|s| !s.is_empty())
                .map(|s| workspace.join(s)),
        );
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        println!(
            "operator_scale: N SchemaMigrations (3 migrations each, {NAMESPACES} namespaces) \
             and N gated pods; memory after an idle spell of {}s; {} cores",
            idle.as_secs(),
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        for binary in &binaries {
            println!("\nbinary: {}", binary.display());
            let empty = measure(binary, &admin_url, 0, None, idle).await;
            println!("{}", Report::header());
            println!("{}", empty.row(&empty));
            for &n in &sizes {
                for &c in &concurrency {
                    let report = measure(binary, &admin_url, n, c, idle).await;
                    println!("{}", report.row(&empty));
                    report.requests_detail();
                }
            }
        }
    });
}

fn list(name: &str, default: &str) -> Vec<usize> {
    std::env::var(name)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .map(|n| n.trim().parse().expect("a number"))
        .collect()
}

struct Memory {
    rss: u64,
    anon: u64,
    peak: u64,
}

/// Resident memory of a process, in kB: all of it, its anonymous part (the
/// heap and stacks, without the binary's mapped pages) and its peak.
fn memory(pid: u32) -> Memory {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kb| kb.parse().ok())
            .unwrap_or(0)
    };
    Memory {
        rss: field("VmRSS:"),
        anon: field("RssAnon:"),
        peak: field("VmHWM:"),
    }
}

struct Report {
    n: usize,
    concurrency: Option<usize>,
    ready_after: Option<Duration>,
    at_ready: Memory,
    idle: Memory,
    burst: BTreeMap<String, u64>,
    idle_requests: u64,
    idle_for: Duration,
    events_for_pods: usize,
    events_for_smigs: usize,
    agents: BTreeMap<String, u64>,
}

fn mib(kb: u64) -> String {
    format!("{:.1}", kb as f64 / 1024.0)
}

impl Report {
    fn header() -> String {
        format!(
            "{:>5} {:>5} {:>8} {:>10} {:>10} {:>10} {:>9} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10}",
            "N",
            "runs",
            "ready s",
            "RSS ready",
            "RSS idle",
            "anon idle",
            "peak",
            "vs none",
            "req/SM",
            "status/SM",
            "SM GET",
            "patch/pod",
            "Events",
            "idle req/m"
        )
    }

    fn count(&self, what: &str) -> u64 {
        self.burst.get(what).copied().unwrap_or(0)
    }

    fn row(&self, empty: &Report) -> String {
        let per = |x: u64| {
            if self.n == 0 {
                "-".to_owned()
            } else {
                format!("{:.2}", x as f64 / self.n as f64)
            }
        };
        let pod_requests = self.count("patch pods/status");
        let all: u64 = self.burst.values().sum();
        let lease = self
            .burst
            .iter()
            .filter(|(k, _)| k.contains("leases") || k.as_str() == "get version")
            .map(|(_, v)| v)
            .sum::<u64>();
        let watches: u64 = self
            .burst
            .iter()
            .filter(|(k, _)| k.starts_with("watch ") || k.starts_with("list "))
            .map(|(_, v)| v)
            .sum();
        let per_smig = all - pod_requests - lease - watches;
        format!(
            "{:>5} {:>5} {:>8} {:>10} {:>10} {:>10} {:>9} {:>7.2}x {:>9} {:>9} {:>9} {:>9} {:>9} {:>10.1}",
            self.n,
            self.concurrency
                .map_or("dflt".to_owned(), |c| c.to_string()),
            self.ready_after
                .map_or("never".to_owned(), |d| format!("{:.1}", d.as_secs_f64())),
            mib(self.at_ready.rss),
            mib(self.idle.rss),
            mib(self.idle.anon),
            mib(self.idle.peak),
            self.idle.rss as f64 / empty.idle.rss.max(1) as f64,
            per(per_smig),
            per(self.count("patch schemamigrations/status")),
            self.count("get schemamigrations"),
            per(pod_requests),
            format!("{}+{}", self.events_for_smigs, self.events_for_pods),
            self.idle_requests as f64 * 60.0 / self.idle_for.as_secs_f64().max(1.0)
        )
    }

    fn requests_detail(&self) {
        let all: Vec<String> = self
            .burst
            .iter()
            .map(|(what, count)| format!("{what} {count}"))
            .collect();
        println!("      requests to ready: {}", all.join(", "));
        let agents: Vec<String> = self.agents.keys().cloned().collect();
        println!("      user agents: {}", agents.join(", "));
    }
}

async fn measure(
    binary: &Path,
    admin_url: &str,
    n: usize,
    concurrency: Option<usize>,
    idle: Duration,
) -> Report {
    let database_url = fresh_database(admin_url).await;
    let server = ApiServer::new();
    populate(&server, n, &database_url);
    let address = server.serve().await;
    let work = tempfile::tempdir().expect("temporary folder");
    let kubeconfig = work.path().join("kubeconfig");
    std::fs::write(&kubeconfig, kubeconfig_text(&address.to_string())).expect("kubeconfig");
    let log = work.path().join("operator.log");

    let mut command = tokio::process::Command::new(binary);
    command
        .args([
            "run",
            "--namespace",
            "bench-system",
            "--metrics-addr",
            "127.0.0.1:0",
            "--log-level",
            "warn",
        ])
        .env("KUBECONFIG", &kubeconfig)
        .env("POD_NAME", "schemaop-bench-0")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .kill_on_drop(true);
    if let Some(c) = concurrency {
        command.args(["--max-concurrent-runs", &c.to_string()]);
    }
    let started = Instant::now();
    let mut child = command.spawn().expect("the schemaop binary starts");
    let pid = child.id().expect("a pid");

    let ready_after = loop {
        if done(&server, n) {
            break Some(started.elapsed());
        }
        if started.elapsed() > GIVE_UP || child.try_wait().expect("child state").is_some() {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(20).collect();
            eprintln!("N={n}: not all Ready; the operator's log ends:");
            for line in tail.iter().rev() {
                eprintln!("  {line}");
            }
            break None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let at_ready = memory(pid);
    let burst = server.requests();
    let idle_started = Instant::now();
    tokio::time::sleep(idle).await;
    let idle_memory = memory(pid);
    let after = server.requests();
    let idle_requests = after.values().sum::<u64>() - burst.values().sum::<u64>();
    let idle_for = idle_started.elapsed();

    // SIGTERM, as the kubelet stops a pod.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let _ = tokio::time::timeout(Duration::from_secs(20), child.wait()).await;

    let events = server.list("events.k8s.io/v1/events");
    let regarding = |kind: &str| {
        events
            .iter()
            .filter(|e| e["regarding"]["kind"] == kind)
            .count()
    };
    Report {
        n,
        concurrency,
        ready_after,
        at_ready,
        idle: idle_memory,
        burst,
        idle_requests,
        idle_for,
        events_for_pods: regarding("Pod"),
        events_for_smigs: regarding("SchemaMigration"),
        agents: server.agents(),
    }
}

/// Whether the operator leads and watches, every SchemaMigration is Ready
/// for its generation and every pod has been released.
fn done(server: &ApiServer, n: usize) -> bool {
    let requests = server.requests();
    let watching = |what: &str| requests.get(&format!("watch {what}")).copied().unwrap_or(0);
    // The controller and the gates each watch SchemaMigrations.
    if watching("schemamigrations") < 2 || watching("pods") < 1 {
        return false;
    }
    let condition = |object: &Value, kind: &str| {
        object["status"]["conditions"]
            .as_array()
            .and_then(|all| all.iter().find(|c| c["type"] == kind))
            .is_some_and(|c| c["status"] == "True")
    };
    let (smigs, ready) = server.all(SMIGS, |m| {
        condition(m, "Ready") && m["status"]["observedGeneration"] == m["metadata"]["generation"]
    });
    let (_, released) = server.all(&collection("v1", "pods"), |p| {
        condition(p, "schemaop.dev/schema-ready")
    });
    smigs == n && ready && released
}

async fn fresh_database(admin_url: &str) -> String {
    let (client, connection) = tokio_postgres::connect(admin_url, NoTls)
        .await
        .expect("the test server (SCHEMAOP_TEST_ADMIN_URL)");
    tokio::spawn(connection);
    for statement in [
        format!("DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"),
        format!("CREATE DATABASE {DATABASE}"),
    ] {
        client
            .batch_execute(&statement)
            .await
            .expect("a fresh database");
    }
    support::with_database(admin_url, DATABASE)
}

fn kubeconfig_text(address: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: bench\n  cluster:\n    server: http://{address}\n\
         users:\n- name: bench\n  user: {{}}\ncontexts:\n- name: bench\n  context:\n    cluster: bench\n    \
         user: bench\n    namespace: bench-system\ncurrent-context: bench\n"
    )
}

/// Three migrations of an app's own tables, about as long as real ones.
/// `SCHEMAOP_BENCH_SLEEP_MS` makes the second one wait on the server that
/// long: a slower server, or a bigger table, where runs overlap.
fn migrations(i: usize) -> BTreeMap<String, String> {
    let note = "-- Owned by the team's service; reviewed in the pull request that adds it.\n\
                -- Keep in step with the ORM models.\n";
    let sleep = std::env::var("SCHEMAOP_BENCH_SLEEP_MS")
        .ok()
        .and_then(|ms| ms.parse::<u64>().ok())
        .filter(|ms| *ms > 0)
        .map_or(String::new(), |ms| {
            format!("SELECT pg_sleep({});\n", ms as f64 / 1000.0)
        });
    BTreeMap::from([
        (
            "1_create_accounts.up.sql".to_owned(),
            format!(
                "{note}CREATE TABLE t{i}_accounts (\n  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,\n  \
                 email text NOT NULL UNIQUE,\n  display_name text,\n  created_at timestamptz NOT NULL DEFAULT now()\n);\n"
            ),
        ),
        (
            "1_create_accounts.down.sql".to_owned(),
            format!("DROP TABLE t{i}_accounts;\n"),
        ),
        (
            "2_create_orders.up.sql".to_owned(),
            format!(
                "{note}CREATE TABLE t{i}_orders (\n  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,\n  \
                 account_id bigint NOT NULL REFERENCES t{i}_accounts ON DELETE CASCADE,\n  \
                 total_cents bigint NOT NULL CHECK (total_cents >= 0),\n  placed_at timestamptz NOT NULL DEFAULT now()\n);\n\
                 CREATE INDEX t{i}_orders_account ON t{i}_orders (account_id, placed_at DESC);\n{sleep}"
            ),
        ),
        (
            "2_create_orders.down.sql".to_owned(),
            format!("DROP TABLE t{i}_orders;\n"),
        ),
        (
            "3_add_order_status.up.sql".to_owned(),
            format!(
                "{note}ALTER TABLE t{i}_orders ADD COLUMN status text NOT NULL DEFAULT 'placed';\n\
                 UPDATE t{i}_orders SET status = 'shipped' WHERE placed_at < now() - interval '30 days';\n"
            ),
        ),
    ])
}

fn kubectl_applied(mut object: Value) -> Value {
    // What `kubectl apply` leaves on an object: the last applied copy of
    // it in an annotation, and the managed fields.
    let last = serde_json::to_string(&object).expect("JSON");
    object["metadata"]["annotations"] =
        json!({ "kubectl.kubernetes.io/last-applied-configuration": last });
    object["metadata"]["managedFields"] = json!([{
        "manager": "kubectl-client-side-apply", "operation": "Update",
        "apiVersion": object["apiVersion"].clone(), "time": "2026-12-05T00:00:00Z",
        "fieldsType": "FieldsV1",
        "fieldsV1": { "f:metadata": { "f:annotations": { ".": {} } }, "f:spec": { ".": {} } },
    }]);
    object
}

fn populate(server: &Arc<ApiServer>, n: usize, database_url: &str) {
    // As the API server sends a Secret's data: base64, which ByteString writes.
    let encoded = serde_json::to_value(ByteString(database_url.as_bytes().to_vec())).expect("JSON");
    for i in 0..n {
        let namespace = format!("team-{}", i % NAMESPACES);
        let name = format!("app-{i}");
        server.insert(
            &collection("v1", "secrets"),
            json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": { "name": format!("{name}-db"), "namespace": namespace },
                "type": "Opaque", "data": { "url": encoded },
            }),
        );
        let source = if i % 2 == 0 {
            json!({ "inline": migrations(i) })
        } else {
            server.insert(
                &collection("v1", "configmaps"),
                kubectl_applied(json!({
                    "apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": { "name": format!("{name}-migrations"), "namespace": namespace },
                    "data": migrations(i),
                })),
            );
            json!({ "configMapRefs": [{ "name": format!("{name}-migrations") }] })
        };
        server.insert(
            SMIGS,
            kubectl_applied(json!({
                "apiVersion": "schemaop.dev/v1alpha1", "kind": "SchemaMigration",
                "metadata": { "name": name, "namespace": namespace },
                "spec": {
                    "database": { "urlSecretRef": { "name": format!("{name}-db"), "key": "url" } },
                    "source": source,
                    "targetRevision": "latest",
                    "history": { "table": format!("h{i}") },
                },
            })),
        );
        server.insert(&collection("v1", "pods"), gated_pod(i, &namespace, &name));
    }
}

/// A pod of the app's Deployment as the API server sends it, waiting at
/// schemaop's readiness gate.
fn gated_pod(i: usize, namespace: &str, migration: &str) -> Value {
    let env: Vec<_> = (0..20)
        .map(|n| json!({ "name": format!("SETTING_{n}"), "value": format!("value-{n}-{i}") }))
        .collect();
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": format!("{migration}-web-7f9c8d6b5-x{i:04}"),
            "namespace": namespace,
            "generateName": format!("{migration}-web-7f9c8d6b5-"),
            "labels": {
                "app.kubernetes.io/name": "web", "pod-template-hash": "7f9c8d6b5",
                "schemaop.dev/migration": migration,
            },
            "annotations": { "prometheus.io/scrape": "true" },
            "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{migration}-web-7f9c8d6b5"),
                "uid": "0b3c5d7e-0000-4000-8000-ffffffffffff", "controller": true,
            }],
        },
        "spec": {
            "readinessGates": [{ "conditionType": "schemaop.dev/schema-ready" }],
            "containers": [{
                "name": "web", "image": "registry.example.com/web:1.4.2",
                "command": ["uvicorn", "app.main:app", "--host", "0.0.0.0"],
                "env": env,
                "ports": [{ "containerPort": 8000, "protocol": "TCP" }],
                "resources": { "requests": { "cpu": "100m", "memory": "256Mi" } },
            }],
            "nodeName": format!("node-{}", i % 7),
        },
        "status": {
            "phase": "Running",
            "conditions": [
                { "type": "Initialized", "status": "True" },
                { "type": "ContainersReady", "status": "True" },
                { "type": "Ready", "status": "False" },
            ],
            "podIP": format!("10.0.{}.{}", i / 250, i % 250),
        },
    })
}
