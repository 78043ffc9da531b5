//! The route table: which levels (groups, a route) and exemptions apply to
//! a method and path, found by a walk of a segment trie (the cost depends
//! on the path's depth, not on how many routes there are).
//!
//! Patterns follow axum's: `/users/{id}` (a parameter matches one
//! non-empty segment), `/files/{*path}` (a wildcard matches one or more
//! segments). A group pattern is a prefix: `/api/*` (also `/api/{*rest}`
//! or plain `/api`) matches `/api` itself and every path below it, never
//! `/apix`. A pattern may start with a method, `GET /api/search`; a `GET`
//! pattern also matches `HEAD`, as axum's `get` does. Paths are compared
//! as they arrive, without decoding or collapsing slashes, the way axum
//! routes them.

use std::collections::HashMap;

use http::Method;

/// Why a route pattern cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PatternError {
    /// Patterns are paths starting with `/`, optionally after a method.
    #[error("route pattern {0:?} must be a path starting with '/', optionally after a method (\"GET /api/search\")")]
    NotAPath(String),
    /// The method is not a valid HTTP method token.
    #[error("route pattern {0:?}: invalid method")]
    BadMethod(String),
    /// A wildcard must be the last segment.
    #[error("route pattern {0:?}: a wildcard ('*' or '{{*name}}') can only be the last segment")]
    WildcardNotLast(String),
    /// A segment mixes a parameter with text (`/a{id}`), which axum does
    /// not route either.
    #[error("route pattern {0:?}: a parameter must be a whole segment (\"/users/{{id}}\")")]
    PartialParameter(String),
}

/// A parsed pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pattern {
    pub(crate) method: Option<Method>,
    pub(crate) segments: Vec<Segment>,
    /// Ends in a wildcard.
    pub(crate) wildcard: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    Static(Box<str>),
    Param,
}

impl Pattern {
    pub(crate) fn parse(text: &str) -> Result<Pattern, PatternError> {
        let trimmed = text.trim();
        let (method, path) = match trimmed.split_once(' ') {
            Some((m, p)) => {
                let method = Method::from_bytes(m.as_bytes())
                    .map_err(|_| PatternError::BadMethod(text.to_owned()))?;
                (Some(method), p.trim())
            }
            None => (None, trimmed),
        };
        let Some(rest) = path.strip_prefix('/') else {
            return Err(PatternError::NotAPath(text.to_owned()));
        };
        let raw: Vec<&str> = rest.split('/').collect();
        let mut segments = Vec::with_capacity(raw.len());
        let mut wildcard = false;
        for (i, seg) in raw.iter().enumerate() {
            let is_wild = *seg == "*" || (seg.starts_with("{*") && seg.ends_with('}'));
            if is_wild {
                if i + 1 != raw.len() {
                    return Err(PatternError::WildcardNotLast(text.to_owned()));
                }
                wildcard = true;
            } else if seg.starts_with('{') && seg.ends_with('}') && seg.len() > 2 {
                segments.push(Segment::Param);
            } else if seg.contains('{') || seg.contains('}') || seg.contains('*') {
                return Err(PatternError::PartialParameter(text.to_owned()));
            } else {
                segments.push(Segment::Static((*seg).into()));
            }
        }
        Ok(Pattern {
            method,
            segments,
            wildcard,
        })
    }

    /// As a group: a prefix, with or without the trailing `/*`. A bare `/`
    /// (or `/*`) is every path.
    pub(crate) fn parse_group(text: &str) -> Result<Pattern, PatternError> {
        let mut p = Pattern::parse(text)?;
        if !p.wildcard && p.segments.last() == Some(&Segment::Static("".into())) {
            p.segments.pop();
        }
        p.wildcard = true;
        Ok(p)
    }
}

/// What a table holds at a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A group (prefix) level.
    Group,
    /// A route level.
    Route,
    /// No limits at all.
    Exempt,
}

#[derive(Debug, Clone)]
struct Entry {
    method: Option<Method>,
    kind: Kind,
    /// The level's index (unused for exemptions).
    level: usize,
}

#[derive(Debug, Default)]
struct Node {
    statics: HashMap<Box<str>, Node>,
    param: Option<Box<Node>>,
    /// Entries whose path ends exactly here.
    exact: Vec<Entry>,
    /// Entries ending in a wildcard here: groups match this node and
    /// below, routes and exemptions one or more segments below.
    prefix: Vec<Entry>,
}

/// The levels and exemptions a request matches.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Matched {
    /// Group levels, outermost first.
    pub(crate) groups: smallvec::SmallVec<[usize; 4]>,
    /// The most specific matching route, if any.
    pub(crate) route: Option<usize>,
    /// The request is not limited at all.
    pub(crate) exempt: bool,
}

/// Groups, routes and exemptions by pattern.
#[derive(Debug, Default)]
pub(crate) struct RouteTable {
    root: Node,
    len: usize,
}

impl RouteTable {
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn add_group(&mut self, pattern: &Pattern, level: usize) {
        self.insert(pattern, Kind::Group, level);
    }

    pub(crate) fn add_route(&mut self, pattern: &Pattern, level: usize) {
        self.insert(pattern, Kind::Route, level);
    }

    pub(crate) fn add_exempt(&mut self, pattern: &Pattern) {
        self.insert(pattern, Kind::Exempt, usize::MAX);
    }

    fn insert(&mut self, pattern: &Pattern, kind: Kind, level: usize) {
        let mut node = &mut self.root;
        for seg in &pattern.segments {
            node = match seg {
                Segment::Static(s) => node.statics.entry(s.clone()).or_default(),
                Segment::Param => node.param.get_or_insert_with(Box::default),
            };
        }
        let entry = Entry {
            method: pattern.method.clone(),
            kind,
            level,
        };
        // Method-specific entries first: they win over any-method ones.
        let list = if pattern.wildcard {
            &mut node.prefix
        } else {
            &mut node.exact
        };
        if entry.method.is_some() {
            list.insert(0, entry);
        } else {
            list.push(entry);
        }
        self.len += 1;
    }

    /// The levels for `method` and `path`.
    pub(crate) fn lookup(&self, method: &Method, path: &str) -> Matched {
        let mut out = Matched::default();
        if self.len == 0 {
            return out;
        }
        let rest = path.strip_prefix('/').unwrap_or(path);
        let mut groups: smallvec::SmallVec<[(usize, usize); 4]> = smallvec::SmallVec::new();
        walk(&self.root, Some(rest), 0, method, &mut groups, &mut out);
        // Outermost (shortest prefix) first; the walk may meet them out of
        // order when parameters branch.
        groups.sort_by_key(|(depth, _)| *depth);
        out.groups = groups.into_iter().map(|(_, level)| level).collect();
        out
    }
}

fn method_matches(entry: &Option<Method>, method: &Method) -> bool {
    match entry {
        None => true,
        Some(m) => m == method || (*m == Method::GET && *method == Method::HEAD),
    }
}

/// Visits the nodes the path reaches; `rest` is what follows the node's
/// segments (`None`: the path ends here; `Some("")`: one empty segment, as
/// in `/api/`). Statics are tried before parameters, so the first route
/// found is the most specific, as axum picks it.
fn walk(
    node: &Node,
    rest: Option<&str>,
    depth: usize,
    method: &Method,
    groups: &mut smallvec::SmallVec<[(usize, usize); 4]>,
    out: &mut Matched,
) {
    for e in &node.prefix {
        if e.kind == Kind::Group && method_matches(&e.method, method) {
            groups.push((depth, e.level));
        }
    }
    let Some(rest) = rest else {
        visit_end(node, method, out);
        return;
    };
    let (head, tail) = match rest.split_once('/') {
        Some((head, tail)) => (head, Some(tail)),
        None => (rest, None),
    };
    if let Some(child) = node.statics.get(head) {
        walk(child, tail, depth + 1, method, groups, out);
    }
    if !head.is_empty() {
        if let Some(child) = &node.param {
            walk(child, tail, depth + 1, method, groups, out);
        }
    }
    if rest.is_empty() {
        return;
    }
    // One or more segments below this node: wildcard routes and
    // exemptions, less specific than anything found deeper.
    apply(&node.prefix, method, out);
}

/// The path ends at `node`: its exact entries apply.
fn visit_end(node: &Node, method: &Method, out: &mut Matched) {
    apply(&node.exact, method, out);
}

/// Routes and exemptions among `entries` that match `method`: the first
/// route found is kept (the most specific), any exemption exempts.
fn apply(entries: &[Entry], method: &Method, out: &mut Matched) {
    for e in entries {
        if !method_matches(&e.method, method) {
            continue;
        }
        match e.kind {
            Kind::Exempt => out.exempt = true,
            Kind::Route if out.route.is_none() => out.route = Some(e.level),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(entries: &[(&str, char)]) -> RouteTable {
        let mut t = RouteTable::default();
        for (i, (p, kind)) in entries.iter().enumerate() {
            match kind {
                'g' => t.add_group(&Pattern::parse_group(p).unwrap(), i),
                'r' => t.add_route(&Pattern::parse(p).unwrap(), i),
                _ => t.add_exempt(&Pattern::parse(p).unwrap()),
            }
        }
        t
    }

    fn get(t: &RouteTable, path: &str) -> Matched {
        t.lookup(&Method::GET, path)
    }

    #[test]
    fn a_group_matches_its_prefix_and_below_but_not_a_longer_name() {
        let t = table(&[("/api/*", 'g')]);
        assert_eq!(get(&t, "/api").groups.as_slice(), &[0]);
        assert_eq!(get(&t, "/api/").groups.as_slice(), &[0]);
        assert_eq!(get(&t, "/api/items/7").groups.as_slice(), &[0]);
        assert!(get(&t, "/apix").groups.is_empty());
        assert!(get(&t, "/").groups.is_empty());
        assert!(get(&t, "/other/api").groups.is_empty());
    }

    #[test]
    fn groups_stack_outermost_first_and_routes_are_exact() {
        let t = table(&[
            ("/api/v2/*", 'g'),
            ("/api", 'g'),
            ("/api/v2/search", 'r'),
            ("/*", 'g'),
        ]);
        let m = get(&t, "/api/v2/search");
        assert_eq!(m.groups.as_slice(), &[3, 1, 0]);
        assert_eq!(m.route, Some(2));
        assert_eq!(get(&t, "/api/v2/search/x").route, None);
        assert_eq!(get(&t, "/api/v2/search/").route, None, "trailing slash");
    }

    #[test]
    fn statics_beat_parameters_beat_wildcards() {
        let t = table(&[
            ("/users/{*rest}", 'r'),
            ("/users/{id}", 'r'),
            ("/users/me", 'r'),
        ]);
        assert_eq!(get(&t, "/users/me").route, Some(2));
        assert_eq!(get(&t, "/users/42").route, Some(1));
        assert_eq!(get(&t, "/users/42/posts").route, Some(0));
        assert_eq!(get(&t, "/users").route, None, "a wildcard needs a segment");
        assert_eq!(get(&t, "/users/").route, None, "a parameter is never empty");
    }

    #[test]
    fn methods_select_routes_and_get_covers_head() {
        let t = table(&[("/search", 'r'), ("GET /search", 'r'), ("POST /api/*", 'g')]);
        assert_eq!(get(&t, "/search").route, Some(1));
        assert_eq!(t.lookup(&Method::HEAD, "/search").route, Some(1));
        assert_eq!(t.lookup(&Method::POST, "/search").route, Some(0));
        assert!(get(&t, "/api/x").groups.is_empty());
        assert_eq!(t.lookup(&Method::POST, "/api/x").groups.as_slice(), &[2]);
    }

    #[test]
    fn exemptions_match_exactly_or_by_wildcard() {
        let t = table(&[("/health", 'e'), ("/static/*", 'e'), ("/*", 'g')]);
        assert!(get(&t, "/health").exempt);
        assert!(!get(&t, "/health/x").exempt);
        assert!(!get(&t, "/healthz").exempt);
        assert!(get(&t, "/static/app.js").exempt);
        assert!(!get(&t, "/").exempt);
    }

    #[test]
    fn parameters_in_the_middle_collect_groups_on_every_branch() {
        let t = table(&[
            ("/t/{tenant}/*", 'g'),
            ("/t/admin/*", 'g'),
            ("/t/{tenant}/x", 'r'),
        ]);
        let m = get(&t, "/t/admin/x");
        assert_eq!(m.groups.len(), 2);
        assert_eq!(m.route, Some(2));
    }

    #[test]
    fn bad_patterns_are_errors_naming_the_pattern() {
        assert!(matches!(
            Pattern::parse("api"),
            Err(PatternError::NotAPath(_))
        ));
        assert!(matches!(
            Pattern::parse("G\u{e9}T /x"),
            Err(PatternError::BadMethod(_))
        ));
        assert!(matches!(
            Pattern::parse("/a/*/b"),
            Err(PatternError::WildcardNotLast(_))
        ));
        assert!(matches!(
            Pattern::parse("/a{id}"),
            Err(PatternError::PartialParameter(_))
        ));
        let e = Pattern::parse("nope").unwrap_err().to_string();
        assert!(e.contains("\"nope\""), "{e}");
    }

    #[test]
    fn odd_paths_do_not_panic() {
        let t = table(&[("/a/{x}/*", 'g'), ("/a", 'r'), ("/", 'r')]);
        for p in ["", "/", "//", "///a", "/a//", "/a/%2F/b", "a", "/\u{fffd}"] {
            let _ = get(&t, p);
        }
        assert_eq!(get(&t, "/").route, Some(2));
        assert_eq!(get(&t, "/a").route, Some(1));
    }
}
