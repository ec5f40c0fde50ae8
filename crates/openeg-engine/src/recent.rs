//! Recently routed events of a shared (Kafka) channel log, kept in memory so that a retry,
//! which usually comes soon after the first attempt and on the node that routed the event,
//! does not fetch its event back from the broker (one fetch per event: about half a second on
//! a slow broker). Only events that matched a subscription are kept, up to a byte budget; the
//! oldest go first. A miss reads the log as before: the cache is never the only copy.
//! Not used on the embedded log, whose reads are local.

use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// Default byte budget of the event bodies kept.
pub const DEFAULT_BUDGET: usize = 64 * 1024 * 1024;

type Key = (String, u64);

pub(crate) struct RecentEvents {
    budget: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    events: HashMap<Key, Bytes>,
    /// Insertion order, for eviction.
    order: VecDeque<Key>,
    bytes: usize,
}

impl RecentEvents {
    pub(crate) fn new(budget: usize) -> RecentEvents {
        RecentEvents {
            budget,
            inner: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Keeps the event at `position` of `topic` (its JSON text).
    pub(crate) fn insert(&self, topic: &str, position: u64, event: Bytes) {
        if event.len() > self.budget {
            return;
        }
        let mut g = self.lock();
        let key = (topic.to_string(), position);
        if g.events.contains_key(&key) {
            return;
        }
        g.bytes += event.len();
        g.events.insert(key.clone(), event);
        g.order.push_back(key);
        while g.bytes > self.budget {
            let Some(old) = g.order.pop_front() else {
                break;
            };
            if let Some(e) = g.events.remove(&old) {
                g.bytes -= e.len();
            }
        }
    }

    pub(crate) fn get(&self, topic: &str, position: u64) -> Option<Bytes> {
        self.lock()
            .events
            .get(&(topic.to_string(), position))
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_within_the_budget() {
        let c = RecentEvents::new(10);
        c.insert("t", 1, Bytes::from_static(b"aaaa"));
        c.insert("t", 2, Bytes::from_static(b"bbbb"));
        assert_eq!(c.get("t", 1).as_deref(), Some(&b"aaaa"[..]));
        assert_eq!(c.get("u", 1), None);
        // 12 bytes > 10: the oldest goes.
        c.insert("t", 3, Bytes::from_static(b"cccc"));
        assert_eq!(c.get("t", 1), None);
        assert_eq!(c.get("t", 2).as_deref(), Some(&b"bbbb"[..]));
        assert_eq!(c.get("t", 3).as_deref(), Some(&b"cccc"[..]));
        // Larger than the whole budget: not kept, nothing evicted.
        c.insert("t", 4, Bytes::from(vec![b'x'; 11]));
        assert_eq!(c.get("t", 4), None);
        assert!(c.get("t", 2).is_some());
        // A repeat does not count twice.
        c.insert("t", 3, Bytes::from_static(b"cccc"));
        c.insert("t", 5, Bytes::from_static(b"dd"));
        assert!(c.get("t", 2).is_some() && c.get("t", 5).is_some());
    }
}
