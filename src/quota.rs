//! [`Quota`]: how many requests per period, with an optional burst.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::time::Nanos;

/// The longest period a quota may have: 366 days. Longer windows are almost
/// always a units mistake (milliseconds taken for seconds) and keep state
/// alive for years.
pub const MAX_PERIOD: Duration = Duration::from_secs(366 * 24 * 3600);

/// A rate: `limit` requests per `period`, with a burst (the bucket size of
/// the bucket algorithms) that defaults to `limit`.
///
/// `Quota::per_second(10)` means **ten per second**, as in `governor` (not
/// tower_governor's "one every ten seconds"). What that admits depends on
/// the [`Algorithm`](crate::Algorithm); with `per_second(10)`:
///
/// | algorithm | at once | in the first second | afterwards |
/// |---|---|---|---|
/// | GCRA, token bucket, leaky bucket | 10 | 19 (10, then one every 100 ms at 100…900 ms) | one every 100 ms |
/// | same with `.with_burst(20)` | 20 | 29 | one every 100 ms |
/// | leaky bucket queue (`max_delay` 500 ms) | 10 | 10 at once + 5 queued (delayed 100…500 ms) + one every 100 ms | one every 100 ms |
/// | fixed window | 10 | 10 | 10 per window (up to 20 across a window edge) |
/// | sliding window (counter) | 10 | 10 | ≤ 10 per clock second, spread by the weighted estimate |
/// | sliding window log | 10 | 10 | ≤ 10 in **any** 1 s span |
///
/// The windowed algorithms admit exactly `limit` per period and have no
/// burst: setting one is a configuration error at `build()`.
///
/// ```
/// use std::time::Duration;
/// use tollgate::Quota;
///
/// let q = Quota::per_minute(100);
/// assert_eq!(q.limit(), 100);
/// assert_eq!(q.period(), Duration::from_secs(60));
///
/// let parsed: Quota = "5/30s".parse().unwrap();
/// assert_eq!(parsed, Quota::new(5, Duration::from_secs(30)));
///
/// let bursty = Quota::per_second(10).with_burst(20);
/// assert_eq!(bursty.burst(), 20);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quota {
    limit: u64,
    period: Duration,
    burst: Option<u64>,
    /// `period / limit` in nanoseconds, computed once: the hot path would
    /// otherwise divide on every check.
    interval: u64,
}

impl Quota {
    /// `limit` requests per `period`.
    pub const fn new(limit: u64, period: Duration) -> Self {
        let period_ns = period_to_nanos(period);
        let per = if limit == 0 { 1 } else { limit };
        let interval = period_ns / per;
        Quota {
            limit,
            period,
            burst: None,
            interval: if interval == 0 { 1 } else { interval },
        }
    }

    /// `limit` requests per second.
    pub const fn per_second(limit: u64) -> Self {
        Self::new(limit, Duration::from_secs(1))
    }

    /// `limit` requests per minute.
    pub const fn per_minute(limit: u64) -> Self {
        Self::new(limit, Duration::from_secs(60))
    }

    /// `limit` requests per hour.
    pub const fn per_hour(limit: u64) -> Self {
        Self::new(limit, Duration::from_secs(3600))
    }

    /// `limit` requests per day.
    pub const fn per_day(limit: u64) -> Self {
        Self::new(limit, Duration::from_secs(86_400))
    }

    /// Sets the burst: how many requests a full bucket admits at once (bucket
    /// algorithms only). After a burst, requests are admitted at the
    /// sustained rate `limit / period`.
    pub const fn with_burst(mut self, burst: u64) -> Self {
        self.burst = Some(burst);
        self
    }

    /// Requests per period.
    pub const fn limit(&self) -> u64 {
        self.limit
    }

    /// The period.
    pub const fn period(&self) -> Duration {
        self.period
    }

    /// The burst: the explicit one, or `limit`.
    pub const fn burst(&self) -> u64 {
        match self.burst {
            Some(b) => b,
            None => self.limit,
        }
    }

    /// Whether a burst was set explicitly with [`Quota::with_burst`].
    pub const fn has_explicit_burst(&self) -> bool {
        self.burst.is_some()
    }

    /// The period in nanoseconds.
    pub const fn period_nanos(&self) -> Nanos {
        Nanos::new(period_to_nanos(self.period))
    }

    /// The time one request "costs": `period / limit`, rounded down to the
    /// nanosecond as governor does. The error is under a nanosecond per
    /// request (`per_second(3)` refills one every 333,333,333 ns), and it
    /// keeps a full bucket at or under one period, so `X-RateLimit-Reset`
    /// reads `1` for a per-second quota, not `2`.
    pub const fn emission_interval(&self) -> Nanos {
        Nanos::new(self.interval)
    }

    /// Checks that the quota can be enforced: a non-zero limit and burst, a
    /// period between 1 ms and [`MAX_PERIOD`], at most one request per
    /// nanosecond. `RateLimitLayer::builder().build()` calls this.
    pub fn validate(&self) -> Result<(), QuotaError> {
        if self.limit == 0 {
            return Err(QuotaError::ZeroLimit);
        }
        if self.burst == Some(0) {
            return Err(QuotaError::ZeroBurst);
        }
        if self.period < Duration::from_millis(1) {
            return Err(QuotaError::PeriodTooShort(self.period));
        }
        if self.period > MAX_PERIOD {
            return Err(QuotaError::PeriodTooLong(self.period));
        }
        let period_ns = self.period_nanos().as_u64();
        if self.limit > period_ns {
            return Err(QuotaError::RateTooHigh {
                limit: self.limit,
                period: self.period,
            });
        }
        // A full bucket spans burst × interval: keep it within the period
        // bound too, so every state fits a u64 of nanoseconds comfortably.
        let span = u128::from(self.burst()) * u128::from(self.emission_interval().as_u64());
        if span > MAX_PERIOD.as_nanos() {
            return Err(QuotaError::BurstTooLarge {
                burst: self.burst(),
            });
        }
        Ok(())
    }
}

/// A period in nanoseconds, saturating (periods over 584 years).
const fn period_to_nanos(period: Duration) -> u64 {
    match period.as_secs().checked_mul(1_000_000_000) {
        Some(ns) => ns.saturating_add(period.subsec_nanos() as u64),
        None => u64::MAX,
    }
}

impl fmt::Debug for Quota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Quota({self})")
    }
}

/// Formats as the string form `FromStr` accepts: `100/m`, `5/30s`, and
/// `10/s burst 20` when a burst was set.
impl fmt::Display for Quota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.period.as_secs();
        let whole = self.period.subsec_nanos() == 0;
        let (n, unit) = match secs {
            _ if !whole => (self.period.as_millis() as u64, "ms"),
            s if s % 86_400 == 0 => (s / 86_400, "d"),
            s if s % 3600 == 0 => (s / 3600, "h"),
            s if s % 60 == 0 => (s / 60, "m"),
            s => (s, "s"),
        };
        if n == 1 {
            write!(f, "{}/{}", self.limit, unit)?;
        } else {
            write!(f, "{}/{}{}", self.limit, n, unit)?;
        }
        if let Some(b) = self.burst {
            write!(f, " burst {b}")?;
        }
        Ok(())
    }
}

/// The forms [`Quota::from_str`] accepts, quoted in its errors.
pub const QUOTA_FORMS: &str =
    "N/U or N/kU with U one of ms, s, m, h, d (e.g. \"10/s\", \"100/m\", \"5/30s\", \"1000/1h\"), optionally followed by \" burst B\"";

impl FromStr for Quota {
    type Err = QuotaError;

    /// Parses `"10/s"`, `"100/m"`, `"5/30s"`, `"2/5m"`, `"1000/d"`,
    /// `"10/s burst 20"`. Unit words (`sec`, `second`, `min`, `minute`,
    /// `hour`, `day`) are accepted too.
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let bad = |part: &str, why: &'static str| QuotaError::Parse {
            input: truncate(input),
            part: truncate(part),
            why,
        };
        let s = input.trim();
        let (rate, burst) = match s.split_once(" burst ") {
            Some((rate, burst)) => {
                let b = burst.trim();
                let b: u64 = b
                    .parse()
                    .map_err(|_| bad(b, "the burst is not a whole number"))?;
                (rate.trim(), Some(b))
            }
            None => (s, None),
        };
        let (count, per) = rate
            .split_once('/')
            .ok_or_else(|| bad(rate, "missing '/' between the count and the period"))?;
        let count = count.trim();
        let limit: u64 = count
            .parse()
            .map_err(|_| bad(count, "the count is not a whole number"))?;
        let per = per.trim();
        let digits_end = per
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| bad(per, "the period has no unit"))?;
        let (n, unit) = per.split_at(digits_end);
        let n: u64 = if n.is_empty() {
            1
        } else {
            n.parse()
                .map_err(|_| bad(n, "the period's multiplier is too large"))?
        };
        let unit_nanos: u64 = match unit.trim() {
            "ms" => 1_000_000,
            "s" | "sec" | "secs" | "second" | "seconds" => 1_000_000_000,
            "m" | "min" | "mins" | "minute" | "minutes" => 60_000_000_000,
            "h" | "hr" | "hour" | "hours" => 3_600_000_000_000,
            "d" | "day" | "days" => 86_400_000_000_000,
            other => return Err(bad(other, "unknown period unit")),
        };
        let nanos = n
            .checked_mul(unit_nanos)
            .ok_or_else(|| bad(per, "the period is too long"))?;
        let mut quota = Quota::new(limit, Duration::from_nanos(nanos));
        if let Some(b) = burst {
            quota = quota.with_burst(b);
        }
        Ok(quota)
    }
}

pub(crate) fn truncate(s: &str) -> String {
    const MAX: usize = 64;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Why a [`Quota`] could not be parsed or cannot be enforced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QuotaError {
    /// The string form was not understood.
    #[error("invalid quota {input:?}: {why} (at {part:?}); accepted forms: {forms}", forms = QUOTA_FORMS)]
    Parse {
        /// The whole input (truncated to 64 bytes).
        input: String,
        /// The part that was wrong.
        part: String,
        /// What was wrong with it.
        why: &'static str,
    },
    /// A limit of zero would deny every request.
    #[error("a quota of zero requests denies everything; use a deny list to block, or a limit of at least 1")]
    ZeroLimit,
    /// A burst of zero would deny every request.
    #[error("a burst of zero denies everything; the burst must be at least 1")]
    ZeroBurst,
    /// The period is shorter than a millisecond.
    #[error("the period {0:?} is shorter than 1 ms")]
    PeriodTooShort(Duration),
    /// The period is longer than [`MAX_PERIOD`].
    #[error(
        "the period {0:?} is longer than 366 days; was a count of milliseconds given as seconds?"
    )]
    PeriodTooLong(Duration),
    /// More than one request per nanosecond.
    #[error("{limit} per {period:?} is more than one request per nanosecond")]
    RateTooHigh {
        /// The limit.
        limit: u64,
        /// The period.
        period: Duration,
    },
    /// A full bucket would span more than [`MAX_PERIOD`].
    #[error("a burst of {burst} at this rate takes more than 366 days to refill")]
    BurstTooLarge {
        /// The burst.
        burst: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_second_means_n_per_second() {
        let q = Quota::per_second(10);
        assert_eq!(q.limit(), 10);
        assert_eq!(q.period(), Duration::from_secs(1));
        assert_eq!(q.emission_interval(), Nanos::from_millis(100));
        assert_eq!(q.burst(), 10);
    }

    #[test]
    fn parses_every_documented_form() {
        let cases = [
            ("10/s", Quota::per_second(10)),
            ("100/m", Quota::per_minute(100)),
            ("7/h", Quota::per_hour(7)),
            ("1000/d", Quota::per_day(1000)),
            ("5/30s", Quota::new(5, Duration::from_secs(30))),
            ("2/5m", Quota::new(2, Duration::from_secs(300))),
            ("3/250ms", Quota::new(3, Duration::from_millis(250))),
            (" 10 / minute ", Quota::per_minute(10)),
            ("10/s burst 20", Quota::per_second(10).with_burst(20)),
        ];
        for (s, want) in cases {
            assert_eq!(s.parse::<Quota>(), Ok(want), "{s}");
        }
    }

    #[test]
    fn display_round_trips() {
        for q in [
            Quota::per_second(10),
            Quota::per_minute(3),
            Quota::new(5, Duration::from_secs(30)),
            Quota::new(1, Duration::from_millis(1500)),
            Quota::per_day(9).with_burst(2),
        ] {
            assert_eq!(q.to_string().parse::<Quota>(), Ok(q), "{q}");
        }
    }

    #[test]
    fn parse_errors_name_the_bad_part() {
        let err = "ten/s".parse::<Quota>().unwrap_err().to_string();
        assert!(
            err.contains("\"ten\"") && err.contains("accepted forms"),
            "{err}"
        );
        let err = "10/fortnight".parse::<Quota>().unwrap_err().to_string();
        assert!(
            err.contains("\"fortnight\"") && err.contains("unknown period unit"),
            "{err}"
        );
        let err = "10 per second".parse::<Quota>().unwrap_err().to_string();
        assert!(err.contains("missing '/'"), "{err}");
        let err = "10/".parse::<Quota>().unwrap_err().to_string();
        assert!(err.contains("no unit"), "{err}");
        let err = "10/99999999999999999999s"
            .parse::<Quota>()
            .unwrap_err()
            .to_string();
        assert!(err.contains("too large"), "{err}");
        let err = "10/s burst lots".parse::<Quota>().unwrap_err().to_string();
        assert!(err.contains("\"lots\""), "{err}");
    }

    #[test]
    fn huge_bad_input_is_truncated_in_the_error() {
        let input = "x".repeat(100_000);
        let err = input.parse::<Quota>().unwrap_err().to_string();
        assert!(err.len() < 600, "{}", err.len());
    }

    #[test]
    fn zero_and_absurd_quotas_fail_validation() {
        assert_eq!(Quota::per_second(0).validate(), Err(QuotaError::ZeroLimit));
        assert_eq!(
            Quota::per_second(1).with_burst(0).validate(),
            Err(QuotaError::ZeroBurst)
        );
        assert!(matches!(
            Quota::new(1, Duration::from_secs(400 * 86_400)).validate(),
            Err(QuotaError::PeriodTooLong(_))
        ));
        assert!(matches!(
            Quota::new(1, Duration::from_micros(10)).validate(),
            Err(QuotaError::PeriodTooShort(_))
        ));
        assert!(matches!(
            Quota::per_second(u64::MAX).validate(),
            Err(QuotaError::RateTooHigh { .. })
        ));
        assert!(matches!(
            Quota::per_day(1).with_burst(1_000).validate(),
            Err(QuotaError::BurstTooLarge { .. })
        ));
        assert_eq!(Quota::per_second(10).validate(), Ok(()));
    }

    #[test]
    fn emission_interval_rounds_down() {
        assert_eq!(
            Quota::per_second(3).emission_interval(),
            Nanos::new(333_333_333)
        );
    }
}
