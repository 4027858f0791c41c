//! The controller's Prometheus metrics, served as OpenMetrics text on
//! `/metrics`.
//!
//! Every series is named `schemaop_*`. Series that carry an object's
//! namespace and name are removed again when the object is deleted
//! ([`Metrics::forget`]), so a long-running operator does not keep reporting
//! resources that no longer exist; the current revisions also go when this
//! replica stops leading ([`Metrics::set_leader`]).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// Upper bounds, in seconds, of the reconcile duration buckets. A reconcile
/// only reads and patches objects (migrations run in their own tasks), so
/// anything past a few seconds is an API server in trouble.
const RECONCILE_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Upper bounds, in seconds, of the gate release latency buckets: a watch
/// event and one patch should take well under a second.
const GATE_RELEASE_BUCKETS: [f64; 10] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Upper bounds, in seconds, of the migration duration buckets: from a
/// trivial `ALTER` (10ms) to a long backfill or index build (30min).
const MIGRATION_BUCKETS: [f64; 15] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MigrationLabels {
    namespace: String,
    name: String,
    direction: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RevisionLabels {
    namespace: String,
    name: String,
    revision: String,
}

/// A `SchemaMigration`, by namespace and name.
type ObjectKey = (String, String);

/// The label values an object's series were created with: a metric family can
/// only remove a series whose labels it is given.
#[derive(Debug, Default)]
struct ObjectSeries {
    revision: Option<String>,
    directions: BTreeSet<String>,
}

/// The controller's metrics. Share it in an `Arc`: every method takes `&self`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    reconciles: Counter,
    reconcile_errors: Family<ErrorLabels, Counter>,
    reconcile_duration: Histogram,
    migrations_applied: Family<MigrationLabels, Counter>,
    migration_duration: Histogram,
    current_revision: Family<RevisionLabels, Gauge>,
    runs_active: Gauge,
    leader: Gauge,
    gate_release: Histogram,
    objects: Mutex<HashMap<ObjectKey, ObjectSeries>>,
}

impl Metrics {
    pub fn new() -> Metrics {
        let reconciles = Counter::default();
        let reconcile_errors = Family::<ErrorLabels, Counter>::default();
        let reconcile_duration = Histogram::new(RECONCILE_BUCKETS);
        let migrations_applied = Family::<MigrationLabels, Counter>::default();
        let migration_duration = Histogram::new(MIGRATION_BUCKETS);
        let current_revision = Family::<RevisionLabels, Gauge>::default();
        let runs_active = Gauge::default();
        let leader = Gauge::default();
        let gate_release = Histogram::new(GATE_RELEASE_BUCKETS);

        // The registry keeps clones; the metric types share their values
        // through an inner `Arc`, so updates to our fields show up in it.
        // Counters get `_total` and units get `_seconds` appended on encoding.
        let mut registry = Registry::with_prefix("schemaop");
        registry.register(
            "reconciles",
            "Reconciles of SchemaMigration objects",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconciles that failed, by reason",
            reconcile_errors.clone(),
        );
        registry.register_with_unit(
            "reconcile_duration",
            "How long a reconcile took",
            Unit::Seconds,
            reconcile_duration.clone(),
        );
        registry.register(
            "migrations_applied",
            "Migration runs that completed, by object and direction",
            migrations_applied.clone(),
        );
        registry.register_with_unit(
            "migration_duration",
            "How long a migration run took",
            Unit::Seconds,
            migration_duration.clone(),
        );
        registry.register(
            "current_revision_info",
            "The schema revision each SchemaMigration's database is at; the value is always 1",
            current_revision.clone(),
        );
        registry.register(
            "runs_active",
            "Migration runs in progress",
            runs_active.clone(),
        );
        registry.register(
            "leader",
            "1 when this replica holds the leader lease and reconciles, 0 otherwise",
            leader.clone(),
        );

        registry.register_with_unit(
            "gate_release_latency",
            "From a SchemaMigration becoming Ready to a waiting pod's readiness gate turning True",
            Unit::Seconds,
            gate_release.clone(),
        );

        Metrics {
            registry,
            reconciles,
            reconcile_errors,
            reconcile_duration,
            migrations_applied,
            migration_duration,
            current_revision,
            runs_active,
            leader,
            gate_release,
            objects: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a reconcile and times it until the returned guard is dropped.
    pub fn reconcile_started(&self) -> ReconcileTimer {
        self.reconciles.inc();
        ReconcileTimer {
            histogram: self.reconcile_duration.clone(),
            started: Instant::now(),
        }
    }

    /// Counts a failed reconcile; `reason` is a short CamelCase word such as
    /// `SecretNotFound`, the same one the object's condition carries.
    pub fn reconcile_failed(&self, reason: &str) {
        self.reconcile_errors
            .get_or_create(&ErrorLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Records a completed migration run; `direction` is `up` or `down`.
    pub fn migration_applied(
        &self,
        namespace: &str,
        name: &str,
        direction: &str,
        duration: Duration,
    ) {
        let mut objects = self.objects();
        objects
            .entry(key(namespace, name))
            .or_default()
            .directions
            .insert(direction.to_owned());
        self.migrations_applied
            .get_or_create(&MigrationLabels {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                direction: direction.to_owned(),
            })
            .inc();
        self.migration_duration.observe(duration.as_secs_f64());
    }

    /// Reports the revision an object's database is at, replacing the series
    /// of the revision it was at before: a dashboard must see exactly one
    /// current revision per object.
    pub fn set_current_revision(&self, namespace: &str, name: &str, revision: &str) {
        let mut objects = self.objects();
        let series = objects.entry(key(namespace, name)).or_default();
        if let Some(previous) = series.revision.replace(revision.to_owned())
            && previous != revision
        {
            self.current_revision
                .remove(&revision_labels(namespace, name, &previous));
        }
        self.current_revision
            .get_or_create(&revision_labels(namespace, name, revision))
            .set(1);
    }

    /// Drops every series of a deleted object.
    pub fn forget(&self, namespace: &str, name: &str) {
        let Some(series) = self.objects().remove(&key(namespace, name)) else {
            return;
        };
        if let Some(revision) = series.revision {
            self.current_revision
                .remove(&revision_labels(namespace, name, &revision));
        }
        for direction in series.directions {
            self.migrations_applied.remove(&MigrationLabels {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                direction,
            });
        }
    }

    /// A pod's gate turned True `latency` after its SchemaMigration became Ready.
    pub fn gate_released(&self, latency: Duration) {
        self.gate_release.observe(latency.as_secs_f64());
    }

    pub fn run_started(&self) {
        self.runs_active.inc();
    }

    pub fn run_finished(&self) {
        self.runs_active.dec();
    }

    /// Reports whether this replica leads. Stepping down also drops the
    /// current revisions: only the leader keeps them up to date, and a stale
    /// series left on a former leader would contradict the new one's.
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
        if !leading {
            for ((namespace, name), series) in self.objects().iter_mut() {
                if let Some(revision) = series.revision.take() {
                    self.current_revision
                        .remove(&revision_labels(namespace, name, &revision));
                }
            }
        }
    }

    /// The metrics in the OpenMetrics text format, ending in `# EOF`.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing to a `String` cannot fail, and every metric here has a text
        // form; an error would be a bug, not worth failing a scrape over.
        if let Err(error) = encode(&mut text, &self.registry) {
            tracing::error!(%error, "cannot encode the metrics");
        }
        text
    }

    fn objects(&self) -> MutexGuard<'_, HashMap<ObjectKey, ObjectSeries>> {
        // The map is never left half-updated, so a panic elsewhere while the
        // lock was held does not make it wrong: carry on with it.
        self.objects.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Times one reconcile: observes the elapsed time when dropped, so every
/// return path of the reconciler is measured.
#[derive(Debug)]
#[must_use = "the reconcile is timed until the timer is dropped"]
pub struct ReconcileTimer {
    histogram: Histogram,
    started: Instant,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.histogram.observe(self.started.elapsed().as_secs_f64());
    }
}

fn key(namespace: &str, name: &str) -> ObjectKey {
    (namespace.to_owned(), name.to_owned())
}

fn revision_labels(namespace: &str, name: &str, revision: &str) -> RevisionLabels {
    RevisionLabels {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        revision: revision.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sample lines of one metric family, without `# HELP`/`# TYPE`.
    fn samples(metrics: &Metrics, family: &str) -> Vec<String> {
        metrics
            .render()
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter(|line| {
                line.strip_prefix(family)
                    .is_some_and(|rest| rest.starts_with(['{', ' ', '_']))
            })
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn a_fresh_registry_renders_the_unlabelled_metrics_at_zero() {
        let metrics = Metrics::new();
        let text = metrics.render();

        for line in [
            "# TYPE schemaop_reconciles counter",
            "schemaop_reconciles_total 0",
            "# TYPE schemaop_reconcile_duration_seconds histogram",
            "# UNIT schemaop_reconcile_duration_seconds seconds",
            "schemaop_reconcile_duration_seconds_count 0",
            "# TYPE schemaop_migration_duration_seconds histogram",
            "schemaop_migration_duration_seconds_bucket{le=\"0.01\"} 0",
            "schemaop_migration_duration_seconds_bucket{le=\"1800.0\"} 0",
            "schemaop_runs_active 0",
            "schemaop_leader 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line:?} missing from\n{text}"
            );
        }
        // A labelled family appears with its first series.
        for family in [
            "schemaop_reconcile_errors",
            "schemaop_migrations_applied",
            "schemaop_current_revision_info",
        ] {
            assert!(!text.contains(family), "{family} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn reconciles_are_counted_and_timed_when_the_timer_drops() {
        let metrics = Metrics::new();
        let timer = metrics.reconcile_started();
        assert_eq!(
            samples(&metrics, "schemaop_reconcile_duration_seconds_count"),
            ["schemaop_reconcile_duration_seconds_count 0"]
        );
        drop(timer);

        assert_eq!(
            samples(&metrics, "schemaop_reconciles"),
            ["schemaop_reconciles_total 1"]
        );
        assert_eq!(
            samples(&metrics, "schemaop_reconcile_duration_seconds_count"),
            ["schemaop_reconcile_duration_seconds_count 1"]
        );
    }

    #[test]
    fn errors_are_counted_by_reason() {
        let metrics = Metrics::new();
        metrics.reconcile_failed("SecretNotFound");
        metrics.reconcile_failed("SecretNotFound");
        metrics.reconcile_failed("DatabaseUnreachable");

        let mut lines = samples(&metrics, "schemaop_reconcile_errors");
        lines.sort();
        assert_eq!(
            lines,
            [
                "schemaop_reconcile_errors_total{reason=\"DatabaseUnreachable\"} 1",
                "schemaop_reconcile_errors_total{reason=\"SecretNotFound\"} 2",
            ]
        );
    }

    #[test]
    fn migrations_are_counted_by_object_and_direction_and_timed() {
        let metrics = Metrics::new();
        metrics.migration_applied("shop", "orders", "up", Duration::from_millis(40));
        metrics.migration_applied("shop", "orders", "up", Duration::from_secs(2));
        metrics.migration_applied("shop", "orders", "down", Duration::from_secs(1200));

        let mut lines = samples(&metrics, "schemaop_migrations_applied");
        lines.sort();
        assert_eq!(
            lines,
            [
                "schemaop_migrations_applied_total{namespace=\"shop\",name=\"orders\",direction=\"down\"} 1",
                "schemaop_migrations_applied_total{namespace=\"shop\",name=\"orders\",direction=\"up\"} 2",
            ]
        );
        let histogram = samples(&metrics, "schemaop_migration_duration_seconds");
        for line in [
            "schemaop_migration_duration_seconds_count 3",
            "schemaop_migration_duration_seconds_bucket{le=\"0.05\"} 1",
            "schemaop_migration_duration_seconds_bucket{le=\"2.5\"} 2",
            "schemaop_migration_duration_seconds_bucket{le=\"900.0\"} 2",
            "schemaop_migration_duration_seconds_bucket{le=\"1800.0\"} 3",
        ] {
            assert!(
                histogram.iter().any(|l| l == line),
                "{line:?} missing from {histogram:#?}"
            );
        }
    }

    #[test]
    fn only_the_newest_revision_has_a_series() {
        let metrics = Metrics::new();
        metrics.set_current_revision("shop", "orders", "20240101_init");
        metrics.set_current_revision("shop", "orders", "20240301_add_index");
        metrics.set_current_revision("shop", "orders", "20240301_add_index");
        metrics.set_current_revision("billing", "invoices", "7");

        let mut lines = samples(&metrics, "schemaop_current_revision_info");
        lines.sort();
        assert_eq!(
            lines,
            [
                "schemaop_current_revision_info{namespace=\"billing\",name=\"invoices\",revision=\"7\"} 1",
                "schemaop_current_revision_info{namespace=\"shop\",name=\"orders\",revision=\"20240301_add_index\"} 1",
            ]
        );
    }

    #[test]
    fn forgetting_an_object_drops_its_series_and_no_other() {
        let metrics = Metrics::new();
        metrics.set_current_revision("shop", "orders", "3");
        metrics.migration_applied("shop", "orders", "up", Duration::from_secs(1));
        metrics.migration_applied("shop", "orders", "down", Duration::from_secs(1));
        metrics.set_current_revision("shop", "carts", "5");
        metrics.migration_applied("shop", "carts", "up", Duration::from_secs(1));

        metrics.forget("shop", "orders");
        metrics.forget("shop", "never-seen");

        assert_eq!(
            samples(&metrics, "schemaop_current_revision_info"),
            ["schemaop_current_revision_info{namespace=\"shop\",name=\"carts\",revision=\"5\"} 1"]
        );
        assert_eq!(
            samples(&metrics, "schemaop_migrations_applied"),
            [
                "schemaop_migrations_applied_total{namespace=\"shop\",name=\"carts\",direction=\"up\"} 1"
            ]
        );
        // The duration histogram has no object labels: it keeps its history.
        assert_eq!(
            samples(&metrics, "schemaop_migration_duration_seconds_count"),
            ["schemaop_migration_duration_seconds_count 3"]
        );
    }

    #[test]
    fn stepping_down_drops_the_current_revisions_and_keeps_the_counts() {
        let metrics = Metrics::new();
        metrics.set_leader(true);
        metrics.set_current_revision("shop", "orders", "3");
        metrics.migration_applied("shop", "orders", "up", Duration::from_secs(1));

        metrics.set_leader(false);
        assert!(samples(&metrics, "schemaop_current_revision_info").is_empty());
        assert_eq!(samples(&metrics, "schemaop_migrations_applied").len(), 1);

        // Leading again, the controller reports the revision afresh.
        metrics.set_leader(true);
        metrics.set_current_revision("shop", "orders", "4");
        assert_eq!(
            samples(&metrics, "schemaop_current_revision_info"),
            ["schemaop_current_revision_info{namespace=\"shop\",name=\"orders\",revision=\"4\"} 1"]
        );
    }

    #[test]
    fn runs_and_leadership_are_gauges() {
        let metrics = Metrics::new();
        metrics.run_started();
        metrics.run_started();
        metrics.run_finished();
        metrics.set_leader(true);

        assert_eq!(
            samples(&metrics, "schemaop_runs_active"),
            ["schemaop_runs_active 1"]
        );
        assert_eq!(samples(&metrics, "schemaop_leader"), ["schemaop_leader 1"]);

        metrics.set_leader(false);
        assert_eq!(samples(&metrics, "schemaop_leader"), ["schemaop_leader 0"]);
    }
}
