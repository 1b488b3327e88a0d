//! One module per command.

pub mod ack;
pub mod check;
pub mod get;
pub mod listen;
pub mod parse;
pub mod reprocess;
pub mod send;
pub mod serve;
pub mod validate;
