//! The crate's one error type: what went wrong, where in the document (JSON path) and where in the text.

use std::fmt;

use crate::de::{split_path, split_position};
use crate::{OperationOutcome, OperationOutcomeIssue};

/// What kind of problem an [`Error`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The input is not well-formed JSON.
    Syntax,
    /// The input ended in the middle of a value.
    Eof,
    /// Well-formed JSON that is not a valid instance of the type asked for: an unknown or repeated field,
    /// a wrong type, an invalid code of a required binding, an unsupported resource type, a bad decimal...
    Data,
}

/// A FHIR JSON error: its kind, the JSON path of the offending value (`entry[3].resource.code`), the message,
/// and the 1-based line and column where reading stopped (absent when the input was not text).
#[derive(Debug, Clone, thiserror::Error)]
pub struct Error {
    kind: ErrorKind,
    path: Option<String>,
    message: String,
    line: usize,
    column: usize,
}

impl Error {
    /// The kind of problem.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The JSON path of the offending value, e.g. `contact[0].name.given[1]`; `None` at the top level.
    pub fn path(&self) -> Option<&str> {
        self.path.as_deref()
    }

    /// The message without path or position, e.g. ``unknown field `birthdate` in Patient, did you mean `birthDate`?``.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// 1-based line where reading stopped, when the input was text.
    pub fn line(&self) -> Option<usize> {
        (self.line > 0).then_some(self.line)
    }

    /// 1-based column where reading stopped, when the input was text.
    pub fn column(&self) -> Option<usize> {
        (self.line > 0).then_some(self.column)
    }

    /// An `OperationOutcome` with one error issue describing this error, for answering a client (HTTP 400).
    /// The path goes into `expression`, the full text into `diagnostics`.
    pub fn to_operation_outcome(&self) -> OperationOutcome {
        OperationOutcome {
            issue: vec![OperationOutcomeIssue {
                severity: Some("error".to_owned()),
                // `structure`: "a structural issue in the content such as ... unable to parse the content".
                code: Some("structure".to_owned()),
                diagnostics: Some(self.to_string()),
                expression: self.path.iter().cloned().collect(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    pub(crate) fn invalid_decimal(text: &str) -> Self {
        Error {
            kind: ErrorKind::Data,
            path: None,
            message: format!("invalid decimal `{text}`, expected a JSON number"),
            line: 0,
            column: 0,
        }
    }
}

/// `path: message at line L column C`, as serde_json writes it, so that logs of both read alike.
impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(path) = &self.path {
            write!(f, "{path}: ")?;
        }
        f.write_str(&self.message)?;
        if self.line > 0 {
            write!(f, " at line {} column {}", self.line, self.column)?;
        }
        Ok(())
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        let kind = match e.classify() {
            serde_json::error::Category::Syntax => ErrorKind::Syntax,
            serde_json::error::Category::Eof => ErrorKind::Eof,
            // Io cannot happen: the crate reads from memory only.
            serde_json::error::Category::Data | serde_json::error::Category::Io => ErrorKind::Data,
        };
        let text = e.to_string();
        let (body, _) = split_position(&text);
        let (path, message) = match split_path(body) {
            Some((path, message)) => (Some(path.to_owned()), message.to_owned()),
            None => (None, body.to_owned()),
        };
        Error {
            kind,
            path,
            message,
            line: e.line(),
            column: e.column(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_path_message_and_position() {
        let e =
            serde_json::from_str::<crate::Patient>("{\"resourceType\":\"Patient\",\"gender\":5}")
                .unwrap_err();
        let e = Error::from(e);
        assert_eq!(e.kind(), ErrorKind::Data);
        assert_eq!(e.path(), Some("gender"));
        assert_eq!(e.message(), "invalid type: integer `5`, expected a string");
        assert_eq!((e.line(), e.column()), (Some(1), Some(36)));
        assert_eq!(
            e.to_string(),
            "gender: invalid type: integer `5`, expected a string at line 1 column 36"
        );
        let outcome = e.to_operation_outcome();
        assert_eq!(outcome.issue[0].expression, vec!["gender".to_owned()]);
    }
}
