//! How much memory the operator's two watch caches of SchemaMigrations hold:
//! the controller's and the readiness gates'. N kubectl-applied
//! SchemaMigrations with inline SQL, as the API server sends them, are put
//! in a kube reflector store whole (the baseline: what each cache held
//! before), trimmed as the controller keeps them, and trimmed as the gates
//! keep them. Measured in the same run with a counting allocator, so the
//! ratios are exact and not at the mercy of the allocator's free lists.
//!
//!   cargo bench --bench migration_cache            N = 200 and 1,000
//!   SCHEMAOP_BENCH_MIGRATIONS=5000 cargo bench --bench migration_cache

use kube::runtime::{reflector, watcher};
use schemaop::controller::cache;
use schemaop::crd::SchemaMigration;
use schemaop::gates::trim_migration;
use serde_json::{Value, json};

#[path = "support/counting.rs"]
mod counting;

#[global_allocator]
static ALLOCATOR: counting::Counting = counting::Counting;

/// One migration file of a typical app: a table of forty columns, its
/// indexes and comments, about 3 kB.
fn sql(i: usize, file: usize) -> String {
    let table = format!("orders_{file}");
    let columns: String = (0..40)
        .map(|c| format!("    col_{c:02}_of_{table} varchar(255) DEFAULT NULL,\n"))
        .collect();
    format!(
        "-- Orders of team {i}, part {file}.\n\
         CREATE TABLE {table} (\n    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,\n\
         {columns}    created_at timestamptz NOT NULL DEFAULT now()\n);\n\
         CREATE INDEX {table}_created_at_idx ON {table} (created_at);\n\
         CREATE INDEX {table}_col_00_idx ON {table} (col_00_of_{table});\n\
         COMMENT ON TABLE {table} IS 'What customers ordered, one row per order line.';\n"
    )
}

/// A SchemaMigration as `kubectl apply` made it and the operator reported
/// on it, as the API server sends it: four inline SQL files, the manifest
/// again in kubectl's annotation, the managed fields of both writers, and
/// a status after a run.
fn schema_migration(i: usize) -> Vec<u8> {
    let name = format!("app-db-{i:05}");
    let namespace = format!("team-{}", i % 10);
    let files: serde_json::Map<String, Value> = (1..=4)
        .map(|file| {
            (
                format!("2026120{file}090000_orders_{file}.sql"),
                json!(sql(i, file)),
            )
        })
        .collect();
    let spec = json!({
        "database": { "urlSecretRef": { "name": format!("{name}-url"), "key": "url" } },
        "source": { "inline": files },
        "targetRevision": "latest",
        "retry": { "limit": 5, "minBackoff": "10s", "maxBackoff": "5m" },
    });
    let labels = json!({ "app.kubernetes.io/name": "app", "app.kubernetes.io/part-of": "shop" });
    let manifest = json!({
        "apiVersion": "schemaop.dev/v1alpha1",
        "kind": "SchemaMigration",
        "metadata": { "annotations": {}, "labels": labels, "name": name, "namespace": namespace },
        "spec": spec,
    });
    let file_fields: serde_json::Map<String, Value> = files
        .keys()
        .map(|file| (format!("f:{file}"), json!({})))
        .collect();
    let condition = |type_: &str, status: &str, reason: &str, message: &str| {
        json!({ "type": type_, "status": status, "observedGeneration": 2, "reason": reason,
                "message": message, "lastTransitionTime": "2026-12-04T09:00:05Z" })
    };
    let applied: Vec<Value> = (1..=4)
        .map(|file| json!({ "version": 20261200090000_i64 + file * 1_000_000, "description": format!("orders {file}"),
                            "appliedAt": "2026-12-04T09:00:04Z", "duration": "120ms" }))
        .collect();
    serde_json::to_vec(&json!({
        "apiVersion": "schemaop.dev/v1alpha1",
        "kind": "SchemaMigration",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": format!("6f1c1c4e-2b7d-4f57-9a0e-{i:012}"),
            "resourceVersion": format!("{}", 200_000 + i),
            "generation": 2,
            "creationTimestamp": "2026-12-01T10:00:00Z",
            "labels": labels,
            "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": format!("{manifest}\n"),
            },
            "managedFields": [
                { "manager": "kubectl-client-side-apply", "operation": "Update",
                  "apiVersion": "schemaop.dev/v1alpha1", "time": "2026-12-04T09:00:00Z",
                  "fieldsType": "FieldsV1",
                  "fieldsV1": {
                      "f:metadata": { "f:annotations": { ".": {}, "f:kubectl.kubernetes.io/last-applied-configuration": {} },
                                      "f:labels": { ".": {}, "f:app.kubernetes.io/name": {}, "f:app.kubernetes.io/part-of": {} } },
                      "f:spec": { ".": {}, "f:database": { ".": {}, "f:urlSecretRef": { ".": {}, "f:key": {}, "f:name": {} } },
                                  "f:retry": { ".": {}, "f:limit": {}, "f:maxBackoff": {}, "f:minBackoff": {} },
                                  "f:source": { ".": {}, "f:inline": file_fields },
                                  "f:targetRevision": {} } } },
                { "manager": "schemaop", "operation": "Apply", "subresource": "status",
                  "apiVersion": "schemaop.dev/v1alpha1", "time": "2026-12-04T09:00:05Z",
                  "fieldsType": "FieldsV1",
                  "fieldsV1": { "f:status": { "f:conditions": {
                      "k:{\"type\":\"Ready\"}": { ".": {}, "f:lastTransitionTime": {}, "f:message": {}, "f:observedGeneration": {}, "f:reason": {}, "f:status": {}, "f:type": {} },
                      "k:{\"type\":\"Reconciling\"}": { ".": {}, "f:lastTransitionTime": {}, "f:message": {}, "f:observedGeneration": {}, "f:reason": {}, "f:status": {}, "f:type": {} },
                      "k:{\"type\":\"Stalled\"}": { ".": {}, "f:lastTransitionTime": {}, "f:message": {}, "f:observedGeneration": {}, "f:reason": {}, "f:status": {}, "f:type": {} } },
                      "f:currentRevision": {}, "f:observedGeneration": {}, "f:pendingMigrations": {},
                      "f:recentMigrations": {}, "f:run": { ".": {}, "f:attempt": {}, "f:finishedAt": {}, "f:phase": {}, "f:startedAt": {} },
                      "f:targetRevision": {} } } },
            ],
        },
        "spec": spec,
        "status": {
            "observedGeneration": 2,
            "currentRevision": "20261204090000",
            "targetRevision": "20261204090000",
            "pendingMigrations": 0,
            "run": { "phase": "Succeeded", "attempt": 1,
                     "startedAt": "2026-12-04T09:00:01Z", "finishedAt": "2026-12-04T09:00:05Z" },
            "recentMigrations": applied,
            "conditions": [
                condition("Ready", "True", "UpToDate", "the database is at revision 20261204090000, the target"),
                condition("Reconciling", "False", "UpToDate", "nothing to do"),
                condition("Stalled", "False", "UpToDate", ""),
            ],
        },
    }))
    .expect("a SchemaMigration")
}

/// Heap held by a reflector store of `count` SchemaMigrations, each as
/// `keep` leaves it: the objects and the store's keys, as the operator's
/// caches hold them. Each object is read from the API server's bytes and
/// dropped once stored, as a watch does.
fn cached(count: usize, keep: fn(&mut SchemaMigration)) -> isize {
    let before = counting::live();
    let (store, mut writer) = reflector::store::<SchemaMigration>();
    for i in 0..count {
        let sent = schema_migration(i);
        let mut obj: SchemaMigration = serde_json::from_slice(&sent).expect("a SchemaMigration");
        drop(sent);
        keep(&mut obj);
        writer.apply_watcher_event(&watcher::Event::Apply(obj));
    }
    assert_eq!(store.state().len(), count);
    let held = counting::live() - before;
    drop((store, writer));
    held
}

fn main() {
    let counts: Vec<usize> = match std::env::var("SCHEMAOP_BENCH_MIGRATIONS") {
        Ok(n) => vec![n.parse().expect("SCHEMAOP_BENCH_MIGRATIONS is a number")],
        Err(_) => vec![200, 1_000],
    };
    println!(
        "SchemaMigration caches: heap held by N kubectl-applied SchemaMigrations, {} B each as sent",
        schema_migration(0).len()
    );
    println!(
        "  (a SchemaMigration value alone is {} B, whatever it holds: the floor of a trimmed one)",
        std::mem::size_of::<SchemaMigration>()
    );
    let mib = |bytes: isize| bytes as f64 / 1048576.0;
    for count in counts {
        let whole = cached(count, |_| {});
        let controller = cached(count, cache::trim);
        let gates = cached(count, trim_migration);
        let per = |bytes: isize| bytes / count as isize;
        println!(
            "  N = {count:>5}: whole {:>6} B/object; controller {:>5} B/object ({:.1}x smaller); gates {:>5} B/object ({:.1}x smaller)",
            per(whole),
            per(controller),
            whole as f64 / controller as f64,
            per(gates),
            whole as f64 / gates as f64,
        );
        println!(
            "             both caches: whole twice {:>6.2} MiB, trimmed {:>6.2} MiB ({:.1}x smaller)",
            mib(2 * whole),
            mib(controller + gates),
            (2 * whole) as f64 / (controller + gates) as f64,
        );
    }
}
