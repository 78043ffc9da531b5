//! Unit tests of [`Schedule`](super::Schedule): windows, daylight saving
//! time, the cache, errors.

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
        "25:00", "24:30", "12:60", "9h", "", "12", "12:5", "123:00", "-1:00", "12:00:00", "ab:cd",
        "+9:00",
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
