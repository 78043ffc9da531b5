//! `tollgate`: check a configuration file before it is deployed (feature
//! `cli`).
//!
//! ```text
//! tollgate check examples/config/policies.toml
//! tollgate check limits.yaml --profile production --output json
//! ```
//!
//! Exit codes: 0 when the file is usable (warnings allowed), 1 when it has
//! an error or cannot be read, 2 for a usage error.
//!
//! Each subcommand is a variant of [`Command`] with its arguments and a
//! function that returns the exit code; the explain, health, inspect,
//! reset, override, allow/deny and top commands are to come in the same
//! shape.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use tollgate::config::{Config, Diagnostic, LoadError, Loader, Severity};

/// Rate limiting with tollgate: check configuration files.
#[derive(Debug, Parser)]
#[command(name = "tollgate", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Checks a configuration file: prints every error and warning with
    /// its path and a fix; exits 1 on any error.
    ///
    /// The profile is --profile, else TOLLGATE_PROFILE; TOLLGATE_*
    /// variables override values (TOLLGATE_BACKEND__REDIS__URL), as they
    /// will where the file is used.
    Check(CheckArgs),
}

#[derive(Debug, Args)]
struct CheckArgs {
    /// The file: .toml, .yaml or .yml.
    file: PathBuf,
    /// The profile to apply ([profiles.NAME]); default: TOLLGATE_PROFILE.
    #[arg(long, short)]
    profile: Option<String>,
    /// How to print the result.
    #[arg(long, short, value_enum, default_value_t = Output::Text)]
    output: Output,
    /// Also print where each value came from (file, profile, environment).
    #[arg(long)]
    sources: bool,
}

/// How a command prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    /// Lines for a person; colours on a terminal.
    Text,
    /// One JSON document, for scripts.
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut out = std::io::stdout().lock();
    let code = match cli.command {
        Command::Check(args) => check(&args, &mut out),
    };
    // A closed pipe (`tollgate check f | head`) is not worth a panic.
    let _ = out.flush();
    code
}

/// What `check` found.
struct Checked {
    config: Option<Config>,
    diagnostics: Vec<Diagnostic>,
    unreadable: Option<String>,
}

fn run_check(args: &CheckArgs) -> Checked {
    let loader = match &args.profile {
        Some(p) => Loader::new().profile(p.clone()),
        None => Loader::new(),
    };
    match loader.load_path(&args.file) {
        Ok(config) => {
            let diagnostics = config.validate();
            Checked {
                config: Some(config),
                diagnostics,
                unreadable: None,
            }
        }
        Err(LoadError::Invalid { diagnostics }) => Checked {
            config: None,
            diagnostics,
            unreadable: None,
        },
        Err(other) => Checked {
            config: None,
            diagnostics: Vec::new(),
            unreadable: Some(other.to_string()),
        },
    }
}

fn check(args: &CheckArgs, out: &mut impl Write) -> ExitCode {
    let checked = run_check(args);
    let errors = checked.diagnostics.iter().filter(|d| d.is_error()).count()
        + usize::from(checked.unreadable.is_some());
    let warnings = checked.diagnostics.len() + usize::from(checked.unreadable.is_some()) - errors;
    let written = match args.output {
        Output::Text => text(args, &checked, errors, warnings, out),
        Output::Json => json(args, &checked, errors, warnings, out),
    };
    if written.is_err() {
        return ExitCode::FAILURE;
    }
    if errors > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Colours only on a terminal, and never with `NO_COLOR` set.
fn colours() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn paint(on: bool, code: &str, text: &str) -> String {
    if on {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_owned()
    }
}

fn text(
    args: &CheckArgs,
    checked: &Checked,
    errors: usize,
    warnings: usize,
    out: &mut impl Write,
) -> std::io::Result<()> {
    let colour = colours();
    let file = args.file.display();
    if let Some(why) = &checked.unreadable {
        writeln!(out, "{}: {why}", paint(colour, "1;31", "error"))?;
    }
    for d in &checked.diagnostics {
        let label = match d.severity {
            Severity::Error => paint(colour, "1;31", "error"),
            _ => paint(colour, "1;33", "warning"),
        };
        writeln!(out, "{label}: {d}")?;
    }
    if args.sources {
        if let Some(config) = &checked.config {
            for (path, source) in config.sources() {
                writeln!(out, "{path}: {source}")?;
            }
        }
    }
    let profile = checked
        .config
        .as_ref()
        .and_then(Config::profile)
        .map(|p| format!(" (profile {p})"))
        .unwrap_or_default();
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    if errors == 0 {
        let ok = paint(colour, "1;32", "ok");
        writeln!(
            out,
            "{file}{profile}: {ok}, {}",
            plural(warnings, "warning")
        )
    } else {
        writeln!(
            out,
            "{file}{profile}: {}, {}",
            plural(errors, "error"),
            plural(warnings, "warning")
        )
    }
}

fn json(
    args: &CheckArgs,
    checked: &Checked,
    errors: usize,
    warnings: usize,
    out: &mut impl Write,
) -> std::io::Result<()> {
    let mut diagnostics: Vec<serde_json::Value> = Vec::new();
    if let Some(why) = &checked.unreadable {
        diagnostics.push(serde_json::json!({
            "severity": "error", "path": "", "message": why, "fix": null,
        }));
    }
    for d in &checked.diagnostics {
        diagnostics.push(serde_json::to_value(d).unwrap_or(serde_json::Value::Null));
    }
    let mut doc = serde_json::json!({
        "file": args.file.display().to_string(),
        "profile": checked.config.as_ref().and_then(Config::profile),
        "valid": errors == 0,
        "errors": errors,
        "warnings": warnings,
        "diagnostics": diagnostics,
    });
    if args.sources {
        let sources: serde_json::Map<String, serde_json::Value> = checked
            .config
            .iter()
            .flat_map(Config::sources)
            .map(|(path, source)| (path, serde_json::Value::String(source.to_string())))
            .collect();
        doc["sources"] = serde_json::Value::Object(sources);
    }
    let text = serde_json::to_string_pretty(&doc).unwrap_or_else(|_| "{}".to_owned());
    writeln!(out, "{text}")
}
