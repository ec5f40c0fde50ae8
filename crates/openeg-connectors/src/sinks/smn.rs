//! HC.SMN targets: `POST {endpoint}/v2/{project_id}/notifications/topics/{urn}/publish` with
//! `{"subject","message"}`; the message is the payload text, the subject at most 512
//! characters and omitted when absent (`docs/transforms.md`).

use super::http::{path_segment, HttpClient, ATTEMPT_TIMEOUT};
use super::{BuildContext, BuildError};
use crate::{Message, Outcome, Sink};
use bytes::Bytes;
use openeg_api::target_spec::SmnDetail;
use serde_json::{json, Map, Value};

#[derive(Debug, Clone)]
pub struct SmnConfig {
    pub endpoint: String,
    pub project_id: String,
    pub urn: String,
}

pub struct SmnSink {
    client: HttpClient,
    url: String,
}

pub const MAX_SUBJECT_CHARS: usize = 512;

impl SmnSink {
    pub fn new(client: HttpClient, cfg: &SmnConfig) -> Self {
        let url = format!(
            "{}/v2/{}/notifications/topics/{}/publish",
            cfg.endpoint.trim_end_matches('/'),
            path_segment(&cfg.project_id),
            path_segment(&cfg.urn)
        );
        SmnSink { client, url }
    }

    /// The publish body for one message.
    pub fn body(msg: &Message) -> Bytes {
        let mut m = Map::new();
        if let Some(s) = &msg.subject {
            let s: String = s.chars().take(MAX_SUBJECT_CHARS).collect();
            m.insert("subject".into(), Value::String(s));
        }
        m.insert(
            "message".into(),
            Value::String(String::from_utf8_lossy(&msg.payload).into_owned()),
        );
        Bytes::from(json!(m).to_string())
    }
}

/// An HC.SMN target, through the configured `smn_endpoint` (the subject transform is the
/// engine's: it renders [`Message::subject`]).
pub fn build(d: &SmnDetail, ctx: &BuildContext) -> Result<Box<dyn Sink>, BuildError> {
    let endpoint = ctx
        .smn_endpoint
        .ok_or(BuildError::NotConfigured("smn_endpoint"))?;
    let cfg = SmnConfig {
        endpoint: endpoint.to_string(),
        project_id: ctx.project_id.to_string(),
        urn: d.urn.clone(),
    };
    Ok(Box::new(SmnSink::new(ctx.http.clone(), &cfg)))
}

#[async_trait::async_trait]
impl Sink for SmnSink {
    async fn send(&self, msg: &Message) -> Outcome {
        self.client
            .post(&self.url, &[], Self::body(msg), ATTEMPT_TIMEOUT)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_shape() {
        let m = Message {
            payload: Bytes::from_static(br#"{"a":1}"#),
            subject: Some("x".repeat(600)),
            ..Default::default()
        };
        let v: Value = serde_json::from_slice(&SmnSink::body(&m)).unwrap();
        assert_eq!(v["message"], r#"{"a":1}"#);
        assert_eq!(v["subject"].as_str().unwrap().chars().count(), 512);
        let none = Message {
            payload: Bytes::from_static(b"t"),
            ..Default::default()
        };
        let v: Value = serde_json::from_slice(&SmnSink::body(&none)).unwrap();
        assert!(v.get("subject").is_none());
    }
}
