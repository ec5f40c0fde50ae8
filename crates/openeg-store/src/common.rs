//! Helpers shared by the SQLite and PostgreSQL implementations.

/// SQLite has one writer: writes take the store's write lock.
macro_rules! sqlite_write {
    ($s:ident) => {
        $s.write.lock().await
    };
}

/// PostgreSQL: each statement (or transaction) is atomic on its own.
macro_rules! no_lock {
    ($s:ident) => {
        std::marker::PhantomData::<()>
    };
}

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::{Document, Kind, QuotaCheck, SortKey, StoreError};

pub(crate) fn parse_kind(s: &str) -> Result<Kind, StoreError> {
    Kind::parse(s).ok_or_else(|| StoreError::Backend(format!("unknown kind {s:?} in database")))
}

/// Maps a sqlx error without leaking bound values: only the operation, the SQLSTATE / SQLite
/// code and the engine's message (which names columns and constraints, never row data).
pub(crate) fn backend(op: &str, e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) => StoreError::Backend(format!(
            "{op}: database error {}: {}",
            db.code().as_deref().unwrap_or("?"),
            db.message()
        )),
        sqlx::Error::RowNotFound => StoreError::Backend(format!("{op}: row not found")),
        sqlx::Error::ColumnDecode { index, .. } => {
            StoreError::Backend(format!("{op}: cannot decode column {index}"))
        }
        // Pool, I/O, TLS and protocol errors carry no row data.
        _ => StoreError::Backend(format!("{op}: {e}")),
    }
}

/// True when `e` is a unique violation of the name index (not of the primary key).
pub(crate) fn is_name_violation(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            // PostgreSQL reports the constraint; SQLite only names the columns in its message.
            db.constraint() == Some("records_name_uq") || db.message().contains("records.name")
        }
        _ => false,
    }
}

pub(crate) fn map_write_err(op: &str, e: sqlx::Error) -> StoreError {
    if is_name_violation(&e) {
        StoreError::Duplicate
    } else if matches!(&e, sqlx::Error::Database(db) if db.is_unique_violation()) {
        StoreError::Backend(format!("{op}: id already exists"))
    } else {
        backend(op, e)
    }
}

pub(crate) fn body_text(body: &Value) -> Result<String, StoreError> {
    serde_json::to_string(body).map_err(|_| StoreError::Backend("cannot serialize body".into()))
}

/// Builds a record from the columns every SELECT returns; `refs` is a JSON array text.
#[allow(clippy::too_many_arguments)]
pub(crate) fn build_record(
    project_id: String,
    kind: String,
    id: String,
    name: String,
    parent_id: Option<String>,
    created_at: i64,
    updated_at: i64,
    body: String,
    refs: Option<String>,
) -> Result<Document, StoreError> {
    // serde_json's messages give only line/column, never the content.
    let body: Value = serde_json::from_str(&body)
        .map_err(|e| StoreError::Backend(format!("stored body is not JSON: {e}")))?;
    let refs: Vec<String> = match refs {
        Some(r) => serde_json::from_str(&r)
            .map_err(|e| StoreError::Backend(format!("stored refs are not JSON: {e}")))?,
        None => Vec::new(),
    };
    Ok(Document {
        project_id,
        kind: parse_kind(&kind)?,
        id,
        name,
        parent_id,
        created_at,
        updated_at,
        body,
        refs,
    })
}

/// Whether inserting `rec` raises the count that `q` limits.
pub(crate) fn counts_toward(rec: &Document, q: &QuotaCheck) -> bool {
    if rec.kind != q.kind {
        return false;
    }
    if let Some(p) = &q.parent_id {
        if rec.parent_id.as_deref() != Some(p.as_str()) {
            return false;
        }
    }
    if let Some((k, v)) = &q.body_eq {
        return rec.body.get(k).and_then(Value::as_str) == Some(v.as_str());
    }
    true
}

pub(crate) fn sort_column(k: SortKey) -> &'static str {
    match k {
        SortKey::CreatedAt => "r.created_at",
        SortKey::UpdatedAt => "r.updated_at",
        SortKey::Name => "r.name",
    }
}

pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(crate) fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Stable 64-bit advisory-lock key for (project, kind); stable across nodes and versions.
pub(crate) fn lock_key(project_id: &str, kind: Kind) -> i64 {
    advisory_key(&[
        b"openeg:quota:",
        project_id.as_bytes(),
        &[0u8],
        kind.as_str().as_bytes(),
    ])
}

/// The advisory-lock key of an exclusive section (never equal to a quota key: other prefix).
pub(crate) fn section_key(name: &str) -> i64 {
    advisory_key(&[b"openeg:section:", name.as_bytes()])
}

/// A PostgreSQL advisory-lock key: the first 8 bytes of the SHA-256 of `parts`.
fn advisory_key(parts: &[&[u8]]) -> i64 {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    i64::from_be_bytes(b)
}

/// A statement written for PostgreSQL (`$n` parameters), as PostgreSQL takes it.
pub(crate) fn pg_sql(sql: &str) -> String {
    sql.to_string()
}

/// The same statement for SQLite: `?n`, its numbered parameters (SQLite would read `$n` as
/// names, numbered by first use).
pub(crate) fn sqlite_sql(sql: &str) -> String {
    sql.replace('$', "?")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_roundtrip() {
        for k in Kind::ALL {
            assert_eq!(parse_kind(k.as_str()).unwrap(), k);
        }
        assert!(parse_kind("nope").is_err());
    }

    #[test]
    fn lock_keys_differ() {
        assert_ne!(lock_key("p", Kind::Channel), lock_key("p", Kind::Source));
        assert_ne!(lock_key("p1", Kind::Channel), lock_key("p2", Kind::Channel));
        assert_eq!(lock_key("p", Kind::Channel), lock_key("p", Kind::Channel));
    }
}
