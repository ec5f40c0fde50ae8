//! WEBHOOK and HC.APIGW targets: POST the payload to a URL, with extra headers for APIGW
//! (`invocation_http_parameters.header_parameters`, secrets already decrypted by the caller).

use super::http::{HttpClient, ATTEMPT_TIMEOUT};
use crate::{Message, Outcome, Sink};

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
