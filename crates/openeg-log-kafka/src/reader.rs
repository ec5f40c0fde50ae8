//! Reading a partition: one cached consumer per (topic, partition) that remembers where it is.
//!
//! A read is a bounded request ("up to N records from offset X, now"), not an endless stream,
//! so the readers are [`BaseConsumer`]s polled with a deadline on the blocking pool rather than
//! `StreamConsumer`s: the poll loop maps directly onto the request, the reader owns its
//! position (so a sequential read continues where the last one stopped, without a seek), and
//! nothing runs between reads. The price is one thread hand-off per read, small next to a
//! broker round trip.
//!
//! Each reader is a consumer that never joins its group (librdkafka wants a `group.id` for
//! `assign`; it is `<prefix>_reader` and never committed to), given its one partition by
//! `assign` at an explicit offset (`enable.auto.commit=false`, `enable.partition.eof=true`, and
//! `auto.offset.reset=error` so that reading below the start offset is reported instead of
//! silently skipping to the end). A read past what the caller wanted (the record that would
//! exceed `max_bytes`) is kept aside for the next read, which is why a reader has a stash.

use crate::{backend, is_unknown_topic, lock, watermarks};
use bytes::Bytes;
use openeg_log::{LogError, LogRecord};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One partition's reader.
#[derive(Default)]
pub(crate) struct Reader {
    /// Created on first use, on the blocking pool (creating a client starts its threads).
    consumer: Option<BaseConsumer>,
    /// The offset the next record handed out will have, when the consumer is positioned.
    next: Option<u64>,
    /// A record already taken from the consumer but not returned (it did not fit).
    stash: Option<LogRecord>,
    /// The partition's (start, end) offsets when last asked.
    known: Option<(u64, u64)>,
}

/// (Kafka topic, cache slot): the partition for sequential readers, `-1 - partition` for a
/// partition's single-record reader.
type Key = (String, i32);

/// The cache of readers, least recently used evicted beyond `max`.
pub(crate) struct Readers {
    max: usize,
    state: Mutex<ReaderMap>,
    /// Times a reader was positioned (a first read or a non-sequential one).
    pub(crate) seeks: AtomicU64,
}

#[derive(Default)]
struct ReaderMap {
    tick: u64,
    map: HashMap<Key, (Arc<Mutex<Reader>>, u64)>,
}

impl Readers {
    pub(crate) fn new(max: usize) -> Readers {
        Readers {
            max: max.max(1),
            state: Mutex::default(),
            seeks: AtomicU64::new(0),
        }
    }

    /// The reader of a partition, and readers evicted to make room (to be dropped off the
    /// async threads: closing a consumer waits for its threads).
    pub(crate) fn get(&self, topic: &str, partition: i32) -> (Arc<Mutex<Reader>>, Vec<Evicted>) {
        let mut st = lock(&self.state);
        st.tick += 1;
        let tick = st.tick;
        let key = (topic.to_owned(), partition);
        if let Some((r, used)) = st.map.get_mut(&key) {
            *used = tick;
            return (r.clone(), Vec::new());
        }
        let mut evicted = Vec::new();
        while st.map.len() >= self.max {
            // Least recently used among the idle ones; a reader in use stays.
            let victim = st
                .map
                .iter()
                .filter(|(_, (r, _))| Arc::strong_count(r) == 1)
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone());
            match victim.and_then(|k| st.map.remove(&k)) {
                Some((r, _)) => evicted.push(Evicted(r)),
                None => break,
            }
        }
        let r = Arc::new(Mutex::new(Reader::default()));
        st.map.insert(key, (r.clone(), tick));
        (r, evicted)
    }

    /// Forget every reader of `topic` (deleted).
    pub(crate) fn remove_topic(&self, topic: &str) -> Vec<Evicted> {
        let mut st = lock(&self.state);
        let keys: Vec<Key> = st.map.keys().filter(|k| k.0 == topic).cloned().collect();
        keys.into_iter()
            .filter_map(|k| st.map.remove(&k))
            .map(|(r, _)| Evicted(r))
            .collect()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        lock(&self.state).map.len()
    }
}

/// A reader removed from the cache; drop it with [`drop_readers`].
pub(crate) struct Evicted(#[allow(dead_code)] Arc<Mutex<Reader>>);

/// Closes evicted readers on the blocking pool.
pub(crate) fn drop_readers(evicted: Vec<Evicted>) {
    if !evicted.is_empty() {
        tokio::task::spawn_blocking(move || drop(evicted));
    }
}

/// What to read.
pub(crate) struct ReadRequest {
    /// The log topic's name, for errors.
    pub log_topic: String,
    pub kafka_topic: String,
    pub partition: i32,
    pub from: u64,
    pub max_records: usize,
    pub max_bytes: usize,
    pub timeout: Duration,
}

/// Reads as [`openeg_log::EventLog::read`] says (blocking).
pub(crate) fn read_blocking(
    reader: &Mutex<Reader>,
    consumer_config: &ClientConfig,
    seeks: &AtomicU64,
    q: &ReadRequest,
) -> Result<Vec<LogRecord>, LogError> {
    let mut guard = lock(reader);
    let Reader {
        consumer,
        next,
        stash,
        known,
    } = &mut *guard;
    let c = match consumer {
        Some(c) => c,
        None => {
            let created: BaseConsumer = consumer_config
                .create()
                .map_err(|e| backend("creating a Kafka reader", e))?;
            *next = None;
            *stash = None;
            *known = None;
            consumer.insert(created)
        }
    };
    let k = q.kafka_topic.as_str();
    // The watermarks this reader last asked for answer without a round trip when the offset
    // lies inside them: a stale start shows as an offset error from the fetch (below), a
    // stale end only shortens this read. Otherwise: ask the broker.
    let (low, high) = match *known {
        Some((low, high)) if low <= q.from && q.from < high => (low, high),
        _ => {
            let w = watermarks(c, k, q.partition, q.timeout)?.unwrap_or((0, 0));
            *known = Some(w);
            w
        }
    };
    let out_of_range = |requested: u64, start: u64, end: u64| LogError::OffsetOutOfRange {
        topic: q.log_topic.clone(),
        requested,
        start,
        end,
    };
    if q.from < low || q.from > high {
        return Err(out_of_range(q.from, low, high));
    }
    if q.from == high || q.max_records == 0 {
        return Ok(Vec::new());
    }
    if *next != Some(q.from) {
        *stash = None;
        *next = None;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(k, q.partition, Offset::Offset(q.from as i64))
            .map_err(|e| backend(format!("positioning the reader of {k}"), e))?;
        // A new assignment replaces the old one and discards what was fetched for it.
        c.assign(&tpl)
            .map_err(|e| backend(format!("positioning the reader of {k}"), e))?;
        seeks.fetch_add(1, Ordering::Relaxed);
    }
    let mut out: Vec<LogRecord> = Vec::new();
    let mut bytes = 0usize;
    // The offset the consumer hands out next (at least; Kafka offsets may have gaps).
    let mut pos = q.from;
    if let Some(s) = stash.take() {
        if s.offset == q.from {
            pos = s.offset + 1;
            bytes += s.payload.len();
            out.push(s);
        }
    }
    let deadline = Instant::now() + q.timeout;
    // `high` was the end a moment ago, so every record below it arrives without waiting for
    // new appends: stop there rather than wait for the end-of-partition event.
    while out.len() < q.max_records && pos < high {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            if out.is_empty() {
                *next = None;
                return Err(LogError::Backend(format!(
                    "reading {k} partition {} from offset {}: no record arrived within {:?}",
                    q.partition, q.from, q.timeout
                )));
            }
            break;
        }
        match c.poll(remaining) {
            None => {}
            Some(Ok(m)) => {
                if m.topic() != k || m.partition() != q.partition || m.offset() < pos as i64 {
                    continue;
                }
                let rec = LogRecord {
                    offset: m.offset() as u64,
                    payload: Bytes::copy_from_slice(m.payload().unwrap_or_default()),
                };
                pos = rec.offset + 1;
                if !out.is_empty() && bytes + rec.payload.len() > q.max_bytes {
                    *next = Some(rec.offset);
                    *stash = Some(rec);
                    return Ok(out);
                }
                bytes += rec.payload.len();
                out.push(rec);
            }
            // An end-of-partition event from an earlier read can still be queued; records
            // below `high` follow it.
            Some(Err(KafkaError::PartitionEOF(_))) => {}
            Some(Err(e)) => {
                *next = None;
                *known = None;
                let offset_lost = matches!(
                    e.rdkafka_error_code(),
                    Some(RDKafkaErrorCode::AutoOffsetReset | RDKafkaErrorCode::OffsetOutOfRange)
                );
                if offset_lost {
                    // Retention moved the start past `pos` while we read.
                    let (low, high) = watermarks(c, k, q.partition, q.timeout)?.unwrap_or((0, 0));
                    return Err(out_of_range(pos, low, high));
                }
                if is_unknown_topic(&e) {
                    // Deleted while we read: what is left of it reads as empty.
                    return Err(out_of_range(pos, 0, 0));
                }
                return Err(backend(
                    format!("reading {k} partition {} at offset {pos}", q.partition),
                    e,
                ));
            }
        }
    }
    *next = Some(pos);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_evicts_the_least_recently_used_idle_reader() {
        let readers = Readers::new(2);
        let (a, ev) = readers.get("t", 0);
        assert!(ev.is_empty());
        drop(a);
        let (b, _) = readers.get("t", 1);
        drop(b);
        // Touch (t, 0) so (t, 1) is the least recently used.
        let (a, _) = readers.get("t", 0);
        let (_c, ev) = readers.get("t", 2);
        assert_eq!(ev.len(), 1);
        assert!(Arc::ptr_eq(&readers.get("t", 0).0, &a));
        assert_eq!(readers.len(), 2);
        // Readers in use are not evicted even beyond the limit.
        let (_d, ev) = readers.get("u", 0);
        assert!(ev.is_empty(), "both cached readers are in use");
        assert_eq!(readers.len(), 3);
        assert_eq!(readers.remove_topic("t").len(), 2);
        assert_eq!(readers.len(), 1);
    }
}
