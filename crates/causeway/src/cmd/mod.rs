//! One module per command.

pub mod ack;
pub mod audit;
pub mod check;
pub mod convert;
pub mod convert_v2;
pub mod drift;
pub mod errors;
pub mod get;
pub mod import;
pub mod listen;
pub mod parse;
pub mod profile;
pub mod reprocess;
pub mod send;
pub mod serve;
pub mod test;
pub mod validate;
