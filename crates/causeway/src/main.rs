//! The `causeway` binary: the engine (`serve`) and the tools around the same crates.
//!
//! Each command lives in `cmd/`. Commands that read HL7 files share [`input`], which reads a
//! file (or `-` for stdin), splits it into messages and positions errors in the file.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;
mod input;

/// mimalloc instead of glibc's malloc: conversion allocates many small strings on every core,
/// and glibc's arenas and their locks took about a third of an import's time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "causeway",
    version,
    about = "HL7 v2 integration engine and clinical API gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the engine: every channel of the configuration (or the built-in default).
    Serve(cmd::serve::Args),
    /// Validate a configuration file and report every problem at once.
    Check(cmd::check::Args),
    /// Run a stored message through its channel again and queue it to its destinations.
    Reprocess(cmd::reprocess::Args),
    /// List each destination's error queue, or send one again (`--queue Q --retry`).
    Errors(cmd::errors::Args),
    /// Print each message as JSON (one object per line), or as a labelled tree.
    Parse(cmd::parse::Args),
    /// Print the decoded value at a path (e.g. PID-3(2).1) for each message.
    Get(cmd::get::Args),
    /// Check each message against the HL7 standard or a conformance profile.
    Validate(cmd::validate::Args),
    /// Print the acknowledgement for each message.
    Ack(cmd::ack::Args),
    /// Send messages to an MLLP listener and report each acknowledgement.
    Send(cmd::send::Args),
    /// Receive messages over MLLP and acknowledge them as told (a test stand-in for an EHR).
    Listen(cmd::listen::Args),
    /// Convert HL7 v2 messages to FHIR R4 bundles (or FHIR to v2 with --to v2) through a sender's profile.
    Convert(cmd::convert::Args),
    /// Run conversion fixtures (input, profile, expected output) and print every difference.
    Test(cmd::test::Args),
    /// Check vendor profiles, or export their code maps as FHIR ConceptMaps.
    Profile(cmd::profile::Args),
    /// Check the audit log: `audit verify` recomputes its hash chain.
    Audit(cmd::audit::Args),
    /// Import HL7 v2 archives (folders, .gz, .zst, .zip) as FHIR NDJSON or into the store.
    Import(cmd::import::Args),
    /// Drift detection: `drift export` prints a channel's learned profile as a conformance profile.
    Drift(cmd::drift::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => cmd::serve::run(args),
        Command::Check(args) => cmd::check::run(args),
        Command::Reprocess(args) => cmd::reprocess::run(args),
        Command::Errors(args) => cmd::errors::run(args),
        Command::Parse(args) => cmd::parse::run(args),
        Command::Get(args) => cmd::get::run(args),
        Command::Validate(args) => cmd::validate::run(args),
        Command::Ack(args) => cmd::ack::run(args),
        Command::Send(args) => cmd::send::run(args),
        Command::Listen(args) => cmd::listen::run(args),
        Command::Convert(args) => cmd::convert::run(args),
        Command::Test(args) => cmd::test::run(args),
        Command::Profile(args) => cmd::profile::run(args),
        Command::Audit(args) => cmd::audit::run(args),
        Command::Drift(args) => cmd::drift::run(args),
        Command::Import(args) => cmd::import::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("causeway: {e:#}");
            ExitCode::from(2)
        }
    }
}
