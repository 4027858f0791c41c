//! How much memory the readiness gates' pod cache holds: N gated pods as the
//! API server sends them (the baseline, what the cache held before pods were
//! trimmed), and the same pods trimmed as the gates now keep them. Measured
//! in the same run with a counting allocator, so the ratio is exact and not
//! at the mercy of the allocator's free lists.
//!
//!   cargo bench --bench gate_cache            N = 200 and 1,000
//!   SCHEMAOP_BENCH_PODS=5000 cargo bench --bench gate_cache

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use schemaop::gates::trim;
use serde_json::json;

#[path = "support/counting.rs"]
mod counting;

#[global_allocator]
static ALLOCATOR: counting::Counting = counting::Counting;

/// A pod of a Deployment as the API server sends it, gated by schemaop.
fn pod(i: usize) -> Pod {
    let env: Vec<_> = (0..20)
        .map(|n| json!({ "name": format!("SETTING_{n}"), "value": format!("value-{n}-{i}") }))
        .collect();
    serde_json::from_value(json!({
        "metadata": {
            "name": format!("web-7f9c8d6b5-{i:05}"),
            "generateName": "web-7f9c8d6b5-",
            "namespace": format!("team-{}", i % 10),
            "uid": format!("0b3c5d7e-0000-4000-8000-{i:012}"),
            "resourceVersion": format!("{}", 100_000 + i),
            "labels": {
                "app.kubernetes.io/name": "web",
                "app.kubernetes.io/instance": "web",
                "pod-template-hash": "7f9c8d6b5",
                "schemaop.dev/migration": "app-db",
            },
            "annotations": {
                "kubectl.kubernetes.io/restartedAt": "2026-12-01T10:00:00Z",
                "prometheus.io/scrape": "true",
                "schemaop.dev/min-revision": "20261201090000",
            },
            "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7f9c8d6b5",
                "uid": "0b3c5d7e-0000-4000-8000-ffffffffffff", "controller": true,
                "blockOwnerDeletion": true,
            }],
            "managedFields": [
                { "manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1",
                  "time": "2026-12-01T10:00:00Z", "fieldsType": "FieldsV1",
                  "fieldsV1": { "f:metadata": { "f:generateName": {}, "f:labels": { ".": {}, "f:app.kubernetes.io/name": {} } },
                                "f:spec": { "f:containers": { "k:{\"name\":\"web\"}": { ".": {}, "f:env": {}, "f:image": {}, "f:ports": {} } } } } },
                { "manager": "kubelet", "operation": "Update", "apiVersion": "v1", "subresource": "status",
                  "time": "2026-12-01T10:00:05Z", "fieldsType": "FieldsV1",
                  "fieldsV1": { "f:status": { "f:conditions": {}, "f:containerStatuses": {}, "f:podIP": {} } } },
            ],
        },
        "spec": {
            "containers": [{
                "name": "web",
                "image": "registry.example.com/getanswers-backend:1.4.2",
                "command": ["uvicorn", "app.main:app", "--host", "0.0.0.0"],
                "env": env,
                "ports": [{ "containerPort": 8080, "protocol": "TCP" }],
                "resources": { "requests": { "cpu": "250m", "memory": "256Mi" }, "limits": { "memory": "512Mi" } },
                "readinessProbe": { "httpGet": { "path": "/healthz", "port": 8080 }, "periodSeconds": 5 },
                "volumeMounts": [{ "name": "kube-api-access", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true }],
            }],
            "readinessGates": [{ "conditionType": "schemaop.dev/schema-ready" }],
            "serviceAccountName": "web",
            "nodeName": format!("node-{}", i % 7),
            "volumes": [{ "name": "kube-api-access", "projected": { "sources": [{ "serviceAccountToken": { "path": "token", "expirationSeconds": 3607 } }] } }],
            "tolerations": [
                { "key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300 },
                { "key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300 },
            ],
        },
        "status": {
            "phase": "Running",
            "podIP": format!("10.244.{}.{}", i / 250, i % 250),
            "startTime": "2026-12-01T10:00:01Z",
            "conditions": [
                { "type": "Initialized", "status": "True", "lastTransitionTime": "2026-12-01T10:00:01Z" },
                { "type": "ContainersReady", "status": "True", "lastTransitionTime": "2026-12-01T10:00:04Z" },
                { "type": "Ready", "status": "True", "lastTransitionTime": "2026-12-01T10:00:05Z" },
                { "type": "schemaop.dev/schema-ready", "status": "True", "reason": "SchemaReady",
                  "message": "needs revision 20261201090000; the database is at 20261201090000",
                  "lastTransitionTime": "2026-12-01T10:00:02Z" },
            ],
            "containerStatuses": [{
                "name": "web", "ready": true, "restartCount": 0, "started": true,
                "image": "registry.example.com/getanswers-backend:1.4.2",
                "imageID": "registry.example.com/getanswers-backend@sha256:4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945",
                "containerID": "containerd://5d1f0cbd8f2f5e1c9e3e2b6c8a4f4d2e1b0a9c8d7e6f5a4b3c2d1e0f9a8b7c6d",
                "state": { "running": { "startedAt": "2026-12-01T10:00:03Z" } },
            }],
        },
    }))
    .expect("a pod")
}

/// Bytes a cache of `pods` holds, each as `keep` leaves it.
fn cached(count: usize, keep: impl Fn(&mut Pod)) -> isize {
    let before = counting::live();
    let cache: Vec<Arc<Pod>> = (0..count)
        .map(|i| {
            let mut pod = pod(i);
            keep(&mut pod);
            Arc::new(pod)
        })
        .collect();
    let held = counting::live() - before;
    drop(cache);
    held
}

fn main() {
    let counts: Vec<usize> = match std::env::var("SCHEMAOP_BENCH_PODS") {
        Ok(n) => vec![n.parse().expect("SCHEMAOP_BENCH_PODS is a number")],
        Err(_) => vec![200, 1_000],
    };
    println!("gate cache: heap held by N gated pods, as sent (baseline) and trimmed");
    println!(
        "  (a Pod value alone is {} B, whatever it holds: the floor of a trimmed pod)",
        std::mem::size_of::<Pod>()
    );
    for count in counts {
        let full = cached(count, |_| {});
        let trimmed = cached(count, trim);
        println!(
            "  N = {count:>5}: as sent {:>8.2} MiB ({:>5} B/pod), trimmed {:>6.2} MiB ({:>4} B/pod): {:.1}x smaller",
            full as f64 / 1048576.0,
            full / count as isize,
            trimmed as f64 / 1048576.0,
            trimmed / count as isize,
            full as f64 / trimmed as f64,
        );
    }
}
