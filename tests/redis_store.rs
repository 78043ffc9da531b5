//! The Redis settings store (`RedisBackend::settings`) against a real
//! `redis-server`: round trips, versions, two app servers sharing maps,
//! odd names, junk written by others, failures bounded by the timeout, and
//! a Redis Cluster.
#![cfg(feature = "redis")]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::Commands;

use tollgate::backend::RedisBackend;
use tollgate::settings::{SettingsStore, StoreError};

async fn backend(url: &str) -> RedisBackend {
    RedisBackend::connect(url).await.expect("connect")
}

fn sorted(mut entries: Vec<(String, String)>) -> Vec<(String, String)> {
    entries.sort();
    entries
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    sorted(
        items
            .iter()
            .map(|(f, v)| ((*f).to_owned(), (*v).to_owned()))
            .collect(),
    )
}

async fn load(store: &Arc<dyn SettingsStore>, map: &str) -> (u64, Vec<(String, String)>) {
    let (version, entries) = store.load(map).await.expect("load");
    (version, sorted(entries))
}

#[tokio::test]
async fn put_and_remove_round_trip_and_move_the_version() {
    let server = redis_or_skip!();
    let store = server.backend().await.settings();

    assert_eq!(store.version("overrides").await.expect("version"), 0);
    assert_eq!(load(&store, "overrides").await, (0, vec![]));

    store.put("overrides", "alice", "100").await.expect("put");
    store.put("overrides", "bob", "5").await.expect("put");
    assert_eq!(store.version("overrides").await.expect("version"), 2);
    assert_eq!(
        load(&store, "overrides").await,
        (2, pairs(&[("alice", "100"), ("bob", "5")]))
    );

    // Overwriting a field moves the version too.
    store.put("overrides", "alice", "200").await.expect("put");
    assert_eq!(
        load(&store, "overrides").await,
        (3, pairs(&[("alice", "200"), ("bob", "5")]))
    );

    store.remove("overrides", "alice").await.expect("remove");
    assert_eq!(load(&store, "overrides").await, (4, pairs(&[("bob", "5")])));
    // Removing an absent field changes nothing but still moves the version.
    store.remove("overrides", "nobody").await.expect("remove");
    assert_eq!(load(&store, "overrides").await, (5, pairs(&[("bob", "5")])));
    store.remove("overrides", "bob").await.expect("remove");
    assert_eq!(load(&store, "overrides").await, (6, vec![]));
    assert_eq!(store.version("overrides").await.expect("version"), 6);

    // Maps are independent.
    assert_eq!(store.version("deny").await.expect("version"), 0);
    assert_eq!(load(&store, "deny").await, (0, vec![]));
}

#[tokio::test]
async fn keys_are_under_the_prefix_and_share_a_hash_tag() {
    let server = redis_or_skip!();
    let backend = RedisBackend::builder(&server.url())
        .prefix("myapp:")
        .connect()
        .await
        .expect("connect");
    let store = backend.settings();
    store.put("allow", "10.0.0.0/8", "1").await.expect("put");
    let mut raw = server.client();
    let hash: Vec<(String, String)> = raw
        .hgetall("myapp:{settings:allow}")
        .expect("HGETALL the hash");
    assert_eq!(hash, pairs(&[("10.0.0.0/8", "1")]));
    let version: u64 = raw.get("myapp:{settings:allow}:v").expect("GET version");
    assert_eq!(version, 1);
    let mut keys: Vec<String> = raw.keys("*").expect("KEYS");
    keys.sort();
    assert_eq!(keys, ["myapp:{settings:allow}", "myapp:{settings:allow}:v"]);
    // Settings never expire.
    let ttl: i64 = raw.ttl("myapp:{settings:allow}").expect("TTL");
    assert_eq!(ttl, -1);
}

#[tokio::test]
async fn two_app_servers_on_one_redis_see_each_others_writes() {
    let server = redis_or_skip!();
    let a = server.backend().await.settings();
    let b = server.backend().await.settings();

    a.put("overrides", "alice", "100").await.expect("put");
    assert_eq!(b.version("overrides").await.expect("version"), 1);
    assert_eq!(load(&b, "overrides").await, (1, pairs(&[("alice", "100")])));

    b.put("overrides", "bob", "7").await.expect("put");
    b.remove("overrides", "alice").await.expect("remove");
    // What a poller on `a` does: the version moved, so it reloads.
    let seen = a.version("overrides").await.expect("version");
    assert_eq!(seen, 3);
    assert_eq!(load(&a, "overrides").await, (3, pairs(&[("bob", "7")])));

    // Concurrent writers from both servers: every write moves the version
    // exactly once.
    let mut tasks = Vec::new();
    for (i, store) in [a.clone(), b.clone()].into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            for j in 0..20 {
                store
                    .put("fleet", &format!("s{i}-{j}"), "1")
                    .await
                    .expect("put");
            }
        }));
    }
    for task in tasks {
        task.await.expect("writer");
    }
    let (version, entries) = a.load("fleet").await.expect("load");
    assert_eq!(version, 40);
    assert_eq!(entries.len(), 40);
}

#[tokio::test]
async fn odd_map_names_fields_and_values_round_trip() {
    let server = redis_or_skip!();
    let store = server.backend().await.settings();
    let entries = [
        ("user:42", "limit=10/s"),
        ("10.0.0.0/8", ""),
        ("2001:db8::/32", "deny"),
        ("clé/ключ:键", "値 ☃ \u{1F600}"),
        ("{braces}", "}{"),
        ("", "empty field"),
        ("with space\tand\nnewline", "\"quoted\" 'single'"),
    ];
    for map in ["plain", "", "}", "a}b", "{x", "map:with/colons ☃"] {
        for (field, value) in entries {
            store.put(map, field, value).await.expect("put");
        }
        assert_eq!(
            load(&store, map).await,
            (entries.len() as u64, pairs(&entries)),
            "map {map:?}"
        );
    }
    // Each map kept its own version and fields.
    assert_eq!(store.version("a").await.expect("version"), 0);
    store.remove("a}b", "user:42").await.expect("remove");
    let (version, got) = load(&store, "a}b").await;
    assert_eq!(version, entries.len() as u64 + 1);
    assert_eq!(got.len(), entries.len() - 1);
    assert_eq!(load(&store, "plain").await.1.len(), entries.len());
}

#[tokio::test]
async fn entries_that_are_not_utf8_are_skipped_and_the_rest_loads() {
    let server = redis_or_skip!();
    let store = server.backend().await.settings();
    store.put("overrides", "alice", "100").await.expect("put");
    store.put("overrides", "bob", "5").await.expect("put");

    // Somebody else writes junk into the hash.
    let mut raw = server.client();
    let key = "tollgate:{settings:overrides}";
    let _: i64 = raw
        .hset(key, "carol", vec![0xffu8, 0xfe, 0x00])
        .expect("HSET junk value");
    let _: i64 = raw
        .hset(key, vec![0xc3u8, 0x28], "1")
        .expect("HSET junk field");

    assert_eq!(
        load(&store, "overrides").await,
        (2, pairs(&[("alice", "100"), ("bob", "5")]))
    );
    // The store still writes to that map.
    store.put("overrides", "dave", "1").await.expect("put");
    let (version, entries) = load(&store, "overrides").await;
    assert_eq!(version, 3);
    assert_eq!(entries.len(), 3);

    // A version that is not a number is an error, not a silent 0.
    let _: () = raw
        .set("tollgate:{settings:broken}:v", "junk")
        .expect("SET junk version");
    assert!(matches!(
        store.version("broken").await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(
        store.load("broken").await,
        Err(StoreError::Unavailable(_))
    ));
}

#[tokio::test]
async fn a_killed_redis_fails_within_the_timeout() {
    let mut server = redis_or_skip!();
    let backend = server
        .backend_timing_out_after(Duration::from_millis(200))
        .await;
    let store = backend.settings();
    store.put("overrides", "alice", "1").await.expect("put");

    server.kill();
    for _ in 0..3 {
        let started = Instant::now();
        let results = [
            store.load("overrides").await.map(|_| ()),
            store.version("overrides").await.map(|_| ()),
            store.put("overrides", "bob", "2").await,
            store.remove("overrides", "alice").await,
        ];
        let took = started.elapsed();
        for result in &results {
            assert!(result.is_err(), "{result:?}");
        }
        // Four calls, each bounded by 200 ms (slack for a loaded machine).
        assert!(took < Duration::from_millis(2000), "waited {took:?}");
    }

    // A restarted (empty) server on the same port serves again, scripts
    // reloaded on NOSCRIPT.
    server.restart();
    support::retry_until_ok("no recovery after a restart", || {
        store.put("overrides", "carol", "3")
    })
    .await;
    assert_eq!(
        load(&store, "overrides").await,
        (1, pairs(&[("carol", "3")]))
    );
}

#[tokio::test]
async fn a_hung_redis_answers_timeout_within_the_timeout() {
    let server = redis_or_skip!();
    let backend = server
        .backend_timing_out_after(Duration::from_millis(200))
        .await;
    let store = backend.settings();
    store.put("overrides", "alice", "1").await.expect("warm-up");
    let sleeper = server.hang(1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let result = store.load("overrides").await;
    let took = started.elapsed();
    assert!(
        matches!(result, Err(StoreError::Timeout(d)) if d == Duration::from_millis(200)),
        "{result:?}"
    );
    assert!(took < Duration::from_millis(800), "waited {took:?}");
    sleeper.join().expect("sleeper");
    assert_eq!(
        load(&store, "overrides").await,
        (1, pairs(&[("alice", "1")]))
    );
}

#[tokio::test]
async fn debug_output_has_no_password() {
    let server = redis_or_skip!();
    let mut raw = server.client();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg("hunter2-secret")
        .query(&mut raw)
        .expect("CONFIG SET requirepass");
    let url = format!("redis://:hunter2-secret@127.0.0.1:{}/", server.port());
    let store = backend(&url).await.settings();
    store.put("m", "f", "v").await.expect("put with a password");
    let debug = format!("{store:?}");
    assert!(debug.contains("RedisSettings"), "{debug}");
    assert!(!debug.contains("hunter2"), "{debug}");
}

#[tokio::test]
async fn a_cluster_shares_maps_across_backends() {
    let cluster = cluster_or_skip!();
    let a = RedisBackend::cluster(cluster.urls())
        .await
        .expect("connect to the cluster");
    assert!(a.is_cluster());
    let b = RedisBackend::cluster(cluster.urls())
        .await
        .expect("connect to the cluster");
    let (sa, sb) = (a.settings(), b.settings());
    let maps = ["overrides", "allow", "deny", "", "}", "map:with/colons ☃"];
    // The maps land on several slots (and so, most likely, several
    // masters), each with its two keys together.
    let mut slots = std::collections::BTreeSet::new();
    for map in maps {
        let hash = format!("tollgate:{{settings:{map}}}");
        let slot = cluster.keyslot(&hash);
        assert_eq!(slot, cluster.keyslot(&format!("{hash}:v")), "{map:?}");
        slots.insert(slot);
    }
    assert!(slots.len() > 1);
    for map in maps {
        sa.put(map, "user:1", "10").await.expect("put");
        sa.put(map, "10.0.0.0/8", "deny").await.expect("put");
        sb.remove(map, "user:1").await.expect("remove");
        assert_eq!(sb.version(map).await.expect("version"), 3, "{map:?}");
        assert_eq!(
            load(&sa, map).await,
            (3, pairs(&[("10.0.0.0/8", "deny")])),
            "{map:?}"
        );
    }
}
