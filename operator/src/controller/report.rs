//! Telling the API server: status through server-side apply on the status
//! subresource, and Events on the SchemaMigration.

use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;

use super::error::Result;
use crate::crd::{SchemaMigration, SchemaMigrationStatus};

/// The field manager for everything the operator writes. Fixed, so that each
/// write replaces the previous one's fields instead of piling up owners.
pub const FIELD_MANAGER: &str = "schemaop";

/// Applies `status` as the whole status this operator asserts. Skipped when
/// the object already shows exactly that, so an idle reconcile writes nothing.
pub async fn status(
    client: &Client,
    obj: &SchemaMigration,
    status: &SchemaMigrationStatus,
) -> Result<()> {
    if obj.status.as_ref() == Some(status) {
        return Ok(());
    }
    let api: Api<SchemaMigration> =
        Api::namespaced(client.clone(), &obj.namespace().unwrap_or_default());
    let patch = json!({
        "apiVersion": SchemaMigration::api_version(&()),
        "kind": SchemaMigration::kind(&()),
        "status": status,
    });
    api.patch_status(
        &obj.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

/// Records an Event on `obj`. Events are for people reading `kubectl
/// describe`; failing to write one must not fail the work it describes.
pub async fn event(
    recorder: &Recorder,
    obj: &SchemaMigration,
    warning: bool,
    reason: &str,
    action: &str,
    note: String,
) {
    let event = Event {
        type_: if warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: reason.to_string(),
        // The API server rejects notes over 1 kB.
        note: Some(truncate(note, 1024)),
        action: action.to_string(),
        secondary: None,
    };
    if let Err(error) = recorder.publish(&event, &obj.object_ref(&())).await {
        tracing::warn!(%error, object = %obj.name_any(), reason, "could not record an Event");
    }
}

fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max - 3;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("...");
    }
    text
}
