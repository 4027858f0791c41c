//! What the controller's watch cache keeps of each SchemaMigration: the
//! operator holds every one it watches for as long as it runs, so a
//! cluster's worth of them must stay small.

use crate::crd::SchemaMigration;

/// Objects per page when a watch lists what it caches. A list is parsed
/// whole before anything is trimmed: at a thousand SchemaMigrations with
/// inline SQL, or pods with their containers, one page of everything was
/// tens of megabytes at once, at every start and relist.
pub const LIST_PAGE: u32 = 100;

/// The annotation in which `kubectl apply` keeps the whole manifest it last
/// applied, to compute its next patch.
pub const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drops the two parts of a SchemaMigration that repeat the rest of it and
/// that the operator never reads: its managed fields, and the copy of the
/// manifest that `kubectl apply` leaves in an annotation, which with an
/// inline source holds every SQL file a second time. Together they are most
/// of a kubectl-applied object.
///
/// Everything else stays. A reconcile reads the spec, the status, the
/// generation, the deletion time and other annotations (`schemaop.dev/retry`
/// starts a failed run again); a Job's owner reference takes the uid, and
/// Events name the object by uid and resourceVersion. The status is written
/// by server-side apply, which needs no managed fields from the client.
pub fn trim(obj: &mut SchemaMigration) {
    obj.metadata.managed_fields = None;
    if let Some(annotations) = obj.metadata.annotations.as_mut() {
        annotations.remove(LAST_APPLIED_ANNOTATION);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::controller::fixtures::{alembic_job, kubectl_applied, schema_migration};
    use crate::controller::inputs::{self, RETRY_ANNOTATION};
    use crate::controller::job::{self, JobSettings};
    use crate::engine::{Database, MigrationSource};

    const SQL: &str = "CREATE TABLE users (id bigint PRIMARY KEY, email text NOT NULL);";

    fn sql_migration() -> SchemaMigration {
        schema_migration()
            .inline(&[("1_users.sql", SQL)])
            .annotation(RETRY_ANNOTATION, "1733050000")
            .annotation("team.example.com/owner", "payments")
            .build()
    }

    #[test]
    fn trimming_drops_managed_fields_and_the_last_applied_manifest_and_nothing_else() {
        let applied = kubectl_applied(sql_migration());
        let mut trimmed = applied.clone();
        trim(&mut trimmed);

        let mut expected = serde_json::to_value(&applied).unwrap();
        let meta = expected["metadata"].as_object_mut().unwrap();
        meta.remove("managedFields");
        meta["annotations"]
            .as_object_mut()
            .unwrap()
            .remove(LAST_APPLIED_ANNOTATION);
        assert_eq!(serde_json::to_value(&trimmed).unwrap(), expected);
        assert_eq!(trimmed.spec, applied.spec);
        assert_eq!(trimmed.status, applied.status);
        assert_eq!(
            trimmed.metadata.annotations.as_ref().unwrap()[RETRY_ANNOTATION],
            "1733050000"
        );

        let size = |obj: &SchemaMigration| serde_json::to_vec(obj).unwrap().len();
        assert!(
            size(&trimmed) * 2 < size(&applied),
            "{} bytes, then {}",
            size(&applied),
            size(&trimmed)
        );
    }

    #[test]
    fn an_object_without_either_is_left_as_it_is() {
        let lean = sql_migration();
        let mut trimmed = lean.clone();
        trim(&mut trimmed);
        assert_eq!(trimmed, lean);
    }

    /// The inputs and the Job a reconcile derives from the object: the
    /// fingerprint and the Job's name take in the retry annotation, so these
    /// change if trimming loses it, or anything of the spec.
    #[test]
    fn a_trimmed_object_resolves_to_the_same_run_and_the_same_job() {
        let database = Database::from_url("postgres://app@db.apps.svc/app").unwrap();
        let fingerprint = |obj: &SchemaMigration| {
            let source = MigrationSource::from_files([("1_users.sql", SQL)]).unwrap();
            inputs::settings(obj, database.clone(), source, "schemaop-0")
                .unwrap()
                .fingerprint
        };
        let applied = kubectl_applied(sql_migration());
        let mut trimmed = applied.clone();
        trim(&mut trimmed);
        assert_eq!(fingerprint(&trimmed), fingerprint(&applied));
        let mut forgotten = trimmed.clone();
        forgotten.metadata.annotations = None;
        assert_ne!(
            fingerprint(&forgotten),
            fingerprint(&applied),
            "the retry annotation is in the fingerprint"
        );

        let settings = JobSettings {
            wrapper_image: Some("registry.example.com/schemaop:0.1.0".into()),
        };
        let with_job = schema_migration()
            .job(alembic_job())
            .annotation(RETRY_ANNOTATION, "1733050000")
            .build();
        let applied = kubectl_applied(with_job);
        let mut trimmed = applied.clone();
        trim(&mut trimmed);
        let job = |obj: &SchemaMigration| {
            job::build(obj, obj.spec.job.as_ref().unwrap(), &settings).unwrap()
        };
        assert_eq!(job(&trimmed), job(&applied));
        assert_eq!(
            serde_json::to_value(job(&trimmed)).unwrap()["metadata"]["ownerReferences"][0]["uid"],
            json!(applied.metadata.uid)
        );
    }
}
