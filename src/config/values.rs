//! The values a file writes as text, read into the crate's types: quotas,
//! algorithms, durations, address ranges, instants, Redis URLs. Each
//! error is a message and a fix, for a [`Diagnostic`](super::Diagnostic).

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ipnet::IpNet;

use crate::quota::{Quota, QuotaError, QUOTA_FORMS};
use crate::Algorithm;

/// A problem with a value: what is wrong, and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bad {
    pub(crate) message: String,
    pub(crate) fix: String,
}

fn bad(message: impl Into<String>, fix: impl Into<String>) -> Bad {
    Bad {
        message: message.into(),
        fix: fix.into(),
    }
}

const UNITS_FIX: &str = "use s, m, h, d or a period such as 10s (ms for milliseconds)";

/// A quota string, parsed and checked (`Quota::validate`).
pub(crate) fn quota(text: &str) -> Result<Quota, Bad> {
    let parsed = text.parse::<Quota>().map_err(|e| quota_error(text, &e))?;
    parsed.validate().map_err(|e| quota_error(text, &e))?;
    Ok(parsed)
}

fn quota_error(text: &str, error: &QuotaError) -> Bad {
    let example = "write N/period: \"100/m\", \"5/30s\", \"10/s burst 20\"";
    match error {
        QuotaError::Parse { part, why, .. } => match *why {
            "unknown period unit" => bad(format!("{text:?}: unknown unit {part:?}"), UNITS_FIX),
            "the period has no unit" => bad(format!("{text:?}: the period has no unit"), UNITS_FIX),
            "missing '/' between the count and the period" => bad(
                format!("{text:?}: no '/' between the count and the period"),
                example,
            ),
            "the count is not a whole number" => bad(
                format!("{text:?}: the count {part:?} is not a whole number"),
                example,
            ),
            "the burst is not a whole number" => bad(
                format!("{text:?}: the burst {part:?} is not a whole number"),
                "write the burst as a whole number: \"10/s burst 20\"",
            ),
            why => bad(
                format!("{text:?}: {why} (at {part:?})"),
                format!("accepted forms: {QUOTA_FORMS}"),
            ),
        },
        QuotaError::ZeroLimit => bad(
            format!("{text:?}: a limit of zero denies every request"),
            "give a limit of at least 1, or block clients with access.deny",
        ),
        QuotaError::ZeroBurst => bad(
            format!("{text:?}: a burst of zero denies every request"),
            "give a burst of at least 1, or leave it out",
        ),
        QuotaError::PeriodTooShort(_) => bad(
            format!("{text:?}: the period is shorter than 1 ms"),
            "use a period of at least 1ms",
        ),
        QuotaError::PeriodTooLong(_) => bad(
            format!("{text:?}: the period is longer than 366 days"),
            "use a period of at most 366d (was a count of milliseconds written as seconds?)",
        ),
        QuotaError::RateTooHigh { .. } => bad(
            format!("{text:?}: more than one request per nanosecond"),
            "lower the limit or lengthen the period",
        ),
        QuotaError::BurstTooLarge { burst } => bad(
            format!("{text:?}: a burst of {burst} takes more than 366 days to refill"),
            "lower the burst or raise the rate",
        ),
    }
}

/// The algorithm names, in the order of [`Algorithm`].
pub(crate) const ALGORITHMS: &[&str] = &[
    "gcra",
    "token_bucket",
    "leaky_bucket",
    "leaky_bucket_queue",
    "fixed_window",
    "fixed_window_staggered",
    "sliding_window",
    "sliding_window_log",
];

/// An algorithm by name; `leaky_bucket_queue` takes `max_delay`.
pub(crate) fn algorithm(name: &str, max_delay: Option<Duration>) -> Option<Algorithm> {
    Some(match name {
        "gcra" => Algorithm::Gcra,
        "token_bucket" => Algorithm::TokenBucket,
        "leaky_bucket" => Algorithm::LeakyBucket,
        "leaky_bucket_queue" => Algorithm::LeakyBucketQueue {
            max_delay: max_delay.unwrap_or_default(),
        },
        "fixed_window" => Algorithm::FixedWindow,
        "fixed_window_staggered" => Algorithm::FixedWindowStaggered,
        "sliding_window" => Algorithm::SlidingWindow,
        "sliding_window_log" => Algorithm::SlidingWindowLog,
        _ => return None,
    })
}

/// A duration: a whole number and a unit, `ms`, `s`, `m`, `h` or `d`
/// (`"250ms"`, `"30s"`, `"5m"`).
pub(crate) fn duration(text: &str) -> Result<Duration, Bad> {
    let fix = "write a whole number and a unit: \"250ms\", \"30s\", \"5m\", \"1h\", \"1d\"";
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(split);
    if digits.is_empty() {
        return Err(bad(format!("{text:?} is not a duration"), fix));
    }
    let n: u64 = digits
        .parse()
        .map_err(|_| bad(format!("{text:?} is too long a duration"), fix))?;
    let per: u64 = match unit.trim() {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "" => return Err(bad(format!("{text:?} has no unit"), fix)),
        other => return Err(bad(format!("{text:?}: unknown unit {other:?}"), fix)),
    };
    let ms = n
        .checked_mul(per)
        .filter(|&ms| ms <= 366 * 86_400_000)
        .ok_or_else(|| bad(format!("{text:?} is longer than 366 days"), fix))?;
    Ok(Duration::from_millis(ms))
}

/// A CIDR range, or an address as a range of one.
pub(crate) fn net(text: &str) -> Result<IpNet, Bad> {
    let trimmed = text.trim();
    trimmed
        .parse::<IpNet>()
        .or_else(|_| trimmed.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| {
            bad(
                format!("{text:?} is not an address range"),
                "write a CIDR range such as \"10.0.0.0/8\" or \"2001:db8::/32\", or one address",
            )
        })
}

/// Whether a range holds every address of its family.
pub(crate) fn is_everything(net: &IpNet) -> bool {
    net.prefix_len() == 0
}

/// An RFC 3339 instant: `2026-12-31T23:59:59Z`, fractions of a second and
/// offsets (`+02:00`) allowed.
pub(crate) fn instant(text: &str) -> Result<SystemTime, Bad> {
    let fail = || {
        bad(
            format!("{text:?} is not an RFC 3339 instant"),
            "write it as \"2026-12-31T23:59:59Z\" (UTC) or with an offset, \"2026-12-31T23:59:59+01:00\"",
        )
    };
    let b = text.trim().as_bytes();
    if b.len() < 20 {
        return Err(fail());
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(range)?;
        if part.iter().all(u8::is_ascii_digit) {
            std::str::from_utf8(part).ok()?.parse().ok()
        } else {
            None
        }
    };
    let sep_ok = b[4] == b'-'
        && b[7] == b'-'
        && matches!(b[10], b'T' | b't' | b' ')
        && b[13] == b':'
        && b[16] == b':';
    let (Some(year), Some(month), Some(day), Some(hour), Some(minute), Some(second)) = (
        num(0..4),
        num(5..7),
        num(8..10),
        num(11..13),
        num(14..16),
        num(17..19),
    ) else {
        return Err(fail());
    };
    if !sep_ok || !(1..=12).contains(&month) || hour > 23 || minute > 59 || second > 60 {
        return Err(fail());
    }
    let days_in_month = match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if !(1..=days_in_month).contains(&day) {
        return Err(fail());
    }
    let mut rest = &b[19..];
    let mut nanos: u32 = 0;
    if rest.first() == Some(&b'.') {
        let digits = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return Err(fail());
        }
        for (i, d) in rest[1..=digits].iter().enumerate() {
            if i < 9 {
                nanos += u32::from(d - b'0') * 10u32.pow(8 - i as u32);
            }
        }
        rest = &rest[1 + digits..];
    }
    let offset_secs: i64 = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let digits = [h1, h2, m1, m2];
            if !digits.iter().all(|d| d.is_ascii_digit()) {
                return Err(fail());
            }
            let h = i64::from((h1 - b'0') * 10 + (h2 - b'0'));
            let m = i64::from((m1 - b'0') * 10 + (m2 - b'0'));
            if h > 23 || m > 59 {
                return Err(fail());
            }
            let s = h * 3600 + m * 60;
            if *sign == b'+' {
                s
            } else {
                -s
            }
        }
        _ => return Err(fail()),
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second.min(59) - offset_secs;
    let secs = u64::try_from(secs).map_err(|_| {
        bad(
            format!("{text:?} is before 1970"),
            "give an instant in the future",
        )
    })?;
    Ok(UNIX_EPOCH + Duration::new(secs, nanos))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard
/// Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// What a Redis URL says: whether it asks for TLS.
pub(crate) struct RedisUrl {
    pub(crate) tls: bool,
}

/// Checks a Redis URL's form (the server is not contacted):
/// `redis://[user:password@]host[:port][/db]`, `rediss://…` (TLS),
/// `unix:///path` or `redis+unix:///path`.
pub(crate) fn redis_url(text: &str) -> Result<RedisUrl, Bad> {
    let form = "write redis://[user:password@]host[:port][/db], rediss://… for TLS, or unix:///path/to/redis.sock";
    let Some((scheme, rest)) = text.split_once("://") else {
        return Err(bad(format!("{text:?} is not a URL"), form));
    };
    let tls = match scheme {
        "redis" => false,
        "rediss" => true,
        "unix" | "redis+unix" => {
            if rest.is_empty() || !rest.starts_with('/') {
                return Err(bad(
                    format!("{text:?}: a unix socket URL needs an absolute path"),
                    form,
                ));
            }
            return Ok(RedisUrl { tls: false });
        }
        other => return Err(bad(format!("{text:?}: unknown scheme {other:?}"), form)),
    };
    let rest = rest.split('#').next().unwrap_or_default();
    let (authority, db) = match rest.split_once('/') {
        Some((authority, db)) => (authority, db),
        None => (rest, ""),
    };
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = if let Some(v6) = host_port.strip_prefix('[') {
        match v6.split_once(']') {
            Some((host, rest)) => (host, rest.strip_prefix(':')),
            None => {
                return Err(bad(
                    format!("{text:?}: an IPv6 host needs a closing ']'"),
                    form,
                ))
            }
        }
    } else {
        match host_port.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        }
    };
    if host.is_empty() {
        return Err(bad(format!("{text:?} has no host"), form));
    }
    if let Some(port) = port {
        if port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(bad(
                format!("{text:?}: the port {port:?} is not a port number"),
                form,
            ));
        }
    }
    let db = db.split('?').next().unwrap_or_default();
    if !db.is_empty() && db.parse::<u32>().is_err() {
        return Err(bad(
            format!("{text:?}: the database {db:?} is not a number"),
            "give the database as a number after the host: redis://host:6379/0",
        ));
    }
    Ok(RedisUrl { tls })
}

/// `"HH:MM"` from `00:00` to `24:00`.
pub(crate) fn clock_time(text: &str) -> Result<(), Bad> {
    let fail = || {
        bad(
            format!("{text:?} is not a time of day"),
            "write HH:MM from 00:00 to 24:00, e.g. \"09:30\"",
        )
    };
    let (h, m) = text.split_once(':').ok_or_else(fail)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(fail());
    }
    let (h, m): (u32, u32) = (
        h.parse().map_err(|_| fail())?,
        m.parse().map_err(|_| fail())?,
    );
    if m > 59 || h > 24 || (h == 24 && m != 0) {
        return Err(fail());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_messages_name_the_bad_part_and_the_fix() {
        let e = quota("10/x").unwrap_err();
        assert_eq!(e.message, "\"10/x\": unknown unit \"x\"");
        assert_eq!(e.fix, UNITS_FIX);
        assert!(quota("0/s").unwrap_err().message.contains("zero"));
        assert_eq!(quota("5/30s"), Ok(Quota::new(5, Duration::from_secs(30))));
    }

    #[test]
    fn durations_take_a_unit() {
        assert_eq!(duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(duration("5m"), Ok(Duration::from_secs(300)));
        assert!(duration("5").is_err());
        assert!(duration("5 weeks").is_err());
        assert!(duration("99999999999999999999s").is_err());
        assert!(duration("").is_err());
    }

    #[test]
    fn instants_are_rfc_3339() {
        let at = |t: &str| {
            instant(t).map(|s| {
                s.duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0)
            })
        };
        assert_eq!(at("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(at("2026-12-31T23:59:59Z"), Ok(1_798_761_599));
        assert_eq!(at("2026-12-31T23:59:59.5+01:00"), Ok(1_798_757_999));
        assert_eq!(at("2024-02-29T00:00:00Z"), Ok(1_709_164_800));
        for bad in [
            "2025-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "tomorrow",
            "2026-12-31",
            "2026-12-31T23:59:59",
            "1969-12-31T23:59:59Z",
            "2026-12-31T23:59:59+1:00",
        ] {
            assert!(instant(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn redis_urls_are_checked_without_connecting() {
        for good in [
            "redis://127.0.0.1/",
            "redis://h:6379/0",
            "redis://:pw@h",
            "redis://u:p@[::1]:6380/2",
            "rediss://h/#insecure",
            "unix:///tmp/r.sock",
        ] {
            assert!(redis_url(good).is_ok(), "{good}");
        }
        assert!(redis_url("rediss://h").map(|u| u.tls).unwrap_or(false));
        for bad in [
            "127.0.0.1:6379",
            "http://h/",
            "redis://",
            "redis://h:port",
            "redis://h:99999",
            "redis://h/x",
            "unix://rel",
        ] {
            assert!(redis_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ranges_accept_addresses() {
        assert_eq!(net("10.0.0.1").map(|n| n.prefix_len()), Ok(32));
        assert!(net("10.0.0.0/33").is_err());
        assert!(is_everything(
            &net("::/0").unwrap_or_else(|e| panic!("{e:?}"))
        ));
    }
}
