//! Fault-injection mock: makes the log's syncs fail on demand, for tests only.
//!
//! A failing `fdatasync` cannot be produced on demand on a healthy disk, yet the failure and
//! recovery paths must be exercised. [`FaultInjection`] stands in for the disk's answer: while
//! it says so, every data sync of the log reports an I/O error (after the bytes were written,
//! as a real failed sync would leave them). Unit tests use [`FaultInjection::fail_next_syncs`];
//! the server enables [`FaultInjection::syncs_fail_while_exists`] only when started with an
//! explicit test-only setting. Without a configured mock the log pays one `Option` check per
//! sync.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A handle on the fault-injection mock; clones share their state.
#[derive(Clone, Default)]
pub struct FaultInjection {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Syncs still to fail.
    fail_syncs: AtomicU64,
    /// Every sync fails while this file exists.
    while_exists: Option<PathBuf>,
}

impl std::fmt::Debug for FaultInjection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultInjection")
            .field("fail_syncs", &self.inner.fail_syncs.load(Ordering::Relaxed))
            .field("while_exists", &self.inner.while_exists)
            .finish()
    }
}

impl FaultInjection {
    /// A mock that injects nothing until told to.
    pub fn new() -> Self {
        Self::default()
    }

    /// A mock under which every sync fails while `path` exists (checked at each sync).
    pub fn syncs_fail_while_exists(path: impl Into<PathBuf>) -> Self {
        FaultInjection {
            inner: Arc::new(Inner {
                fail_syncs: AtomicU64::new(0),
                while_exists: Some(path.into()),
            }),
        }
    }

    /// The next `n` syncs fail (added to any still pending).
    pub fn fail_next_syncs(&self, n: u64) {
        self.inner.fail_syncs.fetch_add(n, Ordering::AcqRel);
    }

    /// The answer the mock gives instead of the disk's, before a sync.
    pub(crate) fn before_sync(&self) -> io::Result<()> {
        let inject = self.inner.while_exists.as_ref().is_some_and(|p| p.exists())
            || self
                .inner
                .fail_syncs
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                .is_ok();
        if inject {
            Err(io::Error::other(
                "injected sync failure (fault-injection mock)",
            ))
        } else {
            Ok(())
        }
    }
}
