//! `causeway send --to HOST:PORT FILE…`: an MLLP client that sends every message of the files
//! and reports each acknowledgement.
//!
//! Output, one line per message on stdout (unless `--quiet`), in the order the ACKs arrive
//! (which is the input order with one connection):
//!
//! ```text
//! AA C42                          MSA-1 MSA-2, for an ACK that answers the message
//! AR C43 unknown patient          ... and the error text (ERR-8, ERR-3.2, MSA-3) when given
//! AA X9 mismatch: sent C44        an ACK whose MSA-2 is not the MSH-10 sent
//! ERROR C45 <reason>              no usable ACK: timeout, connection closed, bad reply
//! SENT C46 (MSH-15 NE: ...)       no ACK, as the message's MSH-15 asked
//! ```
//!
//! and always a summary on stderr: `sent N, AA/CA N, AE N, AR N, errors N, R msg/s, p50 T,
//! p99 T` (times from writing a message to its complete ACK), with `, no ACK as MSH-15 asked N`
//! when some messages asked for none. The exit status is 0 only when every message was
//! answered AA or CA for its own MSH-10 or, as its MSH-15 allowed, not answered; 1 otherwise;
//! 2 when nothing could be sent (bad arguments, no messages, the first connection failed).
//!
//! MSH-15 (enhanced mode) is honoured as a compliant receiver honours it: NE is not waited for
//! (`SENT`); ER waits the whole `--timeout` for an error ACK, silence meaning accepted (`SENT`,
//! so pass a short `--timeout` for ER feeds); SU without an ACK within `--timeout` was not
//! accepted (`ERROR`).
//!
//! Messages are sent as read, except that segment terminators are normalised to CR (MLLP
//! receivers expect CR, and many files on disk use LF) and, with `--count`, MSH-10 gets `-n`
//! appended (n = 1, 2, … across the whole run) so that a receiver's duplicate check does not
//! flag the copies; a message without an MSH-10 field is sent unchanged.
//!
//! With `--connections N`, message i goes to connection i mod N, so each connection keeps its
//! messages in input order. A message that fails does not stop the run: the next message on
//! that connection opens a new connection. Nothing is retried.

use std::io::Write;
use std::ops::Range;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use causeway_engine::net::client::{
    AckVerdict, Answer, DEFAULT_CONNECT_TIMEOUT, MllpClient, check_ack, read_ack,
};
use causeway_engine::net::tls;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::input::Input;

/// Most connections `--connections` accepts.
///
/// 256: enough to load any single MLLP listener (each connection has one message in flight),
/// few enough that a typo cannot exhaust the machine's sockets.
pub const MAX_CONNECTIONS: u16 = 256;

/// Highest `--rate` accepted, in messages per second; above it the pacing timer is coarser
/// than the interval it would have to keep.
pub const MAX_RATE: f64 = 1_000_000.0;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// HL7 v2 files (`-` for standard input): every message of each, in order.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<String>,
    /// The MLLP listener to send to.
    #[arg(long, value_name = "HOST:PORT")]
    to: String,
    /// Use TLS; needs --ca, since no trust roots are built in.
    #[arg(long)]
    tls: bool,
    /// CA certificates (PEM) that the listener's certificate must chain to; implies --tls.
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Client certificate chain (PEM) for mutual TLS.
    #[arg(long, value_name = "FILE", requires = "key")]
    cert: Option<PathBuf>,
    /// Private key (PEM) of --cert.
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,
    /// Name to check the listener's certificate against [default: the host of --to].
    #[arg(long, value_name = "NAME")]
    server_name: Option<String>,
    /// At most N messages per second, across all connections.
    #[arg(long, value_name = "N", value_parser = parse_rate)]
    rate: Option<f64>,
    /// Spread the messages over N concurrent connections (order is kept per connection).
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=i64::from(MAX_CONNECTIONS)))]
    connections: u16,
    /// Send N messages in all, cycling through the input, each with a unique MSH-10.
    #[arg(long, value_name = "N", value_parser = parse_count)]
    count: Option<u64>,
    /// How long to wait for each ACK, e.g. 30s, 500ms, 2m.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    timeout: Duration,
    /// Print only the summary.
    #[arg(long)]
    quiet: bool,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r > 0.0 && r <= MAX_RATE => Ok(r),
        _ => Err(format!(
            "expected a number of messages per second above 0 and at most {MAX_RATE}"
        )),
    }
}

/// `--count`: [`super::at_least_one`].
fn parse_count(s: &str) -> Result<u64, String> {
    super::at_least_one(s).map(u64::from)
}

/// `500ms`, `30s`, `2m`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(at) => s.split_at(at),
        None => (s, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("invalid duration {s:?} (expected e.g. 500ms, 30s, 2m)"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => {
            return Err(format!(
                "invalid duration unit in {s:?} (expected ms, s or m)"
            ));
        }
    };
    Duration::try_from_secs_f64(seconds)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("invalid duration {s:?} (must be above zero)"))
}

/// One message ready to send.
struct Prepared {
    /// The message with CR segment terminators.
    bytes: Vec<u8>,
    /// MSH-10 as text, to compare with MSA-2.
    control_id: String,
    /// Where MSH-10's raw value sits in `bytes`, when the field exists.
    msh10: Option<Range<usize>>,
}

impl Prepared {
    /// Copy `n` (1-based) with `-n` appended to MSH-10, or the message itself when `n` is None.
    fn copy(&self, n: Option<u64>) -> (Vec<u8>, String) {
        match (n, &self.msh10) {
            (Some(n), Some(range)) => {
                let suffix = format!("-{n}");
                let mut bytes = Vec::with_capacity(self.bytes.len() + suffix.len());
                bytes.extend_from_slice(&self.bytes[..range.end]);
                bytes.extend_from_slice(suffix.as_bytes());
                bytes.extend_from_slice(&self.bytes[range.end..]);
                (bytes, format!("{}{suffix}", self.control_id))
            }
            _ => (self.bytes.clone(), self.control_id.clone()),
        }
    }
}

/// LF and CRLF segment terminators to CR.
fn normalize(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\r' if bytes.get(i + 1) == Some(&b'\n') => {
                out.push(b'\r');
                i += 1;
            }
            b'\n' => out.push(b'\r'),
            b => out.push(b),
        }
        i += 1;
    }
    out
}

fn prepare(raw: &[u8]) -> Result<Prepared, hl7v2::Error> {
    // Parsed as read first, so that errors point into the file as it is.
    hl7v2::parse(raw)?;
    let bytes = normalize(raw);
    let msg = hl7v2::parse(&bytes)?;
    let field = msg.get("MSH-10")?;
    let control_id = field.map(|n| n.decoded().into_owned()).unwrap_or_default();
    let msh10 = field.and_then(|n| {
        let start = n.position().byte;
        let range = start..start + n.raw().len();
        // Only edit where the value really is.
        (bytes.get(range.clone()) == Some(n.raw())).then_some(range)
    });
    Ok(Prepared {
        bytes,
        control_id,
        msh10,
    })
}

/// How one message ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Accepted,
    AppError,
    Rejected,
    Failed,
    /// No ACK, as MSH-15 asked (NE, or ER and no error reported).
    Unasked,
}

struct Outcome {
    kind: Kind,
    line: String,
    /// Time from writing the message to its complete ACK, when an ACK came.
    latency: Option<Duration>,
}

/// Control characters (e.g. a CR from an escape in ERR-8) would break the one-line format.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn judge(
    sent_id: &str,
    result: Result<Answer, causeway_engine::net::ClientError>,
    latency: Duration,
) -> Outcome {
    let unanswered = |kind, line: String| Outcome {
        kind,
        line: one_line(&line),
        latency: None,
    };
    let ack = match result {
        Ok(Answer::Ack(ack)) => ack,
        Ok(Answer::NotAsked) => {
            return unanswered(
                Kind::Unasked,
                format!("SENT {sent_id} (MSH-15 NE: no ACK asked)"),
            );
        }
        Ok(Answer::NoErrorReported) => {
            return unanswered(
                Kind::Unasked,
                format!("SENT {sent_id} (MSH-15 ER: no error reported within {latency:.1?})"),
            );
        }
        Ok(Answer::NotAccepted) => {
            return unanswered(
                Kind::Failed,
                format!(
                    "ERROR {sent_id} no ACK within {latency:.1?}: MSH-15 SU asks for one only on success, so it was not accepted"
                ),
            );
        }
        Err(e) => {
            return Outcome {
                kind: Kind::Failed,
                line: one_line(&format!("ERROR {sent_id} {e}")),
                latency: None,
            };
        }
    };
    let fields = match read_ack(&ack) {
        Ok(fields) => fields,
        Err(problem) => {
            return Outcome {
                kind: Kind::Failed,
                line: one_line(&format!("ERROR {sent_id} {problem}")),
                latency: Some(latency),
            };
        }
    };
    let mut line = format!("{} {}", fields.code, fields.control_id);
    if let Some(text) = &fields.text {
        line.push(' ');
        line.push_str(text);
    }
    let kind = match check_ack(sent_id, &ack) {
        AckVerdict::Accepted => Kind::Accepted,
        AckVerdict::Rejected(_) => Kind::Rejected,
        AckVerdict::Error(_) if matches!(fields.code.as_str(), "AE" | "CE") => Kind::AppError,
        AckVerdict::Error(problem) => {
            line.push_str(&format!(" ({problem})"));
            Kind::Failed
        }
        AckVerdict::Mismatch => {
            line.push_str(&format!(" mismatch: sent {sent_id}"));
            Kind::Failed
        }
    };
    Outcome {
        kind,
        line: one_line(&line),
        latency: Some(latency),
    }
}

/// Spaces sends evenly across all connections: no burst ever exceeds the rate.
struct Pace {
    interval: Duration,
    next: Mutex<Instant>,
}

impl Pace {
    async fn wait(&self) {
        let at = {
            let mut next = self
                .next
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let at = (*next).max(Instant::now());
            *next = at + self.interval;
            at
        };
        tokio::time::sleep_until(at).await;
    }
}

/// What every connection task shares.
struct Plan {
    messages: Vec<Prepared>,
    total: u64,
    numbered: bool,
    connections: u64,
    ack_timeout: Duration,
    pace: Option<Pace>,
}

async fn connection_task(
    plan: Arc<Plan>,
    index: u64,
    mut client: MllpClient,
    results: mpsc::UnboundedSender<Outcome>,
) {
    let mut i = index;
    while i < plan.total {
        let base = &plan.messages[(i % plan.messages.len() as u64) as usize];
        let (payload, sent_id) = base.copy(plan.numbered.then_some(i + 1));
        if let Some(pace) = &plan.pace {
            pace.wait().await;
        }
        let started = Instant::now();
        let result = client
            .send_as_asked(&payload, &sent_id, plan.ack_timeout)
            .await;
        let outcome = judge(&sent_id, result, started.elapsed());
        if results.send(outcome).is_err() {
            return;
        }
        i += plan.connections;
    }
    client.disconnect().await;
}

/// The value at quantile `q` (nearest rank) of sorted durations.
fn quantile(sorted: &[Duration], q: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

fn millis(d: Option<Duration>) -> String {
    d.map_or_else(
        || "-".to_string(),
        |d| format!("{:.2} ms", d.as_secs_f64() * 1000.0),
    )
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut messages = Vec::new();
    let mut invalid = 0u64;
    for file in &args.files {
        let input = Input::read_hl7(file)?;
        for item in hl7v2::split_file(&input.data) {
            let raw = match item {
                Ok(raw) => raw,
                Err(e) => {
                    invalid += 1;
                    eprintln!("{}", input.describe(0, &e));
                    continue;
                }
            };
            match prepare(raw.bytes) {
                Ok(prepared) => messages.push(prepared),
                Err(mut e) => {
                    invalid += 1;
                    e.position.byte += raw.offset;
                    eprintln!("{} (not sent)", input.describe(raw.number, &e));
                }
            }
        }
    }
    if messages.is_empty() {
        anyhow::bail!("no messages to send");
    }

    let tls = if args.tls || args.ca.is_some() {
        let ca = args
            .ca
            .as_deref()
            .context("--tls needs --ca FILE: no trust roots are built in")?;
        let client_cert = args.cert.as_deref().zip(args.key.as_deref());
        Some(tls::client_config(ca, client_cert)?)
    } else {
        if args.cert.is_some() {
            anyhow::bail!("--cert needs --tls and --ca");
        }
        None
    };

    let plan = Arc::new(Plan {
        total: args.count.unwrap_or(messages.len() as u64),
        numbered: args.count.is_some(),
        messages,
        connections: u64::from(args.connections),
        ack_timeout: args.timeout,
        pace: args.rate.map(|rate| Pace {
            interval: Duration::from_secs_f64(1.0 / rate),
            next: Mutex::new(Instant::now()),
        }),
    });

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let quiet = args.quiet;
    let (counts, latencies, elapsed) = runtime.block_on(async {
        // Open every connection first: a listener that is not there is one clear error, not a
        // line per message.
        let mut clients = Vec::new();
        for _ in 0..plan.connections.min(plan.total) {
            let client = MllpClient::connect(
                args.to.clone(),
                tls.clone(),
                args.server_name.as_deref(),
                DEFAULT_CONNECT_TIMEOUT,
            )
            .await?;
            clients.push(client);
        }
        let started = Instant::now();
        let (tx, mut rx) = mpsc::unbounded_channel();
        for (index, client) in clients.into_iter().enumerate() {
            tokio::spawn(connection_task(
                plan.clone(),
                index as u64,
                client,
                tx.clone(),
            ));
        }
        drop(tx);
        let mut counts = [0u64; 5];
        let mut latencies = Vec::new();
        let mut stdout = std::io::stdout().lock();
        while let Some(outcome) = rx.recv().await {
            counts[outcome.kind as usize] += 1;
            latencies.extend(outcome.latency);
            if !quiet {
                writeln!(stdout, "{}", outcome.line)?;
            }
        }
        stdout.flush()?;
        anyhow::Ok((counts, latencies, started.elapsed()))
    })?;

    let [accepted, app_errors, rejected, failed, unasked] = counts;
    let sent = accepted + app_errors + rejected + failed + unasked;
    let mut latencies = latencies;
    latencies.sort_unstable();
    let per_second = sent as f64 / elapsed.as_secs_f64().max(f64::EPSILON);
    let mut summary = format!(
        "sent {sent}, AA/CA {accepted}, AE {app_errors}, AR {rejected}, errors {failed}, {per_second:.1} msg/s, p50 {}, p99 {}",
        millis(quantile(&latencies, 0.50)),
        millis(quantile(&latencies, 0.99)),
    );
    if unasked > 0 {
        summary.push_str(&format!(", no ACK as MSH-15 asked {unasked}"));
    }
    if invalid > 0 {
        summary.push_str(&format!(", not sent (invalid input) {invalid}"));
    }
    eprintln!("{summary}");
    Ok(if accepted + unasked == sent && invalid == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ok = [
            ("500ms", Duration::from_millis(500)),
            ("30s", Duration::from_secs(30)),
            ("2m", Duration::from_secs(120)),
            ("1.5", Duration::from_millis(1500)),
        ];
        for (text, d) in ok {
            assert_eq!(parse_duration(text), Ok(d), "{text}");
        }
        assert_eq!(
            parse_duration("5h"),
            Err("invalid duration unit in \"5h\" (expected ms, s or m)".to_string())
        );
        assert_eq!(
            parse_duration("0s"),
            Err("invalid duration \"0s\" (must be above zero)".to_string())
        );
        assert_eq!(
            parse_duration("soon"),
            Err("invalid duration \"soon\" (expected e.g. 500ms, 30s, 2m)".to_string())
        );
    }

    #[test]
    fn counts_are_at_least_one() {
        assert_eq!(parse_count("20000"), Ok(20_000));
        for bad in ["0", "-1", "many", "1.5"] {
            assert_eq!(
                parse_count(bad),
                Err("expected a whole number of messages, at least 1".to_string()),
                "{bad}"
            );
        }
    }

    #[test]
    fn terminators_become_cr() {
        assert_eq!(
            normalize(b"MSH|a\r\nPID|1\nPV1|\r"),
            b"MSH|a\rPID|1\rPV1|\r"
        );
    }

    #[test]
    fn copies_get_numbered_control_ids() {
        let p = prepare(b"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|C42|P|2.5\nPID|1\n").unwrap();
        assert_eq!(p.control_id, "C42");
        let (bytes, id) = p.copy(Some(7));
        assert_eq!(id, "C42-7");
        assert_eq!(
            bytes,
            b"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|C42-7|P|2.5\rPID|1\r"
        );
        assert_eq!(
            p.copy(None).0,
            b"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|C42|P|2.5\rPID|1\r"
        );
        // An empty MSH-10 becomes "-n"; a missing one is left alone.
        let empty = prepare(b"MSH|^~\\&|A|B|C|D|||ADT^A01||P|2.5\r").unwrap();
        assert_eq!(
            empty.copy(Some(3)),
            (
                b"MSH|^~\\&|A|B|C|D|||ADT^A01|-3|P|2.5\r".to_vec(),
                "-3".to_string()
            )
        );
        let short = prepare(b"MSH|^~\\&|A\r").unwrap();
        assert_eq!(
            short.copy(Some(3)),
            (b"MSH|^~\\&|A\r".to_vec(), String::new())
        );
    }

    #[test]
    fn quantiles() {
        let d: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&d, 0.5), Some(Duration::from_millis(50)));
        assert_eq!(quantile(&d, 0.99), Some(Duration::from_millis(99)));
        assert_eq!(quantile(&d[..1], 0.99), Some(Duration::from_millis(1)));
        assert_eq!(quantile(&[], 0.5), None);
    }
}
