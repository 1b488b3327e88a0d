//! An independent client: python-hl7's `mllp_send` (installed by `scripts/setup` from
//! `scripts/requirements-test.txt`) sends real corpus messages to `causeway serve`.
//!
//! Checks: `mllp_send` prints one ACK per message; each accepts the message (AA, or CA for a
//! message in enhanced acknowledgement mode, which asks for a commit ACK with MSH-15 = AL or
//! SU) and its MSA-2 is the MSH-10 of the message sent in that position; afterwards the store
//! holds every message byte for byte.
//!
//! Messages with MSH-15 = NE or ER ask for no ACK on success, and the server rightly sends
//! none; `mllp_send` waits for a reply to every message (a blocking `recv` with no timeout),
//! so those are left out of its input and counted in the output.
//! Without python3 or `mllp_send` the test fails (it does not skip) and says to run
//! `scripts/setup`.
//!
//! `mllp_send -f FILE` reads MLLP-framed messages and strips the start block and CRs around
//! each one, so the file is written framed, with each message's segments ended by CR and its
//! trailing CR left off: what the server receives is then exactly what the test expects.

mod support;

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::JoinHandle;
use std::time::Duration;

use support::{
    Ack, CR, FS, Server, VT, stored, stored_payloads, toml_path, wait_limited, write_config,
};

/// Corpus folders whose every file is sent.
const CORPUS_DIRS: [&str; 2] = [
    "fhir-converter/SampleData/Hl7v2",
    "rust-hl7-parser-hamaluik/test_assets",
];

/// Hang guard for `mllp_send`: the whole corpus takes about a second.
const SEND_LIMIT: Duration = Duration::from_secs(120);

const SETUP_HINT: &str = "run scripts/setup (it installs python3 and `pip install -r scripts/requirements-test.txt`, which provides python-hl7's mllp_send)";

fn corpus_root() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/corpus"
    ))
}

/// A corpus message as it will be sent.
struct Sample {
    path: PathBuf,
    bytes: Vec<u8>,
    /// MSH-10.
    control_id: String,
    /// MSH-15, the accept acknowledgement type: empty in original mode.
    accept_ack: String,
}

impl Sample {
    /// MSA-1 of the answer to a message that is stored: AA in original mode, CA (commit
    /// accept) in enhanced mode.
    fn expected_code(&self) -> &'static str {
        if self.accept_ack.is_empty() {
            "AA"
        } else {
            "CA"
        }
    }

    /// Whether the sender asked for an ACK when all goes well.
    fn wants_ack(&self) -> bool {
        matches!(self.accept_ack.as_str(), "" | "AL" | "SU")
    }
}

/// Every message of the corpus folders, in file order.
fn corpus_messages() -> Vec<Sample> {
    let mut files = Vec::new();
    for dir in CORPUS_DIRS {
        let dir = corpus_root().join(dir);
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot read the corpus folder {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.unwrap().path();
            let is_message = matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("hl7" | "txt")
            );
            if is_message {
                files.push(path);
            }
        }
    }
    files.sort();
    let mut messages = Vec::new();
    for path in files {
        let data = std::fs::read(&path).unwrap();
        for item in hl7v2::split_file(&data) {
            let raw = item.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            // Terminators as CR, the trailing ones off (mllp_send strips them).
            let mut bytes = Vec::with_capacity(raw.bytes.len());
            let mut i = 0;
            while i < raw.bytes.len() {
                match raw.bytes[i] {
                    b'\r' if raw.bytes.get(i + 1) == Some(&b'\n') => {
                        bytes.push(CR);
                        i += 1;
                    }
                    b'\n' => bytes.push(CR),
                    b => bytes.push(b),
                }
                i += 1;
            }
            while bytes.last() == Some(&CR) {
                bytes.pop();
            }
            // mllp_send splits its input on these bytes: a message holding one cannot be sent.
            assert!(
                !bytes.iter().any(|&b| b == VT || b == FS || b == 0x0c),
                "{}: message holds an MLLP control byte",
                path.display()
            );
            let msg = hl7v2::parse(&bytes)
                .unwrap_or_else(|e| panic!("{}: does not parse: {e}", path.display()));
            let control_id = msg.control_id().map(|c| c.into_owned()).unwrap_or_default();
            let accept_ack = msg
                .get("MSH-15")
                .unwrap()
                .map(|n| n.decoded().into_owned())
                .unwrap_or_default();
            messages.push(Sample {
                path: path.clone(),
                bytes,
                control_id,
                accept_ack,
            });
        }
    }
    messages
}

/// Runs a command, failing the test loudly when it is not installed.
fn require(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("`{program}` cannot be run ({e}): {SETUP_HINT}");
        });
    assert!(
        output.status.success(),
        "`{program} {}` failed ({}): {}\n{SETUP_HINT}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

fn drain(mut from: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = from.read_to_end(&mut out);
        out
    })
}

/// The frames `mllp_send` printed: each ACK as received, framed, then LF.
fn printed_acks(stdout: &[u8]) -> Vec<Vec<u8>> {
    let mut acks = Vec::new();
    let mut rest = stdout;
    while let Some(start) = rest.iter().position(|&b| b == VT) {
        let after = &rest[start + 1..];
        let end = after
            .iter()
            .position(|&b| b == FS)
            .unwrap_or_else(|| panic!("unterminated ACK in mllp_send's output"));
        acks.push(after[..end].to_vec());
        rest = &after[end + 1..];
    }
    acks
}

fn framed_file(path: &Path, messages: &[Sample]) {
    let mut data = Vec::new();
    for m in messages {
        data.push(VT);
        data.extend_from_slice(&m.bytes);
        data.extend_from_slice(&[FS, CR]);
    }
    std::fs::write(path, data).unwrap();
}

#[test]
fn python_hl7_mllp_send_gets_aa_for_every_corpus_message() {
    let python = require("python3", &["--version"]);
    let hl7_version = require("mllp_send", &["--version"]);

    let (messages, no_ack): (Vec<Sample>, Vec<Sample>) =
        corpus_messages().into_iter().partition(Sample::wants_ack);
    assert!(
        messages.len() >= 100,
        "only {} corpus messages",
        messages.len()
    );
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let input = dir.path().join("corpus.mllp");
    framed_file(&input, &messages);
    let config = write_config(
        dir.path(),
        &format!(
            r#"[server]
data_dir = {data}
log_format = "json"

[[channel]]
name = "corpus"
source = {{ type = "mllp", listen = "127.0.0.1:0" }}
"#,
            data = toml_path(&data_dir),
        ),
    );
    let server = Server::start(&config);
    let addr = server.addr("corpus");

    let mut child = Command::new("mllp_send")
        .args(["--port", &addr.port().to_string(), "--file"])
        .arg(&input)
        .arg(addr.ip().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("`mllp_send` cannot be run ({e}): {SETUP_HINT}"));
    let stdout = drain(child.stdout.take().unwrap());
    let stderr = drain(child.stderr.take().unwrap());
    // mllp_send waits for each reply without a timeout: a missing ACK would hang it.
    let (status, killed) = wait_limited(&mut child, SEND_LIMIT);
    let stdout = stdout.join().unwrap();
    let stderr = String::from_utf8_lossy(&stderr.join().unwrap()).into_owned();
    assert!(
        !killed,
        "mllp_send still waiting after {SEND_LIMIT:?}: a message got no ACK ({} ACKs printed)",
        printed_acks(&stdout).len()
    );
    assert!(status.success(), "mllp_send failed ({status}): {stderr}");
    let acks = printed_acks(&stdout);
    assert_eq!(acks.len(), messages.len(), "one ACK per message");
    for (m, ack) in messages.iter().zip(&acks) {
        let ack = Ack::parse(ack);
        assert_eq!(
            (ack.code.as_str(), ack.control_id.as_str()),
            (m.expected_code(), m.control_id.as_str()),
            "{}: {ack:?}",
            m.path.display()
        );
    }
    let enhanced = messages
        .iter()
        .filter(|m| m.expected_code() == "CA")
        .count();
    let (status, log) = server.stop();
    assert!(status.success(), "serve exited with {status}:\n{log}");

    // Every message is in the store, byte for byte (repeats of one message are stored too,
    // flagged as duplicates).
    let rows = stored(&data_dir, "corpus");
    assert_eq!(rows.len(), messages.len(), "one row per message sent");
    let ids: Vec<_> = rows.iter().map(|r| r.id).collect();
    let payloads = stored_payloads(&data_dir, &ids);
    let mut by_control_id: HashMap<&str, Vec<&Vec<u8>>> = HashMap::new();
    for row in &rows {
        by_control_id
            .entry(row.control_id.as_str())
            .or_default()
            .push(&payloads[&row.id]);
    }
    for m in &messages {
        let found = by_control_id
            .get(m.control_id.as_str())
            .is_some_and(|stored| stored.contains(&&m.bytes));
        assert!(
            found,
            "{}: {} not stored as sent",
            m.path.display(),
            m.control_id
        );
    }
    let duplicates = rows
        .iter()
        .filter(|r| r.state == causeway_store::MessageState::Duplicate)
        .count();
    println!(
        "python-hl7 {hl7_version} ({python}) mllp_send: {} corpus messages sent, {} accepted with matching MSA-2 ({} AA, {enhanced} CA in enhanced mode), {} stored ({duplicates} as duplicates of an earlier identical message); {} left out (MSH-15 NE/ER: no ACK on success)",
        messages.len(),
        acks.len(),
        acks.len() - enhanced,
        rows.len(),
        no_ack.len()
    );
}
