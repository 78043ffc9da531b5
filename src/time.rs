//! Time as an integer: [`Nanos`] and the [`Clock`] that everything which
//! reads time reads: the memory backend, the circuit breaker, the blocked-key
//! cache, override expiry, schedules. Give each the same clock (a [`ManualClock`] in
//! tests) and one hand moves them all.
//!
//! Decisions are made on whole nanoseconds held in a `u64`, never on floats,
//! so that arithmetic is exact, a state fits one machine word and the memory
//! and Redis backends agree to the nanosecond. A `u64` of nanoseconds since
//! the Unix epoch lasts until the year 2554.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A span or an instant in whole nanoseconds.
///
/// Instants are nanoseconds since the Unix epoch as seen by the backend's
/// [`Clock`]; spans are plain nanosecond counts. Arithmetic saturates rather
/// than wraps, so no input can make a decision overflow.
///
/// ```
/// use std::time::Duration;
/// use tollgate::time::Nanos;
///
/// let t = Nanos::from(Duration::from_millis(1500));
/// assert_eq!(t.as_u64(), 1_500_000_000);
/// assert_eq!(t.as_secs_ceil(), 2);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Nanos(u64);

impl Nanos {
    /// Zero nanoseconds.
    pub const ZERO: Nanos = Nanos(0);
    /// The largest representable value.
    pub const MAX: Nanos = Nanos(u64::MAX);
    /// One second.
    pub const SECOND: Nanos = Nanos(1_000_000_000);

    /// Wraps a nanosecond count.
    pub const fn new(nanos: u64) -> Self {
        Nanos(nanos)
    }

    /// Whole milliseconds as nanoseconds (saturating).
    pub const fn from_millis(ms: u64) -> Self {
        Nanos(ms.saturating_mul(1_000_000))
    }

    /// Whole seconds as nanoseconds (saturating).
    pub const fn from_secs(s: u64) -> Self {
        Nanos(s.saturating_mul(1_000_000_000))
    }

    /// The raw nanosecond count.
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// Whole seconds, rounded up: the form of `Retry-After` and reset
    /// headers, which must never promise an earlier time than the real one.
    pub const fn as_secs_ceil(self) -> u64 {
        self.0.div_ceil(1_000_000_000)
    }

    /// `self - other`, or zero when `other` is later.
    pub const fn saturating_sub(self, other: Nanos) -> Nanos {
        Nanos(self.0.saturating_sub(other.0))
    }

    /// `self + other`, or [`Nanos::MAX`] on overflow.
    pub const fn saturating_add(self, other: Nanos) -> Nanos {
        Nanos(self.0.saturating_add(other.0))
    }
}

impl From<Duration> for Nanos {
    fn from(d: Duration) -> Self {
        Nanos(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }
}

impl From<Nanos> for Duration {
    fn from(n: Nanos) -> Self {
        Duration::from_nanos(n.0)
    }
}

impl fmt::Debug for Nanos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&Duration::from_nanos(self.0), f)
    }
}

impl fmt::Display for Nanos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ns", self.0)
    }
}

/// A source of "now" for a backend.
///
/// The default, [`MonotonicClock`], reads the wall clock once, at creation,
/// as an anchor (so that clock-aligned windows start on whole minutes), and
/// then advances with a monotonic timer: a wall-clock jump never moves a
/// decision. With the `test-util` feature it follows Tokio's clock, so
/// tests can pause and advance time with `tokio::time::pause()` /
/// `advance()`; [`ManualClock`] does the same without Tokio.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current instant.
    fn now(&self) -> Nanos;
}

/// The default [`Clock`]: a wall-clock anchor advanced by a monotonic timer.
///
/// Which timer, by feature:
///
/// - `fast-clock` (on by default): the CPU's time-stamp counter through
///   [`quanta`](https://docs.rs/quanta), as governor reads it: about 13 ns a
///   read where the operating system's monotonic clock takes 34 (measured on
///   the benchmark machine; it is the largest single cost of an in-memory
///   check). quanta falls back to the operating system's clock where the
///   counter is not reliable.
/// - `test-util` (or no `fast-clock`): `tokio::time::Instant`, so that
///   `tokio::time::pause()` and `advance()` move it in tests. Enable it in
///   your dev-dependencies if your tests pause Tokio's time; it takes
///   precedence over `fast-clock`.
///
/// ```
/// use tollgate::time::{Clock, MonotonicClock};
/// use tollgate::time::Nanos;
///
/// let clock = MonotonicClock::starting_at(Nanos::from_secs(60));
/// let (a, b) = (clock.now(), clock.now());
/// assert!(Nanos::from_secs(60) <= a && a <= b);
/// ```
#[derive(Debug, Clone)]
pub struct MonotonicClock {
    origin: timer::Instant,
    origin_nanos: Nanos,
}

/// The monotonic timer [`MonotonicClock`] advances with.
#[cfg(all(feature = "fast-clock", not(feature = "test-util")))]
mod timer {
    /// A raw counter reading and the clock that scales it.
    #[derive(Debug, Clone)]
    pub(super) struct Instant {
        clock: quanta::Clock,
        raw: u64,
    }

    impl Instant {
        pub(super) fn now() -> Self {
            let clock = quanta::Clock::new();
            let raw = clock.raw();
            Instant { clock, raw }
        }

        /// Nanoseconds since `self`: a raw read and one scaling, no
        /// `Duration` in between.
        #[inline]
        pub(super) fn elapsed_nanos(&self) -> u64 {
            self.clock.delta_as_nanos(self.raw, self.clock.raw())
        }
    }
}

/// The monotonic timer [`MonotonicClock`] advances with.
#[cfg(not(all(feature = "fast-clock", not(feature = "test-util"))))]
mod timer {
    #[derive(Debug, Clone, Copy)]
    pub(super) struct Instant(tokio::time::Instant);

    impl Instant {
        pub(super) fn now() -> Self {
            Instant(tokio::time::Instant::now())
        }

        #[inline]
        pub(super) fn elapsed_nanos(&self) -> u64 {
            u64::try_from(self.0.elapsed().as_nanos()).unwrap_or(u64::MAX)
        }
    }
}

impl MonotonicClock {
    /// Anchored to the wall clock now.
    pub fn new() -> Self {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Self::starting_at(Nanos::from(wall))
    }

    /// Anchored to `origin`: `now()` returns `origin` plus the time elapsed
    /// since this call. Tests use `Nanos::ZERO` for reproducible windows.
    pub fn starting_at(origin: Nanos) -> Self {
        MonotonicClock {
            origin: timer::Instant::now(),
            origin_nanos: origin,
        }
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for MonotonicClock {
    #[inline]
    fn now(&self) -> Nanos {
        Nanos(
            self.origin_nanos
                .0
                .saturating_add(self.origin.elapsed_nanos()),
        )
    }
}

/// What the components keep: one clock, shared.
pub(crate) type SharedClock = Arc<dyn Clock>;

/// The default clock of a component that was given none.
pub(crate) fn default_clock() -> SharedClock {
    Arc::new(MonotonicClock::new())
}

/// A [`Clock`] that moves only when told to: for tests that drive the
/// memory backend, the circuit breaker, the blocked-key cache and override
/// expiry together, without sleeping and without pausing Tokio's time.
/// Clones share one instant.
///
/// ```
/// use std::time::Duration;
/// use tollgate::backend::MemoryBackend;
/// use tollgate::time::{Clock, ManualClock, Nanos};
///
/// let clock = ManualClock::starting_at(Nanos::from_secs(1_000));
/// let backend = MemoryBackend::builder().clock(clock.clone()).build();
/// clock.advance(Duration::from_millis(1_500));
/// assert_eq!(clock.now(), Nanos::from_millis(1_001_500));
/// # let _ = backend;
/// ```
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    now: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock standing at `at`.
    pub fn starting_at(at: Nanos) -> Self {
        ManualClock {
            now: Arc::new(AtomicU64::new(at.as_u64())),
        }
    }

    /// Moves the clock forward by `by` (saturating).
    pub fn advance(&self, by: Duration) {
        let by = Nanos::from(by).as_u64();
        let _ = self
            .now
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                Some(t.saturating_add(by))
            });
    }

    /// Sets the clock to `at`, forwards or backwards (a clock stepping
    /// back is a case worth testing).
    pub fn set(&self, at: Nanos) {
        self.now.store(at.as_u64(), Ordering::Release);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Nanos {
        Nanos::new(self.now.load(Ordering::Acquire))
    }
}

/// Nanoseconds since the Unix epoch of a wall-clock instant (zero before
/// the epoch, saturating after 2554): how an instant a user gives as a
/// `SystemTime` compares with a [`Clock`] anchored to the wall clock.
pub(crate) fn since_epoch(at: SystemTime) -> Nanos {
    at.duration_since(UNIX_EPOCH)
        .map_or(Nanos::ZERO, Nanos::from)
}
