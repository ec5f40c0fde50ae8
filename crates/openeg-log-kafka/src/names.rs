//! Log topic names → Kafka topic names.
//!
//! Kafka accepts `[A-Za-z0-9._-]` in topic names, at most 249 characters, never `.` or `..`.
//! The template is `<prefix><escaped name>`: the bytes `[A-Za-z0-9.-]` of the log topic's
//! UTF-8 name stay as they are and every other byte, `_` included, becomes `_XX` (two
//! upper-case hex digits). `_` only ever starts an escape, so distinct names stay distinct.

use openeg_log::LogError;

/// Kafka's limit on topic names, in characters (all ASCII here).
pub const MAX_KAFKA_TOPIC_LEN: usize = 249;

fn plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'.' || b == b'-'
}

/// Whether `prefix` may start Kafka topic names: Kafka's own characters only.
pub(crate) fn valid_prefix(prefix: &str) -> bool {
    prefix.len() < MAX_KAFKA_TOPIC_LEN
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The Kafka topic holding log topic `topic` (see the module docs for the template).
pub fn kafka_topic_name(prefix: &str, topic: &str) -> Result<String, LogError> {
    if topic.is_empty() || !valid_prefix(prefix) {
        return Err(LogError::InvalidName(topic.to_owned()));
    }
    let mut out = String::with_capacity(prefix.len() + topic.len());
    out.push_str(prefix);
    for &b in topic.as_bytes() {
        if plain(b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("_{b:02X}"));
        }
        if out.len() > MAX_KAFKA_TOPIC_LEN {
            return Err(LogError::InvalidName(topic.to_owned()));
        }
    }
    // Kafka refuses these two names outright (they would be directory names).
    if out == "." || out == ".." {
        return Err(LogError::InvalidName(topic.to_owned()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template() {
        let n = |t: &str| kafka_topic_name("openeg.", t).unwrap();
        assert_eq!(n("p1.chan-1"), "openeg.p1.chan-1");
        assert_eq!(n("a_b"), "openeg.a_5Fb");
        assert_eq!(n("a/b c"), "openeg.a_2Fb_20c");
        assert_eq!(n("ü"), "openeg._C3_BC");
        assert_eq!(n("%"), "openeg._25");
        assert_eq!(kafka_topic_name("", "x.y").unwrap(), "x.y");
        for name in ["a_b", "a/b c", "ü", "%", "ns:topic", "p.c-1"] {
            let k = n(name);
            assert!(
                k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')),
                "{k}"
            );
        }
    }

    #[test]
    fn distinct_names_stay_distinct() {
        // `_` is always escaped, so an escape never collides with literal text.
        let names = ["a_5Fb", "a_b", "a/b", "a_2Fb", "a.b", "a-b"];
        let mapped: std::collections::HashSet<String> = names
            .iter()
            .map(|t| kafka_topic_name("", t).unwrap())
            .collect();
        assert_eq!(mapped.len(), names.len());
    }

    #[test]
    fn invalid_names() {
        let bad = |p: &str, t: &str| matches!(kafka_topic_name(p, t), Err(LogError::InvalidName(n)) if n == t);
        assert!(bad("openeg.", ""));
        assert!(bad("", "."));
        assert!(bad("", ".."));
        assert!(bad("bad prefix", "t"));
        // 249 characters in all is the limit.
        assert_eq!(
            kafka_topic_name("openeg.", &"x".repeat(242)).unwrap().len(),
            249
        );
        assert!(bad("openeg.", &"x".repeat(243)));
        // The limit applies to the escaped form.
        assert!(bad("openeg.", &"/".repeat(81)));
        assert!(kafka_topic_name("openeg.", &"/".repeat(80)).is_ok());
    }
}
