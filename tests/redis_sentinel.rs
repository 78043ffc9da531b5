//! Redis Sentinel (feature `redis-sentinel`): a real master, one replica
//! and one sentinel; the backend connects through the sentinel, the master
//! is killed, and the same backend serves again from the promoted replica.
#![cfg(feature = "redis-sentinel")]

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tollgate::backend::{Backend, RedisBackend};
use tollgate::key::Key;
use tollgate::{
    policy::{LimitSet, Policy},
    Quota,
};

/// The master, the replica and the sentinel, killed (and their directory
/// removed) on drop.
struct Deployment {
    dir: PathBuf,
    master: Option<Child>,
    others: Vec<Child>,
    master_port: u16,
    replica_port: u16,
    sentinel_port: u16,
}

impl Drop for Deployment {
    fn drop(&mut self) {
        for child in self.master.iter_mut().chain(self.others.iter_mut()) {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

fn binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("TOLLGATE_REDIS_SERVER") {
        let path = PathBuf::from(path);
        return path.is_file().then_some(path);
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("redis-server"))
                .find(|p| p.is_file())
        })
        .or_else(|| {
            let p = PathBuf::from("/usr/bin/redis-server");
            p.is_file().then_some(p)
        })
}

fn spawn(binary: &Path, dir: &Path, name: &str, args: &[String]) -> Child {
    Command::new(binary)
        .args(args)
        .current_dir(dir)
        .arg("--logfile")
        .arg(dir.join(format!("{name}.log")))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cannot start redis-server")
}

fn client(port: u16) -> redis::Connection {
    redis::Client::open(format!("redis://127.0.0.1:{port}/"))
        .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(1)))
        .expect("cannot connect")
}

/// Polls `check` every 50 ms until it holds, for at most `limit`.
fn wait_for(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn info(port: u16) -> String {
    let Ok(client) = redis::Client::open(format!("redis://127.0.0.1:{port}/")) else {
        return String::new();
    };
    let Ok(mut c) = client.get_connection_with_timeout(Duration::from_millis(200)) else {
        return String::new();
    };
    redis::cmd("INFO")
        .arg("replication")
        .query::<String>(&mut c)
        .unwrap_or_default()
}

/// Starts the deployment, or skips (fails with TOLLGATE_REQUIRE_REDIS=1).
fn start() -> Option<Deployment> {
    let Some(binary) = binary() else {
        assert!(
            std::env::var("TOLLGATE_REQUIRE_REDIS").as_deref() != Ok("1"),
            "redis-server not found and TOLLGATE_REQUIRE_REDIS=1: install redis-server"
        );
        println!("skipped: redis-server not found");
        return None;
    };
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("tollgate-sentinel-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("cannot create a temporary directory");
    let (master_port, replica_port, sentinel_port) = (free_port(), free_port(), free_port());
    let common = |port: u16| -> Vec<String> {
        [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            // Redis 7 waits 5 s before a diskless sync to batch replicas.
            "--repl-diskless-sync-delay",
            "0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let mut deployment = Deployment {
        dir: dir.clone(),
        master: None,
        others: Vec::new(),
        master_port,
        replica_port,
        sentinel_port,
    };
    deployment.master = Some(spawn(&binary, &dir, "master", &common(master_port)));
    wait_for("the master", Duration::from_secs(5), || {
        info(master_port).contains("role:master")
    });
    let mut replica = common(replica_port);
    replica.extend([
        "--replicaof".into(),
        "127.0.0.1".into(),
        master_port.to_string(),
    ]);
    deployment
        .others
        .push(spawn(&binary, &dir, "replica", &replica));
    wait_for("the replica to sync", Duration::from_secs(15), || {
        info(replica_port).contains("master_link_status:up")
    });
    let conf = dir.join("sentinel.conf");
    std::fs::write(
        &conf,
        format!(
            "port {sentinel_port}\nbind 127.0.0.1\ndir {}\n\
             sentinel monitor mymaster 127.0.0.1 {master_port} 1\n\
             sentinel down-after-milliseconds mymaster 1000\n\
             sentinel failover-timeout mymaster 5000\n",
            dir.display()
        ),
    )
    .expect("cannot write sentinel.conf");
    deployment.others.push(spawn(
        &binary,
        &dir,
        "sentinel",
        &[conf.display().to_string(), "--sentinel".into()],
    ));
    // The sentinel learns the replica from the master's INFO.
    wait_for(
        "the sentinel to see the replica",
        Duration::from_secs(8),
        || {
            let Ok(client) = redis::Client::open(format!("redis://127.0.0.1:{sentinel_port}/"))
            else {
                return false;
            };
            let Ok(mut c) = client.get_connection_with_timeout(Duration::from_millis(200)) else {
                return false;
            };
            redis::cmd("SENTINEL")
                .arg("REPLICAS")
                .arg("mymaster")
                .query::<Vec<redis::Value>>(&mut c)
                .is_ok_and(|r| !r.is_empty())
        },
    );
    Some(deployment)
}

/// The two deployments are heavy for a 2-core machine: one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A backend that finds the master of `deployment` through its sentinel.
async fn connect(deployment: &Deployment) -> RedisBackend {
    RedisBackend::sentinel_builder(
        [format!("redis://127.0.0.1:{}/", deployment.sentinel_port)],
        "mymaster",
    )
    .timeout(Duration::from_millis(500))
    .connect()
    .await
    .expect("connect through the sentinel")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_through_sentinel_and_after_failover() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(mut deployment) = start() else {
        return;
    };
    let started = Instant::now();
    let backend = connect(&deployment).await;
    assert!(!backend.is_cluster());

    let policy = Arc::new(Policy::new("sentinel", Quota::per_minute(3)));
    let alice = LimitSet::single(policy.clone(), Key::from("alice"), 1);
    for i in 0..3 {
        let outcome = backend.acquire(&alice).await.expect("acquire");
        assert!(outcome.allowed(), "request {i} should be allowed");
    }
    assert!(!backend.acquire(&alice).await.expect("acquire").allowed());
    // The state is on the master, and replicated.
    let name = backend.key_name(&policy, &Key::from("alice"));
    let mut master = client(deployment.master_port);
    assert!(redis::cmd("EXISTS")
        .arg(&name)
        .query::<bool>(&mut master)
        .unwrap());
    let acked: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(2000)
        .query(&mut master)
        .unwrap();
    assert_eq!(acked, 1, "the replica did not acknowledge the writes");

    // Kill the master: the sentinel promotes the replica.
    let mut dead = deployment.master.take().unwrap();
    dead.kill().unwrap();
    dead.wait().unwrap();
    // A call now fails, within the timeout, rather than hang.
    let t = Instant::now();
    assert!(backend.acquire(&alice).await.is_err());
    assert!(t.elapsed() < Duration::from_millis(1500));

    // The same backend serves again once the replica is promoted.
    let bob = LimitSet::single(policy.clone(), Key::from("bob"), 1);
    let deadline = Instant::now() + Duration::from_secs(15);
    let outcome = loop {
        let t = Instant::now();
        let result = backend.acquire(&bob).await;
        assert!(
            t.elapsed() < Duration::from_millis(1500),
            "a call took {:?}",
            t.elapsed()
        );
        match result {
            Ok(outcome) => break outcome,
            Err(e) => {
                assert!(Instant::now() < deadline, "no failover: last error {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    assert!(outcome.allowed());
    assert!(info(deployment.replica_port).contains("role:master"));
    // What the old master counted was replicated: alice is still limited.
    assert!(!backend.acquire(&alice).await.expect("acquire").allowed());
    let mut promoted = client(deployment.replica_port);
    assert!(redis::cmd("EXISTS")
        .arg(backend.key_name(&policy, &Key::from("bob")))
        .query::<bool>(&mut promoted)
        .unwrap());
    println!("failover served again after {:?}", started.elapsed());
}

/// `SENTINEL FAILOVER`: the old master stays up and is demoted, so the
/// kept connection answers `READONLY` and the backend re-resolves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_a_manual_failover() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(deployment) = start() else {
        return;
    };
    let backend = connect(&deployment).await;
    let policy = Arc::new(Policy::new("manual", Quota::per_minute(100)));
    let carol = LimitSet::single(policy.clone(), Key::from("carol"), 1);
    assert!(backend.acquire(&carol).await.expect("acquire").allowed());

    let mut sentinel = client(deployment.sentinel_port);
    // Until the sentinel has the replica's own INFO, it answers
    // NOGOODSLAVE: retry.
    wait_for("SENTINEL FAILOVER", Duration::from_secs(5), || {
        redis::cmd("SENTINEL")
            .arg("FAILOVER")
            .arg("mymaster")
            .query::<()>(&mut sentinel)
            .is_ok()
    });
    wait_for(
        "the sentinel to name the new master",
        Duration::from_secs(10),
        || {
            redis::cmd("SENTINEL")
                .arg("GET-MASTER-ADDR-BY-NAME")
                .arg("mymaster")
                .query::<(String, u16)>(&mut sentinel)
                .is_ok_and(|(_, port)| port == deployment.replica_port)
        },
    );
    assert!(info(deployment.replica_port).contains("role:master"));
    // Demote the old master now (the sentinel would, some seconds later).
    let mut old = client(deployment.master_port);
    let _: () = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(deployment.replica_port)
        .query(&mut old)
        .unwrap();

    // The kept connection to the old master answers READONLY: that call
    // fails, and the next one goes to the new master.
    let error = backend
        .acquire(&carol)
        .await
        .expect_err("the old master is read-only");
    assert!(error.to_string().to_lowercase().contains("read"), "{error}");
    // The next calls ask the sentinel again. Until it has finished the
    // failover (reconfiguring replicas), `SENTINEL MASTERS` still lists
    // the old address, which `ROLE` now shows is a replica: such calls
    // fail, fast, and the backend asks again on the next one.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match backend.acquire(&carol).await {
            Ok(outcome) => {
                assert!(outcome.allowed());
                break;
            }
            Err(e) => {
                assert!(Instant::now() < deadline, "not served again: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    // The write went to the new master.
    let name = backend.key_name(&policy, &Key::from("carol"));
    let mut promoted = client(deployment.replica_port);
    let remaining: Option<String> = redis::cmd("GET").arg(&name).query(&mut promoted).unwrap();
    assert!(remaining.is_some());
}
