//! The conformance table against a real Redis: the Lua scripts give the
//! same decisions and header values as the memory backend, to the
//! nanosecond.
#![cfg(feature = "redis")]

mod conformance;
mod support;

use tollgate::backend::RedisBackend;

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
    conformance::run_table_on_redis(&rt, &backend);
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
    conformance::run_table_on_redis(&rt, &backend);
}
