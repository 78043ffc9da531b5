//! [`Health`]: what [`Failover::health`](super::Failover::health) reports.

use std::fmt;

use crate::backend::circuit::BackendHealth;

/// How a [`Failover`](super::Failover) is doing, as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HealthStatus {
    /// The primary's circuit is closed: it answers.
    Healthy,
    /// The primary's circuit is open or half-open; the fallback answers.
    Degraded,
    /// The primary's circuit is open or half-open and the fallback's last
    /// call failed: the layer's [`FailMode`](crate::FailMode) applies.
    Unavailable,
}

impl HealthStatus {
    /// `"healthy"`, `"degraded"` or `"unavailable"`.
    pub const fn as_str(&self) -> &'static str {
        match self {
            HealthStatus::Healthy => "healthy",
            HealthStatus::Degraded => "degraded",
            HealthStatus::Unavailable => "unavailable",
        }
    }

    /// Whether this is [`HealthStatus::Healthy`].
    pub fn is_healthy(&self) -> bool {
        *self == HealthStatus::Healthy
    }
}

impl fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What [`Failover::health`](super::Failover::health) reports: plain fields for a health endpoint,
/// and `Display` for one log line, e.g.:
///
/// ```text
/// degraded; primary open: 5 consecutive failures, last error "rate-limit backend timed out after 1s", last success 3.0s ago, next probe in 1.0s; fallback closed: 0 consecutive failures, last success 1.0ms ago; 12 keys pending reconciliation
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Health {
    /// The overall verdict.
    pub status: HealthStatus,
    /// The primary, through its circuit breaker.
    pub primary: BackendHealth,
    /// The fallback (no breaker: always `Closed`; its failures are counted).
    pub fallback: BackendHealth,
    /// (Policy, key) pairs whose fallback consumption waits to be written
    /// back into the primary.
    pub pending_reconciliation: usize,
    /// Pairs dropped from the full record since the start (never written
    /// back).
    pub dropped_reconciliation: u64,
    /// Whether a write-back is running now.
    pub reconciling: bool,
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}; primary {}; fallback {}",
            self.status, self.primary, self.fallback
        )?;
        if self.pending_reconciliation > 0 {
            write!(
                f,
                "; {} key{} pending reconciliation",
                self.pending_reconciliation,
                if self.pending_reconciliation == 1 {
                    ""
                } else {
                    "s"
                }
            )?;
        }
        if self.reconciling {
            f.write_str("; reconciling")?;
        }
        if self.dropped_reconciliation > 0 {
            write!(
                f,
                "; {} dropped from the reconciliation record",
                self.dropped_reconciliation
            )?;
        }
        Ok(())
    }
}
