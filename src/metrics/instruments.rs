//! The handles the engine counts with: registered with the installed
//! recorder on first use (so a recorder installed after the layer is built,
//! but before it serves, is the one used), then an atomic add each.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use metrics::{Counter, Histogram};

use super::names;
use super::top::{TopKey, TopKeys};
use crate::backend::{BackendError, ErrorKind};
use crate::key::Key;
use crate::policy::Policy;
use crate::time::SharedClock;
use crate::Decision;

/// The share of a limit at or over which an allowed decision counts as
/// near the limit, by default (Envoy's `near_limit` ratio).
pub const DEFAULT_NEAR_LIMIT_RATIO: f64 = 0.8;

/// How a limit decision ended, as the `outcome` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Allowed,
    Denied,
    ShadowDenied,
    FailOpen,
    FailClosed,
}

/// A request settled before any limit, as the `outcome` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settled {
    Unlimited,
    Forbidden,
    KeyRejected(http::StatusCode),
}

/// A backend operation, as the `operation` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operation {
    Acquire,
}

impl Operation {
    const fn as_str(self) -> &'static str {
        match self {
            Operation::Acquire => "acquire",
        }
    }
}

/// Policy ids are already hashes of the policy's name.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type ById<V> = HashMap<u64, V, BuildHasherDefault<IdHasher>>;

/// One policy's counters.
struct PolicyCounters {
    allowed: Counter,
    denied: Counter,
    shadow_denied: Counter,
    fail_open: Counter,
    fail_closed: Counter,
    near_limit: Counter,
}

/// Gives the installed recorder every metric's help text, once per
/// process (the Prometheus exporter prints it as `# HELP`).
fn describe() {
    static DESCRIBED: OnceLock<()> = OnceLock::new();
    DESCRIBED.get_or_init(|| {
        for metric in names::ALL {
            match metric.kind {
                names::Kind::Counter => metrics::describe_counter!(metric.name, metric.help),
                names::Kind::Gauge => metrics::describe_gauge!(metric.name, metric.help),
                names::Kind::Histogram => {
                    metrics::describe_histogram!(metric.name, metrics::Unit::Seconds, metric.help)
                }
            }
        }
    });
}

impl PolicyCounters {
    fn register(policy: &str) -> Self {
        describe();
        let decision = |outcome: &'static str| metrics::counter!(names::DECISIONS, "policy" => policy.to_owned(), "outcome" => outcome);
        PolicyCounters {
            allowed: decision("allowed"),
            denied: decision("denied"),
            shadow_denied: decision("shadow_denied"),
            fail_open: decision("fail_open"),
            fail_closed: decision("fail_closed"),
            near_limit: metrics::counter!(names::NEAR_LIMIT, "policy" => policy.to_owned()),
        }
    }

    fn of(&self, outcome: Outcome) -> &Counter {
        match outcome {
            Outcome::Allowed => &self.allowed,
            Outcome::Denied => &self.denied,
            Outcome::ShadowDenied => &self.shadow_denied,
            Outcome::FailOpen => &self.fail_open,
            Outcome::FailClosed => &self.fail_closed,
        }
    }
}

/// A policy's name, its counters (registered on first use) and its most
/// limited keys.
struct PolicyEntry {
    name: Arc<str>,
    counters: OnceLock<PolicyCounters>,
    top: Option<TopKeys>,
}

impl PolicyEntry {
    fn new(name: Arc<str>, top: Option<&TopKeysOptions>) -> Self {
        PolicyEntry {
            name,
            counters: OnceLock::new(),
            top: top.map(|o| TopKeys::new(o.capacity, o.span)),
        }
    }

    fn counters(&self) -> &PolicyCounters {
        self.counters
            .get_or_init(|| PolicyCounters::register(&self.name))
    }
}

/// Counters of requests settled before any limit, under the layer's
/// default policy name.
struct SettledCounters {
    unlimited: Counter,
    forbidden: Counter,
    key_rejected: Counter,
}

/// The backend's instruments.
struct BackendInstruments {
    acquire: Histogram,
}

/// Everything the engine counts with.
pub(crate) struct Instruments {
    /// The policies known when the layer was built: read without a lock.
    known: ById<PolicyEntry>,
    /// Any other (a policy the front end made up later): behind a lock.
    others: Mutex<ById<Arc<PolicyEntry>>>,
    default_policy: Arc<str>,
    settled: OnceLock<SettledCounters>,
    /// Rejections by status: few distinct statuses, registered as seen.
    rejections: Mutex<HashMap<u16, Counter>>,
    backend_kind: &'static str,
    backend: OnceLock<BackendInstruments>,
    errors: Mutex<HashMap<ErrorKind, Counter>>,
    near_limit_ratio: f64,
    top: Option<TopKeysOptions>,
    clock: SharedClock,
}

impl Instruments {
    /// Instruments for `policies` (more may come), requests settled
    /// before any limit counted under `default_policy`, a backend of
    /// `backend_kind`.
    pub(crate) fn new<'a>(
        policies: impl IntoIterator<Item = &'a Policy>,
        default_policy: Arc<str>,
        backend_kind: &'static str,
        options: &MetricsOptions,
        clock: SharedClock,
    ) -> Self {
        let mut known = ById::default();
        for policy in policies {
            known.entry(policy.id()).or_insert_with(|| {
                PolicyEntry::new(policy.shared_name().clone(), options.top.as_ref())
            });
        }
        Instruments {
            known,
            others: Mutex::new(ById::default()),
            default_policy,
            settled: OnceLock::new(),
            rejections: Mutex::new(HashMap::new()),
            backend_kind,
            backend: OnceLock::new(),
            errors: Mutex::new(HashMap::new()),
            near_limit_ratio: options.near_limit_ratio,
            top: options.top.clone(),
            clock,
        }
    }

    /// Counts one limit's decision for `key`; a denial (or with
    /// `top_keys_admitted`, any decision) also goes into the policy's top
    /// keys.
    #[inline]
    pub(crate) fn decision(
        &self,
        policy: &Policy,
        key: &Key,
        outcome: Outcome,
        decision: Option<&Decision>,
    ) {
        let counted = |entry: &PolicyEntry| {
            let counters = entry.counters();
            counters.of(outcome).increment(1);
            if let Some(d) = decision.filter(|d| outcome == Outcome::Allowed && d.limit > 0) {
                let used = d.limit.saturating_sub(d.remaining);
                if used as f64 >= self.near_limit_ratio * d.limit as f64 {
                    counters.near_limit.increment(1);
                }
            }
            if let (Some(top), Some(options)) = (&entry.top, &self.top) {
                if outcome == Outcome::Denied || options.admitted {
                    let label = || (options.label)(key);
                    top.record_with(key.stable_hash(), label, 1, self.clock.now());
                }
            }
        };
        match self.known.get(&policy.id()) {
            Some(entry) => counted(entry),
            None => {
                let entry = {
                    let mut others = self.others.lock().unwrap_or_else(PoisonError::into_inner);
                    others
                        .entry(policy.id())
                        .or_insert_with(|| {
                            Arc::new(PolicyEntry::new(
                                policy.shared_name().clone(),
                                self.top.as_ref(),
                            ))
                        })
                        .clone()
                };
                counted(&entry);
            }
        }
    }

    /// Counts a request settled before any limit.
    pub(crate) fn settled(&self, settled: Settled) {
        let counters = self.settled.get_or_init(|| {
            let counter = |outcome: &'static str| {
                metrics::counter!(names::DECISIONS, "policy" => self.default_policy.to_string(), "outcome" => outcome)
            };
            SettledCounters {
                unlimited: counter("unlimited"),
                forbidden: counter("forbidden"),
                key_rejected: counter("key_rejected"),
            }
        });
        match settled {
            Settled::Unlimited => counters.unlimited.increment(1),
            Settled::Forbidden => counters.forbidden.increment(1),
            Settled::KeyRejected(status) => {
                counters.key_rejected.increment(1);
                let mut rejections = self
                    .rejections
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                rejections
                    .entry(status.as_u16())
                    .or_insert_with(|| {
                        metrics::counter!(
                            names::KEY_REJECTIONS,
                            "policy" => self.default_policy.to_string(),
                            "status" => status.as_u16().to_string()
                        )
                    })
                    .increment(1);
            }
        }
    }

    /// Records how long a networked backend call took.
    pub(crate) fn backend_call(&self, operation: Operation, took: Duration) {
        let backend = self.backend.get_or_init(|| BackendInstruments {
            acquire: metrics::histogram!(
                names::BACKEND_DURATION,
                "layer" => self.default_policy.to_string(),
                "backend" => self.backend_kind,
                "operation" => Operation::Acquire.as_str()
            ),
        });
        match operation {
            Operation::Acquire => backend.acquire.record(took.as_secs_f64()),
        }
    }

    /// The `n` keys of `policy` (by name) with the most records in the
    /// top-keys span; empty for a policy this layer does not know or with
    /// top keys off.
    pub(crate) fn top_keys(&self, policy: &str, n: usize) -> Vec<TopKey> {
        let now = self.clock.now();
        let in_known = self.known.values().find(|e| &*e.name == policy);
        if let Some(top) = in_known.and_then(|e| e.top.as_ref()) {
            return top.top(n, now);
        }
        let others = self.others.lock().unwrap_or_else(PoisonError::into_inner);
        others
            .values()
            .find(|e| &*e.name == policy)
            .and_then(|e| e.top.as_ref())
            .map_or_else(Vec::new, |top| top.top(n, now))
    }

    /// Every policy with top keys, and its `n` heaviest keys now.
    pub(crate) fn every_top(&self, n: usize) -> Vec<(Arc<str>, Vec<TopKey>)> {
        let now = self.clock.now();
        let others = self.others.lock().unwrap_or_else(PoisonError::into_inner);
        self.known
            .values()
            .chain(others.values().map(|e| &**e))
            .filter_map(|e| Some((e.name.clone(), e.top.as_ref()?.top(n, now))))
            .collect()
    }

    /// The layer's name: its default policy's (the `layer` label).
    pub(crate) fn layer(&self) -> &Arc<str> {
        &self.default_policy
    }

    /// Counts a failed backend call by kind.
    pub(crate) fn backend_error(&self, error: &BackendError) {
        let kind = error.kind();
        let mut errors = self.errors.lock().unwrap_or_else(PoisonError::into_inner);
        errors
            .entry(kind)
            .or_insert_with(|| {
                metrics::counter!(
                    names::BACKEND_ERRORS,
                    "layer" => self.default_policy.to_string(),
                    "backend" => self.backend_kind,
                    "kind" => kind.as_str()
                )
            })
            .increment(1);
    }
}

/// How a layer counts: built by the builder's metrics methods.
#[derive(Clone)]
pub(crate) struct MetricsOptions {
    /// Whether the layer counts at all.
    pub(crate) enabled: bool,
    pub(crate) near_limit_ratio: f64,
    /// How often the gauges (table fill, circuit state…) are sampled.
    pub(crate) interval: Duration,
    /// The top limited keys, if kept.
    pub(crate) top: Option<TopKeysOptions>,
}

/// A label for a key in the top keys: never a credential.
pub(crate) type KeyLabel = Arc<dyn Fn(&Key) -> Option<String> + Send + Sync>;

/// How the top limited keys are kept.
#[derive(Clone)]
pub(crate) struct TopKeysOptions {
    pub(crate) capacity: usize,
    pub(crate) span: Duration,
    /// Admitted requests too, not only denials.
    pub(crate) admitted: bool,
    pub(crate) label: KeyLabel,
}

/// Counters per policy in the top keys, by default.
pub const DEFAULT_TOP_KEYS_CAPACITY: usize = 64;

/// The span the top keys cover, by default.
pub const DEFAULT_TOP_KEYS_SPAN: Duration = Duration::from_secs(300);

/// The default label: a client address (a key made by `Key::from_ip`);
/// nothing for any other key, which may be a credential.
pub(crate) fn ip_label(key: &Key) -> Option<String> {
    key.as_ip().map(|ip| ip.to_string())
}

/// How often the sampled gauges are refreshed, by default.
pub const DEFAULT_METRICS_INTERVAL: Duration = Duration::from_secs(5);

impl Default for MetricsOptions {
    fn default() -> Self {
        MetricsOptions {
            enabled: true,
            near_limit_ratio: DEFAULT_NEAR_LIMIT_RATIO,
            interval: DEFAULT_METRICS_INTERVAL,
            top: Some(TopKeysOptions {
                capacity: DEFAULT_TOP_KEYS_CAPACITY,
                span: DEFAULT_TOP_KEYS_SPAN,
                admitted: false,
                label: Arc::new(ip_label),
            }),
        }
    }
}
