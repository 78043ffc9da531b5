//! Reading a file: text to a tree (TOML or YAML), then the tree to the
//! [`File`] schema, collecting every structural problem (unknown fields,
//! values of the wrong type) instead of stopping at the first.
//!
//! serde stops at the first problem, so the tree is read again after each
//! one with the bad value taken out (a field) or replaced by a neutral one
//! (an element of a list, so later indexes keep their meaning), until it
//! reads. The places taken out are remembered, so validation says nothing
//! more about them.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::diagnostic::{did_you_mean, Diagnostic};
use super::path::{Path, Seg};
use super::schema::File;

/// The formats a configuration can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// TOML (`.toml`).
    Toml,
    /// YAML (`.yaml`, `.yml`).
    Yaml,
}

impl Format {
    /// The format a file name's extension says, if it is one of ours.
    ///
    /// ```
    /// use tollgate::config::Format;
    ///
    /// assert_eq!(Format::from_path("conf/limits.yml"), Some(Format::Yaml));
    /// assert_eq!(Format::from_path("limits.json"), None);
    /// ```
    pub fn from_path(path: impl AsRef<std::path::Path>) -> Option<Format> {
        let ext = path.as_ref().extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "toml" => Some(Format::Toml),
            "yaml" | "yml" => Some(Format::Yaml),
            _ => None,
        }
    }
}

/// The longest file read, in bytes: a configuration is a few kilobytes,
/// and anything this large is a mistake (a log file given by accident).
pub const MAX_FILE_LEN: usize = 4 * 1024 * 1024;

/// Parses `text` into a tree whose top level is a table.
pub(crate) fn parse(text: &str, format: Format) -> Result<Value, Diagnostic> {
    if text.len() > MAX_FILE_LEN {
        return Err(Diagnostic::error(
            "",
            format!(
                "the file is {} bytes, more than the {MAX_FILE_LEN} a configuration may have",
                text.len()
            ),
        )
        .fix("check that this is the configuration file"));
    }
    let tree = match format {
        Format::Toml => toml::from_str::<Value>(text).map_err(|e| {
            let at = e
                .span()
                .map(|span| line_col(text, span.start))
                .map(|(l, c)| format!(" at line {l}, column {c}"))
                .unwrap_or_default();
            Diagnostic::error(
                "",
                format!("TOML syntax error{at}: {}", one_line(e.message())),
            )
        })?,
        Format::Yaml => {
            let mut yaml = serde_norway::from_str::<serde_norway::Value>(text).map_err(|e| {
                Diagnostic::error("", format!("YAML syntax error: {}", yaml_error(&e)))
            })?;
            yaml.apply_merge().map_err(|e| {
                Diagnostic::error("", format!("YAML merge key (<<) error: {}", yaml_error(&e)))
            })?;
            serde_json::to_value(&yaml).map_err(|e| {
                Diagnostic::error(
                    "",
                    format!(
                        "this YAML cannot be a configuration: {}",
                        one_line(&e.to_string())
                    ),
                )
                .fix("use text keys (a key that is a number, a list or a table is not a field)")
            })?
        }
    };
    let tree = match tree {
        Value::Null => Value::Object(Map::new()),
        Value::Object(_) => untag_datetimes(tree),
        other => {
            return Err(Diagnostic::error(
                "",
                format!(
                    "the file holds {}, not a table of settings",
                    kind_of(&other)
                ),
            )
            .fix("start with settings such as `[default]` and `quota = \"60/m\"`"))
        }
    };
    Ok(tree)
}

fn yaml_error(e: &serde_norway::Error) -> String {
    let text = one_line(&e.to_string());
    match e.location() {
        Some(at) if !text.contains("line") => {
            format!("{text} at line {}, column {}", at.line(), at.column())
        }
        _ => text,
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// 1-based line and column of byte `offset`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map_or(before.chars().count(), |nl| {
        before[nl + 1..].chars().count()
    }) + 1;
    (line, col)
}

/// TOML dates come through serde as a one-field table; they are text to
/// the schema (an expiry is RFC 3339 either way).
fn untag_datetimes(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            if map.len() == 1 {
                if let Some(Value::String(s)) = map.get("$__toml_private_datetime") {
                    return Value::String(s.clone());
                }
            }
            Value::Object(
                map.into_iter()
                    .map(|(k, v)| (k, untag_datetimes(v)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.into_iter().map(untag_datetimes).collect()),
        other => other,
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "a list",
        Value::Object(_) => "a table",
    }
}

/// What structural reading left: the schema value, the problems, and the
/// places taken out.
pub(crate) struct Read {
    pub(crate) file: File,
    pub(crate) problems: Vec<Diagnostic>,
    pub(crate) removed: Vec<Path>,
}

/// The most problems reported for one file before giving up.
const MAX_PROBLEMS: usize = 200;

/// Reads `tree` as a [`File`], taking out each value serde refuses, and
/// reporting it with `describe` (where the value came from) appended.
pub(crate) fn read(tree: &mut Value, describe: &dyn Fn(&Path) -> Option<String>) -> Read {
    let mut problems = Vec::new();
    let mut removed = Vec::new();
    let mut attempts: HashMap<Path, usize> = HashMap::new();
    loop {
        let error = match serde_path_to_error::deserialize::<_, File>(&*tree) {
            Ok(file) => {
                return Read {
                    file,
                    problems,
                    removed,
                }
            }
            Err(error) => error,
        };
        let path = to_path(error.path());
        let message = error.inner().to_string();
        let attempt = attempts.entry(path.clone()).or_insert(0);
        *attempt += 1;
        if *attempt == 1 {
            let mut diagnostic = structural(&path, &message);
            if let Some(from) = describe(&path) {
                diagnostic.message = format!("{} (set by {from})", diagnostic.message);
            }
            problems.push(diagnostic);
            removed.push(path.clone());
        }
        if problems.len() >= MAX_PROBLEMS || !take_out(tree, &path, *attempt) {
            if problems.len() >= MAX_PROBLEMS {
                problems.push(Diagnostic::error(
                    "",
                    format!("more than {MAX_PROBLEMS} problems; the rest are not listed"),
                ));
            }
            return Read {
                file: File::default(),
                problems,
                removed,
            };
        }
    }
}

fn to_path(path: &serde_path_to_error::Path) -> Path {
    let mut out = Path::default();
    for seg in path.iter() {
        match seg {
            serde_path_to_error::Segment::Seq { index } => out.push(Seg::Index(*index)),
            serde_path_to_error::Segment::Map { key } => out.push(Seg::Key(key.clone())),
            serde_path_to_error::Segment::Enum { variant } => out.push(Seg::Key(variant.clone())),
            serde_path_to_error::Segment::Unknown => {}
        }
    }
    out
}

/// Values tried, in turn, in place of a refused element of a list.
fn neutral(attempt: usize) -> Option<Value> {
    match attempt {
        1 => Some(Value::Object(Map::new())),
        2 => Some(Value::String(String::new())),
        3 => Some(Value::from(0)),
        4 => Some(Value::Array(Vec::new())),
        _ => None,
    }
}

/// Takes the value at `path` out of `tree`; `false` when nothing more can
/// be done (the path is the whole file or not there).
fn take_out(tree: &mut Value, path: &Path, attempt: usize) -> bool {
    let Some(last) = path.last() else {
        return false;
    };
    let mut node = tree;
    for seg in path.parent().iter() {
        node = match (seg, node) {
            (Seg::Key(key), Value::Object(map)) => match map.get_mut(key) {
                Some(child) => child,
                None => return false,
            },
            (Seg::Index(index), Value::Array(items)) => match items.get_mut(*index) {
                Some(child) => child,
                None => return false,
            },
            _ => return false,
        };
    }
    match (last, node) {
        (Seg::Key(key), Value::Object(map)) => {
            if attempt > 1 {
                return false;
            }
            map.remove(key).is_some()
        }
        (Seg::Index(index), Value::Array(items)) if *index < items.len() => {
            match neutral(attempt) {
                Some(value) => items[*index] = value,
                None => {
                    items.remove(*index);
                }
            }
            true
        }
        _ => false,
    }
}

/// A serde message, rewritten for a person editing the file.
fn structural(path: &Path, message: &str) -> Diagnostic {
    let at = path.to_string();
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let field = rest.split('`').next().unwrap_or_default();
        let expected: Vec<&str> = rest
            .split_once(", expected")
            .map(|(_, list)| list.split('`').skip(1).step_by(2).collect())
            .unwrap_or_default();
        let d = Diagnostic::error(at, format!("unknown field `{field}`"));
        return match did_you_mean(field, expected.iter().copied()) {
            Some(close) => d.fix(format!("did you mean `{close}`?")),
            None if expected.is_empty() => d.fix("this table takes no fields"),
            None => d.fix(format!(
                "the fields here are {}",
                expected
                    .iter()
                    .map(|f| format!("`{f}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        };
    }
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(prefix) {
            if let Some((found, expected)) = rest.split_once(", expected ") {
                let expected = plain_expectation(expected);
                return Diagnostic::error(at, format!("expected {expected}, found {found}"))
                    .fix(fix_for(expected));
            }
        }
    }
    Diagnostic::error(at, one_line(message))
}

/// serde's name for what it wanted, in the file's words.
fn plain_expectation(expected: &str) -> &str {
    if expected.starts_with("struct ") || expected.starts_with("a map") {
        return "a table";
    }
    match expected {
        "u64" | "u32" | "u16" | "u8" | "usize" => "a whole number of 0 or more",
        "f64" | "f32" => "a number",
        "a sequence" => "a list",
        "a boolean" => "true or false",
        other => other,
    }
}

fn fix_for(expected: &str) -> &'static str {
    match expected {
        "a table" => "write a table: a [section] in TOML, indented `field: value` lines in YAML",
        "a list" => "write a list: [\"a\", \"b\"]",
        "a string" => "write it as quoted text",
        "true or false" => "write true or false, without quotes",
        "a whole number of 0 or more" => "write a whole number without quotes",
        "a number" => "write a number without quotes",
        _ => "see the configuration reference (tollgate::config)",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<String> {
        let mut tree = parse(text, Format::Toml).unwrap_or_else(|d| panic!("{d}"));
        read(&mut tree, &|_| None)
            .problems
            .iter()
            .map(|d| format!("{d:#}"))
            .collect()
    }

    #[test]
    fn every_structural_problem_is_reported_not_only_the_first() {
        let found = problems(
            "defualt = 1\n[[routes]]\npattern = \"/a\"\ncost = -1\n[[routes]]\npatern = \"/b\"\n[metrics]\nenabled = \"yes\"\n",
        );
        assert_eq!(
            found,
            [
                "error: defualt: unknown field `defualt`; did you mean `default`?",
                "error: metrics.enabled: expected true or false, found string \"yes\"; write true or false, without quotes",
                "error: routes[0].cost: expected a whole number of units, or \"content_length\", found integer `-1`; see the configuration reference (tollgate::config)",
                "error: routes[1].patern: unknown field `patern`; did you mean `pattern`?",
            ]
        );
    }

    #[test]
    fn a_bad_element_keeps_the_indexes_of_the_next_ones() {
        let found =
            problems("exempt = [\"/a\", 5, \"/c\", true]\nroutes = [5, {patern = \"/x\"}]\n");
        assert_eq!(found.len(), 4, "{found:?}");
        assert!(found[0].starts_with("error: exempt[1]: expected a string, found integer `5`"));
        assert!(found[1].starts_with("error: exempt[3]: expected a string, found boolean `true`"));
        assert!(found[2].starts_with("error: routes[0]: expected a table"));
        assert!(found[3].starts_with("error: routes[1].patern: unknown field"));
    }

    #[test]
    fn syntax_errors_say_where() {
        let e = parse("a = \n", Format::Toml).unwrap_err().to_string();
        assert!(
            e.starts_with("TOML syntax error at line 1, column 5"),
            "{e}"
        );
        let e = parse("a: [1\n", Format::Yaml).unwrap_err().to_string();
        assert!(
            e.starts_with("YAML syntax error") && e.contains("line"),
            "{e}"
        );
        let e = parse("- 1\n- 2\n", Format::Yaml).unwrap_err().to_string();
        assert!(e.contains("a list, not a table"), "{e}");
        assert_eq!(
            parse("", Format::Yaml).ok(),
            Some(Value::Object(Map::new()))
        );
    }

    #[test]
    fn toml_dates_read_as_text() {
        let tree = parse(
            "[[overrides]]\nexpires_at = 2026-12-31T00:00:00Z\n",
            Format::Toml,
        )
        .unwrap_or_else(|d| panic!("{d}"));
        assert_eq!(
            tree["overrides"][0]["expires_at"],
            Value::String("2026-12-31T00:00:00Z".into())
        );
    }
}
