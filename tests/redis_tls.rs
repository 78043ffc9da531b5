//! `rediss://`: the Redis backend over TLS (feature `redis-tls`), against a
//! real `redis-server --tls-port` with a certificate made for the test.
#![cfg(feature = "redis-tls")]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tollgate::backend::{Backend, RedisBackend};
use tollgate::key::Key;
use tollgate::{
    policy::{LimitSet, Policy},
    Quota,
};

struct TlsServer {
    child: Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts a TLS-only server, or skips (fails with TOLLGATE_REQUIRE_REDIS=1).
fn start() -> Option<TlsServer> {
    let required = std::env::var("TOLLGATE_REQUIRE_REDIS").is_ok_and(|v| v == "1");
    let missing = |what: &str| {
        assert!(!required, "{what} not found and TOLLGATE_REQUIRE_REDIS=1");
        eprintln!("skipped: {what} not found");
        None
    };
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("tollgate-tls-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ])
        .arg("-keyout")
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !made.is_ok_and(|s| s.success()) {
        return missing("openssl");
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            "0",
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--tls-port")
        .arg(port.to_string())
        .arg("--tls-cert-file")
        .arg(dir.join("cert.pem"))
        .arg("--tls-key-file")
        .arg(dir.join("key.pem"))
        .arg("--tls-ca-cert-file")
        .arg(dir.join("cert.pem"))
        .args(["--tls-auth-clients", "no"])
        .arg("--dir")
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(child) = child else {
        return missing("redis-server");
    };
    let server = TlsServer { child, port, dir };
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "redis-server --tls-port did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(server)
}

#[tokio::test]
async fn rediss_urls_limit_over_tls() {
    let Some(server) = start() else { return };
    // `#insecure`: the test's self-signed certificate is not in any root
    // store; production URLs verify against the system's roots.
    let url = format!("rediss://127.0.0.1:{}/#insecure", server.port);
    let backend = RedisBackend::connect(&url).await.expect("connect over TLS");
    let set = LimitSet::single(
        Arc::new(Policy::new("tls", Quota::per_minute(2))),
        Key::from("c"),
        1,
    );
    assert!(backend.acquire(&set).await.expect("call").allowed());
    assert!(backend.acquire(&set).await.expect("call").allowed());
    assert!(!backend.acquire(&set).await.expect("call").allowed());
}

#[tokio::test]
async fn a_plain_url_to_a_tls_port_fails_fast_instead_of_hanging() {
    let Some(server) = start() else { return };
    let url = format!("redis://127.0.0.1:{}/", server.port);
    let started = Instant::now();
    let result = RedisBackend::builder(&url)
        .connect_timeout(Duration::from_millis(500))
        .connect()
        .await;
    assert!(result.is_err());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}
