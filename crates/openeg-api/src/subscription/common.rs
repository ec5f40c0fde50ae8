//! What the validation of sources, targets and bodies shares: limits, the store facts a body is
//! validated against ([`Env`]), client ids and `provider_type`.

use crate::field::Fields;
use crate::validate::{self, NamePattern};
use crate::EgError;
use serde::Serialize;
use std::collections::{HashMap, HashSet};

/// Compact-JSON size limit of a source `detail` and of every target detail object.
pub const MAX_DETAIL_BYTES: usize = 1024;
/// `provider_type` of subscription sources and targets.
pub const PROVIDER_TYPES: [&str; 2] = ["CUSTOM", "OFFICIAL"];

/// The channel a subscription belongs to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelFacts {
    pub id: String,
    pub name: String,
    /// The project's default channel (official sources only subscribe there).
    pub is_default: bool,
}

/// Store facts a body is validated against, resolved by the caller beforehand.
#[derive(Debug, Clone, Default)]
pub struct Env {
    pub project_id: String,
    /// The subscription's channel; `None` when the body's `channel_id` names no channel of the
    /// project (create only).
    pub channel: Option<ChannelFacts>,
    /// Names of the project's custom event sources.
    pub custom_sources: HashSet<String>,
    /// The project's connections: id → type (`WEBHOOK`, `KAFKA`, `ROCKETMQ`).
    pub connections: HashMap<String, String>,
}

/// Compact-JSON size in bytes.
pub(super) fn size_of<T: Serialize + ?Sized>(v: &T) -> usize {
    serde_json::to_vec(v).map(|b| b.len()).unwrap_or(usize::MAX)
}

/// The optional client `id` of a source or target.
pub(super) fn client_id(f: &Fields) -> Result<Option<String>, EgError> {
    match f.opt_str("id")? {
        Some(id) if !id.is_empty() => {
            validate::name(&f.at("id"), id, NamePattern::ClientId)?;
            Ok(Some(id.to_string()))
        }
        _ => Ok(None),
    }
}

/// `provider_type` of a source or target: CUSTOM or OFFICIAL.
pub(super) fn provider_type<'a>(f: &Fields<'a>) -> Result<&'a str, EgError> {
    let pt = f.req_str("provider_type")?;
    if !PROVIDER_TYPES.contains(&pt) {
        return Err(EgError::param(format!(
            "{} must be CUSTOM or OFFICIAL",
            f.at("provider_type")
        )));
    }
    Ok(pt)
}
