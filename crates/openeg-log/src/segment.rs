//! One segment file: `<base offset, 20 digits>.log`, a run of frames starting at `base`.
//!
//! A segment is written only by its topic's writer (positioned writes past `len`) and read by
//! anyone (positioned reads below `len`), so one `File` is shared without seeking or locking.

use crate::frame::{self, Parse};
use crate::{io_err, LogError, LogRecord};
use bytes::Bytes;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

/// Bytes between sparse index entries: a lookup scans at most about this much plus one frame.
pub(crate) const INDEX_INTERVAL: u64 = 4096;
/// Read granularity for recovery scans.
const CHUNK: usize = 1 << 20;

pub(crate) fn segment_file_name(base: u64) -> String {
    format!("{base:020}.log")
}

pub(crate) fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".log")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// fsync a directory so that file creations, renames and deletions in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), LogError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(format!("syncing directory {}", dir.display())))
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct IndexEntry {
    /// Base offset of a frame.
    pub offset: u64,
    /// Byte position of that frame in the segment.
    pub pos: u64,
}

pub(crate) struct Segment {
    pub base: u64,
    pub path: PathBuf,
    file: File,
    /// Bytes of complete, durable frames. Readers never look past it; the writer publishes it
    /// only after the fsync that made those bytes durable.
    len: AtomicU64,
    /// Sparse index. `None` for sealed segments until first read, so opening a large log does
    /// not scan every old segment.
    index: RwLock<Option<Vec<IndexEntry>>>,
}

/// Result of scanning frames from the start of a segment.
pub(crate) struct Scan {
    /// Length of the valid prefix.
    pub valid_len: u64,
    /// Offset after the last valid record.
    pub next_offset: u64,
    pub index: Vec<IndexEntry>,
    /// Where and why the scan stopped early, if it did.
    pub error: Option<(u64, String)>,
    /// The scan stopped at a frame whose checksum is valid but whose offset is wrong. A torn
    /// write cannot produce that, so it is never treated as a tail to cut.
    pub discontinuity: bool,
}

impl Segment {
    /// Create an empty segment file and make its existence durable.
    pub(crate) fn create(dir: &Path, base: u64, fsync: bool) -> Result<Arc<Segment>, LogError> {
        let path = dir.join(segment_file_name(base));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_err(format!("creating segment {}", path.display())))?;
        if fsync {
            file.sync_all()
                .map_err(io_err(format!("syncing segment {}", path.display())))?;
            sync_dir(dir)?;
        }
        Ok(Arc::new(Segment {
            base,
            path,
            file,
            len: AtomicU64::new(0),
            index: RwLock::new(Some(Vec::new())),
        }))
    }

    /// Open an existing segment. Sealed segments trust the file length and index lazily; the
    /// tail is scanned and truncated by [`Segment::recover_tail`].
    pub(crate) fn open(path: PathBuf, base: u64) -> Result<Segment, LogError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_err(format!("opening segment {}", path.display())))?;
        let len = file
            .metadata()
            .map_err(io_err(format!("stat segment {}", path.display())))?
            .len();
        Ok(Segment {
            base,
            path,
            file,
            len: AtomicU64::new(len),
            index: RwLock::new(None),
        })
    }

    /// Verify every frame of the active (last) segment and cut a torn or corrupt tail.
    ///
    /// Only the last segment can hold a partial write: the writer fsyncs a segment before it
    /// creates the next one. Returns the offset after the last valid record.
    pub(crate) fn recover_tail(&self, fsync: bool) -> Result<u64, LogError> {
        let file_len = self.len();
        let scan = self.scan(file_len)?;
        if let (Some((pos, reason)), true) = (&scan.error, scan.discontinuity) {
            return Err(self.corrupt(*pos, reason.clone()));
        }
        if let Some((pos, reason)) = &scan.error {
            tracing::warn!(
                segment = %self.path.display(),
                position = pos,
                cut_bytes = file_len - scan.valid_len,
                kept_records_up_to = scan.next_offset,
                %reason,
                "truncating torn or corrupt log tail"
            );
            self.file
                .set_len(scan.valid_len)
                .map_err(io_err(format!("truncating {}", self.path.display())))?;
            if fsync {
                self.file
                    .sync_all()
                    .map_err(io_err(format!("syncing {}", self.path.display())))?;
            }
            self.len.store(scan.valid_len, Ordering::Release);
        }
        *self.index.write().unwrap_or_else(PoisonError::into_inner) = Some(scan.index);
        Ok(scan.next_offset)
    }

    /// Verify every frame up to the segment's length without cutting anything (recovery of
    /// a running writer, whose data is all acknowledged) and index it. Returns the offset
    /// after the last record.
    pub(crate) fn check_all(&self) -> Result<u64, LogError> {
        let scan = self.scan(self.len())?;
        if let Some((pos, reason)) = scan.error {
            return Err(self.corrupt(pos, reason));
        }
        *self.index.write().unwrap_or_else(PoisonError::into_inner) = Some(scan.index);
        Ok(scan.next_offset)
    }

    pub(crate) fn len(&self) -> u64 {
        self.len.load(Ordering::Acquire)
    }

    pub(crate) fn set_len(&self, len: u64) {
        self.len.store(len, Ordering::Release);
    }

    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    /// Last modification time: the time of the segment's last append.
    pub(crate) fn modified(&self) -> io::Result<std::time::SystemTime> {
        self.file.metadata()?.modified()
    }

    pub(crate) fn push_index(&self, entries: &[IndexEntry]) {
        if entries.is_empty() {
            return;
        }
        let mut idx = self.index.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(v) = idx.as_mut() {
            v.extend_from_slice(entries);
        }
    }

    fn corrupt(&self, position: u64, reason: impl Into<String>) -> LogError {
        LogError::Corrupt {
            path: self.path.clone(),
            position,
            reason: reason.into(),
        }
    }

    /// Read `len` bytes at `pos`, failing if the file is shorter.
    fn read_exact(&self, pos: u64, len: usize) -> Result<Vec<u8>, LogError> {
        let mut buf = vec![0u8; len];
        self.file
            .read_exact_at(&mut buf, pos)
            .map_err(io_err(format!("reading {}", self.path.display())))?;
        Ok(buf)
    }

    /// Walk frames from the start up to `limit` bytes, checking checksums and offset
    /// continuity, building a sparse index.
    fn scan(&self, limit: u64) -> Result<Scan, LogError> {
        let mut index = Vec::new();
        let mut next = self.base;
        let mut pos = 0u64;
        let mut last_indexed: Option<u64> = None;
        let mut buf: Vec<u8> = Vec::new();
        let mut buf_pos = 0u64; // file position of buf[0]
        let mut discontinuity = false;
        let error = loop {
            if pos >= limit {
                break None;
            }
            let off = (pos - buf_pos) as usize;
            match frame::parse(&buf[off.min(buf.len())..]) {
                Parse::Incomplete { need } => {
                    if pos + need as u64 > limit {
                        break Some((pos, "incomplete frame at end of segment".to_string()));
                    }
                    let want = need.max(CHUNK).min((limit - pos) as usize);
                    buf = self.read_exact(pos, want)?;
                    buf_pos = pos;
                }
                Parse::Corrupt(why) => break Some((pos, why.to_string())),
                Parse::Frame(f) => {
                    if f.base != next {
                        discontinuity = true;
                        break Some((
                            pos,
                            format!("offset discontinuity: expected {next}, found {}", f.base),
                        ));
                    }
                    if last_indexed.is_none_or(|p| pos - p >= INDEX_INTERVAL) {
                        index.push(IndexEntry { offset: next, pos });
                        last_indexed = Some(pos);
                    }
                    next += u64::from(f.count);
                    pos += f.len as u64;
                }
            }
        };
        Ok(Scan {
            valid_len: error.as_ref().map_or(pos, |(p, _)| *p),
            next_offset: next,
            index,
            error,
            discontinuity,
        })
    }

    /// Byte position of a frame at or before `offset`, building the index of a sealed segment
    /// on first use. `next_base` (the following segment's base) lets that first scan check
    /// that this segment ends exactly where the next begins.
    fn lookup(&self, offset: u64, next_base: Option<u64>) -> Result<u64, LogError> {
        {
            let idx = self.index.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(v) = idx.as_ref() {
                return Ok(find(v, offset));
            }
        }
        let mut idx = self.index.write().unwrap_or_else(PoisonError::into_inner);
        if idx.is_none() {
            let scan = self.scan(self.len())?;
            if let Some((pos, why)) = scan.error {
                return Err(self.corrupt(pos, why));
            }
            if let Some(nb) = next_base {
                if scan.next_offset != nb {
                    return Err(self.corrupt(
                        scan.valid_len,
                        format!(
                            "segment ends at offset {} but the next segment starts at {nb}",
                            scan.next_offset
                        ),
                    ));
                }
            }
            *idx = Some(scan.index);
        }
        Ok(idx.as_ref().map_or(0, |v| find(v, offset)))
    }

    /// Append records with offsets in `[from, end)` to `out`, reading below `len` bytes only,
    /// until `max_records` or `max_bytes` is reached. Returns whether the limits were reached.
    pub(crate) fn read_into(
        &self,
        q: &mut ReadQuery,
        len: u64,
        next_base: Option<u64>,
        out: &mut Vec<LogRecord>,
    ) -> Result<bool, LogError> {
        let mut pos = if q.next > self.base {
            self.lookup(q.next, next_base)?
        } else {
            0
        };
        // Enough for the wanted bytes plus the skip from the index entry, no more: records
        // are slices of this buffer and keep it alive.
        let chunk = q
            .max_bytes
            .saturating_add(INDEX_INTERVAL as usize + 1024)
            .clamp(16 << 10, 8 << 20);
        let mut buf = Bytes::new();
        let mut buf_pos = 0u64;
        // Offset the next frame must start at; a gap or overlap means damage.
        let mut expected: Option<u64> = None;
        while pos < len && q.next < q.end {
            // `pos` only moves forward from `buf_pos`, through frames inside `buf`.
            let off = ((pos - buf_pos) as usize).min(buf.len());
            match frame::parse(&buf[off..]) {
                Parse::Incomplete { need } => {
                    if pos + need as u64 > len {
                        return Err(self.corrupt(pos, "incomplete frame below committed length"));
                    }
                    let want = need.max(chunk).min((len - pos) as usize);
                    buf = Bytes::from(self.read_exact(pos, want)?);
                    buf_pos = pos;
                }
                Parse::Corrupt(why) => return Err(self.corrupt(pos, why)),
                Parse::Frame(f) => {
                    let continuous = match expected {
                        Some(e) => f.base == e,
                        None => f.base <= q.next && (pos > 0 || f.base == self.base),
                    };
                    if !continuous {
                        return Err(
                            self.corrupt(pos, format!("unexpected frame offset {}", f.base))
                        );
                    }
                    expected = Some(f.base + u64::from(f.count));
                    let frame_start = (pos - buf_pos) as usize;
                    let frame_bytes = buf.slice(frame_start..frame_start + f.len);
                    for (i, r) in frame::payloads(&frame_bytes, f.count).enumerate() {
                        let offset = f.base + i as u64;
                        if offset < q.next {
                            continue;
                        }
                        if offset >= q.end {
                            break;
                        }
                        if out.len() >= q.max_records
                            || (!out.is_empty() && q.bytes + r.len() > q.max_bytes)
                        {
                            return Ok(true);
                        }
                        q.bytes += r.len();
                        out.push(LogRecord {
                            offset,
                            payload: frame_bytes.slice(r),
                        });
                        q.next = offset + 1;
                    }
                    pos += f.len as u64;
                }
            }
        }
        Ok(out.len() >= q.max_records)
    }
}

/// Position of the last index entry at or before `offset` (0 if none).
fn find(index: &[IndexEntry], offset: u64) -> u64 {
    let i = index.partition_point(|e| e.offset <= offset);
    if i == 0 {
        0
    } else {
        index[i - 1].pos
    }
}

/// State of one read across segments.
pub(crate) struct ReadQuery {
    /// Next offset wanted.
    pub next: u64,
    /// Visible end offset (exclusive) captured when the read started.
    pub end: u64,
    pub max_records: usize,
    pub max_bytes: usize,
    /// Payload bytes collected so far.
    pub bytes: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_roundtrip() {
        assert_eq!(segment_file_name(42), "00000000000000000042.log");
        assert_eq!(
            parse_segment_file_name("00000000000000000042.log"),
            Some(42)
        );
        assert_eq!(parse_segment_file_name("42.log"), None);
        assert_eq!(parse_segment_file_name("0000000000000000004x.log"), None);
        assert_eq!(
            parse_segment_file_name("00000000000000000042.log.tmp"),
            None
        );
    }

    #[test]
    fn find_picks_last_entry_at_or_before() {
        let idx = [
            IndexEntry { offset: 0, pos: 0 },
            IndexEntry {
                offset: 10,
                pos: 100,
            },
            IndexEntry {
                offset: 20,
                pos: 200,
            },
        ];
        assert_eq!(find(&idx, 0), 0);
        assert_eq!(find(&idx, 9), 0);
        assert_eq!(find(&idx, 10), 100);
        assert_eq!(find(&idx, 25), 200);
        assert_eq!(find(&[], 5), 0);
    }
}
