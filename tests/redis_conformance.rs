//! The conformance table against a real Redis: the Lua scripts give the
//! same decisions and header values as the memory backend, to the
//! nanosecond.
#![cfg(feature = "redis")]

mod conformance;
mod support;

use conformance::Op;
use tollgate::backend::RedisBackend;
use tollgate::{LimitSet, Nanos, Outcome};

fn run(
    rt: &tokio::runtime::Runtime,
    backend: &RedisBackend,
    op: Op,
    set: &LimitSet,
    now: Nanos,
) -> Outcome {
    let call = async {
        match op {
            Op::Acquire => backend.acquire_at(set, now).await,
            Op::Refund => backend.refund_at(set, now).await,
        }
    };
    rt.block_on(call).expect("redis call")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

#[test]
fn redis_backend_passes_the_conformance_table() {
    let server = redis_or_skip!();
    let rt = runtime();
    let backend = rt
        .block_on(RedisBackend::connect(&server.url()))
        .expect("connect");
    conformance::run_table(|op, set, now| run(&rt, &backend, op, set, now));
}

#[test]
fn redis_backend_passes_the_conformance_table_with_a_custom_prefix() {
    let server = redis_or_skip!();
    let rt = runtime();
    let backend = rt
        .block_on(
            RedisBackend::builder(&server.url())
                .prefix("other-app:")
                .connect(),
        )
        .expect("connect");
    conformance::run_table(|op, set, now| run(&rt, &backend, op, set, now));
}
