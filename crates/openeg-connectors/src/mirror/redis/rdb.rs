//! A streaming reader of Redis RDB files (versions 1–12) that turns every key into a `RESTORE`
//! payload without decoding its value.
//!
//! A value's bytes in an RDB file are exactly what `DUMP` returns for it, minus the footer:
//! `DUMP` = type byte, value bytes, RDB version (2 bytes, little-endian), CRC-64 of all of
//! that (8 bytes, little-endian). So the reader only has to know where each value ends (the
//! length prefixes of every encoding), copy those bytes and add the footer; a list, hash or
//! stream is never rebuilt, and the target decodes it exactly as the source stored it.
//!
//! Invariants:
//! * Every byte read is checked against the file's trailing CRC-64 (when the source wrote one):
//!   a corrupt transfer is an error, never a partial copy reported as complete.
//! * What this reader cannot copy (module values, hash fields with their own TTLs) is an
//!   error naming the key's type, not a silent skip.

use std::io::{self, Read};

/// Redis's CRC-64 (Jones polynomial, reflected, as `crc64.c`): `DUMP` payloads and RDB files.
pub struct Crc64(u64);

const fn crc64_table() -> [u64; 256] {
    const POLY: u64 = 0xad93_d235_94c9_35a9u64.reverse_bits();
    let mut table = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u64;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 == 1 { (c >> 1) ^ POLY } else { c >> 1 };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

static CRC64_TABLE: [u64; 256] = crc64_table();

impl Crc64 {
    pub fn new() -> Crc64 {
        Crc64(0)
    }

    pub fn update(&mut self, data: &[u8]) {
        let mut c = self.0;
        for b in data {
            c = CRC64_TABLE[((c ^ u64::from(*b)) & 0xff) as usize] ^ (c >> 8);
        }
        self.0 = c;
    }

    pub fn value(&self) -> u64 {
        self.0
    }
}

impl Default for Crc64 {
    fn default() -> Self {
        Crc64::new()
    }
}

/// One key of the file, ready for `RESTORE key ttl payload REPLACE ABSTTL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub db: u32,
    pub key: Vec<u8>,
    /// Absolute expiry in Unix milliseconds.
    pub expire_at_ms: Option<i64>,
    /// The `DUMP` payload (type byte, value, version, CRC-64).
    pub payload: Vec<u8>,
}

/// What the file holds, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Entry(Entry),
    /// A function library's code (`FUNCTION LOAD REPLACE` recreates it).
    Function(Vec<u8>),
    /// The end of the file: every key was read and the checksum matched.
    End,
}

// Opcodes (rdb.h).
const OP_SLOT_INFO: u8 = 244;
const OP_FUNCTION2: u8 = 245;
const OP_FUNCTION_PRE_GA: u8 = 246;
const OP_MODULE_AUX: u8 = 247;
const OP_IDLE: u8 = 248;
const OP_FREQ: u8 = 249;
const OP_AUX: u8 = 250;
const OP_RESIZEDB: u8 = 251;
const OP_EXPIRETIME_MS: u8 = 252;
const OP_EXPIRETIME: u8 = 253;
const OP_SELECTDB: u8 = 254;
const OP_EOF: u8 = 255;

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Reads an RDB stream item by item ([`RdbReader::next_item`]).
pub struct RdbReader<R> {
    r: R,
    version: u16,
    crc: Crc64,
    read: u64,
    db: u32,
    /// The value being read, when it is copied into a payload.
    capture: Option<Vec<u8>>,
    done: bool,
}

impl<R: Read> RdbReader<R> {
    /// Reads the header (`REDIS` and four version digits).
    pub fn new(r: R) -> io::Result<RdbReader<R>> {
        let mut me = RdbReader {
            r,
            version: 0,
            crc: Crc64::new(),
            read: 0,
            db: 0,
            capture: None,
            done: false,
        };
        let mut head = [0u8; 9];
        me.fill(&mut head)?;
        if &head[..5] != b"REDIS" {
            return Err(bad("not an RDB stream (no REDIS magic)"));
        }
        let digits = std::str::from_utf8(&head[5..]).map_err(|_| bad("bad RDB version"))?;
        me.version = digits.parse().map_err(|_| bad("bad RDB version"))?;
        if me.version == 0 || me.version > 12 {
            return Err(bad(format!("RDB version {} is not supported", me.version)));
        }
        Ok(me)
    }

    pub fn version(&self) -> u16 {
        self.version
    }

    /// Bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.read
    }

    /// Gives back the underlying reader (after [`Item::End`]).
    pub fn into_inner(self) -> R {
        self.r
    }

    fn fill(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.r.read_exact(buf)?;
        self.crc.update(buf);
        self.read += buf.len() as u64;
        if let Some(c) = self.capture.as_mut() {
            c.extend_from_slice(buf);
        }
        Ok(())
    }

    fn u8(&mut self) -> io::Result<u8> {
        let mut b = [0u8; 1];
        self.fill(&mut b)?;
        Ok(b[0])
    }

    fn skip(&mut self, mut n: u64) -> io::Result<()> {
        let mut buf = [0u8; 8192];
        while n > 0 {
            let k = n.min(buf.len() as u64) as usize;
            self.fill(&mut buf[..k])?;
            n -= k as u64;
        }
        Ok(())
    }

    /// A length, or `Err(special)` for an encoded string's format (`11xxxxxx`).
    fn length_or_special(&mut self) -> io::Result<Result<u64, u8>> {
        let b = self.u8()?;
        Ok(match b >> 6 {
            0 => Ok(u64::from(b & 0x3f)),
            1 => Ok((u64::from(b & 0x3f) << 8) | u64::from(self.u8()?)),
            2 => match b {
                0x80 => {
                    let mut v = [0u8; 4];
                    self.fill(&mut v)?;
                    Ok(u64::from(u32::from_be_bytes(v)))
                }
                0x81 => {
                    let mut v = [0u8; 8];
                    self.fill(&mut v)?;
                    Ok(u64::from_be_bytes(v))
                }
                _ => return Err(bad(format!("bad RDB length byte {b:#x}"))),
            },
            _ => Err(b & 0x3f),
        })
    }

    fn length(&mut self) -> io::Result<u64> {
        self.length_or_special()?
            .map_err(|s| bad(format!("an encoded string ({s}) where a length belongs")))
    }

    /// `n` bytes; memory grows with what arrives, not with what a length claims, and no
    /// string is longer than Redis's own ceiling (512 MiB).
    fn bytes(&mut self, n: u64) -> io::Result<Vec<u8>> {
        if n > 512 << 20 {
            return Err(bad(format!("a string of {n} bytes (over 512 MiB)")));
        }
        let mut v = Vec::with_capacity(n.min(1 << 20) as usize);
        let mut buf = [0u8; 8192];
        let mut left = n;
        while left > 0 {
            let k = left.min(buf.len() as u64) as usize;
            self.fill(&mut buf[..k])?;
            v.extend_from_slice(&buf[..k]);
            left -= k as u64;
        }
        Ok(v)
    }

    /// A string, decoded (keys, aux fields, function code).
    fn string(&mut self) -> io::Result<Vec<u8>> {
        match self.length_or_special()? {
            Ok(n) => self.bytes(n),
            Err(0) => Ok((self.u8()? as i8).to_string().into_bytes()),
            Err(1) => {
                let mut v = [0u8; 2];
                self.fill(&mut v)?;
                Ok(i16::from_le_bytes(v).to_string().into_bytes())
            }
            Err(2) => {
                let mut v = [0u8; 4];
                self.fill(&mut v)?;
                Ok(i32::from_le_bytes(v).to_string().into_bytes())
            }
            Err(3) => {
                let clen = self.length()?;
                let ulen = self.length()?;
                let c = self.bytes(clen)?;
                lzf_decompress(
                    &c,
                    usize::try_from(ulen).map_err(|_| bad("string too long"))?,
                )
            }
            Err(s) => Err(bad(format!("unknown string encoding {s}"))),
        }
    }

    /// A string, skipped (its bytes still go into the payload being captured).
    fn skip_string(&mut self) -> io::Result<()> {
        match self.length_or_special()? {
            Ok(n) => self.skip(n),
            Err(0) => self.skip(1),
            Err(1) => self.skip(2),
            Err(2) => self.skip(4),
            Err(3) => {
                let clen = self.length()?;
                self.length()?;
                self.skip(clen)
            }
            Err(s) => Err(bad(format!("unknown string encoding {s}"))),
        }
    }

    fn skip_strings(&mut self, n: u64) -> io::Result<()> {
        for _ in 0..n {
            self.skip_string()?;
        }
        Ok(())
    }

    /// Skips one value of `ty` (the type byte already read).
    fn skip_value(&mut self, ty: u8) -> io::Result<()> {
        match ty {
            // string; ziplist / intset / listpack encodings are one string each
            0 | 9..=13 | 16 | 17 | 20 => self.skip_string(),
            // list, set, quicklist: n strings
            1 | 2 | 14 => {
                let n = self.length()?;
                self.skip_strings(n)
            }
            // hash: n field/value pairs
            4 => {
                let n = self.length()?;
                self.skip_strings(n.saturating_mul(2))
            }
            // zset with scores as text (a length byte, 253–255 are nan/+inf/-inf)
            3 => {
                let n = self.length()?;
                for _ in 0..n {
                    self.skip_string()?;
                    let l = self.u8()?;
                    if l < 253 {
                        self.skip(u64::from(l))?;
                    }
                }
                Ok(())
            }
            // zset with binary doubles
            5 => {
                let n = self.length()?;
                for _ in 0..n {
                    self.skip_string()?;
                    self.skip(8)?;
                }
                Ok(())
            }
            // quicklist 2: (container kind, node) pairs
            18 => {
                let n = self.length()?;
                for _ in 0..n {
                    self.length()?;
                    self.skip_string()?;
                }
                Ok(())
            }
            15 | 19 | 21 => self.skip_stream(ty),
            6 | 7 => Err(bad("a module value (module types cannot be copied)")),
            _ => Err(bad(format!(
                "value type {ty} is not supported (hash fields with TTLs, or a newer Redis)"
            ))),
        }
    }

    fn skip_stream(&mut self, ty: u8) -> io::Result<()> {
        let nodes = self.length()?;
        self.skip_strings(nodes.saturating_mul(2))?;
        // length, last id
        for _ in 0..3 {
            self.length()?;
        }
        if ty >= 19 {
            // first id, max deleted id, entries added
            for _ in 0..5 {
                self.length()?;
            }
        }
        let groups = self.length()?;
        for _ in 0..groups {
            self.skip_string()?;
            self.length()?;
            self.length()?;
            if ty >= 19 {
                self.length()?; // entries read
            }
            let pel = self.length()?;
            for _ in 0..pel {
                self.skip(16 + 8)?; // id, delivery time
                self.length()?; // delivery count
            }
            let consumers = self.length()?;
            for _ in 0..consumers {
                self.skip_string()?;
                self.skip(8)?; // seen time
                if ty >= 21 {
                    self.skip(8)?; // active time
                }
                let pel = self.length()?;
                self.skip(pel.saturating_mul(16))?;
            }
        }
        Ok(())
    }

    /// The next item; after [`Item::End`] every call is an error.
    pub fn next_item(&mut self) -> io::Result<Item> {
        if self.done {
            return Err(bad("the RDB stream has ended"));
        }
        let mut expire_at_ms = None;
        loop {
            let op = self.u8()?;
            match op {
                OP_EOF => {
                    if self.version >= 5 {
                        let computed = self.crc.value();
                        let mut v = [0u8; 8];
                        self.r.read_exact(&mut v)?;
                        self.read += 8;
                        let stored = u64::from_le_bytes(v);
                        // A source with rdbchecksum off writes 0.
                        if stored != 0 && stored != computed {
                            return Err(bad("the RDB stream's checksum does not match"));
                        }
                    }
                    self.done = true;
                    return Ok(Item::End);
                }
                OP_SELECTDB => {
                    self.db = u32::try_from(self.length()?).map_err(|_| bad("bad db number"))?;
                }
                OP_RESIZEDB => {
                    self.length()?;
                    self.length()?;
                }
                OP_AUX => {
                    self.skip_string()?;
                    self.skip_string()?;
                }
                OP_EXPIRETIME => {
                    let mut v = [0u8; 4];
                    self.fill(&mut v)?;
                    expire_at_ms = Some(i64::from(i32::from_le_bytes(v)) * 1000);
                }
                OP_EXPIRETIME_MS => {
                    let mut v = [0u8; 8];
                    self.fill(&mut v)?;
                    expire_at_ms = Some(i64::from_le_bytes(v));
                }
                OP_FREQ => {
                    self.u8()?;
                }
                OP_IDLE => {
                    self.length()?;
                }
                OP_SLOT_INFO => {
                    for _ in 0..3 {
                        self.length()?;
                    }
                }
                OP_FUNCTION2 => return Ok(Item::Function(self.string()?)),
                OP_FUNCTION_PRE_GA => {
                    return Err(bad("functions saved by a Redis 7.0 release candidate"))
                }
                OP_MODULE_AUX => return Err(bad("module data (modules cannot be copied)")),
                ty => {
                    let key = self.string()?;
                    self.capture = Some(vec![ty]);
                    let skipped = self.skip_value(ty);
                    let mut payload = self.capture.take().unwrap_or_default();
                    skipped.map_err(|e| {
                        io::Error::new(
                            e.kind(),
                            format!("key {}: {e}", String::from_utf8_lossy(&key)),
                        )
                    })?;
                    payload.extend_from_slice(&self.version.to_le_bytes());
                    let mut crc = Crc64::new();
                    crc.update(&payload);
                    payload.extend_from_slice(&crc.value().to_le_bytes());
                    return Ok(Item::Entry(Entry {
                        db: self.db,
                        key,
                        expire_at_ms,
                        payload,
                    }));
                }
            }
        }
    }
}

/// LZF decompression (liblzf's format, which RDB uses for long strings).
pub fn lzf_decompress(input: &[u8], out_len: usize) -> io::Result<Vec<u8>> {
    // An LZF back-reference yields at most 264 bytes per 2 input bytes: a longer claim is
    // refused when the output overruns, and never allocated up front.
    let mut out = Vec::with_capacity(out_len.min(input.len().saturating_mul(132) + 64));
    let mut i = 0;
    let short = || bad("truncated LZF data");
    while i < input.len() {
        let ctrl = usize::from(input[i]);
        i += 1;
        if ctrl < 32 {
            let n = ctrl + 1;
            let lit = input.get(i..i + n).ok_or_else(short)?;
            out.extend_from_slice(lit);
            i += n;
        } else {
            let mut len = ctrl >> 5;
            if len == 7 {
                len += usize::from(*input.get(i).ok_or_else(short)?);
                i += 1;
            }
            let low = usize::from(*input.get(i).ok_or_else(short)?);
            i += 1;
            let back = ((ctrl & 0x1f) << 8) + low + 1;
            let start = out
                .len()
                .checked_sub(back)
                .ok_or_else(|| bad("LZF back-reference before the start"))?;
            // Overlapping copies repeat bytes: one at a time.
            for k in 0..len + 2 {
                let b = out[start + k];
                out.push(b);
            }
        }
        if out.len() > out_len {
            return Err(bad("LZF data longer than announced"));
        }
    }
    if out.len() != out_len {
        return Err(bad("LZF data shorter than announced"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc64_matches_redis() {
        // crc64.c's own test vector.
        let mut c = Crc64::new();
        c.update(b"123456789");
        assert_eq!(c.value(), 0xe9c6_d914_c4b8_d9ca);
    }

    #[test]
    fn lzf_literals_and_back_references() {
        // "abcabcabc": 3 literals, then a back-reference of 6 bytes, 3 back.
        let data = [2u8, b'a', b'b', b'c', (4 << 5), 2];
        assert_eq!(lzf_decompress(&data, 9).unwrap(), b"abcabcabc");
        assert!(lzf_decompress(&data, 8).is_err());
        assert!(lzf_decompress(&[(1 << 5), 9], 3).is_err());
    }

    /// A file with one string key with a TTL, one int-encoded string and a function.
    fn sample(version: u16) -> Vec<u8> {
        let mut f = format!("REDIS{version:04}").into_bytes();
        f.push(OP_AUX);
        f.extend_from_slice(b"\x09redis-ver\x067.0.15");
        f.push(OP_SELECTDB);
        f.push(2);
        f.push(OP_RESIZEDB);
        f.extend_from_slice(&[2, 1]);
        f.push(OP_EXPIRETIME_MS);
        f.extend_from_slice(&1_900_000_000_000i64.to_le_bytes());
        f.push(0); // string
        f.extend_from_slice(b"\x01k\x05hello");
        f.push(0);
        f.extend_from_slice(b"\x02n1\xc0\x2a"); // int8 42
        f.push(OP_FUNCTION2);
        f.extend_from_slice(b"\x03lib");
        f.push(OP_EOF);
        let mut c = Crc64::new();
        c.update(&f);
        f.extend_from_slice(&c.value().to_le_bytes());
        f
    }

    #[test]
    fn reads_entries_with_dump_payloads() {
        let file = sample(10);
        let mut r = RdbReader::new(&file[..]).unwrap();
        let Item::Entry(e) = r.next_item().unwrap() else {
            panic!("an entry")
        };
        assert_eq!(
            (e.db, &e.key[..], e.expire_at_ms),
            (2, &b"k"[..], Some(1_900_000_000_000))
        );
        // type, value, version 10, CRC-64 of those.
        assert_eq!(&e.payload[..9], b"\x00\x05hello\x0a\x00");
        let mut c = Crc64::new();
        c.update(&e.payload[..9]);
        assert_eq!(e.payload[9..], c.value().to_le_bytes());
        let Item::Entry(e) = r.next_item().unwrap() else {
            panic!("an entry")
        };
        assert_eq!((&e.key[..], e.expire_at_ms), (&b"n1"[..], None));
        assert_eq!(&e.payload[..3], b"\x00\xc0\x2a");
        assert_eq!(r.next_item().unwrap(), Item::Function(b"lib".to_vec()));
        assert_eq!(r.next_item().unwrap(), Item::End);
        assert_eq!(r.bytes_read(), file.len() as u64);
        assert!(r.next_item().is_err());
    }

    #[test]
    fn a_corrupt_stream_is_an_error() {
        let mut file = sample(10);
        let at = file.len() - 12;
        file[at] ^= 1;
        let mut r = RdbReader::new(&file[..]).unwrap();
        let mut failed = false;
        for _ in 0..5 {
            match r.next_item() {
                Err(_) => {
                    failed = true;
                    break;
                }
                Ok(Item::End) => break,
                Ok(_) => {}
            }
        }
        assert!(failed, "a flipped bit must fail the checksum");
        // Truncated: an error, not an end.
        let file = sample(10);
        let mut r = RdbReader::new(&file[..file.len() - 20]).unwrap();
        assert!((0..5).any(|_| r.next_item().is_err()));
        assert!(RdbReader::new(&b"RESIS0010"[..]).is_err());
        let mut module = b"REDIS0010".to_vec();
        module.extend_from_slice(&[7, 1, b'm']);
        let e = RdbReader::new(&module[..])
            .unwrap()
            .next_item()
            .unwrap_err();
        assert!(e.to_string().contains("key m"), "{e}");
    }
}
