//! A selective JSON scanner. It walks the raw event bytes once, guided by a trie of the field
//! paths some rule names, and reports only those fields' values to a [`Sink`]; everything else
//! is skipped without being decoded. No `serde_json::Value` is built.
//!
//! Path steps follow the filter-rule lookup: objects are entered by key; an array met on the way is
//! entered element by element (nested arrays flattened, object elements entered); `data` itself
//! must be an object. At a leaf, scalars of arrays (recursively) are candidates.
//! The scanner checks the JSON structure it walks and fails on malformed input rather than
//! guessing; it never panics. Two shortcuts keep it fast: it stops early once the rest of the
//! event provably holds no named key (no backslash and no quoted trie key in it; the skipped
//! rest is then not syntax-checked; events are validated at ingestion), and numbers far
//! outside every numeric test of their field are skipped after a cheap estimate instead of
//! an exact parse. The early stop is found once per event as a *quiet mark*, the offset after
//! the last quoted trie key and the last backslash: when the skipped value is a member of the
//! event itself, the scan stops there even in the middle of skipping it (a GeoJSON `data` whose
//! last `"type"` key precedes its bulky coordinates). It never stops while an array of a named
//! field is open, whose later elements are candidates although they are not keys. A named key
//! seen twice in one object is reported so the caller can fall back to last-occurrence-wins
//! parsing.

use crate::filter::Scalar;
use crate::number::Num;
use memchr::memchr2;

/// No field at a node.
pub const NO_FIELD: u32 = u32::MAX;
/// Nesting limit (bounds recursion). Above serde_json's 128 so that every event serde_json
/// accepts is scanned too.
const MAX_DEPTH: u32 = 192;

/// What a leaf field needs decoded (others are only checked for presence).
pub const WANT_STR: u8 = 1;
pub const WANT_NUM: u8 = 2;
pub const WANT_BOOL: u8 = 4;

#[derive(Debug, Clone, Default)]
pub struct PathNode {
    keys: Vec<Box<[u8]>>,
    kids: Vec<u32>,
    /// Leaf field id, or [`NO_FIELD`].
    pub field: u32,
    /// The `data` node: arrays are not entered there (a `data` that is not an object gives no
    /// data path a hit).
    objects_only: bool,
    pub wants: u8,
    /// The hull `[lo, hi]` (as doubles) of every numeric test on this field: numbers clearly
    /// outside it are skipped without an exact parse.
    pub num_hull: Option<(f64, f64)>,
}

/// The trie of all field paths named by the compiled rules. Node 0 is the event root.
#[derive(Debug, Clone)]
pub struct PathTrie {
    pub nodes: Vec<PathNode>,
    /// Finders for every trie key as it appears quoted in JSON; `None` when some key needs
    /// escaping (then early stop is disabled).
    finders: Option<Vec<memchr::memmem::Finder<'static>>>,
}

impl Default for PathTrie {
    fn default() -> Self {
        PathTrie {
            nodes: vec![PathNode {
                field: NO_FIELD,
                ..Default::default()
            }],
            finders: None,
        }
    }
}

impl PathTrie {
    /// Prepares the early-stop finders; call once after the last insert.
    pub fn finish(&mut self) {
        let mut keys: Vec<&[u8]> = self
            .nodes
            .iter()
            .flat_map(|n| n.keys.iter().map(|k| &**k))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        let plain = keys
            .iter()
            .all(|k| k.iter().all(|&c| c >= 0x20 && c != b'"' && c != b'\\'));
        self.finders = plain.then(|| {
            keys.iter()
                .map(|k| {
                    let mut q = Vec::with_capacity(k.len() + 2);
                    q.push(b'"');
                    q.extend_from_slice(k);
                    q.push(b'"');
                    memchr::memmem::Finder::new(&q).into_owned()
                })
                .collect()
        });
    }

    /// The offset into `rest` from which on it holds no backslash and no trie key in quotes,
    /// so cannot produce another hit nor a duplicate named key; `None` when unknown (keys that
    /// need escaping, or too many occurrences to be worth finding the last). Unless
    /// `find_last`, only offset 0 is looked for, and the first occurrence ends the search.
    fn quiet_from(&self, rest: &[u8], find_last: bool) -> Option<usize> {
        /// Occurrences of one key looked at before giving up: past that, a stop would come
        /// late anyway and the searches would cost more than the skip they save.
        const MAX_HITS: usize = 8;
        let fs = self.finders.as_ref()?;
        if !find_last {
            let quiet =
                memchr::memchr(b'\\', rest).is_none() && fs.iter().all(|f| f.find(rest).is_none());
            return quiet.then_some(0);
        }
        let mut quiet = memchr::memrchr(b'\\', rest).map_or(0, |p| p + 1);
        for f in fs {
            // Only occurrences at or after `quiet` can move it; forward searches are the
            // vectorised ones.
            let mut from = quiet;
            let mut hits = 0;
            while let Some(k) = rest.get(from..).and_then(|r| f.find(r)) {
                hits += 1;
                if hits > MAX_HITS {
                    return None;
                }
                from += k + 1;
                quiet = from;
            }
        }
        Some(quiet)
    }

    /// Inserts a path and returns its leaf node index.
    pub fn insert(&mut self, path: &[String]) -> usize {
        let mut cur = 0usize;
        for (depth, step) in path.iter().enumerate() {
            let key = step.as_bytes();
            let pos = self.nodes[cur].keys.iter().position(|k| &**k == key);
            cur = match pos {
                Some(p) => self.nodes[cur].kids[p] as usize,
                None => {
                    let id = self.nodes.len();
                    self.nodes.push(PathNode {
                        field: NO_FIELD,
                        objects_only: depth == 0 && step == "data",
                        ..Default::default()
                    });
                    self.nodes[cur].keys.push(key.into());
                    self.nodes[cur].kids.push(id as u32);
                    id
                }
            };
        }
        cur
    }

    #[inline]
    fn child(&self, node: usize, key: &[u8]) -> Option<(usize, usize)> {
        let n = &self.nodes[node];
        n.keys
            .iter()
            .position(|k| **k == *key)
            .map(|p| (p, n.kids[p] as usize))
    }
}

/// Receives the values of named fields, in document order.
pub trait Sink {
    /// A direct hit of the field's path (called once per hit; `nonnull` false for JSON null).
    fn hit(&mut self, field: u32, nonnull: bool);
    /// A candidate scalar of the field.
    fn scalar(&mut self, field: u32, value: Scalar<'_>);
}

/// Why an event could not be scanned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanError {
    pub offset: usize,
}

impl std::fmt::Display for ScanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed JSON event near byte {}", self.offset)
    }
}

impl std::error::Error for ScanError {}

type R<T> = Result<T, ScanError>;

/// Scans `input`. Returns `Ok(true)` when a named key occurred twice in one object: the caller
/// must then re-scan a normalised copy, since JSON's last-duplicate-wins cannot be streamed.
pub fn scan<S: Sink>(trie: &PathTrie, input: &[u8], sink: &mut S, buf: &mut Vec<u8>) -> R<bool> {
    let mut s = Scanner {
        b: input,
        i: 0,
        trie,
        sink,
        buf,
        dup: false,
        stop_checked: false,
        quiet: usize::MAX,
        field_arrays: 0,
        stop: false,
    };
    s.ws();
    if s.peek()? == b'{' {
        s.object(0, 0)?;
        if s.stop {
            return Ok(s.dup);
        }
    } else {
        // Not an object: every field is absent; still require well-formed input.
        s.skip_value()?;
    }
    s.ws();
    if s.i != s.b.len() {
        return Err(s.err());
    }
    Ok(s.dup)
}

struct Scanner<'a, 'b, S> {
    b: &'a [u8],
    i: usize,
    trie: &'b PathTrie,
    sink: &'b mut S,
    buf: &'b mut Vec<u8>,
    dup: bool,
    /// Early stop: checked once per event, when a large unnamed value is about to be skipped.
    stop_checked: bool,
    /// The quiet mark (absolute; `usize::MAX` until found, or when there is none).
    quiet: usize,
    /// Open arrays whose scalars are candidates of a field: no early stop inside them.
    field_arrays: u32,
    stop: bool,
}

/// SWAR helpers: `LO`/`HI` are the low and high bit of every byte of a word.
const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// Flags (high bit) the zero bytes of `v`. The lowest flag is exact; a borrow may also flag
/// bytes above a zero byte, so of several masks OR-ed together the lowest flag is still exact.
#[inline]
fn zero_bytes(v: u64) -> u64 {
    v.wrapping_sub(LO) & !v & HI
}

/// Flags (high bit) exactly the bytes of `v` equal to the byte repeated in `pattern`.
#[inline]
fn eq_bytes(v: u64, pattern: u64) -> u64 {
    let x = v ^ pattern;
    // A byte's high bit survives iff the byte is zero: adding 0x7F sets it for any nonzero
    // low seven bits (no carry leaves the byte), OR-ing `x` for a set high bit.
    !(((x & !HI).wrapping_add(!HI)) | x) & HI
}

/// Bytes worth an early-stop check before skipping.
const STOP_CHECK_MIN: usize = 128;

impl<S: Sink> Scanner<'_, '_, S> {
    #[inline]
    fn err(&self) -> ScanError {
        ScanError { offset: self.i }
    }

    #[inline]
    fn ws(&mut self) {
        while let Some(&c) = self.b.get(self.i) {
            if matches!(c, b' ' | b'\n' | b'\r' | b'\t') {
                self.i += 1;
            } else {
                break;
            }
        }
    }

    /// The next non-blank byte, without moving.
    #[inline]
    fn peek_ws(&self) -> Option<u8> {
        self.b[self.i..]
            .iter()
            .copied()
            .find(|c| !matches!(c, b' ' | b'\n' | b'\r' | b'\t'))
    }

    #[inline]
    fn peek(&self) -> R<u8> {
        self.b.get(self.i).copied().ok_or(self.err())
    }

    /// At a `"`: returns the raw content range and whether it holds escapes; moves past it.
    #[inline]
    fn string_raw(&mut self) -> R<(usize, usize, bool)> {
        let start = self.i + 1;
        let mut j = start;
        let mut esc = false;
        // Most keys and values are short: eight bytes at a time beats a memchr call on them,
        // and a byte loop on anything but the shortest. Long strings go on to memchr.
        let fast_end = start + 32;
        while j < fast_end {
            let Some(chunk) = self.b.get(j..j + 8) else {
                break;
            };
            let mut w = [0u8; 8];
            w.copy_from_slice(chunk);
            let v = u64::from_le_bytes(w);
            let m = zero_bytes(v ^ (0x22 * LO)) | zero_bytes(v ^ (0x5C * LO));
            if m == 0 {
                j += 8;
                continue;
            }
            j += (m.trailing_zeros() / 8) as usize;
            if self.b.get(j) == Some(&b'"') {
                self.i = j + 1;
                return Ok((start, j, esc));
            }
            // A backslash: the escaped byte cannot end the string.
            esc = true;
            j += 2;
        }
        loop {
            let rest = self.b.get(j..).ok_or(self.err())?;
            match memchr2(b'"', b'\\', rest) {
                None => {
                    self.i = self.b.len();
                    return Err(self.err());
                }
                Some(k) => {
                    j += k;
                    if self.b[j] == b'"' {
                        self.i = j + 1;
                        return Ok((start, j, esc));
                    }
                    esc = true;
                    j += 2;
                }
            }
        }
    }

    /// Decodes a string's content into `buf` (only called when it has escapes).
    fn unescape(&mut self, start: usize, end: usize) -> R<()> {
        self.buf.clear();
        let src = &self.b[start..end];
        let mut k = 0;
        let bad = ScanError { offset: start };
        while k < src.len() {
            let c = src[k];
            if c != b'\\' {
                self.buf.push(c);
                k += 1;
                continue;
            }
            let e = *src.get(k + 1).ok_or(bad)?;
            k += 2;
            let ch = match e {
                b'"' => b'"',
                b'\\' => b'\\',
                b'/' => b'/',
                b'b' => 8,
                b'f' => 12,
                b'n' => b'\n',
                b'r' => b'\r',
                b't' => b'\t',
                b'u' => {
                    let hi = hex4(src.get(k..k + 4).ok_or(bad)?).ok_or(bad)?;
                    k += 4;
                    let cp = if (0xD800..0xDC00).contains(&hi) {
                        // A surrogate pair is required, as serde_json requires it.
                        if src.get(k..k + 2) != Some(b"\\u") {
                            return Err(bad);
                        }
                        let lo = hex4(src.get(k + 2..k + 6).ok_or(bad)?).ok_or(bad)?;
                        if !(0xDC00..0xE000).contains(&lo) {
                            return Err(bad);
                        }
                        k += 6;
                        0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                    } else if (0xDC00..0xE000).contains(&hi) {
                        return Err(bad);
                    } else {
                        hi
                    };
                    let ch = char::from_u32(cp).ok_or(bad)?;
                    let mut tmp = [0u8; 4];
                    self.buf
                        .extend_from_slice(ch.encode_utf8(&mut tmp).as_bytes());
                    continue;
                }
                _ => return Err(bad),
            };
            self.buf.push(ch);
        }
        Ok(())
    }

    fn literal(&mut self, word: &[u8]) -> R<()> {
        if self.b.get(self.i..self.i + word.len()) == Some(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err(self.err())
        }
    }

    /// At a number: returns its text range.
    #[inline]
    fn number_raw(&mut self) -> R<(usize, usize)> {
        let start = self.i;
        while let Some(&c) = self.b.get(self.i) {
            if c.is_ascii_digit() || matches!(c, b'-' | b'+' | b'.' | b'e' | b'E') {
                self.i += 1;
            } else {
                break;
            }
        }
        if self.i == start {
            return Err(self.err());
        }
        Ok((start, self.i))
    }

    fn skip_value(&mut self) -> R<()> {
        self.ws();
        match self.peek()? {
            b'"' => self.string_raw().map(|_| ()),
            b'{' | b'[' => self.skip_container(),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => self.number_raw().map(|_| ()),
        }
    }

    /// Skips a whole object or array by bracket counting outside strings, eight bytes at a
    /// time: per word, exact flags for quotes and brackets (`c | 0x20` maps `[`/`{` to 0x7B
    /// and `]`/`}` to 0x7D), the in-string state of every byte as the running XOR of the quote
    /// flags, then only the brackets outside strings are counted. Dense short strings cost no
    /// more than any other bytes. Words holding a backslash, and the last bytes, go one byte at
    /// a time. Stops at the quiet mark when allowed (see [`Self::stop_mark`]).
    fn skip_container(&mut self) -> R<()> {
        let stop_at = self.stop_mark();
        let mut depth = 0u32;
        let mut in_str = false;
        let mut i = self.i;
        loop {
            if i >= stop_at {
                self.i = i;
                self.stop = true;
                return Ok(());
            }
            if let Some(chunk) = self.b.get(i..i + 8) {
                let mut w = [0u8; 8];
                w.copy_from_slice(chunk);
                let v = u64::from_le_bytes(w);
                if eq_bytes(v, 0x5C * LO) == 0 {
                    let quotes = eq_bytes(v, 0x22 * LO);
                    let folded = v | (0x20 * LO);
                    let open = eq_bytes(folded, 0x7B * LO);
                    let close = eq_bytes(folded, 0x7D * LO);
                    // Flag of byte k: odd number of quotes in bytes 0..=k.
                    let mut inside = quotes;
                    inside ^= inside << 8;
                    inside ^= inside << 16;
                    inside ^= inside << 32;
                    if in_str {
                        inside ^= HI;
                    }
                    in_str = inside >> 63 != 0;
                    let mut brackets = (open | close) & !inside;
                    while brackets != 0 {
                        let k = i + (brackets.trailing_zeros() / 8) as usize;
                        let bit = brackets & brackets.wrapping_neg();
                        if open & bit != 0 {
                            depth += 1;
                            if depth > MAX_DEPTH {
                                self.i = k;
                                return Err(self.err());
                            }
                        } else {
                            depth = depth.checked_sub(1).ok_or(ScanError { offset: k })?;
                            if depth == 0 {
                                self.i = k + 1;
                                return Ok(());
                            }
                        }
                        brackets &= brackets - 1;
                    }
                    i += 8;
                    continue;
                }
            }
            let end = (i + 8).min(self.b.len());
            if i >= end {
                self.i = self.b.len();
                return Err(self.err());
            }
            while i < end {
                let c = self.b[i];
                if in_str {
                    match c {
                        // The escaped byte (possibly in the next word) cannot end the string.
                        b'\\' => i += 1,
                        b'"' => in_str = false,
                        _ => {}
                    }
                } else {
                    match c {
                        b'"' => in_str = true,
                        b'{' | b'[' => {
                            depth += 1;
                            if depth > MAX_DEPTH {
                                self.i = i;
                                return Err(self.err());
                            }
                        }
                        b'}' | b']' => {
                            depth = depth.checked_sub(1).ok_or(ScanError { offset: i })?;
                            if depth == 0 {
                                self.i = i + 1;
                                return Ok(());
                            }
                        }
                        _ => {}
                    }
                }
                i += 1;
            }
        }
    }

    /// Where the scan may stop: the quiet mark, unless a field's array is open.
    #[inline]
    fn stop_mark(&self) -> usize {
        if self.field_arrays == 0 {
            self.quiet
        } else {
            usize::MAX
        }
    }

    /// At `{` of an object whose keys are looked up in trie `node`.
    fn object(&mut self, node: usize, depth: u32) -> R<()> {
        if depth >= MAX_DEPTH {
            return Err(self.err());
        }
        self.i += 1;
        self.ws();
        if self.peek()? == b'}' {
            self.i += 1;
            return Ok(());
        }
        let mut seen: u64 = 0;
        loop {
            self.ws();
            if self.peek()? != b'"' {
                return Err(self.err());
            }
            let (ks, ke, kesc) = self.string_raw()?;
            let found = if kesc {
                self.unescape(ks, ke)?;
                let key = std::mem::take(self.buf);
                let f = self.trie.child(node, &key);
                *self.buf = key;
                f
            } else {
                self.trie.child(node, &self.b[ks..ke])
            };
            self.ws();
            if self.peek()? != b':' {
                return Err(self.err());
            }
            self.i += 1;
            match found {
                Some((pos, kid)) => {
                    let bit = 1u64 << (pos & 63);
                    if seen & bit != 0 {
                        self.dup = true;
                    }
                    seen |= bit;
                    self.value(kid, depth + 1)?;
                }
                None => {
                    if !self.stop_checked
                        && matches!(self.peek_ws(), Some(b'{' | b'['))
                        && self.b.len() - self.i >= STOP_CHECK_MIN
                    {
                        self.stop_checked = true;
                        // The last named key is worth finding when skipping a member of the
                        // event itself, usually `data`, the bulk of it, whose inner keys do not
                        // matter. Deeper down, named keys after the skipped value are usually
                        // siblings the scan enters anyway: the first one found ends the check.
                        let find_last = node == 0;
                        if let Some(q) = self.trie.quiet_from(&self.b[self.i..], find_last) {
                            self.quiet = self.i + q;
                        }
                    }
                    if self.i >= self.stop_mark() {
                        self.stop = true;
                    } else {
                        self.skip_value()?
                    }
                }
            }
            if self.stop {
                return Ok(());
            }
            self.ws();
            match self.peek()? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return Err(self.err()),
            }
        }
    }

    /// A value positioned at trie `node` (a direct hit of that node's path).
    fn value(&mut self, node: usize, depth: u32) -> R<()> {
        self.ws();
        let c = self.peek()?;
        let n = &self.trie.nodes[node];
        let field = n.field;
        if field != NO_FIELD {
            self.sink.hit(field, c != b'n');
        }
        match c {
            b'{' => {
                if n.keys.is_empty() {
                    self.skip_container()
                } else {
                    self.object(node, depth)
                }
            }
            b'[' => {
                if n.objects_only || (field == NO_FIELD && n.keys.is_empty()) {
                    self.skip_container()
                } else if field != NO_FIELD {
                    self.field_arrays += 1;
                    let r = self.array(node, depth + 1);
                    self.field_arrays -= 1;
                    r
                } else {
                    self.array(node, depth + 1)
                }
            }
            _ => self.scalar(node),
        }
    }

    /// A scalar at `node`: reported as a candidate when the node is a leaf (nulls are not).
    #[inline]
    fn scalar(&mut self, node: usize) -> R<()> {
        let n = &self.trie.nodes[node];
        let (field, wants) = (n.field, n.wants);
        let hull = n.num_hull;
        match self.peek()? {
            b'"' => {
                let (s, e, esc) = self.string_raw()?;
                if field != NO_FIELD && wants & WANT_STR != 0 {
                    if esc {
                        self.unescape(s, e)?;
                        let key = std::mem::take(self.buf);
                        self.sink.scalar(field, Scalar::Str(&key));
                        *self.buf = key;
                    } else {
                        self.sink.scalar(field, Scalar::Str(&self.b[s..e]));
                    }
                }
                Ok(())
            }
            b't' => {
                self.literal(b"true")?;
                if field != NO_FIELD && wants & WANT_BOOL != 0 {
                    self.sink.scalar(field, Scalar::Bool(true));
                }
                Ok(())
            }
            b'f' => {
                self.literal(b"false")?;
                if field != NO_FIELD && wants & WANT_BOOL != 0 {
                    self.sink.scalar(field, Scalar::Bool(false));
                }
                Ok(())
            }
            b'n' => self.literal(b"null"),
            _ => {
                let (s, e) = self.number_raw()?;
                if field != NO_FIELD && wants & WANT_NUM != 0 {
                    let text = &self.b[s..e];
                    if let (Some((lo, hi)), Some(v)) = (hull, approx_number(text)) {
                        // The estimate is within ~1e-14 relative; 1e-9 keeps the skip safe.
                        let tol = 1e-9 * v.abs();
                        if v + tol < lo || v - tol > hi {
                            return Ok(());
                        }
                    }
                    let num = Num::parse(text).ok_or(ScanError { offset: s })?;
                    self.sink.scalar(field, Scalar::Num(num));
                }
                Ok(())
            }
        }
    }

    /// At `[` of an array met at `node`: elements are candidates (leaf) and/or entered (inner).
    fn array(&mut self, node: usize, depth: u32) -> R<()> {
        if depth >= MAX_DEPTH {
            return Err(self.err());
        }
        self.i += 1;
        self.ws();
        if self.peek()? == b']' {
            self.i += 1;
            return Ok(());
        }
        let has_kids = !self.trie.nodes[node].keys.is_empty();
        loop {
            self.ws();
            match self.peek()? {
                b'[' => self.array(node, depth + 1)?,
                b'{' => {
                    if has_kids {
                        self.object(node, depth)?
                    } else {
                        self.skip_container()?
                    }
                }
                _ => self.scalar(node)?,
            }
            if self.stop {
                return Ok(());
            }
            self.ws();
            match self.peek()? {
                b',' => self.i += 1,
                b']' => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return Err(self.err()),
            }
        }
    }
}

/// A fast estimate of a JSON number's value (first 19 significant digits), or `None` when the
/// text is unusual (then the exact parse decides). Never used to accept, only to skip.
fn approx_number(t: &[u8]) -> Option<f64> {
    let mut i = 0;
    let neg = t.first() == Some(&b'-');
    if neg {
        i = 1;
    }
    let (mut m, mut digits, mut exp) = (0u64, 0u32, 0i32);
    let mut any = false;
    while let Some(&c) = t.get(i) {
        if !c.is_ascii_digit() {
            break;
        }
        any = true;
        if digits < 19 {
            m = m * 10 + (c - b'0') as u64;
            if m > 0 {
                digits += 1;
            }
        } else {
            exp += 1;
        }
        i += 1;
    }
    if t.get(i) == Some(&b'.') {
        i += 1;
        while let Some(&c) = t.get(i) {
            if !c.is_ascii_digit() {
                break;
            }
            any = true;
            if digits < 19 {
                m = m * 10 + (c - b'0') as u64;
                if m > 0 {
                    digits += 1;
                }
                exp -= 1;
            }
            i += 1;
        }
    }
    if !any {
        return None;
    }
    if matches!(t.get(i), Some(b'e' | b'E')) {
        i += 1;
        let eneg = match t.get(i) {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let mut e = 0i32;
        let start = i;
        while let Some(&c) = t.get(i) {
            if !c.is_ascii_digit() {
                return None;
            }
            e = (e * 10 + (c - b'0') as i32).min(100_000);
            i += 1;
        }
        if i == start {
            return None;
        }
        exp += if eneg { -e } else { e };
    }
    if i != t.len() {
        return None;
    }
    if m == 0 {
        return Some(0.0);
    }
    if !(-300..=300).contains(&exp) {
        return None;
    }
    let v = m as f64 * 10f64.powi(exp);
    Some(if neg { -v } else { v })
}

fn hex4(h: &[u8]) -> Option<u32> {
    let mut v = 0u32;
    for &c in h {
        v = v * 16 + (c as char).to_digit(16)?;
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records what the scanner reports.
    #[derive(Default)]
    struct Seen {
        hits: Vec<(u32, bool)>,
        strs: Vec<(u32, Vec<u8>)>,
    }

    impl Sink for Seen {
        fn hit(&mut self, field: u32, nonnull: bool) {
            self.hits.push((field, nonnull));
        }
        fn scalar(&mut self, field: u32, value: Scalar<'_>) {
            if let Scalar::Str(s) = value {
                self.strs.push((field, s.to_vec()));
            }
        }
    }

    /// A trie naming `k` and `data.k` (fields 0 and 1), as a compiled matcher would.
    fn trie() -> PathTrie {
        let mut t = PathTrie::default();
        for (f, path) in [vec!["k"], vec!["data", "k"]].into_iter().enumerate() {
            let path: Vec<String> = path.into_iter().map(String::from).collect();
            let n = t.insert(&path);
            t.nodes[n].field = f as u32;
            t.nodes[n].wants = WANT_STR;
        }
        t.finish();
        t
    }

    fn run(t: &PathTrie, text: &str) -> (R<bool>, Seen) {
        let mut seen = Seen::default();
        let r = scan(t, text.as_bytes(), &mut seen, &mut Vec::new());
        (r, seen)
    }

    /// Skipped values holding strings with brackets, quotes and backslashes, at every offset
    /// within an eight-byte word: the member after them is still found, with its value.
    #[test]
    fn skip_honours_strings_at_every_alignment() {
        let tricky = [
            r#"]"#,
            r#"}}]]"#,
            r#"{["#,
            r#"\""#,
            r#"\\"#,
            r#"\\\"]"#,
            r#"a\"}b"#,
            r#"\u005d\u0022"#,
            r#"é]"#,
        ];
        let t = trie();
        for s in tricky {
            for pad in 0..17 {
                let pad = " ".repeat(pad);
                let skipped = format!(
                    r#"{{"a": "{pad}{s}", "b": [1, {{"c": "{s}"}}, [[]], {{}}], "d": "{s}{pad}"}}"#
                );
                for text in [
                    format!(r#"{{"x": {skipped}, "k": "v"}}"#),
                    format!(r#"{{"data": {{"x": [{skipped}, "{s}"], "k": "w"}}, "k": "v"}}"#),
                ] {
                    assert!(
                        serde_json::from_str::<serde_json::Value>(&text).is_ok(),
                        "test input {text}"
                    );
                    let (r, seen) = run(&t, &text);
                    assert_eq!(r, Ok(false), "{text}");
                    assert!(seen.strs.contains(&(0, b"v".to_vec())), "{text}");
                    if text.contains("\"w\"") {
                        assert!(seen.strs.contains(&(1, b"w".to_vec())), "{text}");
                    }
                }
            }
        }
    }

    /// A member of the event is skipped only up to the last named key: named keys inside it
    /// (`"k"` here) do not end the skip early, and a named key after it, or a duplicate, is
    /// still seen.
    #[test]
    fn root_skip_stops_only_after_the_last_named_key() {
        let t = trie();
        let big = format!(r#"{{"k": "in", "n": [{}]}}"#, "1, ".repeat(60) + "1");
        let cases = [
            (format!(r#"{{"k": "v", "x": {big}}}"#), Ok(false), true),
            (format!(r#"{{"x": {big}, "k": "v"}}"#), Ok(false), true),
            (
                format!(r#"{{"x": {big}, "y": {big}, "k": "v"}}"#),
                Ok(false),
                true,
            ),
            (
                format!(r#"{{"k": "u", "x": {big}, "k": "v"}}"#),
                Ok(true),
                true,
            ),
            (format!(r#"{{"x": {big}}}"#), Ok(false), false),
        ];
        for (text, dup, found) in cases {
            let (r, seen) = run(&t, &text);
            assert_eq!(r, dup, "{text}");
            assert_eq!(seen.strs.contains(&(0, b"v".to_vec())), found, "{text}");
            assert!(!seen.strs.contains(&(0, b"in".to_vec())), "{text}");
        }
        // What follows the quiet mark is not checked (events are validated before they are
        // matched).
        let (r, seen) = run(&t, &format!(r#"{{"x": {big}, "k": "v", "y": ["#));
        assert_eq!(r, Ok(false));
        assert!(seen.strs.contains(&(0, b"v".to_vec())));
    }

    #[test]
    fn skip_rejects_malformed_values() {
        let t = trie();
        let deep = format!(
            r#"{{"x": {}{}, "k": "v"}}"#,
            "[".repeat(300),
            "]".repeat(300)
        );
        let long = "y".repeat(40);
        for text in [
            r#"{"x": {"a": "unterminated}, "k": "v"}"#.to_string(),
            r#"{"x": {"a": [1, 2}"#.to_string(),
            r#"{"x": ["#.to_string(),
            r#"{"x": ["\"#.to_string(),
            format!(r#"{{"x": ["{long}"#),
            format!(r#"{{"x": ["{long}\"#),
            deep,
        ] {
            let (r, seen) = run(&t, &text);
            assert!(r.is_err(), "{text}");
            assert!(seen.strs.is_empty(), "{text}");
        }
    }

    #[test]
    fn approx_is_close() {
        for t in [
            "0",
            "-0",
            "1",
            "37.831831754584499",
            "-122.513351467286029",
            "1e5",
            "1.5E-3",
            "12345678901234567890123",
            "0.000000000000000000001234",
            "9007199254740993",
            "-0.0",
        ] {
            let exact: f64 = t.parse().unwrap();
            let a = approx_number(t.as_bytes()).unwrap();
            assert!(
                (a - exact).abs() <= 1e-13 * exact.abs(),
                "{t}: {a} vs {exact}"
            );
        }
        for t in ["", "-", "1e", "1e+", ".", "1e400", "1x"] {
            assert!(approx_number(t.as_bytes()).is_none(), "{t}");
        }
    }
}
