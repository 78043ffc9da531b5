//! The schema of a configuration file, one for TOML and YAML: what each
//! section holds, as serde reads it.
//!
//! Every field is optional to serde, and quotas, algorithms, durations,
//! addresses and URLs are kept as the strings written: serde only refuses
//! unknown fields and values of the wrong type, and
//! [`Config::validate`](super::Config::validate) checks everything else,
//! all at once, with a path and a fix for each problem. The
//! [module documentation](super) has a complete commented file.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// A whole file (or, inside `profiles`, what a profile changes).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct File {
    /// The default policy, applied to every request that is not exempt
    /// (`.quota(..)` / `.policy(..)`).
    pub default: Option<RuleSpec>,
    /// The algorithm of every rule that names none (`.algorithm(..)`,
    /// default `gcra`).
    pub algorithm: Option<String>,
    /// With `algorithm = "leaky_bucket_queue"`: the longest a request may
    /// be held (`"500ms"`).
    pub max_delay: Option<String>,
    /// Who is limited (`.key(..)`, default the peer address).
    pub key: Option<KeySpec>,
    /// Group levels, checked for every path under their prefix
    /// (`.group(..)`).
    pub groups: Vec<LevelSpec>,
    /// Route levels, the most specific match applies (`.route(..)`).
    pub routes: Vec<LevelSpec>,
    /// Patterns never limited by any level (`.exempt(..)`).
    pub exempt: Vec<String>,
    /// Requests whose key is rejected (401/400), counted per client
    /// (`.rejected_keys(..)`).
    pub rejected_keys: Option<RuleSpec>,
    /// Allow and deny lists (`.access(..)`).
    pub access: Option<AccessSpec>,
    /// Per-key quotas set at start-up (`layer.overrides().set_for(..)`).
    pub overrides: Vec<OverrideSpec>,
    /// Which rate-limit headers responses carry: `both` (default),
    /// `legacy`, `ietf`, `draft6`, `draft7` or `none` (`.headers(..)`).
    pub headers: Option<String>,
    /// How `X-RateLimit-Reset` is written: `delay_seconds` (default) or
    /// `epoch_seconds` (`.reset_format(..)`).
    pub reset_format: Option<String>,
    /// What a request gets when the backend fails: `open` (default) or
    /// `closed` (`.fail_mode(..)`); a failover chain is `backend.failover`.
    pub fail_mode: Option<String>,
    /// The whole layer only reports, never blocks (`.shadow(..)`).
    pub shadow: Option<bool>,
    /// Headers for decisions that only report (`.shadow_headers(..)`).
    pub shadow_headers: Option<bool>,
    /// How often shared overrides and lists are reloaded (`"1s"`,
    /// `.sync_interval(..)`).
    pub sync_interval: Option<String>,
    /// Where counters live.
    pub backend: Option<BackendSpec>,
    /// Metrics settings (feature `metrics`).
    pub metrics: Option<MetricsSpec>,
    /// Named profiles: each changes the file it is in when chosen
    /// (`--profile NAME` or `TOLLGATE_PROFILE`). Tables merge; a value or
    /// a list in a profile replaces the base's.
    pub profiles: BTreeMap<String, File>,
}

/// A rule: a named quota and how it applies (`policy::Rule`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct RuleSpec {
    /// The policy's name in headers, logs and metrics; rules with the same
    /// name share counters. Default: `default` for the default policy,
    /// the pattern for a group or route, `rejected-keys`.
    pub name: Option<String>,
    /// The quota: `"100/m"`, `"5/30s"`, `"10/s burst 20"`.
    pub quota: Option<String>,
    /// This rule's algorithm (default: the file's `algorithm`).
    pub algorithm: Option<String>,
    /// With `algorithm = "leaky_bucket_queue"`: the longest a request may
    /// be held (`"500ms"`).
    pub max_delay: Option<String>,
    /// What one request costs: a number (default 1) or `"content_length"`
    /// (the quota then counts bytes).
    pub cost: Option<CostSpec>,
    /// With `cost = "content_length"`: what a request without a usable
    /// `Content-Length` costs (default 1).
    pub missing_cost: Option<u64>,
    /// Decided and reported, never blocking.
    pub shadow: Option<bool>,
    /// This rule's own key instead of the layer's.
    pub key: Option<KeySpec>,
    /// Quotas per tier (plan).
    pub tiers: Option<TiersSpec>,
    /// Quotas by time of day and day of week (feature `schedule`); the
    /// rule's `quota` applies outside every window.
    pub schedule: Option<ScheduleSpec>,
    /// Count a request only when its response says so; the others are
    /// refunded.
    pub count_only: Option<CountOnlySpec>,
}

/// A group or route: a pattern and its rule.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct LevelSpec {
    /// `"/api/*"`, `"GET /users/{id}"`, `"/files/{*path}"`.
    pub pattern: Option<String>,
    /// See [`RuleSpec::name`].
    pub name: Option<String>,
    /// See [`RuleSpec::quota`].
    pub quota: Option<String>,
    /// See [`RuleSpec::algorithm`].
    pub algorithm: Option<String>,
    /// See [`RuleSpec::max_delay`].
    pub max_delay: Option<String>,
    /// See [`RuleSpec::cost`].
    pub cost: Option<CostSpec>,
    /// See [`RuleSpec::missing_cost`].
    pub missing_cost: Option<u64>,
    /// See [`RuleSpec::shadow`].
    pub shadow: Option<bool>,
    /// See [`RuleSpec::key`].
    pub key: Option<KeySpec>,
    /// See [`RuleSpec::tiers`].
    pub tiers: Option<TiersSpec>,
    /// See [`RuleSpec::schedule`].
    pub schedule: Option<ScheduleSpec>,
    /// See [`RuleSpec::count_only`].
    pub count_only: Option<CountOnlySpec>,
}

impl LevelSpec {
    /// The rule part, without the pattern.
    pub fn rule(&self) -> RuleSpec {
        RuleSpec {
            name: self.name.clone(),
            quota: self.quota.clone(),
            algorithm: self.algorithm.clone(),
            max_delay: self.max_delay.clone(),
            cost: self.cost.clone(),
            missing_cost: self.missing_cost,
            shadow: self.shadow,
            key: self.key.clone(),
            tiers: self.tiers.clone(),
            schedule: self.schedule.clone(),
            count_only: self.count_only.clone(),
        }
    }
}

/// What a request costs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CostSpec {
    /// The same for every request.
    Fixed(u64),
    /// The request's `Content-Length` in bytes.
    ContentLength,
    /// A word that is neither (kept for the diagnostic).
    Unknown(String),
}

impl<'de> Deserialize<'de> for CostSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CostVisitor;
        impl Visitor<'_> for CostVisitor {
            type Value = CostSpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a whole number of units, or \"content_length\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<CostSpec, E> {
                Ok(CostSpec::Fixed(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<CostSpec, E> {
                u64::try_from(v)
                    .map(CostSpec::Fixed)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<CostSpec, E> {
                Ok(match v {
                    "content_length" => CostSpec::ContentLength,
                    other => CostSpec::Unknown(other.to_owned()),
                })
            }
        }
        deserializer.deserialize_any(CostVisitor)
    }
}

/// Which responses count (`Rule::count_only`): a request whose response
/// matches none of `status` is refunded.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct CountOnlySpec {
    /// Statuses that count: `401`, or a class `"4xx"`.
    pub status: Vec<StatusSpec>,
}

/// A status (`401`) or a class of statuses (`"5xx"`), as written.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StatusSpec {
    /// One status code (checked to be 100..=599 by validation).
    Code(u64),
    /// A string: `"4xx"`, or a code written as a string.
    Text(String),
}

impl<'de> Deserialize<'de> for StatusSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StatusVisitor;
        impl Visitor<'_> for StatusVisitor {
            type Value = StatusSpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a status code such as 401, or a class such as \"5xx\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<StatusSpec, E> {
                Ok(StatusSpec::Code(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<StatusSpec, E> {
                u64::try_from(v)
                    .map(StatusSpec::Code)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<StatusSpec, E> {
                Ok(StatusSpec::Text(v.to_owned()))
            }
        }
        deserializer.deserialize_any(StatusVisitor)
    }
}

/// Quotas per tier, and where a request's tier comes from
/// (`policy::Tiers`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct TiersSpec {
    /// The tier is what this key finds, read as text (`Tiers::from_key`),
    /// e.g. a JWT's `plan` claim: `{ kind = "bearer", claim = "plan", .. }`.
    pub from_key: Option<Box<KeySpec>>,
    /// The tier is this header's value (`Tiers::from_fn`): only when a
    /// proxy or gateway in front sets it, as a client could send any.
    pub from_header: Option<String>,
    /// The tier is what the application's resolver registered under this
    /// name finds (`Tiers::from_extension` or `from_fn` in Rust).
    pub from_extension: Option<String>,
    /// Tier name → quota string, or `"unlimited"`.
    pub quotas: BTreeMap<String, String>,
}

/// Quotas by local time (`policy::Schedule`, feature `schedule`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct ScheduleSpec {
    /// An IANA zone: `"Europe/Paris"`, `"UTC"` (default `UTC`).
    pub time_zone: Option<String>,
    /// Windows in order; the first containing the instant wins.
    pub windows: Vec<WindowSpec>,
}

/// One window of a schedule.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct WindowSpec {
    /// `"daily"` (default), `"weekdays"`, `"weekends"`, or a list of days
    /// (`["sat", "sun"]`, `["monday"]`).
    pub days: Option<DaysSpec>,
    /// `"HH:MM"` local time.
    pub start: Option<String>,
    /// `"HH:MM"` local time; earlier than `start` runs overnight; `"24:00"`
    /// is the end of the day.
    pub end: Option<String>,
    /// The quota in the window.
    pub quota: Option<String>,
}

/// The days of a window, as written: one word or a list.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DaysSpec {
    /// `"daily"`, `"weekdays"`, `"weekends"` (or one day's name).
    Word(String),
    /// Day names: `mon`, `monday`, …
    List(Vec<String>),
}

impl<'de> Deserialize<'de> for DaysSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DaysVisitor;
        impl<'de> Visitor<'de> for DaysVisitor {
            type Value = DaysSpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"daily\", \"weekdays\", \"weekends\" or a list of days")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DaysSpec, E> {
                Ok(DaysSpec::Word(v.to_owned()))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<DaysSpec, A::Error> {
                let mut days = Vec::new();
                while let Some(day) = seq.next_element::<String>()? {
                    days.push(day);
                }
                Ok(DaysSpec::List(days))
            }
        }
        deserializer.deserialize_any(DaysVisitor)
    }
}

/// Who is limited: one extractor, chosen by `kind`, with its settings.
///
/// | `kind` | keys by | settings |
/// |---|---|---|
/// | `client_ip` (default) | the client address (`key::ClientIp`) | `trusted_proxies`, `trust_loopback`, `trust_private`, `header`, `ipv6_prefix` |
/// | `header` | an API key in header `name` (`key::Header`) | `name` |
/// | `query` | an API key in query parameter `name` (`key::Query`) | `name` |
/// | `bearer` | a claim of a verified JWT (`key::Bearer`, feature `jwt`) | one key source (`secret_env`, `secret_file`, `rsa_pem_file`, `ec_pem_file`, `ed_pem_file`, `jwks_file`), `algorithms`, `claim`, `issuers`, `audiences`, `leeway`, `require_exp`, `max_token_len` |
/// | `user` | what the application's extractor registered under `name` finds (`key::User`) | `name` |
/// | `route` | axum's matched route (`key::MatchedRoute`) | |
/// | `method` | the method (`key::RequestMethod`) | |
/// | `global` | one bucket for everyone (`key::Global`) | |
/// | `composite` | all of `parts` together (a tuple) | `parts` (2 to 4 keys) |
///
/// Every kind takes `fallback`, a key used when this one finds nothing
/// (`a.or(b)`). The kinds that can find nothing (`header`, `query`,
/// `user`, `bearer`) take `on_missing`: `reject` (the default: 401) or
/// `skip` (the request passes unlimited).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct KeySpec {
    /// Which extractor (see the table).
    pub kind: Option<String>,
    /// `client_ip`: CIDR ranges (or addresses) of your proxies.
    pub trusted_proxies: Vec<String>,
    /// `client_ip`: trust a proxy on this host (127.0.0.0/8, ::1).
    pub trust_loopback: Option<bool>,
    /// `client_ip`: trust every private address.
    pub trust_private: Option<bool>,
    /// `client_ip`: the header your proxies write (default
    /// `x-forwarded-for`; also `forwarded`, `x-real-ip`,
    /// `cf-connecting-ip`, `true-client-ip`, `fly-client-ip` or any
    /// single-value header's name).
    pub header: Option<String>,
    /// `client_ip`: IPv6 addresses are grouped by this prefix (48 to 128,
    /// default 64).
    pub ipv6_prefix: Option<u64>,
    /// `header`, `query`: the header or parameter; `user`: the name the
    /// application registered its extractor under.
    pub name: Option<String>,
    /// `bearer`: the environment variable holding the HMAC secret (HS*).
    pub secret_env: Option<String>,
    /// `bearer`: a file holding the HMAC secret (HS*).
    pub secret_file: Option<String>,
    /// `bearer`: an RSA public key, PEM (RS*, PS*).
    pub rsa_pem_file: Option<String>,
    /// `bearer`: an EC public key, PEM (ES256, ES384).
    pub ec_pem_file: Option<String>,
    /// `bearer`: an Ed25519 public key, PEM (EdDSA).
    pub ed_pem_file: Option<String>,
    /// `bearer`: a JWKS file, keys picked by `kid`.
    pub jwks_file: Option<String>,
    /// `bearer`: the allowed algorithms (default: the key's first, e.g.
    /// `HS256`).
    pub algorithms: Vec<String>,
    /// `bearer`: the claim keyed on (default `sub`; `/a/b` is a JSON
    /// Pointer).
    pub claim: Option<String>,
    /// `bearer`: accepted `iss` values.
    pub issuers: Vec<String>,
    /// `bearer`: accepted `aud` values.
    pub audiences: Vec<String>,
    /// `bearer`: clock skew tolerated on `exp`/`nbf` (`"30s"`).
    pub leeway: Option<String>,
    /// `bearer`: reject tokens without `exp` (default true).
    pub require_exp: Option<bool>,
    /// `bearer`: the longest token accepted, in bytes (default 8192).
    pub max_token_len: Option<u64>,
    /// `composite`: the keys combined.
    pub parts: Vec<KeySpec>,
    /// `header`, `query`, `user`, `bearer`: what a request without a
    /// usable key gets, `reject` (default) or `skip` (unlimited).
    pub on_missing: Option<String>,
    /// Used when this key finds nothing.
    pub fallback: Option<Box<KeySpec>>,
}

/// Allow and deny lists (`settings::AccessList`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct AccessSpec {
    /// Ranges (or addresses) never limited.
    pub allow: Vec<String>,
    /// Ranges (or addresses) answered 403.
    pub deny: Vec<String>,
    /// Keys never limited.
    pub allow_keys: Vec<KeyValueSpec>,
    /// Keys answered 403.
    pub deny_keys: Vec<KeyValueSpec>,
    /// How the lists find the client address (a `client_ip` key; default:
    /// the layer's key when it is one, else the peer address).
    pub client_ip: Option<KeySpec>,
}

/// A key written in a file: exactly one of the three forms.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct KeyValueSpec {
    /// A client address, keyed as `client_ip` keys it.
    pub ip: Option<String>,
    /// An API key, hashed as `header` and `query` keys hash it.
    pub api_key: Option<String>,
    /// Any other key (a user id, a JWT claim), as its text.
    pub value: Option<String>,
}

/// A per-key quota (`Overrides::set_for`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct OverrideSpec {
    /// The policy's name (default: the default policy's).
    pub policy: Option<String>,
    /// Whose quota.
    pub key: Option<KeyValueSpec>,
    /// The quota instead of the policy's.
    pub quota: Option<String>,
    /// Until when, RFC 3339 (`"2026-12-31T23:59:59Z"`); none: until
    /// cleared.
    pub expires_at: Option<String>,
}

/// Where counters live.
///
/// The chain is built inside out: the `kind` backend, behind `failover`
/// (memory answers while it is down), behind `blocked_cache`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct BackendSpec {
    /// `memory` (default) or `redis`.
    pub kind: Option<String>,
    /// The memory backend, or the failover's fallback.
    pub memory: Option<MemorySpec>,
    /// The Redis backend (feature `redis`).
    pub redis: Option<RedisSpec>,
    /// In front of Redis: a circuit breaker, and memory while it is down.
    pub failover: Option<FailoverSpec>,
    /// Denied clients answered from process memory until their
    /// `Retry-After`.
    pub blocked_cache: Option<BlockedCacheSpec>,
}

/// The in-memory backend (`MemoryBackend::builder`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct MemorySpec {
    /// The most keys held (default 1 000 000).
    pub max_keys: Option<u64>,
    /// Shards, rounded up to a power of two (default: from the cores).
    pub shards: Option<u64>,
}

/// The Redis backend: exactly one of `url`, `cluster`, `sentinel`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct RedisSpec {
    /// One server: `redis://[user:password@]host[:port][/db]`,
    /// `rediss://` for TLS (feature `redis-tls`), `unix:///path`.
    pub url: Option<String>,
    /// Redis Cluster: some of its nodes' URLs.
    pub cluster: Vec<String>,
    /// Redis Sentinel (feature `redis-sentinel`).
    pub sentinel: Option<SentinelSpec>,
    /// The prefix of every key (default `tollgate:`).
    pub prefix: Option<String>,
    /// Per-call timeout (default `"250ms"`).
    pub timeout: Option<String>,
    /// Connection timeout (default `"2s"`).
    pub connect_timeout: Option<String>,
    /// Added to every key's TTL (default `"1s"`).
    pub ttl_margin: Option<String>,
    /// Start without waiting for the server (`connect_lazy`; not for a
    /// cluster).
    pub lazy: Option<bool>,
}

/// Redis through Sentinel.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct SentinelSpec {
    /// The sentinels' URLs.
    pub nodes: Vec<String>,
    /// The master's service name.
    pub service: Option<String>,
}

/// A failover chain (`Failover::builder(redis, memory)`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct FailoverSpec {
    /// The fallback: `memory` (the only one for now, and the default),
    /// set up by `backend.memory`.
    pub fallback: Option<String>,
    /// How long a call to the primary may take before the fallback
    /// answers (default `"1s"`; `"0s"`: the primary's own timeout).
    pub timeout: Option<String>,
    /// The most (policy, key) pairs recorded for write-back (default
    /// 100 000).
    pub max_reconcile_keys: Option<u64>,
    /// Consecutive failures that open the breaker (default 5).
    pub failure_threshold: Option<u64>,
    /// The first backoff (default `"1s"`).
    pub backoff: Option<String>,
    /// The longest backoff (default `"30s"`).
    pub max_backoff: Option<String>,
    /// Share of each backoff taken off at random, 0 to 100 (default 20).
    pub jitter_percent: Option<u64>,
}

/// The blocked-key cache (`BlockedCache::new`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct BlockedCacheSpec {
    /// Whether it is on (default true when the section is present).
    pub enabled: Option<bool>,
    /// The most denied sets remembered (default 100 000).
    pub capacity: Option<u64>,
}

/// Metrics (feature `metrics`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct MetricsSpec {
    /// Whether the layer counts (default true; `.metrics(..)`).
    pub enabled: Option<bool>,
    /// Share of a limit from which an allowed request counts as near it,
    /// above 0 and at most 1 (default 0.8).
    pub near_limit_ratio: Option<f64>,
    /// How often gauges are sampled (default `"5s"`, at least `"10ms"`).
    pub interval: Option<String>,
    /// The most limited keys per policy.
    pub top_keys: Option<TopKeysSpec>,
}

/// Top keys (`.top_keys(capacity, span)`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct TopKeysSpec {
    /// Counters per policy (default 64; 0 keeps none).
    pub capacity: Option<u64>,
    /// The span covered (default `"5m"`).
    pub span: Option<String>,
    /// Count admitted requests too (default false).
    pub admitted: Option<bool>,
}
