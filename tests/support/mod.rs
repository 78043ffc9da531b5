//! A real `redis-server` for tests: started on a free loopback port with
//! persistence off in a temporary directory, killed (and the directory
//! removed) on drop.
//!
//! When no `redis-server` can be found, [`RedisServer::start`] returns
//! `None` after printing `skipped: redis-server not found`, unless
//! `TOLLGATE_REQUIRE_REDIS=1`, in which case it panics so CI fails. The
//! binary is `$TOLLGATE_REDIS_SERVER`, else `redis-server` on the `PATH`,
//! else `/usr/bin/redis-server`.

#![allow(dead_code)]

mod stale;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Calls `attempt` until it succeeds, 50 ms apart, for at most five
/// seconds (a restarted server coming back); then panics with `what` and
/// the last error.
pub async fn retry_until_ok<T, E, F>(what: &str, mut attempt: impl FnMut() -> F) -> T
where
    E: std::fmt::Display,
    F: std::future::IntoFuture<Output = Result<T, E>>,
{
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match attempt().await {
            Ok(value) => return value,
            Err(e) if Instant::now() >= deadline => panic!("{what}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Every algorithm, for tests that run each one.
pub fn every_algorithm() -> Vec<tollgate::Algorithm> {
    use tollgate::Algorithm;
    vec![
        Algorithm::Gcra,
        Algorithm::TokenBucket,
        Algorithm::LeakyBucket,
        Algorithm::LeakyBucketQueue {
            max_delay: Duration::ZERO,
        },
        Algorithm::FixedWindow,
        Algorithm::FixedWindowStaggered,
        Algorithm::SlidingWindow,
        Algorithm::SlidingWindowLog,
    ]
}

/// How many times `command` ran, from an `INFO commandstats` text
/// (`cmdstat_<command>:calls=N,...`); `None` if it never ran.
pub fn command_calls(stats: &str, command: &str) -> Option<u64> {
    let prefix = format!("cmdstat_{command}:");
    let line = stats.lines().find(|l| l.starts_with(&prefix))?;
    line.split(&[':', ','][..])
        .find_map(|f| f.strip_prefix("calls="))
        .and_then(|n| n.parse().ok())
}

/// `limit` per 300 days: a period no test run can cross a window of.
pub fn slow_quota(limit: u64) -> tollgate::Quota {
    tollgate::Quota::new(limit, Duration::from_secs(300 * 86_400))
}

/// A set of one limit of `policy` on `key`, cost 1.
pub fn single(
    policy: &std::sync::Arc<tollgate::policy::Policy>,
    key: &str,
) -> tollgate::policy::LimitSet {
    tollgate::policy::LimitSet::single(policy.clone(), tollgate::key::Key::from(key), 1)
}

/// Starts a server or skips the test (see the module documentation).
#[macro_export]
macro_rules! redis_or_skip {
    () => {
        match support::RedisServer::start() {
            Some(server) => server,
            None => return,
        }
    };
}

/// A running `redis-server`.
pub struct RedisServer {
    binary: PathBuf,
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    debug_flag: bool,
    /// Started with `--cluster-enabled yes`.
    cluster: bool,
}

fn find_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("TOLLGATE_REDIS_SERVER") {
        let path = PathBuf::from(path);
        return path.is_file().then_some(path);
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("redis-server"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        let p = PathBuf::from("/usr/bin/redis-server");
        p.is_file().then_some(p)
    })
}

/// Whether the server is 7.0 or later (and so needs
/// `--enable-debug-command yes` for `DEBUG SLEEP`).
fn is_seven_or_later(binary: &Path) -> bool {
    let Ok(out) = Command::new(binary).arg("--version").output() else {
        return false;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .find_map(|w| w.strip_prefix("v="))
        .and_then(|v| v.split('.').next())
        .and_then(|major| major.parse::<u32>().ok())
        .is_some_and(|major| major >= 7)
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

/// Sends `PING` over a raw connection; true on `+PONG`.
fn pings(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(100)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 7];
    s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

impl RedisServer {
    /// Starts a server, or returns `None` (the test should return: it is
    /// skipped) when there is no `redis-server` and
    /// `TOLLGATE_REQUIRE_REDIS` is not `1`.
    pub fn start() -> Option<RedisServer> {
        Self::start_with(false, free_port)
    }

    fn start_with(cluster: bool, port: fn() -> u16) -> Option<RedisServer> {
        let Some(binary) = find_binary() else {
            if std::env::var("TOLLGATE_REQUIRE_REDIS").as_deref() == Ok("1") {
                panic!("redis-server not found and TOLLGATE_REQUIRE_REDIS=1: install redis-server");
            }
            println!("skipped: redis-server not found");
            return None;
        };
        stale::remove_stale_servers("tollgate-redis-", "redis.pid");
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "tollgate-redis-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("cannot create a temporary directory");
        let debug_flag = is_seven_or_later(&binary);
        let mut server = RedisServer {
            binary,
            child: None,
            port: 0,
            dir,
            debug_flag,
            cluster,
        };
        // A port found free may be taken before the server binds it: try a
        // few.
        for _ in 0..5 {
            server.port = port();
            if server.spawn() {
                return Some(server);
            }
        }
        panic!(
            "redis-server did not start; its log:\n{}",
            std::fs::read_to_string(server.dir.join("redis.log")).unwrap_or_default()
        );
    }

    /// Starts the process on `self.port`; true once it answers `PING`.
    fn spawn(&mut self) -> bool {
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--daemonize", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(self.dir.join("redis.log"))
            .arg("--pidfile")
            .arg(self.dir.join("redis.pid"));
        if self.debug_flag {
            cmd.args(["--enable-debug-command", "yes"]);
        }
        if self.cluster {
            cmd.args(["--cluster-enabled", "yes"])
                .arg("--cluster-config-file")
                .arg(format!("nodes-{}.conf", self.port));
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let Ok(mut child) = cmd.spawn() else {
            return false;
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if pings(self.port) {
                self.child = Some(child);
                return true;
            }
            if let Ok(Some(_)) = child.try_wait() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// A `RedisBackend` on this server, every setting at its default.
    pub async fn backend(&self) -> tollgate::backend::RedisBackend {
        tollgate::backend::RedisBackend::connect(&self.url())
            .await
            .expect("connect")
    }

    /// A `RedisBackend` on this server that gives up on a command after
    /// `timeout` (for the tests that hang or kill the server).
    pub async fn backend_timing_out_after(
        &self,
        timeout: Duration,
    ) -> tollgate::backend::RedisBackend {
        tollgate::backend::RedisBackend::builder(&self.url())
            .timeout(timeout)
            .connect()
            .await
            .expect("connect")
    }

    /// The server's `INFO commandstats`.
    pub fn command_stats(&self) -> String {
        redis::cmd("INFO")
            .arg("commandstats")
            .query(&mut self.client())
            .expect("INFO commandstats")
    }

    /// A plain (synchronous) connection for inspecting the server.
    pub fn client(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .and_then(|c| c.get_connection())
            .expect("cannot connect to the test redis-server")
    }

    /// Makes the server hang for `seconds` (`DEBUG SLEEP`, sent from a
    /// thread of its own): every command meanwhile waits. Join the handle
    /// to know the server answers again.
    pub fn hang(&self, seconds: u64) -> std::thread::JoinHandle<()> {
        let url = self.url();
        std::thread::spawn(move || {
            let mut conn = redis::Client::open(url)
                .and_then(|c| c.get_connection())
                .expect("connection");
            redis::cmd("DEBUG")
                .arg("SLEEP")
                .arg(seconds)
                .query::<()>(&mut conn)
                .expect("DEBUG SLEEP (needs --enable-debug-command on Redis 7)");
        })
    }

    /// Kills the server (SIGKILL) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port (empty: nothing persists).
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.spawn() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server did not restart on port {}", self.port);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts a cluster or skips the test (see [`Cluster::start`]).
#[macro_export]
macro_rules! cluster_or_skip {
    () => {
        match support::Cluster::start() {
            Some(cluster) => cluster,
            None => return,
        }
    };
}

/// A free loopback port whose cluster bus port (`port + 10000`) is free
/// too.
fn free_cluster_port() -> u16 {
    for _ in 0..1000 {
        let port = free_port();
        if port < 55_000 && TcpListener::bind((Ipv4Addr::LOCALHOST, port + 10_000)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port pair for a cluster node");
}

/// `redis-cli`: `$TOLLGATE_REDIS_CLI`, else next to the server binary,
/// else on the `PATH`.
fn find_cli(server: &Path) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("TOLLGATE_REDIS_CLI") {
        let path = PathBuf::from(path);
        return path.is_file().then_some(path);
    }
    let beside = server.with_file_name("redis-cli");
    if beside.is_file() {
        return Some(beside);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("redis-cli"))
            .find(|p| p.is_file())
    })
}

/// A real local Redis Cluster: three masters (no replicas), each a
/// [`RedisServer`] with `--cluster-enabled yes` in its own temporary
/// directory, joined with `redis-cli --cluster create`; every node is
/// killed and its directory removed on drop.
pub struct Cluster {
    nodes: Vec<RedisServer>,
    cli: PathBuf,
}

impl Cluster {
    /// Starts a cluster and waits until every node reports
    /// `cluster_state:ok`; returns `None` (the test should return: it is
    /// skipped) when `redis-server` or `redis-cli` is missing and
    /// `TOLLGATE_REQUIRE_REDIS` is not `1` (then it panics).
    pub fn start() -> Option<Cluster> {
        let require = std::env::var("TOLLGATE_REQUIRE_REDIS").as_deref() == Ok("1");
        let cli = find_binary().and_then(|b| find_cli(&b));
        let Some(cli) = cli else {
            if require {
                panic!("redis-server or redis-cli not found and TOLLGATE_REQUIRE_REDIS=1: install redis");
            }
            println!("skipped: redis-server or redis-cli not found");
            return None;
        };
        let mut nodes = Vec::new();
        for _ in 0..3 {
            nodes.push(RedisServer::start_with(true, free_cluster_port)?);
        }
        let cluster = Cluster { nodes, cli };
        let mut create = Command::new(&cluster.cli);
        create.arg("--cluster").arg("create");
        for node in &cluster.nodes {
            create.arg(format!("127.0.0.1:{}", node.port()));
        }
        let out = create
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("cannot run redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if cluster.nodes.iter().all(|n| cluster.state_ok(n.port())) {
                return Some(cluster);
            }
            assert!(
                Instant::now() < deadline,
                "the cluster did not reach cluster_state:ok"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn state_ok(&self, port: u16) -> bool {
        self.cli_output(port, &["cluster", "info"])
            .lines()
            .any(|l| l.trim() == "cluster_state:ok")
    }

    /// Runs `redis-cli -p <port> <args>` and returns its output.
    fn cli_output(&self, port: u16, args: &[&str]) -> String {
        Command::new(&self.cli)
            .args(["-h", "127.0.0.1", "-p"])
            .arg(port.to_string())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    /// The nodes' URLs, `redis://127.0.0.1:<port>`.
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}", n.port()))
            .collect()
    }

    /// `CLUSTER KEYSLOT <key>`, asked of the first node.
    pub fn keyslot(&self, key: &str) -> u16 {
        let out = self.cli_output(self.nodes[0].port(), &["cluster", "keyslot", key]);
        out.trim()
            .parse()
            .unwrap_or_else(|_| panic!("CLUSTER KEYSLOT answered {out:?}"))
    }
}
