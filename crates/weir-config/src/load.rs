//! Reading a configuration file: YAML or TOML by extension, parsed with the field path tracked so
//! every error names the file, line, column and field.

use std::path::Path;

use serde::Deserialize;

use crate::error::{ConfigError, Problem};
use crate::file::ConfigFile;
use crate::validate::{self, Config};

/// The two file syntaxes weir reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Toml,
}

impl Format {
    /// The format named by a file's extension.
    pub fn from_path(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()? {
            "yaml" | "yml" => Some(Format::Yaml),
            "toml" => Some(Format::Toml),
            _ => None,
        }
    }
}

/// Reads, parses and validates a configuration file.
pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    let format = Format::from_path(path).ok_or_else(|| ConfigError::UnknownFormat { path: path.to_path_buf() })?;
    let text =
        std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
    parse_str(&text, format, &path.display().to_string())
}

/// Parses and validates configuration text; `name` is used in error messages.
pub fn parse_str(text: &str, format: Format, name: &str) -> Result<Config, ConfigError> {
    let invalid = |problems| ConfigError::Invalid { file: name.to_string(), problems };
    let file = match format {
        Format::Yaml => parse_yaml(text),
        Format::Toml => parse_toml(text),
    }
    .map_err(|problem| invalid(vec![problem]))?;
    validate::validate(file, text, format).map_err(invalid)
}

fn parse_yaml(text: &str) -> Result<ConfigFile, Problem> {
    let mut failed_at = None;
    let result = serde_saphyr::with_deserializer_from_str(text, |deserializer| {
        let mut track = serde_path_to_error::Track::new();
        let tracked = serde_path_to_error::Deserializer::new(deserializer, &mut track);
        ConfigFile::deserialize(tracked).inspect_err(|_| failed_at = Some(track.path()))
    });
    result.map_err(|error| {
        let location = error.location().filter(|l| l.line() > 0).map(|l| (l.line(), l.column()));
        Problem {
            line: location,
            field: failed_at.map(|p| field_path(&p)).unwrap_or_default(),
            message: first_line(&error.without_snippet().to_string()),
        }
    })
}

fn parse_toml(text: &str) -> Result<ConfigFile, Problem> {
    let deserializer = toml::de::Deserializer::parse(text).map_err(|e| toml_problem(text, &e, String::new()))?;
    serde_path_to_error::deserialize(deserializer).map_err(|e| toml_problem(text, e.inner(), field_path(e.path())))
}

fn toml_problem(text: &str, error: &toml::de::Error, field: String) -> Problem {
    let line = error.span().map(|span| line_and_column(text, span.start));
    Problem { line, field, message: error.message().trim().to_string() }
}

/// 1-based line and column of a byte offset.
pub(crate) fn line_and_column(text: &str, offset: usize) -> (u64, u64) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line as u64, column as u64)
}

/// `routes[2].upstream` rather than serde_path_to_error's `routes[2].upstream` with `?` for unknowns.
fn field_path(path: &serde_path_to_error::Path) -> String {
    let text = path.to_string();
    if text == "." { String::new() } else { text }
}

/// The message alone: the first line, without the position the parser appends (reported apart).
fn first_line(message: &str) -> String {
    let line = message.lines().next().unwrap_or_default().trim();
    match line.rfind(" at line ") {
        Some(at) => line[..at].to_string(),
        None => line.to_string(),
    }
}
