//! On-disk framing of one appended batch.
//!
//! Every `append` call becomes exactly one frame, so a batch is all-or-nothing after recovery:
//! a torn or corrupted frame is dropped whole, never half of it.
//!
//! ```text
//! frame   = body_len u32 | crc u32 | base_offset u64 | count u32 | record * count
//! record  = len u32 | payload
//! ```
//!
//! All integers are little-endian. `body_len` counts the bytes after itself; `crc` is CRC-32C
//! over everything after the crc field (base offset, count and records), so a frame carries its
//! own offset and recovery can check continuity as well as integrity.

use bytes::Bytes;
use crc::{Crc, Table, CRC_32_ISCSI};
use std::ops::Range;

/// Bytes before the first record: body_len, crc, base_offset, count.
pub(crate) const HEADER_LEN: usize = 20;
/// Sanity bound on a frame's body; anything larger is treated as corruption.
pub(crate) const MAX_BODY_LEN: u32 = 1 << 30;

static CRC32C: Crc<u32, Table<16>> = Crc::<u32, Table<16>>::new(&CRC_32_ISCSI);

/// Size of the frame `encode` produces for `records`.
pub(crate) fn encoded_len(records: &[Bytes]) -> usize {
    HEADER_LEN + records.iter().map(|r| 4 + r.len()).sum::<usize>()
}

/// Append the frame for `records` (first offset `base`) to `buf`.
///
/// The caller guarantees `records` is non-empty and `encoded_len(records)` fits the limits.
pub(crate) fn encode(buf: &mut Vec<u8>, base: u64, records: &[Bytes]) {
    let start = buf.len();
    let body_len = (encoded_len(records) - 4) as u32;
    buf.extend_from_slice(&body_len.to_le_bytes());
    buf.extend_from_slice(&[0u8; 4]);
    buf.extend_from_slice(&base.to_le_bytes());
    buf.extend_from_slice(&(records.len() as u32).to_le_bytes());
    for r in records {
        buf.extend_from_slice(&(r.len() as u32).to_le_bytes());
        buf.extend_from_slice(r);
    }
    let crc = CRC32C.checksum(&buf[start + 8..]);
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// A validated frame at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameInfo {
    /// Total bytes of the frame, header included.
    pub len: usize,
    pub base: u64,
    pub count: u32,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Parse {
    Frame(FrameInfo),
    /// The buffer holds a prefix of a frame; at least `need` bytes are required to decide.
    Incomplete {
        need: usize,
    },
    Corrupt(&'static str),
}

fn u32_at(buf: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&buf[at..at + 4]);
    u32::from_le_bytes(b)
}

fn u64_at(buf: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    u64::from_le_bytes(b)
}

/// Parse and verify (length, checksum, record layout) the frame at the start of `buf`.
pub(crate) fn parse(buf: &[u8]) -> Parse {
    if buf.len() < 4 {
        return Parse::Incomplete { need: HEADER_LEN };
    }
    let body_len = u32_at(buf, 0);
    if (body_len as usize) < HEADER_LEN - 4 || body_len > MAX_BODY_LEN {
        return Parse::Corrupt("invalid frame length");
    }
    let len = body_len as usize + 4;
    if buf.len() < len {
        return Parse::Incomplete { need: len };
    }
    let frame = &buf[..len];
    if CRC32C.checksum(&frame[8..]) != u32_at(frame, 4) {
        return Parse::Corrupt("checksum mismatch");
    }
    let base = u64_at(frame, 8);
    let count = u32_at(frame, 16);
    if count == 0 {
        return Parse::Corrupt("empty frame");
    }
    // The checksum matched, so a layout mismatch means a writer bug, not a torn write; still
    // refuse it rather than hand out garbage.
    let mut pos = HEADER_LEN;
    for _ in 0..count {
        if pos + 4 > len {
            return Parse::Corrupt("record header past frame end");
        }
        pos += 4 + u32_at(frame, pos) as usize;
        if pos > len {
            return Parse::Corrupt("record past frame end");
        }
    }
    if pos != len {
        return Parse::Corrupt("trailing bytes in frame");
    }
    Parse::Frame(FrameInfo { len, base, count })
}

/// Byte ranges of the payloads of a frame already validated by [`parse`].
pub(crate) fn payloads(frame: &[u8], count: u32) -> impl Iterator<Item = Range<usize>> + '_ {
    let mut pos = HEADER_LEN;
    (0..count).map(move |_| {
        let len = u32_at(frame, pos) as usize;
        let r = pos + 4..pos + 4 + len;
        pos = r.end;
        r
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(base: u64, recs: &[&[u8]]) -> Vec<u8> {
        let recs: Vec<Bytes> = recs.iter().map(|r| Bytes::copy_from_slice(r)).collect();
        let mut buf = Vec::new();
        encode(&mut buf, base, &recs);
        assert_eq!(buf.len(), encoded_len(&recs));
        buf
    }

    #[test]
    fn roundtrip() {
        let buf = frame(42, &[b"a", b"", b"hello"]);
        let Parse::Frame(info) = parse(&buf) else {
            panic!("not a frame")
        };
        assert_eq!(
            info,
            FrameInfo {
                len: buf.len(),
                base: 42,
                count: 3
            }
        );
        let got: Vec<&[u8]> = payloads(&buf, info.count).map(|r| &buf[r]).collect();
        assert_eq!(got, vec![&b"a"[..], b"", b"hello"]);
    }

    #[test]
    fn every_prefix_is_incomplete() {
        let buf = frame(7, &[b"payload", b"more"]);
        for cut in 0..buf.len() {
            assert!(
                matches!(parse(&buf[..cut]), Parse::Incomplete { .. }),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn every_single_byte_flip_is_detected() {
        let buf = frame(7, &[b"payload", b"more"]);
        for i in 0..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x40;
            match parse(&bad) {
                Parse::Frame(_) => panic!("flip at {i} not detected"),
                Parse::Corrupt(_) | Parse::Incomplete { .. } => {}
            }
        }
    }

    #[test]
    fn zeroes_are_corrupt() {
        assert_eq!(parse(&[0u8; 64]), Parse::Corrupt("invalid frame length"));
    }
}
