//! The controller, running in this process, against a real API server and a
//! real PostgreSQL database: the sample app's migrations from the
//! repository's `migrations/` folder, delivered in a ConfigMap.

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::ResourceExt;
use kube::api::{DeleteParams, Patch, PatchParams};
use schemaop::crd::conditions::{READY, RECONCILING, STALLED};
use schemaop::crd::{RunPhase, SchemaMigration};
use schemaop_e2e::{
    App, ErrorContext, Result, SETTLE_TIMEOUT, Setup, cluster, condition, events_about,
    occurrences, patch_spec, ready, stalled_with, state, wait_for,
};
use serde_json::json;

/// The identity `Setup` runs the controller as, as the history records it.
const APPLIED_BY: &str = "schemaop-operator/schemaop-e2e";

/// The tables of the sample app once migrated, and the history table.
fn all_tables() -> Vec<String> {
    [
        "connectors",
        "run_events",
        "runs",
        "schemaop_migrations",
        "workflow_connectors",
        "workflows",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// Whether `tables` holds every table in `expected`.
fn has_all(tables: &[String], expected: &[String]) -> bool {
    expected.iter().all(|table| tables.contains(table))
}

fn status_of(object: &SchemaMigration) -> &schemaop::crd::SchemaMigrationStatus {
    object
        .status
        .as_ref()
        .expect("a Ready SchemaMigration has a status")
}

/// `Type` is `status` (`True` or `False`).
fn assert_condition(object: &SchemaMigration, type_: &str, status: &str) {
    let seen = state(object, type_);
    assert_eq!(
        seen.as_ref().map(|(s, _)| s.as_str()),
        Some(status),
        "{type_} should be {status}, is {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes cluster: e2e/run.sh, or cargo test -p schemaop-e2e -- --ignored (e2e/README.md)"]
async fn migrates_to_latest_and_reports_kstatus() -> Result {
    let Some(client) = cluster().await else {
        return Ok(());
    };
    let setup = Setup::new(client).await?;
    let app = App::deploy(&setup, json!({})).await?;
    let api = setup.api::<SchemaMigration>();

    let object = wait_for(&api, &app.name, "Ready", SETTLE_TIMEOUT, ready).await?;
    let status = status_of(&object);
    let versions = app.versions();
    let latest = app.latest().to_string();
    assert_eq!(status.observed_generation, object.metadata.generation);
    assert_eq!(status.current_revision.as_deref(), Some(latest.as_str()));
    assert_eq!(status.target_revision.as_deref(), Some(latest.as_str()));
    assert_eq!(status.pending_migrations, Some(0));
    assert_eq!(
        status.run.as_ref().and_then(|r| r.phase),
        Some(RunPhase::Succeeded),
        "status.run.phase"
    );
    assert_condition(&object, READY, "True");
    assert_condition(&object, RECONCILING, "False");
    assert_condition(&object, STALLED, "False");
    assert_eq!(
        condition(&object, READY).map(|c| c.reason.as_str()),
        Some("UpToDate")
    );
    for type_ in [READY, RECONCILING, STALLED] {
        assert_eq!(
            condition(&object, type_).and_then(|c| c.observed_generation),
            object.metadata.generation,
            "{type_} describes an older generation"
        );
    }
    let recorded: Vec<i64> = status.recent_migrations.iter().map(|m| m.version).collect();
    assert_eq!(recorded, versions, "status.recentMigrations");

    let events = events_about(
        &setup.client,
        &setup.namespace.name,
        &object.uid().unwrap_or_default(),
    )
    .await?;
    assert_eq!(
        occurrences(&events, "Migrated"),
        1,
        "one Migrated Event for the run; Events: {:?}",
        events
            .iter()
            .map(|e| (e.reason.clone(), e.note.clone()))
            .collect::<Vec<_>>()
    );
    assert_eq!(occurrences(&events, "MigrationFailed"), 0);

    let tables = setup.database.tables("public").await?;
    assert!(
        has_all(&tables, &all_tables()),
        "the database has {tables:?}, expected at least {:?}",
        all_tables()
    );
    let applied = setup.database.applied().await?;
    assert_eq!(
        applied,
        versions
            .iter()
            .map(|v| (*v, APPLIED_BY.to_owned()))
            .collect::<Vec<_>>(),
        "the history table"
    );
    setup.operator.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes cluster: e2e/run.sh, or cargo test -p schemaop-e2e -- --ignored (e2e/README.md)"]
async fn changing_the_target_downgrades_when_allowed() -> Result {
    let Some(client) = cluster().await else {
        return Ok(());
    };
    let setup = Setup::new(client).await?;
    let app = App::deploy(&setup, json!({})).await?;
    let api = setup.api::<SchemaMigration>();
    wait_for(
        &api,
        &app.name,
        "Ready at the newest version",
        SETTLE_TIMEOUT,
        ready,
    )
    .await?;
    let versions = app.versions();
    assert!(
        versions.len() >= 3,
        "the sample app has too few migrations: {versions:?}"
    );

    // Allowed: down migrations run back to the second version.
    let second = versions[1].to_string();
    patch_spec(
        &api,
        &app.name,
        json!({"targetRevision": second, "allowDowngrade": true}),
    )
    .await?;
    let object = wait_for(
        &api,
        &app.name,
        &format!("Ready at {second}"),
        SETTLE_TIMEOUT,
        |o| {
            ready(o)
                && o.status
                    .as_ref()
                    .and_then(|s| s.current_revision.as_deref())
                    == Some(second.as_str())
        },
    )
    .await?;
    assert_condition(&object, RECONCILING, "False");
    assert_condition(&object, STALLED, "False");
    assert_eq!(
        status_of(&object).target_revision.as_deref(),
        Some(second.as_str())
    );
    let tables = setup.database.tables("public").await?;
    for table in ["workflows", "connectors", "workflow_connectors"] {
        assert!(
            tables.contains(&table.to_owned()),
            "{table} was dropped: {tables:?}"
        );
    }
    for table in ["runs", "run_events"] {
        assert!(
            !tables.contains(&table.to_owned()),
            "{table} is still there: {tables:?}"
        );
    }
    let applied: Vec<i64> = setup
        .database
        .applied()
        .await?
        .into_iter()
        .map(|(v, _)| v)
        .collect();
    assert_eq!(applied, versions[..2]);
    let events = events_about(
        &setup.client,
        &setup.namespace.name,
        &object.uid().unwrap_or_default(),
    )
    .await?;
    assert_eq!(
        occurrences(&events, "Reverted"),
        1,
        "one Reverted Event for the downgrade run"
    );

    // Not allowed: the operator stops and says why, and the database stays.
    let first = versions[0].to_string();
    patch_spec(
        &api,
        &app.name,
        json!({"targetRevision": first, "allowDowngrade": false}),
    )
    .await?;
    let object = wait_for(
        &api,
        &app.name,
        "Stalled with DowngradeNotAllowed",
        SETTLE_TIMEOUT,
        stalled_with("DowngradeNotAllowed"),
    )
    .await?;
    assert_condition(&object, READY, "False");
    assert_condition(&object, RECONCILING, "False");
    assert_eq!(
        status_of(&object).current_revision.as_deref(),
        Some(second.as_str()),
        "the database did not move"
    );
    let tables = setup.database.tables("public").await?;
    assert!(tables.contains(&"connectors".to_owned()), "{tables:?}");
    setup.operator.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes cluster: e2e/run.sh, or cargo test -p schemaop-e2e -- --ignored (e2e/README.md)"]
async fn a_broken_migration_stalls() -> Result {
    let Some(client) = cluster().await else {
        return Ok(());
    };
    let setup = Setup::new(client).await?;
    let app = App::deploy(&setup, json!({})).await?;
    let api = setup.api::<SchemaMigration>();
    wait_for(
        &api,
        &app.name,
        "Ready at the newest version",
        SETTLE_TIMEOUT,
        ready,
    )
    .await?;
    let latest = app.latest().to_string();

    // A new file in the ConfigMap; the controller watches it.
    let broken = format!("{}_add_broken_table.up.sql", app.latest() + 1);
    setup
        .api::<ConfigMap>()
        .patch(
            &app.config_map,
            &PatchParams::default(),
            &Patch::Merge(
                json!({"data": {&broken: "CREATE TABLE broken_table (id bigint PRIMARY KEY,);"}}),
            ),
        )
        .await
        .context("adding a broken migration to the ConfigMap")?;

    let object = wait_for(
        &api,
        &app.name,
        "Stalled with MigrationFailed",
        SETTLE_TIMEOUT,
        stalled_with("MigrationFailed"),
    )
    .await?;
    let stalled = condition(&object, STALLED).expect("Stalled is set");
    assert!(
        stalled.message.contains(&broken),
        "the message should name {broken}: {:?}",
        stalled.message
    );
    assert_condition(&object, READY, "False");
    assert_condition(&object, RECONCILING, "False");
    assert_eq!(
        condition(&object, READY).map(|c| c.reason.as_str()),
        Some("MigrationFailed")
    );
    assert_eq!(
        status_of(&object).current_revision.as_deref(),
        Some(latest.as_str()),
        "the failed migration left the revision where it was"
    );
    let events = events_about(
        &setup.client,
        &setup.namespace.name,
        &object.uid().unwrap_or_default(),
    )
    .await?;
    assert!(
        occurrences(&events, "MigrationFailed") >= 1,
        "a MigrationFailed Event; Events: {:?}",
        events.iter().map(|e| e.reason.clone()).collect::<Vec<_>>()
    );

    let tables = setup.database.tables("public").await?;
    assert!(!tables.contains(&"broken_table".to_owned()), "{tables:?}");
    let applied = setup.database.applied().await?;
    assert_eq!(applied.last().map(|(v, _)| *v), Some(app.latest()));

    // A failure is not retried while nothing changes: it stays Stalled.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let again = api
        .get(&app.name)
        .await
        .context("reading the SchemaMigration")?;
    assert!(
        stalled_with("MigrationFailed")(&again),
        "{:?}",
        again.status
    );
    setup.operator.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes cluster: e2e/run.sh, or cargo test -p schemaop-e2e -- --ignored (e2e/README.md)"]
async fn deleting_the_resource_leaves_the_schema() -> Result {
    let Some(client) = cluster().await else {
        return Ok(());
    };
    let setup = Setup::new(client).await?;
    let app = App::deploy(&setup, json!({})).await?;
    let api = setup.api::<SchemaMigration>();
    wait_for(
        &api,
        &app.name,
        "Ready at the newest version",
        SETTLE_TIMEOUT,
        ready,
    )
    .await?;
    let before = setup.database.applied().await?;

    api.delete(&app.name, &DeleteParams::default())
        .await
        .context("deleting the SchemaMigration")?;
    let started = std::time::Instant::now();
    while api
        .get_opt(&app.name)
        .await
        .context("reading the SchemaMigration")?
        .is_some()
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the SchemaMigration was not gone within 30s of its deletion"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Give the controller time to see the deletion and act, if it were to.
    tokio::time::sleep(Duration::from_secs(5)).await;

    let tables = setup.database.tables("public").await?;
    assert!(
        has_all(&tables, &all_tables()),
        "the database has {tables:?} after the deletion, expected at least {:?}",
        all_tables()
    );
    assert_eq!(
        setup.database.applied().await?,
        before,
        "the history is untouched"
    );
    // The SchemaMigration owned neither its Secret nor its ConfigMap.
    assert!(setup.api::<Secret>().get_opt(&app.secret).await?.is_some());
    assert!(
        setup
            .api::<ConfigMap>()
            .get_opt(&app.config_map)
            .await?
            .is_some()
    );
    setup.operator.stop().await
}
