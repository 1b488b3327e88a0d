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

/// A count on the command line (`--count`, `--drop-every`): a whole number, at least 1. Clap's own
/// checks would print the type's range (`1..18446744073709551615`) or speak of a "non-zero type".
pub fn at_least_one(s: &str) -> Result<std::num::NonZeroU64, String> {
    s.parse()
        .map_err(|_| "expected a whole number of messages, at least 1".into())
}
