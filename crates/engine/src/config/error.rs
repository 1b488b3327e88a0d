//! Configuration errors: what is wrong, in which file, at which line and column, under which
//! key.
//!
//! Shown as `FILE:LINE:COLUMN: KEY: MESSAGE`, each part left out when unknown, e.g.
//! `causeway.toml:12:11: channel[1].destination[0].connect: invalid address "lab": expected
//! host:port`. Lines and columns are 1-based and count characters, as editors do; key paths
//! count list entries from 0 (`channel[1]` is the second `[[channel]]`).

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;

/// What kind of problem an error reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigErrorKind {
    /// The file could not be read.
    Io,
    /// Not valid TOML.
    Syntax,
    /// Valid TOML of the wrong shape: an unknown key, a value of the wrong type.
    Shape,
    /// A value that does not mean anything valid here (a bad duration, address, path...).
    Invalid,
    /// A required key is absent.
    Missing,
    /// Two entries that must differ do not (names, ports, paths).
    Conflict,
    /// A file the configuration names does not exist.
    NotFound,
    /// A script that does not compile.
    Script,
}

/// 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct LineCol {
    pub line: usize,
    pub column: usize,
}

impl LineCol {
    /// The line and column of byte offset `at` in `text` (clamped to the text).
    pub fn of(text: &str, at: usize) -> LineCol {
        let mut at = at.min(text.len());
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        let before = &text[..at];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        LineCol {
            line,
            column: before[line_start..].chars().count() + 1,
        }
    }
}

/// One problem in a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub kind: ConfigErrorKind,
    /// The configuration file, when the text came from one.
    pub file: Option<PathBuf>,
    /// Where the offending key or value starts.
    pub position: Option<LineCol>,
    /// Key path such as `channel[1].destination[0].connect`; empty for the file as a whole.
    pub key: String,
    /// Lowercase, no trailing period.
    pub message: String,
}

impl std::error::Error for ConfigError {}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut prefix = String::new();
        if let Some(file) = &self.file {
            prefix.push_str(&file.display().to_string());
        }
        if let Some(p) = self.position {
            if !prefix.is_empty() {
                prefix.push(':');
            }
            prefix.push_str(&format!("{}:{}", p.line, p.column));
        }
        if !prefix.is_empty() {
            write!(f, "{prefix}: ")?;
        }
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// Where errors are collected while one text is checked.
pub(crate) struct Errors<'a> {
    pub text: &'a str,
    pub file: Option<PathBuf>,
    pub list: Vec<ConfigError>,
}

impl<'a> Errors<'a> {
    pub fn new(text: &'a str, file: Option<PathBuf>) -> Self {
        Errors {
            text,
            file,
            list: Vec::new(),
        }
    }

    pub fn push(
        &mut self,
        kind: ConfigErrorKind,
        key: &str,
        span: Option<Range<usize>>,
        message: impl Into<String>,
    ) {
        self.list.push(ConfigError {
            kind,
            file: self.file.clone(),
            position: span.map(|s| LineCol::of(self.text, s.start)),
            key: key.to_string(),
            message: message.into(),
        });
    }

    pub fn line_of(&self, span: &Range<usize>) -> usize {
        LineCol::of(self.text, span.start).line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_count_characters() {
        let text = "a = 1\nbé = \"x\"\n";
        assert_eq!(LineCol::of(text, 0), LineCol { line: 1, column: 1 });
        assert_eq!(LineCol::of(text, 6), LineCol { line: 2, column: 1 });
        // "bé = " is 6 bytes but 5 characters.
        assert_eq!(LineCol::of(text, 12), LineCol { line: 2, column: 6 });
        assert_eq!(LineCol::of(text, 999), LineCol { line: 3, column: 1 });
    }

    #[test]
    fn display_leaves_out_unknown_parts() {
        let mut e = ConfigError {
            kind: ConfigErrorKind::Invalid,
            file: Some("causeway.toml".into()),
            position: Some(LineCol { line: 3, column: 9 }),
            key: "server.http".into(),
            message: "bad".into(),
        };
        assert_eq!(e.to_string(), "causeway.toml:3:9: server.http: bad");
        e.position = None;
        assert_eq!(e.to_string(), "causeway.toml: server.http: bad");
        e.file = None;
        e.key.clear();
        assert_eq!(e.to_string(), "bad");
    }
}
