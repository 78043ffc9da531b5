//! Parsing of the forwarding headers: `X-Forwarded-For`, RFC 7239
//! `Forwarded`, and single-value headers such as `X-Real-IP`.
//!
//! Lists are read **last hop first** (the rightmost element of the last
//! line), because only the right end was written by proxies the server
//! trusts; whatever a client sent sits on the left and is never parsed
//! unless the walk legitimately reaches it. Parsing works on the raw bytes
//! (a non-UTF-8 byte only spoils the element it is in), never allocates,
//! and is bounded: at most [`MAX_HOPS`] elements are examined, an
//! `X-Forwarded-For` element longer than [`MAX_NODE_LEN`] bytes or a
//! `Forwarded` element longer than [`MAX_ELEMENT_LEN`] bytes is not an
//! address and ends the walk without being scanned further.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str;

use http::header::{HeaderMap, HeaderName, HeaderValue, ValueIter};

/// At most this many list elements are examined per request.
pub(crate) const MAX_HOPS: usize = 64;

/// The longest `X-Forwarded-For` element or `Forwarded` node value, in
/// bytes (`[ffff:…:255.255.255.255]:65535` is 53).
pub(crate) const MAX_NODE_LEN: usize = 64;

/// The longest `Forwarded` element (`for=…;by=…;host=…;proto=…`), in bytes.
pub(crate) const MAX_ELEMENT_LEN: usize = 512;

/// How a list header is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Syntax {
    /// `X-Forwarded-For: client, proxy1, proxy2`.
    XForwardedFor,
    /// RFC 7239: `Forwarded: for=client;proto=https, for="[2001:db8::1]:80"`.
    Forwarded,
}

/// One element of a list header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hop {
    /// An address.
    Addr(IpAddr),
    /// An empty list element (`a,,b`, a blank line): ignored, as RFC 9110
    /// asks of list recipients.
    Empty,
    /// Anything else: garbage, non-UTF-8, too long, `unknown`, an
    /// obfuscated `_name`, a `Forwarded` element without `for`. The walk
    /// cannot see past it.
    Invalid,
}

/// The elements of a list header, last first, across all its lines (the
/// last line first).
pub(crate) struct Hops<'a> {
    lines: std::iter::Rev<ValueIter<'a, HeaderValue>>,
    /// What is left of the current line, left of the elements yielded.
    rest: Option<&'a [u8]>,
    syntax: Syntax,
    done: bool,
}

/// The elements of the `name` list header, last first; `None` when the
/// request has no such header.
pub(crate) fn hops<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
    syntax: Syntax,
) -> Option<Hops<'a>> {
    let mut lines = headers.get_all(name).iter().rev();
    let last = lines.next()?;
    Some(Hops {
        lines,
        rest: Some(last.as_bytes()),
        syntax,
        done: false,
    })
}

impl Iterator for Hops<'_> {
    type Item = Hop;

    fn next(&mut self) -> Option<Hop> {
        if self.done {
            return None;
        }
        let line = match self.rest.take() {
            Some(line) => line,
            None => self.lines.next()?.as_bytes(),
        };
        let (quotes, max) = match self.syntax {
            Syntax::XForwardedFor => (false, MAX_NODE_LEN),
            Syntax::Forwarded => (true, MAX_ELEMENT_LEN),
        };
        match split_last(line, quotes, max) {
            Some((rest, element)) => {
                self.rest = rest;
                Some(match self.syntax {
                    Syntax::XForwardedFor => xff_element(element),
                    Syntax::Forwarded => forwarded_element(element),
                })
            }
            None => {
                self.done = true;
                Some(Hop::Invalid)
            }
        }
    }
}

/// Splits the last comma-separated element off `line`: `(what is left of
/// it, if anything, the element)`. `None` when the element is longer than
/// `max` (found after scanning at most `max + 1` bytes) or, with `quotes`,
/// has an unbalanced quoted-string.
fn split_last(line: &[u8], quotes: bool, max: usize) -> Option<(Option<&[u8]>, &[u8])> {
    let end = line.len();
    let mut i = end;
    let mut in_quote = false;
    while i > 0 {
        i -= 1;
        let b = line[i];
        if in_quote {
            // Scanning backwards, a quote ends the quoted-string unless an
            // odd run of backslashes escapes it.
            if b == b'"' && backslashes_before(line, i, max) % 2 == 0 {
                in_quote = false;
            }
        } else if b == b',' {
            return Some((Some(&line[..i]), &line[i + 1..]));
        } else if quotes && b == b'"' {
            in_quote = true;
        }
        if end - i > max {
            return None;
        }
    }
    if in_quote {
        return None;
    }
    Some((None, line))
}

/// How many backslashes precede `line[i]` (counting stops past `max`).
fn backslashes_before(line: &[u8], i: usize, max: usize) -> usize {
    line[..i]
        .iter()
        .rev()
        .take(max + 1)
        .take_while(|&&b| b == b'\\')
        .count()
}

/// Optional whitespace (RFC 9110 OWS: spaces and tabs) trimmed off both
/// ends.
fn trim_ows(s: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = s.iter().position(|b| !is_ows(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|b| !is_ows(b)).map_or(start, |e| e + 1);
    &s[start..end]
}

fn xff_element(element: &[u8]) -> Hop {
    let node = trim_ows(element);
    if node.is_empty() {
        return Hop::Empty;
    }
    match parse_node(node, Syntax::XForwardedFor) {
        Some(ip) => Hop::Addr(ip),
        None => Hop::Invalid,
    }
}

/// A `Forwarded` element: `;`-separated `name=value` pairs, one of which
/// must be a single `for` (the name is case-insensitive).
fn forwarded_element(element: &[u8]) -> Hop {
    let element = trim_ows(element);
    if element.is_empty() {
        return Hop::Empty;
    }
    let mut found: Option<&[u8]> = None;
    let mut pos = 0;
    while pos <= element.len() {
        let start = pos;
        let mut j = pos;
        let mut in_quote = false;
        while j < element.len() {
            let b = element[j];
            if in_quote {
                if b == b'\\' {
                    j += 2;
                    continue;
                }
                if b == b'"' {
                    in_quote = false;
                }
            } else if b == b'"' {
                in_quote = true;
            } else if b == b';' {
                break;
            }
            j += 1;
        }
        if in_quote || j > element.len() {
            return Hop::Invalid;
        }
        let pair = trim_ows(&element[start..j]);
        if !pair.is_empty() {
            let Some(eq) = pair.iter().position(|&b| b == b'=') else {
                return Hop::Invalid;
            };
            if trim_ows(&pair[..eq]).eq_ignore_ascii_case(b"for") {
                if found.is_some() {
                    // "Each parameter MUST NOT occur more than once per
                    // forwarded-element" (RFC 7239, section 4).
                    return Hop::Invalid;
                }
                found = Some(trim_ows(&pair[eq + 1..]));
            }
        }
        pos = j + 1;
    }
    let Some(value) = found else {
        return Hop::Invalid;
    };
    let mut buf = [0u8; MAX_NODE_LEN];
    let node = match value.first() {
        Some(b'"') => match unquote(value, &mut buf) {
            Some(node) => node,
            None => return Hop::Invalid,
        },
        _ => value,
    };
    match parse_node(node, Syntax::Forwarded) {
        Some(ip) => Hop::Addr(ip),
        None => Hop::Invalid,
    }
}

/// The content of a quoted-string, escapes resolved, copied into `buf`;
/// `None` when malformed or longer than `buf`.
fn unquote<'b>(quoted: &[u8], buf: &'b mut [u8; MAX_NODE_LEN]) -> Option<&'b [u8]> {
    let inner = quoted.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
    let mut len = 0;
    let mut bytes = inner.iter();
    while let Some(&b) = bytes.next() {
        let b = match b {
            b'\\' => *bytes.next()?,
            b'"' => return None,
            b => b,
        };
        *buf.get_mut(len)? = b;
        len += 1;
    }
    Some(&buf[..len])
}

/// A node: `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]`,
/// `[2001:db8::1]:443`. In `Forwarded`, the port may be obfuscated
/// (`_abc`); `unknown` and `_obfuscated` names are not addresses.
fn parse_node(node: &[u8], syntax: Syntax) -> Option<IpAddr> {
    if node.is_empty() || node.len() > MAX_NODE_LEN {
        return None;
    }
    let node = str::from_utf8(node).ok()?;
    if let Some(inner) = node.strip_prefix('[') {
        let (addr, rest) = inner.split_once(']')?;
        let ip: Ipv6Addr = addr.parse().ok()?;
        return (rest.is_empty() || port_ok(rest.strip_prefix(':')?, syntax))
            .then_some(IpAddr::V6(ip));
    }
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip);
    }
    let (host, port) = node.split_once(':')?;
    let ip: Ipv4Addr = host.parse().ok()?;
    port_ok(port, syntax).then_some(IpAddr::V4(ip))
}

/// 1 to 5 digits; in `Forwarded` also an obfuscated port
/// (`"_" 1*(ALPHA / DIGIT / "." / "_" / "-")`).
fn port_ok(port: &str, syntax: Syntax) -> bool {
    let digits = !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit());
    let obfuscated = syntax == Syntax::Forwarded
        && port.len() > 1
        && port.starts_with('_')
        && port
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    digits || obfuscated
}

/// What a single-value header (`X-Real-IP`, `CF-Connecting-IP`…) holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Single {
    /// One address (a port is allowed and ignored).
    Addr(IpAddr),
    /// A comma-separated list: the header was combined from several, so a
    /// proxy appended to a client's value instead of replacing it.
    List,
    /// Anything else.
    Invalid,
}

/// Parses the value of a single-value header.
pub(crate) fn single(value: &[u8]) -> Single {
    if value.contains(&b',') {
        return Single::List;
    }
    match parse_node(trim_ows(value), Syntax::XForwardedFor) {
        Some(ip) => Single::Addr(ip),
        None => Single::Invalid,
    }
}

/// The client: walking `hops` from the right, the first address that is
/// not `trusted`. When the walk ends without one (the list runs out, an
/// element is not an address, or [`MAX_HOPS`] elements were examined), the
/// last trusted address it reached: the leftmost trusted entry, or `peer`
/// when the walk reached none. An address is never taken from the left of
/// an element the walk could not read.
pub(crate) fn walk(
    hops: impl Iterator<Item = Hop>,
    peer: IpAddr,
    trusted: impl Fn(IpAddr) -> bool,
) -> IpAddr {
    let mut last = peer;
    for hop in hops.take(MAX_HOPS) {
        match hop {
            Hop::Empty => {}
            Hop::Addr(ip) => {
                let ip = ip.to_canonical();
                if !trusted(ip) {
                    return ip;
                }
                last = ip;
            }
            Hop::Invalid => break,
        }
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn map(lines: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for l in lines {
            h.append("x-forwarded-for", HeaderValue::from_bytes(l).unwrap());
            h.append("forwarded", HeaderValue::from_bytes(l).unwrap());
        }
        h
    }

    fn xff(lines: &[&[u8]]) -> Vec<Hop> {
        let h = map(lines);
        hops(
            &h,
            &HeaderName::from_static("x-forwarded-for"),
            Syntax::XForwardedFor,
        )
        .map(|h| h.collect())
        .unwrap_or_default()
    }

    fn fwd(lines: &[&[u8]]) -> Vec<Hop> {
        let h = map(lines);
        hops(&h, &http::header::FORWARDED, Syntax::Forwarded)
            .map(|h| h.collect())
            .unwrap_or_default()
    }

    #[test]
    fn xff_elements_come_last_first_across_lines() {
        assert_eq!(
            xff(&[b"1.1.1.1, 2.2.2.2", b"3.3.3.3,4.4.4.4"]),
            [
                Hop::Addr(ip("4.4.4.4")),
                Hop::Addr(ip("3.3.3.3")),
                Hop::Addr(ip("2.2.2.2")),
                Hop::Addr(ip("1.1.1.1")),
            ]
        );
    }

    #[test]
    fn xff_accepts_ports_brackets_and_whitespace() {
        assert_eq!(
            xff(&[b" 1.2.3.4:80 ,\t[2001:db8::1]:443 , [2001:db8::2], 2001:db8::3 "]),
            [
                Hop::Addr(ip("2001:db8::3")),
                Hop::Addr(ip("2001:db8::2")),
                Hop::Addr(ip("2001:db8::1")),
                Hop::Addr(ip("1.2.3.4")),
            ]
        );
    }

    #[test]
    fn xff_empty_elements_are_empty_hops_and_garbage_is_invalid() {
        assert_eq!(
            xff(&[b"nope,, 1.2.3.4:port, 1.2.3.4:123456, [::1]x, unknown"]),
            [
                Hop::Invalid,
                Hop::Invalid,
                Hop::Invalid,
                Hop::Invalid,
                Hop::Empty,
                Hop::Invalid,
            ]
        );
        assert_eq!(xff(&[b""]), [Hop::Empty]);
        assert!(xff(&[]).is_empty());
    }

    #[test]
    fn an_overlong_element_ends_the_list_without_scanning_it() {
        let mut line = vec![b'1'; 100_000];
        line.extend_from_slice(b", 5.6.7.8");
        assert_eq!(xff(&[&line]), [Hop::Addr(ip("5.6.7.8")), Hop::Invalid]);
    }

    #[test]
    fn non_utf8_only_spoils_its_own_element() {
        assert_eq!(
            xff(&[b"1.1.1.1, \xff\xfe, 2.2.2.2"]),
            [
                Hop::Addr(ip("2.2.2.2")),
                Hop::Invalid,
                Hop::Addr(ip("1.1.1.1"))
            ]
        );
    }

    #[test]
    fn forwarded_reads_for_in_any_case_quoted_or_not() {
        assert_eq!(
            fwd(&[
                b"for=192.0.2.60;proto=http;by=203.0.113.43",
                b"FOR=\"[2001:db8:cafe::17]:4711\", proto=https;For=198.51.100.17:8080",
            ]),
            [
                Hop::Addr(ip("198.51.100.17")),
                Hop::Addr(ip("2001:db8:cafe::17")),
                Hop::Addr(ip("192.0.2.60")),
            ]
        );
    }

    #[test]
    fn forwarded_unknown_obfuscated_and_for_less_elements_are_not_addresses() {
        assert_eq!(
            fwd(&[b"for=unknown, for=\"_hidden\", for=_SEVKISEK, proto=https, for=\"192.0.2.1:_port\""]),
            [
                Hop::Addr(ip("192.0.2.1")),
                Hop::Invalid,
                Hop::Invalid,
                Hop::Invalid,
                Hop::Invalid,
            ]
        );
    }

    #[test]
    fn forwarded_quoted_commas_and_semicolons_stay_in_their_element() {
        assert_eq!(
            fwd(&[b"for=1.1.1.1;host=\"a,b;c\\\"d\", for=2.2.2.2"]),
            [Hop::Addr(ip("2.2.2.2")), Hop::Addr(ip("1.1.1.1"))]
        );
    }

    #[test]
    fn forwarded_malformed_elements_are_invalid() {
        for bad in [
            &b"for=1.1.1.1;for=2.2.2.2"[..],
            b"for=\"1.1.1.1",
            b"for",
            b"for=",
            b"for=\"\"",
            b"for=\"[2001:db8::1\"",
            b"for=1.1.1.1:abc",
        ] {
            assert_eq!(
                fwd(&[bad]),
                [Hop::Invalid],
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn forwarded_escaped_quotes_do_not_end_a_quoted_string() {
        // The client's unterminated string on the left does not swallow the
        // proxy's element on the right.
        assert_eq!(
            fwd(&[b"for=\"1.1.1.1, for=9.9.9.9"]),
            [Hop::Addr(ip("9.9.9.9")), Hop::Invalid]
        );
        assert_eq!(
            fwd(&[br#"for="\[2001:db8::1\]""#]),
            [Hop::Addr(ip("2001:db8::1"))]
        );
    }

    #[test]
    fn a_single_value_is_one_address_a_list_or_invalid() {
        assert_eq!(single(b" 203.0.113.9 "), Single::Addr(ip("203.0.113.9")));
        assert_eq!(single(b"[2001:db8::1]:80"), Single::Addr(ip("2001:db8::1")));
        assert_eq!(single(b"1.1.1.1, 2.2.2.2"), Single::List);
        assert_eq!(single(b"nope"), Single::Invalid);
        assert_eq!(single(b"\xff"), Single::Invalid);
    }

    #[test]
    fn walk_returns_first_untrusted_from_the_right() {
        let trusted = |a: IpAddr| a.to_string().starts_with("10.");
        let peer = ip("10.0.0.1");
        let hops = [
            Hop::Addr(ip("10.0.0.2")),
            Hop::Addr(ip("203.0.113.7")),
            Hop::Addr(ip("1.2.3.4")),
        ];
        assert_eq!(walk(hops.into_iter(), peer, trusted), ip("203.0.113.7"));
        let all_trusted = [
            Hop::Addr(ip("10.0.0.2")),
            Hop::Empty,
            Hop::Addr(ip("10.0.0.3")),
        ];
        assert_eq!(walk(all_trusted.into_iter(), peer, trusted), ip("10.0.0.3"));
        let garbage = [
            Hop::Addr(ip("10.0.0.2")),
            Hop::Invalid,
            Hop::Addr(ip("1.2.3.4")),
        ];
        assert_eq!(walk(garbage.into_iter(), peer, trusted), ip("10.0.0.2"));
        assert_eq!(walk([Hop::Invalid].into_iter(), peer, trusted), peer);
        let mapped = [
            Hop::Addr(ip("::ffff:10.0.0.9")),
            Hop::Addr(ip("::ffff:203.0.113.7")),
        ];
        assert_eq!(walk(mapped.into_iter(), peer, trusted), ip("203.0.113.7"));
    }

    #[test]
    fn walk_stops_after_max_hops() {
        let trusted = |a: IpAddr| a.is_loopback();
        let peer = ip("127.0.0.1");
        let hops = std::iter::repeat_n(Hop::Addr(ip("127.0.0.2")), MAX_HOPS)
            .chain(std::iter::once(Hop::Addr(ip("1.2.3.4"))));
        assert_eq!(walk(hops, peer, trusted), ip("127.0.0.2"));
        let empties = std::iter::repeat_n(Hop::Empty, MAX_HOPS)
            .chain(std::iter::once(Hop::Addr(ip("1.2.3.4"))));
        assert_eq!(walk(empties, peer, trusted), peer);
    }
}
