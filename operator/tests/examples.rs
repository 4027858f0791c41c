//! The manifests under examples/ are what users copy first: they must say
//! what the code understands.

use std::path::Path;

use k8s_openapi::api::apps::v1::Deployment;
use schemaop::crd::SchemaMigration;
use schemaop::gates::{CONDITION_TYPE, MIGRATION_LABEL, MIN_REVISION_ANNOTATION};
use serde_json::Value;

fn documents(file: &str) -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn of_kind(docs: &[Value], kind: &str) -> Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .cloned()
        .unwrap_or_else(|| panic!("no {kind} in the example"))
}

#[test]
fn the_schemamigration_example_reads_as_the_resource() {
    let docs = documents("schemamigration.yaml");
    let smig: SchemaMigration = serde_json::from_value(of_kind(&docs, "SchemaMigration")).unwrap();
    let secret = of_kind(&docs, "Secret");
    let schemaop::crd::Database::UrlSecretRef(reference) = &smig.spec.database else {
        panic!("the example uses urlSecretRef");
    };
    assert_eq!(secret["metadata"]["name"], reference.name.as_str());
    assert!(secret["stringData"][reference.key.as_str()].is_string());
    smig.spec.timeouts.run_deadline().unwrap();
    smig.spec.retry.max_backoff().unwrap();
}

#[test]
fn the_alembic_example_runs_its_image_as_a_job_that_builds() {
    let docs = documents("schemamigration-alembic.yaml");
    let smig: SchemaMigration = serde_json::from_value(of_kind(&docs, "SchemaMigration")).unwrap();
    let job = smig.spec.job.as_ref().expect("the example uses spec.job");
    assert_eq!(job.tool, schemaop::crd::Tool::Alembic);
    assert!(smig.spec.source.is_none());
    let secret = of_kind(&docs, "Secret");
    let schemaop::crd::Database::UrlSecretRef(reference) = &smig.spec.database else {
        panic!("the example uses urlSecretRef");
    };
    assert_eq!(secret["metadata"]["name"], reference.name.as_str());
    // The operator can make its Job, and the Job runs the command wrapped.
    let mut smig = smig.clone();
    smig.metadata.namespace = Some("default".into());
    smig.metadata.uid = Some("uid".into());
    let settings = schemaop::controller::job::JobSettings {
        wrapper_image: Some("schemaop:dev".into()),
    };
    let built = schemaop::controller::job::build(&smig, job, &settings).unwrap();
    let container = &built.spec.unwrap().template.spec.unwrap().containers[0];
    let command = container.command.clone().unwrap();
    assert_eq!(
        command[..4],
        ["/schemaop/schemaop", "exec", "--tool", "alembic"]
    );
    assert_eq!(command[command.len() - 3..], ["alembic", "upgrade", "head"]);
}

#[test]
fn the_gated_deployment_opts_in_as_the_operator_expects() {
    let docs = documents("deployment-with-gate.yaml");
    let deployment: Deployment = serde_json::from_value(of_kind(&docs, "Deployment")).unwrap();
    let template = deployment.spec.unwrap().template;
    let metadata = template.metadata.unwrap();
    assert_eq!(metadata.labels.unwrap()[MIGRATION_LABEL], "app");
    let min = &metadata.annotations.unwrap()[MIN_REVISION_ANNOTATION];
    assert!(min.parse::<i64>().is_ok_and(|v| v > 0), "{min}");
    let gates = template.spec.unwrap().readiness_gates.unwrap();
    assert!(gates.iter().any(|g| g.condition_type == CONDITION_TYPE));
}

#[test]
fn the_init_container_example_calls_wait() {
    let docs = documents("deployment-with-wait.yaml");
    let deployment: Deployment = serde_json::from_value(of_kind(&docs, "Deployment")).unwrap();
    let init = deployment
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .init_containers
        .unwrap();
    let args = init[0].args.clone().unwrap();
    assert_eq!(args[0], "wait");
    assert!(args.contains(&"--migration".to_string()));
    let role = of_kind(&docs, "Role");
    assert_eq!(role["rules"][0]["resources"][0], "schemamigrations");
}

#[test]
fn the_chart_ships_the_generated_crd() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let generated = std::fs::read_to_string(root.join("crds/schemamigration.yaml")).unwrap();
    let shipped =
        std::fs::read_to_string(root.join("charts/schemaop/crds/schemamigration.yaml")).unwrap();
    assert!(
        generated == shipped,
        "charts/schemaop/crds/schemamigration.yaml differs from crds/schemamigration.yaml; \
         copy it: cp crds/schemamigration.yaml charts/schemaop/crds/"
    );
}
