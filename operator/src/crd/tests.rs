//! Tests of the generated CustomResourceDefinition: its identity, its
//! documentation, and how its schema and CEL rules judge good and bad objects.
//!
//! The apiserver is not available here, so objects are judged the way it would
//! judge them, in two passes: a small checker for the OpenAPI keywords the
//! schema uses (types, required, patterns, lengths, ranges, enums, oneOf,
//! list-map keys), then the CEL rules, evaluated by kube's client-side CEL
//! validator after the schema defaults are applied.

use std::path::PathBuf;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::core::cel::{Validator, apply_defaults, compile_schema};
use serde_json::{Value, json};

use super::*;

/// Set to regenerate the checked-in CRD instead of comparing against it.
const UPDATE_ENV: &str = "SCHEMAOP_UPDATE_CRD";

fn checked_in_crd_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../crds/schemamigration.yaml")
}

fn crd() -> CustomResourceDefinition {
    SchemaMigration::crd()
}

fn open_api_schema() -> Value {
    let crd = crd();
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .expect("the CRD has an openAPIV3Schema");
    serde_json::to_value(schema).unwrap()
}

#[test]
fn checked_in_crd_is_up_to_date() {
    let path = checked_in_crd_path();
    let generated = crd_yaml();
    if std::env::var_os(UPDATE_ENV).is_some() {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "{} is out of date with the Rust types in operator/src/crd. Regenerate it with \
         `cargo run -- crd > crds/schemamigration.yaml` (or `{UPDATE_ENV}=1 cargo test -p schemaop --lib crd`) \
         and commit the result.",
        path.display()
    );
}

#[test]
fn crd_yaml_parses_back_to_the_same_definition() {
    let parsed: CustomResourceDefinition = serde_saphyr::from_str(&crd_yaml()).unwrap();
    assert_eq!(parsed, crd());
}

#[test]
fn crd_has_the_agreed_identity() {
    let crd = crd();
    assert_eq!(
        crd.metadata.name.as_deref(),
        Some("schemamigrations.schemaop.dev")
    );
    assert_eq!(crd.spec.group, "schemaop.dev");
    assert_eq!(crd.spec.scope, "Namespaced");
    assert_eq!(crd.spec.names.kind, "SchemaMigration");
    assert_eq!(crd.spec.names.plural, "schemamigrations");
    assert_eq!(crd.spec.names.short_names, Some(vec!["smig".to_owned()]));
    assert_eq!(crd.spec.names.categories, Some(vec!["schemaop".to_owned()]));

    assert_eq!(crd.spec.versions.len(), 1);
    let version = &crd.spec.versions[0];
    assert_eq!(version.name, "v1alpha1");
    assert!(version.served && version.storage);
    assert!(
        version
            .subresources
            .as_ref()
            .is_some_and(|s| s.status.is_some()),
        "the status subresource must be on, so that spec writers cannot overwrite status"
    );
}

#[test]
fn crd_has_the_agreed_printer_columns() {
    let crd = crd();
    let columns: Vec<(String, String, String)> = crd.spec.versions[0]
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| (c.name.clone(), c.type_.clone(), c.json_path.clone()))
        .collect();
    let expected = [
        ("Current", "string", ".status.currentRevision"),
        ("Target", "string", ".spec.targetRevision"),
        (
            "Ready",
            "string",
            r#".status.conditions[?(@.type=="Ready")].status"#,
        ),
        (
            "Reason",
            "string",
            r#".status.conditions[?(@.type=="Ready")].reason"#,
        ),
        ("Age", "date", ".metadata.creationTimestamp"),
    ]
    .map(|(n, t, p)| (n.to_owned(), t.to_owned(), p.to_owned()));
    assert_eq!(columns, expected);
}

/// Calls `visit(path, schema)` for every property, list item and map value
/// under `schema`.
fn walk(schema: &Value, path: &str, visit: &mut dyn FnMut(&str, &Value)) {
    visit(path, schema);
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        for (name, property) in properties {
            walk(property, &format!("{path}.{name}"), visit);
        }
    }
    if let Some(items) = schema.get("items") {
        walk(items, &format!("{path}[]"), visit);
    }
    if let Some(values) = schema.get("additionalProperties").filter(|v| v.is_object()) {
        walk(values, &format!("{path}{{}}"), visit);
    }
}

#[test]
fn every_field_is_documented() {
    // `kubectl explain` prints these descriptions; an empty one leaves a user
    // guessing.
    let mut undocumented = vec![];
    walk(&open_api_schema(), "", &mut |path, schema| {
        // Map values and list items are described by the field that holds them.
        if path.ends_with("{}") || path.ends_with("[]") {
            return;
        }
        let description = schema
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or("");
        if description.trim().is_empty() {
            undocumented.push(if path.is_empty() { "<root>" } else { path }.to_owned());
        }
    });
    assert!(
        undocumented.is_empty(),
        "fields without a description: {undocumented:?}"
    );
}

#[test]
fn descriptions_state_the_defaults() {
    let mut missing = vec![];
    walk(&open_api_schema(), "", &mut |path, schema| {
        let (Some(default), Some(description)) = (
            schema.get("default"),
            schema.get("description").and_then(Value::as_str),
        ) else {
            return;
        };
        // Whole-object defaults are spelled out field by field.
        if default.is_object() {
            return;
        }
        let shown = match default {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let description = description.split_whitespace().collect::<Vec<_>>().join(" ");
        if !description.contains(&format!("Default: `{shown}`")) {
            missing.push(format!("{path} (default {shown})"));
        }
    });
    assert!(
        missing.is_empty(),
        "descriptions that do not state the default: {missing:?}"
    );
}

/// Every CEL rule in the schema, with where it sits.
fn cel_rules() -> Vec<(String, String)> {
    let mut rules = vec![];
    walk(&open_api_schema(), "", &mut |path, schema| {
        for rule in schema
            .get("x-kubernetes-validations")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let text = rule["rule"].as_str().unwrap_or_default().to_owned();
            assert!(
                rule.get("message")
                    .and_then(Value::as_str)
                    .is_some_and(|m| !m.is_empty()),
                "the rule at {path} has no message: the apiserver would answer with the bare rule"
            );
            rules.push((path.to_owned(), text));
        }
    });
    rules
}

#[test]
fn schema_has_the_cel_rules() {
    let at: Vec<String> = cel_rules().into_iter().map(|(path, _)| path).collect();
    for expected in [
        ".spec.database",
        ".spec.database.connection",
        ".spec.source",
        ".spec.history",
        ".spec.timeouts.lockTimeout",
        ".spec.timeouts.statementTimeout",
        ".spec.timeouts.runDeadline",
        ".spec.retry",
        ".spec.retry.minBackoff",
    ] {
        assert!(
            at.iter().any(|p| p == expected),
            "no CEL rule at {expected}; rules at {at:?}"
        );
    }
}

#[test]
fn cel_rules_compile() {
    for (path, rule) in cel_rules() {
        let compiled = compile_schema(&json!({
            "type": "object",
            "x-kubernetes-validations": [{"rule": rule}],
        }));
        let errors = compiled.compilation_errors();
        assert!(
            errors.is_empty(),
            "the rule at {path} does not compile: {rule}: {errors:?}"
        );
    }
}

#[test]
fn schema_requires_one_of_each_alternative() {
    let schema = open_api_schema();
    let spec = &schema["properties"]["spec"];
    // `source` or `job`: a CEL rule on the spec says which is missing.
    assert_eq!(spec["required"], json!(["database"]));
    assert_eq!(
        spec["properties"]["database"]["oneOf"],
        json!([{"required": ["urlSecretRef"]}, {"required": ["connection"]}])
    );
    assert_eq!(
        spec["properties"]["source"]["oneOf"],
        json!([{"required": ["configMapRefs"]}, {"required": ["inline"]}])
    );
    let connection = &spec["properties"]["database"]["properties"]["connection"];
    assert_eq!(
        connection["required"],
        json!(["database", "host", "passwordSecretRef", "user"])
    );
}

#[test]
fn conditions_merge_by_type_under_server_side_apply() {
    let schema = open_api_schema();
    let conditions = &schema["properties"]["status"]["properties"]["conditions"];
    assert_eq!(conditions["x-kubernetes-list-type"], "map");
    assert_eq!(conditions["x-kubernetes-list-map-keys"], json!(["type"]));
    assert!(
        conditions["items"]["required"]
            .as_array()
            .unwrap()
            .contains(&json!("type")),
        "a list-map key must be required"
    );
}

#[test]
fn recent_migrations_limit_matches_the_schema() {
    let schema = open_api_schema();
    assert_eq!(
        schema["properties"]["status"]["properties"]["recentMigrations"]["maxItems"],
        json!(status::RECENT_MIGRATIONS_LIMIT)
    );
}

// --- judging objects ------------------------------------------------------

/// Checks `value` against the OpenAPI keywords the schema uses, the way the
/// apiserver does before it runs CEL rules.
fn check_schema(schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
    let mut fail = |problem: String| errors.push(format!("{path}: {problem}"));

    if value.is_null() {
        if schema.get("nullable") != Some(&json!(true)) {
            fail("must not be null".into());
        }
        return;
    }

    let expected = schema.get("type").and_then(Value::as_str);
    let actual = match value {
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
        Value::Null => unreachable!(),
    };
    if let Some(expected) = expected
        && expected != actual
    {
        fail(format!("must be of type {expected}, not {actual}"));
        return;
    }

    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        fail(format!("{value} is not one of {allowed:?}"));
    }

    match value {
        Value::String(s) => {
            let length = s.chars().count() as u64;
            if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
                && length < min
            {
                fail(format!("must be at least {min} characters"));
            }
            if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
                && length > max
            {
                fail(format!("must be at most {max} characters"));
            }
            if let Some(pattern) = schema.get("pattern").and_then(Value::as_str)
                && !regex::Regex::new(pattern).unwrap().is_match(s)
            {
                fail(format!("{s:?} does not match {pattern}"));
            }
            if schema.get("format") == Some(&json!("date-time"))
                && s.parse::<jiff::Timestamp>().is_err()
            {
                fail(format!("{s:?} is not a date-time"));
            }
        }
        Value::Number(n) => {
            let n = n.as_f64().unwrap();
            if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
                && n < min
            {
                fail(format!("must be at least {min}"));
            }
            if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
                && n > max
            {
                fail(format!("must be at most {max}"));
            }
        }
        Value::Array(items) => {
            if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
                && (items.len() as u64) < min
            {
                fail(format!("must have at least {min} items"));
            }
            if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
                && (items.len() as u64) > max
            {
                fail(format!("must have at most {max} items"));
            }
            if let Some(keys) = schema
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
            {
                let mut seen = vec![];
                for item in items {
                    let key: Vec<&Value> =
                        keys.iter().map(|k| &item[k.as_str().unwrap()]).collect();
                    if seen.contains(&key) {
                        fail(format!("duplicate entry for key {key:?}"));
                    }
                    seen.push(key);
                }
            }
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check_schema(item_schema, item, &format!("{path}[{i}]"), errors);
                }
            }
        }
        Value::Object(fields) => {
            let required = schema.get("required").and_then(Value::as_array);
            for name in required.into_iter().flatten() {
                let name = name.as_str().unwrap();
                if !fields.contains_key(name) {
                    fail(format!("{name} is required"));
                }
            }
            if let Some(min) = schema.get("minProperties").and_then(Value::as_u64)
                && (fields.len() as u64) < min
            {
                fail(format!("must have at least {min} entries"));
            }
            if let Some(branches) = schema.get("oneOf").and_then(Value::as_array) {
                let matching = branches
                    .iter()
                    .filter(|branch| {
                        branch["required"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .all(|name| fields.contains_key(name.as_str().unwrap()))
                    })
                    .count();
                if matching != 1 {
                    fail(format!(
                        "must match exactly one oneOf branch, matches {matching}"
                    ));
                }
            }
            let properties = schema.get("properties").and_then(Value::as_object);
            let values = schema.get("additionalProperties").filter(|v| v.is_object());
            for (name, field) in fields {
                let field_path = format!("{path}.{name}");
                match (properties.and_then(|p| p.get(name)), values) {
                    (Some(property), _) => check_schema(property, field, &field_path, errors),
                    (None, Some(values)) => check_schema(values, field, &field_path, errors),
                    // The apiserver drops unknown fields; `kubectl apply`
                    // rejects them. Either way it is a mistake in a sample.
                    (None, None) => errors.push(format!("{field_path}: unknown field")),
                }
            }
        }
        Value::Bool(_) | Value::Null => {}
    }
}

/// The apiserver's verdict on creating (`old` is None) or updating an object:
/// every problem it would report, schema and CEL alike.
fn admit(object: &Value, old: Option<&Value>) -> Vec<String> {
    let schema = open_api_schema();
    let defaulted = apply_defaults(&schema, object);
    let mut errors = vec![];
    check_schema(&schema, &defaulted, "", &mut errors);
    if let Err(failures) = Validator::new().validate(&schema, object, old) {
        errors.extend(
            failures
                .iter()
                .map(|f| format!("{}: {}", f.field_path, f.message)),
        );
    }
    errors
}

fn assert_admitted(object: &Value) {
    let errors = admit(object, None);
    assert!(
        errors.is_empty(),
        "expected {object:#} to be admitted, got {errors:#?}"
    );
}

/// Asserts that the object is refused with an error containing `expected`.
fn assert_refused(object: &Value, expected: &str) {
    let errors = admit(object, None);
    assert!(
        errors.iter().any(|e| e.contains(expected)),
        "expected {object:#} to be refused with {expected:?}, got {errors:#?}"
    );
}

/// The smallest useful object: a URL Secret and one ConfigMap.
fn minimal() -> Value {
    json!({
        "spec": {
            "database": {"urlSecretRef": {"name": "app-db", "key": "url"}},
            "source": {"configMapRefs": [{"name": "app-migrations"}]},
        }
    })
}

/// An object that sets every field.
fn full() -> Value {
    json!({
        "spec": {
            "database": {
                "connection": {
                    "host": "app-db-rw.databases.svc",
                    "port": 6432,
                    "database": "app",
                    "user": "migrator",
                    "passwordSecretRef": {"name": "app-db-migrator", "key": "password"},
                    "sslMode": "verify-full",
                    "caSecretRef": {"name": "app-db-ca", "key": "ca.crt"},
                }
            },
            "source": {"inline": {
                "0001_create_users.up.sql": "CREATE TABLE users (id bigint PRIMARY KEY);",
                "0001_create_users.down.sql": "DROP TABLE users;",
            }},
            "targetRevision": "1",
            "allowDowngrade": true,
            "allowOutOfOrder": true,
            "history": {"schema": "migrations", "table": "history"},
            "timeouts": {"lockTimeout": "2.5s", "statementTimeout": "1h30m", "runDeadline": "2h"},
            "retry": {"limit": 0, "minBackoff": "500ms", "maxBackoff": "500ms"},
            "suspend": true,
        }
    })
}

/// `object` with the value at `pointer` replaced (or added), or removed when
/// `value` is null.
fn with(mut object: Value, pointer: &str, value: Value) -> Value {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let parent = object
        .pointer_mut(parent)
        .and_then(Value::as_object_mut)
        .unwrap_or_else(|| panic!("no object at {parent}"));
    if value.is_null() {
        parent.remove(key);
    } else {
        parent.insert(key.to_owned(), value);
    }
    object
}

#[test]
fn good_objects_are_admitted() {
    assert_admitted(&minimal());
    assert_admitted(&full());
    assert_admitted(&with(
        minimal(),
        "/spec/database",
        json!({"connection": {
            "host": "10.0.0.7",
            "database": "app",
            "user": "app",
            "passwordSecretRef": {"name": "app", "key": "password"},
            "sslMode": "disable",
        }}),
    ));
    assert_admitted(&with(
        minimal(),
        "/spec/source/configMapRefs",
        json!([{"name": "migrations-1"}, {"name": "migrations-2"}]),
    ));
    for revision in [
        "latest",
        "1",
        "0007",
        "20260101120000",
        "999999999999999999",
    ] {
        assert_admitted(&with(minimal(), "/spec/targetRevision", json!(revision)));
    }
    for lock_timeout in ["0", "0s", "5s", "250ms", "1h30m", "1.5h", "24h"] {
        assert_admitted(&with(
            minimal(),
            "/spec/timeouts",
            json!({"lockTimeout": lock_timeout}),
        ));
    }
}

#[test]
fn database_needs_exactly_one_way_in() {
    let connection = full()["spec"]["database"]["connection"].clone();
    let both = with(minimal(), "/spec/database/connection", connection);
    assert_refused(&both, "set exactly one of urlSecretRef or connection");
    assert_refused(&both, "exactly one oneOf branch");

    let neither = with(minimal(), "/spec/database", json!({}));
    assert_refused(&neither, "set exactly one of urlSecretRef or connection");

    assert_refused(
        &with(minimal(), "/spec/database", Value::Null),
        ".spec: database is required",
    );
}

#[test]
fn source_needs_exactly_one_kind() {
    let both = with(
        minimal(),
        "/spec/source/inline",
        json!({"0001_a.sql": "SELECT 1;"}),
    );
    assert_refused(&both, "set exactly one of configMapRefs or inline");

    let neither = with(minimal(), "/spec/source", json!({}));
    assert_refused(&neither, "set exactly one of configMapRefs or inline");

    assert_refused(
        &with(minimal(), "/spec/source/configMapRefs", json!([])),
        "at least 1 items",
    );
    assert_refused(
        &with(minimal(), "/spec/source", json!({"inline": {}})),
        "at least 1 entries",
    );
    assert_refused(
        &with(
            minimal(),
            "/spec/source/configMapRefs",
            json!([{"name": "m"}, {"name": "m"}]),
        ),
        "duplicate entry",
    );
    assert_refused(
        &with(
            minimal(),
            "/spec/source/configMapRefs",
            json!([{"name": "Bad_Name"}]),
        ),
        "does not match",
    );
}

#[test]
fn verify_full_needs_a_ca_and_only_verify_full_takes_one() {
    let without_ca = with(full(), "/spec/database/connection/caSecretRef", Value::Null);
    assert_refused(&without_ca, "sslMode verify-full needs caSecretRef");

    let require_with_ca = with(
        full(),
        "/spec/database/connection/sslMode",
        json!("require"),
    );
    assert_refused(
        &require_with_ca,
        "caSecretRef is only used with sslMode verify-full",
    );

    // The default mode, require, takes no CA either.
    let default_with_ca = with(full(), "/spec/database/connection/sslMode", Value::Null);
    assert_refused(
        &default_with_ca,
        "caSecretRef is only used with sslMode verify-full",
    );

    assert_refused(
        &with(full(), "/spec/database/connection/sslMode", json!("prefer")),
        "is not one of",
    );
}

#[test]
fn connection_fields_are_bounded() {
    for (pointer, value, expected) in [
        ("/spec/database/connection/port", json!(0), "at least 1"),
        (
            "/spec/database/connection/port",
            json!(65536),
            "at most 65535",
        ),
        (
            "/spec/database/connection/host",
            json!(""),
            "at least 1 characters",
        ),
        (
            "/spec/database/connection/user",
            json!("u".repeat(64)),
            "at most 63 characters",
        ),
        (
            "/spec/database/connection/user",
            Value::Null,
            "user is required",
        ),
        (
            "/spec/database/connection/passwordSecretRef/key",
            json!("a key"),
            "does not match",
        ),
    ] {
        assert_refused(&with(full(), pointer, value), expected);
    }
}

#[test]
fn target_revision_is_latest_or_a_positive_integer() {
    for bad in [
        "",
        "0",
        "000",
        "-1",
        "+1",
        "v1",
        "1.5",
        "LATEST",
        "1234567890123456789",
    ] {
        assert_refused(
            &with(minimal(), "/spec/targetRevision", json!(bad)),
            "targetRevision must be `latest` or a positive integer version",
        );
    }
    assert_refused(
        &with(minimal(), "/spec/targetRevision", json!(7)),
        "must be of type string",
    );
}

/// A SchemaMigration whose migrations are an Alembic project's, run as a Job.
fn with_job() -> Value {
    let object = with(minimal(), "/spec/source", Value::Null);
    with(
        object,
        "/spec/job",
        json!({
            "image": "registry.example.com/app:1.4.2",
            "command": ["alembic", "upgrade", "head"],
            "tool": "alembic",
        }),
    )
}

#[test]
fn a_job_is_the_other_kind_of_source() {
    assert_admitted(&with_job());
    assert_admitted(&with(with_job(), "/spec/targetRevision", json!("head")));
    assert_admitted(&with(
        with_job(),
        "/spec/targetRevision",
        json!("ae1027a6acf"),
    ));
    let both = with(
        with_job(),
        "/spec/source",
        json!({"configMapRefs": [{"name": "m"}]}),
    );
    assert_refused(&both, "set exactly one of spec.source");
    let neither = with(minimal(), "/spec/source", Value::Null);
    assert_refused(&neither, "set exactly one of spec.source");
    // Free text is for jobs only: schemaop's own files have versions.
    assert_refused(
        &with(minimal(), "/spec/targetRevision", json!("head")),
        "free text is only taken with spec.job",
    );
}

#[test]
fn a_job_names_an_image_a_command_and_a_known_tool() {
    assert_refused(
        &with(with_job(), "/spec/job/image", json!("")),
        "at least 1",
    );
    assert_refused(
        &with(with_job(), "/spec/job/command", json!([])),
        "at least 1",
    );
    assert_refused(
        &with(with_job(), "/spec/job/tool", Value::Null),
        "tool is required",
    );
    assert_refused(
        &with(with_job(), "/spec/job/tool", json!("liquibase")),
        "is not one of",
    );
    for tool in [
        "alembic",
        "flyway",
        "golang-migrate",
        "sqlx",
        "dbmate",
        "django",
        "none",
    ] {
        assert_admitted(&with(with_job(), "/spec/job/tool", json!(tool)));
    }
    assert_admitted(&with(
        with_job(),
        "/spec/job/versionTable",
        json!("app.alembic_version"),
    ));
    assert_refused(
        &with(with_job(), "/spec/job/versionTable", json!("a.b.c")),
        "does not match",
    );
}

#[test]
fn a_job_reads_with_safe_defaults() {
    let spec: SchemaMigrationSpec = serde_json::from_value(with_job()["spec"].clone()).unwrap();
    let job = spec.job.expect("a job");
    assert_eq!(job.tool, Tool::Alembic);
    assert!(job.wrap, "wrapped in schemaop exec by default");
    assert!(job.read_only_root_filesystem, "read-only root by default");
    assert!(job.args.is_empty() && job.env.is_empty() && job.volumes.is_empty());
    assert_eq!(spec.source, None);
    assert_eq!(spec.target_revision, "latest");
}

#[test]
fn history_names_are_plain_postgres_identifiers() {
    let too_long = "a".repeat(64);
    for bad in [
        "",
        "Public",
        "1st",
        "my-schema",
        "my schema",
        "\"quoted\"",
        &too_long,
    ] {
        let errors = admit(&with(full(), "/spec/history/schema", json!(bad)), None);
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with(".spec.history.schema:")),
            "{bad:?} should be refused, got {errors:?}"
        );
    }
    assert_admitted(&with(
        full(),
        "/spec/history/table",
        json!("_schema_history_2"),
    ));
    assert_admitted(&with(full(), "/spec/history/table", json!("a".repeat(57))));
    // The audit log is `<table>_audit`, which must fit PostgreSQL's 63 bytes.
    let errors = admit(
        &with(full(), "/spec/history/table", json!("a".repeat(58))),
        None,
    );
    assert!(
        errors.iter().any(|e| e.starts_with(".spec.history.table:")),
        "a 58-character table should be refused, got {errors:?}"
    );
}

#[test]
fn history_cannot_change() {
    let old = full();
    assert!(admit(&old, Some(&old)).is_empty());

    let moved = with(full(), "/spec/history/table", json!("elsewhere"));
    let errors = admit(&moved, Some(&old));
    assert!(
        errors.iter().any(|e| e.contains("history cannot change")),
        "got {errors:?}"
    );

    // Leaving history out on update means the defaults, which is a change
    // from a custom table too.
    let defaulted = with(full(), "/spec/history", Value::Null);
    assert!(!admit(&defaulted, Some(&old)).is_empty());
    let unchanged_default = minimal();
    assert!(admit(&unchanged_default, Some(&minimal())).is_empty());
}

#[test]
fn durations_are_well_formed_and_bounded() {
    for (pointer, value, expected) in [
        ("/spec/timeouts/lockTimeout", "5 minutes", "does not match"),
        ("/spec/timeouts/lockTimeout", "5d", "does not match"),
        ("/spec/timeouts/lockTimeout", "-5s", "does not match"),
        ("/spec/timeouts/lockTimeout", "25h", "must be at most 24h"),
        (
            "/spec/timeouts/statementTimeout",
            "24h1s",
            "must be at most 24h",
        ),
        ("/spec/timeouts/runDeadline", "0", "must be more than zero"),
        ("/spec/timeouts/runDeadline", "0s", "must be more than zero"),
        ("/spec/retry/minBackoff", "0ms", "must be more than zero"),
        ("/spec/retry/maxBackoff", "", "at least 1 characters"),
    ] {
        assert_refused(&with(full(), pointer, json!(value)), expected);
    }
}

#[test]
fn retry_backoff_must_not_shrink() {
    let retry = json!({"minBackoff": "10m", "maxBackoff": "5m"});
    assert_refused(
        &with(minimal(), "/spec/retry", retry),
        "minBackoff must not be longer than maxBackoff",
    );
    // The default maxBackoff (5m) applies before the rule runs.
    assert_refused(
        &with(minimal(), "/spec/retry", json!({"minBackoff": "6m"})),
        "minBackoff must not be longer than maxBackoff",
    );
    assert_admitted(&with(
        minimal(),
        "/spec/retry",
        json!({"minBackoff": "1m30s", "maxBackoff": "90s"}),
    ));
    for (limit, expected) in [(-1, "at least 0"), (101, "at most 100")] {
        assert_refused(&with(full(), "/spec/retry/limit", json!(limit)), expected);
    }
}

#[test]
fn unknown_fields_are_reported() {
    assert_refused(
        &with(minimal(), "/spec/targetRevison", json!("3")),
        "unknown field",
    );
}

#[test]
fn rust_defaults_match_schema_defaults() {
    // What the controller reads after serde fills the defaults must be what
    // the apiserver stores after it fills them from the schema.
    let schema = open_api_schema();
    for object in [minimal(), full()] {
        let by_schema = apply_defaults(&schema, &object)["spec"].clone();
        let spec: SchemaMigrationSpec = serde_json::from_value(object["spec"].clone()).unwrap();
        assert_eq!(serde_json::to_value(&spec).unwrap(), by_schema);
    }
}

#[test]
fn minimal_manifest_reads_with_defaults() {
    let manifest = r#"
apiVersion: schemaop.dev/v1alpha1
kind: SchemaMigration
metadata:
  name: app
  namespace: shop
spec:
  database:
    urlSecretRef:
      name: app-db
      key: url
  source:
    configMapRefs:
      - name: app-migrations
"#;
    let object: SchemaMigration = serde_saphyr::from_str(manifest).unwrap();
    let spec = &object.spec;
    assert_eq!(
        spec.database,
        Database::UrlSecretRef(SecretKeyRef {
            name: "app-db".into(),
            key: "url".into()
        })
    );
    assert_eq!(
        spec.source,
        Some(Source::ConfigMapRefs(vec![ConfigMapRef {
            name: "app-migrations".into()
        }]))
    );
    assert_eq!(spec.job, None);
    assert_eq!(spec.target(), Ok(TargetRevision::Latest));
    assert!(!spec.allow_downgrade && !spec.allow_out_of_order && !spec.suspend);
    assert_eq!(spec.history, History::default());
    assert_eq!(spec.timeouts.lock_timeout(), Ok(Duration::from_millis(200)));
    assert_eq!(spec.timeouts.statement_timeout(), Ok(Duration::ZERO));
    assert_eq!(
        spec.timeouts.run_deadline(),
        Ok(Duration::from_secs(30 * 60))
    );
    assert_eq!(spec.retry.limit, 5);
    assert!(object.status.is_none());
}

#[test]
fn full_object_reads_as_typed_values() {
    let spec: SchemaMigrationSpec = serde_json::from_value(full()["spec"].clone()).unwrap();
    let Database::Connection(connection) = &spec.database else {
        panic!("expected a connection, got {:?}", spec.database);
    };
    assert_eq!(connection.port, 6432);
    assert_eq!(connection.ssl_mode, SslMode::VerifyFull);
    assert!(matches!(&spec.source, Some(Source::Inline(files)) if files.len() == 2));
    assert_eq!(spec.target(), Ok(TargetRevision::Version(1)));
    assert_eq!(
        spec.timeouts.lock_timeout(),
        Ok(Duration::from_millis(2500))
    );
    assert_eq!(spec.retry.min_backoff(), Ok(Duration::from_millis(500)));
}

#[test]
fn target_revision_parses_like_the_cel_rule() {
    // The pattern inside the rule's `matches('...')`.
    let pattern = TARGET_REVISION_RULE
        .split_once("matches('")
        .and_then(|(_, rest)| rest.split_once("')"))
        .map(|(pattern, _)| pattern)
        .expect("the rule matches a pattern");
    let pattern = regex::Regex::new(pattern).unwrap();
    for sample in [
        "latest",
        "1",
        "0007",
        "999999999999999999",
        "0",
        "",
        "-1",
        "+1",
        "v1",
        "1.0",
    ] {
        assert_eq!(
            pattern.is_match(sample),
            sample.parse::<TargetRevision>().is_ok(),
            "pattern and parser disagree on {sample:?}"
        );
    }
    assert_eq!("0007".parse(), Ok(TargetRevision::Version(7)));
    assert_eq!(TargetRevision::Version(7).to_string(), "7");
    assert_eq!(
        serde_json::to_value(TargetRevision::Latest).unwrap(),
        json!("latest")
    );
    let err = serde_json::from_value::<TargetRevision>(json!("v2")).unwrap_err();
    assert!(err.to_string().contains("positive integer"), "{err}");
}

#[test]
fn retry_backoff_doubles_up_to_the_maximum() {
    let retry = Retry::default();
    let waits: Vec<u64> = (1..=7)
        .map(|n| retry.backoff(n).unwrap().as_secs())
        .collect();
    assert_eq!(waits, [10, 20, 40, 80, 160, 300, 300]);
    assert_eq!(retry.backoff(0).unwrap(), Duration::from_secs(10));
    assert_eq!(retry.backoff(u32::MAX).unwrap(), Duration::from_secs(300));

    let broken = Retry {
        min_backoff: "soon".into(),
        ..Retry::default()
    };
    assert!(broken.backoff(1).is_err());
}

#[test]
fn status_written_by_the_operator_fits_the_schema() {
    let at: jiff::Timestamp = "2026-01-01T00:00:00.5Z".parse().unwrap();
    let mut status = SchemaMigrationStatus {
        observed_generation: Some(2),
        current_revision: Some("3".into()),
        target_revision: Some("5".into()),
        pending_migrations: Some(2),
        run: Some(RunStatus {
            phase: Some(RunPhase::Pending),
            attempt: Some(2),
            started_at: Some(at),
            finished_at: None,
            migration: Some(MigrationProgress {
                index: 1,
                total: 2,
                version: 4,
                description: "add orders".into(),
            }),
            lock_holder: Some(LockHolder {
                pid: 4242,
                application_name: Some("psql".into()),
                since: Some(at),
            }),
            job: Some("app-db-0123456789".into()),
            pod_phase: Some("Running".into()),
        }),
        ..Default::default()
    };
    status.record_applied(AppliedMigration::new(
        3,
        "add users",
        at,
        Duration::from_millis(1234),
    ));
    for type_ in [
        conditions::READY,
        conditions::RECONCILING,
        conditions::STALLED,
    ] {
        status.set_condition(
            Condition::new(
                type_,
                ConditionStatus::Unknown,
                Reason::WaitingForLock,
                "waiting",
            )
            .observed_generation(Some(2)),
        );
    }
    let object = json!({"spec": minimal()["spec"], "status": status});
    assert_admitted(&object);

    let unknown_status = with(
        object.clone(),
        "/status/conditions/0/status",
        json!("Maybe"),
    );
    assert_refused(&unknown_status, "is not one of");
    let duplicate = with(
        object,
        "/status/conditions/1/type",
        json!(conditions::READY),
    );
    assert_refused(&duplicate, "duplicate entry");
}
