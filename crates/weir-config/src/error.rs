//! Errors from loading a configuration: each names the file, the place in it, the field path and what
//! would be valid.

use std::fmt;
use std::path::PathBuf;

/// Everything that was wrong with a configuration file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: unknown file extension; use .yaml, .yml or .toml")]
    UnknownFormat { path: PathBuf },
    #[error("{}", render_problems(.file, .problems))]
    Invalid { file: String, problems: Vec<Problem> },
}

impl ConfigError {
    /// The individual problems, if the file was read and parsed far enough to have any.
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Invalid { problems, .. } => problems,
            _ => &[],
        }
    }
}

/// One thing wrong in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line and column, when known.
    pub line: Option<(u64, u64)>,
    /// Field path such as `routes[2].upstream`.
    pub field: String,
    /// What is wrong and what would be valid.
    pub message: String,
}

impl Problem {
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Problem { line: None, field: field.into(), message: message.into() }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((line, column)) = self.line {
            write!(f, "line {line}, column {column}: ")?;
        }
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

fn render_problems(file: &str, problems: &[Problem]) -> String {
    let mut out = String::new();
    for (i, problem) in problems.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(file);
        if let Some((line, column)) = problem.line {
            out.push_str(&format!(":{line}:{column}"));
        }
        out.push_str(": ");
        if !problem.field.is_empty() {
            out.push_str(&problem.field);
            out.push_str(": ");
        }
        out.push_str(&problem.message);
    }
    out
}
