//! [`BackendStatus`]: what a backend can say of itself now, for health
//! checks and sampled metrics.

use super::BackendHealth;

/// A backend's state now: its kind, and what it knows of itself. A
/// backend made of others (a failover, a cache in front of one) lists them
/// in [`parts`](BackendStatus::parts).
///
/// ```
/// use tollgate::backend::{Backend, MemoryBackend};
///
/// let backend = MemoryBackend::builder().max_keys(1_000).build();
/// let status = backend.status();
/// assert_eq!(status.kind, "memory");
/// let memory = status.memory.expect("the memory backend says how full it is");
/// assert_eq!((memory.keys, memory.max_keys), (0, 1_000));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackendStatus {
    /// What it is: `"memory"`, `"redis"`, `"failover"`, `"blocked_cache"`,
    /// or a custom backend's own word (the `backend` label of the
    /// metrics).
    pub kind: &'static str,
    /// Its circuit breaker's view (consecutive failures, last error), for
    /// a backend behind one.
    pub circuit: Option<BackendHealth>,
    /// How full an in-memory table is.
    pub memory: Option<MemoryStatus>,
    /// Keys a failover's fallback admitted that wait to be written back
    /// into the primary.
    pub pending_writeback: Option<usize>,
    /// A blocked-key cache's entries and hits.
    pub blocked: Option<BlockedStatus>,
    /// The backends it is made of.
    pub parts: Vec<BackendStatus>,
}

impl BackendStatus {
    /// A status that says only what the backend is.
    pub fn new(kind: &'static str) -> Self {
        BackendStatus {
            kind,
            circuit: None,
            memory: None,
            pending_writeback: None,
            blocked: None,
            parts: Vec::new(),
        }
    }

    /// This status and its parts', depth first.
    pub fn walk(&self) -> Vec<&BackendStatus> {
        let mut out = vec![self];
        for part in &self.parts {
            out.extend(part.walk());
        }
        out
    }
}

/// How full an in-memory table is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemoryStatus {
    /// Keys held now.
    pub keys: usize,
    /// The bound on keys.
    pub max_keys: usize,
    /// Live keys forgotten to make room since the start.
    pub evictions: u64,
}

impl MemoryStatus {
    /// A memory status (for custom in-memory backends).
    pub fn new(keys: usize, max_keys: usize, evictions: u64) -> Self {
        MemoryStatus {
            keys,
            max_keys,
            evictions,
        }
    }
}

/// A blocked-key cache's entries and hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BlockedStatus {
    /// Keys known to be over their limit now.
    pub entries: usize,
    /// Requests answered from the cache since the start.
    pub hits: u64,
}

impl BlockedStatus {
    /// A blocked-cache status (for custom caches).
    pub fn new(entries: usize, hits: u64) -> Self {
        BlockedStatus { entries, hits }
    }
}
