//! The Redis [`SettingsStore`]: one hash and one counter per map, written
//! and read by small Lua scripts on the backend's own connection.

use std::fmt;
use std::sync::Arc;

use ::redis::{Script, Value};

use super::{failed, RedisBackend};
use crate::settings::{SettingsStore, StoreError, StoreFuture};

/// `put`: sets the field, then moves the version; answers the new version.
const PUT: &str = "\
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return redis.call('INCR', KEYS[2])
";

/// `remove`: deletes the field (nothing if absent), then moves the version
/// in every case; answers the new version.
const REMOVE: &str = "\
redis.call('HDEL', KEYS[1], ARGV[1])
return redis.call('INCR', KEYS[2])
";

/// `load`: the version (`'0'` when the counter is missing) and every field
/// with its value, read together.
const LOAD: &str = "\
local v = redis.call('GET', KEYS[2])
return {v or '0', redis.call('HGETALL', KEYS[1])}
";

impl RedisBackend {
    /// The store behind `Backend::store`: named maps of settings (per-key
    /// overrides, allow/deny lists) shared by every server connected to
    /// the same Redis, on this backend's connection (one server, a
    /// cluster or a Sentinel-monitored master), under its key prefix and
    /// bounded by its per-call timeout.
    ///
    /// # Keys
    ///
    /// Map `m` is a hash, and its version a counter (a string holding an
    /// integer), next to it:
    ///
    /// ```text
    /// {prefix}{settings:<m>}      hash: field -> value
    /// {prefix}{settings:<m>}:v    version
    /// tollgate:{settings:overrides}
    /// tollgate:{settings:overrides}:v
    /// ```
    ///
    /// The braces are a Redis Cluster hash tag: both keys of a map are in
    /// one slot, so every script touches a single node. The tag always
    /// starts with `settings:`, so it is never empty, whatever the map's
    /// name (even empty, or starting with `}`). Map names, fields and
    /// values are arbitrary UTF-8; fields and values are script
    /// arguments, never part of a key. Settings keys have no TTL.
    ///
    /// # Versions
    ///
    /// Every [`put`](SettingsStore::put) and every
    /// [`remove`](SettingsStore::remove) increments the version (`INCR`),
    /// in the same script as its write; a remove moves it even when the
    /// field was absent. A map never written has version `0`. A
    /// [`load`](SettingsStore::load) reads the version and the whole hash
    /// in one script, so the pair is consistent.
    ///
    /// # Failures
    ///
    /// Every call is bounded by the backend's timeout
    /// ([`StoreError::Timeout`]); any other failure is
    /// [`StoreError::Unavailable`]. An entry of the hash that is not
    /// UTF-8 (written by something other than tollgate) is skipped by
    /// `load` with a warning (which names the map, not the entry's bytes);
    /// the other entries load.
    pub fn settings(&self) -> Arc<dyn SettingsStore> {
        Arc::new(RedisSettings {
            backend: self.clone(),
            put: Script::new(PUT),
            remove: Script::new(REMOVE),
            load: Script::new(LOAD),
        })
    }
}

/// [`SettingsStore`] on a [`RedisBackend`]'s connection.
struct RedisSettings {
    backend: RedisBackend,
    put: Script,
    remove: Script,
    load: Script,
}

impl fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the URL: it may carry a password.
        f.debug_struct("RedisSettings")
            .field("prefix", &self.backend.inner.prefix)
            .field("timeout", &self.backend.inner.timeout)
            .finish_non_exhaustive()
    }
}

/// The hash holding map `map`: `{prefix}{settings:<map>}`.
fn hash_key(prefix: &str, map: &str) -> String {
    let mut key = String::with_capacity(prefix.len() + map.len() + 11);
    key.push_str(prefix);
    key.push_str("{settings:");
    key.push_str(map);
    key.push('}');
    key
}

/// The version of map `map`: `{prefix}{settings:<map>}:v`.
fn version_key(prefix: &str, map: &str) -> String {
    let mut key = hash_key(prefix, map);
    key.push_str(":v");
    key
}

fn malformed() -> StoreError {
    StoreError::Unavailable("redis: malformed reply from the settings store".into())
}

/// The bytes of a string reply.
fn bytes(value: &Value) -> Option<&[u8]> {
    match value {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

/// A version: a decimal string (`GET`, the load script) or an integer
/// (`INCR`); `0` for a missing counter.
fn parse_version(value: &Value) -> Result<u64, StoreError> {
    match value {
        Value::Nil => Ok(0),
        Value::Int(i) => u64::try_from(*i).map_err(|_| malformed()),
        other => bytes(other)
            .and_then(|b| std::str::from_utf8(b).ok())
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(malformed),
    }
}

/// The entries of a `HGETALL` reply (a flat array of fields and values,
/// or a map), skipping those that are not UTF-8.
fn parse_entries(map: &str, value: Value) -> Result<Vec<(String, String)>, StoreError> {
    let pairs: Vec<(Value, Value)> = match value {
        Value::Array(items) => {
            if items.len() % 2 != 0 {
                return Err(malformed());
            }
            let mut items = items.into_iter();
            let mut pairs = Vec::with_capacity(items.len() / 2);
            while let (Some(field), Some(value)) = (items.next(), items.next()) {
                pairs.push((field, value));
            }
            pairs
        }
        Value::Map(pairs) => pairs,
        _ => return Err(malformed()),
    };
    let mut entries = Vec::with_capacity(pairs.len());
    let mut skipped = 0usize;
    for (field, value) in pairs {
        let (Some(field), Some(value)) = (text(field), text(value)) else {
            skipped += 1;
            continue;
        };
        entries.push((field, value));
    }
    if skipped > 0 {
        // The map's name only: fields may be client keys.
        tracing::warn!(
            map,
            skipped,
            "tollgate settings store: skipped entries that are not UTF-8"
        );
    }
    Ok(entries)
}

/// A string reply as UTF-8 text; `None` for anything else.
fn text(value: Value) -> Option<String> {
    match value {
        Value::BulkString(b) => String::from_utf8(b).ok(),
        Value::SimpleString(s) => Some(s),
        _ => None,
    }
}

impl RedisSettings {
    /// Runs `script` on map `map`'s two keys (`EVALSHA`, loading the
    /// script on `NOSCRIPT`); on a cluster, routed by the keys' slot.
    async fn run(&self, script: &Script, map: &str, args: &[&str]) -> Result<Value, StoreError> {
        let prefix = &self.backend.inner.prefix;
        let mut invocation = script.prepare_invoke();
        invocation
            .key(hash_key(prefix, map))
            .key(version_key(prefix, map));
        for arg in args {
            invocation.arg(*arg);
        }
        let mut connection = self.backend.inner.connection.clone();
        self.backend
            .inner
            .bounded(async move {
                invocation
                    .invoke_async::<Value>(&mut connection)
                    .await
                    .map_err(|e| failed(&e))
            })
            .await
            .map_err(StoreError::from)
    }
}

impl SettingsStore for RedisSettings {
    fn load<'a>(&'a self, map: &'a str) -> StoreFuture<'a, (u64, Vec<(String, String)>)> {
        Box::pin(async move {
            let reply = self.run(&self.load, map, &[]).await?;
            let Value::Array(items) = reply else {
                return Err(malformed());
            };
            let mut items = items.into_iter();
            let (Some(version), Some(entries), None) = (items.next(), items.next(), items.next())
            else {
                return Err(malformed());
            };
            let version = parse_version(&version)?;
            Ok((version, parse_entries(map, entries)?))
        })
    }

    fn version<'a>(&'a self, map: &'a str) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            let mut get = ::redis::cmd("GET");
            get.arg(version_key(&self.backend.inner.prefix, map));
            let mut connection = self.backend.inner.connection.clone();
            let reply = self
                .backend
                .inner
                .bounded(async {
                    get.query_async::<Value>(&mut connection)
                        .await
                        .map_err(|e| failed(&e))
                })
                .await
                .map_err(StoreError::from)?;
            parse_version(&reply)
        })
    }

    fn put<'a>(&'a self, map: &'a str, field: &'a str, value: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let reply = self.run(&self.put, map, &[field, value]).await?;
            parse_version(&reply).map(|_| ())
        })
    }

    fn remove<'a>(&'a self, map: &'a str, field: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let reply = self.run(&self.remove, map, &[field]).await?;
            parse_version(&reply).map(|_| ())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_keys_of_a_map_share_a_non_empty_hash_tag() {
        use ::redis::cluster_routing::Slot;
        for map in ["overrides", "", "}", "}x", "a}b", "{", "a:b/c", "é☃"] {
            let (h, v) = (hash_key("tollgate:", map), version_key("tollgate:", map));
            assert!(h.starts_with("tollgate:{settings:"), "{h}");
            assert_eq!(v, format!("{h}:v"));
            assert_eq!(Slot::for_key(h.as_bytes()), Slot::for_key(v.as_bytes()));
        }
        assert_eq!(
            hash_key("tollgate:", "overrides"),
            "tollgate:{settings:overrides}"
        );
    }

    #[test]
    fn versions_parse_from_every_reply_shape() {
        assert_eq!(parse_version(&Value::Nil).ok(), Some(0));
        assert_eq!(parse_version(&Value::Int(7)).ok(), Some(7));
        assert_eq!(
            parse_version(&Value::BulkString(b"42".to_vec())).ok(),
            Some(42)
        );
        assert!(parse_version(&Value::Int(-1)).is_err());
        assert!(parse_version(&Value::BulkString(b"x".to_vec())).is_err());
    }

    #[test]
    fn entries_that_are_not_utf8_are_skipped() {
        let reply = Value::Array(vec![
            Value::BulkString(b"a".to_vec()),
            Value::BulkString(b"1".to_vec()),
            Value::BulkString(vec![0xff, 0xfe]),
            Value::BulkString(b"2".to_vec()),
            Value::BulkString(b"c".to_vec()),
            Value::BulkString(vec![0xc3]),
        ]);
        let entries = parse_entries("m", reply).ok();
        assert_eq!(entries, Some(vec![("a".to_owned(), "1".to_owned())]));
        let odd = Value::Array(vec![Value::BulkString(b"a".to_vec())]);
        assert!(parse_entries("m", odd).is_err());
    }
}
