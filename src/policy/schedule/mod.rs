//! [`Schedule`]: which [`Quota`] applies at an instant, by local time of day
//! and day of the week in an IANA time zone.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use jiff::civil::{Date, DateTime, Time, Weekday};
use jiff::tz::{TimeZone, TimeZoneDatabase};
use jiff::Timestamp;

use crate::quota::{truncate, Quota, QuotaError};

/// The time forms [`Schedule`] accepts, quoted in its errors.
const TIME_FORM: &str = "expected HH:MM from 00:00 to 24:00";

/// Minutes in a day: `"24:00"`.
const END_OF_DAY: u16 = 24 * 60;

/// The most windows a schedule holds: indexes (default included) fit a byte,
/// which keeps the cached answer in one atomic word.
pub const MAX_SCHEDULE_WINDOWS: usize = u8::MAX as usize;

/// Which quota applies when: a default, and windows of local wall-clock time
/// on chosen days of the week, in an IANA time zone.
///
/// # Windows
///
/// A window is `[start, end)` in local time (`"HH:MM"`, minute resolution)
/// on a set of weekdays. `"24:00"` as an end means the end of the day. A
/// window whose end is earlier than its start (`"22:00"`–`"06:00"`) runs
/// overnight and **belongs to the day it starts on**: a Friday-only
/// `22:00`–`06:00` window covers Friday 22:00 to Saturday 06:00, and not
/// Friday 00:00–06:00. An end of `"00:00"` means midnight at the end of the
/// start day, like `"24:00"`.
///
/// **Order**: windows are checked in the order they were added and the
/// **first** one that contains the instant wins; the default applies when
/// none does. Add the specific windows (a holiday, a weekend) before the
/// general ones.
///
/// # Quotas and indexes
///
/// [`Schedule::quotas`] lists every quota the schedule can yield: index 0 is
/// the default, index `i + 1` the `i`-th window added. [`Schedule::index_at`]
/// and [`Schedule::current_index`] answer with such an index, so a caller
/// builds one policy per index once and picks among them per request.
///
/// # Daylight saving time
///
/// Each occurrence of a window is turned into an interval of instants: its
/// local start and end on that date are converted with the time zone using
/// jiff's [`Disambiguation::Compatible`](jiff::tz::Disambiguation) rule,
/// like RFC 5545 and `java.time`:
///
/// - **Gap** (spring forward; 02:30 does not exist in `Europe/Paris` on the
///   last Sunday of March): the local time is pushed forward by the length
///   of the gap, to the instant *after* the transition. A window starting at
///   02:30 starts at 03:30 CEST (01:30 UTC) that day. A window that lies
///   entirely in the gap (02:30–03:00) is empty that day and applies as
///   usual on the other days; a window that starts in the gap and ends
///   after it is shortened, never skipped.
/// - **Fold** (fall back; 02:30 happens twice on the last Sunday of
///   October): the local time means its **first** occurrence (the earlier
///   instant, still in summer time). A window 01:00–02:30 ends at the first
///   02:30 (00:30 UTC) and does not apply during the repeated 02:00–02:30; a
///   window 02:00–03:00 starts at the first 02:00 and ends at the only
///   03:00, so it covers both passes of the repeated hour (two real hours).
///
/// Outside transitions a window lasts exactly its local length, and its
/// instants in UTC follow the zone's offset (09:00 in Paris is 08:00 UTC in
/// winter, 07:00 UTC in summer).
///
/// # Time zone data
///
/// [`Schedule::new`] looks the zone up in the copy of the IANA database
/// bundled into the binary first, so every machine running the same build
/// switches quotas at the same instants (useful with a shared Redis
/// backend), and falls back to the system's database for names the bundle
/// lacks. To use the system's copy, pass a zone from
/// [`jiff::tz::TimeZone::get`] to [`Schedule::with_time_zone`].
///
/// # Example
///
/// ```
/// use jiff::civil::Weekday;
/// use jiff::Timestamp;
/// use tollgate::{Quota, policy::Schedule};
///
/// let schedule = Schedule::new("Europe/Paris", Quota::per_minute(100))?
///     .on(&[Weekday::Saturday, Weekday::Sunday], "00:00", "24:00", Quota::per_minute(500))?
///     .weekdays("09:00", "18:00", Quota::per_minute(20))?
///     .daily("22:00", "06:00", Quota::per_minute(1000))?;
/// schedule.validate()?;
/// assert_eq!(schedule.quotas().len(), 4);
///
/// // Monday 2026-03-02 10:00 in Paris (09:00 UTC): office hours.
/// let monday: Timestamp = "2026-03-02T09:00:00Z".parse()?;
/// assert_eq!(schedule.index_at(monday), 2);
/// assert_eq!(schedule.quotas()[2], Quota::per_minute(20));
/// // Until 18:00 in Paris, 17:00 UTC.
/// assert_eq!(schedule.next_change_after(monday), "2026-03-02T17:00:00Z".parse()?);
///
/// // On the request path: cached, recomputed only at a boundary.
/// let quota = schedule.quotas()[schedule.current_index()];
/// # let _ = quota;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Schedule {
    tz: TimeZone,
    /// Index 0 the default, then one per window.
    quotas: Vec<Quota>,
    windows: Vec<Window>,
    /// The last answer of [`Schedule::cached_index_at`], packed by
    /// [`pack`]: "index `i` applies from second `a` to second `b`".
    cache: AtomicU64,
}

/// One window: `[start, end)` local time on the days in `days`.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Window {
    /// Bit `n` set: applies on the weekday `n` days after Monday.
    days: u8,
    /// Minutes after midnight, 0..=1439.
    start: u16,
    /// Minutes after midnight, 1..=1440, on the start day or, when
    /// `next_day`, on the day after.
    end: u16,
    start_time: Time,
    end_time: Time,
    /// The end is on the day after the start (overnight, or `24:00`).
    next_day: bool,
}

impl Window {
    fn applies_on(&self, day: Weekday) -> bool {
        self.days & day_bit(day) != 0
    }
}

fn day_bit(day: Weekday) -> u8 {
    1u8 << day.to_monday_zero_offset()
}

const WEEKDAYS: [Weekday; 7] = [
    Weekday::Monday,
    Weekday::Tuesday,
    Weekday::Wednesday,
    Weekday::Thursday,
    Weekday::Friday,
    Weekday::Saturday,
    Weekday::Sunday,
];

impl Schedule {
    /// A schedule in the IANA time zone `zone` (e.g. `"Europe/Paris"`,
    /// `"America/New_York"`, `"UTC"`) with `default` applying outside every
    /// window.
    ///
    /// The zone is looked up in the bundled database first, then in the
    /// system's (see [Time zone data](Schedule#time-zone-data)).
    ///
    /// # Errors
    ///
    /// [`ScheduleError::UnknownTimeZone`] if neither database knows `zone`.
    pub fn new(zone: &str, default: Quota) -> Result<Self, ScheduleError> {
        let tz = TimeZoneDatabase::bundled()
            .get(zone)
            .or_else(|_| TimeZone::get(zone))
            .map_err(|_| ScheduleError::UnknownTimeZone {
                zone: truncate(zone),
            })?;
        Ok(Self::with_time_zone(tz, default))
    }

    /// A schedule in UTC with `default` applying outside every window.
    pub fn utc(default: Quota) -> Self {
        Self::with_time_zone(TimeZone::UTC, default)
    }

    /// A schedule in `tz`, any jiff time zone (from the system database, a
    /// fixed offset, a POSIX TZ string), with `default` applying outside
    /// every window.
    pub fn with_time_zone(tz: TimeZone, default: Quota) -> Self {
        Schedule {
            tz,
            quotas: vec![default],
            windows: Vec::new(),
            cache: AtomicU64::new(0),
        }
    }

    /// Adds a window from `start` to `end` (`"HH:MM"`) local time on each
    /// of `days`, with `quota`. An end earlier than the start runs
    /// overnight into the next day; `"24:00"` (or `"00:00"`) as an end is
    /// midnight at the end of the start day.
    ///
    /// The window gets index `quotas().len()` and loses to every window
    /// added before it.
    ///
    /// # Errors
    ///
    /// [`ScheduleError::BadTime`] for a time that is not `HH:MM` between
    /// `00:00` and `24:00` (or a start of `24:00`),
    /// [`ScheduleError::EmptyWindow`] when start and end are the same time,
    /// [`ScheduleError::NoDays`] for an empty `days`,
    /// [`ScheduleError::TooManyWindows`] past [`MAX_SCHEDULE_WINDOWS`].
    pub fn on(
        mut self,
        days: &[Weekday],
        start: &str,
        end: &str,
        quota: Quota,
    ) -> Result<Self, ScheduleError> {
        let days = days.iter().fold(0u8, |mask, &d| mask | day_bit(d));
        if days == 0 {
            return Err(ScheduleError::NoDays);
        }
        if self.windows.len() >= MAX_SCHEDULE_WINDOWS {
            return Err(ScheduleError::TooManyWindows);
        }
        let start_min = parse_time(start)?;
        if start_min == END_OF_DAY {
            return Err(ScheduleError::BadTime {
                input: truncate(start),
                why: "a window cannot start at 24:00; start at 00:00 instead",
            });
        }
        let mut end_min = parse_time(end)?;
        if end_min == start_min {
            return Err(ScheduleError::EmptyWindow {
                start: truncate(start),
                end: truncate(end),
            });
        }
        if end_min == 0 {
            end_min = END_OF_DAY;
        }
        let next_day = end_min < start_min || end_min == END_OF_DAY;
        let start_time = civil_time(start_min).ok_or_else(|| bad_time(start))?;
        let end_time = civil_time(end_min % END_OF_DAY).ok_or_else(|| bad_time(end))?;
        self.windows.push(Window {
            days,
            start: start_min,
            end: end_min,
            start_time,
            end_time,
            next_day,
        });
        self.quotas.push(quota);
        Ok(self)
    }

    /// Adds a window on every day of the week; see [`Schedule::on`].
    ///
    /// # Errors
    ///
    /// As [`Schedule::on`].
    pub fn daily(self, start: &str, end: &str, quota: Quota) -> Result<Self, ScheduleError> {
        self.on(&WEEKDAYS, start, end, quota)
    }

    /// Adds a window Monday to Friday; see [`Schedule::on`].
    ///
    /// # Errors
    ///
    /// As [`Schedule::on`].
    pub fn weekdays(self, start: &str, end: &str, quota: Quota) -> Result<Self, ScheduleError> {
        self.on(&WEEKDAYS[..5], start, end, quota)
    }

    /// Adds a window on Saturday and Sunday; see [`Schedule::on`].
    ///
    /// # Errors
    ///
    /// As [`Schedule::on`].
    pub fn weekends(self, start: &str, end: &str, quota: Quota) -> Result<Self, ScheduleError> {
        self.on(&WEEKDAYS[5..], start, end, quota)
    }

    /// The time zone.
    pub fn time_zone(&self) -> &TimeZone {
        &self.tz
    }

    /// Every quota the schedule can yield: index 0 the default, then one
    /// per window in the order they were added.
    pub fn quotas(&self) -> &[Quota] {
        &self.quotas
    }

    /// Checks every quota with [`Quota::validate`].
    ///
    /// # Errors
    ///
    /// [`ScheduleError::Quota`] naming the index of the first bad quota.
    pub fn validate(&self) -> Result<(), ScheduleError> {
        for (index, quota) in self.quotas.iter().enumerate() {
            quota.validate().map_err(|source| ScheduleError::Quota {
                index,
                quota: *quota,
                source,
            })?;
        }
        Ok(())
    }

    /// The index (into [`Schedule::quotas`]) that applies at `at`: the
    /// first window containing it, or 0. Pure: reads no clock, no cache.
    pub fn index_at(&self, at: Timestamp) -> usize {
        let today = self.tz.to_datetime(at).date();
        // An occurrence spans at most two local days, shifted by at most a
        // transition: the ones that can contain `at` start between two days
        // before its local date and the day after (a fold across midnight).
        let days = days_around(today);
        for (i, window) in self.windows.iter().enumerate() {
            for &day in days.iter().flatten() {
                if let Some((start, end)) = self.occurrence(window, day) {
                    if start <= at && at < end {
                        return i + 1;
                    }
                }
            }
        }
        0
    }

    /// The first window boundary (start or end of an occurrence of any
    /// window, as an instant) strictly after `at`: the index cannot change
    /// before it, and may change at it. [`Timestamp::MAX`] for a schedule
    /// without windows.
    pub fn next_change_after(&self, at: Timestamp) -> Timestamp {
        if self.windows.is_empty() {
            return Timestamp::MAX;
        }
        let today = self.tz.to_datetime(at).date();
        let mut best: Option<Timestamp> = None;
        let mut day = today.yesterday().and_then(Date::yesterday).ok();
        // Every window recurs within a week; three weeks leave room for an
        // occurrence emptied by a gap.
        for _ in 0..21 {
            let Some(d) = day else { break };
            for window in &self.windows {
                if let Some((start, end)) = self.occurrence(window, d) {
                    for b in [start, end] {
                        if b > at && best.is_none_or(|best| b < best) {
                            best = Some(b);
                        }
                    }
                }
            }
            day = d.tomorrow().ok();
            // Occurrences on later days start at or after local midnight of
            // `day`, less at most a fold: stop once that is well past `best`.
            if let (Some(best), Some(next)) = (best, day) {
                if let Some(midnight) = self.instant(next, Time::midnight()) {
                    if best.as_second() < midnight.as_second().saturating_sub(2 * 86_400) {
                        break;
                    }
                }
            }
        }
        best.unwrap_or(Timestamp::MAX)
    }

    /// [`Schedule::index_at`] and [`Schedule::next_change_after`] at once:
    /// the index at `at` holds at least until the returned instant.
    pub fn resolve(&self, at: Timestamp) -> (usize, Timestamp) {
        (self.index_at(at), self.next_change_after(at))
    }

    /// The index that applies now ([`Timestamp::now`], the system clock),
    /// cached: see [`Schedule::cached_index_at`].
    pub fn current_index(&self) -> usize {
        self.cached_index_at(Timestamp::now())
    }

    /// [`Schedule::index_at`] through the cache: the schedule remembers its
    /// last answer with the span of seconds it holds for (from the instant
    /// it was computed at to the next boundary), and recomputes only when
    /// `at` is outside that span: past the boundary, or before the instant
    /// of the computation (the clock stepped backwards).
    ///
    /// The cache is one atomic word holding the index and both ends of the
    /// span, so a reader never sees parts of two answers; every answer
    /// stored is true forever (the schedule is immutable), so concurrent
    /// recomputations race harmlessly: the last store wins and the worst
    /// case is a redundant recomputation. Spans are clamped to about 194
    /// days and to the years 1970–2106; instants outside those years are
    /// computed every time.
    pub fn cached_index_at(&self, at: Timestamp) -> usize {
        let now = floor_second(at);
        if let Some((index, from, until)) = unpack(self.cache.load(Ordering::Relaxed)) {
            if from <= now && now < until {
                return index;
            }
        }
        let (index, next) = self.resolve(at);
        if let Some(word) = pack(index, now, floor_second(next)) {
            self.cache.store(word, Ordering::Relaxed);
        }
        index
    }

    /// The instants of `window`'s occurrence starting on `day`, if it
    /// occurs that day and is not emptied by a gap.
    fn occurrence(&self, window: &Window, day: Date) -> Option<(Timestamp, Timestamp)> {
        if !window.applies_on(day.weekday()) {
            return None;
        }
        let start = self.instant(day, window.start_time)?;
        let end_day = if window.next_day {
            day.tomorrow().ok()?
        } else {
            day
        };
        let end = self.instant(end_day, window.end_time)?;
        (start < end).then_some((start, end))
    }

    /// Local `time` on `day` as an instant, with the compatible rule.
    fn instant(&self, day: Date, time: Time) -> Option<Timestamp> {
        self.tz
            .to_ambiguous_timestamp(DateTime::from_parts(day, time))
            .compatible()
            .ok()
    }
}

/// The four dates from two days before `day` to the day after (`None`
/// past jiff's range).
fn days_around(day: Date) -> [Option<Date>; 4] {
    let mut out = [None; 4];
    let mut d = day.yesterday().and_then(Date::yesterday).ok();
    for slot in &mut out {
        *slot = d;
        d = d.and_then(|d| d.tomorrow().ok());
    }
    out
}

/// Whole seconds since the Unix epoch, rounded down.
fn floor_second(at: Timestamp) -> i64 {
    let s = at.as_second();
    if at.subsec_nanosecond() < 0 {
        s - 1
    } else {
        s
    }
}

/// Bits of the cached span's length, in seconds.
const SPAN_BITS: u32 = 24;
const SPAN_MAX: i64 = (1 << SPAN_BITS) - 1;

/// `index` (8 bits) | span length in seconds (24 bits) | end in seconds
/// since the Unix epoch (32 bits): "`index` applies on `[until - span,
/// until)`". `None` when it does not fit (then nothing is cached).
fn pack(index: usize, from: i64, until: i64) -> Option<u64> {
    let index = u8::try_from(index).ok()?;
    if from < 0 {
        return None;
    }
    let until = until
        .min(from.saturating_add(SPAN_MAX))
        .min(i64::from(u32::MAX));
    if until <= from {
        return None;
    }
    let until_bits = u64::try_from(until).ok()?;
    let span_bits = u64::try_from(until - from).ok()?;
    Some((u64::from(index) << 56) | (span_bits << 32) | until_bits)
}

/// The inverse of [`pack`]; `None` for the empty initial word.
fn unpack(word: u64) -> Option<(usize, i64, i64)> {
    let index = usize::from((word >> 56) as u8);
    let span = i64::try_from((word >> 32) & ((1 << SPAN_BITS) - 1)).ok()?;
    let until = i64::try_from(word & u64::from(u32::MAX)).ok()?;
    (span > 0).then_some((index, until - span, until))
}

/// `"HH:MM"` as minutes after midnight, 0..=1440.
fn parse_time(input: &str) -> Result<u16, ScheduleError> {
    let s = input.trim();
    let (h, m) = s.split_once(':').ok_or_else(|| bad_time(input))?;
    let digits = |p: &str, max_len: usize| {
        !p.is_empty() && p.len() <= max_len && p.bytes().all(|b| b.is_ascii_digit())
    };
    if !digits(h, 2) || !digits(m, 2) || m.len() != 2 {
        return Err(bad_time(input));
    }
    let h: u16 = h.parse().map_err(|_| bad_time(input))?;
    let m: u16 = m.parse().map_err(|_| bad_time(input))?;
    if m > 59 || h > 24 || (h == 24 && m != 0) {
        return Err(bad_time(input));
    }
    Ok(h * 60 + m)
}

fn bad_time(input: &str) -> ScheduleError {
    ScheduleError::BadTime {
        input: truncate(input),
        why: TIME_FORM,
    }
}

/// Minutes after midnight (0..=1439) as a civil time.
fn civil_time(minutes: u16) -> Option<Time> {
    let h = i8::try_from(minutes / 60).ok()?;
    let m = i8::try_from(minutes % 60).ok()?;
    Time::new(h, m, 0, 0).ok()
}

impl Clone for Schedule {
    fn clone(&self) -> Self {
        Schedule {
            tz: self.tz.clone(),
            quotas: self.quotas.clone(),
            windows: self.windows.clone(),
            // A cached answer is true of the clone too.
            cache: AtomicU64::new(self.cache.load(Ordering::Relaxed)),
        }
    }
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let windows: Vec<WindowDebug<'_>> = self
            .windows
            .iter()
            .zip(&self.quotas[1..])
            .map(|(window, quota)| WindowDebug { window, quota })
            .collect();
        f.debug_struct("Schedule")
            .field("time_zone", &self.tz.iana_name().unwrap_or("(not IANA)"))
            .field("default", &self.quotas[0])
            .field("windows", &windows)
            .finish()
    }
}

struct WindowDebug<'a> {
    window: &'a Window,
    quota: &'a Quota,
}

impl fmt::Debug for WindowDebug<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = self.window;
        let days: Vec<Weekday> = WEEKDAYS
            .iter()
            .copied()
            .filter(|&d| w.applies_on(d))
            .collect();
        write!(
            f,
            "{:?} {:02}:{:02}-{:02}:{:02}{} {:?}",
            days,
            w.start / 60,
            w.start % 60,
            w.end / 60,
            w.end % 60,
            if w.end < w.start { " (overnight)" } else { "" },
            self.quota
        )
    }
}

/// Why a [`Schedule`] could not be built or cannot be enforced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScheduleError {
    /// The time zone is not in the IANA database.
    #[error(
        "unknown time zone {zone:?}: expected an IANA name such as \"Europe/Paris\" or \"UTC\""
    )]
    UnknownTimeZone {
        /// The name given (truncated to 64 bytes).
        zone: String,
    },
    /// A window's time was not understood.
    #[error("bad time {input:?}: {why}")]
    BadTime {
        /// The time given (truncated to 64 bytes).
        input: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A window starts and ends at the same time.
    #[error("empty window {start:?}-{end:?}: start and end are the same; use \"00:00\"-\"24:00\" for a whole day")]
    EmptyWindow {
        /// The start given.
        start: String,
        /// The end given.
        end: String,
    },
    /// A window was given no day of the week.
    #[error("a window needs at least one day of the week")]
    NoDays,
    /// More than [`MAX_SCHEDULE_WINDOWS`] windows.
    #[error("a schedule holds at most {MAX_SCHEDULE_WINDOWS} windows")]
    TooManyWindows,
    /// A quota is invalid.
    #[error("schedule quota {index} ({quota}): {source}")]
    Quota {
        /// Its index in [`Schedule::quotas`] (0: the default).
        index: usize,
        /// The quota.
        quota: Quota,
        /// What is wrong with it.
        source: QuotaError,
    },
}

#[cfg(test)]
mod tests;
