//! Configuration files (feature `config`): one schema for TOML and YAML,
//! named profiles, `TOLLGATE_*` environment overrides, and validation that
//! reports every problem at once, each with its path and a fix.
//!
//! ```
//! use tollgate::config::Config;
//!
//! let config = Config::from_toml_str(r#"
//!     [default]
//!     quota = "100/m"
//!
//!     [[routes]]
//!     pattern = "POST /login"
//!     quota = "10/x"
//! "#)?;
//! let problems = config.validate();
//! assert_eq!(
//!     problems[0].to_string(),
//!     r#"routes[0].quota: "10/x": unknown unit "x"; use s, m, h, d or a period such as 10s (ms for milliseconds)"#,
//! );
//! # Ok::<(), tollgate::config::LoadError>(())
//! ```
//!
//! Reading a file ([`Config::from_path`], [`Config::from_toml_str`],
//! [`Config::from_yaml_str`], or a [`Loader`]) fails with
//! [`LoadError::Invalid`] when the file cannot be read as the schema: a
//! syntax error, an unknown field (with a "did you mean"), a value of the
//! wrong type; every such problem is listed, with what validation finds in
//! the rest. A file that reads is then checked by [`Config::validate`]:
//! quotas, algorithms, patterns, ranges, URLs, names, and how the parts fit
//! together (a burst on a window algorithm, a route that an exemption
//! covers, two policies of one name with different quotas). Errors and
//! warnings are told apart ([`Severity`]); `tollgate check FILE` (feature
//! `cli`) prints them and exits 1 on any error.
//!
//! # A complete file
//!
//! Every section is optional except a limit somewhere (a `[default]`, a
//! group or a route). TOML and YAML take the same fields
//! (`examples/config/redis_failover.yaml` is a YAML file).
//!
//! ```
//! # let text = r##"
//! ## The layer's algorithm for every rule that names none: gcra (default),
//! ## token_bucket, leaky_bucket, leaky_bucket_queue (with max_delay),
//! ## fixed_window, fixed_window_staggered, sliding_window, sliding_window_log.
//! algorithm = "gcra"
//! headers = "both"              # both, legacy, ietf, draft6, draft7, none
//! reset_format = "delay_seconds" # or epoch_seconds
//! fail_mode = "open"            # open (pass) or closed (503) when the backend fails
//! shadow = false                # true: decide and report, never block
//! shadow_headers = false
//! sync_interval = "1s"          # shared overrides and lists reloaded this often
//! exempt = ["/health", "GET /static/*"]
//!
//! ## Who is limited. kind: client_ip (default), header, query, bearer,
//! ## user, route, method, global, composite.
//! [key]
//! kind = "client_ip"
//! trusted_proxies = ["10.0.0.0/8"]  # your proxies; never 0.0.0.0/0
//! header = "x-forwarded-for"        # the header they write
//! ipv6_prefix = 64
//!
//! ## The default policy: every request that is not exempt.
//! [default]
//! name = "global"
//! quota = "300/m"
//!
//! ## Groups: every path under the prefix, after the default.
//! [[groups]]
//! pattern = "/api/*"
//! name = "api"
//! quota = "100/m"
//! algorithm = "sliding_window"
//!
//! ## Tiers: the plan from a verified JWT claim.
//! [groups.tiers]
//! from_key = { kind = "bearer", secret_env = "JWT_SECRET", claim = "plan" }
//! quotas = { free = "100/m", pro = "2000/m", internal = "unlimited" }
//!
//! ## Routes: the most specific match, after the groups.
//! [[routes]]
//! pattern = "POST /login"
//! name = "login"
//! quota = "5/m"
//! count_only = { status = [401] }          # successes are refunded
//! key = { kind = "client_ip", trusted_proxies = ["10.0.0.0/8"] }
//!
//! [[routes]]
//! pattern = "POST /upload"
//! name = "upload"
//! quota = "10000000/m"
//! cost = "content_length"                  # the quota counts bytes
//! missing_cost = 1000000                   # a chunked upload pays 1 MB
//!
//! [[routes]]
//! pattern = "GET /search"
//! name = "search"
//! quota = "30/m"
//! shadow = true                            # reported, never blocking
//!
//! ## Requests with a missing or forged credential, per client.
//! [rejected_keys]
//! quota = "10/m"
//!
//! [access]
//! allow = ["192.0.2.0/24"]                 # never limited
//! deny = ["203.0.113.0/24"]                # 403
//! deny_keys = [{ value = "user-666" }]
//!
//! [[overrides]]
//! policy = "api"
//! key = { ip = "198.51.100.7" }
//! quota = "1000/m"
//! expires_at = "2099-12-31T23:59:59Z"
//!
//! [backend]
//! kind = "memory"                          # or "redis"
//! memory = { max_keys = 1000000 }
//!
//! [metrics]
//! enabled = true
//! near_limit_ratio = 0.8
//! interval = "5s"
//! top_keys = { capacity = 64, span = "5m" }
//!
//! ## Chosen with --profile production or TOLLGATE_PROFILE=production.
//! [profiles.production.backend]
//! kind = "redis"
//! redis = { url = "redis://redis.internal:6379/0", timeout = "100ms" }
//! failover = { timeout = "250ms" }
//! blocked_cache = { capacity = 100000 }
//! # "##;
//! # let config = tollgate::config::Config::from_toml_str(text)?;
//! # let errors: Vec<_> = config.validate().into_iter().filter(|d| d.is_error()).collect();
//! # assert!(errors.is_empty(), "{errors:?}");
//! # let production = tollgate::config::Loader::new().no_env().profile("production").load_str(text, tollgate::config::Format::Toml)?;
//! # assert_eq!(production.file().backend.as_ref().and_then(|b| b.kind.as_deref()), Some("redis"));
//! # Ok::<(), tollgate::config::LoadError>(())
//! ```
//!
//! # Profiles and the environment
//!
//! The file, then the chosen profile, then `TOLLGATE_*` variables: see
//! [`profiles`] for the exact rules. [`Config::sources`] says which one set
//! each value (`tollgate check --sources` prints it).
//!
//! # From a file to a layer
//!
//! Each section is one call of [`RateLimitLayerBuilder`](crate::RateLimitLayerBuilder)
//! (building a layer from a `Config` is the next step of this feature; the
//! schema holds nothing the builder cannot take):
//!
//! | section | builder call |
//! |---|---|
//! | `algorithm`, `max_delay` | [`.algorithm(..)`](crate::RateLimitLayerBuilder::algorithm) |
//! | `key` | [`.key(..)`](crate::RateLimitLayerBuilder::key): `ClientIp::new().trust(..).trust_loopback().trust_private().header(..).ipv6_prefix(..)`, `Header::new`, `Query::new`, `Bearer::hs256` / `rsa_pem` / `ec_pem` / `ed_pem` / `jwks_file` then `.algorithms`, `.claim`, `.issuer`, `.audience`, `.leeway`, `.require_exp`, `.max_token_len`; `user`: the extractor the application registers under `name`; `MatchedRoute`, `RequestMethod`, `Global`; `composite`: a tuple; `fallback`: `.or(..)`; `on_missing`: each extractor's `.on_missing(..)` |
//! | `default` | [`.policy(Rule::new(name, quota)..)`](crate::RateLimitLayerBuilder::policy) |
//! | `groups[i]`, `routes[i]` | [`.group(pattern, rule)`](crate::RateLimitLayerBuilder::group), [`.route(pattern, rule)`](crate::RateLimitLayerBuilder::route) |
//! | a rule's fields | [`Rule::new`](crate::policy::Rule::new), `.algorithm`, `.cost(n)` or `.cost(Cost::content_length_or(missing_cost))`, `.shadow`, `.key`, `.tiers(Tiers::from_key(..) / from_fn(header) / from_extension(registered).tier(..).unlimited(..))`, `.schedule(Schedule::new(zone, quota)?.on(days, start, end, q)?)`, `.count_only(\|res\| statuses.contains(res.status))` |
//! | `exempt` | [`.exempt(..)`](crate::RateLimitLayerBuilder::exempt) |
//! | `rejected_keys` | [`.rejected_keys(..)`](crate::RateLimitLayerBuilder::rejected_keys) |
//! | `access` | [`.access(AccessList::new().client_ip(..).allowing(..).denying(..))`](crate::RateLimitLayerBuilder::access); keys after `build()`: `allow_key` / `deny_key` |
//! | `overrides` | after `build()`: [`layer.overrides().set_for(policy, key, quota, expires_at)`](crate::settings::Overrides::set_for) |
//! | `headers`, `reset_format` | [`.headers(..)`](crate::RateLimitLayerBuilder::headers), [`.reset_format(..)`](crate::RateLimitLayerBuilder::reset_format) |
//! | `fail_mode`, `shadow`, `shadow_headers`, `sync_interval` | [`.fail_mode`](crate::RateLimitLayerBuilder::fail_mode), [`.shadow`](crate::RateLimitLayerBuilder::shadow), [`.shadow_headers`](crate::RateLimitLayerBuilder::shadow_headers), [`.sync_interval`](crate::RateLimitLayerBuilder::sync_interval) |
//! | `backend` | [`.backend(..)`](crate::RateLimitLayerBuilder::backend): `MemoryBackend::builder().max_keys(..).shards(..)`; `RedisBackend::builder(url)` / `cluster_builder(nodes)` / `sentinel_builder(nodes, service)` with `.prefix`, `.timeout`, `.connect_timeout`, `.ttl_margin`, then `connect()` or `connect_lazy()`; `failover`: `Failover::builder(redis, memory).timeout(..).max_reconcile_keys(..).breaker(CircuitBreaker::builder().failure_threshold(..).backoff(base, max).jitter_percent(..).build())`; `blocked_cache`: `BlockedCache::new(chain, capacity)` outermost |
//! | `metrics` | `.metrics(enabled)`, `.near_limit_ratio(..)`, `.metrics_interval(..)`, `.top_keys(capacity, span)`, `.top_keys_admitted(..)` (feature `metrics`) |
//!
//! A chain chosen at run time (memory, or Redis behind a failover and a
//! cache) is a different type each time: building it needs the boxed
//! backend the design reserves for configuration files.

mod diagnostic;
mod load;
mod path;
pub mod profiles;
pub mod schema;
mod validate;
mod values;

use std::fmt;
use std::path::{Path as FsPath, PathBuf};
use std::time::SystemTime;

use serde_json::Value;

pub use self::diagnostic::{Diagnostic, Severity};
pub use self::load::{Format, MAX_FILE_LEN};
use self::path::{Path, Seg};
use self::profiles::{Source, Sources, PROFILE_VAR};
use self::schema::File;

/// A configuration read from a file: the schema's values with the chosen
/// profile and the environment applied, and where each came from.
///
/// Reading checks the structure (fields and types); [`Config::validate`]
/// checks the rest.
#[derive(Debug, Clone)]
pub struct Config {
    file: File,
    profile: Option<String>,
    profiles: Vec<String>,
    sources: Sources,
    removed: Vec<Path>,
    notes: Vec<Diagnostic>,
    base_dir: Option<PathBuf>,
    env: Option<Vec<(String, String)>>,
}

impl Config {
    /// Reads the file at `path` (`.toml`, `.yaml` or `.yml`) with the
    /// profile `profile` (or, when `None`, the one `TOLLGATE_PROFILE`
    /// names, if any) and the process's `TOLLGATE_*` variables.
    ///
    /// # Errors
    ///
    /// [`LoadError`]: the file cannot be read, its extension is not one of
    /// the three, or its content does not fit the schema (every problem
    /// listed).
    pub fn from_path(path: impl AsRef<FsPath>, profile: Option<&str>) -> Result<Config, LoadError> {
        let loader = Loader::new();
        match profile {
            Some(p) => loader.profile(p),
            None => loader,
        }
        .load_path(path)
    }

    /// Reads TOML text, without profile or environment (the file's top
    /// level only).
    ///
    /// # Errors
    ///
    /// [`LoadError::Invalid`], listing every problem.
    pub fn from_toml_str(text: &str) -> Result<Config, LoadError> {
        Loader::new().no_env().load_str(text, Format::Toml)
    }

    /// Reads YAML text, without profile or environment.
    ///
    /// # Errors
    ///
    /// [`LoadError::Invalid`], listing every problem.
    pub fn from_yaml_str(text: &str) -> Result<Config, LoadError> {
        Loader::new().no_env().load_str(text, Format::Yaml)
    }

    /// The values read, profile and environment applied.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The profile applied, if any.
    pub fn profile(&self) -> Option<&str> {
        self.profile.as_deref()
    }

    /// The names of the file's profiles.
    pub fn profiles(&self) -> &[String] {
        &self.profiles
    }

    /// Which layer (file, profile, environment variable) set each value,
    /// by path (`backend.redis.url`), in path order.
    ///
    /// ```
    /// use tollgate::config::{profiles::Source, Format, Loader};
    ///
    /// let text = "[default]\nquota = \"10/s\"\n[profiles.prod.default]\nquota = \"100/s\"\n";
    /// let config = Loader::new()
    ///     .env([("TOLLGATE_DEFAULT__NAME", "global")])
    ///     .profile("prod")
    ///     .load_str(text, Format::Toml)?;
    /// let sources = config.sources();
    /// assert!(sources.contains(&("default.quota".into(), Source::Profile("prod".into()))));
    /// assert!(sources.contains(&("default.name".into(), Source::Env("TOLLGATE_DEFAULT__NAME".into()))));
    /// # Ok::<(), tollgate::config::LoadError>(())
    /// ```
    pub fn sources(&self) -> Vec<(String, Source)> {
        self.sources
            .iter()
            .map(|(path, source)| (path.to_string(), source.clone()))
            .collect()
    }

    /// Every problem: errors and warnings, each with its path and a fix
    /// (none means the configuration can be used as it is).
    ///
    /// ```
    /// use tollgate::config::Config;
    ///
    /// let config = Config::from_toml_str(r#"
    ///     exempt = ["/health"]
    ///     [key]
    ///     trusted_proxies = ["0.0.0.0/0"]
    ///     [[routes]]
    ///     pattern = "/health"
    ///     quota = "10/s burst 20"
    ///     algorithm = "fixed_window"
    /// "#)?;
    /// let found: Vec<String> = config.validate().iter().map(|d| format!("{d:#}")).collect();
    /// assert_eq!(found.len(), 3);
    /// assert!(found[0].starts_with("warning: key.trusted_proxies[0]: trusting \"0.0.0.0/0\""));
    /// assert!(found[1].starts_with("error: routes[0].pattern: this route is exempt"));
    /// assert!(found[2].starts_with("error: routes[0].quota: \"10/s burst 20\": fixed_window has no burst"));
    /// # Ok::<(), tollgate::config::LoadError>(())
    /// ```
    pub fn validate(&self) -> Vec<Diagnostic> {
        let lookup = |name: &str| match &self.env {
            Some(vars) => vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()),
            None => std::env::var(name).ok(),
        };
        let ctx = validate::Context {
            base_dir: self.base_dir.as_deref(),
            removed: &self.removed,
            sources: &self.sources,
            now: SystemTime::now(),
            env: &lookup,
        };
        let mut out = self.notes.clone();
        out.extend(validate::validate(&self.file, &ctx));
        out
    }
}

/// Reads configurations with a chosen profile and environment: what
/// [`Config::from_path`] does with the process's, for tests and tools.
///
/// ```
/// use tollgate::config::{Format, Loader};
///
/// let text = "[default]\nquota = \"10/s\"\n[profiles.dev.default]\nquota = \"1000/s\"\n";
/// let config = Loader::new()
///     .env([("TOLLGATE_PROFILE", "dev")])
///     .load_str(text, Format::Toml)?;
/// assert_eq!(config.profile(), Some("dev"));
/// assert_eq!(config.file().default.as_ref().and_then(|d| d.quota.as_deref()), Some("1000/s"));
/// # Ok::<(), tollgate::config::LoadError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct Loader {
    profile: Option<String>,
    env: Option<Vec<(String, String)>>,
    /// Where relative file names are read from: the file's directory.
    base_dir: Option<PathBuf>,
}

impl Loader {
    /// The process's environment, no profile unless `TOLLGATE_PROFILE`
    /// names one.
    pub fn new() -> Self {
        Loader::default()
    }

    /// Applies this profile (it wins over `TOLLGATE_PROFILE`).
    pub fn profile(mut self, name: impl Into<String>) -> Self {
        self.profile = Some(name.into());
        self
    }

    /// Reads these variables instead of the process's environment.
    pub fn env<K, V>(mut self, vars: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        self.env = Some(
            vars.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        );
        self
    }

    /// Reads no environment variable at all.
    pub fn no_env(self) -> Self {
        self.env(std::iter::empty::<(String, String)>())
    }

    /// Reads the file at `path`, its format from its extension; relative
    /// file names inside it (JWT keys) are relative to its directory.
    ///
    /// # Errors
    ///
    /// As [`Config::from_path`].
    pub fn load_path(&self, path: impl AsRef<FsPath>) -> Result<Config, LoadError> {
        let path = path.as_ref();
        let Some(format) = Format::from_path(path) else {
            return Err(LoadError::UnknownFormat {
                path: path.to_owned(),
            });
        };
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.to_owned(),
            source,
        })?;
        let text = String::from_utf8(bytes).map_err(|_| LoadError::Invalid {
            diagnostics: vec![
                Diagnostic::error("", "the file is not UTF-8 text").fix("save it as UTF-8")
            ],
        })?;
        let loader = Loader {
            base_dir: path.parent().map(FsPath::to_owned),
            ..self.clone()
        };
        loader.load_str(&text, format)
    }

    /// Reads `text` in `format`.
    ///
    /// # Errors
    ///
    /// [`LoadError::Invalid`], listing every problem.
    pub fn load_str(&self, text: &str, format: Format) -> Result<Config, LoadError> {
        let vars: Vec<(String, String)> = match &self.env {
            Some(vars) => vars.clone(),
            None => std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .filter(|(k, _)| k.starts_with(profiles::ENV_PREFIX))
                .collect(),
        };
        let mut tree = load::parse(text, format).map_err(|d| LoadError::Invalid {
            diagnostics: vec![d],
        })?;
        // The file as written, profiles included: paths as in the file.
        let whole = load::read(&mut tree, &|_| None);
        let mut problems = whole.problems;
        let names: Vec<String> = whole.file.profiles.keys().cloned().collect();
        for (name, profile) in &whole.file.profiles {
            if !profile.profiles.is_empty() {
                problems.push(
                    Diagnostic::error(
                        Path::default()
                            .key("profiles")
                            .key(name)
                            .key("profiles")
                            .to_string(),
                        "a profile cannot hold profiles",
                    )
                    .fix("move these profiles to the top level"),
                );
            }
        }
        let chosen = match (&self.profile, vars.iter().find(|(k, _)| k == PROFILE_VAR)) {
            (Some(p), _) => Some((p.clone(), "--profile")),
            (None, Some((_, p))) if !p.is_empty() => Some((p.clone(), PROFILE_VAR)),
            _ => None,
        };
        let mut selected = None;
        if let Some((name, chosen_by)) = chosen {
            if names.contains(&name) {
                selected = Some(name);
            } else {
                let list: Vec<&str> = names.iter().map(String::as_str).collect();
                let fix = match diagnostic::did_you_mean(&name, list.iter().copied()) {
                    Some(close) => format!("did you mean {close:?}?"),
                    None if list.is_empty() => "the file has no [profiles.NAME] section".to_owned(),
                    None => format!("the profiles are {}", diagnostic::one_of(&list)),
                };
                problems.push(
                    Diagnostic::error(
                        "profiles",
                        format!("no profile named {name:?} (chosen by {chosen_by})"),
                    )
                    .fix(fix),
                );
            }
        }
        let (mut config, more) = self.assemble(&tree, &whole.removed, selected.as_deref(), &vars);
        config.profiles = names.clone();
        problems.extend(more);
        // The other profiles are checked too, for what they set: a bad edit
        // in `production` shows when the file is checked anywhere.
        for name in names.iter().filter(|n| Some(*n) != selected.as_ref()) {
            let (other, _) = self.assemble(&tree, &whole.removed, Some(name), &vars);
            let origin = Some(Source::Profile(name.clone()));
            config
                .notes
                .extend(other.validate().into_iter().filter(|d| d.origin == origin));
        }
        if problems.is_empty() {
            return Ok(config);
        }
        problems.extend(config.validate());
        Err(LoadError::Invalid {
            diagnostics: problems,
        })
    }

    /// The configuration of `profile` (none: the file's top level) from
    /// the file's tree, with the environment; and the problems found on
    /// the way (variables, values they set).
    fn assemble(
        &self,
        tree: &Value,
        removed_in_file: &[Path],
        profile: Option<&str>,
        vars: &[(String, String)],
    ) -> (Config, Vec<Diagnostic>) {
        let mut effective = tree.clone();
        let mut overlay = None;
        if let Value::Object(map) = &mut effective {
            if let (Some(Value::Object(all)), Some(name)) = (map.remove("profiles"), profile) {
                overlay = all.get(name).cloned();
            }
        }
        let mut sources = Sources::default();
        sources.set(&Path::default(), &effective, &Source::File);
        let mut removed = Vec::new();
        for path in removed_in_file {
            let mut segs = path.iter();
            if segs.next() == Some(&Seg::Key("profiles".into())) {
                if let (Some(Seg::Key(name)), Some(p)) = (segs.next(), profile) {
                    if name == p {
                        removed.push(Path::from(segs.cloned().collect::<Vec<_>>()));
                    }
                }
            } else {
                removed.push(path.clone());
            }
        }
        if let (Some(name), Some(overlay)) = (profile, &overlay) {
            profiles::merge(&mut effective, overlay);
            profiles::record_profile(&mut sources, name, overlay);
        }
        let mut problems = Vec::new();
        let mut notes = Vec::new();
        for d in profiles::apply_env(&mut effective, vars, &mut sources) {
            if d.is_error() {
                problems.push(d);
            } else {
                notes.push(d);
            }
        }
        let describe = |path: &Path| match sources.of(path) {
            Some(source @ (Source::Env(_) | Source::Profile(_))) => Some(source.to_string()),
            _ => None,
        };
        let read = load::read(&mut effective, &describe);
        problems.extend(read.problems);
        removed.extend(read.removed);
        let config = Config {
            file: read.file,
            profile: profile.map(str::to_owned),
            profiles: Vec::new(),
            sources,
            removed,
            notes,
            base_dir: self.base_dir.clone(),
            env: self.env.clone(),
        };
        (config, problems)
    }
}

/// Why a configuration could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file's extension is not `.toml`, `.yaml` or `.yml`.
    #[error("{}: unknown format; name the file .toml, .yaml or .yml", path.display())]
    UnknownFormat {
        /// The file.
        path: PathBuf,
    },
    /// The content does not fit the schema. Every problem is listed:
    /// syntax, unknown fields and types first, then what validation found
    /// in the rest.
    #[error("{}", Listing(diagnostics))]
    Invalid {
        /// Errors and warnings, in the order found.
        diagnostics: Vec<Diagnostic>,
    },
}

impl LoadError {
    /// The problems found in the content (none for a file that could not
    /// be read at all).
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            LoadError::Invalid { diagnostics } => diagnostics,
            _ => &[],
        }
    }
}

/// One diagnostic a line, severity first.
struct Listing<'a>(&'a [Diagnostic]);

impl fmt::Display for Listing<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let errors = self.0.iter().filter(|d| d.is_error()).count();
        write!(
            f,
            "invalid configuration ({errors} error{})",
            if errors == 1 { "" } else { "s" }
        )?;
        for d in self.0 {
            write!(f, "\n{d:#}")?;
        }
        Ok(())
    }
}
