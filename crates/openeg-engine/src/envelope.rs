//! The log record of a channel: an envelope `{"received":<epoch ms>,"event":<event>}` around
//! the CloudEvent's compact JSON text (`openeg_api::event::check`).
//!
//! This module alone writes and reads it. Writing puts the envelope around the event's text
//! as it is (no parse, no re-serialization); reading borrows from the record, and the event's
//! text can be taken out as a shared slice of the record (no copy).

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

/// Writes the envelopes of events received at one time; the head is formatted once.
pub struct Encoder {
    head: String,
}

impl Encoder {
    /// Envelopes of events received at `received` (epoch ms).
    pub fn new(received: i64) -> Encoder {
        Encoder {
            head: format!("{{\"received\":{received},\"event\":"),
        }
    }

    /// The record of one event; `event` must be one JSON value (validated by the caller).
    pub fn encode(&self, event: &[u8]) -> Bytes {
        let mut out = Vec::with_capacity(self.head.len() + event.len() + 1);
        out.extend_from_slice(self.head.as_bytes());
        out.extend_from_slice(event);
        out.push(b'}');
        Bytes::from(out)
    }
}

/// The record of one event received at `received` (epoch ms).
pub fn encode(received: i64, event: &[u8]) -> Bytes {
    Encoder::new(received).encode(event)
}

/// A decoded record, borrowing from it.
#[derive(Debug, Deserialize)]
pub struct Envelope<'a> {
    /// When the event was accepted (epoch ms).
    pub received: i64,
    #[serde(borrow)]
    event: &'a RawValue,
}

/// A log record that is not an envelope (a log written by something else, or damaged).
#[derive(Debug, thiserror::Error)]
#[error("not an event envelope: {0}")]
pub struct EnvelopeError(serde_json::Error);

impl<'a> Envelope<'a> {
    /// Reads a record without copying its event.
    pub fn decode(record: &'a [u8]) -> Result<Envelope<'a>, EnvelopeError> {
        serde_json::from_slice(record).map_err(EnvelopeError)
    }

    /// The event's JSON text, as logged.
    pub fn event(&self) -> &'a [u8] {
        self.event.get().as_bytes()
    }

    /// The event's text as a shared slice of `record`, the record this envelope was decoded
    /// from (no copy). Given another record, the text is copied.
    pub fn event_in(&self, record: &Bytes) -> Bytes {
        let raw = self.event();
        let start = (raw.as_ptr() as usize).wrapping_sub(record.as_ptr() as usize);
        match start.checked_add(raw.len()) {
            Some(end) if end <= record.len() => record.slice(start..end),
            _ => Bytes::copy_from_slice(raw),
        }
    }
}

/// The key that picks an event's partition: its CloudEvents `partitionkey` extension when it
/// is a string, else its id (events are checked before they are logged; a text that is not
/// an object keys on itself).
pub fn partition_key(event: &[u8]) -> Vec<u8> {
    #[derive(Deserialize)]
    struct Keys<'a> {
        #[serde(borrow, default)]
        partitionkey: Option<&'a RawValue>,
        #[serde(borrow, default)]
        id: Option<std::borrow::Cow<'a, str>>,
    }
    let Ok(k) = serde_json::from_slice::<Keys>(event) else {
        return event.to_vec();
    };
    if let Some(Ok(pk)) = k
        .partitionkey
        .map(|raw| serde_json::from_str::<std::borrow::Cow<str>>(raw.get()))
    {
        return pk.into_owned().into_bytes();
    }
    k.id.map(|id| id.into_owned().into_bytes())
        .unwrap_or_else(|| event.to_vec())
}

/// The event of a record, as a shared slice of it.
pub fn event_of(record: &Bytes) -> Result<Bytes, EnvelopeError> {
    Ok(Envelope::decode(record)?.event_in(record))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_keys() {
        assert_eq!(partition_key(br#"{"id":"e1","partitionkey":"k"}"#), b"k");
        assert_eq!(
            partition_key(br#"{"partitionkey":"k\u0041","id":"e1"}"#),
            b"kA"
        );
        assert_eq!(partition_key(br#"{"id":"e1","source":"s"}"#), b"e1");
        // Not a string: the id decides.
        assert_eq!(partition_key(br#"{"id":"e1","partitionkey":7}"#), b"e1");
        assert_eq!(partition_key(b"[1]"), b"[1]");
    }

    const EVENT: &[u8] =
        br#"{"id":"1","source":"s","specversion":"1.0","type":"t","data":{"a":[1,"}"]}}"#;

    #[test]
    fn round_trip() {
        let rec = encode(1_700_000_000_123, EVENT);
        assert_eq!(
            &rec[..],
            &br#"{"received":1700000000123,"event":"#
                .iter()
                .chain(EVENT)
                .chain(b"}")
                .copied()
                .collect::<Vec<u8>>()[..]
        );
        let env = Envelope::decode(&rec).unwrap();
        assert_eq!(env.received, 1_700_000_000_123);
        assert_eq!(env.event(), EVENT);
        assert_eq!(&event_of(&rec).unwrap()[..], EVENT);
        // A batch's encoder writes the same records.
        let enc = Encoder::new(1_700_000_000_123);
        assert_eq!(enc.encode(EVENT), rec);
        // The envelope is JSON: any reader sees the event as its `event` member.
        let v: serde_json::Value = serde_json::from_slice(&rec).unwrap();
        let want: serde_json::Value = serde_json::from_slice(EVENT).unwrap();
        assert_eq!(v["event"], want);
    }

    #[test]
    fn a_malformed_record_is_an_error() {
        for bad in [
            &b""[..],
            b"not json",
            b"{\"received\":1}",
            b"{\"event\":{}}",
            b"{\"received\":\"x\",\"event\":{}}",
            b"{\"received\":1,\"event\":{\"id\":",
            b"[1]",
            b"\xff\xfe",
        ] {
            assert!(Envelope::decode(bad).is_err(), "{bad:?}");
            assert!(event_of(&Bytes::copy_from_slice(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_event_shares_the_records_memory() {
        let rec = encode(5, EVENT);
        let event = event_of(&rec).unwrap();
        let range = rec.as_ptr_range();
        assert!(range.contains(&event.as_ptr()), "the event was copied");
        let head = b"{\"received\":5,\"event\":".len();
        assert_eq!(event.as_ptr() as usize - rec.as_ptr() as usize, head);
        assert_eq!(&event[..], EVENT);
        // Decoded from a copy, the slice of another record is a copy, not a wrong slice.
        let other = Bytes::copy_from_slice(&rec);
        let env = Envelope::decode(&other).unwrap();
        let copied = env.event_in(&rec);
        assert_eq!(&copied[..], EVENT);
        assert!(!range.contains(&copied.as_ptr()));
    }
}
