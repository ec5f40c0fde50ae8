//! Change feed: every metadata write on PostgreSQL announces itself to every node (several
//! OpenEG nodes share one database), so a change made through any node reaches the others'
//! caches and runtimes within moments.
//!
//! * The write transaction itself sends `pg_notify(<channel>, <change>)`: PostgreSQL delivers
//!   notifications only on commit, so a node never hears of a change it cannot read yet, and
//!   never misses one that committed while it listened.
//! * The channel is per schema (`openeg_changes_<schema>`): deployments sharing a database in
//!   different schemas do not hear each other.
//! * A listener whose connection drops cannot know what it missed: it reconnects, listens
//!   again, and only then reports [`ChangeEvent::Resync`], so that reloading everything after
//!   it loses nothing in between.
//!
//! SQLite is one process's store: it has no feed (a single node changes its own caches).

use crate::common::backend;
use crate::{Kind, Result};
use serde_json::{json, Value};
use sqlx::postgres::{PgListener, PgPool};
use std::time::Duration;

/// One committed write of a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub project_id: String,
    pub kind: Kind,
    pub id: String,
    /// The document's parent (a subscription's channel), as it was written (or deleted).
    pub parent_id: Option<String>,
}

impl Change {
    pub(crate) fn of(rec: &crate::Document) -> Change {
        Change {
            project_id: rec.project_id.clone(),
            kind: rec.kind,
            id: rec.id.clone(),
            parent_id: rec.parent_id.clone(),
        }
    }

    pub(crate) fn payload(&self) -> String {
        json!({"p": self.project_id, "k": self.kind.as_str(), "i": self.id, "c": self.parent_id})
            .to_string()
    }

    pub(crate) fn parse(payload: &str) -> Option<Change> {
        let v: Value = serde_json::from_str(payload).ok()?;
        Some(Change {
            project_id: v.get("p")?.as_str()?.to_string(),
            kind: Kind::parse(v.get("k")?.as_str()?)?,
            id: v.get("i")?.as_str()?.to_string(),
            parent_id: v.get("c").and_then(Value::as_str).map(str::to_string),
        })
    }
}

/// What a [`ChangeListener`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeEvent {
    Changed(Change),
    /// Changes may have been missed (the listener reconnected): reload everything.
    Resync,
}

/// A listening connection on the store's change channel.
pub struct ChangeListener {
    pool: PgPool,
    channel: String,
    listener: Option<PgListener>,
}

/// The `application_name` of listener connections (how an operator finds them).
pub const LISTENER_APPLICATION_NAME: &str = "openeg-changes";

/// How long a listener waits before connecting again after a failure.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);

impl ChangeListener {
    pub(crate) async fn connect(pool: PgPool, channel: String) -> Result<ChangeListener> {
        let listener = Self::listen(&pool, &channel).await?;
        Ok(ChangeListener {
            pool,
            channel,
            listener: Some(listener),
        })
    }

    async fn listen(pool: &PgPool, channel: &str) -> Result<PgListener> {
        let mut l = PgListener::connect_with(pool)
            .await
            .map_err(|e| backend("listen for changes", e))?;
        sqlx::query(&format!(
            "SET application_name = '{LISTENER_APPLICATION_NAME}'"
        ))
        .execute(&mut l)
        .await
        .map_err(|e| backend("listen for changes", e))?;
        l.listen(channel)
            .await
            .map_err(|e| backend("listen for changes", e))?;
        Ok(l)
    }

    /// The next change, or a resync after the connection was lost and listening again.
    /// Waits (retrying every second) while the database is unreachable.
    pub async fn next(&mut self) -> ChangeEvent {
        loop {
            let Some(l) = self.listener.as_mut() else {
                match Self::listen(&self.pool, &self.channel).await {
                    Ok(l) => {
                        self.listener = Some(l);
                        return ChangeEvent::Resync;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "change listener: reconnecting");
                        tokio::time::sleep(RECONNECT_DELAY).await;
                        continue;
                    }
                }
            };
            match l.try_recv().await {
                Ok(Some(n)) => match Change::parse(n.payload()) {
                    Some(c) => return ChangeEvent::Changed(c),
                    None => tracing::warn!("change listener: a malformed notification ignored"),
                },
                Ok(None) | Err(_) => {
                    tracing::warn!("change listener: the connection was lost; resyncing");
                    self.listener = None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trips() {
        let c = Change {
            project_id: "p".into(),
            kind: Kind::Subscription,
            id: "s\"1".into(),
            parent_id: Some("ch".into()),
        };
        assert_eq!(Change::parse(&c.payload()), Some(c.clone()));
        let c = Change {
            parent_id: None,
            kind: Kind::RouterJob,
            ..c
        };
        assert_eq!(Change::parse(&c.payload()), Some(c));
        assert_eq!(Change::parse("{\"p\":\"x\"}"), None);
        assert_eq!(Change::parse("not json"), None);
    }
}
