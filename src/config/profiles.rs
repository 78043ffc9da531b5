//! Profiles and environment variables: the layers a configuration is made
//! of, and where each value came from.
//!
//! # Precedence
//!
//! From lowest to highest: **the file** (its top level), then **the
//! profile** chosen (`[profiles.NAME]`), then **the environment**
//! (`TOLLGATE_*`). A later layer wins for every value it sets:
//!
//! - a profile is merged into the file: a table in the profile is merged
//!   into the file's table of the same name, field by field; a value or a
//!   list replaces the file's (a profile's `routes` replaces all of them),
//!   and a null (YAML's `null` or `~`) takes the file's value away (a
//!   `development` profile's `redis: null`);
//! - `TOLLGATE_A__B__C=value` sets the single value at `a.b.c`: each `__`
//!   separates two fields, names are read in lower case, and a number
//!   picks an element of a list (`TOLLGATE_ROUTES__0__QUOTA`). The value
//!   is read as what it replaces (`true`/`false` for a boolean, a number
//!   for a number); a new value is a boolean, a number or text as it
//!   looks. A variable can set a value, never a list or a table.
//!   Variables whose first field is not one of the file's are left alone
//!   (other tools use `TOLLGATE_` too), with a warning when they look like
//!   a typo of one.
//!
//! The profile is the one named by the caller (`tollgate check
//! --profile`), else by `TOLLGATE_PROFILE`, else none.
//! [`Config::sources`](super::Config::sources) tells which layer set each
//! value.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Map, Value};

use super::diagnostic::{did_you_mean, Diagnostic};
use super::path::{Path, Seg};

/// The variable naming the profile when the caller names none.
pub const PROFILE_VAR: &str = "TOLLGATE_PROFILE";

/// The prefix of the variables that override values.
pub const ENV_PREFIX: &str = "TOLLGATE_";

/// The top-level fields of a file (what a variable's first field may be).
pub(crate) const TOP_FIELDS: &[&str] = &[
    "default",
    "algorithm",
    "max_delay",
    "key",
    "groups",
    "routes",
    "exempt",
    "rejected_keys",
    "access",
    "overrides",
    "headers",
    "reset_format",
    "fail_mode",
    "shadow",
    "shadow_headers",
    "sync_interval",
    "backend",
    "metrics",
    "profiles",
];

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Source {
    /// The file's top level.
    File,
    /// The profile of this name.
    Profile(String),
    /// This environment variable.
    Env(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::File => f.write_str("file"),
            Source::Profile(name) => write!(f, "profile {name}"),
            Source::Env(var) => write!(f, "environment {var}"),
        }
    }
}

/// Which layer set each value (leaf) of the tree.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sources {
    leaves: BTreeMap<Path, Source>,
}

impl Sources {
    /// Records every leaf of `value`, at `at`, as coming from `source`,
    /// forgetting what was recorded under `at` before.
    pub(crate) fn set(&mut self, at: &Path, value: &Value, source: &Source) {
        self.leaves.retain(|path, _| !path.starts_with(at));
        let mut path = at.clone();
        record(&mut self.leaves, &mut path, value, source);
    }

    /// The layer that set the value at `path` or a value under it.
    pub(crate) fn of(&self, path: &Path) -> Option<&Source> {
        self.leaves
            .iter()
            .find(|(leaf, _)| leaf.starts_with(path))
            .map(|(_, source)| source)
    }

    /// Every leaf with its source.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&Path, &Source)> {
        self.leaves.iter()
    }
}

fn record(out: &mut BTreeMap<Path, Source>, path: &mut Path, value: &Value, source: &Source) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, child) in map {
                path.push(Seg::Key(key.clone()));
                record(out, path, child, source);
                path.pop();
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for (index, child) in items.iter().enumerate() {
                path.push(Seg::Index(index));
                record(out, path, child, source);
                path.pop();
            }
        }
        _ => {
            out.insert(path.clone(), source.clone());
        }
    }
}

/// Merges `overlay` into `base`: tables field by field, anything else
/// replaced.
pub(crate) fn merge(base: &mut Value, overlay: &Value) {
    match (base, overlay) {
        (Value::Object(base), Value::Object(overlay)) => {
            for (key, value) in overlay {
                match base.get_mut(key) {
                    Some(existing) if existing.is_object() && value.is_object() => {
                        merge(existing, value)
                    }
                    _ => {
                        base.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (base, overlay) => *base = overlay.clone(),
    }
}

/// Records `profile`'s leaves in `sources` as its own.
pub(crate) fn record_profile(sources: &mut Sources, name: &str, profile: &Value) {
    if let Value::Object(map) = profile {
        for (key, value) in map {
            let at = Path::from(vec![Seg::Key(key.clone())]);
            set_merged(sources, &at, value, &Source::Profile(name.to_owned()));
        }
    }
}

/// Like [`Sources::set`] but tables merge: only the leaves the overlay
/// has change source.
fn set_merged(sources: &mut Sources, at: &Path, value: &Value, source: &Source) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, child) in map {
                let mut path = at.clone();
                path.push(Seg::Key(key.clone()));
                set_merged(sources, &path, child, source);
            }
        }
        _ => sources.set(at, value, source),
    }
}

/// Applies the `TOLLGATE_*` variables among `vars` to `tree`, recording
/// them in `sources`; problems are returned (variables that look like a
/// typo, that name a list or a table, or an element that is not there).
pub(crate) fn apply_env(
    tree: &mut Value,
    vars: &[(String, String)],
    sources: &mut Sources,
) -> Vec<Diagnostic> {
    let mut found = Vec::new();
    let mut vars: Vec<&(String, String)> = vars.iter().collect();
    vars.sort();
    for (name, text) in vars {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if name == PROFILE_VAR || rest.is_empty() {
            continue;
        }
        let segments: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        let first = segments[0].as_str();
        if !TOP_FIELDS.contains(&first) || first == "profiles" {
            if let Some(close) = did_you_mean(first, TOP_FIELDS.iter().copied()) {
                found.push(
                    Diagnostic::warning(
                        "",
                        format!("{name} is not a configuration variable and is ignored ({first:?} is not a field)"),
                    )
                    .fix(format!(
                        "did you mean {}{}?",
                        ENV_PREFIX,
                        close.to_ascii_uppercase()
                    )),
                );
            }
            continue;
        }
        if segments.iter().any(String::is_empty) {
            found.push(
                Diagnostic::error(
                    "",
                    format!("{name}: an empty field name (`___` or a trailing `__`)"),
                )
                .fix("separate fields with exactly two underscores: TOLLGATE_BACKEND__REDIS__URL"),
            );
            continue;
        }
        match set_path(tree, &segments, text) {
            Ok(path) => {
                let value = path_value(tree, &path).cloned().unwrap_or(Value::Null);
                sources.set(&path, &value, &Source::Env(name.clone()));
            }
            Err(problem) => found.push(
                Diagnostic::error(
                    problem.path.to_string(),
                    format!("{name}: {}", problem.message),
                )
                .fix(problem.fix),
            ),
        }
    }
    found
}

struct SetProblem {
    path: Path,
    message: String,
    fix: String,
}

/// Sets `segments` (field names, or list indexes) of `tree` to `text`,
/// typed as what it replaces.
fn set_path(tree: &mut Value, segments: &[String], text: &str) -> Result<Path, SetProblem> {
    let mut path = Path::default();
    let mut node = tree;
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        if let Value::Array(items) = node {
            let len = items.len();
            let index = segment.parse::<usize>().ok().filter(|&n| n < len);
            let Some(index) = index else {
                return Err(SetProblem {
                    message: format!("{segment:?} is not an element of this list of {len}"),
                    fix: format!(
                        "use an index from 0 to {}, or edit the file",
                        len.saturating_sub(1)
                    ),
                    path,
                });
            };
            path.push(Seg::Index(index));
            node = &mut items[index];
        } else {
            let Value::Object(map) = node else {
                return Err(SetProblem {
                    message: "this is a single value, with no fields to set".into(),
                    fix: "set the value itself, without the fields after it".into(),
                    path,
                });
            };
            path.push(Seg::Key(segment.clone()));
            node = map.entry(segment.clone()).or_insert_with(|| {
                if last {
                    Value::Null
                } else {
                    Value::Object(Map::new())
                }
            });
        }
        if last {
            let value =
                match &*node {
                    Value::Array(_) | Value::Object(_) => return Err(SetProblem {
                        message: format!(
                            "this is a {}; a variable sets one value",
                            if node.is_array() { "list" } else { "table" }
                        ),
                        fix: "set one of its values (TOLLGATE_ROUTES__0__QUOTA), or edit the file"
                            .into(),
                        path,
                    }),
                    existing => typed(existing, text),
                };
            *node = value;
        }
    }
    Ok(path)
}

/// `text` as the type of `existing` when it reads as one; a new value is a
/// boolean, an integer, a number, or text.
fn typed(existing: &Value, text: &str) -> Value {
    let as_bool = || match text {
        "true" => Some(Value::Bool(true)),
        "false" => Some(Value::Bool(false)),
        _ => None,
    };
    let as_number = || {
        if let Ok(n) = text.parse::<i64>() {
            return Some(Value::from(n));
        }
        if let Ok(n) = text.parse::<u64>() {
            return Some(Value::from(n));
        }
        text.parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
    };
    let string = || Value::String(text.to_owned());
    match existing {
        Value::String(_) => string(),
        Value::Bool(_) => as_bool().unwrap_or_else(string),
        Value::Number(_) => as_number().unwrap_or_else(string),
        _ => as_bool().or_else(as_number).unwrap_or_else(string),
    }
}

/// The value at `path`, if there is one.
pub(crate) fn path_value<'a>(tree: &'a Value, path: &Path) -> Option<&'a Value> {
    let mut node = tree;
    for seg in path.iter() {
        node = match (seg, node) {
            (Seg::Key(key), Value::Object(map)) => map.get(key)?,
            (Seg::Index(index), Value::Array(items)) => items.get(*index)?,
            _ => return None,
        };
    }
    Some(node)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn a_profile_merges_tables_and_replaces_lists_and_values() {
        let mut base = json!({"backend": {"kind": "redis", "redis": {"url": "a", "prefix": "p"}}, "exempt": ["/a", "/b"]});
        merge(
            &mut base,
            &json!({"backend": {"redis": {"url": "b"}}, "exempt": ["/c"]}),
        );
        assert_eq!(
            base,
            json!({"backend": {"kind": "redis", "redis": {"url": "b", "prefix": "p"}}, "exempt": ["/c"]})
        );
    }

    #[test]
    fn variables_set_values_typed_as_what_they_replace() {
        let mut tree = json!({"shadow": false, "routes": [{"quota": "1/s"}], "metrics": {"near_limit_ratio": 0.5}});
        let mut sources = Sources::default();
        let found = apply_env(
            &mut tree,
            &env(&[
                ("TOLLGATE_SHADOW", "true"),
                ("TOLLGATE_ROUTES__0__QUOTA", "5/m"),
                ("TOLLGATE_METRICS__NEAR_LIMIT_RATIO", "0.9"),
                ("TOLLGATE_BACKEND__REDIS__URL", "redis://h/"),
                ("TOLLGATE_PROFILE", "ignored"),
                ("TOLLGATE_REQUIRE_PROMETHEUS", "1"),
                ("TOLLGATE_REQUIRE_REDIS", "1"),
                ("PATH", "/bin"),
            ]),
            &mut sources,
        );
        assert!(found.is_empty(), "{found:?}");
        assert_eq!(
            tree,
            json!({"shadow": true, "routes": [{"quota": "5/m"}], "metrics": {"near_limit_ratio": 0.9},
                   "backend": {"redis": {"url": "redis://h/"}}})
        );
        let url: Path = vec![
            Seg::Key("backend".into()),
            Seg::Key("redis".into()),
            Seg::Key("url".into()),
        ]
        .into();
        assert_eq!(
            sources.of(&url),
            Some(&Source::Env("TOLLGATE_BACKEND__REDIS__URL".into()))
        );
    }

    #[test]
    fn variables_cannot_set_lists_or_missing_elements_and_typos_are_told() {
        let mut tree = json!({"exempt": ["/a"], "routes": []});
        let mut sources = Sources::default();
        let found = apply_env(
            &mut tree,
            &env(&[
                ("TOLLGATE_EXEMPT", "/b"),
                ("TOLLGATE_ROUTES__3__QUOTA", "1/s"),
                ("TOLLGATE_BAKEND__KIND", "redis"),
            ]),
            &mut sources,
        );
        let text: Vec<String> = found.iter().map(|d| format!("{d:#}")).collect();
        assert_eq!(text.len(), 3, "{text:?}");
        assert!(text[0].contains("TOLLGATE_BAKEND__KIND") && text[0].contains("TOLLGATE_BACKEND"));
        assert!(text[1].starts_with("error: exempt: TOLLGATE_EXEMPT: this is a list"));
        assert!(text[2].starts_with("error: routes: TOLLGATE_ROUTES__3__QUOTA"));
    }
}
