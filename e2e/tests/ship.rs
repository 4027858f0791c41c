//! The operator as shipped: the image that the repository's Dockerfile builds,
//! installed with the Helm chart (two replicas, one leading through the Lease
//! `schemaop-leader`), migrating a PostgreSQL server in the cluster and
//! holding back the pods of an app until their schema is there.
//!
//! `e2e/run.sh` sets all of that up on kind and runs these tests; see "Full
//! flow on kind" in e2e/README.md. Each test skips, saying why, when no
//! cluster is reachable, or when the operator or its PostgreSQL is not
//! deployed in the cluster.
//!
//! Every test works in a namespace and a database of its own: the Secret
//! `app-db` with the database's URL, the ConfigMap `app-migrations` with the
//! sample app's migrations (the repository's `migrations/`, plus files the
//! test adds), the SchemaMigration `app`, and, where the story needs one, the
//! Deployment and Service `app` of `e2e/manifests/app.yaml`.

use std::collections::{BTreeMap, BTreeSet};
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use schemaop::crd::conditions::{READY, RECONCILING, STALLED};
use schemaop::crd::{RunPhase, SchemaMigration};
use schemaop::gates::{CONDITION_TYPE as GATE, MIN_REVISION_ANNOTATION};
use schemaop::leader::LEASE_NAME;
use schemaop_e2e::{
    ClusterDatabase, Deployed, ErrorContext, FIELD_MANAGER, Failure, OPERATOR_NAMESPACE, Result,
    TestNamespace, cluster, condition, deployed, pod_condition, pod_condition_is, ready, repo_root,
    rolled_out, rollout_summary, sample_migrations, schema_migration, stalled_with, summary,
    versions, wait_for, wait_for_rollout,
};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The app's replicas. The rollout test asserts that this many endpoints
/// are ready at every moment.
const REPLICAS: i32 = 2;

/// Generous, for a kind cluster on a small machine: pulling images,
/// scheduling pods and a migration that sleeps all fit in it many times.
const TIMEOUT: Duration = Duration::from_secs(300);

/// The name of the app's Deployment, Service and SchemaMigration.
const APP: &str = "app";
const SECRET: &str = "app-db";
const CONFIG_MAP: &str = "app-migrations";
/// The pod template label that says which version of the app a pod runs.
const VERSION_LABEL: &str = "app.kubernetes.io/version";

/// What the slow migrations create.
const RUN_STATS: &str = "CREATE TABLE run_stats (day date PRIMARY KEY, runs bigint NOT NULL);\n";

/// How often the tests look again while waiting.
const POLL: Duration = Duration::from_millis(250);

// ---------------------------------------------------------------------------
// The stories

/// New pods are held back by their readiness gate until the SchemaMigration
/// is Ready, then released; prints how long after the SchemaMigration became
/// Ready each gate opened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes cluster: e2e/run.sh, or cargo test -p schemaop-e2e -- --ignored (e2e/README.md)"]
async fn pods_wait_for_their_schema_then_become_ready() -> Result {
    let mut files = sample_migrations()?;
    let slow = add_slow_migration(&mut files, "backfill_run_stats", 10);
    let Some(stage) = Stage::new(files).await? else {
        return Ok(());
    };

    // The app comes first. Its pods run, but with no SchemaMigration `app`
    // yet the operator holds their gate False, so they are not Ready.
    stage.apply_app("1", None).await?;
    let held = stage
        .wait_for_pods("running and held back at the gate", |pods| {
            pods.len() == REPLICAS as usize
                && pods.iter().all(|pod| {
                    pod_condition_is(pod, "ContainersReady", "True")
                        && pod_condition_is(pod, GATE, "False")
                })
        })
        .await?;
    for pod in &held {
        assert!(
            pod_condition_is(pod, "Ready", "False"),
            "{} is Ready with its gate False: {}",
            pod.name_any(),
            describe(pod)
        );
        assert_eq!(
            gate_reason(pod),
            "MigrationNotFound",
            "{}: {}",
            pod.name_any(),
            describe(pod)
        );
    }
    assert_eq!(
        stage.ready_endpoints().await?.len(),
        0,
        "no pod takes traffic"
    );
    let metrics_before = stage.gate_release_metric().await;

    // Now the SchemaMigration. While it migrates (the last migration sleeps
    // for 10 s), no pod may be released. The pods are read before the
    // SchemaMigration: a pod released then was released after it was Ready,
    // so the read that follows must show it Ready.
    stage.create_schema_migration().await?;
    let api = stage.api::<SchemaMigration>();
    let started = Instant::now();
    let mut held_while_migrating = false;
    let migrated = loop {
        let pods = stage.app_pods().await?;
        let object = api.get(APP).await.context("reading the SchemaMigration")?;
        if ready(&object) {
            break object;
        }
        for pod in &pods {
            assert!(
                !pod_condition_is(pod, GATE, "True") && !pod_condition_is(pod, "Ready", "True"),
                "{} was released before the SchemaMigration was Ready: {}; the SchemaMigration: {}",
                pod.name_any(),
                describe(pod),
                summary(&object)
            );
        }
        let migrating = condition(&object, RECONCILING).is_some_and(|c| c.is_true());
        held_while_migrating |= migrating && pods.len() == REPLICAS as usize;
        if started.elapsed() > TIMEOUT {
            return Err(Failure::new(format!(
                "the SchemaMigration was not Ready within {TIMEOUT:?}; last seen: {}",
                summary(&object)
            )));
        }
        tokio::time::sleep(POLL).await;
    };
    assert!(
        held_while_migrating,
        "never saw the pods held back while the SchemaMigration was Reconciling (the migration \
         {slow} alone sleeps for 10s)"
    );

    // Then every pod is released and Ready, and the Service has them all.
    let released = stage
        .wait_for_pods("released and Ready", |pods| {
            pods.len() == REPLICAS as usize
                && pods.iter().all(|pod| {
                    pod_condition_is(pod, GATE, "True") && pod_condition_is(pod, "Ready", "True")
                })
        })
        .await?;
    stage
        .wait_for_endpoints("every pod", |ready| ready.len() == REPLICAS as usize)
        .await?;

    // The figure the issue asks for: from the SchemaMigration's Ready
    // transition to each pod's gate turning True. Conditions carry whole
    // seconds, so the operator's own histogram gives the precise figure.
    let ready_at = condition(&migrated, READY)
        .map(|c| c.last_transition_time)
        .ok_or_else(|| Failure::new("a Ready SchemaMigration without a Ready condition"))?;
    let finished_at = migrated
        .status
        .as_ref()
        .and_then(|s| s.run.as_ref())
        .and_then(|run| run.finished_at);
    println!(
        "e2e: SchemaMigration {APP} Ready at {ready_at} (Ready lastTransitionTime), its run \
         finished at {} (run.finishedAt)",
        finished_at.map_or_else(|| "?".to_owned(), |t| t.to_string())
    );
    for pod in &released {
        let gate_at = transition(pod, GATE)?;
        let pod_ready_at = transition(pod, "Ready")?;
        println!(
            "e2e:   pod {}: gate True at {gate_at}, {} after Ready{}; pod Ready at \
             {pod_ready_at}, {} after Ready",
            pod.name_any(),
            seconds(gate_at, ready_at),
            finished_at.map_or_else(String::new, |f| format!(
                " ({} after run.finishedAt)",
                seconds(gate_at, f)
            )),
            seconds(pod_ready_at, ready_at),
        );
        assert!(
            gate_at >= ready_at,
            "{}'s gate opened at {gate_at}, before the SchemaMigration was Ready at {ready_at}",
            pod.name_any()
        );
        assert!(
            gate_at.duration_since(ready_at) <= signed(Duration::from_secs(30)),
            "{}'s gate opened {} after the SchemaMigration was Ready",
            pod.name_any(),
            seconds(gate_at, ready_at)
        );
    }
    match (metrics_before, stage.gate_release_metric().await) {
        (Ok(before), Ok(after)) if before.leader == after.leader => {
            let count = after.count.saturating_sub(before.count);
            let sum = after.sum - before.sum;
            println!(
                "e2e:   the leader {} measured {count} gate releases, {:.3}s after Ready on \
                 average (schemaop_gate_release_latency_seconds)",
                after.leader,
                if count > 0 { sum / count as f64 } else { 0.0 }
            );
            assert!(
                count >= REPLICAS as u64,
                "schemaop_gate_release_latency_seconds counted {count} releases, not {REPLICAS}"
            );
        }
        (Ok(_), Ok(_)) => println!(
            "e2e:   the leader changed during the test; no figure from \
             schemaop_gate_release_latency_seconds"
        ),
        (Err(error), _) | (_, Err(error)) => {
            println!("e2e:   no figure from schemaop_gate_release_latency_seconds: {error}");
        }
    }
    Ok(())
}

/// The Alembic app of `operator/tests/fixtures/alembic_app`, in its own
/// image (`e2e/manifests/alembic-app.Dockerfile`, loaded by `e2e/run.sh`).
const ALEMBIC_IMAGE: &str = "schemaop-alembic-app:e2e";
/// Its head revision.
const ALEMBIC_HEAD: &str = "004_messages_received_index";

/// A SchemaMigration with `spec.job` runs the app's own `alembic upgrade
/// head` as a Job, under `schemaop exec` copied in from the operator's
/// image; the app's pods wait at their gate until the Job has succeeded and
/// the SchemaMigration is Ready at Alembic's head, read from the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes cluster: e2e/run.sh, or cargo test -p schemaop-e2e -- --ignored (e2e/README.md)"]
async fn an_alembic_job_migrates_and_pods_wait_for_it() -> Result {
    let Some(stage) = Stage::new(sample_migrations()?).await? else {
        return Ok(());
    };
    // The URL as an Alembic app keeps it; the Job's pod reads it by reference.
    let url = stage
        .database
        .url
        .replacen("postgres://", "postgresql+asyncpg://", 1);
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some("alembic-db".to_owned()),
            ..ObjectMeta::default()
        },
        string_data: Some([("url".to_owned(), url)].into()),
        ..Secret::default()
    };
    stage
        .api::<Secret>()
        .create(&PostParams::default(), &secret)
        .await
        .context("creating the Alembic app's database Secret")?;
    stage.apply_app("1", None).await?;
    stage
        .wait_for_pods("running and held back at the gate", |pods| {
            pods.len() == REPLICAS as usize
                && pods.iter().all(|pod| pod_condition_is(pod, GATE, "False"))
        })
        .await?;

    let object = schema_migration(
        APP,
        json!({
            "database": {"urlSecretRef": {"name": "alembic-db", "key": "url"}},
            "job": {
                "image": ALEMBIC_IMAGE,
                "command": ["alembic", "upgrade", "head"],
                "tool": "alembic",
            },
            "targetRevision": "head",
        }),
    )?;
    let api = stage.api::<SchemaMigration>();
    api.create(&PostParams::default(), &object)
        .await
        .context("creating the SchemaMigration with spec.job")?;

    // Until it is Ready no pod is released; while the Job runs, status.run
    // names it.
    let started = Instant::now();
    let mut job_seen = None;
    let migrated = loop {
        let pods = stage.app_pods().await?;
        let object = api.get(APP).await.context("reading the SchemaMigration")?;
        if ready(&object) {
            break object;
        }
        if let Some(job) = object
            .status
            .as_ref()
            .and_then(|s| s.run.as_ref())
            .and_then(|r| r.job.clone())
        {
            job_seen = Some(job);
        }
        for pod in &pods {
            assert!(
                !pod_condition_is(pod, GATE, "True"),
                "{} was released before the SchemaMigration was Ready: {}; the SchemaMigration: {}",
                pod.name_any(),
                describe(pod),
                summary(&object)
            );
        }
        if started.elapsed() > TIMEOUT {
            return Err(Failure::new(format!(
                "the SchemaMigration with spec.job was not Ready within {TIMEOUT:?}; last seen: {}",
                summary(&object)
            )));
        }
        tokio::time::sleep(POLL).await;
    };
    let status = migrated.status.as_ref().expect("a Ready status");
    assert_eq!(status.current_revision.as_deref(), Some(ALEMBIC_HEAD));
    assert_eq!(status.target_revision.as_deref(), Some("head"));
    let run = status.run.as_ref().expect("status.run");
    assert_eq!(run.phase, Some(RunPhase::Succeeded));
    let job = run.job.clone().expect("status.run.job");
    if let Some(seen) = job_seen {
        assert_eq!(seen, job, "the Job that ran is the one reported");
    }
    // The database is at Alembic's head, and exec audited the run.
    let rows = stage
        .database
        .query("SELECT version_num FROM alembic_version")
        .await?;
    assert_eq!(rows, vec![vec![ALEMBIC_HEAD.to_owned()]]);
    let audited = stage
        .database
        .query("SELECT count(*) FROM public.schemaop_migrations_audit WHERE tool = 'alembic'")
        .await?;
    assert_eq!(
        audited,
        vec![vec!["1".to_owned()]],
        "one exec in the audit log"
    );

    stage
        .wait_for_pods("released", |pods| {
            pods.len() == REPLICAS as usize
                && pods.iter().all(|pod| pod_condition_is(pod, GATE, "True"))
        })
        .await?;
    // The succeeded Job is deleted once its revision is recorded.
    let jobs = stage.api::<k8s_openapi::api::batch::v1::Job>();
    let deadline = Instant::now() + TIMEOUT;
    while jobs
        .get_opt(&job)
        .await
        .context("reading the Job")?
        .is_some()
    {
        if Instant::now() > deadline {
            return Err(Failure::new(format!(
                "Job {job} was not deleted after it succeeded"
            )));
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(())
}

/// A new migration and a new version of the app that needs it roll out
/// without a moment with fewer ready endpoints than replicas: the old pods
/// serve until the new ones pass their gate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes cluster: e2e/run.sh, or cargo test -p schemaop-e2e -- --ignored (e2e/README.md)"]
async fn a_new_version_rolls_out_without_an_unready_gap() -> Result {
    let Some(mut stage) = Stage::new(sample_migrations()?).await? else {
        return Ok(());
    };
    let api = stage.api::<SchemaMigration>();
    let v1 = stage.latest();

    // Version 1 runs on the sample schema.
    stage.create_schema_migration().await?;
    wait_for(&api, APP, "Ready", TIMEOUT, ready).await?;
    stage.apply_app("1", Some(v1)).await?;
    wait_for_rollout(&stage.client, &stage.namespace.name, APP, TIMEOUT).await?;
    stage
        .wait_for_endpoints("every pod of version 1", |ready| {
            ready.len() == REPLICAS as usize
        })
        .await?;
    let old: BTreeSet<String> = stage
        .app_pods()
        .await?
        .iter()
        .map(|p| p.name_any())
        .collect();

    // From here to the end of the rollout, every change of the Service's
    // endpoints is recorded.
    let endpoints = EndpointMonitor::start(&stage.client, &stage.namespace.name);
    endpoints.synced().await?;

    // Version 2 needs a migration the database does not have yet: its first
    // pod starts, and waits at its gate; the old pods keep serving.
    let v2 = v1 + 1;
    stage.apply_app("2", Some(v2)).await?;
    let waiting = stage
        .wait_for_pods("a pod of version 2 held back at its gate", |pods| {
            pods.iter().any(|pod| {
                version_of(pod) == "2"
                    && pod_condition_is(pod, "ContainersReady", "True")
                    && pod_condition_is(pod, GATE, "False")
            })
        })
        .await?;
    for pod in &waiting {
        if version_of(pod) == "2" {
            assert_eq!(gate_reason(pod), "WaitingForRevision", "{}", describe(pod));
            assert!(
                gate_message(pod).contains(&format!("needs revision {v2}")),
                "{}",
                describe(pod)
            );
            assert!(pod_condition_is(pod, "Ready", "False"), "{}", describe(pod));
        } else {
            assert!(pod_condition_is(pod, "Ready", "True"), "{}", describe(pod));
        }
    }
    assert_eq!(
        endpoints.ready_now().len(),
        REPLICAS as usize,
        "the old pods serve while the new one waits"
    );

    // The migration arrives (it sleeps for 10 s); as soon as the database
    // has it, the new pods pass their gate and the rollout moves on.
    let file = format!("{v2}_add_run_tags.up.sql");
    stage
        .add_migrations(&[(
            &file,
            "SELECT pg_sleep(10);\nALTER TABLE runs ADD COLUMN tags text[] NOT NULL DEFAULT '{}';\n",
        )])
        .await?;
    let deployments = stage.api::<Deployment>();
    let started = Instant::now();
    let mut fewest_available = i32::MAX;
    loop {
        let deployment = deployments
            .get(APP)
            .await
            .context("reading the Deployment")?;
        let available = deployment
            .status
            .as_ref()
            .and_then(|s| s.available_replicas)
            .unwrap_or(0);
        fewest_available = fewest_available.min(available);
        let pods = stage.app_pods().await?;
        if rolled_out(&deployment) && pods.iter().all(|p| version_of(p) == "2") {
            break;
        }
        if started.elapsed() > TIMEOUT {
            return Err(Failure::new(format!(
                "version 2 did not roll out within {TIMEOUT:?}; the Deployment: {}; the pods: {}",
                rollout_summary(&deployment),
                pods.iter().map(describe).collect::<Vec<_>>().join("; ")
            )));
        }
        tokio::time::sleep(POLL).await;
    }
    let seen = endpoints.stop().await;
    println!(
        "e2e: during the rollout the Service had {} to {} ready endpoints ({} changes, {} watch \
         errors); the Deployment had at least {fewest_available} available replicas",
        seen.fewest.unwrap_or_default(),
        seen.most,
        seen.timeline.len(),
        seen.errors.len()
    );
    for line in &seen.timeline {
        println!("e2e:   {line}");
    }
    assert!(
        seen.fewest.is_some_and(|n| n >= REPLICAS as usize),
        "the ready endpoints dropped below {REPLICAS} during the rollout: {:#?} (watch errors: \
         {:?})",
        seen.timeline,
        seen.errors
    );
    assert!(
        fewest_available >= REPLICAS,
        "the Deployment had only {fewest_available} available replicas during the rollout"
    );

    // The new pods run, the old ones are gone, and the database has v2.
    let pods = stage.app_pods().await?;
    assert!(
        pods.iter().all(|p| !old.contains(&p.name_any())),
        "old pods remain: {}",
        pods.iter().map(describe).collect::<Vec<_>>().join("; ")
    );
    let object = wait_for(&api, APP, &format!("Ready at {v2}"), TIMEOUT, |o| {
        ready(o) && current_revision(o) == Some(v2.to_string())
    })
    .await?;
    assert_eq!(
        condition(&object, READY).map(|c| c.reason.as_str()),
        Some("UpToDate")
    );
    let column = stage
        .database
        .query(
            "SELECT data_type FROM information_schema.columns \
             WHERE table_name = 'runs' AND column_name = 'tags'",
        )
        .await?;
    assert_eq!(column, [["ARRAY"]], "runs.tags after {file}");
    Ok(())
}

/// Deleting the leader pod while it applies a slow migration hands the Lease
/// over to the other replica, which applies the migration again from the
/// start; the audit log shows each migration applied exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes cluster: e2e/run.sh, or cargo test -p schemaop-e2e -- --ignored (e2e/README.md)"]
async fn killing_the_leader_mid_migration_applies_nothing_twice() -> Result {
    let Some(mut stage) = Stage::new(sample_migrations()?).await? else {
        return Ok(());
    };
    if stage.deployed.operator_replicas() < 2 {
        println!(
            "e2e: skipping: the operator runs {} replica, and a handover needs two (the chart's \
             default replicaCount)",
            stage.deployed.operator_replicas()
        );
        return Ok(());
    }
    let api = stage.api::<SchemaMigration>();
    stage.create_schema_migration().await?;
    wait_for(&api, APP, "Ready", TIMEOUT, ready).await?;

    // Two new migrations: the first sleeps for 20 s inside its transaction.
    let slow = stage.latest() + 1;
    let after = slow + 1;
    let slow_sql = format!("SELECT pg_sleep(20);\n{RUN_STATS}");
    stage
        .add_migrations(&[
            (&format!("{slow}_create_run_stats.up.sql"), &slow_sql),
            (
                &format!("{after}_index_run_stats.up.sql"),
                "CREATE INDEX run_stats_runs ON run_stats (runs);\n",
            ),
        ])
        .await?;
    wait_for(&api, APP, &format!("applying {slow}"), TIMEOUT, |object| {
        object
            .status
            .as_ref()
            .and_then(|s| s.run.as_ref())
            .is_some_and(|run| {
                run.phase == Some(RunPhase::Running)
                    && run.migration.as_ref().is_some_and(|m| m.version == slow)
            })
    })
    .await?;
    // The database agrees: the migration's transaction is in its sleep.
    let started = Instant::now();
    while stage
        .database
        .query(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND state = 'active' AND query LIKE '%pg_sleep(20)%' AND pid <> pg_backend_pid()",
        )
        .await?
        != [["1"]]
    {
        if started.elapsed() > Duration::from_secs(15) {
            return Err(Failure::new(format!(
                "the status says {slow} is running, but pg_stat_activity shows no pg_sleep(20) \
                 in {}",
                stage.database.name
            )));
        }
        tokio::time::sleep(POLL).await;
    }

    // Kill it there, as a node drain or a rollout would: the pod is deleted
    // and its process gets SIGTERM.
    let killed = current_leader(&stage.client)
        .await?
        .ok_or_else(|| Failure::new(format!("the Lease {LEASE_NAME} has no holder")))?;
    let operator_pods = stage.operator_pods().await?;
    assert!(
        operator_pods.iter().any(|p| p.name_any() == killed),
        "the Lease holder {killed} is not one of the operator's pods"
    );
    let standbys: Vec<String> = operator_pods
        .iter()
        .map(ResourceExt::name_any)
        .filter(|name| *name != killed)
        .collect();
    println!(
        "e2e: deleting the leader {killed} while it applies {slow}; standing by: {standbys:?}"
    );
    Api::<Pod>::namespaced(stage.client.clone(), OPERATOR_NAMESPACE)
        .delete(&killed, &DeleteParams::default())
        .await
        .context(format!("deleting the leader pod {killed}"))?;
    let deleted = Instant::now();

    // Another replica takes the Lease.
    let successor = loop {
        if let Some(holder) = current_leader(&stage.client).await?
            && holder != killed
        {
            break holder;
        }
        if deleted.elapsed() > Duration::from_secs(90) {
            return Err(Failure::new(format!(
                "no other replica took the Lease {LEASE_NAME} within 90s of deleting {killed}"
            )));
        }
        tokio::time::sleep(POLL).await;
    };
    println!(
        "e2e: {successor} ({}) leads {:.1}s after {killed} was deleted",
        if standbys.contains(&successor) {
            "the standby"
        } else {
            "a new pod"
        },
        deleted.elapsed().as_secs_f64()
    );

    // It finishes the job: the slow migration again from the start, then the
    // one after it.
    let object = wait_for(&api, APP, &format!("Ready at {after}"), TIMEOUT, |o| {
        ready(o) && current_revision(o) == Some(after.to_string())
    })
    .await?;
    assert_eq!(
        condition(&object, STALLED).map(|c| c.status.to_string()),
        Some("False".to_owned())
    );

    // Nothing was applied twice: one successful `up` per version.
    let audit = stage
        .database
        .query(
            "SELECT version, count(*) FILTER (WHERE outcome = 'succeeded'), \
             count(*) FILTER (WHERE outcome = 'failed'), \
             string_agg(actor || ' ' || outcome, ', ' ORDER BY id) \
             FROM public.schemaop_migrations_audit WHERE action = 'up' \
             GROUP BY version ORDER BY version",
        )
        .await?;
    for row in &audit {
        println!("e2e:   audit {}: {}", row[0], row[3]);
    }
    let succeeded: BTreeMap<i64, i64> = audit
        .iter()
        .map(|row| Ok((row[0].parse()?, row[1].parse()?)))
        .collect::<Result<_>>()?;
    let expected: BTreeMap<i64, i64> = versions(&stage.files).into_iter().map(|v| (v, 1)).collect();
    assert_eq!(
        succeeded, expected,
        "`up succeeded` rows per version in schemaop_migrations_audit"
    );

    // The interrupted migration was rolled back with its leader, and applied
    // by another.
    let history = stage
        .database
        .query("SELECT version, state, applied_by FROM public.schemaop_migrations ORDER BY version")
        .await?;
    assert!(history.iter().all(|row| row[1] == "applied"), "{history:?}");
    let applied_by = |version: i64| {
        history
            .iter()
            .find(|row| row[0] == version.to_string())
            .map(|row| row[2].clone())
    };
    let by_killed = format!("schemaop-operator/{killed}");
    for version in [slow, after] {
        let by = applied_by(version);
        assert!(
            by.is_some() && by.as_deref() != Some(by_killed.as_str()),
            "{version} was applied by {by:?}, expected another replica than {killed}"
        );
    }
    println!(
        "e2e: {slow} was applied by {}",
        applied_by(slow).unwrap_or_default()
    );

    // Leave the operator whole for the next test.
    wait_for_rollout(
        &stage.client,
        OPERATOR_NAMESPACE,
        &stage.deployed.operator.name_any(),
        TIMEOUT,
    )
    .await?;
    Ok(())
}

/// A broken migration leaves the SchemaMigration Stalled with
/// MigrationFailed, and the pods already released keep serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes cluster: e2e/run.sh, or cargo test -p schemaop-e2e -- --ignored (e2e/README.md)"]
async fn a_broken_migration_stalls_and_old_pods_keep_serving() -> Result {
    let Some(mut stage) = Stage::new(sample_migrations()?).await? else {
        return Ok(());
    };
    let api = stage.api::<SchemaMigration>();
    let latest = stage.latest();
    stage.create_schema_migration().await?;
    wait_for(&api, APP, "Ready", TIMEOUT, ready).await?;
    stage.apply_app("1", None).await?;
    wait_for_rollout(&stage.client, &stage.namespace.name, APP, TIMEOUT).await?;
    stage
        .wait_for_endpoints("every pod", |ready| ready.len() == REPLICAS as usize)
        .await?;
    let before = stage.app_pods().await?;
    let opened: BTreeMap<String, Timestamp> = before
        .iter()
        .map(|pod| Ok((pod.name_any(), transition(pod, GATE)?)))
        .collect::<Result<_>>()?;

    // A migration with invalid SQL arrives.
    let endpoints = EndpointMonitor::start(&stage.client, &stage.namespace.name);
    endpoints.synced().await?;
    let broken = format!("{}_add_broken_table.up.sql", latest + 1);
    stage
        .add_migrations(&[(
            &broken,
            "CREATE TABLE broken_table (id bigint PRIMARY KEY,);\n",
        )])
        .await?;
    let object = wait_for(
        &api,
        APP,
        "Stalled with MigrationFailed",
        TIMEOUT,
        stalled_with("MigrationFailed"),
    )
    .await?;
    let stalled = condition(&object, STALLED).expect("Stalled is set");
    assert!(
        stalled.message.contains(&broken),
        "the message should name {broken}: {:?}",
        stalled.message
    );
    assert_eq!(
        condition(&object, READY).map(|c| (c.status.to_string(), c.reason.clone())),
        Some(("False".to_owned(), "MigrationFailed".to_owned()))
    );
    assert_eq!(
        condition(&object, RECONCILING).map(|c| c.status.to_string()),
        Some("False".to_owned())
    );
    assert_eq!(current_revision(&object), Some(latest.to_string()));

    // The operator sees every change of the SchemaMigration and decides each
    // pod's gate again at once; were it to close a gate, it would within
    // this window. Keeping serving is the absence of a change, so the test
    // watches for one for a while.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let seen = endpoints.stop().await;
    assert!(
        seen.fewest.is_some_and(|n| n >= REPLICAS as usize),
        "ready endpoints dropped after the migration failed: {:#?}",
        seen.timeline
    );
    let after = stage.app_pods().await?;
    assert_eq!(
        after.iter().map(|p| p.name_any()).collect::<BTreeSet<_>>(),
        opened.keys().cloned().collect::<BTreeSet<_>>(),
        "the same pods run"
    );
    for pod in &after {
        assert!(
            pod_condition_is(pod, GATE, "True") && pod_condition_is(pod, "Ready", "True"),
            "{} is held back after the migration failed: {}",
            pod.name_any(),
            describe(pod)
        );
        assert_eq!(
            Some(transition(pod, GATE)?),
            opened.get(&pod.name_any()).copied(),
            "{}'s gate did not flip and back",
            pod.name_any()
        );
    }
    println!(
        "e2e: Stalled ({}); {} pods kept serving",
        stalled.message,
        after.len()
    );

    // Nothing of the broken migration reached the database.
    let succeeded = stage
        .database
        .query(&format!(
            "SELECT count(*) FROM public.schemaop_migrations_audit \
             WHERE action = 'up' AND outcome = 'succeeded' AND version = {}",
            latest + 1
        ))
        .await?;
    assert_eq!(succeeded, [["0"]]);
    let table = stage
        .database
        .query("SELECT to_regclass('public.broken_table') IS NULL")
        .await?;
    assert_eq!(table, [["t"]], "broken_table does not exist");
    Ok(())
}

// ---------------------------------------------------------------------------
// One test's world

/// The deployed operator, and for this test a namespace, a database on the
/// cluster's PostgreSQL, the Secret with its URL and the ConfigMap with the
/// migrations. Fields drop in order: the namespace goes, then the database.
struct Stage {
    client: Client,
    deployed: Deployed,
    namespace: TestNamespace,
    database: ClusterDatabase,
    files: BTreeMap<String, String>,
}

impl Stage {
    /// `None` when the test skips.
    async fn new(files: BTreeMap<String, String>) -> Result<Option<Stage>> {
        let Some(client) = cluster().await else {
            return Ok(None);
        };
        let Some(deployed) = deployed(&client).await? else {
            return Ok(None);
        };
        let namespace = TestNamespace::create(&client).await?;
        let database = ClusterDatabase::create(&deployed.postgres).await?;
        let stage = Stage {
            client,
            deployed,
            namespace,
            database,
            files,
        };
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(SECRET.to_owned()),
                ..ObjectMeta::default()
            },
            string_data: Some([("url".to_owned(), stage.database.url.clone())].into()),
            ..Secret::default()
        };
        stage
            .api::<Secret>()
            .create(&PostParams::default(), &secret)
            .await
            .context("creating the database Secret")?;
        let config_map = ConfigMap {
            metadata: ObjectMeta {
                name: Some(CONFIG_MAP.to_owned()),
                ..ObjectMeta::default()
            },
            data: Some(stage.files.clone()),
            ..ConfigMap::default()
        };
        stage
            .api::<ConfigMap>()
            .create(&PostParams::default(), &config_map)
            .await
            .context("creating the migrations ConfigMap")?;
        println!(
            "e2e: namespace {}, database {}",
            stage.namespace.name, stage.database.name
        );
        Ok(Some(stage))
    }

    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.namespace.name)
    }

    /// The newest version among the migration files.
    fn latest(&self) -> i64 {
        versions(&self.files).last().copied().unwrap_or_default()
    }

    /// The SchemaMigration `app`: the Secret's database at the newest
    /// migration of the ConfigMap.
    async fn create_schema_migration(&self) -> Result<SchemaMigration> {
        let object = schema_migration(
            APP,
            json!({
                "database": {"urlSecretRef": {"name": SECRET, "key": "url"}},
                "source": {"configMapRefs": [{"name": CONFIG_MAP}]},
            }),
        )?;
        self.api::<SchemaMigration>()
            .create(&PostParams::default(), &object)
            .await
            .context("creating the SchemaMigration")
    }

    /// Adds files to the ConfigMap, in one change; the operator watches it.
    async fn add_migrations(&mut self, files: &[(&str, &str)]) -> Result {
        let data: serde_json::Map<String, Value> = files
            .iter()
            .map(|(file, sql)| ((*file).to_owned(), Value::from(*sql)))
            .collect();
        let names: Vec<&str> = files.iter().map(|(file, _)| *file).collect();
        self.api::<ConfigMap>()
            .patch(
                CONFIG_MAP,
                &PatchParams::default(),
                &Patch::Merge(json!({ "data": data })),
            )
            .await
            .context(format!("adding {names:?} to the ConfigMap"))?;
        for (file, sql) in files {
            self.files.insert((*file).to_owned(), (*sql).to_owned());
        }
        Ok(())
    }

    /// Applies `e2e/manifests/app.yaml` as `version` of the app, needing
    /// `min_revision` if given.
    async fn apply_app(&self, version: &str, min_revision: Option<i64>) -> Result {
        let (deployment, service) = app_manifests(&self.namespace.name, version, min_revision)?;
        let apply = PatchParams::apply(FIELD_MANAGER).force();
        self.api::<Deployment>()
            .patch(APP, &apply, &Patch::Apply(&deployment))
            .await
            .context(format!(
                "applying version {version} of the app's Deployment"
            ))?;
        self.api::<Service>()
            .patch(APP, &apply, &Patch::Apply(&service))
            .await
            .context("applying the app's Service")?;
        Ok(())
    }

    /// The app's pods, leaving out those shutting down.
    async fn app_pods(&self) -> Result<Vec<Pod>> {
        let pods = self
            .api::<Pod>()
            .list(&ListParams::default().labels(&format!("app.kubernetes.io/name={APP}")))
            .await
            .context("listing the app's pods")?;
        Ok(pods
            .items
            .into_iter()
            .filter(|pod| pod.metadata.deletion_timestamp.is_none())
            .collect())
    }

    /// Polls the app's pods until `done` holds, for at most [`TIMEOUT`].
    async fn wait_for_pods(&self, what: &str, done: impl Fn(&[Pod]) -> bool) -> Result<Vec<Pod>> {
        let started = Instant::now();
        loop {
            let pods = self.app_pods().await?;
            if done(&pods) {
                return Ok(pods);
            }
            if started.elapsed() > TIMEOUT {
                return Err(Failure::new(format!(
                    "the app's pods were not {what} within {TIMEOUT:?}; last seen: [{}]",
                    pods.iter().map(describe).collect::<Vec<_>>().join("; ")
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The pods behind the app's Service that are ready for traffic.
    async fn ready_endpoints(&self) -> Result<BTreeSet<String>> {
        let slices = self
            .api::<EndpointSlice>()
            .list(&ListParams::default().labels(&format!("kubernetes.io/service-name={APP}")))
            .await
            .context("listing the app's EndpointSlices")?;
        Ok(ready_endpoints(slices.items.iter()))
    }

    async fn wait_for_endpoints(
        &self,
        what: &str,
        done: impl Fn(&BTreeSet<String>) -> bool,
    ) -> Result<BTreeSet<String>> {
        let started = Instant::now();
        loop {
            let ready = self.ready_endpoints().await?;
            if done(&ready) {
                return Ok(ready);
            }
            if started.elapsed() > TIMEOUT {
                return Err(Failure::new(format!(
                    "the Service {APP} did not have {what} ready within {TIMEOUT:?}; ready: \
                     {ready:?}"
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The operator's pods, leaving out those shutting down.
    async fn operator_pods(&self) -> Result<Vec<Pod>> {
        let pods = Api::<Pod>::namespaced(self.client.clone(), OPERATOR_NAMESPACE)
            .list(&ListParams::default().labels(&self.deployed.operator_selector()))
            .await
            .context("listing the operator's pods")?;
        Ok(pods
            .items
            .into_iter()
            .filter(|pod| pod.metadata.deletion_timestamp.is_none())
            .collect())
    }

    /// `schemaop_gate_release_latency_seconds` as the leader reports it,
    /// read through the API server's proxy to its metrics port.
    async fn gate_release_metric(&self) -> Result<GateReleases> {
        let leader = current_leader(&self.client)
            .await?
            .ok_or_else(|| Failure::new(format!("the Lease {LEASE_NAME} has no holder")))?;
        let port = self.deployed.metrics_port().unwrap_or(8080);
        let request = http::Request::get(format!(
            "/api/v1/namespaces/{OPERATOR_NAMESPACE}/pods/{leader}:{port}/proxy/metrics"
        ))
        .body(Vec::new())
        .context("building the metrics request")?;
        let text = self
            .client
            .request_text(request)
            .await
            .context(format!("reading the metrics of {leader}"))?;
        let value = |suffix: &str| {
            let name = format!("schemaop_gate_release_latency_seconds_{suffix} ");
            text.lines()
                .find_map(|line| line.strip_prefix(&name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|number| number.parse::<f64>().ok())
                .ok_or_else(|| Failure::new(format!("{leader}'s /metrics has no {name}")))
        };
        Ok(GateReleases {
            sum: value("sum")?,
            count: value("count")? as u64,
            leader,
        })
    }
}

/// The gate release histogram of one leader.
struct GateReleases {
    leader: String,
    sum: f64,
    count: u64,
}

/// The holder of the operator's Lease.
async fn current_leader(client: &Client) -> Result<Option<String>> {
    let lease = Api::<Lease>::namespaced(client.clone(), OPERATOR_NAMESPACE)
        .get_opt(LEASE_NAME)
        .await
        .context(format!(
            "reading the Lease {OPERATOR_NAMESPACE}/{LEASE_NAME}"
        ))?;
    Ok(lease
        .and_then(|lease| lease.spec)
        .and_then(|spec| spec.holder_identity)
        .filter(|holder| !holder.is_empty()))
}

/// Adds, after the newest migration, one that sleeps `seconds` inside its
/// transaction before creating a table; returns its version.
fn add_slow_migration(files: &mut BTreeMap<String, String>, name: &str, seconds: u32) -> i64 {
    let version = versions(files).last().copied().unwrap_or_default() + 1;
    files.insert(
        format!("{version}_{name}.up.sql"),
        format!("SELECT pg_sleep({seconds});\n{RUN_STATS}"),
    );
    version
}

/// `e2e/manifests/app.yaml`, filled in for one test.
fn app_manifests(
    namespace: &str,
    version: &str,
    min_revision: Option<i64>,
) -> Result<(Deployment, Service)> {
    let path = repo_root().join("e2e/manifests/app.yaml");
    let yaml = std::fs::read_to_string(&path).context(format!("reading {}", path.display()))?;
    let documents: Vec<Value> =
        serde_saphyr::from_multiple(&yaml).context(format!("parsing {}", path.display()))?;
    let find = |kind: &str| {
        documents
            .iter()
            .find(|d| d["kind"] == kind)
            .cloned()
            .ok_or_else(|| Failure::new(format!("{} has no {kind}", path.display())))
    };
    let mut deployment: Deployment =
        serde_json::from_value(find("Deployment")?).context("reading the app's Deployment")?;
    let mut service: Service =
        serde_json::from_value(find("Service")?).context("reading the app's Service")?;
    deployment.metadata.namespace = Some(namespace.to_owned());
    service.metadata.namespace = Some(namespace.to_owned());
    let spec = deployment
        .spec
        .as_mut()
        .ok_or_else(|| Failure::new("the app's Deployment has no spec"))?;
    spec.replicas = Some(REPLICAS);
    let template = spec
        .template
        .metadata
        .get_or_insert_with(ObjectMeta::default);
    template
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(VERSION_LABEL.to_owned(), version.to_owned());
    let annotations = template.annotations.get_or_insert_with(BTreeMap::new);
    match min_revision {
        Some(min) => annotations.insert(MIN_REVISION_ANNOTATION.to_owned(), min.to_string()),
        None => annotations.remove(MIN_REVISION_ANNOTATION),
    };
    Ok((deployment, service))
}

// ---------------------------------------------------------------------------
// Reading pods and endpoints

fn version_of(pod: &Pod) -> &str {
    pod.labels().get(VERSION_LABEL).map_or("", String::as_str)
}

fn gate_reason(pod: &Pod) -> &str {
    pod_condition(pod, GATE)
        .and_then(|c| c.reason.as_deref())
        .unwrap_or("")
}

fn gate_message(pod: &Pod) -> &str {
    pod_condition(pod, GATE)
        .and_then(|c| c.message.as_deref())
        .unwrap_or("")
}

/// When the pod's condition `type_` last changed.
fn transition(pod: &Pod, type_: &str) -> Result<Timestamp> {
    pod_condition(pod, type_)
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| t.0)
        .ok_or_else(|| {
            Failure::new(format!(
                "{} has no lastTransitionTime for {type_}: {}",
                pod.name_any(),
                describe(pod)
            ))
        })
}

/// A pod's version, gate and readiness, for messages.
fn describe(pod: &Pod) -> String {
    let state = |type_: &str| {
        pod_condition(pod, type_).map_or_else(
            || "absent".to_owned(),
            |c| match (&c.reason, &c.message) {
                (Some(reason), Some(message)) => format!("{}/{reason} ({message})", c.status),
                (Some(reason), None) => format!("{}/{reason}", c.status),
                _ => c.status.clone(),
            },
        )
    };
    format!(
        "{} (version {}): gate {}, Ready {}",
        pod.name_any(),
        version_of(pod),
        state(GATE),
        state("Ready")
    )
}

fn current_revision(object: &SchemaMigration) -> Option<String> {
    object.status.as_ref()?.current_revision.clone()
}

/// `later - earlier` in seconds, signed, for messages.
fn seconds(later: Timestamp, earlier: Timestamp) -> String {
    format!("{:+.1}s", later.duration_since(earlier).as_secs_f64())
}

fn signed(duration: Duration) -> k8s_openapi::jiff::SignedDuration {
    k8s_openapi::jiff::SignedDuration::try_from(duration).unwrap_or_default()
}

/// The pods (or, for endpoints without one, the addresses) ready for
/// traffic in `slices`. A missing `ready` means ready, as the API documents.
fn ready_endpoints<'a>(slices: impl Iterator<Item = &'a EndpointSlice>) -> BTreeSet<String> {
    slices
        .flat_map(|slice| slice.endpoints.iter())
        .filter(|endpoint| {
            endpoint
                .conditions
                .as_ref()
                .and_then(|c| c.ready)
                .unwrap_or(true)
        })
        .map(|endpoint| {
            endpoint
                .target_ref
                .as_ref()
                .and_then(|r| r.name.clone())
                .unwrap_or_else(|| endpoint.addresses.join(","))
        })
        .collect()
}

/// Watches the app Service's EndpointSlices and records every change of the
/// set of ready endpoints, so that a dip between two polls cannot go unseen.
struct EndpointMonitor {
    seen: Arc<Mutex<Seen>>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

#[derive(Default, Clone)]
struct Seen {
    /// The first full list has arrived; counts are meaningful from then on.
    synced: bool,
    ready: BTreeSet<String>,
    /// The fewest and most ready endpoints since the first full list.
    fewest: Option<usize>,
    most: usize,
    /// Each change, as `+1.2s: 2 ready [app-1, app-2]`.
    timeline: Vec<String>,
    errors: Vec<String>,
}

impl EndpointMonitor {
    fn start(client: &Client, namespace: &str) -> EndpointMonitor {
        let api = Api::<EndpointSlice>::namespaced(client.clone(), namespace);
        let config =
            watcher::Config::default().labels(&format!("kubernetes.io/service-name={APP}"));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let (seen, stop) = (seen.clone(), stop.clone());
            async move {
                let started = Instant::now();
                let mut events = pin!(watcher(api, config).default_backoff());
                let (mut slices, mut listing) = (BTreeMap::new(), BTreeMap::new());
                loop {
                    let event = tokio::select! {
                        () = stop.cancelled() => return,
                        event = next(events.as_mut()) => event,
                    };
                    let changed = match event {
                        None => return,
                        Some(Err(error)) => {
                            lock(&seen).errors.push(error.to_string());
                            false
                        }
                        Some(Ok(watcher::Event::Init)) => {
                            listing.clear();
                            false
                        }
                        Some(Ok(watcher::Event::InitApply(slice))) => {
                            listing.insert(slice.name_any(), slice);
                            false
                        }
                        Some(Ok(watcher::Event::InitDone)) => {
                            slices = std::mem::take(&mut listing);
                            true
                        }
                        Some(Ok(watcher::Event::Apply(slice))) => {
                            slices.insert(slice.name_any(), slice);
                            true
                        }
                        Some(Ok(watcher::Event::Delete(slice))) => {
                            slices.remove(&slice.name_any());
                            true
                        }
                    };
                    if changed {
                        lock(&seen).record(ready_endpoints(slices.values()), started.elapsed());
                    }
                }
            }
        });
        EndpointMonitor { seen, stop, task }
    }

    /// Waits for the first full list.
    async fn synced(&self) -> Result {
        let started = Instant::now();
        while !lock(&self.seen).synced {
            if started.elapsed() > Duration::from_secs(60) {
                return Err(Failure::new(format!(
                    "the watch of the app's EndpointSlices did not list them within 60s: {:?}",
                    lock(&self.seen).errors
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    fn ready_now(&self) -> BTreeSet<String> {
        lock(&self.seen).ready.clone()
    }

    async fn stop(self) -> Seen {
        self.stop.cancel();
        let _ = self.task.await;
        lock(&self.seen).clone()
    }
}

impl Seen {
    fn record(&mut self, ready: BTreeSet<String>, at: Duration) {
        if self.synced && ready == self.ready {
            return;
        }
        self.synced = true;
        self.fewest = Some(self.fewest.map_or(ready.len(), |n| n.min(ready.len())));
        self.most = self.most.max(ready.len());
        self.timeline.push(format!(
            "+{:.1}s: {} ready {:?}",
            at.as_secs_f64(),
            ready.len(),
            ready
        ));
        self.ready = ready;
    }
}

fn lock(seen: &Mutex<Seen>) -> std::sync::MutexGuard<'_, Seen> {
    seen.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The next item of a watch stream.
async fn next<S>(mut stream: Pin<&mut S>) -> Option<S::Item>
where
    S: WatchStreamExt + ?Sized,
{
    std::future::poll_fn(|cx| stream.as_mut().poll_next(cx)).await
}

// ---------------------------------------------------------------------------
// Checks of the above that need no cluster

#[test]
fn the_app_manifest_is_filled_in_per_test() {
    let (deployment, service) = app_manifests("schemaop-e2e-x", "2", Some(42)).unwrap();
    assert_eq!(
        deployment.metadata.namespace.as_deref(),
        Some("schemaop-e2e-x")
    );
    assert_eq!(
        service.metadata.namespace.as_deref(),
        Some("schemaop-e2e-x")
    );
    let spec = deployment.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(REPLICAS));
    let rolling = spec
        .strategy
        .as_ref()
        .and_then(|s| s.rolling_update.as_ref())
        .unwrap();
    assert_eq!(
        rolling.max_unavailable,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(0))
    );
    let template = spec.template.metadata.as_ref().unwrap();
    let labels = template.labels.as_ref().unwrap();
    assert_eq!(labels.get(VERSION_LABEL).map(String::as_str), Some("2"));
    assert_eq!(
        labels
            .get(schemaop::gates::MIGRATION_LABEL)
            .map(String::as_str),
        Some(APP)
    );
    assert_eq!(
        template
            .annotations
            .as_ref()
            .and_then(|a| a.get(MIN_REVISION_ANNOTATION))
            .map(String::as_str),
        Some("42")
    );
    let gates = spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.readiness_gates.clone())
        .unwrap_or_default();
    assert!(gates.iter().any(|g| g.condition_type == GATE), "{gates:?}");
    assert_eq!(
        service.spec.as_ref().and_then(|s| s.selector.clone()),
        spec.selector.match_labels
    );

    let (deployment, _) = app_manifests("ns", "1", None).unwrap();
    let template = deployment.spec.unwrap().template.metadata.unwrap();
    let annotations = template.annotations.unwrap_or_default();
    assert!(!annotations.contains_key(MIN_REVISION_ANNOTATION));
}

#[test]
fn ready_endpoints_count_pods_ready_for_traffic() {
    let slice: EndpointSlice = serde_json::from_value(json!({
        "metadata": {"name": "app-abcde"},
        "addressType": "IPv4",
        "endpoints": [
            {"addresses": ["10.0.0.1"], "conditions": {"ready": true}, "targetRef": {"name": "app-1"}},
            {"addresses": ["10.0.0.2"], "conditions": {"ready": false, "terminating": true},
             "targetRef": {"name": "app-2"}},
            {"addresses": ["10.0.0.3"], "targetRef": {"name": "app-3"}},
            {"addresses": ["10.0.0.4"], "conditions": {"ready": true}},
        ],
    }))
    .unwrap();
    let again = slice.clone();
    let ready = ready_endpoints([&slice, &again].into_iter());
    assert_eq!(
        ready,
        ["10.0.0.4", "app-1", "app-3"]
            .map(str::to_owned)
            .into_iter()
            .collect::<BTreeSet<_>>()
    );
}

#[test]
fn the_monitor_keeps_the_fewest_endpoints_seen() {
    let set = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect();
    let mut seen = Seen::default();
    seen.record(set(&["a", "b"]), Duration::from_millis(100));
    seen.record(set(&["a", "b"]), Duration::from_millis(200));
    seen.record(set(&["a", "b", "c"]), Duration::from_millis(300));
    seen.record(set(&["b", "c"]), Duration::from_millis(400));
    seen.record(set(&["c"]), Duration::from_millis(500));
    seen.record(set(&["c", "d"]), Duration::from_millis(600));
    assert!(seen.synced);
    assert_eq!(seen.fewest, Some(1));
    assert_eq!(seen.most, 3);
    assert_eq!(seen.timeline.len(), 5, "{:?}", seen.timeline);
    assert_eq!(seen.timeline[0], "+0.1s: 2 ready {\"a\", \"b\"}");
}
