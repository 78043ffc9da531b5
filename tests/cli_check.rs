//! `tollgate check`: the command against the example files and the broken
//! ones, as a script or a person runs it (no terminal here, so no colour).
#![cfg(feature = "cli")]

use std::path::{Path, PathBuf};

use assert_cmd::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The command with an empty environment: nothing a developer or CI set
/// (`TOLLGATE_*`) reaches it unless a test says so.
fn tollgate() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tollgate"));
    cmd.env_clear();
    cmd
}

fn file(relative: &str) -> PathBuf {
    Path::new(ROOT).join(relative)
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn every_example_passes_with_exit_0() {
    for name in ["quickstart.toml", "policies.toml", "redis_failover.yaml"] {
        let out = tollgate()
            .arg("check")
            .arg(file(&format!("examples/config/{name}")))
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        let text = stdout(&out);
        assert_eq!(out.status.code(), Some(0), "{name}:\n{text}");
        assert!(!text.contains("error"), "{name}:\n{text}");
        assert!(
            text.lines().last().is_some_and(|l| l.contains(": ok, ")),
            "{text}"
        );
    }
}

#[test]
fn each_profile_of_the_redis_example_passes() {
    for profile in ["development", "production"] {
        let out = tollgate()
            .args(["check", "--profile", profile])
            .arg(file("examples/config/redis_failover.yaml"))
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
        assert!(
            stdout(&out).contains(&format!("(profile {profile}): ok")),
            "{}",
            stdout(&out)
        );
    }
}

#[test]
fn a_broken_file_prints_every_diagnostic_and_exits_1() {
    let path = file("tests/fixtures/config/broken/quotas.toml");
    let out = tollgate()
        .arg("check")
        .arg(&path)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    let expected =
        std::fs::read_to_string(file("tests/fixtures/config/broken/quotas.toml.expected"))
            .unwrap_or_else(|e| panic!("{e}"));
    assert!(text.starts_with(&expected), "{text}");
    assert!(
        text.trim_end().ends_with(": 5 errors, 0 warnings"),
        "{text}"
    );
    assert!(!text.contains('\u{1b}'), "no colour without a terminal");
}

#[test]
fn warnings_alone_exit_0() {
    let dir = std::env::temp_dir().join(format!("tollgate-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let path = dir.join("open.toml");
    std::fs::write(
        &path,
        "[default]\nquota = \"10/s\"\n[key]\ntrusted_proxies = [\"0.0.0.0/0\"]\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let out = tollgate()
        .arg("check")
        .arg(&path)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).starts_with("warning: key.trusted_proxies[0]: trusting \"0.0.0.0/0\""));
    assert!(stdout(&out).contains(": ok, 1 warning"));
}

#[test]
fn json_output_is_one_document_for_scripts() {
    let out = tollgate()
        .args(["check", "--output", "json"])
        .arg(file("tests/fixtures/config/broken/keys.toml"))
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)));
    assert_eq!(doc["valid"], false);
    assert_eq!(doc["errors"], 10);
    assert_eq!(doc["warnings"], 3);
    let first = &doc["diagnostics"][0];
    assert_eq!(first["severity"], "error");
    assert_eq!(first["path"], "key.claim");
    assert_eq!(
        first["fix"], "remove it, or set kind = \"bearer\"",
        "{first}"
    );
    let ok = tollgate()
        .args(["check", "-o", "json"])
        .arg(file("examples/config/quickstart.toml"))
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let doc: serde_json::Value =
        serde_json::from_slice(&ok.stdout).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(doc["valid"], true);
    assert_eq!(doc["diagnostics"], serde_json::json!([]));
}

#[test]
fn the_profile_and_overrides_come_from_the_environment_and_sources_say_so() {
    let out = tollgate()
        .args(["check", "--sources"])
        .arg(file("examples/config/redis_failover.yaml"))
        .env("TOLLGATE_PROFILE", "production")
        .env("TOLLGATE_DEFAULT__QUOTA", "500/m")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("default.quota: environment TOLLGATE_DEFAULT__QUOTA"),
        "{text}"
    );
    assert!(text.contains("fail_mode: profile production"), "{text}");
    assert!(text.contains("default.name: file"), "{text}");
    assert!(text.contains("(profile production): ok"), "{text}");

    let bad = tollgate()
        .arg("check")
        .arg(file("examples/config/quickstart.toml"))
        .env("TOLLGATE_DEFAULT__QUOTA", "10/x")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        stdout(&bad).contains("(set by environment TOLLGATE_DEFAULT__QUOTA)"),
        "{}",
        stdout(&bad)
    );
}

#[test]
fn an_unknown_profile_or_a_missing_file_exit_1_and_say_why() {
    let out = tollgate()
        .args(["check", "--profile", "prod"])
        .arg(file("examples/config/redis_failover.yaml"))
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains(
            "no profile named \"prod\" (chosen by --profile); did you mean \"production\"?"
        ),
        "{}",
        stdout(&out)
    );
    let missing = tollgate()
        .args(["check", "/nonexistent/tollgate.toml"])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(missing.status.code(), Some(1));
    assert!(stdout(&missing).starts_with("error: cannot read /nonexistent/tollgate.toml"));
    let format = tollgate()
        .args(["check", "limits.json"])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(format.status.code(), Some(1));
    assert!(stdout(&format).contains("name the file .toml, .yaml or .yml"));
}

#[test]
fn help_and_usage_errors() {
    let help = tollgate()
        .args(["check", "--help"])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(help.status.code(), Some(0));
    let text = stdout(&help);
    for word in ["--profile", "--output", "--sources", "TOLLGATE_PROFILE"] {
        assert!(text.contains(word), "{word}:\n{text}");
    }
    let top = tollgate()
        .arg("--help")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(stdout(&top).contains("check"));
    let usage = tollgate()
        .args(["check"])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(usage.status.code(), Some(2), "a usage error");
    let bad_output = tollgate()
        .args(["check", "a.toml", "--output", "xml"])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(bad_output.status.code(), Some(2));
}
