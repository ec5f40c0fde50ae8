//! Common validation: names, descriptions, paging, compact sizes. Typed access to the members
//! of a request body is [`crate::field`].
//!
//! Every function returns an [`EgError`] whose detail names the offending field, so the
//! server can answer "one error per response, first violation" (`docs/errors.md`).

use crate::EgError;
use serde_json::Value;

/// Name patterns of resources and client ids (`docs/limits.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamePattern {
    /// `^[A-Za-z0-9][A-Za-z0-9._-]*$`
    Mixed,
    /// `^[a-z0-9][a-z0-9._-]*$` (custom sources)
    Lower,
    /// `^[a-z0-9][a-z0-9-]*$` with 32–64 chars (subscription source/target client ids)
    ClientId,
}

impl NamePattern {
    /// The pattern as an ECMA-262 regular expression (error messages and the OpenAPI document).
    pub fn regex(self) -> &'static str {
        match self {
            NamePattern::Mixed => "^[A-Za-z0-9][A-Za-z0-9._-]*$",
            NamePattern::Lower => "^[a-z0-9][a-z0-9._-]*$",
            NamePattern::ClientId => "^[a-z0-9][a-z0-9-]*$",
        }
    }

    /// Inclusive length bounds in characters.
    pub fn lengths(self) -> (usize, usize) {
        match self {
            NamePattern::ClientId => (32, 64),
            _ => (1, 128),
        }
    }
}

/// Checks a resource name or client id against its pattern and length.
pub fn name(field: &str, v: &str, pat: NamePattern) -> Result<(), EgError> {
    let (min, max) = pat.lengths();
    let n = v.chars().count();
    if n < min || n > max {
        return Err(EgError::param(format!(
            "{field} must be {min} to {max} characters long"
        )));
    }
    let first_ok = |c: char| match pat {
        NamePattern::Mixed => c.is_ascii_alphanumeric(),
        NamePattern::Lower | NamePattern::ClientId => c.is_ascii_lowercase() || c.is_ascii_digit(),
    };
    let rest_ok = |c: char| match pat {
        NamePattern::Mixed => c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'),
        NamePattern::Lower => {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')
        }
        NamePattern::ClientId => c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-',
    };
    let mut chars = v.chars();
    let ok = chars.next().is_some_and(first_ok) && chars.all(rest_ok);
    if !ok {
        return Err(EgError::param(format!(
            "{field} must match {}",
            pat.regex()
        )));
    }
    Ok(())
}

/// Checks a free-text length in characters.
pub fn max_len(field: &str, v: &str, max: usize) -> Result<(), EgError> {
    if v.chars().count() > max {
        return Err(EgError::param(format!(
            "{field} must be at most {max} characters long"
        )));
    }
    Ok(())
}

/// Compact-serialized size of a JSON value in bytes.
pub fn compact_len(v: &Value) -> usize {
    /// Counts bytes instead of collecting them: the size check needs no buffer.
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    match serde_json::to_writer(&mut c, v) {
        Ok(()) => c.0,
        Err(_) => usize::MAX,
    }
}

/// Largest `limit` of list operations.
pub const MAX_LIMIT: u64 = 1000;
/// `limit` when absent.
pub const DEFAULT_LIMIT: u64 = 15;
/// Wire names of the sort fields, in [`SortField`] order.
pub const SORT_FIELDS: [&str; 3] = ["created_time", "updated_time", "name"];
/// The `sort` grammar `<field>:<ASC|DESC>` (direction case-insensitive) as a regular expression.
pub const SORT_PATTERN: &str = "^(created_time|updated_time|name):([Aa][Ss][Cc]|[Dd][Ee][Ss][Cc])$";

/// Sort field of list operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortField {
    CreatedTime,
    UpdatedTime,
    Name,
}

/// Paging and sorting of list operations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paging {
    pub offset: u64,
    pub limit: u64,
    pub sort: SortField,
    pub descending: bool,
}

impl Default for Paging {
    fn default() -> Self {
        Paging {
            offset: 0,
            limit: DEFAULT_LIMIT,
            sort: SortField::CreatedTime,
            descending: true,
        }
    }
}

/// Parses `offset`, `limit`, `sort` from query values (already percent-decoded).
pub fn paging(
    offset: Option<&str>,
    limit: Option<&str>,
    sort: Option<&str>,
) -> Result<Paging, EgError> {
    let mut p = Paging::default();
    if let Some(o) = offset {
        p.offset = o
            .trim()
            .parse::<u64>()
            .map_err(|_| EgError::param("offset must be an integer >= 0"))?;
    }
    if let Some(l) = limit {
        p.limit = match l.trim().parse::<u64>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                return Err(EgError::param(format!(
                    "limit must be an integer between 1 and {MAX_LIMIT}"
                )))
            }
        };
    }
    if let Some(s) = sort {
        let Some((field, dir)) = s.split_once(':') else {
            return Err(EgError::param(
                "sort must be <created_time|updated_time|name>:<ASC|DESC>",
            ));
        };
        p.sort = match SORT_FIELDS.iter().position(|f| *f == field) {
            Some(0) => SortField::CreatedTime,
            Some(1) => SortField::UpdatedTime,
            Some(2) => SortField::Name,
            _ => {
                return Err(EgError::param(
                    "sort must be <created_time|updated_time|name>:<ASC|DESC>",
                ))
            }
        };
        p.descending = if dir.eq_ignore_ascii_case("desc") {
            true
        } else if dir.eq_ignore_ascii_case("asc") {
            false
        } else {
            return Err(EgError::param(
                "sort must be <created_time|updated_time|name>:<ASC|DESC>",
            ));
        };
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(name("name", "a", NamePattern::Mixed).is_ok());
        assert!(name("name", "Ab.c_d-e9", NamePattern::Mixed).is_ok());
        assert!(name("name", &"a".repeat(128), NamePattern::Mixed).is_ok());
        assert!(name("name", &"a".repeat(129), NamePattern::Mixed).is_err());
        assert!(name("name", "", NamePattern::Mixed).is_err());
        assert!(name("name", "-a", NamePattern::Mixed).is_err());
        assert!(name("name", "a b", NamePattern::Mixed).is_err());
        assert!(name("name", "Upper", NamePattern::Lower).is_err());
        assert!(name("name", "lower.ok", NamePattern::Lower).is_ok());
        assert!(name("id", &"a".repeat(31), NamePattern::ClientId).is_err());
        assert!(name("id", &"a".repeat(32), NamePattern::ClientId).is_ok());
        assert!(name("id", &format!("{}_", "a".repeat(32)), NamePattern::ClientId).is_err());
        let e = name("name", &"x".repeat(129), NamePattern::Mixed).unwrap_err();
        assert_eq!(e.code, "EG.00513000");
    }

    #[test]
    fn paging_defaults_and_bounds() {
        assert_eq!(paging(None, None, None).unwrap(), Paging::default());
        let p = paging(Some("5"), Some("1000"), Some("name:asc")).unwrap();
        assert_eq!(
            (p.offset, p.limit, p.sort, p.descending),
            (5, 1000, SortField::Name, false)
        );
        assert!(paging(None, Some("0"), None).is_err());
        assert!(paging(None, Some("1001"), None).is_err());
        assert!(paging(Some("-1"), None, None).is_err());
        assert!(paging(Some("x"), None, None).is_err());
        assert!(paging(None, None, Some("id:ASC")).is_err());
        assert!(paging(None, None, Some("name:UP")).is_err());
        assert!(paging(None, None, Some("name")).is_err());
        assert!(
            paging(None, None, Some("updated_time:DESC"))
                .unwrap()
                .descending
        );
    }

    #[test]
    fn compact_length_counts_compact_bytes() {
        let v: Value = serde_json::from_str("{ \"a\" : [1, 2],  \"b\": \"é\" }").unwrap();
        assert_eq!(compact_len(&v), serde_json::to_vec(&v).unwrap().len());
        assert_eq!(compact_len(&v), r#"{"a":[1,2],"b":"é"}"#.len());
    }
}
