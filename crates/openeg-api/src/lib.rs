//! EventGrid v1 wire contract: error codes, common validation (names, paging), and the
//! per-resource request validation that turns a request body into a stored resource document.
//!
//! Nothing here does I/O; the server crate calls these functions and renders [`EgError`].

pub mod channel_policy;
pub mod connection;
pub mod endpoint;
pub mod error;
pub mod event;
pub mod event_router;
pub mod field;
pub mod schema;
pub mod source;
pub mod stream;
pub mod subscription;
pub mod target_spec;
pub mod validate;

pub use error::EgError;
