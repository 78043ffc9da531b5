//! The operations assets under `ops/` against the metrics contract
//! (`tollgate::metrics::names::ALL`): the Grafana dashboard and the
//! Prometheus alert rules may only name metrics and labels tollgate
//! exports; `promtool` checks and unit-tests the rules; every alert has its
//! runbook section; and the dashboard's queries run on a real Prometheus
//! that scrapes every metric of the contract.
//!
//! The PromQL check is a best-effort scanner, not a parser: it reads
//! identifiers, label matchers, grouping clauses (`by`, `without`, `on`,
//! `ignoring`, `group_left`, `group_right`) and a few functions, which is
//! what the assets use. Its own tests (module `checker`) show it fails on
//! the mistakes it is meant to catch.

#![cfg(feature = "metrics")]

#[path = "support/prometheus.rs"]
mod prometheus;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tollgate::metrics::names::{Kind, Metric, ALL};

const DASHBOARD: &str = "ops/grafana/tollgate.json";
const ALERTS: &str = "ops/prometheus/alerts.yml";
const ALERTS_TEST: &str = "ops/prometheus/alerts_test.yml";
const RUNBOOK: &str = "ops/RUNBOOK.md";

/// Labels Prometheus attaches to every scraped series.
const TARGET_LABELS: &[&str] = &["instance", "job"];

fn path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(path(relative))
        .unwrap_or_else(|e| panic!("cannot read {relative}: {e}"))
}

// ---------------------------------------------------------------------------
// The PromQL checker.
// ---------------------------------------------------------------------------

/// A series an identifier names: a metric of the contract, and the
/// histogram suffix (`_bucket`, `_sum`, `_count`) when there is one.
#[derive(Debug, Clone, Copy)]
struct Series {
    metric: &'static Metric,
    suffix: Option<&'static str>,
}

impl Series {
    /// The labels a selector of this series may use.
    fn labels(&self) -> BTreeSet<&'static str> {
        let mut labels: BTreeSet<&'static str> = self.metric.labels.iter().copied().collect();
        labels.extend(TARGET_LABELS);
        labels.insert("__name__");
        if self.suffix == Some("_bucket") {
            labels.insert("le");
        }
        labels
    }

    /// A counter, or a histogram's `_bucket`, `_sum` or `_count`: only
    /// goes up.
    fn is_cumulative(&self) -> bool {
        self.metric.kind == Kind::Counter
            || (self.metric.kind == Kind::Histogram && self.suffix.is_some())
    }

    fn name(&self) -> String {
        format!("{}{}", self.metric.name, self.suffix.unwrap_or(""))
    }
}

/// The contract's series `name` is, if any.
fn resolve(name: &str) -> Option<Series> {
    if let Some(metric) = ALL.iter().find(|m| m.name == name) {
        return Some(Series {
            metric,
            suffix: None,
        });
    }
    ["_bucket", "_sum", "_count"]
        .into_iter()
        .find_map(|suffix| {
            let base = name.strip_suffix(suffix)?;
            let metric = ALL
                .iter()
                .find(|m| m.name == base && m.kind == Kind::Histogram)?;
            Some(Series {
                metric,
                suffix: Some(suffix),
            })
        })
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    /// A name: metric, label, function, keyword.
    Ident(String),
    /// A string literal's content.
    Str(String),
    /// A number or a duration (`0.99`, `5m`).
    Number,
    /// A Grafana variable (`$policy`, `${policy}`, `$__rate_interval`).
    Variable,
    /// One punctuation character: `( ) { } [ ] ,`.
    Punct(char),
    /// An operator (`=`, `!=`, `=~`, `/`, `>`...).
    Op(String),
}

fn tokenize(expr: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '#' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '"' || c == '\'' || c == '`' {
            let mut value = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(format!("unterminated string in {expr:?}")),
                    Some(&q) if q == c => break,
                    Some('\\') if c != '`' => {
                        if let Some(&next) = chars.get(i + 1) {
                            value.push(next);
                        }
                        i += 2;
                        continue;
                    }
                    Some(&other) => value.push(other),
                }
                i += 1;
            }
            i += 1;
            tokens.push(Token::Str(value));
        } else if c == '$' {
            i += 1;
            if chars.get(i) == Some(&'{') {
                while i < chars.len() && chars[i] != '}' {
                    i += 1;
                }
                i += 1;
            } else {
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
            }
            tokens.push(Token::Variable);
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            tokens.push(Token::Ident(chars[start..i].iter().collect()));
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
            tokens.push(Token::Number);
        } else if "(){}[],".contains(c) {
            tokens.push(Token::Punct(c));
            i += 1;
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            if ["!=", "=~", "!~", "==", ">=", "<="].contains(&two.as_str()) {
                tokens.push(Token::Op(two));
                i += 2;
            } else {
                tokens.push(Token::Op(c.to_string()));
                i += 1;
            }
        }
    }
    Ok(tokens)
}

/// The index of the token closing the bracket opened at `open`.
fn closing(tokens: &[Token], open: usize) -> Option<usize> {
    let (o, c) = match tokens.get(open)? {
        Token::Punct('(') => ('(', ')'),
        Token::Punct('{') => ('{', '}'),
        Token::Punct('[') => ('[', ']'),
        _ => return None,
    };
    let mut depth = 0usize;
    for (i, t) in tokens.iter().enumerate().skip(open) {
        if *t == Token::Punct(o) {
            depth += 1;
        } else if *t == Token::Punct(c) {
            depth -= 1;
            if depth == 0 {
                return Some(i);
            }
        }
    }
    None
}

/// The index of the token opening the bracket closed at `close`.
fn opening(tokens: &[Token], close: usize) -> Option<usize> {
    let (o, c) = match tokens.get(close)? {
        Token::Punct(')') => ('(', ')'),
        _ => return None,
    };
    let mut depth = 0usize;
    for (i, t) in tokens[..=close].iter().enumerate().rev() {
        if *t == Token::Punct(c) {
            depth += 1;
        } else if *t == Token::Punct(o) {
            depth -= 1;
            if depth == 0 {
                return Some(i);
            }
        }
    }
    None
}

/// The contract's series named in `tokens` (names not in the contract are
/// reported by [`check_promql`], not here).
fn series_in(tokens: &[Token]) -> Vec<Series> {
    tokens
        .iter()
        .filter_map(|t| match t {
            Token::Ident(name) => resolve(name),
            _ => None,
        })
        .collect()
}

/// The labels any of `series` may have.
fn labels_of(series: &[Series]) -> BTreeSet<&'static str> {
    series.iter().flat_map(Series::labels).collect()
}

/// The label names of the list opened at `open` (`(a, b)`) and the index
/// of its closing parenthesis.
fn label_list(tokens: &[Token], open: usize) -> Option<(Vec<String>, usize)> {
    let close = closing(tokens, open)?;
    let labels = tokens[open + 1..close]
        .iter()
        .filter_map(|t| match t {
            Token::Ident(l) => Some(l.clone()),
            _ => None,
        })
        .collect();
    Some((labels, close))
}

const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];

/// What is wrong with `expr` against the contract: metrics that do not
/// exist, labels a metric does not have (in matchers, grouping clauses and
/// Grafana's `label_values`), `rate()` of a gauge, `delta()` of a counter,
/// `histogram_quantile` without `le`. Empty when nothing is found.
fn check_promql(expr: &str) -> Vec<String> {
    let tokens = match tokenize(expr) {
        Ok(tokens) => tokens,
        Err(e) => return vec![e],
    };
    let mut problems = Vec::new();
    let everything = series_in(&tokens);
    for (i, token) in tokens.iter().enumerate() {
        let Token::Ident(ident) = token else {
            continue;
        };
        let next_opens = |c: char| tokens.get(i + 1) == Some(&Token::Punct(c));
        if ident.starts_with("tollgate_") {
            let Some(series) = resolve(ident) else {
                problems.push(format!("{ident} is not a metric of tollgate::metrics::names::ALL (nor a histogram's _bucket, _sum or _count)"));
                continue;
            };
            if next_opens('{') {
                let Some(close) = closing(&tokens, i + 1) else {
                    problems.push(format!("unclosed {{ after {ident}"));
                    continue;
                };
                let allowed = series.labels();
                let mut j = i + 2;
                while j < close {
                    if let (Token::Ident(label), Some(Token::Op(_))) =
                        (&tokens[j], tokens.get(j + 1))
                    {
                        if !allowed.contains(label.as_str()) {
                            problems.push(format!(
                                "{} has no label {label:?} (its labels: {:?})",
                                series.name(),
                                allowed
                            ));
                        }
                        j += 3;
                    } else {
                        j += 1;
                    }
                }
            }
            continue;
        }
        match ident.as_str() {
            "by" | "without" if next_opens('(') => {
                let Some((labels, close)) = label_list(&tokens, i + 1) else {
                    problems.push(format!("unclosed label list after {ident}"));
                    continue;
                };
                // `sum by (l) (expr)` or `sum(expr) by (l)`.
                let argument = if i > 0
                    && matches!(&tokens[i - 1], Token::Ident(op) if AGGREGATIONS.contains(&op.as_str()))
                {
                    closing(&tokens, close + 1).map(|end| &tokens[close + 1..=end])
                } else if i > 0 && tokens[i - 1] == Token::Punct(')') {
                    opening(&tokens, i - 1).map(|start| &tokens[start..i])
                } else {
                    None
                };
                let Some(argument) = argument else {
                    problems.push(format!(
                        "cannot find what `{ident} ({})` aggregates",
                        labels.join(", ")
                    ));
                    continue;
                };
                let inside = series_in(argument);
                if inside.is_empty() {
                    continue;
                }
                let allowed = labels_of(&inside);
                for label in &labels {
                    if !allowed.contains(label.as_str()) {
                        problems.push(format!(
                            "`{ident} ({})` groups by {label:?}, a label of none of {:?}",
                            labels.join(", "),
                            inside.iter().map(Series::name).collect::<BTreeSet<_>>()
                        ));
                    }
                }
            }
            "on" | "ignoring" | "group_left" | "group_right" if next_opens('(') => {
                let Some((labels, _)) = label_list(&tokens, i + 1) else {
                    problems.push(format!("unclosed label list after {ident}"));
                    continue;
                };
                if everything.is_empty() {
                    continue;
                }
                let allowed = labels_of(&everything);
                for label in labels.iter().filter(|l| !allowed.contains(l.as_str())) {
                    problems.push(format!(
                        "`{ident}` matches on {label:?}, a label of no metric in the expression"
                    ));
                }
            }
            "rate" | "irate" | "increase" | "resets" if next_opens('(') => {
                let Some(close) = closing(&tokens, i + 1) else {
                    continue;
                };
                for series in series_in(&tokens[i + 1..close]) {
                    if !series.is_cumulative() {
                        problems.push(format!(
                            "{ident}() of {}, a {:?}: only counters and histogram series only go up",
                            series.name(),
                            series.metric.kind
                        ));
                    }
                }
            }
            "delta" | "idelta" | "deriv" | "predict_linear" if next_opens('(') => {
                let Some(close) = closing(&tokens, i + 1) else {
                    continue;
                };
                for series in series_in(&tokens[i + 1..close]) {
                    if series.is_cumulative() {
                        problems.push(format!(
                            "{ident}() of {}, which only goes up: use rate() or increase()",
                            series.name()
                        ));
                    }
                }
            }
            "histogram_quantile" if next_opens('(') => {
                let Some(close) = closing(&tokens, i + 1) else {
                    continue;
                };
                let inner = &tokens[i + 1..close];
                let buckets = series_in(inner);
                for series in &buckets {
                    if series.suffix != Some("_bucket") {
                        problems.push(format!(
                            "histogram_quantile() of {}: it needs a histogram's _bucket series",
                            series.name()
                        ));
                    }
                }
                for (k, t) in inner.iter().enumerate() {
                    let Token::Ident(kw) = t else { continue };
                    if (kw == "by" || kw == "without")
                        && inner.get(k + 1) == Some(&Token::Punct('('))
                    {
                        if let Some((labels, _)) = label_list(inner, k + 1) {
                            let keeps_le = labels.iter().any(|l| l == "le");
                            if (kw == "by") != keeps_le {
                                problems.push(format!(
                                    "histogram_quantile() over `{kw} ({})` loses the le label",
                                    labels.join(", ")
                                ));
                            }
                        }
                    }
                }
            }
            "label_values" if next_opens('(') => {
                let Some(close) = closing(&tokens, i + 1) else {
                    continue;
                };
                let args = &tokens[i + 2..close];
                let Some(Token::Ident(label)) = args.last() else {
                    problems.push("label_values() without a label name".to_owned());
                    continue;
                };
                let selector = series_in(&args[..args.len() - 1]);
                let allowed = if selector.is_empty() {
                    labels_of(
                        &ALL.iter()
                            .map(|metric| Series {
                                metric,
                                suffix: None,
                            })
                            .collect::<Vec<_>>(),
                    )
                } else {
                    labels_of(&selector)
                };
                if !allowed.contains(label.as_str()) {
                    problems.push(format!(
                        "label_values() of {label:?}, a label of none of the metrics it reads"
                    ));
                }
            }
            _ => {}
        }
    }
    problems
}

/// The tollgate metrics `expr` names, by their contract name.
fn metrics_named(expr: &str) -> BTreeSet<&'static str> {
    tokenize(expr)
        .map(|tokens| series_in(&tokens).iter().map(|s| s.metric.name).collect())
        .unwrap_or_default()
}

mod checker {
    use super::check_promql;

    #[track_caller]
    fn rejects(expr: &str, culprit: &str) {
        let problems = check_promql(expr);
        assert!(
            problems.iter().any(|p| p.contains(culprit)),
            "the checker should reject {expr:?} over {culprit:?}; it found {problems:?}"
        );
    }

    #[track_caller]
    fn accepts(expr: &str) {
        let problems = check_promql(expr);
        assert!(problems.is_empty(), "{expr:?}: {problems:?}");
    }

    #[test]
    fn rejects_metrics_that_do_not_exist() {
        rejects(
            "rate(tollgate_decision_total[5m])",
            "tollgate_decision_total",
        );
        rejects("tollgate_requests_total", "tollgate_requests_total");
        rejects(
            "tollgate_backend_errors_total_bucket",
            "tollgate_backend_errors_total_bucket",
        );
        rejects("tollgate_memory_keys_count", "tollgate_memory_keys_count");
        rejects(
            "sum(tollgate_decisions_total) / sum(tollgate_decisions)",
            "tollgate_decisions",
        );
    }

    #[test]
    fn rejects_labels_a_metric_does_not_have() {
        rejects(r#"tollgate_memory_keys{policy="p"}"#, "\"policy\"");
        rejects(
            r#"tollgate_decisions_total{outcome="denied", route=~"/api.*"}"#,
            "\"route\"",
        );
        rejects(r#"tollgate_decisions_total{le="1"}"#, "\"le\"");
        rejects(
            "sum by (route) (rate(tollgate_decisions_total[5m]))",
            "\"route\"",
        );
        rejects(
            "sum(rate(tollgate_decisions_total[5m])) by (backend)",
            "\"backend\"",
        );
        rejects(
            "max without (policy) (tollgate_circuit_state)",
            "\"policy\"",
        );
        rejects(
            "tollgate_memory_keys / on (instance, policy) tollgate_memory_max_keys",
            "\"policy\"",
        );
        rejects(
            "label_values(tollgate_decisions_total, backend)",
            "\"backend\"",
        );
        rejects("label_values(route)", "\"route\"");
    }

    #[test]
    fn rejects_functions_of_the_wrong_kind() {
        rejects("rate(tollgate_circuit_state[5m])", "tollgate_circuit_state");
        rejects("increase(tollgate_memory_keys[1h])", "tollgate_memory_keys");
        rejects(
            "delta(tollgate_decisions_total[5m])",
            "tollgate_decisions_total",
        );
        rejects(
            "histogram_quantile(0.9, sum by (backend) (rate(tollgate_backend_duration_seconds_bucket[5m])))",
            "le",
        );
        rejects(
            "histogram_quantile(0.9, rate(tollgate_backend_duration_seconds_sum[5m]))",
            "tollgate_backend_duration_seconds_sum",
        );
    }

    #[test]
    fn accepts_what_the_contract_exports() {
        accepts(
            r#"sum by (policy) (rate(tollgate_decisions_total{outcome!~"unlimited|forbidden", policy=~"$policy"}[$__rate_interval]))"#,
        );
        accepts("sum(rate(tollgate_decisions_total[5m])) by (policy, outcome)");
        accepts("histogram_quantile(0.99, sum by (backend, operation, le) (rate(tollgate_backend_duration_seconds_bucket[5m])))");
        accepts("rate(tollgate_backend_duration_seconds_sum[5m]) / rate(tollgate_backend_duration_seconds_count[5m])");
        accepts(
            "tollgate_memory_keys / on (instance, job, backend) tollgate_memory_max_keys > 0.9",
        );
        accepts("max by (instance) (tollgate_settings_sync_age_seconds) # a comment naming tollgate_nothing");
        accepts("label_values(tollgate_decisions_total, policy)");
        accepts(r#"label_values(tollgate_backend_errors_total{backend="redis"}, kind)"#);
        // A metric name inside a string is a value, not a metric.
        accepts(r#"tollgate_decisions_total{policy="tollgate_not_a_metric"}"#);
        accepts(r#"sum by (job) (up{job="tollgate"})"#);
    }
}

// ---------------------------------------------------------------------------
// The dashboard.
// ---------------------------------------------------------------------------

fn dashboard() -> serde_json::Value {
    serde_json::from_str(&read(DASHBOARD))
        .unwrap_or_else(|e| panic!("{DASHBOARD} is not JSON: {e}"))
}

/// Every panel, rows' nested panels included.
fn panels(dashboard: &serde_json::Value) -> Vec<&serde_json::Value> {
    let mut out = Vec::new();
    for panel in dashboard["panels"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
    {
        out.push(panel);
        for nested in panel["panels"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
            out.push(nested);
        }
    }
    out
}

/// Every PromQL text of the dashboard, with where it is: the panels'
/// `targets[].expr` and the template variables' queries.
fn dashboard_queries(dashboard: &serde_json::Value) -> Vec<(String, String)> {
    let mut queries = Vec::new();
    for panel in panels(dashboard) {
        let title = panel["title"].as_str().unwrap_or("(untitled)");
        for target in panel["targets"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[])
        {
            let expr = target["expr"].as_str().unwrap_or_default();
            queries.push((
                format!("panel {title:?}, target {}", target["refId"]),
                expr.to_owned(),
            ));
        }
    }
    for var in dashboard["templating"]["list"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
    {
        if var["type"] != "query" {
            continue;
        }
        let name = var["name"].as_str().unwrap_or("?");
        let query = match &var["query"] {
            serde_json::Value::String(q) => q.clone(),
            q => q["query"].as_str().unwrap_or_default().to_owned(),
        };
        queries.push((format!("variable {name:?} query"), query));
        if let Some(definition) = var["definition"].as_str() {
            queries.push((
                format!("variable {name:?} definition"),
                definition.to_owned(),
            ));
        }
    }
    queries
}

#[test]
fn dashboard_names_only_exported_metrics_and_labels() {
    let dashboard = dashboard();
    let queries = dashboard_queries(&dashboard);
    let mut problems = Vec::new();
    let mut shown = BTreeSet::new();
    for (place, expr) in &queries {
        if expr.trim().is_empty() {
            problems.push(format!("{place}: empty expression"));
            continue;
        }
        for p in check_promql(expr) {
            problems.push(format!("{place}: {p}\n    in {expr:?}"));
        }
        shown.extend(metrics_named(expr));
    }
    assert!(
        problems.is_empty(),
        "{DASHBOARD} does not match src/metrics/names.rs:\n{}",
        problems.join("\n")
    );
    let missing: Vec<&str> = ALL
        .iter()
        .map(|m| m.name)
        .filter(|n| !shown.contains(n))
        .collect();
    assert!(
        missing.is_empty(),
        "{DASHBOARD} shows no panel for {missing:?}: every exported metric belongs on the dashboard"
    );
}

#[test]
fn dashboard_is_an_importable_grafana_dashboard() {
    let dashboard = dashboard();
    assert!(
        dashboard["uid"].as_str().is_some_and(|u| !u.is_empty()),
        "no uid"
    );
    assert!(
        dashboard["title"].as_str().is_some_and(|t| !t.is_empty()),
        "no title"
    );
    let schema = dashboard["schemaVersion"]
        .as_u64()
        .expect("no schemaVersion");
    assert!((36..=41).contains(&schema), "schemaVersion {schema}");

    let vars = dashboard["templating"]["list"]
        .as_array()
        .expect("no templating.list");
    let var = |name: &str| {
        vars.iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no template variable {name:?}"))
    };
    let ds = var("DS_PROMETHEUS");
    assert_eq!(ds["type"], "datasource");
    assert_eq!(ds["query"], "prometheus");
    let policy = var("policy");
    assert_eq!(policy["type"], "query");
    assert_eq!(
        policy["definition"],
        "label_values(tollgate_decisions_total, policy)"
    );

    let mut ids = BTreeSet::new();
    for panel in panels(&dashboard) {
        let title = panel["title"].as_str().unwrap_or("(untitled)");
        let id = panel["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("panel {title:?} has no id"));
        assert!(ids.insert(id), "panel id {id} is used twice ({title:?})");
        let grid = &panel["gridPos"];
        for field in ["h", "w", "x", "y"] {
            assert!(
                grid[field].is_u64(),
                "panel {title:?}: gridPos.{field} missing"
            );
        }
        let right = grid["x"].as_u64().unwrap_or(0) + grid["w"].as_u64().unwrap_or(0);
        assert!(
            right <= 24,
            "panel {title:?} is wider than the grid ({right} > 24)"
        );
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(
            panel["datasource"]["uid"], "${DS_PROMETHEUS}",
            "panel {title:?} must query the dashboard's data source variable"
        );
        assert!(
            panel["description"].as_str().is_some_and(|d| !d.is_empty()),
            "panel {title:?} has no description"
        );
        let targets = panel["targets"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        assert!(!targets.is_empty(), "panel {title:?} has no query");
        let mut refs = BTreeSet::new();
        for target in targets {
            let r = target["refId"]
                .as_str()
                .unwrap_or_else(|| panic!("panel {title:?}: a target without refId"));
            assert!(refs.insert(r), "panel {title:?}: refId {r} twice");
            assert_eq!(
                target["datasource"]["uid"], "${DS_PROMETHEUS}",
                "panel {title:?}, target {r}"
            );
        }
    }

    // The keys are never exported (unbounded cardinality, personal data):
    // the top-keys panel says where they are.
    let top = panels(&dashboard)
        .into_iter()
        .find(|p| {
            p["targets"]
                .to_string()
                .contains("tollgate_top_keys_denied")
        })
        .expect("no panel shows tollgate_top_keys_denied");
    assert_eq!(top["type"], "bargauge");
    let description = top["description"].as_str().unwrap_or_default();
    assert!(
        description.contains("/admin/top") && description.contains("never exported"),
        "the top-keys panel's description must say the keys are listed at /admin/top, never exported: {description:?}"
    );
}

// ---------------------------------------------------------------------------
// The alert rules.
// ---------------------------------------------------------------------------

/// One rule of the rules file, read by [`rules`].
#[derive(Debug, Default)]
struct Rule {
    /// The `alert:` (or `record:`) name.
    name: String,
    expr: String,
    labels: Vec<(String, String)>,
    annotations: Vec<(String, String)>,
}

impl Rule {
    fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// A YAML scalar's value: quotes removed (`"..."` with its escapes,
/// `'...'` with `''`).
fn unquote(value: &str) -> String {
    let v = value.trim();
    if v.len() >= 2 && v.starts_with('"') && v.ends_with('"') {
        let mut out = String::new();
        let mut chars = v[1..v.len() - 1].chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                match chars.next() {
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some(other) => out.push(other),
                    None => {}
                }
            } else {
                out.push(c);
            }
        }
        out
    } else if v.len() >= 2 && v.starts_with('\'') && v.ends_with('\'') {
        v[1..v.len() - 1].replace("''", "'")
    } else {
        v.to_owned()
    }
}

/// The rules of a Prometheus rules file, read line by line: the file is
/// plain block YAML (`- alert:` items whose `expr` is a scalar or a `|`
/// block, `labels` and `annotations` one `key: value` a line). Enough for
/// the names check; `promtool check rules` validates the YAML itself.
fn rules(text: &str) -> Vec<Rule> {
    let lines: Vec<&str> = text.lines().collect();
    let mut rules = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let trimmed = lines[i].trim_start();
        let item = trimmed.strip_prefix("- ").map(str::trim_start);
        let Some(name) = item.and_then(|t| {
            t.strip_prefix("alert:")
                .or_else(|| t.strip_prefix("record:"))
        }) else {
            i += 1;
            continue;
        };
        // The rule's keys are indented as the key after "- ".
        let key_indent = indent(lines[i]) + 2;
        let mut rule = Rule {
            name: unquote(name),
            ..Rule::default()
        };
        i += 1;
        while i < lines.len() {
            let line = lines[i];
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                i += 1;
                continue;
            }
            if indent(line) < key_indent
                || (indent(line) == key_indent && line.trim_start().starts_with("- "))
            {
                break;
            }
            let (key, value) = line.trim().split_once(':').unwrap_or((line.trim(), ""));
            let value = value.trim();
            i += 1;
            // The lines nested under this key.
            let mut nested = Vec::new();
            while i < lines.len() && (lines[i].trim().is_empty() || indent(lines[i]) > key_indent) {
                nested.push(lines[i]);
                i += 1;
            }
            match key {
                "expr" if value.starts_with('|') || value.starts_with('>') => {
                    rule.expr = nested
                        .iter()
                        .map(|l| l.trim())
                        .collect::<Vec<_>>()
                        .join("\n")
                        .trim()
                        .to_owned();
                }
                "expr" => rule.expr = unquote(value),
                "labels" | "annotations" => {
                    let pairs = nested
                        .iter()
                        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
                        .filter_map(|l| l.trim().split_once(':'))
                        .map(|(k, v)| (k.trim().to_owned(), unquote(v)))
                        .collect();
                    if key == "labels" {
                        rule.labels = pairs;
                    } else {
                        rule.annotations = pairs;
                    }
                }
                _ => {}
            }
        }
        rules.push(rule);
    }
    rules
}

fn alert_rules() -> Vec<Rule> {
    let rules = rules(&read(ALERTS));
    assert!(
        rules.len() >= 5,
        "{ALERTS}: only {} rules read ({:?}); the reader or the file is broken",
        rules.len(),
        rules.iter().map(|r| &r.name).collect::<Vec<_>>()
    );
    rules
}

#[test]
fn rules_reader_reads_blocks_scalars_labels_and_annotations() {
    let text = "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: |\n          sum(x)\n            > 1\n        for: 5m\n        labels:\n          severity: critical\n        annotations:\n          summary: \"a \\\"b\\\"\"\n          runbook_url: 'u#a'\n\n      - record: r\n        expr: up == 0\n";
    let rules = rules(text);
    assert_eq!(rules.len(), 2, "{rules:?}");
    assert_eq!(rules[0].name, "A");
    assert_eq!(rules[0].expr, "sum(x)\n> 1");
    assert_eq!(rules[0].label("severity"), Some("critical"));
    assert_eq!(rules[0].annotation("summary"), Some("a \"b\""));
    assert_eq!(rules[0].annotation("runbook_url"), Some("u#a"));
    assert_eq!(rules[1].name, "r");
    assert_eq!(rules[1].expr, "up == 0");
}

#[test]
fn alerts_name_only_exported_metrics_and_labels() {
    let mut problems = Vec::new();
    for rule in alert_rules() {
        if rule.expr.trim().is_empty() {
            problems.push(format!("{}: no expr read", rule.name));
        }
        for p in check_promql(&rule.expr) {
            problems.push(format!("{}: {p}\n    in {:?}", rule.name, rule.expr));
        }
        if metrics_named(&rule.expr).is_empty() {
            problems.push(format!("{}: names no tollgate metric", rule.name));
        }
    }
    assert!(
        problems.is_empty(),
        "{ALERTS} does not match src/metrics/names.rs:\n{}",
        problems.join("\n")
    );
}

#[test]
fn every_alert_has_a_severity_annotations_and_a_runbook_section() {
    let runbook = read(RUNBOOK);
    let anchors: BTreeSet<String> = runbook
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| github_anchor(l.trim_start_matches('#')))
        .collect();
    let tests = read(ALERTS_TEST);
    let mut problems = Vec::new();
    for rule in alert_rules() {
        let name = &rule.name;
        match rule.label("severity") {
            Some("critical" | "warning" | "info") => {}
            other => problems.push(format!(
                "{name}: severity {other:?}, not critical, warning or info"
            )),
        }
        for key in ["summary", "description", "runbook_url"] {
            if rule.annotation(key).is_none_or(str::is_empty) {
                problems.push(format!("{name}: no {key} annotation"));
            }
        }
        let anchor = name.to_lowercase();
        if !anchors.contains(&anchor) {
            problems.push(format!(
                "{name}: {RUNBOOK} has no heading `## {name}` (anchor #{anchor})"
            ));
        }
        if let Some(url) = rule.annotation("runbook_url") {
            if !url.ends_with(&format!("{RUNBOOK}#{anchor}")) {
                problems.push(format!(
                    "{name}: runbook_url {url:?} does not end in {RUNBOOK}#{anchor}"
                ));
            }
        }
        if !tests
            .lines()
            .any(|l| l.trim() == format!("alertname: {name}"))
        {
            problems.push(format!("{name}: {ALERTS_TEST} does not test it"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// GitHub's anchor for a Markdown heading: lower case, spaces to `-`,
/// punctuation other than `-` and `_` dropped.
fn github_anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn github_anchors() {
    assert_eq!(github_anchor(" TollgateCircuitOpen"), "tollgatecircuitopen");
    assert_eq!(
        github_anchor("What it means: the `le` label"),
        "what-it-means-the-le-label"
    );
}

// ---------------------------------------------------------------------------
// promtool.
// ---------------------------------------------------------------------------

/// Runs `promtool <args>` in the crate's directory and asserts it succeeds.
fn promtool(args: &[&str]) {
    let Some(promtool) = prometheus::promtool() else {
        return;
    };
    let out = Command::new(&promtool)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", promtool.display()));
    assert!(
        out.status.success(),
        "`promtool {}` failed ({}):\n{}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn promtool_checks_the_rules() {
    promtool(&["check", "rules", ALERTS]);
}

#[test]
fn promtool_unit_tests_of_the_rules_pass() {
    promtool(&["test", "rules", ALERTS_TEST]);
}

// ---------------------------------------------------------------------------
// A real Prometheus.
// ---------------------------------------------------------------------------

/// A `/metrics` endpoint on a free loopback port serving `body(n)` at its
/// `n`th scrape (from 1), in the Prometheus text format; stopped on drop.
struct Exposition {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Exposition {
    fn serve(body: impl Fn(u64) -> String + Send + 'static) -> Exposition {
        let listener =
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("cannot bind a loopback port");
        let addr = listener.local_addr().expect("listener address");
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let scrapes = AtomicU64::new(0);
            for stream in listener.incoming() {
                if stopping.load(Ordering::Acquire) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let n = scrapes.fetch_add(1, Ordering::Relaxed) + 1;
                // A scrape that fails is retried at the next interval.
                let _ = answer(stream, &body(n));
            }
        });
        Exposition {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

/// Reads a request's head and answers `body` (any path).
fn answer(stream: TcpStream, body: &str) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
    }
    let mut stream = reader.into_inner();
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

impl Drop for Exposition {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// How long a condition on the real server may take (a few scrapes).
const SCRAPED_WITHIN: Duration = Duration::from_secs(30);

#[test]
fn prometheus_helper_reads_a_scraped_value() {
    let exposition = Exposition::serve(|_| {
        "# TYPE tollgate_decisions_total counter\n\
         tollgate_decisions_total{policy=\"p\",outcome=\"allowed\"} 3\n\
         tollgate_decisions_total{policy=\"p\",outcome=\"denied\"} 4\n"
            .to_owned()
    });
    let server = prometheus_or_skip!(&[exposition.addr], Duration::from_millis(200));
    server.wait_for(
        r#"tollgate_decisions_total{policy="p",outcome="allowed"}"#,
        3.0,
        SCRAPED_WITHIN,
    );
    assert_eq!(
        server.query(r#"tollgate_decisions_total{policy="p",outcome="allowed"}"#),
        Some(3.0)
    );
    // The sum over the vector, and the target's labels.
    assert_eq!(
        server.query(r#"tollgate_decisions_total{job="tollgate"}"#),
        Some(7.0)
    );
    assert_eq!(
        server.query(r#"tollgate_decisions_total{policy="q"}"#),
        None
    );
    let up = server.try_query("up").expect("up");
    assert_eq!(up.len(), 1, "{up:?}");
    assert_eq!(up[0].labels["instance"], exposition.addr.to_string());
    assert_eq!(up[0].value, 1.0);
    // A scalar, and a bad expression reported with the server's error.
    assert_eq!(server.query("1 + 2"), Some(3.0));
    let error = server
        .try_query("sum by (policy (x)")
        .expect_err("a parse error");
    assert!(
        error.contains("bad_data") || error.contains("parse error"),
        "{error}"
    );
}

/// The values each label takes in [`contract_exposition`].
fn label_values(label: &str) -> &'static [&'static str] {
    match label {
        "policy" => &["p"],
        "outcome" => &[
            "allowed",
            "denied",
            "shadow_denied",
            "fail_open",
            "fail_closed",
            "unlimited",
            "forbidden",
            "key_rejected",
        ],
        "backend" => &["redis"],
        "operation" => &["acquire"],
        "kind" => &["timeout"],
        "status" => &["429"],
        "rank" => &["1", "2"],
        _ => &["x"],
    }
}

/// Every label set of `labels` over [`label_values`], rendered `a="1",b="2"`.
fn label_sets(labels: &[&str]) -> Vec<String> {
    let mut sets = vec![String::new()];
    for label in labels {
        sets = sets
            .iter()
            .flat_map(|set| {
                label_values(label).iter().map(move |v| {
                    let sep = if set.is_empty() { "" } else { "," };
                    format!("{set}{sep}{label}=\"{v}\"")
                })
            })
            .collect();
    }
    sets
}

/// Every metric of the contract in the Prometheus text format as
/// metrics-exporter-prometheus writes it, at its `n`th scrape: counters
/// and histograms grow with `n` (so `rate()` is not zero), gauges are
/// fixed.
fn contract_exposition(n: u64) -> String {
    let mut out = String::new();
    for metric in ALL {
        let kind = match metric.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        out.push_str(&format!(
            "# HELP {} {}\n# TYPE {} {kind}\n",
            metric.name, metric.help, metric.name
        ));
        for set in label_sets(metric.labels) {
            let braces = |extra: &str| {
                let sep = if set.is_empty() || extra.is_empty() {
                    ""
                } else {
                    ","
                };
                let inner = format!("{set}{sep}{extra}");
                if inner.is_empty() {
                    String::new()
                } else {
                    format!("{{{inner}}}")
                }
            };
            match metric.kind {
                Kind::Counter => {
                    out.push_str(&format!("{}{} {}\n", metric.name, braces(""), 10 * n))
                }
                Kind::Gauge => out.push_str(&format!("{}{} 50\n", metric.name, braces(""))),
                Kind::Histogram => {
                    for (le, count) in [("0.001", n), ("0.01", 2 * n), ("+Inf", 3 * n)] {
                        out.push_str(&format!(
                            "{}_bucket{} {count}\n",
                            metric.name,
                            braces(&format!("le=\"{le}\""))
                        ));
                    }
                    out.push_str(&format!(
                        "{}_sum{} {}\n",
                        metric.name,
                        braces(""),
                        0.01 * n as f64
                    ));
                    out.push_str(&format!("{}_count{} {}\n", metric.name, braces(""), 3 * n));
                }
            }
        }
    }
    out
}

/// Every dashboard query answers with data on a real Prometheus that
/// scrapes every metric of the contract: the PromQL parses, and its
/// selectors, joins and ratios match the series tollgate exports.
#[test]
fn dashboard_queries_return_data_from_a_real_prometheus() {
    let exposition = Exposition::serve(contract_exposition);
    let server = prometheus_or_skip!(&[exposition.addr], Duration::from_millis(200));
    // Two scrapes at least, so that rates have two points.
    server.wait_for_series("count_over_time(up[1m]) >= 3", SCRAPED_WITHIN);
    let dashboard = dashboard();
    let queries: Vec<(String, String)> = dashboard_queries(&dashboard)
        .into_iter()
        .map(|(place, expr)| {
            let promql = expr
                .replace("$__rate_interval", "1m")
                .replace("${policy}", ".*")
                .replace("$policy", ".*");
            // Grafana's label_values(metric, label) lists the values of
            // the label over the series metric matches.
            let promql = match promql
                .trim()
                .strip_prefix("label_values(")
                .and_then(|rest| rest.strip_suffix(')'))
                .and_then(|args| args.rsplit_once(','))
            {
                Some((selector, label)) => format!("count by ({}) ({selector})", label.trim()),
                None => promql,
            };
            (place, promql)
        })
        .collect();
    let deadline = Instant::now() + SCRAPED_WITHIN;
    loop {
        let mut empty = Vec::new();
        for (place, promql) in &queries {
            match server.try_query(promql) {
                Ok(samples) if samples.iter().any(|s| s.value.is_finite()) => {}
                Ok(samples) => empty.push(format!("{place}: {promql:?} answers {samples:?}")),
                Err(e) => panic!("{place}: {promql:?} is refused by Prometheus: {e}"),
            }
        }
        if empty.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "dashboard queries without a finite value after {SCRAPED_WITHIN:?} of scrapes of every \
             metric:\n{}\ntargets: {}",
            empty.join("\n"),
            server.targets()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
