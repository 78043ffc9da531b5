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
/// use tollgate::{Quota, Schedule};
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
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn q(n: u64) -> Quota {
        Quota::per_minute(n)
    }

    fn paris() -> Schedule {
        Schedule::new("Europe/Paris", q(100)).unwrap()
    }

    fn new_york() -> Schedule {
        Schedule::new("America/New_York", q(100)).unwrap()
    }

    #[test]
    fn test_dates_fall_on_the_expected_weekdays() {
        let d = |s: &str| s.parse::<Date>().unwrap().weekday();
        assert_eq!(d("2026-03-02"), Weekday::Monday);
        assert_eq!(d("2026-03-07"), Weekday::Saturday);
        assert_eq!(d("2026-03-29"), Weekday::Sunday);
        assert_eq!(d("2026-03-08"), Weekday::Sunday);
        assert_eq!(d("2026-10-25"), Weekday::Sunday);
    }

    #[test]
    fn weekday_window_applies_from_0900_to_before_1800_monday_to_friday() {
        let s = paris().weekdays("09:00", "18:00", q(20)).unwrap();
        // Paris is UTC+1 in early March.
        assert_eq!(s.index_at(ts("2026-03-02T08:00:00Z")), 1, "Mon 09:00");
        assert_eq!(s.index_at(ts("2026-03-02T07:59:59Z")), 0, "Mon 08:59:59");
        assert_eq!(s.index_at(ts("2026-03-02T07:59:59.999999999Z")), 0);
        assert_eq!(s.index_at(ts("2026-03-02T16:59:59Z")), 1, "Mon 17:59:59");
        assert_eq!(s.index_at(ts("2026-03-02T17:00:00Z")), 0, "Mon 18:00");
        assert_eq!(s.index_at(ts("2026-03-06T12:00:00Z")), 1, "Fri 13:00");
        assert_eq!(s.index_at(ts("2026-03-07T08:00:00Z")), 0, "Sat 09:00");
        assert_eq!(s.index_at(ts("2026-03-08T12:00:00Z")), 0, "Sun 13:00");
        assert_eq!(s.quotas()[s.index_at(ts("2026-03-02T08:00:00Z"))], q(20));
    }

    #[test]
    fn overnight_window_runs_from_2200_to_before_0600_next_day() {
        let s = Schedule::utc(q(100))
            .daily("22:00", "06:00", q(1000))
            .unwrap();
        assert_eq!(s.index_at(ts("2026-03-02T21:59:59Z")), 0);
        assert_eq!(s.index_at(ts("2026-03-02T22:00:00Z")), 1);
        assert_eq!(s.index_at(ts("2026-03-02T23:00:00Z")), 1);
        assert_eq!(s.index_at(ts("2026-03-03T00:00:00Z")), 1);
        assert_eq!(s.index_at(ts("2026-03-03T05:59:00Z")), 1);
        assert_eq!(s.index_at(ts("2026-03-03T05:59:59Z")), 1);
        assert_eq!(s.index_at(ts("2026-03-03T06:00:00Z")), 0);
        assert_eq!(s.index_at(ts("2026-03-03T12:00:00Z")), 0);
    }

    #[test]
    fn overnight_window_belongs_to_the_day_it_starts_on() {
        let s = Schedule::utc(q(100))
            .on(&[Weekday::Friday], "22:00", "06:00", q(1))
            .unwrap();
        // Friday 2026-03-06.
        assert_eq!(s.index_at(ts("2026-03-06T05:00:00Z")), 0, "Fri 05:00");
        assert_eq!(s.index_at(ts("2026-03-06T23:00:00Z")), 1, "Fri 23:00");
        assert_eq!(s.index_at(ts("2026-03-07T05:00:00Z")), 1, "Sat 05:00");
        assert_eq!(s.index_at(ts("2026-03-07T06:00:00Z")), 0, "Sat 06:00");
        assert_eq!(s.index_at(ts("2026-03-07T23:00:00Z")), 0, "Sat 23:00");
    }

    #[test]
    fn end_of_day_is_24_00_and_00_00_as_end_means_the_same() {
        let s = Schedule::utc(q(100))
            .weekends("00:00", "24:00", q(5))
            .unwrap()
            .on(&[Weekday::Monday], "20:00", "00:00", q(6))
            .unwrap();
        assert_eq!(s.index_at(ts("2026-03-07T00:00:00Z")), 1, "Sat 00:00");
        assert_eq!(s.index_at(ts("2026-03-08T23:59:59Z")), 1, "Sun 23:59:59");
        assert_eq!(s.index_at(ts("2026-03-09T00:00:00Z")), 0, "Mon 00:00");
        assert_eq!(s.index_at(ts("2026-03-09T23:59:59Z")), 2, "Mon 23:59:59");
        assert_eq!(s.index_at(ts("2026-03-10T00:00:00Z")), 0, "Tue 00:00");
        assert_eq!(
            s.next_change_after(ts("2026-03-09T21:00:00Z")),
            ts("2026-03-10T00:00:00Z")
        );
    }

    #[test]
    fn first_matching_window_wins() {
        let s = Schedule::utc(q(100))
            .on(&[Weekday::Monday], "12:00", "13:00", q(1))
            .unwrap()
            .weekdays("09:00", "18:00", q(2))
            .unwrap();
        assert_eq!(s.quotas(), &[q(100), q(1), q(2)]);
        assert_eq!(s.index_at(ts("2026-03-02T11:00:00Z")), 2);
        assert_eq!(s.index_at(ts("2026-03-02T12:30:00Z")), 1);
        assert_eq!(s.index_at(ts("2026-03-03T12:30:00Z")), 2, "Tuesday");
        // Reversed, the general window hides the specific one.
        let s = Schedule::utc(q(100))
            .weekdays("09:00", "18:00", q(2))
            .unwrap()
            .on(&[Weekday::Monday], "12:00", "13:00", q(1))
            .unwrap();
        assert_eq!(s.index_at(ts("2026-03-02T12:30:00Z")), 1);
    }

    #[test]
    fn office_hours_follow_the_offset_across_spring_forward_in_paris() {
        let s = paris().weekdays("09:00", "18:00", q(20)).unwrap();
        // Friday 2026-03-27, CET (UTC+1): 08:00Z to 17:00Z.
        assert_eq!(s.index_at(ts("2026-03-27T07:59:59Z")), 0);
        assert_eq!(s.index_at(ts("2026-03-27T08:00:00Z")), 1);
        assert_eq!(s.index_at(ts("2026-03-27T16:59:59Z")), 1);
        assert_eq!(s.index_at(ts("2026-03-27T17:00:00Z")), 0);
        // Monday 2026-03-30, CEST (UTC+2): 07:00Z to 16:00Z.
        assert_eq!(s.index_at(ts("2026-03-30T06:59:59Z")), 0);
        assert_eq!(s.index_at(ts("2026-03-30T07:00:00Z")), 1);
        assert_eq!(s.index_at(ts("2026-03-30T15:59:59Z")), 1);
        assert_eq!(s.index_at(ts("2026-03-30T16:00:00Z")), 0);
    }

    #[test]
    fn window_starting_in_the_paris_spring_gap_starts_after_the_gap() {
        // 2026-03-29: 02:00 CET becomes 03:00 CEST at 01:00Z, so 02:30 does
        // not exist; it means 03:30 CEST, 01:30Z.
        let s = paris().daily("02:30", "04:00", q(7)).unwrap();
        assert_eq!(s.index_at(ts("2026-03-29T01:00:00Z")), 0, "03:00 CEST");
        assert_eq!(s.index_at(ts("2026-03-29T01:29:59Z")), 0, "03:29:59 CEST");
        assert_eq!(s.index_at(ts("2026-03-29T01:30:00Z")), 1, "03:30 CEST");
        assert_eq!(s.index_at(ts("2026-03-29T01:59:59Z")), 1, "03:59:59 CEST");
        assert_eq!(s.index_at(ts("2026-03-29T02:00:00Z")), 0, "04:00 CEST");
        assert_eq!(
            s.next_change_after(ts("2026-03-29T00:00:00Z")),
            ts("2026-03-29T01:30:00Z")
        );
        // The day before (CET) and after (CEST) as usual: 90 minutes.
        assert_eq!(s.index_at(ts("2026-03-28T01:30:00Z")), 1, "02:30 CET");
        assert_eq!(s.index_at(ts("2026-03-28T02:59:59Z")), 1, "03:59:59 CET");
        assert_eq!(s.index_at(ts("2026-03-30T00:30:00Z")), 1, "02:30 CEST");
        assert_eq!(s.index_at(ts("2026-03-30T01:59:59Z")), 1, "03:59:59 CEST");
        assert_eq!(s.index_at(ts("2026-03-30T02:00:00Z")), 0, "04:00 CEST");
    }

    #[test]
    fn windows_inside_the_spring_gap_are_shortened_or_empty_that_day_only() {
        // 02:00-02:30 becomes 03:00-03:30 CEST (01:00Z-01:30Z).
        let s = paris().daily("02:00", "02:30", q(7)).unwrap();
        assert_eq!(s.index_at(ts("2026-03-29T00:59:59Z")), 0);
        assert_eq!(s.index_at(ts("2026-03-29T01:00:00Z")), 1);
        assert_eq!(s.index_at(ts("2026-03-29T01:29:59Z")), 1);
        assert_eq!(s.index_at(ts("2026-03-29T01:30:00Z")), 0);
        // 02:30-03:00 lies wholly in the gap: 03:30 CEST to 03:00 CEST is
        // empty, so it does not apply that day, and does the next.
        let s = paris().daily("02:30", "03:00", q(7)).unwrap();
        for t in ["00:59:59", "01:00:00", "01:15:00", "01:30:00", "01:45:00"] {
            assert_eq!(s.index_at(ts(&format!("2026-03-29T{t}Z"))), 0, "{t}");
        }
        assert_eq!(
            s.next_change_after(ts("2026-03-28T23:00:00Z")),
            ts("2026-03-30T00:30:00Z")
        );
        assert_eq!(s.index_at(ts("2026-03-30T00:30:00Z")), 1, "02:30 CEST");
        assert_eq!(s.index_at(ts("2026-03-30T01:00:00Z")), 0, "03:00 CEST");
    }

    #[test]
    fn new_york_spring_forward_gap_and_office_hours() {
        // 2026-03-08: 02:00 EST becomes 03:00 EDT at 07:00Z.
        let s = new_york()
            .daily("02:30", "05:00", q(7))
            .unwrap()
            .weekdays("09:00", "18:00", q(20))
            .unwrap();
        // 02:30 does not exist: 03:30 EDT, 07:30Z; ends 05:00 EDT, 09:00Z.
        assert_eq!(s.index_at(ts("2026-03-08T07:00:00Z")), 0, "03:00 EDT");
        assert_eq!(s.index_at(ts("2026-03-08T07:29:59Z")), 0);
        assert_eq!(s.index_at(ts("2026-03-08T07:30:00Z")), 1, "03:30 EDT");
        assert_eq!(s.index_at(ts("2026-03-08T08:59:59Z")), 1);
        assert_eq!(s.index_at(ts("2026-03-08T09:00:00Z")), 0, "05:00 EDT");
        // Saturday before: 02:30 EST is 07:30Z too, 05:00 EST is 10:00Z.
        assert_eq!(s.index_at(ts("2026-03-07T09:59:59Z")), 1);
        assert_eq!(s.index_at(ts("2026-03-07T10:00:00Z")), 0);
        // Office hours: 14:00Z-23:00Z on Friday (EST), 13:00Z-22:00Z on
        // Monday (EDT).
        assert_eq!(s.index_at(ts("2026-03-06T13:59:59Z")), 0);
        assert_eq!(s.index_at(ts("2026-03-06T14:00:00Z")), 2);
        assert_eq!(s.index_at(ts("2026-03-06T22:59:59Z")), 2);
        assert_eq!(s.index_at(ts("2026-03-06T23:00:00Z")), 0);
        assert_eq!(s.index_at(ts("2026-03-09T12:59:59Z")), 0);
        assert_eq!(s.index_at(ts("2026-03-09T13:00:00Z")), 2);
        assert_eq!(s.index_at(ts("2026-03-09T21:59:59Z")), 2);
        assert_eq!(s.index_at(ts("2026-03-09T22:00:00Z")), 0);
    }

    #[test]
    fn paris_fall_back_window_ends_at_the_first_pass_of_its_end() {
        // 2026-10-25: 03:00 CEST becomes 02:00 CET at 01:00Z, so 02:00-03:00
        // happens twice: 00:00Z-01:00Z (CEST), then 01:00Z-02:00Z (CET).
        let s = paris().daily("01:00", "02:30", q(7)).unwrap();
        // 01:00 CEST is 23:00Z the day before.
        assert_eq!(s.index_at(ts("2026-10-24T22:59:59Z")), 0);
        assert_eq!(s.index_at(ts("2026-10-24T23:00:00Z")), 1, "01:00 CEST");
        assert_eq!(s.index_at(ts("2026-10-25T00:29:59Z")), 1, "02:29:59 CEST");
        // Ends at the first 02:30 (CEST), and the repeated 02:00-02:30 (CET)
        // is not in the window.
        assert_eq!(s.index_at(ts("2026-10-25T00:30:00Z")), 0, "02:30 CEST");
        assert_eq!(s.index_at(ts("2026-10-25T01:00:00Z")), 0, "02:00 CET");
        assert_eq!(s.index_at(ts("2026-10-25T01:15:00Z")), 0, "02:15 CET");
        assert_eq!(s.index_at(ts("2026-10-25T01:29:59Z")), 0, "02:29:59 CET");
        assert_eq!(
            s.next_change_after(ts("2026-10-25T00:00:00Z")),
            ts("2026-10-25T00:30:00Z")
        );
        // Next: 01:00 CET on the 26th, 00:00Z; not during the repeated hour.
        assert_eq!(
            s.next_change_after(ts("2026-10-25T00:30:00Z")),
            ts("2026-10-26T00:00:00Z")
        );
        assert_eq!(s.index_at(ts("2026-10-26T00:00:00Z")), 1, "01:00 CET");
        assert_eq!(s.index_at(ts("2026-10-26T01:29:59Z")), 1, "02:29:59 CET");
        assert_eq!(s.index_at(ts("2026-10-26T01:30:00Z")), 0, "02:30 CET");
    }

    #[test]
    fn paris_fall_back_window_over_the_repeated_hour_covers_both_passes() {
        let s = paris().daily("02:00", "03:00", q(7)).unwrap();
        // First 02:00 (CEST) is 00:00Z; the only 03:00 (CET) is 02:00Z.
        assert_eq!(s.index_at(ts("2026-10-24T23:59:59Z")), 0);
        assert_eq!(s.index_at(ts("2026-10-25T00:00:00Z")), 1, "02:00 CEST");
        assert_eq!(s.index_at(ts("2026-10-25T00:59:59Z")), 1);
        assert_eq!(s.index_at(ts("2026-10-25T01:00:00Z")), 1, "02:00 CET");
        assert_eq!(s.index_at(ts("2026-10-25T01:59:59Z")), 1);
        assert_eq!(s.index_at(ts("2026-10-25T02:00:00Z")), 0, "03:00 CET");
        // A window starting in the fold starts at its first pass.
        let s = paris().daily("02:30", "04:00", q(7)).unwrap();
        assert_eq!(s.index_at(ts("2026-10-25T00:29:59Z")), 0);
        assert_eq!(s.index_at(ts("2026-10-25T00:30:00Z")), 1, "02:30 CEST");
        assert_eq!(s.index_at(ts("2026-10-25T02:59:59Z")), 1, "03:59:59 CET");
        assert_eq!(s.index_at(ts("2026-10-25T03:00:00Z")), 0, "04:00 CET");
    }

    #[test]
    fn next_change_after_returns_the_next_boundary_across_dst() {
        let s = paris().weekdays("09:00", "18:00", q(20)).unwrap();
        // Friday 2026-03-27 (CET) in the window: its end, 18:00 CET.
        assert_eq!(
            s.next_change_after(ts("2026-03-27T12:00:00Z")),
            ts("2026-03-27T17:00:00Z")
        );
        // At a boundary: strictly after it. Over the weekend and the change
        // to CEST: Monday 09:00 CEST, 07:00Z.
        assert_eq!(
            s.next_change_after(ts("2026-03-27T17:00:00Z")),
            ts("2026-03-30T07:00:00Z")
        );
        assert_eq!(
            s.next_change_after(ts("2026-03-27T16:59:59Z")),
            ts("2026-03-27T17:00:00Z")
        );
        assert_eq!(
            s.resolve(ts("2026-03-28T12:00:00Z")),
            (0, ts("2026-03-30T07:00:00Z"))
        );
        // Fall back: Friday 2026-10-23 18:00 CEST (16:00Z) to Monday
        // 2026-10-26 09:00 CET (08:00Z).
        assert_eq!(
            s.next_change_after(ts("2026-10-23T16:00:00Z")),
            ts("2026-10-26T08:00:00Z")
        );
        // A weekly window seen from the day after: six days ahead.
        let s = paris()
            .on(&[Weekday::Monday], "09:00", "10:00", q(1))
            .unwrap();
        assert_eq!(
            s.next_change_after(ts("2026-03-03T12:00:00Z")),
            ts("2026-03-09T08:00:00Z")
        );
    }

    #[test]
    fn a_schedule_without_windows_never_changes() {
        let s = paris();
        assert_eq!(s.index_at(ts("2026-03-02T08:00:00Z")), 0);
        assert_eq!(
            s.next_change_after(ts("2026-03-02T08:00:00Z")),
            Timestamp::MAX
        );
        assert_eq!(s.cached_index_at(ts("2026-03-02T08:00:00Z")), 0);
        assert_eq!(s.quotas(), &[q(100)]);
    }

    #[test]
    fn every_boundary_is_seen_when_walking_a_year_of_changes() {
        // Walking next_change_after from boundary to boundary must visit
        // every change of index_at (sampled each 5 minutes) in 2026.
        let s = paris()
            .weekdays("09:00", "18:00", q(20))
            .unwrap()
            .daily("22:00", "06:00", q(1000))
            .unwrap()
            .daily("02:30", "03:00", q(3))
            .unwrap();
        let mut t = ts("2026-01-01T00:00:00Z");
        let end = ts("2027-01-01T00:00:00Z");
        let mut next = s.next_change_after(t);
        let mut index = s.index_at(t);
        while t < end {
            let step = t + jiff::SignedDuration::from_mins(5);
            let t2 = step.min(next);
            let i2 = s.index_at(t2);
            if t2 < next {
                assert_eq!(i2, index, "index changed at {t2} before {next}");
            } else {
                next = s.next_change_after(t2);
                assert!(next > t2);
            }
            index = i2;
            t = t2;
        }
    }

    #[test]
    fn cached_index_changes_when_crossing_valid_until() {
        let s = paris().weekdays("09:00", "18:00", q(20)).unwrap();
        // Monday 2026-03-02: 08:00Z to 17:00Z.
        assert_eq!(s.cached_index_at(ts("2026-03-02T07:00:00Z")), 0);
        let (index, from, until) = unpack(s.cache.load(Ordering::Relaxed)).unwrap();
        assert_eq!(
            (index, from, until),
            (
                0,
                ts("2026-03-02T07:00:00Z").as_second(),
                ts("2026-03-02T08:00:00Z").as_second()
            )
        );
        assert_eq!(s.cached_index_at(ts("2026-03-02T07:59:59.999Z")), 0);
        assert_eq!(s.cached_index_at(ts("2026-03-02T08:00:00Z")), 1);
        assert_eq!(s.cached_index_at(ts("2026-03-02T12:00:00Z")), 1);
        assert_eq!(s.cached_index_at(ts("2026-03-02T16:59:59Z")), 1);
        let (_, from, until) = unpack(s.cache.load(Ordering::Relaxed)).unwrap();
        assert_eq!(
            from,
            ts("2026-03-02T08:00:00Z").as_second(),
            "no recompute inside the span"
        );
        assert_eq!(until, ts("2026-03-02T17:00:00Z").as_second());
        assert_eq!(s.cached_index_at(ts("2026-03-02T17:00:00Z")), 0);
        // A clone carries the cached answer, and answers the same.
        let c = s.clone();
        assert_eq!(c.cached_index_at(ts("2026-03-02T18:00:00Z")), 0);
        assert_eq!(c.cached_index_at(ts("2026-03-03T08:00:00Z")), 1);
    }

    #[test]
    fn cached_index_recomputes_when_the_clock_steps_backwards() {
        let s = paris().weekdays("09:00", "18:00", q(20)).unwrap();
        assert_eq!(s.cached_index_at(ts("2026-03-02T12:00:00Z")), 1);
        // Back before the window: the cached span starts at 12:00Z.
        assert_eq!(s.cached_index_at(ts("2026-03-02T07:00:00Z")), 0);
        assert_eq!(s.cached_index_at(ts("2026-03-02T11:59:59Z")), 1);
        // Back a whole week, to a Sunday.
        assert_eq!(s.cached_index_at(ts("2026-03-01T12:00:00Z")), 0);
    }

    #[test]
    fn cached_index_matches_index_at_everywhere() {
        let s = new_york()
            .weekdays("09:00", "18:00", q(20))
            .unwrap()
            .daily("22:00", "02:30", q(1000))
            .unwrap();
        let mut t = ts("2026-03-01T00:00:00Z");
        while t < ts("2026-03-16T00:00:00Z") {
            assert_eq!(s.cached_index_at(t), s.index_at(t), "{t}");
            t += jiff::SignedDuration::from_secs(7 * 60 + 13);
        }
    }

    #[test]
    fn concurrent_cached_lookups_never_answer_wrong() {
        // Threads reading and recomputing at different instants (some going
        // backwards) race on the one cache word: every answer must still be
        // the pure one.
        let s = paris()
            .weekdays("09:00", "18:00", q(20))
            .unwrap()
            .daily("22:00", "06:00", q(1000))
            .unwrap();
        let base = ts("2026-03-23T00:00:00Z");
        std::thread::scope(|scope| {
            for thread in 0..4i64 {
                let s = &s;
                scope.spawn(move || {
                    for i in 0..3_000i64 {
                        let mins = (i * 37 + thread * 1_009) % (10 * 24 * 60);
                        let t = base + jiff::SignedDuration::from_mins(mins);
                        assert_eq!(s.cached_index_at(t), s.index_at(t), "{t}");
                    }
                });
            }
        });
    }

    #[test]
    fn current_index_reads_the_clock() {
        let s = Schedule::utc(q(100))
            .daily("00:00", "12:00", q(1))
            .unwrap()
            .daily("12:00", "24:00", q(2))
            .unwrap();
        let i = s.current_index();
        assert!(i == 1 || i == 2, "{i}");
        assert!(s.current_index() >= 1);
    }

    #[test]
    fn pack_round_trips_and_refuses_what_does_not_fit() {
        assert_eq!(unpack(0), None);
        let w = pack(7, 1_000, 2_000).unwrap();
        assert_eq!(unpack(w), Some((7, 1_000, 2_000)));
        let w = pack(255, 0, i64::MAX).unwrap();
        assert_eq!(unpack(w), Some((255, 0, SPAN_MAX)));
        assert_eq!(pack(256, 0, 10), None);
        assert_eq!(pack(1, -5, 10), None);
        assert_eq!(pack(1, 10, 10), None);
        assert_eq!(pack(1, i64::from(u32::MAX), i64::MAX), None);
    }

    #[test]
    fn unknown_time_zone_error_names_the_zone() {
        let err = Schedule::new("Europe/Pariss", q(1)).unwrap_err();
        assert_eq!(
            err,
            ScheduleError::UnknownTimeZone {
                zone: "Europe/Pariss".into()
            }
        );
        assert!(
            err.to_string()
                .starts_with("unknown time zone \"Europe/Pariss\""),
            "{err}"
        );
        assert!(Schedule::new("", q(1)).is_err());
        assert!(Schedule::new("UTC", q(1)).is_ok());
    }

    #[test]
    fn bad_time_errors_name_the_bad_time() {
        for bad in [
            "25:00", "24:30", "12:60", "9h", "", "12", "12:5", "123:00", "-1:00", "12:00:00",
            "ab:cd", "+9:00",
        ] {
            let err = Schedule::utc(q(1)).daily(bad, "10:00", q(2)).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("bad time {bad:?}: expected HH:MM from 00:00 to 24:00"),
            );
            let err = Schedule::utc(q(1)).daily("10:00", bad, q(2)).unwrap_err();
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
        let err = Schedule::utc(q(1))
            .daily("24:00", "10:00", q(2))
            .unwrap_err();
        assert!(
            err.to_string().contains("\"24:00\"") && err.to_string().contains("cannot start"),
            "{err}"
        );
        // Accepted forms.
        for (start, end) in [("9:00", "17:30"), ("00:00", "24:00"), (" 08:15 ", "08:16")] {
            assert!(
                Schedule::utc(q(1)).daily(start, end, q(2)).is_ok(),
                "{start}-{end}"
            );
        }
        let long = "1".repeat(1000);
        let err = Schedule::utc(q(1)).daily(&long, "10:00", q(2)).unwrap_err();
        assert!(err.to_string().len() < 200, "{err}");
    }

    #[test]
    fn empty_windows_and_windows_without_days_are_refused() {
        let err = Schedule::utc(q(1))
            .daily("09:00", "09:00", q(2))
            .unwrap_err();
        assert!(matches!(err, ScheduleError::EmptyWindow { .. }), "{err}");
        assert!(err.to_string().contains("\"09:00\""), "{err}");
        assert!(Schedule::utc(q(1)).daily("00:00", "00:00", q(2)).is_err());
        let err = Schedule::utc(q(1))
            .on(&[], "09:00", "10:00", q(2))
            .unwrap_err();
        assert_eq!(err, ScheduleError::NoDays);
    }

    #[test]
    fn at_most_255_windows() {
        let mut s = Schedule::utc(q(1));
        for _ in 0..MAX_SCHEDULE_WINDOWS {
            s = s.daily("09:00", "10:00", q(2)).unwrap();
        }
        assert_eq!(s.quotas().len(), 256);
        let err = s.clone().daily("09:00", "10:00", q(2)).unwrap_err();
        assert_eq!(err, ScheduleError::TooManyWindows);
        // The last index still caches.
        let s = (0..MAX_SCHEDULE_WINDOWS - 1)
            .try_fold(Schedule::utc(q(1)), |s, _| s.daily("01:00", "02:00", q(2)))
            .unwrap()
            .daily("09:00", "10:00", q(3))
            .unwrap();
        assert_eq!(s.cached_index_at(ts("2026-03-02T09:30:00Z")), 255);
        assert_eq!(s.cached_index_at(ts("2026-03-02T09:31:00Z")), 255);
    }

    #[test]
    fn validate_names_the_bad_quota() {
        assert_eq!(
            paris()
                .weekdays("09:00", "18:00", q(20))
                .unwrap()
                .validate(),
            Ok(())
        );
        let s = paris()
            .weekdays("09:00", "18:00", q(20))
            .unwrap()
            .daily("22:00", "06:00", q(0))
            .unwrap();
        let err = s.validate().unwrap_err();
        assert!(
            matches!(
                err,
                ScheduleError::Quota {
                    index: 2,
                    source: QuotaError::ZeroLimit,
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            err.to_string().starts_with("schedule quota 2 (0/m): "),
            "{err}"
        );
    }

    #[test]
    fn schedule_is_clone_debug_send_sync() {
        fn assert_traits<T: Clone + fmt::Debug + Send + Sync + 'static>() {}
        assert_traits::<Schedule>();
        assert_traits::<ScheduleError>();
        let s = paris()
            .weekdays("09:00", "18:00", q(20))
            .unwrap()
            .daily("22:00", "06:00", q(1000))
            .unwrap();
        let d = format!("{s:?}");
        assert!(
            d.contains("Europe/Paris")
                && d.contains("09:00-18:00")
                && d.contains("22:00-06:00 (overnight)"),
            "{d}"
        );
    }
}
