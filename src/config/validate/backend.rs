//! Backends (memory, Redis, failover, the blocked-key cache) and the
//! metrics settings.

use super::*;

impl Validator<'_> {
    pub(super) fn backend(&mut self, path: &Path, spec: &BackendSpec) {
        let kind = spec.kind.as_deref().unwrap_or("memory");
        match kind {
            "memory" => {
                if spec.redis.is_some() {
                    self.warn(
                        &path.key("redis"),
                        "the Redis settings are not used: the backend is memory",
                        "set kind = \"redis\" to use them",
                    );
                }
                if spec.failover.is_some() {
                    self.error(
                        &path.key("failover"),
                        "a failover needs a networked primary, and the backend is memory",
                        "set kind = \"redis\", or remove the failover",
                    );
                }
                if spec
                    .blocked_cache
                    .as_ref()
                    .is_some_and(|b| b.enabled != Some(false))
                {
                    self.warn(
                        &path.key("blocked_cache"),
                        "the blocked-key cache saves calls to a networked backend; in front of memory it only costs memory",
                        "remove it, or use it with kind = \"redis\"",
                    );
                }
            }
            "redis" => {
                if !cfg!(feature = "redis") {
                    self.missing_feature(&path.key("kind"), "the Redis backend", "redis");
                }
                match &spec.redis {
                    None => self.error(
                        &path.key("redis"),
                        "missing: the Redis backend needs a server",
                        "add [backend.redis] with url = \"redis://127.0.0.1:6379/0\"",
                    ),
                    Some(redis) => self.redis(&path.key("redis"), redis),
                }
            }
            other => {
                self.error(
                    &path.key("kind"),
                    format!("unknown backend {other:?}"),
                    suggest(other, &["memory", "redis"]),
                );
            }
        }
        if let Some(memory) = &spec.memory {
            for (field, value) in [("max_keys", memory.max_keys), ("shards", memory.shards)] {
                if value == Some(0) {
                    self.error(
                        &path.key("memory").key(field),
                        format!("{field} must be at least 1"),
                        "leave it out for the default",
                    );
                }
            }
        }
        if let Some(failover) = &spec.failover {
            let at = path.key("failover");
            if let Some(fallback) = &failover.fallback {
                if fallback != "memory" {
                    self.error(
                        &at.key("fallback"),
                        format!("unknown fallback {fallback:?}"),
                        "the fallback is \"memory\" (set up by [backend.memory])",
                    );
                }
            }
            let _ = self.duration(&at.key("timeout"), failover.timeout.as_ref());
            let base = self.duration(&at.key("backoff"), failover.backoff.as_ref());
            let max = self.duration(&at.key("max_backoff"), failover.max_backoff.as_ref());
            if let (Some(base), Some(max)) = (base, max) {
                if max < base {
                    self.warn(
                        &at.key("max_backoff"),
                        "the longest backoff is shorter than the first, and is raised to it",
                        "give a max_backoff at least as long as backoff",
                    );
                }
            }
            if failover
                .failure_threshold
                .is_some_and(|n| u32::try_from(n).is_err())
            {
                self.error(
                    &at.key("failure_threshold"),
                    "more failures in a row than a breaker counts",
                    "give a threshold of at most 4294967295 (the default is 5)",
                );
            }
            if failover.failure_threshold == Some(0) {
                self.error(
                    &at.key("failure_threshold"),
                    "a threshold of 0 failures would open the breaker before any call",
                    "give at least 1 (the default is 5)",
                );
            }
            if failover.jitter_percent.is_some_and(|p| p > 100) {
                self.error(
                    &at.key("jitter_percent"),
                    "the jitter is a share of the backoff, 0 to 100",
                    "give a percentage from 0 to 100 (the default is 20)",
                );
            }
        }
        if let Some(cache) = &spec.blocked_cache {
            if cache.capacity == Some(0) {
                self.error(
                    &path.key("blocked_cache").key("capacity"),
                    "a capacity of 0 remembers nothing",
                    "give at least 1, or set enabled = false",
                );
            }
        }
    }

    pub(super) fn redis(&mut self, path: &Path, spec: &crate::config::schema::RedisSpec) {
        let targets = [
            spec.url.is_some(),
            !spec.cluster.is_empty(),
            spec.sentinel.is_some(),
        ]
        .iter()
        .filter(|t| **t)
        .count();
        if targets == 0 {
            self.error(
                path,
                "no server: give url, cluster or sentinel",
                "add url = \"redis://127.0.0.1:6379/0\"",
            );
        } else if targets > 1 {
            self.error(
                path,
                "more than one of url, cluster and sentinel",
                "keep the one that describes your deployment",
            );
        }
        let check = |v: &mut Self, at: Path, url: &str| match values::redis_url(url) {
            Ok(u) => {
                if u.tls && !cfg!(feature = "redis-tls") {
                    v.missing_feature(&at, "a rediss:// (TLS) URL", "redis-tls");
                }
            }
            Err(bad) => v.bad(&at, bad),
        };
        if let Some(url) = &spec.url {
            check(self, path.key("url"), url);
        }
        for (i, url) in spec.cluster.iter().enumerate() {
            check(self, path.key("cluster").index(i), url);
        }
        if let Some(sentinel) = &spec.sentinel {
            let at = path.key("sentinel");
            if !cfg!(feature = "redis-sentinel") {
                self.missing_feature(&at, "Redis Sentinel", "redis-sentinel");
            }
            if sentinel.nodes.is_empty() {
                self.error(
                    &at.key("nodes"),
                    "no sentinel listed",
                    "list the sentinels: nodes = [\"redis://10.0.0.1:26379\"]",
                );
            }
            for (i, url) in sentinel.nodes.iter().enumerate() {
                check(self, at.key("nodes").index(i), url);
            }
            if sentinel.service.as_deref().is_none_or(str::is_empty) {
                self.error(
                    &at.key("service"),
                    "missing: the master's service name",
                    "add service = \"mymaster\"",
                );
            }
        }
        if spec.lazy == Some(true) && !spec.cluster.is_empty() {
            self.error(
                &path.key("lazy"),
                "a cluster backend must learn the cluster's slots before serving, so it cannot start lazily",
                "remove lazy, or set it to false",
            );
        }
        for field in ["timeout", "connect_timeout"] {
            let value = if field == "timeout" {
                &spec.timeout
            } else {
                &spec.connect_timeout
            };
            if let Some(d) = self.duration(&path.key(field), value.as_ref()) {
                if d.is_zero() {
                    self.error(
                        &path.key(field),
                        "a timeout of zero fails every call",
                        "give a timeout such as \"250ms\"",
                    );
                }
            }
        }
        let _ = self.duration(&path.key("ttl_margin"), spec.ttl_margin.as_ref());
    }

    pub(super) fn metrics(&mut self, path: &Path, spec: &MetricsSpec) {
        if !cfg!(feature = "metrics") {
            self.missing_feature(path, "metrics", "metrics");
        }
        if let Some(ratio) = spec.near_limit_ratio {
            if !(ratio > 0.0 && ratio <= 1.0) {
                self.error(
                    &path.key("near_limit_ratio"),
                    format!("{ratio} is not a share of the limit"),
                    "give a number above 0 and at most 1 (the default is 0.8)",
                );
            }
        }
        if let Some(interval) = self.duration(&path.key("interval"), spec.interval.as_ref()) {
            if interval < Duration::from_millis(10) {
                self.warn(
                    &path.key("interval"),
                    "gauges are sampled at most every 10ms; this interval is raised to it",
                    "give at least \"10ms\" (the default is 5s)",
                );
            }
        }
        if let Some(top) = &spec.top_keys {
            if let Some(span) = self.duration(&path.key("top_keys").key("span"), top.span.as_ref())
            {
                if span.is_zero() {
                    self.error(
                        &path.key("top_keys").key("span"),
                        "a span of zero keeps no key",
                        "give a span such as \"5m\" (the default), or capacity = 0 to keep none",
                    );
                }
            }
        }
    }
}
