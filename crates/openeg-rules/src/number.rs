//! The number model of filter rules: integers that fit in `i64` compare exactly, everything
//! else compares as a correctly rounded IEEE-754 double.

use std::cmp::Ordering;

/// A JSON number as the matcher sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Num {
    Int(i64),
    Float(f64),
}

impl Num {
    /// The value as a double (monotone in the exact order, used for index pre-filtering).
    #[inline]
    pub fn as_f64(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }

    /// Parses JSON number text. Returns `None` for text that is not a number.
    #[inline]
    pub fn parse(text: &[u8]) -> Option<Num> {
        let s = std::str::from_utf8(text).ok()?;
        let integral = !text.iter().any(|&b| matches!(b, b'.' | b'e' | b'E'));
        if integral {
            if let Ok(i) = s.parse::<i64>() {
                return Some(Num::Int(i));
            }
        }
        // Reject forms Rust accepts but JSON does not ("inf", "nan", "+1", ".5", "1.").
        let first = *text.first()?;
        if !(first == b'-' || first.is_ascii_digit()) || !text[text.len() - 1].is_ascii_digit() {
            return None;
        }
        s.parse::<f64>().ok().map(Num::Float)
    }

    /// Converts a serde_json number (parsed with `float_roundtrip`, so correctly rounded).
    pub fn from_json(n: &serde_json::Number) -> Num {
        if let Some(i) = n.as_i64() {
            Num::Int(i)
        } else {
            Num::Float(n.as_f64().unwrap_or(f64::NAN))
        }
    }

    /// The filter comparison: exact when both are integers, otherwise as doubles.
    #[inline]
    pub fn cmp_num(self, other: Num) -> Option<Ordering> {
        match (self, other) {
            (Num::Int(a), Num::Int(b)) => Some(a.cmp(&b)),
            (a, b) => a.as_f64().partial_cmp(&b.as_f64()),
        }
    }

    #[inline]
    pub fn num_eq(self, other: Num) -> bool {
        self.cmp_num(other) == Some(Ordering::Equal)
    }
}

impl std::fmt::Display for Num {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Num::Int(i) => write!(f, "{i}"),
            Num::Float(x) => write!(f, "{x}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_compare() {
        assert_eq!(Num::parse(b"10"), Some(Num::Int(10)));
        assert_eq!(Num::parse(b"-0"), Some(Num::Int(0)));
        assert_eq!(Num::parse(b"1.5e1"), Some(Num::Float(15.0)));
        assert_eq!(Num::parse(b"nan"), None);
        assert_eq!(Num::parse(b"1."), None);
        assert_eq!(Num::parse(b""), None);
        assert!(Num::Int(10).num_eq(Num::Float(10.0)));
        // Exact integer compare where doubles would tie.
        assert_ne!(
            Num::Int(9_007_199_254_740_993).cmp_num(Num::Int(9_007_199_254_740_992)),
            Some(Ordering::Equal)
        );
        let big = Num::parse(b"18446744073709551616").unwrap();
        assert!(matches!(big, Num::Float(_)));
    }
}
