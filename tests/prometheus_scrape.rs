//! End to end: the `observability` example, started as a process on a free
//! loopback port, scraped by a real Prometheus; a known mix of requests
//! is read back through Prometheus's query API, `promtool check metrics`
//! accepts the scraped text, the health routes answer and the admin route
//! wants its token.
//!
//! The example binary is the one `cargo test` builds beside this test
//! (`target/<profile>/examples/observability`).
#![cfg(feature = "metrics")]

#[path = "support/prometheus.rs"]
mod prometheus;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use prometheus::{http_get, promtool, PrometheusServer};

/// The example's process, killed on drop.
struct Example {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn example_binary() -> PathBuf {
    // target/<profile>/deps/prometheus_scrape-… → target/<profile>/examples/
    let exe = std::env::current_exe().expect("the test's own path");
    let profile = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    profile.join("examples").join("observability")
}

fn start_example(quota: &str, token: &str) -> Example {
    let binary = example_binary();
    assert!(
        binary.exists(),
        "{} is missing: `cargo test --all-features` builds it",
        binary.display()
    );
    let mut child = Command::new(&binary)
        .env("ADDR", "127.0.0.1:0")
        .env("QUOTA", quota)
        .env("TOLLGATE_ADMIN_TOKEN", token)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the example starts");
    let stdout = child.stdout.take().expect("its stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("the example prints its address");
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("not an address line: {line:?}"));
    Example { child, addr }
}

/// A GET with a bearer token, its status.
fn get_with_token(port: u16, path: &str, token: &str) -> u16 {
    let mut stream =
        std::net::TcpStream::connect(("127.0.0.1", port)).expect("the example accepts");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .expect("a request");
    let mut status = String::new();
    BufReader::new(stream)
        .read_line(&mut status)
        .expect("a status line");
    status
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[test]
fn prometheus_reads_back_what_the_example_decided() {
    let Some(_) = promtool() else { return };
    let example = start_example("3/m", "s3cret");
    let Some(server) = PrometheusServer::start(&[example.addr], Duration::from_millis(200)) else {
        return;
    };
    let port = example.addr.port();

    // Five requests from one client at 3 a minute: 3 pass, 2 get a 429.
    let statuses: Vec<u16> = (0..5)
        .map(|_| http_get(port, "/").expect("the example answers").0)
        .collect();
    assert_eq!(statuses, [200, 200, 200, 429, 429]);

    let timeout = Duration::from_secs(20);
    let decisions = |outcome: &str| {
        format!(r#"tollgate_decisions_total{{job="tollgate",policy="api",outcome="{outcome}"}}"#)
    };
    server.wait_for(&decisions("allowed"), 3.0, timeout);
    server.wait_for(&decisions("denied"), 2.0, timeout);
    server.wait_for(r#"tollgate_near_limit_total{policy="api"}"#, 1.0, timeout);
    server.wait_for(
        r#"tollgate_memory_keys{layer="api",backend="memory"}"#,
        1.0,
        timeout,
    );
    server.wait_for(
        r#"tollgate_top_keys_denied{policy="api",rank="1"}"#,
        2.0,
        timeout,
    );

    // The scraped text passes promtool's lint.
    let (status, text) = http_get(port, "/metrics").expect("the scrape");
    assert_eq!(status, 200);
    let promtool = promtool().expect("checked above");
    let mut check = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    check
        .stdin
        .take()
        .expect("its stdin")
        .write_all(text.as_bytes())
        .expect("the text");
    let out = check.wait_with_output().expect("promtool ends");
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}\n---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Health, and the admin route only with the token, naming no raw key.
    let (status, body) = http_get(port, "/health/ready").expect("readiness");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""ready":true"#), "{body}");
    assert_eq!(http_get(port, "/health/live").expect("liveness").0, 200);
    assert_eq!(http_get(port, "/admin/top").expect("admin").0, 401);
    assert_eq!(get_with_token(port, "/admin/top", "wrong"), 401);
    assert_eq!(get_with_token(port, "/admin/top?policy=api", "s3cret"), 200);
}
