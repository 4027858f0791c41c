//! The CustomResourceDefinition on a real API server: it installs, `kubectl
//! explain` has its documentation, and its validation rules refuse what they
//! promise to refuse.

use std::time::{Duration, Instant};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use schemaop::crd::SchemaMigration;
use schemaop_e2e::{
    ErrorContext, Failure, Result, TestNamespace, cluster, crd_manifest, install_crd, merge,
};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes cluster: e2e/run.sh, or cargo test -p schemaop-e2e -- --ignored (e2e/README.md)"]
async fn crd_installs_and_explains() -> Result {
    let Some(client) = cluster().await else {
        return Ok(());
    };
    let manifest = crd_manifest()?;
    let established = install_crd(&client).await?;
    let name = established.name_any();

    let served = Api::<CustomResourceDefinition>::all(client.clone())
        .get(&name)
        .await
        .context(format!("reading {name} back"))?;
    let conditions = served
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    for type_ in ["Established", "NamesAccepted"] {
        assert!(
            conditions
                .iter()
                .any(|c| c.type_ == type_ && c.status == "True"),
            "{name} is not {type_}: {conditions:?}"
        );
    }
    let names = &served.spec.names;
    assert_eq!(names.kind, "SchemaMigration");
    assert_eq!(names.short_names.as_deref(), Some(&["smig".to_owned()][..]));
    assert_eq!(
        names.categories.as_deref(),
        Some(&["schemaop".to_owned()][..])
    );

    // The server keeps the schema as written: every description is there.
    let written = schema_of(&manifest)?;
    let kept = schema_of(&served)?;
    let descriptions = descriptions(&written, &written, "");
    assert!(
        descriptions.len() > 50,
        "the manifest documents only {} fields",
        descriptions.len()
    );
    for (path, description) in &descriptions {
        assert_eq!(
            described(&kept, &kept, path).as_deref(),
            Some(description.as_str()),
            "the stored CRD lost the description of {path}"
        );
    }
    let version = &served.spec.versions[0];
    let columns: Vec<&str> = version
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(columns, ["Current", "Target", "Ready", "Reason", "Age"]);
    assert!(
        version
            .subresources
            .as_ref()
            .is_some_and(|s| s.status.is_some()),
        "the status subresource is missing"
    );

    // `kubectl explain` reads the OpenAPI v3 document the server publishes,
    // which follows the CRD a moment later.
    published_schema(&client, &descriptions).await
}

/// The `openAPIV3Schema` of the first version, as JSON.
fn schema_of(crd: &CustomResourceDefinition) -> Result<Value> {
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .ok_or_else(|| Failure::new("the CRD has no openAPIV3Schema"))?;
    serde_json::to_value(schema).context("reading the schema")
}

/// Every described field as (`.spec.database.connection.sslMode`, description).
fn descriptions(schema: &Value, whole: &Value, path: &str) -> Vec<(String, String)> {
    let schema = resolve(schema, whole);
    let mut found = vec![];
    if let Some(description) = schema.get("description").and_then(Value::as_str) {
        found.push((path.to_owned(), description.to_owned()));
    }
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        for (name, property) in properties {
            found.extend(descriptions(property, whole, &format!("{path}.{name}")));
        }
    }
    // `kubectl explain` steps through arrays and maps without naming them.
    for nested in ["items", "additionalProperties"] {
        if let Some(inner) = schema.get(nested).filter(|v| v.is_object()) {
            found.extend(
                descriptions(inner, whole, path)
                    .into_iter()
                    .filter(|(p, _)| p != path),
            );
        }
    }
    found
}

/// The description at `path`, stepping through arrays, maps and references.
fn described(schema: &Value, whole: &Value, path: &str) -> Option<String> {
    let mut schema = resolve(schema, whole);
    for name in path.split('.').filter(|n| !n.is_empty()) {
        schema = resolve(step(schema, whole, name)?, whole);
    }
    schema
        .get("description")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

fn step<'a>(schema: &'a Value, whole: &'a Value, name: &str) -> Option<&'a Value> {
    if let Some(property) = schema.get("properties").and_then(|p| p.get(name)) {
        return Some(property);
    }
    ["items", "additionalProperties"]
        .iter()
        .filter_map(|nested| schema.get(*nested).filter(|v| v.is_object()))
        .find_map(|inner| step(resolve(inner, whole), whole, name))
}

/// Follows `$ref`, and `allOf` with one member, as the published document
/// uses them.
fn resolve<'a>(mut schema: &'a Value, whole: &'a Value) -> &'a Value {
    for _ in 0..8 {
        if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
            let pointer = reference.trim_start_matches('#');
            match whole.pointer(pointer) {
                Some(target) => schema = target,
                None => return schema,
            }
        } else if let Some([only]) = schema
            .get("allOf")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            && schema.get("properties").is_none()
        {
            schema = only;
        } else {
            return schema;
        }
    }
    schema
}

/// Waits up to 60s for the OpenAPI v3 document of schemaop.dev/v1alpha1,
/// which `kubectl explain` reads, to show every description of the CRD.
async fn published_schema(client: &Client, expected: &[(String, String)]) -> Result {
    const KEY: &str = "dev.schemaop.v1alpha1.SchemaMigration";
    let started = Instant::now();
    loop {
        let problems = async {
            let index: Value = client
                .request(http::Request::get("/openapi/v3").body(vec![])?)
                .await?;
            let url = index
                .pointer("/paths/apis~1schemaop.dev~1v1alpha1/serverRelativeURL")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    Failure::new("/openapi/v3 does not list apis/schemaop.dev/v1alpha1")
                })?
                .to_owned();
            let whole: Value = client
                .request(http::Request::get(url).body(vec![])?)
                .await?;
            let root = whole
                .pointer(&format!("/components/schemas/{KEY}"))
                .ok_or_else(|| Failure::new(format!("the OpenAPI document has no {KEY}")))?;
            Ok::<_, Failure>(
                expected
                    .iter()
                    .filter(|(path, description)| {
                        described(root, &whole, path).as_deref() != Some(description.as_str())
                    })
                    .map(|(path, _)| format!("schemamigration{path}"))
                    .collect::<Vec<_>>(),
            )
        }
        .await;
        let problem = match problems {
            Ok(missing) if missing.is_empty() => return Ok(()),
            Ok(missing) => format!(
                "`kubectl explain` would not show the descriptions written for {}",
                missing.join(", ")
            ),
            Err(error) => error.to_string(),
        };
        if started.elapsed() > Duration::from_secs(60) {
            return Err(Failure::new(format!(
                "after 60s, the published OpenAPI schema is still wrong: {problem}"
            )));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Offline: the walk above finds the manifest's documentation.
#[test]
fn the_manifest_documents_its_fields() -> Result {
    let schema = schema_of(&crd_manifest()?)?;
    let found = descriptions(&schema, &schema, "");
    for path in [
        "",
        ".spec",
        ".spec.database.connection.sslMode",
        ".spec.source.configMapRefs.name",
        ".spec.targetRevision",
        ".spec.timeouts.lockTimeout",
        ".status.conditions.reason",
        ".status.recentMigrations.version",
    ] {
        let description = found
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, d)| d.as_str());
        assert!(
            description.is_some_and(|d| !d.is_empty()),
            "no description for {path:?}"
        );
        assert_eq!(described(&schema, &schema, path).as_deref(), description);
    }
    assert!(found.len() > 50, "only {} descriptions", found.len());
    Ok(())
}

/// A valid object: the smallest useful spec.
fn minimal() -> Value {
    json!({
        "database": {"urlSecretRef": {"name": "app-db", "key": "url"}},
        "source": {"configMapRefs": [{"name": "app-migrations"}]},
    })
}

fn connection(ssl_mode: &str, ca: bool) -> Value {
    let mut connection = json!({
        "host": "db.example",
        "database": "app",
        "user": "app",
        "passwordSecretRef": {"name": "app-db", "key": "password"},
        "sslMode": ssl_mode,
    });
    if ca {
        connection["caSecretRef"] = json!({"name": "app-db-ca", "key": "ca.crt"});
    }
    connection
}

fn object(name: &str, spec: Value) -> Result<DynamicObject> {
    serde_json::from_value(json!({
        "apiVersion": "schemaop.dev/v1alpha1",
        "kind": "SchemaMigration",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .context("building a SchemaMigration")
}

/// The problem with `result` if it is not a 422 whose message holds every
/// one of `expected`.
fn refusal_problem<T>(result: kube::Result<T>, expected: &[&str]) -> Option<String> {
    match result {
        Ok(_) => Some("the API server accepted it".to_owned()),
        Err(kube::Error::Api(status)) if status.code == 422 => {
            let missing: Vec<&str> = expected
                .iter()
                .filter(|text| !status.message.contains(**text))
                .copied()
                .collect();
            (!missing.is_empty()).then(|| {
                format!(
                    "refused, but the message lacks {missing:?}: {}",
                    status.message
                )
            })
        }
        Err(error) => Some(format!("expected a 422 Invalid, got {error}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes cluster: e2e/run.sh, or cargo test -p schemaop-e2e -- --ignored (e2e/README.md)"]
async fn cel_rules_reject_bad_objects() -> Result {
    let Some(client) = cluster().await else {
        return Ok(());
    };
    install_crd(&client).await?;
    let namespace = TestNamespace::create(&client).await?;
    let resource = ApiResource::erase::<SchemaMigration>(&());
    let api = Api::<DynamicObject>::namespaced_with(client.clone(), &namespace.name, &resource);
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };

    // Each case changes one thing in a valid spec; a null removes the field.
    let bad_revision = ["spec.targetRevision", "should match"];
    let cases: Vec<(&str, Value, Vec<&str>)> = vec![
        (
            "both database kinds",
            json!({"database": {"connection": connection("disable", false)}}),
            vec![
                "spec.database",
                "set exactly one of urlSecretRef or connection",
            ],
        ),
        (
            "no database kind",
            json!({"database": {"urlSecretRef": null}}),
            vec![
                "spec.database",
                "set exactly one of urlSecretRef or connection",
            ],
        ),
        (
            "both sources",
            json!({"source": {"inline": {"0001_a.sql": "SELECT 1;"}}}),
            vec!["spec.source", "set exactly one of configMapRefs or inline"],
        ),
        (
            "no source",
            json!({"source": {"configMapRefs": null}}),
            vec!["spec.source", "set exactly one of configMapRefs or inline"],
        ),
        (
            "verify-full without a CA",
            json!({"database": {"urlSecretRef": null, "connection": connection("verify-full", false)}}),
            vec![
                "spec.database.connection",
                "sslMode verify-full needs caSecretRef",
            ],
        ),
        (
            "a CA without verify-full",
            json!({"database": {"urlSecretRef": null, "connection": connection("require", true)}}),
            vec![
                "spec.database.connection",
                "caSecretRef is only used with sslMode verify-full",
            ],
        ),
        (
            "targetRevision 0",
            json!({"targetRevision": "0"}),
            bad_revision.to_vec(),
        ),
        (
            "a negative targetRevision",
            json!({"targetRevision": "-1"}),
            bad_revision.to_vec(),
        ),
        (
            "a targetRevision with a prefix",
            json!({"targetRevision": "v2"}),
            bad_revision.to_vec(),
        ),
        (
            "a targetRevision beyond bigint",
            json!({"targetRevision": "1234567890123456789"}),
            bad_revision.to_vec(),
        ),
        (
            "a lockTimeout in words",
            json!({"timeouts": {"lockTimeout": "5 minutes"}}),
            vec!["spec.timeouts.lockTimeout", "should match"],
        ),
        (
            "a lockTimeout in days",
            json!({"timeouts": {"lockTimeout": "2d"}}),
            vec!["spec.timeouts.lockTimeout", "should match"],
        ),
        (
            "a lockTimeout over 24h",
            json!({"timeouts": {"lockTimeout": "25h"}}),
            vec!["spec.timeouts.lockTimeout", "must be at most 24h"],
        ),
        (
            "a statementTimeout over 24h",
            json!({"timeouts": {"statementTimeout": "24h1s"}}),
            vec!["spec.timeouts.statementTimeout", "must be at most 24h"],
        ),
        (
            "a zero runDeadline",
            json!({"timeouts": {"runDeadline": "0s"}}),
            vec!["spec.timeouts.runDeadline", "must be more than zero"],
        ),
        (
            "a zero minBackoff",
            json!({"retry": {"minBackoff": "0ms"}}),
            vec!["spec.retry.minBackoff", "must be more than zero"],
        ),
        (
            "minBackoff over maxBackoff",
            json!({"retry": {"minBackoff": "10m", "maxBackoff": "5m"}}),
            vec![
                "spec.retry",
                "minBackoff must not be longer than maxBackoff",
            ],
        ),
        (
            "minBackoff over the default maxBackoff",
            json!({"retry": {"minBackoff": "6m"}}),
            vec![
                "spec.retry",
                "minBackoff must not be longer than maxBackoff",
            ],
        ),
        (
            "a history schema that needs quoting",
            json!({"history": {"schema": "Public"}}),
            vec!["spec.history.schema", "should match"],
        ),
    ];

    // The valid object passes, so each refusal below is the case's doing.
    api.create(&dry_run, &object("valid", minimal())?)
        .await
        .context("creating a valid SchemaMigration (dry run)")?;

    let mut problems = vec![];
    for (i, (case, change, expected)) in cases.into_iter().enumerate() {
        let mut spec = minimal();
        merge(&mut spec, change);
        let result = api
            .create(&dry_run, &object(&format!("bad-{i}"), spec)?)
            .await;
        if let Some(problem) = refusal_problem(result, &expected) {
            problems.push(format!("{case}: {problem}"));
        }
    }

    // History is fixed once set; other fields still change.
    let created = api
        .create(&PostParams::default(), &object("history", minimal())?)
        .await
        .context("creating a SchemaMigration with the default history")?;
    let patch_dry_run = PatchParams {
        dry_run: true,
        ..PatchParams::default()
    };
    let history_rule = ["spec.history", "history cannot change"];
    for (case, change) in [
        ("a changed history table", json!({"table": "elsewhere"})),
        ("a changed history schema", json!({"schema": "migrations"})),
    ] {
        let result = api
            .patch(
                &created.name_any(),
                &patch_dry_run,
                &Patch::Merge(json!({"spec": {"history": change}})),
            )
            .await;
        if let Some(problem) = refusal_problem(result, &history_rule) {
            problems.push(format!("{case} on update: {problem}"));
        }
    }
    api.patch(
        &created.name_any(),
        &patch_dry_run,
        &Patch::Merge(json!({"spec": {"targetRevision": "5", "suspend": true}})),
    )
    .await
    .context("changing targetRevision and suspend of an existing SchemaMigration (dry run)")?;

    assert!(
        problems.is_empty(),
        "the API server did not refuse these as it should:\n{}",
        problems.join("\n")
    );
    Ok(())
}
