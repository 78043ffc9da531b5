//! [`Diagnostic`]: one problem found in a configuration, with the path of
//! the value, what is wrong and what to do about it.

use std::fmt;

/// How serious a [`Diagnostic`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Severity {
    /// The configuration cannot be used as written: `tollgate check` exits
    /// 1 and a reload keeps the running configuration.
    Error,
    /// The configuration works, but probably not as meant (a rule that
    /// never applies, trusting every address, a feature this build lacks).
    Warning,
}

impl Severity {
    /// `"error"` or `"warning"`.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem in a configuration: where (`routes[2].quota`), what, and
/// the fix.
///
/// `Display` writes `path: message; fix` on one line, and the alternate
/// form (`{:#}`) puts the severity first, as `tollgate check` prints it:
///
/// ```
/// use tollgate::config::Config;
///
/// let config = Config::from_toml_str("[default]\nquota = \"10/x\"\n")?;
/// let found = config.validate();
/// assert_eq!(
///     format!("{:#}", found[0]),
///     r#"error: default.quota: "10/x": unknown unit "x"; use s, m, h, d or a period such as 10s (ms for milliseconds)"#,
/// );
/// # Ok::<(), tollgate::config::LoadError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[non_exhaustive]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// Where: dotted fields and `[index]`es from the top of the file
    /// (`routes[2].quota`, `backend.redis.url`); empty for the file as a
    /// whole (a syntax error names its line and column in the message).
    pub path: String,
    /// What is wrong, quoting the value.
    pub message: String,
    /// What to do about it, when there is something to say.
    pub fix: Option<String>,
    /// The profile or variable that set the value, when not the file.
    #[serde(skip)]
    pub(crate) origin: Option<super::profiles::Source>,
}

impl Diagnostic {
    /// An error at `path`.
    pub fn error(path: impl Into<String>, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            path: path.into(),
            message: message.into(),
            fix: None,
            origin: None,
        }
    }

    /// A warning at `path`.
    pub fn warning(path: impl Into<String>, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(path, message)
        }
    }

    /// The same diagnostic with a fix.
    pub fn fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }

    /// Whether it is an error.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.alternate() {
            write!(f, "{}: ", self.severity)?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)?;
        if let Some(fix) = &self.fix {
            write!(f, "; {fix}")?;
        }
        Ok(())
    }
}

/// The closest of `candidates` to `input`, if it is close enough to be
/// what was meant (a typo, not another word).
pub(crate) fn did_you_mean<'a>(
    input: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let input_lower = input.to_ascii_lowercase();
    let mut best: Option<(f64, &str)> = None;
    for candidate in candidates {
        let score = strsim::jaro_winkler(&input_lower, &candidate.to_ascii_lowercase());
        let distance = strsim::damerau_levenshtein(&input_lower, &candidate.to_ascii_lowercase());
        // A typo: a couple of edits, or very similar for a long word.
        let abbreviation =
            input_lower.len() >= 3 && candidate.to_ascii_lowercase().starts_with(&input_lower);
        let close = distance <= 2.max(candidate.len() / 4) || score >= 0.9 || abbreviation;
        if close && best.is_none_or(|(s, _)| score > s) {
            best = Some((score, candidate));
        }
    }
    best.map(|(_, c)| c)
}

/// `a`, `b` or `c`: a list of names for a message.
pub(crate) fn one_of(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

/// A fix suggesting `suggestion` if one is close, else listing `names`.
pub(crate) fn suggest(input: &str, names: &[&str]) -> String {
    match did_you_mean(input, names.iter().copied()) {
        Some(close) => format!("did you mean {close:?}? (one of {})", one_of(names)),
        None => format!("use one of {}", one_of(names)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_find_the_field_and_other_words_do_not() {
        let fields = ["default", "routes", "groups", "backend"];
        assert_eq!(did_you_mean("defualt", fields), Some("default"));
        assert_eq!(did_you_mean("route", fields), Some("routes"));
        assert_eq!(did_you_mean("bakcend", fields), Some("backend"));
        assert_eq!(did_you_mean("zzzzzz", fields), None);
    }

    #[test]
    fn display_is_one_line_with_the_fix_after_a_semicolon() {
        let d = Diagnostic::error("routes[2].quota", "bad").fix("do this");
        assert_eq!(d.to_string(), "routes[2].quota: bad; do this");
        assert_eq!(format!("{d:#}"), "error: routes[2].quota: bad; do this");
        let w = Diagnostic::warning("", "whole file");
        assert_eq!(format!("{w:#}"), "warning: whole file");
    }
}
