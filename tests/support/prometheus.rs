//! A real Prometheus server for tests, and `promtool`: include with
//! `#[path = "support/prometheus.rs"] mod prometheus;`.
//!
//! [`PrometheusServer::start`] writes a configuration that scrapes the
//! given targets (job `tollgate`, path `/metrics`) into a temporary
//! directory, starts `prometheus` on a free loopback port with its storage
//! there, and waits until `/-/ready` answers 200; the server is killed and
//! the directory removed on drop. Queries go through `/api/v1/query` over a
//! plain HTTP/1.1 connection (no HTTP client dependency).
//!
//! The binaries are `$TOLLGATE_PROMETHEUS` and `$TOLLGATE_PROMTOOL`, else
//! `prometheus` and `promtool` on the `PATH`, else in `/usr/bin` (Debian's
//! `prometheus` package has both). When one cannot be found, the test is
//! skipped (`None`, after printing `skipped: prometheus not found`), unless
//! `TOLLGATE_REQUIRE_PROMETHEUS=1`: then it panics, so CI fails.

#![allow(dead_code)]

#[path = "stale.rs"]
mod stale;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long the server may take to answer `/-/ready`.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Finds `name` as `$env_var`, else on the `PATH`, else in `/usr/bin`.
fn find_binary(env_var: &str, name: &str) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(env_var) {
        let path = PathBuf::from(path);
        return path.is_file().then_some(path);
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        let p = Path::new("/usr/bin").join(name);
        p.is_file().then_some(p)
    })
}

/// `find_binary`, or `None` after printing why the test is skipped; panics
/// instead when `TOLLGATE_REQUIRE_PROMETHEUS=1`.
fn binary_or_skip(env_var: &str, name: &str) -> Option<PathBuf> {
    let found = find_binary(env_var, name);
    if found.is_none() {
        if std::env::var("TOLLGATE_REQUIRE_PROMETHEUS").as_deref() == Ok("1") {
            panic!(
                "{name} not found (${env_var}, PATH, /usr/bin) and TOLLGATE_REQUIRE_PROMETHEUS=1: \
                 install prometheus (Debian: apt-get install prometheus)"
            );
        }
        println!("skipped: {name} not found");
    }
    found
}

/// The `promtool` binary, or `None` (the test should return: it is
/// skipped) when there is none and `TOLLGATE_REQUIRE_PROMETHEUS` is not
/// `1` (then it panics).
pub fn promtool() -> Option<PathBuf> {
    binary_or_skip("TOLLGATE_PROMTOOL", "promtool")
}

/// Starts a server scraping `targets` or skips the test (see
/// [`PrometheusServer::start`]); the module must be named `prometheus`.
#[macro_export]
macro_rules! prometheus_or_skip {
    ($targets:expr, $interval:expr) => {
        match prometheus::PrometheusServer::start($targets, $interval) {
            Some(server) => server,
            None => return,
        }
    };
}

/// One sample of a query's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The series' labels (with `__name__` when the answer keeps it).
    pub labels: serde_json::Map<String, serde_json::Value>,
    /// Its value (`NaN` and infinities included).
    pub value: f64,
}

/// A running `prometheus`.
pub struct PrometheusServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

/// A Prometheus duration: whole milliseconds, at least one.
fn prometheus_duration(d: Duration) -> String {
    format!("{}ms", d.as_millis().max(1))
}

impl PrometheusServer {
    /// Starts a server that scrapes `targets` every `scrape_interval`
    /// (job `tollgate`, path `/metrics`) and waits until it is ready; or
    /// returns `None` (the test should return: it is skipped) when there is
    /// no `prometheus` and `TOLLGATE_REQUIRE_PROMETHEUS` is not `1` (then
    /// it panics).
    pub fn start(targets: &[SocketAddr], scrape_interval: Duration) -> Option<PrometheusServer> {
        let binary = binary_or_skip("TOLLGATE_PROMETHEUS", "prometheus")?;
        stale::remove_stale_servers("tollgate-prometheus-", "prometheus.pid");
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "tollgate-prometheus-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(dir.join("data")).expect("cannot create a temporary directory");
        let interval = prometheus_duration(scrape_interval);
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let config = format!(
            "global:\n  scrape_interval: {interval}\n  scrape_timeout: {interval}\n\
             scrape_configs:\n  - job_name: tollgate\n    metrics_path: /metrics\n    \
             static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        );
        std::fs::write(dir.join("prometheus.yml"), config).expect("cannot write prometheus.yml");
        let mut server = PrometheusServer {
            child: None,
            port: 0,
            dir,
        };
        // A port found free may be taken before the server binds it: try a
        // few.
        for _ in 0..5 {
            server.port = free_port();
            if server.spawn(&binary) {
                return Some(server);
            }
        }
        panic!(
            "prometheus ({}) did not start; its log:\n{}",
            binary.display(),
            server.log()
        );
    }

    /// Starts the process on `self.port`; true once `/-/ready` answers
    /// 200, false if it exited first (the port was taken, say).
    fn spawn(&mut self, binary: &Path) -> bool {
        let log = std::fs::File::create(self.dir.join("prometheus.log"))
            .expect("cannot create the server's log file");
        let log_err = log.try_clone().expect("cannot duplicate the log file");
        let spawned = Command::new(binary)
            .arg(format!(
                "--config.file={}",
                self.dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                self.dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => panic!("cannot run {}: {e}", binary.display()),
        };
        let _ = std::fs::write(self.dir.join("prometheus.pid"), child.id().to_string());
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if matches!(http_get(self.port, "/-/ready"), Ok((200, _))) {
                self.child = Some(child);
                return true;
            }
            if let Ok(Some(_)) = child.try_wait() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "prometheus was not ready within {READY_TIMEOUT:?}; its log:\n{}",
            self.log()
        );
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// What the server logged so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// Runs an instant query; `Err` with the server's error (a bad
    /// expression, say) or a transport failure.
    pub fn try_query(&self, promql: &str) -> Result<Vec<Sample>, String> {
        let path = format!("/api/v1/query?query={}", percent_encode(promql));
        let (status, body) = http_get(self.port, &path)?;
        let json: serde_json::Value = serde_json::from_str(&body)
            .map_err(|e| format!("HTTP {status}, not JSON ({e}): {body}"))?;
        if json["status"] != "success" {
            return Err(format!(
                "HTTP {status}, {}: {}",
                json["errorType"].as_str().unwrap_or("error"),
                json["error"].as_str().unwrap_or(&body)
            ));
        }
        let data = &json["data"];
        match data["resultType"].as_str() {
            Some("vector") => data["result"]
                .as_array()
                .ok_or_else(|| format!("no result array: {body}"))?
                .iter()
                .map(|s| {
                    Ok(Sample {
                        labels: s["metric"].as_object().cloned().unwrap_or_default(),
                        value: parse_value(&s["value"])?,
                    })
                })
                .collect(),
            Some("scalar") => Ok(vec![Sample {
                labels: serde_json::Map::new(),
                value: parse_value(&data["result"])?,
            }]),
            other => Err(format!("result type {other:?} is not a vector: {body}")),
        }
    }

    /// The sum of an instant query's values; `None` when it matches no
    /// series. Panics when the query fails.
    #[track_caller]
    pub fn query(&self, promql: &str) -> Option<f64> {
        match self.try_query(promql) {
            Ok(samples) if samples.is_empty() => None,
            Ok(samples) => Some(samples.iter().map(|s| s.value).sum()),
            Err(e) => panic!("query {promql:?} failed: {e}"),
        }
    }

    /// Polls [`query`](Self::query) until it answers `expected`; panics
    /// after `timeout` with the last answer and the server's scrape status.
    #[track_caller]
    pub fn wait_for(&self, promql: &str, expected: f64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.query(promql);
            if got.is_some_and(|v| v == expected || (v - expected).abs() <= 1e-9 * expected.abs()) {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{promql:?} is {got:?} after {timeout:?}, expected {expected}; targets: {}",
                    self.targets()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Polls until the query matches at least one series and returns them;
    /// panics after `timeout`.
    #[track_caller]
    pub fn wait_for_series(&self, promql: &str, timeout: Duration) -> Vec<Sample> {
        let deadline = Instant::now() + timeout;
        loop {
            let samples = self
                .try_query(promql)
                .unwrap_or_else(|e| panic!("query {promql:?} failed: {e}"));
            if !samples.is_empty() {
                return samples;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{promql:?} matched no series within {timeout:?}; targets: {}",
                    self.targets()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `/api/v1/targets` as the server answers it (health and last scrape
    /// error of each target), for failure messages.
    pub fn targets(&self) -> String {
        match http_get(self.port, "/api/v1/targets") {
            Ok((_, body)) => body,
            Err(e) => format!("(unavailable: {e})"),
        }
    }
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A `[timestamp, "value"]` pair's value.
fn parse_value(pair: &serde_json::Value) -> Result<f64, String> {
    let text = pair[1]
        .as_str()
        .ok_or_else(|| format!("not a [time, \"value\"] pair: {pair}"))?;
    text.parse::<f64>()
        .map_err(|e| format!("value {text:?}: {e}"))
}

/// Percent-encodes everything but the URL's unreserved characters.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `GET path` on `127.0.0.1:port` over HTTP/1.1 (one connection, closed
/// after the answer): the status and the body, de-chunked.
pub fn http_get(port: u16, path: &str) -> Result<(u16, String), String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .and_then(|()| stream.set_write_timeout(Some(Duration::from_secs(10))))
        .map_err(|e| format!("socket timeouts: {e}"))?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: application/json\r\n\
         Connection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("send to {addr}: {e}"))?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .map_err(|e| format!("read from {addr}: {e}"))?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no end of headers in {:?}", String::from_utf8_lossy(&raw)))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let body = &raw[split + 4..];
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("no status line in {head:?}"))?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    String::from_utf8(body)
        .map(|b| (status, b))
        .map_err(|e| format!("body is not UTF-8: {e}"))
}

/// Decodes a `Transfer-Encoding: chunked` body.
fn dechunk(mut raw: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = raw
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("chunk size line without CRLF")?;
        let size_line = String::from_utf8_lossy(&raw[..eol]);
        let size_hex = size_line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|e| format!("chunk size {size_hex:?}: {e}"))?;
        raw = &raw[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if raw.len() < size + 2 {
            return Err(format!("chunk of {size} bytes cut short"));
        }
        out.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}
