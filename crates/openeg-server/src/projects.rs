//! Projects come into existence on first authenticated use, with their `default` channel
//!.

use crate::error::ApiResult;
use crate::state::AppState;
use crate::util::{fmt_time, new_id, now_ms};
use openeg_store::{Document, Kind, StoreError};
use serde_json::json;

pub const DEFAULT_CHANNEL: &str = "default";

/// Makes sure the project and its default channel exist. Idempotent and race-safe: a
/// concurrent creator losing the unique-name race simply finds the channel.
pub async fn ensure(st: &AppState, project_id: &str) -> ApiResult<()> {
    if st
        .known_projects
        .lock()
        .map(|k| k.contains(project_id))
        .unwrap_or(false)
    {
        return Ok(());
    }
    st.store.ensure_project(project_id).await?;
    if st
        .store
        .get_by_name(project_id, Kind::Channel, DEFAULT_CHANNEL)
        .await?
        .is_none()
    {
        let now = now_ms();
        let id = new_id();
        let rec = Document {
            project_id: project_id.to_string(),
            kind: Kind::Channel,
            id: id.clone(),
            name: DEFAULT_CHANNEL.to_string(),
            parent_id: None,
            created_at: now,
            updated_at: now,
            body: json!({
                "id": id,
                "name": DEFAULT_CHANNEL,
                "description": "default channel",
                "provider_type": "OFFICIAL",
                "created_time": fmt_time(now),
                "updated_time": fmt_time(now),
            }),
            refs: Vec::new(),
        };
        match st.store.insert(&rec, &[]).await {
            Ok(()) | Err(StoreError::Duplicate) => {}
            Err(e) => return Err(e.into()),
        }
    }
    if let Ok(mut k) = st.known_projects.lock() {
        k.insert(project_id.to_string());
    }
    Ok(())
}
