//! Sink kinds, one module each, with their configuration next to them. Each module also owns
//! the step from a typed target spec ([`openeg_api::target_spec`]) to its sink, a `build`
//! function (Vector's `SinkConfig::build`); [`build`] is the one registration point that
//! dispatches a spec to its module by kind.

pub mod dead_letter;
pub mod functiongraph;
pub mod http;
pub mod kafka;
pub mod obs;
pub mod rocketmq;
pub mod smn;
pub mod webhook;
pub mod workflow;

pub use functiongraph::{FunctionGraphConfig, FunctionGraphSink, InvokeType};
pub use http::HttpClient;
pub use smn::{SmnConfig, SmnSink};
pub use webhook::{WebhookConfig, WebhookSink};

use crate::Sink;
use openeg_api::subscription::TargetKind;
use openeg_api::target_spec::{TargetDetail, TargetSpec};
use serde_json::Value;

/// What building a sink needs besides the target's own spec.
pub struct BuildContext<'a> {
    /// The connection-pooling client every HTTP sink shares.
    pub http: &'a HttpClient,
    /// The subscription's project.
    pub project_id: &'a str,
    /// Base URL of the FunctionGraph API (functions and workflows), if configured.
    pub functiongraph_endpoint: Option<&'a str>,
    /// Base URL of the SMN API, if configured.
    pub smn_endpoint: Option<&'a str>,
    /// The target's connection document (`ConnectionInfo`, secrets revealed) when the target
    /// names one (`connection_id`); the caller resolved it beforehand. Never log it.
    pub connection: Option<&'a Value>,
}

/// Why a target cannot be built into a sink. The text is the reason recorded for every
/// attempt of that target (they fail without retry).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// A setting of this OpenEG the kind needs is absent, e.g. `functiongraph_endpoint`.
    #[error("{0} is not configured")]
    NotConfigured(&'static str),
    /// The kind has no sink in this build yet.
    #[error("{} targets are not supported by this build yet", .0.wire_name())]
    Unsupported(TargetKind),
    /// The kind is not delivered through a sink (HC.EG: the engine republishes).
    #[error("{} targets are not delivered through a sink", .0.wire_name())]
    NotASink(TargetKind),
    /// The target names a connection the sink needs, and none was resolved.
    #[error("connection {0} does not exist")]
    MissingConnection(String),
    /// The target's settings (or its connection's) cannot be used; the text says why.
    #[error("{0}")]
    Invalid(String),
}

/// Builds the sink of a target: the single registration point, one line per kind. A new sink
/// kind is one module with a `build` function plus its line here.
pub fn build(spec: &TargetSpec, ctx: &BuildContext) -> Result<Box<dyn Sink>, BuildError> {
    match &spec.detail {
        TargetDetail::Webhook(d) => webhook::build(d, ctx),
        TargetDetail::Apigw(d) => webhook::build_apigw(d, ctx),
        TargetDetail::FunctionGraph(d) => functiongraph::build(d, ctx),
        TargetDetail::Workflow(d) => workflow::build(d, ctx),
        TargetDetail::Smn(d) => smn::build(d, ctx),
        TargetDetail::Eg(_) => Err(BuildError::NotASink(TargetKind::Eg)),
        TargetDetail::Kafka(d) => kafka::build(d, ctx),
        TargetDetail::RocketMq(d) => rocketmq::build(d, ctx),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(v: Value) -> TargetSpec {
        TargetSpec::parse(&v).unwrap()
    }

    fn err(spec: &TargetSpec, ctx: &BuildContext) -> String {
        match build(spec, ctx) {
            Ok(_) => panic!("{spec:?} built"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn reasons_when_a_target_cannot_be_built() {
        let http = HttpClient::new().unwrap();
        let bare = BuildContext {
            http: &http,
            project_id: "p1",
            functiongraph_endpoint: None,
            smn_endpoint: None,
            connection: None,
        };
        let fg = spec(json!({"name": "HC.FunctionGraph", "detail": {"urn": "u"}}));
        let wf = spec(json!({"name": "HC.FunctionFlow", "detail": {"workflow_id": "w"}}));
        let smn = spec(json!({"name": "HC.SMN", "smn_detail": {"urn": "u"}}));
        let kafka = spec(json!({"name": "HC.Kafka", "connection_id": "c",
            "kafka_detail": {"topic": "t"}}));
        let rmq = spec(json!({"name": "HC.RocketMQ", "connection_id": "c",
            "rocketmq_detail": {"topic": "t"}}));
        let eg = spec(json!({"name": "HC.EG",
            "eg_detail": {"target_project_id": "p", "target_channel_id": "c"}}));
        assert_eq!(err(&fg, &bare), "functiongraph_endpoint is not configured");
        assert_eq!(err(&wf, &bare), "functiongraph_endpoint is not configured");
        assert_eq!(err(&smn, &bare), "smn_endpoint is not configured");
        assert_eq!(err(&kafka, &bare), "HC.Kafka targets need a connection_id");
        assert_eq!(err(&rmq, &bare), "HC.RocketMQ targets need a connection_id");
        assert_eq!(
            err(&eg, &bare),
            "HC.EG targets are not delivered through a sink"
        );
        let configured = BuildContext {
            functiongraph_endpoint: Some("http://fg"),
            smn_endpoint: Some("http://smn"),
            ..bare
        };
        for s in [&fg, &wf, &smn] {
            assert!(build(s, &configured).is_ok(), "{s:?}");
        }
        let hook = spec(json!({"name": "WEBHOOK", "detail": {"url": "http://h/"}}));
        let apigw = spec(json!({"name": "HC.APIGW", "apigw_detail": {"url": "http://h/"}}));
        assert!(build(&hook, &configured).is_ok());
        assert!(build(&apigw, &configured).is_ok());
    }
}
