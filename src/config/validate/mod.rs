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

mod backend;
mod keys;
mod rules;
mod settings;

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
}

fn pattern_ends_in_wildcard(route: &str) -> bool {
    route.ends_with("/*")
        || route
            .rsplit('/')
            .next()
            .is_some_and(|s| s.starts_with("{*"))
}
