//! The crate's top-level modules depend on each other in one direction:
//! each uses only modules declared above it in `src/lib.rs` (leaves first),
//! so no cycle between them can come back unnoticed.
//!
//! The check reads the sources: every `crate::…` path outside a comment,
//! in every file of a module (its tests included), is a dependency on the
//! module that path starts with (or, for a name re-exported at the root,
//! the module it comes from).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src");

/// The top-level modules in their declared order.
fn declared_modules(lib: &str) -> Vec<String> {
    lib.lines()
        .map(str::trim)
        .filter_map(|line| {
            let line = line.strip_prefix("pub ").unwrap_or(line);
            let name = line.strip_prefix("mod ")?.strip_suffix(';')?;
            Some(name.to_owned())
        })
        .collect()
}

/// Names re-exported at the root (`pub use module::{A, B};`) → module.
fn root_exports(lib: &str, modules: &[String]) -> BTreeMap<String, String> {
    let mut exports = BTreeMap::new();
    let mut rest = lib;
    while let Some(at) = rest.find("pub use ") {
        rest = &rest[at + "pub use ".len()..];
        let Some(end) = rest.find(';') else { break };
        let item = &rest[..end];
        let Some((module, names)) = item.split_once("::") else {
            continue;
        };
        if !modules.iter().any(|m| m == module) {
            continue;
        }
        for name in names
            .trim_matches(|c: char| c == '{' || c == '}' || c.is_whitespace())
            .split(',')
        {
            let name = name.trim();
            if !name.is_empty() {
                exports.insert(name.to_owned(), module.to_owned());
            }
        }
    }
    exports
}

fn rust_files(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        let mut entries: Vec<_> = fs::read_dir(path)
            .expect("read src")
            .map(|e| e.expect("dir entry").path())
            .collect();
        entries.sort();
        for entry in entries {
            rust_files(&entry, out);
        }
    } else if path.is_file() && path.extension().is_some_and(|e| e == "rs") {
        out.push(path.to_owned());
    }
}

/// The first segment of every `crate::` path in `source`, comments aside.
fn crate_paths(source: &str) -> BTreeSet<String> {
    let mut firsts = BTreeSet::new();
    for line in source.lines() {
        let code = match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        };
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let before = rest[..at].chars().next_back();
            rest = &rest[at + "crate::".len()..];
            // `$crate::`, `tollgate_crate::` and the like are not ours.
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
                continue;
            }
            if let Some(group) = rest.strip_prefix('{') {
                // One level of `crate::{a, b::c}` on this line.
                let group = group.split('}').next().unwrap_or("");
                for item in group.split(',') {
                    firsts.insert(first_segment(item.trim()));
                }
            } else {
                firsts.insert(first_segment(rest));
            }
        }
    }
    firsts.remove("");
    firsts
}

fn first_segment(path: &str) -> String {
    path.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

#[test]
fn each_module_uses_only_modules_declared_above_it() {
    let lib = fs::read_to_string(Path::new(SRC).join("lib.rs")).expect("read lib.rs");
    let modules = declared_modules(&lib);
    assert!(modules.len() > 5, "found the module list: {modules:?}");
    let exports = root_exports(&lib, &modules);
    let rank = |m: &str| modules.iter().position(|x| x == m);
    let mut wrong = Vec::new();
    for module in &modules {
        let mut files = Vec::new();
        let dir = Path::new(SRC).join(module);
        rust_files(&dir, &mut files);
        rust_files(&Path::new(SRC).join(format!("{module}.rs")), &mut files);
        assert!(!files.is_empty(), "no source for module {module}");
        for file in files {
            let source = fs::read_to_string(&file).expect("read source");
            for first in crate_paths(&source) {
                let used = exports.get(&first).cloned().unwrap_or(first);
                let (Some(user), Some(dep)) = (rank(module), rank(&used)) else {
                    continue;
                };
                if dep > user {
                    wrong.push(format!(
                        "{} uses `crate::{used}`, declared below `{module}`",
                        file.strip_prefix(SRC).unwrap_or(&file).display()
                    ));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "modules must use only modules declared above them in src/lib.rs \
         (move the code to the module it belongs to, or the shared part \
         below both):\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_checker_sees_grouped_and_plain_paths_but_not_comments() {
    let source = "use crate::{quota::Quota, time};\nlet x = crate::engine::Verdict;\n// crate::layer\n/// [`X`](crate::extract)\n";
    let found: Vec<String> = crate_paths(source).into_iter().collect();
    assert_eq!(found, ["engine", "quota", "time"]);
}
