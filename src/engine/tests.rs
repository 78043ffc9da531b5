use super::*;
use crate::backend::MemoryBackend;
use crate::key::Key;
use crate::problem::QUOTA_EXCEEDED_TYPE;
use crate::Quota;

#[test]
fn quota_exceeded_problem_names_the_violated_policies() {
    let policy = Arc::new(Policy::new("login", Quota::per_minute(5)));
    let d = Decision::deny(5, 0, Nanos::from_secs(60), Some(Nanos::from_millis(11_500)));
    let mut violated = SmallVec::new();
    violated.push((policy, d));
    let denial = Denial {
        violated,
        retry_after: Some(Nanos::from_millis(11_500)),
    };
    let p = denial.problem();
    assert_eq!(p.status(), http::StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(p.type_uri(), QUOTA_EXCEEDED_TYPE);
    let json = p.to_json();
    assert!(json.contains(r#""violated-policies":["login"]"#), "{json}");
    assert!(json.contains("Retry in 12 s"), "{json}");
}

fn two_levels(shadow_headers: bool) -> (Engine<MemoryBackend>, LimitSet) {
    let engine = Engine::new(MemoryBackend::new(), FailMode::Open, false, shadow_headers);
    let enforced = Arc::new(Policy::new("enforced", Quota::per_minute(5)));
    let shadow = Arc::new(Policy::new("beta", Quota::per_minute(1)).with_shadow(true));
    let mut set = LimitSet::new();
    set.push(enforced, Key::from("k"), 1);
    set.push(shadow, Key::from("k"), 1);
    (engine, set)
}

fn run(engine: &Engine<MemoryBackend>, set: &LimitSet) -> Verdict {
    let result = engine
        .acquire(set)
        .into_state()
        .unwrap_or_else(|_| Err(BackendError::Unavailable("pending".into())));
    engine.decide(
        result,
        set.clone(),
        Settlements::new(),
        &tracing::Span::none(),
    )
}

fn reported_names(verdict: &Verdict) -> Vec<String> {
    let items = match verdict {
        Verdict::Pass {
            passed: Some(p), ..
        } => &p.reported.items,
        Verdict::Deny { reported, .. } => &reported.items,
        _ => panic!("nothing reported"),
    };
    items.iter().map(|(p, _)| p.name().to_owned()).collect()
}

#[test]
fn a_shadow_level_is_left_out_of_what_the_client_is_shown() {
    let (engine, set) = two_levels(false);
    run(&engine, &set);
    // The shadow level is now over its limit; the request still passes.
    let verdict = run(&engine, &set);
    assert!(matches!(verdict, Verdict::Pass { .. }));
    assert_eq!(reported_names(&verdict), ["enforced"]);
}

#[test]
fn shadow_headers_show_a_shadow_level_too() {
    let (engine, set) = two_levels(true);
    run(&engine, &set);
    let verdict = run(&engine, &set);
    assert_eq!(reported_names(&verdict), ["enforced", "beta"]);
}

#[test]
fn a_shadow_level_does_not_lengthen_the_wait_of_a_denial() {
    let engine = Engine::new(MemoryBackend::new(), FailMode::Open, false, false);
    let enforced = Arc::new(Policy::new("second", Quota::per_second(1)));
    let shadow = Arc::new(Policy::new("day", Quota::per_day(1)).with_shadow(true));
    let mut set = LimitSet::new();
    set.push(enforced, Key::from("k"), 1);
    set.push(shadow, Key::from("k"), 1);
    run(&engine, &set);
    let Verdict::Deny { denial, .. } = run(&engine, &set) else {
        panic!("the second request within a second is denied");
    };
    assert_eq!(denial.violated_policies().collect::<Vec<_>>(), ["second"]);
    let wait = denial.retry_after().expect("admissible later");
    assert!(wait <= Nanos::SECOND, "{wait:?}");
}

/// `check_one` gives the verdict `decide` gives the same one-limit set,
/// for every algorithm, allowed and denied, with shadow policies, in
/// shadow mode, and with reporting off.
#[test]
fn check_one_decides_as_the_set_does() {
    use crate::time::ManualClock;
    use crate::Algorithm;

    fn summary(verdict: &Verdict) -> String {
        match verdict {
            Verdict::Pass { passed, delay } => {
                let items = passed.as_ref().map(|p| {
                    p.reported
                        .items
                        .iter()
                        .map(|(p, d)| (p.name().to_owned(), *d))
                        .collect::<Vec<_>>()
                });
                format!("pass {delay:?} {items:?}")
            }
            Verdict::Deny { denial, reported } => format!(
                "deny {:?} {:?} {:?}",
                denial
                    .decisions()
                    .map(|(p, d)| (p.name(), *d))
                    .collect::<Vec<_>>(),
                denial.retry_after(),
                reported
                    .items
                    .iter()
                    .map(|(p, d)| (p.name().to_owned(), *d))
                    .collect::<Vec<_>>()
            ),
            Verdict::Unavailable => "unavailable".to_owned(),
        }
    }

    let algorithms = [
        Algorithm::Gcra,
        Algorithm::TokenBucket,
        Algorithm::LeakyBucket,
        Algorithm::LeakyBucketQueue {
            max_delay: std::time::Duration::from_millis(500),
        },
        Algorithm::FixedWindow,
        Algorithm::FixedWindowStaggered,
        Algorithm::SlidingWindow,
        Algorithm::SlidingWindowLog,
    ];
    let span = tracing::Span::none();
    for algorithm in algorithms {
        for (shadow_policy, shadow_engine, shadow_headers, report) in [
            (false, false, false, true),
            (true, false, false, true),
            (true, false, true, true),
            (false, true, false, true),
            (false, true, true, true),
            (false, false, false, false),
        ] {
            let engine = |clock: &ManualClock| {
                let backend = MemoryBackend::builder().clock(clock.clone()).build();
                let engine = Engine::new(backend, FailMode::Open, shadow_engine, shadow_headers);
                if report {
                    engine
                } else {
                    engine.without_report()
                }
            };
            let start = Nanos::from_secs(1_000_000);
            let (quick_clock, set_clock) = (
                ManualClock::starting_at(start),
                ManualClock::starting_at(start),
            );
            let (quick, by_set) = (engine(&quick_clock), engine(&set_clock));
            let policy = Arc::new(
                Policy::new("p", Quota::per_second(3))
                    .with_algorithm(algorithm)
                    .with_shadow(shadow_policy),
            );
            let key = Key::from("k");
            for step in 0..12u64 {
                let cost = 1 + step % 2;
                let a = quick
                    .check_one(&policy, &key, cost, &span)
                    .expect("the memory backend answers at once");
                let set = LimitSet::single(policy.clone(), key.clone(), cost);
                let b = run(&by_set, &set);
                let case = format!(
                    "{algorithm:?} shadow policy {shadow_policy} engine {shadow_engine} \
                     headers {shadow_headers} report {report} step {step}"
                );
                assert_eq!(summary(&a), summary(&b), "{case}");
                for clock in [&quick_clock, &set_clock] {
                    clock.advance(std::time::Duration::from_millis(130));
                }
            }
        }
    }
}
