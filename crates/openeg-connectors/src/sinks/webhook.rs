//! WEBHOOK and HC.APIGW targets: POST the payload to a URL, with extra headers for APIGW
//! (`invocation_http_parameters.header_parameters`, secrets already decrypted by the caller).

use super::http::{HttpClient, ATTEMPT_TIMEOUT};
use super::{BuildContext, BuildError};
use crate::{Message, Outcome, Sink};
use openeg_api::target_spec::{ApigwDetail, WebhookDetail};

#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub url: String,
    pub headers: Vec<(String, String)>,
}

pub struct WebhookSink {
    client: HttpClient,
    cfg: WebhookConfig,
}

impl WebhookSink {
    pub fn new(client: HttpClient, cfg: WebhookConfig) -> Self {
        WebhookSink { client, cfg }
    }
}

/// A WEBHOOK target: POST to `detail.url`. A WEBHOOK connection, if named, only marks the
/// network the URL is reached through and changes nothing here.
pub fn build(d: &WebhookDetail, ctx: &BuildContext) -> Result<Box<dyn Sink>, BuildError> {
    Ok(Box::new(WebhookSink::new(
        ctx.http.clone(),
        WebhookConfig {
            url: d.url.clone(),
            headers: vec![],
        },
    )))
}

/// An HC.APIGW target: POST to `apigw_detail.url` with its header parameters (values already
/// revealed).
pub fn build_apigw(d: &ApigwDetail, ctx: &BuildContext) -> Result<Box<dyn Sink>, BuildError> {
    Ok(Box::new(WebhookSink::new(
        ctx.http.clone(),
        WebhookConfig {
            url: d.url.clone(),
            headers: d
                .headers
                .iter()
                .map(|h| (h.key.clone(), h.value.clone()))
                .collect(),
        },
    )))
}

#[async_trait::async_trait]
impl Sink for WebhookSink {
    async fn send(&self, msg: &Message) -> Outcome {
        self.client
            .post(
                &self.cfg.url,
                &self.cfg.headers,
                msg.payload.clone(),
                ATTEMPT_TIMEOUT,
            )
            .await
    }
}
