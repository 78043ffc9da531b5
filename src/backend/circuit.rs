//! [`CircuitBreaker`]: stop calling a failing backend, then probe it back.
//! The user-facing description is on the type (this module is private).

use std::fmt;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::time::{default_clock, Clock, Nanos, SharedClock};

const CLOSED: u8 = 0;
const OPEN: u8 = 1;
const HALF_OPEN: u8 = 2;

/// The state of a [`CircuitBreaker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CircuitState {
    /// Calls go through.
    Closed,
    /// Calls are refused without being made, until the backoff has passed.
    Open,
    /// One probe call is in flight (or about to be); the others are refused.
    HalfOpen,
}

impl CircuitState {
    /// `"closed"`, `"open"` or `"half-open"`.
    pub const fn as_str(&self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half-open",
        }
    }

    fn from_u8(v: u8) -> Self {
        match v {
            CLOSED => CircuitState::Closed,
            OPEN => CircuitState::Open,
            _ => CircuitState::HalfOpen,
        }
    }
}

impl fmt::Display for CircuitState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What is known about one backend, for a health endpoint: see
/// [`CircuitBreaker::health`] and [`Failover::health`](super::Failover::health).
///
/// `Display` writes one line, e.g. `open: 5 consecutive failures, last
/// error "rate-limit backend unavailable: connection refused", last success
/// 12.0s ago, next probe in 1.0s`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackendHealth {
    /// The breaker's state. A backend without a breaker (a failover's
    /// fallback) is always [`CircuitState::Closed`]: it is always called.
    pub state: CircuitState,
    /// Failures since the last success.
    pub consecutive_failures: u32,
    /// The most recent failure's message.
    pub last_error: Option<String>,
    /// When a call last succeeded (to the millisecond), on the breaker's
    /// clock.
    pub last_success_at: Option<Nanos>,
    /// When a call last failed.
    pub last_failure_at: Option<Nanos>,
    /// While open: from when the next probe may be made (the breaker goes
    /// half-open on the first call at or after it).
    pub next_probe_at: Option<Nanos>,
    /// When this report was made, on the same clock: the other instants
    /// compare with it.
    pub at: Nanos,
}

impl BackendHealth {
    /// Closed and no failure since the last success.
    pub fn is_healthy(&self) -> bool {
        self.state == CircuitState::Closed && self.consecutive_failures == 0
    }
}

impl fmt::Display for BackendHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let now = self.at;
        write!(
            f,
            "{}: {} consecutive failure{}",
            self.state,
            self.consecutive_failures,
            if self.consecutive_failures == 1 {
                ""
            } else {
                "s"
            }
        )?;
        if let Some(e) = &self.last_error {
            write!(f, ", last error {e:?}")?;
        }
        match self.last_success_at {
            Some(t) => write!(
                f,
                ", last success {:.1?} ago",
                Duration::from(now.saturating_sub(t))
            )?,
            None => f.write_str(", no success yet")?,
        }
        if let Some(t) = self.next_probe_at {
            write!(
                f,
                ", next probe in {:.1?}",
                Duration::from(t.saturating_sub(now))
            )?;
        }
        Ok(())
    }
}

/// Success and failure bookkeeping of one backend: lock-free except for
/// the last error's message.
pub(crate) struct Tracker {
    clock: SharedClock,
    failures: AtomicU32,
    /// The clock's instant, plus one; zero for never.
    last_success: AtomicU64,
    last_failure: AtomicU64,
    last_error: Mutex<Option<String>>,
}

/// `last_success` is refreshed at most this often (nanoseconds), so a busy
/// healthy backend does not write a shared cache line on every call.
const SUCCESS_STAMP_RESOLUTION: u64 = 1_000_000;

impl Tracker {
    pub(crate) fn new(clock: SharedClock) -> Self {
        Tracker {
            clock,
            failures: AtomicU32::new(0),
            last_success: AtomicU64::new(0),
            last_failure: AtomicU64::new(0),
            last_error: Mutex::new(None),
        }
    }

    fn stamp(&self) -> u64 {
        self.clock
            .now()
            .as_u64()
            .min(u64::MAX - 1)
            .saturating_add(1)
    }

    fn instant(&self, stamp: u64) -> Option<Nanos> {
        (stamp > 0).then(|| Nanos::new(stamp - 1))
    }

    /// The clock the tracker reads.
    pub(crate) fn clock(&self) -> &SharedClock {
        &self.clock
    }

    pub(crate) fn success(&self, reset: bool) {
        if reset && self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
        let now = self.stamp();
        let last = self.last_success.load(Ordering::Relaxed);
        if last == 0 || now.saturating_sub(last) >= SUCCESS_STAMP_RESOLUTION {
            self.last_success.store(now, Ordering::Relaxed);
        }
    }

    /// Notes a failure; `count` also adds it to the consecutive failures.
    /// Returns the count.
    pub(crate) fn failure(&self, error: &dyn fmt::Display, count: bool) -> u32 {
        let n = if count {
            self.failures
                .fetch_add(1, Ordering::Relaxed)
                .saturating_add(1)
        } else {
            self.failures.load(Ordering::Relaxed)
        };
        self.last_failure.store(self.stamp(), Ordering::Relaxed);
        *lock(&self.last_error) = Some(error.to_string());
        n
    }

    pub(crate) fn health(
        &self,
        state: CircuitState,
        next_probe_at: Option<Nanos>,
    ) -> BackendHealth {
        BackendHealth {
            state,
            consecutive_failures: self.failures.load(Ordering::Relaxed),
            last_error: lock(&self.last_error).clone(),
            last_success_at: self.instant(self.last_success.load(Ordering::Relaxed)),
            last_failure_at: self.instant(self.last_failure.load(Ordering::Relaxed)),
            next_probe_at,
            at: self.clock.now(),
        }
    }
}

/// A circuit breaker: stops calling a failing backend, then probes it back.
///
/// Three states. **Closed**: calls go through; `failure_threshold`
/// consecutive failures (default 5) open it. **Open**: no call is made at
/// all (the caller answers another way at once) until a backoff has
/// passed. **Half-open**: the first call after the backoff is let through as
/// the one probe while every other call is still refused; its success
/// closes the breaker (and resets the backoff), its failure opens it again
/// with the next, longer backoff.
///
/// The backoff is exponential: `base × 2ⁿ` after the n-th failed probe in a
/// row, at most `max` (defaults 1 s and 30 s), minus a random jitter of up
/// to `jitter_percent` of it (default 20 %), so a fleet of servers does not
/// probe a recovering backend in lock-step. The breaker goes half-open
/// lazily, on the first call once the backoff has passed.
///
/// Time is the breaker's [`Clock`] (default: the wall clock at start-up
/// advanced by Tokio's monotonic time, so tests can pause and advance it;
/// [`CircuitBreakerBuilder::clock`] takes another). The hot
/// path (a closed breaker) is two atomic loads; transitions take a short
/// `std` mutex, never held across an await (nothing here awaits). Each
/// transition is logged once: opening at `warn`, half-open and closing at
/// `info`, with the breaker's [`name`](CircuitBreakerBuilder::name).
///
/// Cheap to clone (clones share the state). A caller asks for a [`Permit`]
/// with [`try_call`](Self::try_call), makes the call only if it got one,
/// and reports the result on the permit. A permit dropped without a result
/// (a cancelled call) reports nothing; if it was the probe, the next call
/// probes instead.
///
/// ```
/// use std::time::Duration;
/// use tollgate::backend::{CircuitBreaker, CircuitState};
/// use tollgate::time::{ManualClock, Nanos};
///
/// let clock = ManualClock::starting_at(Nanos::ZERO);
/// let breaker = CircuitBreaker::builder()
///     .clock(clock.clone())
///     .failure_threshold(2)
///     .backoff(Duration::from_secs(1), Duration::from_secs(30))
///     .jitter_percent(0)
///     .build();
///
/// for _ in 0..2 {
///     let permit = breaker.try_call().expect("closed: calls go through");
///     permit.failure("connection refused");
/// }
/// assert_eq!(breaker.state(), CircuitState::Open);
/// assert!(breaker.try_call().is_none(), "open: no call is made");
///
/// clock.advance(Duration::from_secs(1));
/// let probe = breaker.try_call().expect("after the backoff: one probe");
/// assert!(probe.is_probe());
/// assert_eq!(breaker.state(), CircuitState::HalfOpen);
/// assert!(breaker.try_call().is_none(), "only one probe at a time");
/// probe.success();
/// assert_eq!(breaker.state(), CircuitState::Closed);
/// ```
#[derive(Clone)]
pub struct CircuitBreaker {
    inner: Arc<Inner>,
}

struct Inner {
    name: Box<str>,
    threshold: u32,
    base: Duration,
    max: Duration,
    jitter_percent: u8,
    /// `CLOSED`, `OPEN` or `HALF_OPEN`; written only with `core` held.
    state: AtomicU8,
    /// Bumped on every opening: results of calls let through before it
    /// are ignored.
    generation: AtomicU64,
    /// While open: the tracker stamp from which a probe may go.
    probe_from: AtomicU64,
    /// While half-open: whether the probe is out.
    probing: AtomicBool,
    tracker: Tracker,
    core: Mutex<Core>,
}

struct Core {
    /// Failed probes in a row: the exponent of the backoff.
    level: u32,
    opened_at: Option<Nanos>,
}

/// Builds a [`CircuitBreaker`].
///
/// ```
/// use std::time::Duration;
/// use tollgate::backend::CircuitBreaker;
///
/// let breaker = CircuitBreaker::builder()
///     .name("redis")
///     .failure_threshold(3)
///     .backoff(Duration::from_millis(500), Duration::from_secs(10))
///     .jitter_percent(10)
///     .build();
/// assert_eq!(breaker.name(), "redis");
/// ```
#[derive(Debug, Clone)]
pub struct CircuitBreakerBuilder {
    name: String,
    threshold: u32,
    base: Duration,
    max: Duration,
    jitter_percent: u8,
    clock: Option<SharedClock>,
}

impl CircuitBreakerBuilder {
    /// The clock the breaker reads (backoffs, health instants). Give it the
    /// clock of the rest of the chain to drive everything from a test
    /// ([`ManualClock`](crate::time::ManualClock)).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// The name in log lines (default `"backend"`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Consecutive failures that open a closed breaker (default 5; at
    /// least 1).
    pub fn failure_threshold(mut self, n: u32) -> Self {
        self.threshold = n.max(1);
        self
    }

    /// The first backoff and the longest one (defaults 1 s and 30 s). The
    /// n-th failed probe in a row opens the breaker for `base × 2ⁿ`, at
    /// most `max` (raised to `base` if smaller).
    pub fn backoff(mut self, base: Duration, max: Duration) -> Self {
        self.base = base;
        self.max = max.max(base);
        self
    }

    /// Up to this share of each backoff is taken off at random (default
    /// 20; at most 100; 0 for exact backoffs).
    pub fn jitter_percent(mut self, percent: u8) -> Self {
        self.jitter_percent = percent.min(100);
        self
    }

    /// Builds the breaker, closed.
    pub fn build(self) -> CircuitBreaker {
        CircuitBreaker {
            inner: Arc::new(Inner {
                name: self.name.into_boxed_str(),
                threshold: self.threshold,
                base: self.base,
                max: self.max,
                jitter_percent: self.jitter_percent,
                state: AtomicU8::new(CLOSED),
                generation: AtomicU64::new(0),
                probe_from: AtomicU64::new(0),
                probing: AtomicBool::new(false),
                tracker: Tracker::new(self.clock.unwrap_or_else(default_clock)),
                core: Mutex::new(Core {
                    level: 0,
                    opened_at: None,
                }),
            }),
        }
    }
}

impl Default for CircuitBreaker {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("name", &self.inner.name)
            .field("state", &self.state())
            .field("consecutive_failures", &self.consecutive_failures())
            .finish_non_exhaustive()
    }
}

impl CircuitBreaker {
    /// A closed breaker with the defaults: opens after 5 consecutive
    /// failures, backoff 1 s doubling up to 30 s, 20 % jitter.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// A builder.
    pub fn builder() -> CircuitBreakerBuilder {
        CircuitBreakerBuilder {
            name: "backend".into(),
            threshold: 5,
            base: Duration::from_secs(1),
            max: Duration::from_secs(30),
            jitter_percent: 20,
            clock: None,
        }
    }

    /// The clock the breaker reads.
    pub(crate) fn clock(&self) -> &SharedClock {
        self.inner.tracker.clock()
    }

    /// The name used in log lines.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The current state. An open breaker whose backoff has passed stays
    /// [`Open`](CircuitState::Open) until the next call makes it half-open
    /// (see [`BackendHealth::next_probe_at`]).
    pub fn state(&self) -> CircuitState {
        CircuitState::from_u8(self.inner.state.load(Ordering::Acquire))
    }

    /// Failures since the last success.
    pub fn consecutive_failures(&self) -> u32 {
        self.inner.tracker.failures.load(Ordering::Relaxed)
    }

    /// The state and the latest results, for a health endpoint.
    pub fn health(&self) -> BackendHealth {
        let state = self.state();
        let next = (state == CircuitState::Open)
            .then(|| {
                self.inner
                    .tracker
                    .instant(self.inner.probe_from.load(Ordering::Acquire))
            })
            .flatten();
        self.inner.tracker.health(state, next)
    }

    /// Asks to make a call: a [`Permit`] when the call may be made (closed,
    /// or the probe of a half-open breaker), `None` when it must not be.
    pub fn try_call(&self) -> Option<Permit> {
        let inner = &*self.inner;
        // The generation first: one seen current was bumped after the
        // state it goes with (see `open`).
        let generation = inner.generation.load(Ordering::Acquire);
        match inner.state.load(Ordering::Acquire) {
            CLOSED => return Some(self.permit(false, generation)),
            OPEN => {
                if inner.tracker.stamp() < inner.probe_from.load(Ordering::Acquire) {
                    return None;
                }
            }
            _ => {
                if inner.probing.load(Ordering::Acquire) {
                    return None;
                }
            }
        }
        self.try_call_slow()
    }

    fn try_call_slow(&self) -> Option<Permit> {
        let inner = &*self.inner;
        let _core = lock(&inner.core);
        // Transitions happen only with the lock held: read again.
        let generation = inner.generation.load(Ordering::Acquire);
        match inner.state.load(Ordering::Acquire) {
            CLOSED => Some(self.permit(false, generation)),
            OPEN => {
                if inner.tracker.stamp() < inner.probe_from.load(Ordering::Acquire) {
                    return None;
                }
                inner.probing.store(true, Ordering::Release);
                inner.state.store(HALF_OPEN, Ordering::Release);
                tracing::info!(
                    backend = %inner.name,
                    "tollgate: circuit half-open: probing the backend with one call"
                );
                Some(self.permit(true, generation))
            }
            _ => {
                if inner.probing.swap(true, Ordering::AcqRel) {
                    return None;
                }
                Some(self.permit(true, generation))
            }
        }
    }

    fn permit(&self, probe: bool, generation: u64) -> Permit {
        Permit {
            breaker: self.clone(),
            generation,
            probe,
            reported: false,
        }
    }

    /// The backoff after `level` failed probes in a row, with jitter.
    fn backoff(&self, level: u32) -> Duration {
        let inner = &*self.inner;
        let factor = 1u32.checked_shl(level.min(31)).unwrap_or(u32::MAX);
        let full = inner.base.saturating_mul(factor).min(inner.max);
        let full_ns = u64::try_from(full.as_nanos()).unwrap_or(u64::MAX);
        let span = full_ns / 100 * u64::from(inner.jitter_percent);
        let cut = if span == 0 {
            0
        } else {
            random() % span.saturating_add(1)
        };
        Duration::from_nanos(full_ns - cut)
    }

    /// Opens the breaker (the lock is held by the caller).
    fn open(&self, core: &mut Core, from_closed: bool, error: &dyn fmt::Display) {
        let inner = &*self.inner;
        let backoff = self.backoff(core.level);
        let from = inner
            .tracker
            .stamp()
            .saturating_add(u64::try_from(backoff.as_nanos()).unwrap_or(u64::MAX));
        inner.probe_from.store(from, Ordering::Release);
        inner.probing.store(false, Ordering::Release);
        inner.state.store(OPEN, Ordering::Release);
        // After the state: a caller that sees the new generation sees the
        // breaker open, so no permit of the new generation is handed out
        // as a plain (non-probe) call.
        inner.generation.fetch_add(1, Ordering::AcqRel);
        if from_closed {
            core.opened_at = Some(inner.tracker.clock().now());
            tracing::warn!(
                backend = %inner.name,
                consecutive_failures = inner.tracker.failures.load(Ordering::Relaxed),
                %error,
                retry_in = ?backoff,
                "tollgate: circuit open: the backend keeps failing; calls are not made until a probe succeeds"
            );
        } else {
            tracing::warn!(
                backend = %inner.name,
                %error,
                retry_in = ?backoff,
                "tollgate: circuit open again: the probe failed; backing off longer"
            );
        }
    }
}

/// Leave to make one call through a [`CircuitBreaker`]; report the result
/// with [`success`](Self::success) or [`failure`](Self::failure).
///
/// Results of calls let through before the breaker last opened are
/// ignored. Dropping a permit reports nothing; a dropped probe lets the
/// next call probe.
#[must_use = "report the call's result on the permit"]
pub struct Permit {
    breaker: CircuitBreaker,
    generation: u64,
    probe: bool,
    reported: bool,
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("breaker", &self.breaker.inner.name)
            .field("probe", &self.probe)
            .finish()
    }
}

impl Permit {
    /// Whether this is the half-open breaker's probe.
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    fn current(&self) -> bool {
        self.breaker.inner.generation.load(Ordering::Acquire) == self.generation
    }

    /// The call succeeded: clears the failure count; a probe closes the
    /// breaker and resets the backoff.
    pub fn success(mut self) {
        self.reported = true;
        let inner = &*self.breaker.inner;
        let current = self.current();
        inner.tracker.success(current);
        if !(self.probe && current) {
            return;
        }
        let mut core = lock(&inner.core);
        if inner.state.load(Ordering::Acquire) == HALF_OPEN && self.current() {
            core.level = 0;
            let now = inner.tracker.clock().now();
            let outage = core
                .opened_at
                .take()
                .map(|t| Duration::from(now.saturating_sub(t)));
            inner.probing.store(false, Ordering::Release);
            inner.state.store(CLOSED, Ordering::Release);
            tracing::info!(
                backend = %inner.name,
                outage = ?outage,
                "tollgate: circuit closed: the backend answers again"
            );
        }
    }

    /// The call failed (an error or a timeout): counts it; opens a closed
    /// breaker at the threshold; a failed probe opens it again for longer.
    pub fn failure(mut self, error: impl fmt::Display) {
        self.reported = true;
        let inner = &*self.breaker.inner;
        let current = self.current();
        let n = inner.tracker.failure(&error, current);
        if !current {
            return;
        }
        let state = inner.state.load(Ordering::Acquire);
        let opens = if self.probe {
            state == HALF_OPEN
        } else {
            state == CLOSED && n >= inner.threshold
        };
        if !opens {
            return;
        }
        let mut core = lock(&inner.core);
        // Re-check under the lock: another failure may have opened it.
        if !self.current() || inner.state.load(Ordering::Acquire) != state {
            return;
        }
        if self.probe {
            core.level = core.level.saturating_add(1).min(31);
        } else {
            core.level = 0;
        }
        self.breaker.open(&mut core, !self.probe, &error);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.reported || !self.probe {
            return;
        }
        let inner = &*self.breaker.inner;
        let _core = lock(&inner.core);
        if inner.state.load(Ordering::Acquire) == HALF_OPEN && self.current() {
            // The probe was cancelled: the next call probes instead.
            inner.probing.store(false, Ordering::Release);
        }
    }
}

/// A random number from the standard library's per-process hasher seeds:
/// good enough for jitter, no dependency.
fn random() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    std::collections::hash_map::RandomState::new().hash_one(COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// A poisoned lock only means a panic elsewhere mid-update of plain values:
/// keep serving.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(threshold: u32) -> CircuitBreaker {
        CircuitBreaker::builder()
            .failure_threshold(threshold)
            .jitter_percent(0)
            .build()
    }

    fn fail(b: &CircuitBreaker, n: usize) {
        for _ in 0..n {
            if let Some(p) = b.try_call() {
                p.failure("boom");
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_between_failures_restarts_the_count() {
        let b = exact(3);
        fail(&b, 2);
        b.try_call().unwrap().success();
        fail(&b, 2);
        assert_eq!(b.state(), CircuitState::Closed);
        fail(&b, 1);
        assert_eq!(b.state(), CircuitState::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn backoffs_double_up_to_the_maximum() {
        let b = CircuitBreaker::builder()
            .backoff(Duration::from_secs(1), Duration::from_secs(30))
            .jitter_percent(0)
            .build();
        let got: Vec<u64> = (0..8).map(|l| b.backoff(l).as_secs()).collect();
        assert_eq!(got, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(b.backoff(u32::MAX), Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn jitter_only_shortens_a_backoff_by_at_most_its_share() {
        let b = CircuitBreaker::builder()
            .backoff(Duration::from_secs(10), Duration::from_secs(30))
            .jitter_percent(20)
            .build();
        let all: Vec<Duration> = (0..200).map(|_| b.backoff(0)).collect();
        assert!(all
            .iter()
            .all(|d| *d >= Duration::from_secs(8) && *d <= Duration::from_secs(10)));
        // Not all the same: there is jitter.
        assert!(all.iter().any(|d| *d != all[0]));
    }

    #[tokio::test(start_paused = true)]
    async fn results_of_calls_started_before_the_breaker_opened_are_ignored() {
        let b = exact(2);
        let late = b.try_call().unwrap();
        fail(&b, 2);
        assert_eq!(b.state(), CircuitState::Open);
        late.success();
        assert_eq!(b.state(), CircuitState::Open);
        assert_eq!(b.consecutive_failures(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_probe_lets_the_next_call_probe() {
        let b = exact(1);
        fail(&b, 1);
        tokio::time::advance(Duration::from_secs(1)).await;
        let probe = b.try_call().unwrap();
        assert!(b.try_call().is_none());
        drop(probe);
        assert_eq!(b.state(), CircuitState::HalfOpen);
        let again = b.try_call().unwrap();
        assert!(again.is_probe());
        again.success();
        assert_eq!(b.state(), CircuitState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn health_says_when_the_next_probe_may_go() {
        let b = exact(1);
        assert!(b.health().is_healthy());
        fail(&b, 1);
        let h = b.health();
        assert_eq!(h.state, CircuitState::Open);
        assert_eq!(h.last_error.as_deref(), Some("boom"));
        assert_eq!(
            h.next_probe_at,
            Some(h.at.saturating_add(Nanos::from_secs(1)))
        );
        let line = h.to_string();
        assert!(
            line.starts_with("open: 1 consecutive failure, last error \"boom\""),
            "{line}"
        );
        assert!(line.contains("next probe in 1.0s"), "{line}");
    }

    #[test]
    fn a_manual_clock_drives_the_backoff_without_sleeping() {
        let clock = crate::time::ManualClock::starting_at(Nanos::from_secs(1_000));
        let b = CircuitBreaker::builder()
            .failure_threshold(1)
            .jitter_percent(0)
            .clock(clock.clone())
            .build();
        fail(&b, 1);
        assert!(b.try_call().is_none(), "open");
        let h = b.health();
        assert_eq!(h.at, Nanos::from_secs(1_000));
        assert_eq!(h.next_probe_at, Some(Nanos::from_secs(1_001)));
        assert_eq!(h.last_failure_at, Some(Nanos::from_secs(1_000)));
        clock.advance(Duration::from_millis(999));
        assert!(b.try_call().is_none(), "still open");
        clock.advance(Duration::from_millis(1));
        let probe = b.try_call().expect("half-open: the probe goes");
        assert!(probe.is_probe());
        probe.success();
        assert_eq!(b.state(), CircuitState::Closed);
        assert_eq!(b.health().last_success_at, Some(Nanos::from_secs(1_001)));
    }
}
