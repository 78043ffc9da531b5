//! What the engine remembers of its backend for health checks: whether its
//! calls are failing, how many in a row, the last error, and how long the
//! recent networked calls took. Touched on the request path only by a
//! relaxed load while all is well.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::backend::BackendError;

/// How many recent networked calls the median is taken over.
const RECENT: usize = 128;

pub(crate) struct Watch {
    failing: AtomicBool,
    consecutive: AtomicU32,
    last_error: Mutex<Option<String>>,
    /// Microseconds of the last `RECENT` networked calls (0: no call yet
    /// in that slot), written round-robin.
    recent: [AtomicU32; RECENT],
    next: AtomicUsize,
}

/// What [`Watch`] knows now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Watched {
    pub(crate) failing: bool,
    pub(crate) consecutive_failures: u32,
    pub(crate) last_error: Option<String>,
    pub(crate) p50: Option<Duration>,
}

impl Watch {
    pub(crate) fn new() -> Self {
        Watch {
            failing: AtomicBool::new(false),
            consecutive: AtomicU32::new(0),
            last_error: Mutex::new(None),
            recent: std::array::from_fn(|_| AtomicU32::new(0)),
            next: AtomicUsize::new(0),
        }
    }

    /// A call succeeded: whether the backend was failing until now.
    #[inline]
    pub(crate) fn success(&self) -> bool {
        if !self.failing.load(Ordering::Relaxed) {
            return false;
        }
        self.consecutive.store(0, Ordering::Relaxed);
        self.failing.swap(false, Ordering::Relaxed)
    }

    /// A call failed: whether the backend was answering until now.
    pub(crate) fn failure(&self, error: &BackendError) -> bool {
        self.consecutive.fetch_add(1, Ordering::Relaxed);
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(error.to_string());
        !self.failing.swap(true, Ordering::Relaxed)
    }

    /// A networked call took `took`.
    pub(crate) fn latency(&self, took: Duration) {
        let micros = u32::try_from(took.as_micros()).unwrap_or(u32::MAX).max(1);
        let slot = self.next.fetch_add(1, Ordering::Relaxed) % RECENT;
        self.recent[slot].store(micros, Ordering::Relaxed);
    }

    pub(crate) fn watched(&self) -> Watched {
        let mut recent: Vec<u32> = self
            .recent
            .iter()
            .map(|m| m.load(Ordering::Relaxed))
            .filter(|&m| m > 0)
            .collect();
        recent.sort_unstable();
        let p50 = recent
            .get(recent.len().saturating_sub(1) / 2)
            .map(|&m| Duration::from_micros(u64::from(m)));
        Watched {
            failing: self.failing.load(Ordering::Relaxed),
            consecutive_failures: self.consecutive.load(Ordering::Relaxed),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
            p50,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_is_of_the_recent_calls_only() {
        let watch = Watch::new();
        assert_eq!(watch.watched().p50, None);
        for ms in [1, 2, 3] {
            watch.latency(Duration::from_millis(ms));
        }
        assert_eq!(watch.watched().p50, Some(Duration::from_millis(2)));
        // A full round of slow calls replaces the fast ones.
        for _ in 0..RECENT {
            watch.latency(Duration::from_millis(40));
        }
        assert_eq!(watch.watched().p50, Some(Duration::from_millis(40)));
    }

    #[test]
    fn failures_are_counted_until_a_success() {
        let watch = Watch::new();
        let error = BackendError::Connection("refused".into());
        assert!(watch.failure(&error), "the first failure starts an outage");
        assert!(!watch.failure(&error));
        let watched = watch.watched();
        assert!(watched.failing);
        assert_eq!(watched.consecutive_failures, 2);
        assert_eq!(
            watched.last_error.as_deref(),
            Some("rate-limit backend connection failed: refused")
        );
        assert!(watch.success(), "the first success ends it");
        assert!(!watch.success());
        let watched = watch.watched();
        assert!(!watched.failing);
        assert_eq!(watched.consecutive_failures, 0);
        assert!(watched.last_error.is_some(), "the last error is kept");
    }
}
