//! Semantic checks: everything serde cannot see. Each problem is a
//! [`Diagnostic`] with the path of the value and a fix; all are collected.
//!
//! Decisions worth knowing:
//!
//! - **An exempt route that also has a rule is an error.** The exemption
//!   wins (an exempt request is limited by no level), so the rule never
//!   applies; someone who added a limit to `/login` while `/auth/*` is
//!   exempt believes the login is protected when it is not.
//! - **A feature this build lacks is a warning** (`redis`, `jwt`,
//!   `schedule`, `metrics`, `redis-tls`, `redis-sentinel`): the file is
//!   right, the build is not, and `tollgate check` may be built with other
//!   features than the server.
//! - **Trusting `0.0.0.0/0` or `::/0` is a warning**: it is sometimes
//!   meant (a private network behind one ingress), never safe on the
//!   internet.
//! - Files (JWT keys) and environment variables (a JWT secret) that are
//!   missing here are warnings: the check may run on another machine than
//!   the server.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use http::{HeaderName, Method};

use super::diagnostic::{did_you_mean, one_of, suggest, Diagnostic};
use super::path::Path;
use super::profiles::{Source, Sources};
use super::schema::{
    AccessSpec, BackendSpec, CostSpec, CountOnlySpec, DaysSpec, File, KeySpec, KeyValueSpec,
    LevelSpec, MetricsSpec, OverrideSpec, RuleSpec, ScheduleSpec, StatusSpec, TiersSpec,
};
use super::values::{self, Bad, ALGORITHMS};
use crate::headers::HeaderStyle;
use crate::policy::{Pattern, Policy, RouteTable};
use crate::quota::Quota;
use crate::Algorithm;

/// What validation needs besides the file.
pub(crate) struct Context<'a> {
    /// Relative file names (JWT keys) are read from here.
    pub(crate) base_dir: Option<&'a std::path::Path>,
    /// Places taken out while reading: nothing more is said about them.
    pub(crate) removed: &'a [Path],
    /// Which layer set each value, named in messages for values that
    /// came from a profile or the environment.
    pub(crate) sources: &'a Sources,
    /// Now, for expiries.
    pub(crate) now: SystemTime,
    /// Looks up an environment variable (a JWT secret's).
    pub(crate) env: &'a dyn Fn(&str) -> Option<String>,
}

/// Every problem in `file`.
pub(crate) fn validate(file: &File, ctx: &Context<'_>) -> Vec<Diagnostic> {
    let mut v = Validator {
        ctx,
        out: Vec::new(),
        policies: Vec::new(),
        layer_algorithm: Algorithm::Gcra,
    };
    v.file(file);
    v.out
}

/// The key kinds, and the fields each takes besides `kind` and
/// `fallback` (only the extractors that can find nothing have
/// `on_missing`).
const KINDS: &[(&str, &[&str])] = &[
    (
        "client_ip",
        &[
            "trusted_proxies",
            "trust_loopback",
            "trust_private",
            "header",
            "ipv6_prefix",
        ],
    ),
    ("header", &["name", "on_missing"]),
    ("query", &["name", "on_missing"]),
    (
        "bearer",
        &[
            "secret_env",
            "secret_file",
            "rsa_pem_file",
            "ec_pem_file",
            "ed_pem_file",
            "jwks_file",
            "algorithms",
            "claim",
            "issuers",
            "audiences",
            "leeway",
            "require_exp",
            "max_token_len",
            "on_missing",
        ],
    ),
    ("user", &["name", "on_missing"]),
    ("route", &[]),
    ("method", &[]),
    ("global", &[]),
    ("composite", &["parts"]),
];

const CLIENT_IP_HEADERS: &[&str] = &[
    "x-forwarded-for",
    "forwarded",
    "x-real-ip",
    "cf-connecting-ip",
    "true-client-ip",
    "fly-client-ip",
];

const JWT_ALGORITHMS: &[&str] = &[
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
    "ES384", "EdDSA",
];

const HEADER_STYLES: &[&str] = &["both", "legacy", "ietf", "draft6", "draft7", "none"];

/// A policy seen in the file: for duplicate names and overrides.
struct Seen {
    name: String,
    path: Path,
    quota: Option<Quota>,
    algorithm: Option<Algorithm>,
}

struct Validator<'a> {
    ctx: &'a Context<'a>,
    out: Vec<Diagnostic>,
    policies: Vec<Seen>,
    layer_algorithm: Algorithm,
}

/// Which level a rule is.
#[derive(Clone, Copy)]
enum Level<'p> {
    Default,
    Group(&'p str),
    Route(&'p str),
    Rejected,
}

impl Validator<'_> {
    fn push(&mut self, mut d: Diagnostic, path: &Path) {
        if self.ctx.removed.iter().any(|r| path.starts_with(r)) {
            return;
        }
        // After a misspelt field (taken out while reading, with a "did you
        // mean"), saying that the field meant is missing adds nothing.
        if d.message.starts_with("missing:")
            && self
                .ctx
                .removed
                .iter()
                .any(|r| r.len() > 1 && r.parent() == path.parent())
        {
            return;
        }
        if let Some(source @ (Source::Env(_) | Source::Profile(_))) = self.ctx.sources.of(path) {
            d.message = format!("{} (set by {source})", d.message);
            d.origin = Some(source.clone());
        }
        self.out.push(d);
    }

    fn error(&mut self, path: &Path, message: impl Into<String>, fix: impl Into<String>) {
        let d = Diagnostic::error(path.to_string(), message).fix(fix);
        self.push(d, path);
    }

    fn warn(&mut self, path: &Path, message: impl Into<String>, fix: impl Into<String>) {
        let d = Diagnostic::warning(path.to_string(), message).fix(fix);
        self.push(d, path);
    }

    fn bad(&mut self, path: &Path, bad: Bad) {
        self.error(path, bad.message, bad.fix);
    }

    fn missing_feature(&mut self, path: &Path, what: &str, feature: &str) {
        if !self.ctx.removed.iter().any(|r| path.starts_with(r)) {
            self.warn(
                path,
                format!("{what} needs the `{feature}` feature, which this build of tollgate lacks"),
                format!("build with --features {feature} (the file itself is fine)"),
            );
        }
    }

    fn duration(&mut self, path: &Path, text: Option<&String>) -> Option<Duration> {
        let text = text?;
        match values::duration(text) {
            Ok(d) => Some(d),
            Err(bad) => {
                self.bad(path, bad);
                None
            }
        }
    }

    fn file(&mut self, file: &File) {
        let root = Path::default();
        self.layer_algorithm(file);
        if let Some(style) = &file.headers {
            if style.parse::<HeaderStyle>().is_err() {
                self.error(
                    &root.key("headers"),
                    format!("unknown header style {style:?}"),
                    suggest(style, HEADER_STYLES),
                );
            }
        }
        if let Some(format) = &file.reset_format {
            let names = ["delay_seconds", "epoch_seconds"];
            if !names.contains(&format.as_str()) {
                self.error(
                    &root.key("reset_format"),
                    format!("unknown reset format {format:?}"),
                    suggest(format, &names),
                );
            }
        }
        if let Some(mode) = &file.fail_mode {
            let names = ["open", "closed"];
            if !names.contains(&mode.as_str()) {
                let fix = if mode == "local" {
                    "a local fallback is a backend chain: set backend.kind = \"redis\" and a [backend.failover] section".to_owned()
                } else {
                    suggest(mode, &names)
                };
                self.error(
                    &root.key("fail_mode"),
                    format!("unknown fail mode {mode:?}"),
                    fix,
                );
            }
        }
        if let Some(interval) =
            self.duration(&root.key("sync_interval"), file.sync_interval.as_ref())
        {
            if interval.is_zero() {
                self.error(
                    &root.key("sync_interval"),
                    "a sync interval of zero would reload the shared settings without pause",
                    "give an interval such as \"1s\" (the default)",
                );
            }
        }
        if let Some(key) = &file.key {
            self.key(&root.key("key"), key);
        }
        if file.default.is_none() && file.groups.is_empty() && file.routes.is_empty() {
            self.error(
                &root.key("default"),
                "no limit at all: there is no default policy, group or route",
                "add a [default] section with quota = \"60/m\", or [[groups]] or [[routes]]",
            );
        }
        if let Some(rule) = &file.default {
            self.rule(&root.key("default"), &rule.clone(), Level::Default);
        }
        let exempt = self.exemptions(&file.exempt);
        let mut routes_seen: HashMap<String, Path> = HashMap::new();
        for (i, level) in file.groups.iter().enumerate() {
            self.level(
                &root.key("groups").index(i),
                level,
                true,
                &exempt,
                &mut HashMap::new(),
            );
        }
        for (i, level) in file.routes.iter().enumerate() {
            self.level(
                &root.key("routes").index(i),
                level,
                false,
                &exempt,
                &mut routes_seen,
            );
        }
        if let Some(rule) = &file.rejected_keys {
            self.rule(&root.key("rejected_keys"), rule, Level::Rejected);
        }
        self.duplicate_policies();
        if let Some(access) = &file.access {
            self.access(&root.key("access"), access);
        }
        let default_name = file
            .default
            .as_ref()
            .map(|d| d.name.clone().unwrap_or_else(|| "default".into()));
        for (i, o) in file.overrides.iter().enumerate() {
            self.override_(&root.key("overrides").index(i), o, default_name.as_deref());
        }
        if let Some(backend) = &file.backend {
            self.backend(&root.key("backend"), backend);
        }
        if let Some(metrics) = &file.metrics {
            self.metrics(&root.key("metrics"), metrics);
        }
    }

    fn layer_algorithm(&mut self, file: &File) {
        let root = Path::default();
        let max_delay = self.duration(&root.key("max_delay"), file.max_delay.as_ref());
        let Some(name) = &file.algorithm else {
            if file.max_delay.is_some() {
                self.error(
                    &root.key("max_delay"),
                    "max_delay applies only to algorithm = \"leaky_bucket_queue\"",
                    "remove it, or set algorithm = \"leaky_bucket_queue\"",
                );
            }
            return;
        };
        self.layer_algorithm = self
            .algorithm(&root, name, max_delay, file.max_delay.is_some())
            .unwrap_or(Algorithm::Gcra);
    }

    /// Checks an algorithm name (at `at.algorithm`) with its `max_delay`.
    fn algorithm(
        &mut self,
        at: &Path,
        name: &str,
        max_delay: Option<Duration>,
        max_delay_written: bool,
    ) -> Option<Algorithm> {
        let Some(algorithm) = values::algorithm(name, max_delay) else {
            self.error(
                &at.key("algorithm"),
                format!("unknown algorithm {name:?}"),
                suggest(name, ALGORITHMS),
            );
            return None;
        };
        let queue = matches!(algorithm, Algorithm::LeakyBucketQueue { .. });
        if queue && !max_delay_written {
            self.error(
                &at.key("algorithm"),
                "leaky_bucket_queue holds requests up to a maximum delay, and none is given",
                "add max_delay = \"500ms\" beside it",
            );
        } else if !queue && max_delay_written {
            self.error(
                &at.key("max_delay"),
                format!(
                    "max_delay applies only to algorithm = \"leaky_bucket_queue\", not {name:?}"
                ),
                "remove it, or use leaky_bucket_queue",
            );
        }
        Some(algorithm)
    }

    fn exemptions(&mut self, patterns: &[String]) -> Vec<(usize, String, Pattern)> {
        let mut out = Vec::new();
        for (i, text) in patterns.iter().enumerate() {
            match Pattern::parse(text) {
                Ok(p) => out.push((i, text.clone(), p)),
                Err(e) => self.error(
                    &Path::default().key("exempt").index(i),
                    e.to_string(),
                    "write a path such as \"/health\", a prefix such as \"/static/*\", optionally after a method",
                ),
            }
        }
        out
    }

    fn level(
        &mut self,
        path: &Path,
        spec: &LevelSpec,
        group: bool,
        exempt: &[(usize, String, Pattern)],
        seen: &mut HashMap<String, Path>,
    ) {
        let rule = spec.rule();
        let Some(text) = &spec.pattern else {
            self.error(
                &path.key("pattern"),
                format!(
                    "missing: every {} needs a pattern",
                    if group { "group" } else { "route" }
                ),
                if group {
                    "add pattern = \"/api/*\""
                } else {
                    "add pattern = \"GET /api/search\""
                },
            );
            self.rule(path, &rule, Level::Route("route"));
            return;
        };
        let parsed = if group {
            Pattern::parse_group(text)
        } else {
            Pattern::parse(text)
        };
        match parsed {
            Err(e) => self.error(
                &path.key("pattern"),
                e.to_string(),
                if group {
                    "write a prefix such as \"/api/*\" or \"POST /api/*\""
                } else {
                    "write an axum route such as \"/users/{id}\", \"/files/{*path}\" or \"GET /api/search\""
                },
            ),
            Ok(pattern) => {
                if !group {
                    let norm = text.split_whitespace().collect::<Vec<_>>().join(" ");
                    if let Some(first) = seen.get(&norm) {
                        let first = first.to_string();
                        self.warn(
                            &path.key("pattern"),
                            format!("{text:?} is also {first}: only the first route applies"),
                            "remove one of them, or merge their settings",
                        );
                    } else {
                        seen.insert(norm, path.clone());
                    }
                }
                self.covered_by_exemption(path, text, &pattern, group, exempt);
            }
        }
        let level = if group {
            Level::Group(text)
        } else {
            Level::Route(text)
        };
        self.rule(path, &rule, level);
    }

    /// An error if every request the level sees is exempt.
    fn covered_by_exemption(
        &mut self,
        path: &Path,
        text: &str,
        pattern: &Pattern,
        group: bool,
        exempt: &[(usize, String, Pattern)],
    ) {
        // A request only this level matches: its method (or one no
        // method-specific exemption names), `{x}` for every parameter and
        // wildcard (no static segment can hold a brace).
        let method = pattern
            .method
            .clone()
            .or_else(|| Method::from_bytes(b"TOLLGATE-ANY").ok());
        let Some(method) = method else { return };
        let route = text.trim().rsplit(' ').next().unwrap_or_default();
        let mut sample: String = route
            .split('/')
            .skip(1)
            .map(|seg| {
                if seg.starts_with('{') || seg == "*" {
                    "/{x}"
                } else {
                    seg
                }
            })
            .fold(String::new(), |mut acc, seg| {
                if !seg.starts_with('/') {
                    acc.push('/');
                }
                acc.push_str(seg);
                acc
            });
        if sample.is_empty() {
            sample.push('/');
        }
        if group && !pattern_ends_in_wildcard(route) {
            sample = format!("{}/{{x}}", sample.trim_end_matches('/'));
        }
        for (i, exempt_text, exemption) in exempt {
            let mut table = RouteTable::default();
            table.add_exempt(exemption);
            if table.lookup(&method, &sample).exempt {
                let what = if group {
                    "every request under this group is exempt"
                } else {
                    "this route is exempt"
                };
                self.error(
                    &path.key("pattern"),
                    format!("{what} (exempt[{i}] {exempt_text:?}), so its rule never applies"),
                    "remove the rule, or narrow the exemption: an exempt request is limited by no level",
                );
                return;
            }
        }
    }

    fn rule(&mut self, path: &Path, spec: &RuleSpec, level: Level<'_>) {
        let quota_path = path.key("quota");
        let quota = match &spec.quota {
            None => {
                self.error(
                    &quota_path,
                    "missing: every rule needs a quota",
                    "add quota = \"60/m\" (N per s, m, h, d, or a period such as 30s)",
                );
                None
            }
            Some(text) => match values::quota(text) {
                Ok(q) => Some(q),
                Err(bad) => {
                    self.bad(&quota_path, bad);
                    None
                }
            },
        };
        let name = match (&spec.name, level) {
            (Some(name), _) => {
                if Policy::new(name.as_str(), Quota::per_second(1))
                    .validate()
                    .is_err()
                {
                    self.error(
                        &path.key("name"),
                        format!("{name:?} cannot be a policy name"),
                        "use ASCII letters, digits and - _ . : / only (it goes into headers and metric labels)",
                    );
                }
                name.clone()
            }
            (None, Level::Default) => "default".to_owned(),
            (None, Level::Rejected) => "rejected-keys".to_owned(),
            (None, Level::Group(p) | Level::Route(p)) => crate::policy::policy_name_for(p),
        };
        let max_delay = self.duration(&path.key("max_delay"), spec.max_delay.as_ref());
        let algorithm = match &spec.algorithm {
            Some(a) => self.algorithm(path, a, max_delay, spec.max_delay.is_some()),
            None => {
                let layer = self.layer_algorithm;
                match (layer, max_delay) {
                    (Algorithm::LeakyBucketQueue { .. }, Some(d)) => {
                        Some(Algorithm::LeakyBucketQueue { max_delay: d })
                    }
                    (_, Some(_)) => {
                        self.error(
                            &path.key("max_delay"),
                            format!(
                                "max_delay applies only to algorithm = \"leaky_bucket_queue\", and this rule's is {:?}",
                                layer.name()
                            ),
                            "remove it, or set algorithm = \"leaky_bucket_queue\" on the rule",
                        );
                        Some(layer)
                    }
                    _ => Some(layer),
                }
            }
        };
        if let (Some(q), Some(a), Some(text)) = (quota, algorithm, &spec.quota) {
            self.quota_fits(&quota_path, text, &q, a);
        }
        self.cost(path, spec, quota);
        if let Some(tiers) = &spec.tiers {
            self.tiers(&path.key("tiers"), tiers, algorithm);
        }
        if let Some(schedule) = &spec.schedule {
            self.schedule(&path.key("schedule"), schedule, algorithm);
        }
        if let Some(count) = &spec.count_only {
            self.count_only(&path.key("count_only"), count);
        }
        if let Some(key) = &spec.key {
            self.key(&path.key("key"), key);
        }
        self.policies.push(Seen {
            name,
            path: path.clone(),
            quota,
            algorithm,
        });
    }

    /// The algorithm's own limits on a quota (a burst on a window, a huge
    /// sliding log).
    fn quota_fits(&mut self, at: &Path, text: &str, quota: &Quota, algorithm: Algorithm) {
        match algorithm.validate(quota) {
            Ok(()) => {}
            Err(crate::AlgorithmError::BurstNotSupported { algorithm }) => self.error(
                at,
                format!("{text:?}: {algorithm} has no burst: it admits exactly the limit per window"),
                format!(
                    "remove \" burst {}\", or use gcra, token_bucket or leaky_bucket",
                    quota.burst()
                ),
            ),
            Err(crate::AlgorithmError::LogLimitTooLarge { limit }) => self.error(
                at,
                format!("{text:?}: sliding_window_log keeps one timestamp per request, and {limit} is above its maximum of {}", crate::MAX_LOG_LIMIT),
                "use sliding_window, which keeps three numbers whatever the limit",
            ),
            Err(e) => self.error(at, format!("{text:?}: {e}"), "lower max_delay to at most 366d"),
        }
    }

    fn cost(&mut self, path: &Path, spec: &RuleSpec, quota: Option<Quota>) {
        match &spec.cost {
            Some(CostSpec::Unknown(word)) => self.error(
                &path.key("cost"),
                format!("unknown cost {word:?}"),
                match did_you_mean(word, ["content_length"]) {
                    Some(_) => "did you mean \"content_length\"?".to_owned(),
                    None => "write a whole number of units, or \"content_length\"".to_owned(),
                },
            ),
            Some(CostSpec::Fixed(0)) => self.warn(
                &path.key("cost"),
                "a cost of 0 counts nothing: this rule never limits",
                "give a cost of at least 1, or remove the rule",
            ),
            Some(CostSpec::Fixed(n)) => {
                if let Some(q) = quota {
                    if *n > q.burst() {
                        self.error(
                            &path.key("cost"),
                            format!("every request costs {n}, more than the whole quota ({}): every request is denied", q.burst()),
                            "lower the cost or raise the quota's limit (or burst)",
                        );
                    }
                }
            }
            _ => {}
        }
        if spec.missing_cost.is_some() && spec.cost != Some(CostSpec::ContentLength) {
            self.error(
                &path.key("missing_cost"),
                "missing_cost applies only to cost = \"content_length\"",
                "remove it, or set cost = \"content_length\"",
            );
        }
    }

    fn tiers(&mut self, path: &Path, spec: &TiersSpec, algorithm: Option<Algorithm>) {
        let sources = [
            spec.from_key.is_some(),
            spec.from_header.is_some(),
            spec.from_extension.is_some(),
        ]
        .iter()
        .filter(|s| **s)
        .count();
        match sources {
            0 => self.error(
                path,
                "no source for the tier: nothing says which tier a request is in",
                "add from_key (a JWT claim), from_header or from_extension",
            ),
            1 => {}
            _ => self.error(
                path,
                "more than one source for the tier",
                "keep one of from_key, from_header and from_extension",
            ),
        }
        if let Some(key) = &spec.from_key {
            self.key(&path.key("from_key"), key);
            if matches!(key.kind.as_deref(), Some("header" | "query")) {
                self.error(
                    &path.key("from_key").key("kind"),
                    "header and query keys are hashed (they are credentials), so they cannot name a tier",
                    "use from_header to read a plain header set by your gateway",
                );
            }
        }
        if let Some(name) = &spec.from_header {
            self.header_name(&path.key("from_header"), name);
        }
        if spec.quotas.is_empty() {
            self.warn(
                &path.key("quotas"),
                "no tier is listed: every request gets the rule's own quota",
                "list tiers: quotas = { free = \"60/m\", pro = \"1000/m\", internal = \"unlimited\" }",
            );
        }
        for (tier, text) in &spec.quotas {
            if text == "unlimited" {
                continue;
            }
            let at = path.key("quotas").key(tier);
            match values::quota(text) {
                Ok(q) => {
                    if let Some(a) = algorithm {
                        self.quota_fits(&at, text, &q, a);
                    }
                }
                Err(mut bad) => {
                    bad.fix = format!("{}; or \"unlimited\"", bad.fix);
                    self.bad(&at, bad);
                }
            }
        }
    }

    fn schedule(&mut self, path: &Path, spec: &ScheduleSpec, algorithm: Option<Algorithm>) {
        if !cfg!(feature = "schedule") {
            self.missing_feature(path, "a schedule", "schedule");
        }
        #[cfg(feature = "schedule")]
        if let Some(zone) = &spec.time_zone {
            if crate::policy::Schedule::new(zone, Quota::per_second(1)).is_err() {
                self.error(
                    &path.key("time_zone"),
                    format!("unknown time zone {zone:?}"),
                    "use an IANA name such as \"Europe/Paris\", \"America/New_York\" or \"UTC\"",
                );
            }
        }
        if spec.windows.is_empty() {
            self.warn(
                &path.key("windows"),
                "no window: the rule's quota applies at all times",
                "add [[…schedule.windows]] with days, start, end and quota, or remove the schedule",
            );
        }
        #[cfg(feature = "schedule")]
        if spec.windows.len() > crate::policy::MAX_SCHEDULE_WINDOWS {
            self.error(
                &path.key("windows"),
                format!(
                    "{} windows, more than the {} a schedule holds",
                    spec.windows.len(),
                    crate::policy::MAX_SCHEDULE_WINDOWS
                ),
                "merge windows that share a quota",
            );
        }
        for (i, w) in spec.windows.iter().enumerate() {
            let at = path.key("windows").index(i);
            if let Some(days) = &w.days {
                self.days(&at.key("days"), days);
            }
            let mut times = Vec::new();
            for (field, value) in [("start", &w.start), ("end", &w.end)] {
                match value {
                    None => self.error(
                        &at.key(field),
                        format!("missing: a window needs a {field} time"),
                        format!("add {field} = \"HH:MM\""),
                    ),
                    Some(t) => match values::clock_time(t) {
                        Ok(()) => times.push(t.clone()),
                        Err(bad) => self.bad(&at.key(field), bad),
                    },
                }
            }
            if let [start, end] = times.as_slice() {
                if start == "24:00" {
                    self.error(
                        &at.key("start"),
                        "a window cannot start at 24:00",
                        "start at 00:00 instead",
                    );
                } else if start == end {
                    self.error(
                        &at.key("end"),
                        format!("the window starts and ends at {start}: it is empty"),
                        "give an end different from the start (24:00 for the end of the day)",
                    );
                }
            }
            match &w.quota {
                None => self.error(
                    &at.key("quota"),
                    "missing: a window needs a quota",
                    "add quota = \"20/m\"",
                ),
                Some(text) => match values::quota(text) {
                    Ok(q) => {
                        if let Some(a) = algorithm {
                            self.quota_fits(&at.key("quota"), text, &q, a);
                        }
                    }
                    Err(bad) => self.bad(&at.key("quota"), bad),
                },
            }
        }
    }

    fn days(&mut self, path: &Path, days: &DaysSpec) {
        const WORDS: &[&str] = &["daily", "weekdays", "weekends"];
        const DAYS: &[&str] = &[
            "mon",
            "tue",
            "wed",
            "thu",
            "fri",
            "sat",
            "sun",
            "monday",
            "tuesday",
            "wednesday",
            "thursday",
            "friday",
            "saturday",
            "sunday",
        ];
        match days {
            DaysSpec::Word(word) => {
                let w = word.to_ascii_lowercase();
                if !WORDS.contains(&w.as_str()) && !DAYS.contains(&w.as_str()) {
                    self.error(
                        path,
                        format!("unknown days {word:?}"),
                        format!(
                            "use daily, weekdays, weekends or a list of days; {}",
                            suggest(word, WORDS)
                        ),
                    );
                }
            }
            DaysSpec::List(list) => {
                if list.is_empty() {
                    self.error(
                        path,
                        "no day listed: the window never applies",
                        "list days such as [\"sat\", \"sun\"]",
                    );
                }
                for (i, day) in list.iter().enumerate() {
                    if !DAYS.contains(&day.to_ascii_lowercase().as_str()) {
                        self.error(
                            &path.index(i),
                            format!("unknown day {day:?}"),
                            suggest(day, DAYS),
                        );
                    }
                }
            }
        }
    }

    fn count_only(&mut self, path: &Path, spec: &CountOnlySpec) {
        if spec.status.is_empty() {
            self.error(
                &path.key("status"),
                "no status listed: every request would be refunded, so the rule never limits",
                "list the statuses that count: status = [401] or [\"5xx\"]",
            );
        }
        for (i, status) in spec.status.iter().enumerate() {
            let ok = match status {
                StatusSpec::Code(code) => (100..=599).contains(code),
                StatusSpec::Text(text) => {
                    let b = text.as_bytes();
                    (b.len() == 3 && (b'1'..=b'5').contains(&b[0]) && &b[1..] == b"xx")
                        || text.parse::<u64>().is_ok_and(|c| (100..=599).contains(&c))
                }
            };
            if !ok {
                let shown = match status {
                    StatusSpec::Code(c) => c.to_string(),
                    StatusSpec::Text(t) => format!("{t:?}"),
                };
                self.error(
                    &path.key("status").index(i),
                    format!("{shown} is not an HTTP status or class"),
                    "use a status from 100 to 599 (401) or a class (\"4xx\", \"5xx\")",
                );
            }
        }
    }

    fn header_name(&mut self, path: &Path, name: &str) {
        if HeaderName::from_bytes(name.as_bytes()).is_err() {
            self.error(
                path,
                format!("{name:?} is not a valid header name"),
                "use letters, digits and - only, e.g. \"x-api-key\"",
            );
        }
    }

    fn key(&mut self, path: &Path, spec: &KeySpec) {
        let kind = spec.kind.as_deref().unwrap_or("client_ip");
        let names: Vec<&str> = KINDS.iter().map(|(k, _)| *k).collect();
        let Some((_, fields)) = KINDS.iter().find(|(k, _)| *k == kind) else {
            self.error(
                &path.key("kind"),
                format!("unknown key kind {kind:?}"),
                suggest(kind, &names),
            );
            return;
        };
        for (field, set) in set_fields(spec) {
            if set && !fields.contains(&field) {
                let owner = KINDS
                    .iter()
                    .find(|(_, f)| f.contains(&field))
                    .map_or("another kind", |(k, _)| *k);
                let fix = if field == "on_missing" {
                    "remove it: only header, query, user and bearer keys can find nothing and choose".to_owned()
                } else {
                    format!("remove it, or set kind = \"{owner}\"")
                };
                self.error(
                    &path.key(field),
                    format!("`{field}` does not apply to a {kind} key"),
                    fix,
                );
            }
        }
        match kind {
            "client_ip" => self.client_ip(path, spec),
            "header" | "query" | "user" => match &spec.name {
                None => self.error(
                    &path.key("name"),
                    format!("missing: a {kind} key needs a name"),
                    match kind {
                        "header" => "add name = \"x-api-key\"",
                        "query" => "add name = \"api_key\"",
                        _ => "add the name your application registers its user extractor under",
                    },
                ),
                Some(name) if kind == "header" => self.header_name(&path.key("name"), name),
                Some(name) if name.is_empty() => self.error(
                    &path.key("name"),
                    "an empty name",
                    "give the parameter's name, e.g. \"api_key\"",
                ),
                Some(_) => {}
            },
            "bearer" => self.bearer(path, spec),
            "composite" => {
                if !(2..=4).contains(&spec.parts.len()) {
                    self.error(
                        &path.key("parts"),
                        format!("a composite key combines 2 to 4 keys, not {}", spec.parts.len()),
                        "list 2 to 4 keys in parts, e.g. [{ kind = \"client_ip\" }, { kind = \"route\" }]",
                    );
                }
                for (i, part) in spec.parts.iter().enumerate() {
                    self.key(&path.key("parts").index(i), part);
                }
            }
            _ => {}
        }
        if let Some(on_missing) = spec
            .on_missing
            .as_ref()
            .filter(|_| fields.contains(&"on_missing"))
        {
            match on_missing.as_str() {
                "reject" => {}
                "skip" if kind == "bearer" => self.warn(
                    &path.key("on_missing"),
                    "with skip, a request with a forged or expired token passes unlimited",
                    "prefer a fallback key (fallback = { kind = \"client_ip\" }) so such requests are limited by address",
                ),
                "skip" => {}
                other => self.error(
                    &path.key("on_missing"),
                    format!("unknown on_missing {other:?}"),
                    suggest(other, &["reject", "skip"]),
                ),
            }
        }
        if let Some(fallback) = &spec.fallback {
            self.key(&path.key("fallback"), fallback);
        }
    }

    fn client_ip(&mut self, path: &Path, spec: &KeySpec) {
        for (i, text) in spec.trusted_proxies.iter().enumerate() {
            let at = path.key("trusted_proxies").index(i);
            match values::net(text) {
                Ok(net) if values::is_everything(&net) => self.warn(
                    &at,
                    format!("trusting {text:?} believes every address: any client can choose its own key"),
                    "list only your proxies' addresses (trust_private = true for a private network)",
                ),
                Ok(_) => {}
                Err(bad) => self.bad(&at, bad),
            }
        }
        if let Some(header) = &spec.header {
            let lower = header.to_ascii_lowercase();
            if !CLIENT_IP_HEADERS.contains(&lower.as_str()) {
                if HeaderName::from_bytes(header.as_bytes()).is_err() {
                    self.error(
                        &path.key("header"),
                        format!("{header:?} is not a valid header name"),
                        suggest(header, CLIENT_IP_HEADERS),
                    );
                } else if let Some(close) = did_you_mean(&lower, CLIENT_IP_HEADERS.iter().copied())
                {
                    self.warn(
                        &path.key("header"),
                        format!("{header:?} is read as a single-value header"),
                        format!("did you mean {close:?}?"),
                    );
                }
            }
            let trusts = !spec.trusted_proxies.is_empty()
                || spec.trust_loopback == Some(true)
                || spec.trust_private == Some(true);
            if !trusts {
                self.warn(
                    &path.key("header"),
                    "the header is read only from trusted proxies, and none is trusted",
                    "add trusted_proxies (your proxies' ranges), trust_loopback or trust_private",
                );
            }
        }
        if let Some(bits) = spec.ipv6_prefix {
            if !(48..=128).contains(&bits) {
                self.error(
                    &path.key("ipv6_prefix"),
                    format!("an IPv6 prefix of {bits} is outside 48 to 128"),
                    "use 64 (the default: one subscriber's network), 56, 48, or 128 for single addresses",
                );
            }
        }
    }

    fn bearer(&mut self, path: &Path, spec: &KeySpec) {
        if !cfg!(feature = "jwt") {
            self.missing_feature(path, "a bearer (JWT) key", "jwt");
        }
        let sources: Vec<(&str, &String)> = [
            ("secret_env", &spec.secret_env),
            ("secret_file", &spec.secret_file),
            ("rsa_pem_file", &spec.rsa_pem_file),
            ("ec_pem_file", &spec.ec_pem_file),
            ("ed_pem_file", &spec.ed_pem_file),
            ("jwks_file", &spec.jwks_file),
        ]
        .into_iter()
        .filter_map(|(name, v)| v.as_ref().map(|v| (name, v)))
        .collect();
        match sources.as_slice() {
            [] => self.error(
                path,
                "a bearer key needs a key to verify tokens with",
                "add one of secret_env = \"JWT_SECRET\" (HS256), secret_file, rsa_pem_file, ec_pem_file, ed_pem_file or jwks_file",
            ),
            [_] => {}
            [_, second, ..] => self.error(
                &path.key(second.0),
                format!("more than one key source ({})", sources.iter().map(|s| s.0).collect::<Vec<_>>().join(", ")),
                "keep exactly one (a JWKS file holds several keys)",
            ),
        }
        for (field, value) in &sources {
            let at = path.key(field);
            if *field == "secret_env" {
                if (self.ctx.env)(value).is_none() {
                    self.warn(
                        &at,
                        format!("the variable {value} is not set here"),
                        "set it where tollgate runs (the secret stays out of the file)",
                    );
                }
            } else {
                let file = match self.ctx.base_dir {
                    Some(dir) => dir.join(value.as_str()),
                    None => PathBuf::from(value.as_str()),
                };
                if !file.is_file() {
                    self.warn(
                        &at,
                        format!("{value:?} is not a file here"),
                        "give a path relative to the configuration file's directory, or an absolute one",
                    );
                }
            }
        }
        let family: Option<(&str, &[&str])> = sources.first().and_then(|(field, _)| match *field {
            "secret_env" | "secret_file" => {
                Some(("an HMAC secret", &["HS256", "HS384", "HS512"][..]))
            }
            "rsa_pem_file" => Some((
                "an RSA key",
                &["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"][..],
            )),
            "ec_pem_file" => Some(("an EC key", &["ES256", "ES384"][..])),
            "ed_pem_file" => Some(("an Ed25519 key", &["EdDSA"][..])),
            _ => None,
        });
        for (i, name) in spec.algorithms.iter().enumerate() {
            let at = path.key("algorithms").index(i);
            if !JWT_ALGORITHMS.contains(&name.as_str()) {
                let fix = if name.eq_ignore_ascii_case("none") {
                    "unsigned tokens are never accepted; list signing algorithms such as \"HS256\" or \"RS256\"".to_owned()
                } else {
                    suggest(name, JWT_ALGORITHMS)
                };
                self.error(&at, format!("unknown JWT algorithm {name:?}"), fix);
            } else if let Some((what, usable)) = family {
                if !usable.contains(&name.as_str()) {
                    self.error(
                        &at,
                        format!("{name} tokens cannot be verified with {what}"),
                        format!("use {} with this key", one_of(usable)),
                    );
                }
            }
        }
        if let Some(claim) = &spec.claim {
            if claim.is_empty() {
                self.error(
                    &path.key("claim"),
                    "an empty claim name",
                    "leave it out for `sub`, or name the claim",
                );
            }
        }
        if let Some(leeway) = self.duration(&path.key("leeway"), spec.leeway.as_ref()) {
            if leeway > Duration::from_secs(86_400) {
                self.error(
                    &path.key("leeway"),
                    "a leeway of more than a day accepts long-expired tokens",
                    "use at most \"1d\" (the default is 30s)",
                );
            }
        }
        if spec.max_token_len == Some(0) {
            self.error(
                &path.key("max_token_len"),
                "a maximum token length of 0 refuses every token",
                "leave it out (8192 bytes) or give the longest token you issue",
            );
        }
    }

    fn access(&mut self, path: &Path, spec: &AccessSpec) {
        let mut listed: HashMap<ipnet::IpNet, Path> = HashMap::new();
        for (list, items) in [("allow", &spec.allow), ("deny", &spec.deny)] {
            for (i, text) in items.iter().enumerate() {
                let at = path.key(list).index(i);
                match values::net(text) {
                    Ok(net) => {
                        let net = crate::key::canonical_net(net);
                        if values::is_everything(&net) {
                            let what = if list == "allow" {
                                "exempts every client from every limit"
                            } else {
                                "refuses every client"
                            };
                            self.warn(
                                &at,
                                format!("{text:?} {what}"),
                                "list the ranges meant, not every address",
                            );
                        }
                        if let Some(first) = listed.get(&net) {
                            let first = first.to_string();
                            if list == "deny" && first.starts_with(&format!("{path}.allow")) {
                                self.warn(
                                    &at,
                                    format!("{text:?} is also allowed ({first}); a range is on one list at a time and deny wins"),
                                    "remove it from one of the lists",
                                );
                            }
                        } else {
                            listed.insert(net, at.clone());
                        }
                    }
                    Err(bad) => self.bad(&at, bad),
                }
            }
        }
        for (list, items) in [
            ("allow_keys", &spec.allow_keys),
            ("deny_keys", &spec.deny_keys),
        ] {
            for (i, key) in items.iter().enumerate() {
                self.key_value(&path.key(list).index(i), key);
            }
        }
        if let Some(key) = &spec.client_ip {
            let at = path.key("client_ip");
            if key.kind.as_deref().is_some_and(|k| k != "client_ip") {
                self.error(
                    &at.key("kind"),
                    "the access lists find clients by address: their key must be a client_ip key",
                    "remove kind, or set kind = \"client_ip\"",
                );
            } else {
                self.key(&at, key);
            }
        }
    }

    fn key_value(&mut self, path: &Path, spec: &KeyValueSpec) {
        let set = [&spec.ip, &spec.api_key, &spec.value]
            .iter()
            .filter(|v| v.is_some())
            .count();
        if set != 1 {
            self.error(
                path,
                if set == 0 {
                    "an empty key"
                } else {
                    "more than one form of key"
                }
                .to_owned(),
                "give exactly one of ip = \"192.0.2.7\", api_key = \"…\" or value = \"user-42\"",
            );
        }
        if let Some(ip) = &spec.ip {
            if ip.trim().parse::<std::net::IpAddr>().is_err() {
                self.error(
                    &path.key("ip"),
                    format!("{ip:?} is not an IP address"),
                    "write one address such as \"192.0.2.7\" or \"2001:db8::7\" (ranges go in allow and deny)",
                );
            }
        }
    }

    fn override_(&mut self, path: &Path, spec: &OverrideSpec, default_name: Option<&str>) {
        let policy = match (&spec.policy, default_name) {
            (Some(p), _) => Some(p.as_str()),
            (None, Some(d)) => Some(d),
            (None, None) => {
                self.error(
                    &path.key("policy"),
                    "missing: there is no default policy to apply the override to",
                    "name the policy: policy = \"search\"",
                );
                None
            }
        };
        let seen = policy.and_then(|name| self.policies.iter().position(|p| p.name == name));
        if let (Some(name), None) = (policy, seen) {
            let names: Vec<&str> = self.policies.iter().map(|p| p.name.as_str()).collect();
            let fix = match did_you_mean(name, names.iter().copied()) {
                Some(close) => format!("did you mean {close:?}?"),
                None if names.is_empty() => "define the policy first".to_owned(),
                None => format!("the policies are {}", one_of(&names)),
            };
            self.error(
                &path.key("policy"),
                format!("no policy is named {name:?}"),
                fix,
            );
        }
        match &spec.key {
            None => self.error(
                &path.key("key"),
                "missing: whose quota this is",
                "add key = { ip = \"192.0.2.7\" } (or api_key, or value)",
            ),
            Some(key) => self.key_value(&path.key("key"), key),
        }
        match &spec.quota {
            None => self.error(
                &path.key("quota"),
                "missing: an override needs a quota",
                "add quota = \"600/m\"",
            ),
            Some(text) => match values::quota(text) {
                Ok(q) => {
                    let algorithm = seen.and_then(|i| self.policies[i].algorithm);
                    if let Some(a) = algorithm {
                        self.quota_fits(&path.key("quota"), text, &q, a);
                    }
                }
                Err(bad) => self.bad(&path.key("quota"), bad),
            },
        }
        if let Some(text) = &spec.expires_at {
            match values::instant(text) {
                Ok(at) if at <= self.ctx.now => self.warn(
                    &path.key("expires_at"),
                    format!("{text} is past: the override is ignored"),
                    "remove it, or give a later expiry",
                ),
                Ok(_) => {}
                Err(bad) => self.bad(&path.key("expires_at"), bad),
            }
        }
    }

    fn duplicate_policies(&mut self) {
        let mut problems = Vec::new();
        for (i, later) in self.policies.iter().enumerate() {
            let Some(first) = self.policies[..i].iter().find(|p| p.name == later.name) else {
                continue;
            };
            let differs = match (first.quota, later.quota) {
                (Some(a), Some(b)) => a != b,
                _ => false,
            } || match (first.algorithm, later.algorithm) {
                (Some(a), Some(b)) => a != b,
                _ => false,
            };
            if differs {
                problems.push((
                    later.path.key("name"),
                    later.name.clone(),
                    first.path.to_string(),
                ));
            }
        }
        for (at, name, first) in problems {
            self.error(
                &at,
                format!("policy {name:?} is also {first}, with another quota or algorithm; policies of one name share their counters"),
                "give this rule its own name, or the same quota and algorithm",
            );
        }
    }

    fn backend(&mut self, path: &Path, spec: &BackendSpec) {
        let kind = spec.kind.as_deref().unwrap_or("memory");
        match kind {
            "memory" => {
                if spec.redis.is_some() {
                    self.warn(
                        &path.key("redis"),
                        "the Redis settings are not used: the backend is memory",
                        "set kind = \"redis\" to use them",
                    );
                }
                if spec.failover.is_some() {
                    self.error(
                        &path.key("failover"),
                        "a failover needs a networked primary, and the backend is memory",
                        "set kind = \"redis\", or remove the failover",
                    );
                }
                if spec
                    .blocked_cache
                    .as_ref()
                    .is_some_and(|b| b.enabled != Some(false))
                {
                    self.warn(
                        &path.key("blocked_cache"),
                        "the blocked-key cache saves calls to a networked backend; in front of memory it only costs memory",
                        "remove it, or use it with kind = \"redis\"",
                    );
                }
            }
            "redis" => {
                if !cfg!(feature = "redis") {
                    self.missing_feature(&path.key("kind"), "the Redis backend", "redis");
                }
                match &spec.redis {
                    None => self.error(
                        &path.key("redis"),
                        "missing: the Redis backend needs a server",
                        "add [backend.redis] with url = \"redis://127.0.0.1:6379/0\"",
                    ),
                    Some(redis) => self.redis(&path.key("redis"), redis),
                }
            }
            other => {
                self.error(
                    &path.key("kind"),
                    format!("unknown backend {other:?}"),
                    suggest(other, &["memory", "redis"]),
                );
            }
        }
        if let Some(memory) = &spec.memory {
            for (field, value) in [("max_keys", memory.max_keys), ("shards", memory.shards)] {
                if value == Some(0) {
                    self.error(
                        &path.key("memory").key(field),
                        format!("{field} must be at least 1"),
                        "leave it out for the default",
                    );
                }
            }
        }
        if let Some(failover) = &spec.failover {
            let at = path.key("failover");
            if let Some(fallback) = &failover.fallback {
                if fallback != "memory" {
                    self.error(
                        &at.key("fallback"),
                        format!("unknown fallback {fallback:?}"),
                        "the fallback is \"memory\" (set up by [backend.memory])",
                    );
                }
            }
            let _ = self.duration(&at.key("timeout"), failover.timeout.as_ref());
            let base = self.duration(&at.key("backoff"), failover.backoff.as_ref());
            let max = self.duration(&at.key("max_backoff"), failover.max_backoff.as_ref());
            if let (Some(base), Some(max)) = (base, max) {
                if max < base {
                    self.warn(
                        &at.key("max_backoff"),
                        "the longest backoff is shorter than the first, and is raised to it",
                        "give a max_backoff at least as long as backoff",
                    );
                }
            }
            if failover
                .failure_threshold
                .is_some_and(|n| u32::try_from(n).is_err())
            {
                self.error(
                    &at.key("failure_threshold"),
                    "more failures in a row than a breaker counts",
                    "give a threshold of at most 4294967295 (the default is 5)",
                );
            }
            if failover.failure_threshold == Some(0) {
                self.error(
                    &at.key("failure_threshold"),
                    "a threshold of 0 failures would open the breaker before any call",
                    "give at least 1 (the default is 5)",
                );
            }
            if failover.jitter_percent.is_some_and(|p| p > 100) {
                self.error(
                    &at.key("jitter_percent"),
                    "the jitter is a share of the backoff, 0 to 100",
                    "give a percentage from 0 to 100 (the default is 20)",
                );
            }
        }
        if let Some(cache) = &spec.blocked_cache {
            if cache.capacity == Some(0) {
                self.error(
                    &path.key("blocked_cache").key("capacity"),
                    "a capacity of 0 remembers nothing",
                    "give at least 1, or set enabled = false",
                );
            }
        }
    }

    fn redis(&mut self, path: &Path, spec: &super::schema::RedisSpec) {
        let targets = [
            spec.url.is_some(),
            !spec.cluster.is_empty(),
            spec.sentinel.is_some(),
        ]
        .iter()
        .filter(|t| **t)
        .count();
        if targets == 0 {
            self.error(
                path,
                "no server: give url, cluster or sentinel",
                "add url = \"redis://127.0.0.1:6379/0\"",
            );
        } else if targets > 1 {
            self.error(
                path,
                "more than one of url, cluster and sentinel",
                "keep the one that describes your deployment",
            );
        }
        let check = |v: &mut Self, at: Path, url: &str| match values::redis_url(url) {
            Ok(u) => {
                if u.tls && !cfg!(feature = "redis-tls") {
                    v.missing_feature(&at, "a rediss:// (TLS) URL", "redis-tls");
                }
            }
            Err(bad) => v.bad(&at, bad),
        };
        if let Some(url) = &spec.url {
            check(self, path.key("url"), url);
        }
        for (i, url) in spec.cluster.iter().enumerate() {
            check(self, path.key("cluster").index(i), url);
        }
        if let Some(sentinel) = &spec.sentinel {
            let at = path.key("sentinel");
            if !cfg!(feature = "redis-sentinel") {
                self.missing_feature(&at, "Redis Sentinel", "redis-sentinel");
            }
            if sentinel.nodes.is_empty() {
                self.error(
                    &at.key("nodes"),
                    "no sentinel listed",
                    "list the sentinels: nodes = [\"redis://10.0.0.1:26379\"]",
                );
            }
            for (i, url) in sentinel.nodes.iter().enumerate() {
                check(self, at.key("nodes").index(i), url);
            }
            if sentinel.service.as_deref().is_none_or(str::is_empty) {
                self.error(
                    &at.key("service"),
                    "missing: the master's service name",
                    "add service = \"mymaster\"",
                );
            }
        }
        if spec.lazy == Some(true) && !spec.cluster.is_empty() {
            self.error(
                &path.key("lazy"),
                "a cluster backend must learn the cluster's slots before serving, so it cannot start lazily",
                "remove lazy, or set it to false",
            );
        }
        for field in ["timeout", "connect_timeout"] {
            let value = if field == "timeout" {
                &spec.timeout
            } else {
                &spec.connect_timeout
            };
            if let Some(d) = self.duration(&path.key(field), value.as_ref()) {
                if d.is_zero() {
                    self.error(
                        &path.key(field),
                        "a timeout of zero fails every call",
                        "give a timeout such as \"250ms\"",
                    );
                }
            }
        }
        let _ = self.duration(&path.key("ttl_margin"), spec.ttl_margin.as_ref());
    }

    fn metrics(&mut self, path: &Path, spec: &MetricsSpec) {
        if !cfg!(feature = "metrics") {
            self.missing_feature(path, "metrics", "metrics");
        }
        if let Some(ratio) = spec.near_limit_ratio {
            if !(ratio > 0.0 && ratio <= 1.0) {
                self.error(
                    &path.key("near_limit_ratio"),
                    format!("{ratio} is not a share of the limit"),
                    "give a number above 0 and at most 1 (the default is 0.8)",
                );
            }
        }
        if let Some(interval) = self.duration(&path.key("interval"), spec.interval.as_ref()) {
            if interval < Duration::from_millis(10) {
                self.warn(
                    &path.key("interval"),
                    "gauges are sampled at most every 10ms; this interval is raised to it",
                    "give at least \"10ms\" (the default is 5s)",
                );
            }
        }
        if let Some(top) = &spec.top_keys {
            if let Some(span) = self.duration(&path.key("top_keys").key("span"), top.span.as_ref())
            {
                if span.is_zero() {
                    self.error(
                        &path.key("top_keys").key("span"),
                        "a span of zero keeps no key",
                        "give a span such as \"5m\" (the default), or capacity = 0 to keep none",
                    );
                }
            }
        }
    }
}

fn pattern_ends_in_wildcard(route: &str) -> bool {
    route.ends_with("/*")
        || route
            .rsplit('/')
            .next()
            .is_some_and(|s| s.starts_with("{*"))
}

/// Each kind-specific field of a key and whether it is set.
fn set_fields(spec: &KeySpec) -> [(&'static str, bool); 21] {
    [
        ("trusted_proxies", !spec.trusted_proxies.is_empty()),
        ("trust_loopback", spec.trust_loopback.is_some()),
        ("trust_private", spec.trust_private.is_some()),
        ("header", spec.header.is_some()),
        ("ipv6_prefix", spec.ipv6_prefix.is_some()),
        ("name", spec.name.is_some()),
        ("secret_env", spec.secret_env.is_some()),
        ("secret_file", spec.secret_file.is_some()),
        ("rsa_pem_file", spec.rsa_pem_file.is_some()),
        ("ec_pem_file", spec.ec_pem_file.is_some()),
        ("ed_pem_file", spec.ed_pem_file.is_some()),
        ("jwks_file", spec.jwks_file.is_some()),
        ("algorithms", !spec.algorithms.is_empty()),
        ("claim", spec.claim.is_some()),
        ("issuers", !spec.issuers.is_empty()),
        ("audiences", !spec.audiences.is_empty()),
        ("leeway", spec.leeway.is_some()),
        ("require_exp", spec.require_exp.is_some()),
        ("max_token_len", spec.max_token_len.is_some()),
        ("parts", !spec.parts.is_empty()),
        ("on_missing", spec.on_missing.is_some()),
    ]
}
