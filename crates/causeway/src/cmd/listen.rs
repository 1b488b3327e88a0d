//! `causeway listen --port P`: a receiving end for tests and demos. It acknowledges every
//! message as told (`--ack`, `--delay`), can fail on purpose (`--drop-every`), and can keep
//! what it received (`--out`).
//!
//! Once the socket is bound it prints `listening on ADDR` on stderr, so a caller that passed
//! `--port 0` learns the real port. It stops on SIGTERM or Ctrl-C: it stops accepting, lets
//! each connection finish the message it is on, prints a summary on stderr and exits 0.
//!
//! Unless `--quiet`, each message gives one stdout line:
//! `<n> <MSH-10> <MSH-9> <size> bytes -> <AA|AE|AR|dropped>` (for a message that does not
//! parse, MSH-10 and MSH-9 are `?` and the answer is an AR naming the parse error).
//!
//! A message's MSH-15 is honoured as `causeway serve` honours it: under NE no ACK is written,
//! under ER only a refusal, under SU only an acceptance; the line then ends in
//! `<code> not sent (MSH-15 NE)`.
//!
//! `--out FILE` format: for every message that was answered, its payload exactly as received
//! (segment terminators included, normally CR) followed by one LF, appended in the order the
//! answers were decided, before the ACK is written. The file is therefore also a message file
//! that `causeway send` or `hl7v2::split_file` reads back; a test can split it on LF as long
//! as the payloads themselves hold no LF (true for anything `causeway send` sent, since it
//! normalises terminators to CR). Dropped messages are not written.
//!
//! `--drop-every N` counts messages across all connections: the Nth, 2Nth, … message closes
//! its connection without an answer, as a receiver that crashed mid-message would.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU64;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use causeway_engine::net::server::{
    self, DEFAULT_MAX_CONNECTIONS, Handler, Peer, Reply, ServerOptions,
};
use causeway_engine::net::tls;
use hl7v2::{AckCode, AckError, AckHeader, AckMode};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// TCP port to listen on; 0 picks a free one (the address is printed on stderr).
    #[arg(long)]
    port: u16,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
    /// MSA-1 of every answer: AA, AE or AR (CA, CE, CR for enhanced-mode commits).
    #[arg(long, default_value = "AA", value_parser = parse_code)]
    ack: AckCode,
    /// Wait this many milliseconds before each answer.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    delay: u64,
    /// Close the connection instead of answering every Nth message (counted across connections).
    #[arg(long, value_name = "N", value_parser = super::at_least_one)]
    drop_every: Option<NonZeroU64>,
    /// Append each answered message to FILE: its payload as received, then LF.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Server certificate chain (PEM): listen with TLS.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// CA certificates (PEM) that client certificates must chain to (mutual TLS).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    client_ca: Option<PathBuf>,
    /// Most connections open at once; more wait in the backlog.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,
    /// No line per message.
    #[arg(long)]
    quiet: bool,
}

fn parse_code(s: &str) -> Result<AckCode, String> {
    AckCode::parse(s).ok_or_else(|| {
        format!("unknown acknowledgement code {s:?} (expected AA, AE, AR, CA, CE or CR)")
    })
}

/// Answers every message as the arguments say.
struct Responder {
    code: AckCode,
    delay: Duration,
    drop_every: Option<NonZeroU64>,
    out: Option<tokio::sync::Mutex<tokio::fs::File>>,
    quiet: bool,
    received: AtomicU64,
    answered: AtomicU64,
    dropped: AtomicU64,
}

impl Responder {
    fn report(&self, n: u64, control_id: &str, message_type: &str, size: usize, outcome: &str) {
        if !self.quiet {
            println!("{n} {control_id} {message_type} {size} bytes -> {outcome}");
        }
    }

    /// Appends the payload and its LF in one write, so concurrent connections never interleave.
    async fn keep(&self, payload: &[u8]) -> std::io::Result<()> {
        let Some(out) = &self.out else {
            return Ok(());
        };
        let mut record = Vec::with_capacity(payload.len() + 1);
        record.extend_from_slice(payload);
        record.push(b'\n');
        let mut file = out.lock().await;
        file.write_all(&record).await?;
        file.flush().await
    }
}

impl Handler for Responder {
    async fn handle(&self, _peer: &Peer, payload: Bytes) -> Reply {
        let n = self.received.fetch_add(1, Ordering::SeqCst) + 1;
        let parsed = hl7v2::parse(&payload);
        let (control_id, message_type) = match &parsed {
            Ok(msg) => (
                msg.control_id().map(|c| c.into_owned()).unwrap_or_default(),
                msg.message_type(),
            ),
            Err(_) => ("?".to_string(), "?".to_string()),
        };
        if self
            .drop_every
            .is_some_and(|every| n.is_multiple_of(every.get()))
        {
            self.dropped.fetch_add(1, Ordering::SeqCst);
            self.report(n, &control_id, &message_type, payload.len(), "dropped");
            return Reply::Close;
        }
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let timestamp = causeway_engine::runtime::channel::hl7_timestamp();
        let ack_id = format!("CWL{n}");
        let header = AckHeader {
            control_id: &ack_id,
            timestamp: &timestamp,
        };
        let (code, ack) = match (&parsed, self.keep(&payload).await) {
            (_, Err(e)) => {
                eprintln!("causeway listen: cannot write to the --out file: {e}");
                let error = AckError::new(207, "receiver could not store the message");
                (
                    AckCode::AE,
                    answer(&parsed, &payload, AckCode::AE, error, header),
                )
            }
            (Ok(_), Ok(())) => {
                let error = AckError::new(
                    207,
                    if matches!(self.code, AckCode::AR | AckCode::CR) {
                        "rejected on request"
                    } else {
                        "error on request"
                    },
                );
                (
                    self.code,
                    answer(&parsed, &payload, self.code, error, header),
                )
            }
            (Err(e), Ok(())) => {
                let error = AckError::from_error(e);
                (
                    AckCode::AR,
                    answer(&parsed, &payload, AckCode::AR, error, header),
                )
            }
        };
        self.answered.fetch_add(1, Ordering::SeqCst);
        let asked = match &parsed {
            Ok(msg) if !AckMode::of(msg).accept_condition().wants(code.is_accept()) => {
                Some(msg.text("MSH-15"))
            }
            _ => None,
        };
        match asked {
            Some(msh15) => {
                let outcome = format!(
                    "{} not sent (MSH-15 {})",
                    code.as_str(),
                    msh15.unwrap_or_default().trim()
                );
                self.report(n, &control_id, &message_type, payload.len(), &outcome);
                Reply::Nothing
            }
            None => {
                self.report(n, &control_id, &message_type, payload.len(), code.as_str());
                Reply::Ack(ack)
            }
        }
    }
}

/// The ACK for a message that parsed, or a NAK from whatever of MSH is readable.
fn answer(
    parsed: &Result<hl7v2::Message<'_>, hl7v2::Error>,
    payload: &[u8],
    code: AckCode,
    error: AckError,
    header: AckHeader<'_>,
) -> Vec<u8> {
    match parsed {
        Ok(msg) => {
            let errors = if code.is_accept() {
                Vec::new()
            } else {
                vec![error]
            };
            hl7v2::build_ack(msg, code, &errors, header)
        }
        Err(_) => hl7v2::build_nak_for_bytes(payload, code, &error, header),
    }
}

/// Resolves on SIGTERM or Ctrl-C.
async fn stop_signal(#[cfg(unix)] mut term: tokio::signal::unix::Signal) {
    #[cfg(unix)]
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(tls::server_config(cert, key, args.client_ca.as_deref())?),
        _ => None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let out = match &args.out {
            None => None,
            Some(path) => Some(tokio::sync::Mutex::new(
                tokio::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .await
                    .with_context(|| format!("cannot open {}", path.display()))?,
            )),
        };
        let responder = Arc::new(Responder {
            code: args.ack,
            delay: Duration::from_millis(args.delay),
            drop_every: args.drop_every,
            out,
            quiet: args.quiet,
            received: AtomicU64::new(0),
            answered: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        });
        #[cfg(unix)]
        let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("cannot watch for SIGTERM")?;
        let addr = SocketAddr::new(args.bind, args.port);
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let local = listener
            .local_addr()
            .context("cannot read the bound address")?;
        eprintln!(
            "listening on {local}{}",
            if tls.is_some() { " (tls)" } else { "" }
        );
        let options = ServerOptions {
            tls,
            max_connections: args.max_connections.max(1),
            ..ServerOptions::default()
        };
        let stats = server::run(
            listener,
            options,
            responder.clone(),
            stop_signal(
                #[cfg(unix)]
                term,
            ),
        )
        .await;
        eprintln!(
            "received {}, answered {}, dropped {}, connections {}, bad frames {}, tls failures {}",
            responder.received.load(Ordering::SeqCst),
            responder.answered.load(Ordering::SeqCst),
            responder.dropped.load(Ordering::SeqCst),
            stats.connections,
            stats.bad_frames,
            stats.tls_failures,
        );
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

#[cfg(test)]
mod tests {
    use crate::cmd::at_least_one as parse_every;

    #[test]
    fn drop_every_is_at_least_one() {
        assert_eq!(parse_every("4").map(u64::from), Ok(4));
        for bad in ["0", "-1", "often"] {
            assert_eq!(
                parse_every(bad),
                Err("expected a whole number of messages, at least 1".to_string()),
                "{bad}"
            );
        }
    }
}
