//! The failure story: a `Failover` chain (a primary behind a circuit
//! breaker and a timeout, an in-memory fallback) driven by a primary that
//! can be told to fail, hang, be slow or answer (from its own
//! `MemoryBackend`, standing for a shared store). Time is tokio's paused
//! clock, so timeouts and backoffs are exact.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use http::{Request, StatusCode};
use tokio::time::Instant;
use tower::ServiceExt;

use tollgate::backend::{
    Acquire, Backend, BackendError, CircuitBreaker, CircuitState, Failover, HealthStatus,
    MemoryBackend,
};
use tollgate::key::{self, Key};
use tollgate::{
    backend::Outcome,
    policy::{LimitSet, Policy},
    time::Nanos,
    FailMode, Quota, RateLimitLayer,
};

type BoxFuture = Pin<Box<dyn Future<Output = Result<Outcome, BackendError>> + Send>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Answers (asynchronously) from its own store.
    Healthy,
    /// Answers after a delay.
    Slow(Duration),
    /// Fails asynchronously, like a refused connection.
    Failing,
    /// Fails synchronously.
    Refusing,
    /// Never answers.
    Hanging,
}

/// A primary (or fallback) whose faults the test decides.
#[derive(Clone)]
struct Mock {
    inner: Arc<MockInner>,
}

struct MockInner {
    mode: Mutex<Mode>,
    absorb_fails: AtomicBool,
    calls: AtomicUsize,
    absorbs: AtomicUsize,
    store: MemoryBackend,
}

type Answer = Acquire<std::future::Ready<Result<Outcome, BackendError>>>;

impl Mock {
    fn new(mode: Mode) -> Self {
        Mock {
            inner: Arc::new(MockInner {
                mode: Mutex::new(mode),
                absorb_fails: AtomicBool::new(false),
                calls: AtomicUsize::new(0),
                absorbs: AtomicUsize::new(0),
                store: MemoryBackend::new(),
            }),
        }
    }

    fn set(&self, mode: Mode) {
        *self.inner.mode.lock().unwrap() = mode;
    }

    /// Calls made (absorbs included).
    fn calls(&self) -> usize {
        self.inner.calls.load(Ordering::SeqCst)
    }

    fn absorbs(&self) -> usize {
        self.inner.absorbs.load(Ordering::SeqCst)
    }

    fn store(&self) -> &MemoryBackend {
        &self.inner.store
    }

    fn answer(
        &self,
        set: &LimitSet,
        op: impl FnOnce(&MemoryBackend, &LimitSet) -> Answer + Send + 'static,
    ) -> Acquire<BoxFuture> {
        self.inner.calls.fetch_add(1, Ordering::SeqCst);
        let mode = *self.inner.mode.lock().unwrap();
        let store = self.inner.store.clone();
        let set = set.clone();
        match mode {
            Mode::Healthy => Acquire::pending(Box::pin(async move { op(&store, &set).await })),
            Mode::Slow(d) => Acquire::pending(Box::pin(async move {
                tokio::time::sleep(d).await;
                op(&store, &set).await
            })),
            Mode::Failing => Acquire::pending(Box::pin(async {
                Err(BackendError::Unavailable("connection refused".into()))
            })),
            Mode::Refusing => {
                Acquire::ready(Err(BackendError::Unavailable("connection refused".into())))
            }
            Mode::Hanging => Acquire::pending(Box::pin(std::future::pending())),
        }
    }
}

impl Backend for Mock {
    type Future = BoxFuture;

    fn acquire(&self, set: &LimitSet) -> Acquire<Self::Future> {
        self.answer(set, |b, s| b.acquire(s))
    }

    fn peek(&self, set: &LimitSet) -> Acquire<Self::Future> {
        self.answer(set, |b, s| b.peek(s))
    }

    fn reset(&self, set: &LimitSet) -> Acquire<Self::Future> {
        self.answer(set, |b, s| b.reset(s))
    }

    fn absorb(&self, set: &LimitSet) -> Acquire<Self::Future> {
        self.inner.absorbs.fetch_add(1, Ordering::SeqCst);
        if self.inner.absorb_fails.load(Ordering::SeqCst) {
            self.inner.calls.fetch_add(1, Ordering::SeqCst);
            return Acquire::ready(Err(BackendError::Unavailable("absorb refused".into())));
        }
        self.answer(set, |b, s| b.absorb(s))
    }

    fn refund(&self, set: &LimitSet, at: Nanos) -> Acquire<Self::Future> {
        self.answer(set, move |b, s| b.refund(s, at))
    }
}

fn policy(quota: Quota) -> Arc<Policy> {
    Arc::new(Policy::new("api", quota))
}

fn one(policy: &Arc<Policy>, key: &str) -> LimitSet {
    LimitSet::single(policy.clone(), Key::from(key), 1)
}

/// A breaker with exact backoffs (1 s, 2 s, 4 s ...).
fn exact_breaker(threshold: u32) -> CircuitBreaker {
    CircuitBreaker::builder()
        .failure_threshold(threshold)
        .backoff(Duration::from_secs(1), Duration::from_secs(30))
        .jitter_percent(0)
        .build()
}

fn chain(primary: &Mock, threshold: u32) -> Failover<Mock, MemoryBackend> {
    Failover::builder(primary.clone(), MemoryBackend::new())
        .breaker(exact_breaker(threshold))
        .timeout(Duration::from_millis(100))
        .build()
}

async fn allowed<B: Backend>(backend: &B, set: &LimitSet) -> bool {
    backend
        .acquire(set)
        .await
        .expect("the chain answers")
        .allowed()
}

/// Lets a background write-back run to its end (sleeping, so that paused
/// time can advance under a slow primary).
async fn settle<P: Backend, F: Backend>(failover: &Failover<P, F>) {
    for _ in 0..10_000 {
        if !failover.health().reconciling {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("the write-back did not finish");
}

#[tokio::test(start_paused = true)]
async fn with_the_primary_down_the_fallback_answers_and_enforces_the_quota() {
    for mode in [Mode::Failing, Mode::Refusing] {
        let primary = Mock::new(mode);
        let failover = Failover::new(primary.clone(), MemoryBackend::new());
        let p = policy(Quota::per_minute(3));
        let set = one(&p, "alice");
        for i in 0..3 {
            assert!(allowed(&failover, &set).await, "{mode:?}: request {i}");
        }
        let fourth = failover
            .acquire(&set)
            .await
            .expect("no error reaches the caller");
        assert!(!fourth.allowed(), "{mode:?}: the fallback's quota applies");
        assert!(fourth.decisions()[0].retry_after.is_some());
        assert_eq!(failover.fallback().len(), 1);
        // Another client has its own quota on the fallback.
        assert!(allowed(&failover, &one(&p, "bob")).await);
    }
}

#[tokio::test(start_paused = true)]
async fn a_hanging_primary_is_answered_by_the_fallback_within_the_timeout() {
    let primary = Mock::new(Mode::Hanging);
    let failover = chain(&primary, 5);
    let p = policy(Quota::per_minute(100));
    for i in 0..5 {
        let start = Instant::now();
        assert!(allowed(&failover, &one(&p, "alice")).await);
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_millis(100) && waited <= Duration::from_millis(101),
            "request {i} waited {waited:?}"
        );
    }
    // The fifth timeout opened the breaker: no more waiting at all.
    assert_eq!(failover.breaker().state(), CircuitState::Open);
    let start = Instant::now();
    assert!(allowed(&failover, &one(&p, "alice")).await);
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(primary.calls(), 5);
    let health = failover.health();
    assert_eq!(
        health.primary.last_error.as_deref(),
        Some("rate-limit backend timed out after 100ms")
    );
}

#[tokio::test(start_paused = true)]
async fn the_breaker_opens_after_five_consecutive_failures_and_stops_calling_the_primary() {
    let primary = Mock::new(Mode::Failing);
    // The defaults: five failures, 1 s first backoff (with jitter).
    let failover = Failover::new(primary.clone(), MemoryBackend::new());
    let p = policy(Quota::per_minute(1_000));
    for _ in 0..4 {
        allowed(&failover, &one(&p, "k")).await;
    }
    assert_eq!(failover.breaker().state(), CircuitState::Closed);
    assert_eq!(failover.breaker().consecutive_failures(), 4);
    for _ in 0..50 {
        assert!(allowed(&failover, &one(&p, "k")).await);
    }
    assert_eq!(failover.breaker().state(), CircuitState::Open);
    assert_eq!(primary.calls(), 5, "no call while open");
}

#[tokio::test(start_paused = true)]
async fn after_the_backoff_one_probe_goes_through_and_its_success_closes_the_breaker() {
    let primary = Mock::new(Mode::Failing);
    let failover = chain(&primary, 2);
    let p = policy(Quota::per_minute(1_000));
    let set = one(&p, "k");
    allowed(&failover, &set).await;
    allowed(&failover, &set).await;
    assert_eq!(failover.breaker().state(), CircuitState::Open);

    tokio::time::advance(Duration::from_millis(999)).await;
    allowed(&failover, &set).await;
    assert_eq!(primary.calls(), 2, "still backing off");

    tokio::time::advance(Duration::from_millis(1)).await;
    primary.set(Mode::Slow(Duration::from_millis(50)));
    let probe = failover.acquire(&set);
    assert_eq!(primary.calls(), 3, "the probe is made");
    assert_eq!(failover.breaker().state(), CircuitState::HalfOpen);
    // While the probe is out, everything else is answered locally.
    for _ in 0..10 {
        assert!(allowed(&failover, &set).await);
    }
    assert_eq!(primary.calls(), 3, "one probe only");

    assert!(probe.await.unwrap().allowed());
    assert_eq!(failover.breaker().state(), CircuitState::Closed);
    primary.set(Mode::Healthy);
    allowed(&failover, &set).await;
    assert_eq!(primary.calls(), 4, "closed: calls go to the primary again");
}

#[tokio::test(start_paused = true)]
async fn a_failed_probe_reopens_the_breaker_with_a_longer_backoff() {
    let primary = Mock::new(Mode::Failing);
    let failover = chain(&primary, 1);
    let p = policy(Quota::per_minute(1_000));
    let set = one(&p, "k");
    allowed(&failover, &set).await;
    let next = |f: &Failover<Mock, MemoryBackend>| {
        let primary = f.health().primary;
        primary
            .next_probe_at
            .map(|t| Duration::from(t.saturating_sub(primary.at)))
    };
    assert_eq!(next(&failover), Some(Duration::from_secs(1)));

    // 1 s later the probe fails: open again, now for 2 s.
    tokio::time::advance(Duration::from_secs(1)).await;
    allowed(&failover, &set).await;
    assert_eq!(primary.calls(), 2);
    assert_eq!(failover.breaker().state(), CircuitState::Open);
    assert_eq!(next(&failover), Some(Duration::from_secs(2)));

    tokio::time::advance(Duration::from_secs(1)).await;
    allowed(&failover, &set).await;
    assert_eq!(primary.calls(), 2, "1 s is not enough any more");
    tokio::time::advance(Duration::from_secs(1)).await;
    allowed(&failover, &set).await;
    assert_eq!(primary.calls(), 3, "probe after 2 s");
    assert_eq!(next(&failover), Some(Duration::from_secs(4)));

    // A successful probe closes it and resets the backoff.
    tokio::time::advance(Duration::from_secs(4)).await;
    primary.set(Mode::Healthy);
    allowed(&failover, &set).await;
    assert_eq!(failover.breaker().state(), CircuitState::Closed);
    primary.set(Mode::Failing);
    allowed(&failover, &set).await;
    assert_eq!(next(&failover), Some(Duration::from_secs(1)));
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_probe_lets_the_next_request_probe() {
    let primary = Mock::new(Mode::Failing);
    let failover = chain(&primary, 1);
    let p = policy(Quota::per_minute(1_000));
    let set = one(&p, "k");
    allowed(&failover, &set).await;
    tokio::time::advance(Duration::from_secs(1)).await;
    primary.set(Mode::Hanging);
    let probe = failover.acquire(&set);
    assert_eq!(failover.breaker().state(), CircuitState::HalfOpen);
    drop(probe); // the client went away
    primary.set(Mode::Healthy);
    assert!(allowed(&failover, &set).await);
    assert_eq!(primary.calls(), 3);
    assert_eq!(failover.breaker().state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn recovery_writes_back_what_the_fallback_admitted_during_the_outage() {
    let primary = Mock::new(Mode::Failing);
    let failover = chain(&primary, 1);
    let p = policy(Quota::per_minute(5));
    let alice = one(&p, "alice");
    for _ in 0..5 {
        assert!(allowed(&failover, &alice).await);
    }
    assert!(!allowed(&failover, &alice).await, "limited by the fallback");
    assert_eq!(failover.health().pending_reconciliation, 1);

    // The primary comes back; another client's request is the probe.
    primary.set(Mode::Healthy);
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(allowed(&failover, &one(&p, "bob")).await);
    assert_eq!(failover.breaker().state(), CircuitState::Closed);
    settle(&failover).await;
    assert_eq!(primary.absorbs(), 1);
    assert_eq!(failover.health().pending_reconciliation, 0);

    // Alice used her quota during the outage: the primary knows it now.
    let before = primary.calls();
    assert!(
        !allowed(&failover, &alice).await,
        "no fresh quota from the outage"
    );
    assert_eq!(primary.calls(), before + 1, "answered by the primary");
    let peek = primary.store().peek(&alice).await.unwrap();
    assert_eq!(peek.decisions()[0].remaining, 0);
    // A client that used nothing still has everything.
    let carol = one(&p, "carol");
    assert_eq!(
        primary.store().peek(&carol).await.unwrap().decisions()[0].remaining,
        5
    );
}

#[tokio::test(start_paused = true)]
async fn the_write_back_skips_consumption_that_already_expired_locally() {
    let primary = Mock::new(Mode::Failing);
    let failover = chain(&primary, 1);
    // GCRA 5/min: one unit every 12 s.
    let p = policy(Quota::per_minute(5));
    let alice = one(&p, "alice");
    let dave = one(&p, "dave");
    for _ in 0..5 {
        assert!(allowed(&failover, &alice).await);
        assert!(allowed(&failover, &dave).await);
    }
    // 30 s into the outage alice has 2 units back locally. Dave waits it
    // out: after 2 minutes he has everything back.
    primary.set(Mode::Healthy);
    tokio::time::advance(Duration::from_secs(30)).await;
    assert!(allowed(&failover, &one(&p, "probe")).await);
    settle(&failover).await;
    let mut admitted = 0;
    while allowed(&failover, &alice).await {
        admitted += 1;
    }
    assert_eq!(admitted, 2, "what the fallback would have given, not 5");

    let failover2 = chain(&primary, 1);
    primary.set(Mode::Failing);
    for _ in 0..5 {
        assert!(allowed(&failover2, &dave).await);
    }
    primary.set(Mode::Healthy);
    tokio::time::advance(Duration::from_secs(120)).await;
    let absorbs = primary.absorbs();
    assert!(allowed(&failover2, &one(&p, "probe")).await);
    settle(&failover2).await;
    assert_eq!(primary.absorbs(), absorbs, "nothing left to write back");
    for _ in 0..5 {
        assert!(allowed(&failover2, &dave).await);
    }
}

#[tokio::test(start_paused = true)]
async fn the_reconciliation_record_is_bounded_and_drops_the_least_recent_keys() {
    let primary = Mock::new(Mode::Failing);
    let failover = Failover::builder(primary.clone(), MemoryBackend::new())
        .breaker(exact_breaker(1))
        .max_reconcile_keys(3)
        .build();
    let p = policy(Quota::per_minute(1));
    for i in 0..5 {
        assert!(allowed(&failover, &one(&p, &format!("k{i}"))).await);
    }
    let health = failover.health();
    assert_eq!(health.pending_reconciliation, 3);
    assert_eq!(health.dropped_reconciliation, 2);
    assert!(health.to_string().contains("2 dropped"), "{health}");

    primary.set(Mode::Healthy);
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(allowed(&failover, &one(&p, "probe")).await);
    settle(&failover).await;
    // The two oldest were dropped: the primary never heard of them.
    assert!(allowed(&failover, &one(&p, "k0")).await);
    assert!(allowed(&failover, &one(&p, "k1")).await);
    for i in 2..5 {
        assert!(
            !allowed(&failover, &one(&p, &format!("k{i}"))).await,
            "k{i}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_failed_write_back_is_kept_and_retried_on_a_later_success() {
    let primary = Mock::new(Mode::Failing);
    let failover = chain(&primary, 1);
    let p = policy(Quota::per_minute(2));
    let alice = one(&p, "alice");
    assert!(allowed(&failover, &alice).await);
    assert!(allowed(&failover, &alice).await);

    primary.set(Mode::Healthy);
    primary.inner.absorb_fails.store(true, Ordering::SeqCst);
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(allowed(&failover, &one(&p, "probe")).await);
    settle(&failover).await;
    assert_eq!(primary.absorbs(), 1);
    assert_eq!(failover.health().pending_reconciliation, 1, "kept");
    assert_eq!(failover.breaker().state(), CircuitState::Closed);

    primary.inner.absorb_fails.store(false, Ordering::SeqCst);
    assert!(allowed(&failover, &one(&p, "probe")).await);
    settle(&failover).await;
    assert_eq!(primary.absorbs(), 2);
    assert_eq!(failover.health().pending_reconciliation, 0);
    assert!(!allowed(&failover, &alice).await);
}

#[tokio::test(start_paused = true)]
async fn a_healthy_primary_never_touches_the_memory_fallback() {
    let primary = Mock::new(Mode::Healthy);
    let failover = chain(&primary, 1);
    let p = policy(Quota::per_minute(3));
    for i in 0..10 {
        allowed(&failover, &one(&p, &format!("k{}", i % 4))).await;
        failover.peek(&one(&p, "k0")).await.unwrap();
    }
    assert!(failover.fallback().is_empty());
    assert_eq!(failover.health().pending_reconciliation, 0);
    assert_eq!(primary.calls(), 20);
}

#[tokio::test(start_paused = true)]
async fn reset_during_an_outage_resets_the_fallback_and_forgets_the_record() {
    let primary = Mock::new(Mode::Failing);
    let failover = chain(&primary, 1);
    let p = policy(Quota::per_minute(1));
    let alice = one(&p, "alice");
    assert!(allowed(&failover, &alice).await);
    assert!(!allowed(&failover, &alice).await);
    assert_eq!(failover.health().pending_reconciliation, 1);
    failover.reset(&alice).await.unwrap();
    assert_eq!(failover.health().pending_reconciliation, 0);
    assert!(allowed(&failover, &alice).await);
}

#[tokio::test(start_paused = true)]
async fn absorb_goes_to_the_primary_or_is_recorded_on_the_fallback() {
    let primary = Mock::new(Mode::Healthy);
    let failover = chain(&primary, 1);
    let p = policy(Quota::per_minute(2));
    let three = LimitSet::single(p.clone(), Key::from("k"), 3);
    let out = failover.absorb(&three).await.unwrap();
    assert!(!out.allowed(), "3 do not fit in 2, counted all the same");
    assert!(failover.fallback().is_empty());

    primary.set(Mode::Failing);
    failover
        .absorb(&LimitSet::single(p.clone(), Key::from("j"), 2))
        .await
        .unwrap();
    assert_eq!(failover.health().pending_reconciliation, 1);
}

#[tokio::test(start_paused = true)]
async fn a_refund_goes_to_the_primary_while_it_answers() {
    let primary = Mock::new(Mode::Healthy);
    let failover = chain(&primary, 1);
    let p = policy(Quota::per_minute(2));
    let alice = one(&p, "alice");
    let first = failover.acquire(&alice).await.unwrap();
    assert!(allowed(&failover, &alice).await);
    assert!(!allowed(&failover, &alice).await);
    let at = first.at().expect("the primary's instant");
    let back = failover.refund(&alice, at).await.unwrap();
    assert_eq!(back.decisions()[0].remaining, 1);
    assert_eq!(
        primary.store().peek(&alice).await.unwrap().decisions()[0].remaining,
        1
    );
    assert!(
        failover.fallback().is_empty(),
        "the fallback is not touched"
    );
    assert!(allowed(&failover, &alice).await);
    assert!(failover.store().is_none(), "the primary's (none here)");
}

#[tokio::test(start_paused = true)]
async fn during_an_outage_a_refund_goes_to_the_fallback_and_comes_off_the_record() {
    for (mode, threshold) in [(Mode::Failing, 5), (Mode::Failing, 1), (Mode::Hanging, 5)] {
        let primary = Mock::new(mode);
        // Threshold 1: the circuit is open, the primary is not even called.
        let failover = chain(&primary, threshold);
        let p = policy(Quota::per_minute(2));
        let alice = one(&p, "alice");
        let first = failover.acquire(&alice).await.unwrap();
        assert!(first.allowed());
        let second = failover.acquire(&alice).await.unwrap();
        assert!(!allowed(&failover, &alice).await, "{mode:?}");
        assert_eq!(failover.health().pending_reconciliation, 1);
        // Both refunded on the fallback: quota back, nothing to write back.
        let at = second.at().expect("the fallback's instant");
        let back = failover.refund(&alice, at).await.unwrap();
        assert_eq!(back.decisions()[0].remaining, 1, "{mode:?}");
        assert_eq!(failover.health().pending_reconciliation, 1, "{mode:?}");
        failover
            .refund(&alice, first.at().expect("instant"))
            .await
            .unwrap();
        assert_eq!(failover.health().pending_reconciliation, 0, "{mode:?}");
        assert_eq!(
            failover.fallback().peek(&alice).await.unwrap().decisions()[0].remaining,
            2,
            "{mode:?}"
        );
        // Recovery writes nothing back for alice.
        primary.set(Mode::Healthy);
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(allowed(&failover, &one(&p, "bob")).await);
        settle(&failover).await;
        assert_eq!(primary.absorbs(), 0, "{mode:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_zero_timeout_waits_for_the_primary_itself() {
    let primary = Mock::new(Mode::Slow(Duration::from_secs(3)));
    let failover = Failover::builder(primary.clone(), MemoryBackend::new())
        .timeout(Duration::ZERO)
        .build();
    let p = policy(Quota::per_minute(5));
    let start = Instant::now();
    assert!(allowed(&failover, &one(&p, "k")).await);
    assert_eq!(start.elapsed(), Duration::from_secs(3));
    assert!(failover.fallback().is_empty(), "answered by the primary");
}

#[tokio::test(start_paused = true)]
async fn health_reports_each_state() {
    let primary = Mock::new(Mode::Healthy);
    let failover = chain(&primary, 2);
    let p = policy(Quota::per_minute(100));
    let set = one(&p, "k");

    allowed(&failover, &set).await;
    let h = failover.health();
    assert_eq!(h.status, HealthStatus::Healthy);
    assert!(h.primary.is_healthy());
    assert!(h.primary.last_success_at.is_some());
    assert!(
        h.to_string()
            .starts_with("healthy; primary closed: 0 consecutive failures"),
        "{h}"
    );

    primary.set(Mode::Failing);
    allowed(&failover, &set).await;
    let h = failover.health();
    assert_eq!(
        h.status,
        HealthStatus::Healthy,
        "one failure does not open it"
    );
    assert_eq!(h.primary.state, CircuitState::Closed);
    assert_eq!(h.primary.consecutive_failures, 1);
    assert_eq!(
        h.primary.last_error.as_deref(),
        Some("rate-limit backend unavailable: connection refused")
    );

    allowed(&failover, &set).await;
    let h = failover.health();
    assert_eq!(h.status, HealthStatus::Degraded);
    assert_eq!(h.primary.state, CircuitState::Open);
    assert_eq!(h.primary.consecutive_failures, 2);
    assert!(h.primary.next_probe_at.is_some());
    assert!(h.fallback.is_healthy());
    assert_eq!(h.pending_reconciliation, 1);
    let line = h.to_string();
    assert!(line.starts_with("degraded; primary open: 2 consecutive failures, last error \"rate-limit backend unavailable: connection refused\""), "{line}");
    assert!(line.contains("next probe in 1.0s"), "{line}");
    assert!(line.ends_with("; 1 key pending reconciliation"), "{line}");

    tokio::time::advance(Duration::from_secs(1)).await;
    primary.set(Mode::Slow(Duration::from_millis(10)));
    let probe = failover.acquire(&set);
    let h = failover.health();
    assert_eq!(h.primary.state, CircuitState::HalfOpen);
    assert_eq!(h.status, HealthStatus::Degraded);
    assert!(
        h.to_string().starts_with("degraded; primary half-open"),
        "{h}"
    );

    probe.await.unwrap();
    let h = failover.health();
    assert_eq!(h.primary.state, CircuitState::Closed);
    assert_eq!(h.status, HealthStatus::Healthy);
    assert_eq!(h.primary.consecutive_failures, 0);
    settle(&failover).await;
    assert_eq!(failover.health().pending_reconciliation, 0);

    // Both down: the chain errs, and says so.
    let both = Failover::builder(Mock::new(Mode::Failing), Mock::new(Mode::Failing))
        .breaker(exact_breaker(1))
        .build();
    assert!(both.acquire(&set).await.is_err());
    let h = both.health();
    assert_eq!(h.status, HealthStatus::Unavailable);
    assert_eq!(h.fallback.consecutive_failures, 1);
    assert!(
        h.to_string().starts_with("unavailable; primary open"),
        "{h}"
    );
}

// ---- through the layer ----

fn app<B: Backend>(backend: B, fail_mode: FailMode) -> Router {
    let layer = RateLimitLayer::builder()
        .key(key::Global)
        .quota(Quota::per_minute(2))
        .backend(backend)
        .fail_mode(fail_mode)
        .build()
        .unwrap();
    Router::new()
        .route("/", get(|| async { "hello" }))
        .layer(layer)
}

async fn status(app: &Router) -> StatusCode {
    let req = Request::get("/").body(Body::empty()).unwrap();
    app.clone().oneshot(req).await.unwrap().status()
}

#[tokio::test(start_paused = true)]
async fn through_a_router_the_fallback_still_answers_429_during_an_outage() {
    let primary = Mock::new(Mode::Failing);
    let failover = Failover::new(primary.clone(), MemoryBackend::new());
    // Closed would answer 503 on any backend error: none reaches the layer.
    let app = app(failover.clone(), FailMode::Closed);
    assert_eq!(status(&app).await, StatusCode::OK);
    assert_eq!(status(&app).await, StatusCode::OK);
    let req = Request::get("/").body(Body::empty()).unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(res.headers()["x-ratelimit-limit"], "2");
    assert!(res.headers().contains_key("retry-after"));
    for _ in 0..5 {
        assert_eq!(status(&app).await, StatusCode::TOO_MANY_REQUESTS);
    }
    assert_eq!(failover.health().status, HealthStatus::Degraded);
}

#[tokio::test(start_paused = true)]
async fn through_a_router_a_hanging_primary_costs_at_most_the_timeout() {
    let primary = Mock::new(Mode::Hanging);
    let failover = Failover::builder(primary.clone(), MemoryBackend::new())
        .timeout(Duration::from_millis(250))
        .build();
    let app = app(failover, FailMode::Closed);
    let start = Instant::now();
    assert_eq!(status(&app).await, StatusCode::OK);
    assert!(
        start.elapsed() <= Duration::from_millis(251),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn a_bare_failing_primary_with_fail_mode_closed_is_answered_503() {
    let app_closed = app(Mock::new(Mode::Failing), FailMode::Closed);
    assert_eq!(status(&app_closed).await, StatusCode::SERVICE_UNAVAILABLE);
    let app_open = app(Mock::new(Mode::Failing), FailMode::Open);
    for _ in 0..5 {
        assert_eq!(status(&app_open).await, StatusCode::OK);
    }
}
