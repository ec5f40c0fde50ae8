//! HC.FunctionFlow targets (FunctionGraph workflows): started through the FunctionGraph
//! endpoint, `POST {endpoint}/v2/{project_id}/fgs/workflows/{workflow_id}/executions` with the
//! payload as the body, sent like a webhook.

use super::http::path_segment;
use super::webhook::{WebhookConfig, WebhookSink};
use super::{BuildContext, BuildError};
use crate::Sink;
use openeg_api::target_spec::WorkflowDetail;

/// The executions URL of a workflow.
pub fn executions_url(endpoint: &str, project_id: &str, workflow_id: &str) -> String {
    format!(
        "{}/v2/{}/fgs/workflows/{}/executions",
        endpoint.trim_end_matches('/'),
        path_segment(project_id),
        path_segment(workflow_id)
    )
}

/// A workflow target, through the configured `functiongraph_endpoint`.
pub fn build(d: &WorkflowDetail, ctx: &BuildContext) -> Result<Box<dyn Sink>, BuildError> {
    let endpoint = ctx
        .functiongraph_endpoint
        .ok_or(BuildError::NotConfigured("functiongraph_endpoint"))?;
    Ok(Box::new(WebhookSink::new(
        ctx.http.clone(),
        WebhookConfig {
            url: executions_url(endpoint, ctx.project_id, &d.workflow_id),
            headers: vec![],
        },
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url() {
        assert_eq!(
            executions_url("http://fg/", "p1", "wf 1"),
            "http://fg/v2/p1/fgs/workflows/wf%201/executions"
        );
    }
}
