//! The crate's one error type.
//!
//! Every variant names where it happened: the file, the operation, or the record (message id,
//! delivery sequence number). Messages are lowercase without a trailing period and never contain
//! payload bytes or patient data. [`Error`] is `Clone` because one failed group commit has to
//! answer every caller in the group.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use crate::{DeliverySeq, MessageId};

/// A record whose ciphertext failed to authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record {
    /// The payload of a message.
    MessagePayload(MessageId),
    /// The transformed bytes a message is delivered as.
    MessageOutbound(MessageId),
    /// The ACK sent for a message.
    InboundAck(MessageId),
    /// The last ACK received for a delivery.
    DeliveryAck(DeliverySeq),
    /// One version of a FHIR resource (its row key and version number).
    ResourceVersion { key: i64, version: u64 },
    /// The query string of an audit record (its id).
    AuditQuery(i64),
    /// An API write waiting for the EHR's ACK.
    PendingResource(MessageId),
}

impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MessagePayload(id) => write!(f, "payload of message {id}"),
            Self::MessageOutbound(id) => write!(f, "outbound payload of message {id}"),
            Self::InboundAck(id) => write!(f, "ack of message {id}"),
            Self::DeliveryAck(seq) => write!(f, "ack of delivery {seq}"),
            Self::ResourceVersion { key, version } => {
                write!(f, "version {version} of resource {key}")
            }
            Self::PendingResource(id) => write!(f, "pending write of message {id}"),
            Self::AuditQuery(id) => write!(f, "query of audit record {id}"),
        }
    }
}

/// Broad class of an [`Error`], for callers deciding what to answer (AE, 404, retry...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// File system trouble (data directory, key file I/O).
    Io,
    /// Key file missing, malformed, too open, or not the database's key.
    Key,
    /// The database refused or failed an operation (disk full, I/O error, lock timeout).
    Database,
    /// The database schema is newer than this build.
    Schema,
    /// A stored ciphertext failed to authenticate.
    Decrypt,
    /// The message or delivery does not exist.
    NotFound,
    /// The delivery's lease was taken over by another worker.
    LeaseLost,
    /// The request itself is invalid (too long, empty, not allowed in this state).
    InvalidInput,
    /// The store was closed.
    Closed,
    /// The database holds a value this build cannot interpret.
    Corrupt,
    /// A write's version precondition (`If-Match`) did not hold.
    Conflict,
}

/// Everything that can go wrong in the store.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// File system trouble.
    #[error("cannot {action} {path}: {error}")]
    Io {
        /// What was being done (`create data directory`, `read key file`...).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error (in the message, not also as the source: a printed chain says it once).
        error: Arc<std::io::Error>,
    },
    /// Key file problem.
    #[error("key file {path}: {reason}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Database failure.
    #[error("database error during {op}: {error}")]
    Database {
        /// The store operation (`insert_inbound`, `commit`...).
        op: &'static str,
        /// The driver's error (in the message, not also as the source).
        error: Arc<dyn std::error::Error + Send + Sync>,
    },
    /// Schema newer than this build.
    #[error("schema version {found} of {path} is newer than the {supported} this build knows")]
    SchemaTooNew {
        /// The database file.
        path: PathBuf,
        /// Version found in the file.
        found: i64,
        /// Latest version this build knows.
        supported: i64,
    },
    /// Authentication failure of a stored ciphertext.
    #[error(
        "{record} failed to decrypt: wrong key, tampered bytes, or ciphertext moved from another row"
    )]
    Decrypt {
        /// The record.
        record: Record,
    },
    /// No such message.
    #[error("message {0} not found")]
    MessageNotFound(MessageId),
    /// No such delivery.
    #[error("delivery {0} not found")]
    DeliveryNotFound(DeliverySeq),
    /// Lease taken over.
    #[error("delivery {seq} to {destination} is no longer leased by {worker} (attempt {attempt})")]
    LeaseLost {
        /// The delivery.
        seq: DeliverySeq,
        /// Its destination.
        destination: String,
        /// The worker that lost it.
        worker: String,
        /// The attempt number the worker held.
        attempt: u32,
    },
    /// Invalid request.
    #[error("invalid {field}: {reason}")]
    InvalidInput {
        /// The offending input (`header.control_id`, `destination`...).
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A resource write's expected version is not the current one.
    #[error("{resource} is at version {current}, not the expected {expected}")]
    VersionConflict {
        /// `Type/id`.
        resource: String,
        /// The version the writer expected.
        expected: u64,
        /// The current version (0: the resource does not exist).
        current: u64,
    },
    /// Store closed.
    #[error("the store is closed")]
    Closed,
    /// Uninterpretable stored value.
    #[error("corrupt {column} in {table} row {row}: {detail}")]
    Corrupt {
        /// Table.
        table: &'static str,
        /// Column.
        column: &'static str,
        /// Row id.
        row: i64,
        /// What was found.
        detail: String,
    },
}

impl Error {
    /// The broad class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Io { .. } => ErrorKind::Io,
            Self::Key { .. } => ErrorKind::Key,
            Self::Database { .. } => ErrorKind::Database,
            Self::SchemaTooNew { .. } => ErrorKind::Schema,
            Self::Decrypt { .. } => ErrorKind::Decrypt,
            Self::MessageNotFound(_) | Self::DeliveryNotFound(_) => ErrorKind::NotFound,
            Self::LeaseLost { .. } => ErrorKind::LeaseLost,
            Self::InvalidInput { .. } => ErrorKind::InvalidInput,
            Self::VersionConflict { .. } => ErrorKind::Conflict,
            Self::Closed => ErrorKind::Closed,
            Self::Corrupt { .. } => ErrorKind::Corrupt,
        }
    }

    /// Whether this is how [`crate::Store::requeue`] refuses one message (unknown, purged,
    /// already pending) rather than a failure of the store.
    pub(crate) fn refuses_one_requeue(&self) -> bool {
        matches!(
            self.kind(),
            ErrorKind::NotFound | ErrorKind::InvalidInput | ErrorKind::Conflict
        )
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Self::Io {
            action,
            path: path.into(),
            error: Arc::new(source),
        }
    }

    pub(crate) fn db(
        op: &'static str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Database {
            op,
            error: Arc::new(source),
        }
    }

    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidInput {
            field,
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_lowercase_positioned_and_without_trailing_period() {
        let cases: Vec<(Error, &str)> = vec![
            (
                Error::Decrypt {
                    record: Record::MessagePayload(MessageId(42)),
                },
                "payload of message 42 failed to decrypt: wrong key, tampered bytes, or ciphertext moved from another row",
            ),
            (
                Error::LeaseLost {
                    seq: DeliverySeq(7),
                    destination: "lab".into(),
                    worker: "w1".into(),
                    attempt: 2,
                },
                "delivery 7 to lab is no longer leased by w1 (attempt 2)",
            ),
            (
                Error::invalid("header.control_id", "longer than 1024 bytes"),
                "invalid header.control_id: longer than 1024 bytes",
            ),
            (Error::MessageNotFound(MessageId(3)), "message 3 not found"),
            (Error::Closed, "the store is closed"),
        ];
        for (err, text) in cases {
            assert_eq!(err.to_string(), text);
            assert!(!text.ends_with('.'));
        }
    }
}
