//! HC.FunctionGraph targets: `POST {endpoint}/v2/{project_id}/fgs/functions/{urn}/invocations`
//! (SYNC, 300 s) or `.../invocations-async` (ASYNC, 30 s) with the payload as the JSON body
//! (`docs/transforms.md`). A payload that is not JSON fails without retry.

use super::http::{path_segment, HttpClient, ATTEMPT_TIMEOUT};
use super::{BuildContext, BuildError};
use crate::{Message, Outcome, Sink};
use openeg_api::target_spec::FunctionGraphDetail;
pub use openeg_api::target_spec::InvokeType;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct FunctionGraphConfig {
    pub endpoint: String,
    pub project_id: String,
    pub urn: String,
    pub invoke_type: InvokeType,
}

pub struct FunctionGraphSink {
    client: HttpClient,
    url: String,
    timeout: Duration,
}

impl FunctionGraphSink {
    pub fn new(client: HttpClient, cfg: &FunctionGraphConfig) -> Self {
        let suffix = match cfg.invoke_type {
            InvokeType::Sync => "invocations",
            InvokeType::Async => "invocations-async",
        };
        let url = format!(
            "{}/v2/{}/fgs/functions/{}/{suffix}",
            cfg.endpoint.trim_end_matches('/'),
            path_segment(&cfg.project_id),
            path_segment(&cfg.urn)
        );
        let timeout = match cfg.invoke_type {
            InvokeType::Sync => Duration::from_secs(300),
            InvokeType::Async => ATTEMPT_TIMEOUT,
        };
        FunctionGraphSink {
            client,
            url,
            timeout,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

/// An HC.FunctionGraph target, through the configured `functiongraph_endpoint`.
pub fn build(d: &FunctionGraphDetail, ctx: &BuildContext) -> Result<Box<dyn Sink>, BuildError> {
    let endpoint = ctx
        .functiongraph_endpoint
        .ok_or(BuildError::NotConfigured("functiongraph_endpoint"))?;
    let cfg = FunctionGraphConfig {
        endpoint: endpoint.to_string(),
        project_id: ctx.project_id.to_string(),
        urn: d.urn.clone(),
        invoke_type: d.invoke_type,
    };
    Ok(Box::new(FunctionGraphSink::new(ctx.http.clone(), &cfg)))
}

#[async_trait::async_trait]
impl Sink for FunctionGraphSink {
    async fn send(&self, msg: &Message) -> Outcome {
        if serde_json::from_slice::<serde_json::Value>(&msg.payload).is_err() {
            return Outcome::GiveUp {
                code: String::new(),
                detail: "the transformed payload is not JSON".into(),
            };
        }
        self.client
            .post(&self.url, &[], msg.payload.clone(), self.timeout)
            .await
    }
}
