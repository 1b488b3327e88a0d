//! The crate's one error type: what stopped an import as a whole (a file that cannot be opened,
//! a staging folder that cannot be written, a resume that does not match). A message that cannot
//! be read is not an error here: it is quarantined with its reason and the import goes on.

use std::path::PathBuf;

/// What went wrong, with the path it concerns.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {kind}", path = path.display())]
pub struct Error {
    pub path: PathBuf,
    pub kind: ErrorKind,
}

#[derive(Debug, thiserror::Error)]
pub enum ErrorKind {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("not found")]
    NotFound,
    /// `--resume` over staging that another set of inputs or options wrote.
    #[error("cannot resume: {0}")]
    Resume(String),
    /// Staging without a finished import to resume, or a corrupt staging record.
    #[error("staging is damaged: {0}")]
    Staging(String),
    /// The resource store refused a write.
    #[error("store: {0}")]
    Store(String),
}

impl Error {
    pub fn new(path: impl Into<PathBuf>, kind: impl Into<ErrorKind>) -> Error {
        Error {
            path: path.into(),
            kind: kind.into(),
        }
    }

    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |e| Error::new(path, e)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
