//! Topic and group names become directory and file names; encode them so any UTF-8 name is
//! safe (no `/`, no `.` or `..`, no hidden files) and decodes back exactly.

use crate::LogError;

/// Longest accepted name, in bytes (Kafka's topic-name limit).
pub(crate) const MAX_LEN: usize = 249;
/// Longest encoded form, leaving room for suffixes under the usual 255-byte file-name limit.
const MAX_ENCODED_LEN: usize = 230;

fn plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// `[A-Za-z0-9_-]` stay as they are; every other byte becomes `%XX`.
pub(crate) fn encode(name: &str) -> Result<String, LogError> {
    if name.is_empty() || name.len() > MAX_LEN {
        return Err(LogError::InvalidName(name.to_owned()));
    }
    let mut out = String::with_capacity(name.len());
    for &b in name.as_bytes() {
        if plain(b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.len() > MAX_ENCODED_LEN {
        return Err(LogError::InvalidName(name.to_owned()));
    }
    Ok(out)
}

/// Inverse of [`encode`]; `None` for anything `encode` would not produce.
pub(crate) fn decode(encoded: &str) -> Option<String> {
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                let b = u8::from_str_radix(hex, 16).ok()?;
                if plain(b) {
                    return None;
                }
                out.push(b);
                i += 3;
            }
            b if plain(b) => {
                out.push(b);
                i += 1;
            }
            _ => return None,
        }
    }
    let s = String::from_utf8(out).ok()?;
    (encode(&s).ok()? == encoded).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        for name in [
            "default", "chan-1_x", "a.b", "..", "a/b", "ü", "%41", "ns:topic",
        ] {
            let enc = encode(name).unwrap();
            assert!(enc.bytes().all(|b| plain(b) || b == b'%'), "{enc}");
            assert_eq!(decode(&enc).as_deref(), Some(name));
        }
        assert!(encode("").is_err());
        assert!(encode(&"x".repeat(250)).is_err());
        assert!(encode(&"/".repeat(100)).is_err());
        assert_eq!(decode("a%2"), None);
        assert_eq!(decode("%41"), None); // 'A' must not be escaped
        assert_eq!(decode("a.b"), None);
    }
}
