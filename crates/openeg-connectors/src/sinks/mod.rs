//! Sink kinds, one module each, with their configuration next to them.

pub mod functiongraph;
pub mod http;
pub mod smn;
pub mod webhook;

pub use functiongraph::{FunctionGraphConfig, FunctionGraphSink, InvokeType};
pub use http::HttpClient;
pub use smn::{SmnConfig, SmnSink};
pub use webhook::{WebhookConfig, WebhookSink};
