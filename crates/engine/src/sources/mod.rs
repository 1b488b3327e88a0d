//! Sources: where messages come in. Each hands every message to its channel's ingest path
//! and answers with what ingest returned; none writes to the store itself.

pub mod directory;
pub mod http;
pub mod mllp;
