//! `causeway send` against `causeway listen`: both as the built binary, over real sockets, with
//! a real corpus file. The listener binds port 0 and the test reads the port from its
//! `listening on ADDR` line, so nothing waits on a timer.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread::JoinHandle;

const BIN: &str = env!("CARGO_BIN_EXE_causeway");

/// 13 messages with CR terminators, two of them with an empty MSH-10.
fn corpus_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/corpus/hapi-hl7v2/hapi-test/parser/example_oml_o21.hl7")
}

/// Each message of a file as `causeway send` sends it (terminators as CR) and its MSH-10.
fn messages_of(path: &Path) -> Vec<(Vec<u8>, String)> {
    let data = std::fs::read(path).unwrap();
    hl7v2::split_file(&data)
        .map(|item| {
            let raw = item.unwrap();
            let text = String::from_utf8_lossy(raw.bytes)
                .replace("\r\n", "\r")
                .replace('\n', "\r");
            let id = hl7v2::parse(raw.bytes)
                .unwrap()
                .control_id()
                .map(|c| c.into_owned())
                .unwrap_or_default();
            (text.into_bytes(), id)
        })
        .collect()
}

fn drain(mut from: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = from.read_to_string(&mut text);
        text
    })
}

struct Listener {
    child: Child,
    addr: String,
    stdout: JoinHandle<String>,
    stderr: JoinHandle<String>,
}

struct Stopped {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Listener {
    fn start(args: &[&str]) -> Listener {
        let mut child = Command::new(BIN)
            .arg("listen")
            .args(["--port", "0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        stderr.read_line(&mut line).unwrap();
        let addr = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .split_whitespace()
            .next()
            .unwrap()
            .to_string();
        let stdout = drain(child.stdout.take().unwrap());
        Listener {
            child,
            addr,
            stdout,
            stderr: drain(stderr),
        }
    }

    /// SIGTERM, then the exit status and everything it printed.
    fn stop(mut self) -> Stopped {
        let killed = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let status = self.child.wait().unwrap();
        Stopped {
            status,
            stdout: self.stdout.join().unwrap(),
            stderr: self.stderr.join().unwrap(),
        }
    }
}

fn send(args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("send")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// The records of an `--out` file: one payload per LF.
fn records(path: &Path) -> Vec<Vec<u8>> {
    let data = std::fs::read(path).unwrap();
    assert!(data.is_empty() || data.ends_with(b"\n"));
    data.split(|&b| b == b'\n')
        .filter(|r| !r.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

fn summary(stderr: &str) -> &str {
    stderr.lines().last().unwrap_or_default()
}

#[test]
fn a_corpus_file_is_sent_acknowledged_and_kept_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("received.hl7");
    let listener = Listener::start(&["--out", out.to_str().unwrap()]);
    let corpus = corpus_file();
    let expected = messages_of(&corpus);
    assert_eq!(expected.len(), 13);

    let sent = send(&["--to", &listener.addr, corpus.to_str().unwrap()]);
    let stderr = text(&sent.stderr);
    assert!(sent.status.success(), "{stderr}");
    let lines: Vec<String> = text(&sent.stdout).lines().map(str::to_string).collect();
    let wanted: Vec<String> = expected.iter().map(|(_, id)| format!("AA {id}")).collect();
    assert_eq!(lines, wanted);
    assert!(
        summary(&stderr).starts_with("sent 13, AA/CA 13, AE 0, AR 0, errors 0, "),
        "{stderr}"
    );
    assert!(summary(&stderr).contains(" msg/s, p50 "), "{stderr}");

    // Written before each ACK, so complete as soon as `send` is done.
    let kept = records(&out);
    let sent_payloads: Vec<Vec<u8>> = expected.into_iter().map(|(bytes, _)| bytes).collect();
    assert_eq!(kept, sent_payloads);

    let stopped = listener.stop();
    assert!(stopped.status.success(), "{}", stopped.stderr);
    assert!(
        stopped
            .stderr
            .contains("received 13, answered 13, dropped 0, connections 1,"),
        "{}",
        stopped.stderr
    );
    let first = stopped.stdout.lines().next().unwrap();
    assert_eq!(first, "1 msgOP123 OML^O21 666 bytes -> AA");
    assert_eq!(stopped.stdout.lines().count(), 13);
}

#[test]
fn rejections_are_reported_and_fail_the_run() {
    let listener = Listener::start(&["--ack", "AR", "--quiet"]);
    let corpus = corpus_file();
    let sent = send(&["--to", &listener.addr, corpus.to_str().unwrap()]);
    assert_eq!(sent.status.code(), Some(1));
    let lines: Vec<String> = text(&sent.stdout).lines().map(str::to_string).collect();
    let wanted: Vec<String> = messages_of(&corpus)
        .iter()
        .map(|(_, id)| format!("AR {id} rejected on request"))
        .collect();
    assert_eq!(lines, wanted);
    let stderr = text(&sent.stderr);
    assert!(
        summary(&stderr).starts_with("sent 13, AA/CA 0, AE 0, AR 13, errors 0, "),
        "{stderr}"
    );
    assert!(listener.stop().status.success());
}

#[test]
fn application_errors_are_counted_apart() {
    let listener = Listener::start(&["--ack", "AE", "--quiet"]);
    let corpus = corpus_file();
    let sent = send(&["--to", &listener.addr, "--quiet", corpus.to_str().unwrap()]);
    assert_eq!(sent.status.code(), Some(1));
    assert_eq!(text(&sent.stdout), "");
    let stderr = text(&sent.stderr);
    assert!(
        summary(&stderr).starts_with("sent 13, AA/CA 0, AE 13, AR 0, errors 0, "),
        "{stderr}"
    );
    listener.stop();
}

#[test]
fn dropped_messages_are_errors_and_the_rest_get_through() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("received.hl7");
    let listener = Listener::start(&["--drop-every", "4", "--out", out.to_str().unwrap()]);
    let corpus = corpus_file();
    let expected = messages_of(&corpus);
    let sent = send(&["--to", &listener.addr, corpus.to_str().unwrap()]);
    assert_eq!(sent.status.code(), Some(1));
    let stdout = text(&sent.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 13);
    for (i, ((_, id), line)) in expected.iter().zip(&lines).enumerate() {
        if (i + 1) % 4 == 0 {
            let prefix = format!("ERROR {id} {} closed the connection", listener.addr);
            assert!(line.starts_with(&prefix), "{line}");
        } else {
            assert_eq!(*line, format!("AA {id}"));
        }
    }
    let stderr = text(&sent.stderr);
    assert!(
        summary(&stderr).starts_with("sent 13, AA/CA 10, AE 0, AR 0, errors 3, "),
        "{stderr}"
    );
    let kept = records(&out);
    let answered: Vec<Vec<u8>> = expected
        .into_iter()
        .enumerate()
        .filter(|(i, _)| (i + 1) % 4 != 0)
        .map(|(_, (bytes, _))| bytes)
        .collect();
    assert_eq!(kept, answered);
    let stopped = listener.stop();
    // One connection, plus a new one after each drop.
    assert!(
        stopped
            .stderr
            .contains("received 13, answered 10, dropped 3, connections 4,"),
        "{}",
        stopped.stderr
    );
}

/// MSH-10 of a record, split into the original control id and the copy number.
fn numbered_id(record: &[u8]) -> (String, u64) {
    let msg = hl7v2::parse(record).unwrap();
    let id = msg.control_id().map(|c| c.into_owned()).unwrap_or_default();
    let (base, n) = id.rsplit_once('-').unwrap();
    (base.to_string(), n.parse().unwrap())
}

#[test]
fn count_cycles_the_input_with_unique_control_ids() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("received.hl7");
    let listener = Listener::start(&["--out", out.to_str().unwrap(), "--quiet"]);
    let corpus = corpus_file();
    let expected = messages_of(&corpus);

    let sent = send(&[
        "--to",
        &listener.addr,
        "--count",
        "15",
        corpus.to_str().unwrap(),
    ]);
    assert!(sent.status.success(), "{}", text(&sent.stderr));
    let lines: Vec<String> = text(&sent.stdout).lines().map(str::to_string).collect();
    let wanted: Vec<String> = (1..=15)
        .map(|n| format!("AA {}-{n}", expected[(n - 1) % expected.len()].1))
        .collect();
    assert_eq!(lines, wanted);

    // Each record is its original message with `-n` appended to MSH-10, nothing else changed.
    for record in records(&out) {
        let (base, n) = numbered_id(&record);
        let (original, id) = &expected[(n as usize - 1) % expected.len()];
        assert_eq!(&base, id);
        let suffix = format!("-{n}");
        let text = String::from_utf8(record.clone()).unwrap();
        let field = format!("|{base}{suffix}|");
        assert_eq!(
            text.replacen(&field, &format!("|{base}|"), 1).into_bytes(),
            *original,
            "copy {n}"
        );
    }
    listener.stop();
}

#[test]
fn connections_share_the_messages_and_keep_order_per_connection() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("received.hl7");
    let listener = Listener::start(&["--out", out.to_str().unwrap()]);
    let corpus = corpus_file();
    let expected = messages_of(&corpus);

    let sent = send(&[
        "--to",
        &listener.addr,
        "--count",
        "30",
        "--connections",
        "3",
        "--rate",
        "2000",
        "--quiet",
        corpus.to_str().unwrap(),
    ]);
    let stderr = text(&sent.stderr);
    assert!(sent.status.success(), "{stderr}");
    assert_eq!(text(&sent.stdout), "");
    assert!(
        summary(&stderr).starts_with("sent 30, AA/CA 30, AE 0, AR 0, errors 0, "),
        "{stderr}"
    );

    let numbers: Vec<u64> = records(&out).iter().map(|r| numbered_id(r).1).collect();
    let mut sorted = numbers.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (1..=30).collect::<Vec<u64>>());
    // Message n went to connection (n - 1) mod 3, and each connection sends in order.
    for connection in 0..3 {
        let on_it: Vec<u64> = numbers
            .iter()
            .copied()
            .filter(|n| (n - 1) % 3 == connection)
            .collect();
        let mut in_order = on_it.clone();
        in_order.sort_unstable();
        assert_eq!(on_it, in_order, "connection {connection}");
    }
    for (n, record) in numbers.iter().zip(records(&out)) {
        let (base, _) = numbered_id(&record);
        assert_eq!(base, expected[(*n as usize - 1) % expected.len()].1);
    }
    let stopped = listener.stop();
    assert!(
        stopped
            .stderr
            .contains("received 30, answered 30, dropped 0, connections 3,"),
        "{}",
        stopped.stderr
    );
}

#[test]
fn standard_input_and_bad_lines() {
    let listener = Listener::start(&["--quiet"]);
    let mut child = Command::new(BIN)
        .args(["send", "--to", &listener.addr, "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"hello\nMSH|^~\\&|A|B|C|D|20240101||ADT^A01|X1|P|2.5\nPID|1\n")
        .unwrap();
    let sent = child.wait_with_output().unwrap();
    assert_eq!(sent.status.code(), Some(1));
    assert_eq!(text(&sent.stdout), "AA X1\n");
    let stderr = text(&sent.stderr);
    assert!(stderr.starts_with("<stdin>: line 1: "), "{stderr}");
    assert!(
        summary(&stderr).starts_with("sent 1, AA/CA 1, AE 0, AR 0, errors 0, "),
        "{stderr}"
    );
    assert!(
        summary(&stderr).ends_with(", not sent (invalid input) 1"),
        "{stderr}"
    );
    listener.stop();
}

#[test]
fn no_listener_is_one_clear_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let to = format!("127.0.0.1:{port}");
    let sent = send(&["--to", &to, corpus_file().to_str().unwrap()]);
    assert_eq!(sent.status.code(), Some(2));
    assert_eq!(text(&sent.stdout), "");
    let stderr = text(&sent.stderr);
    assert!(
        stderr.starts_with(&format!("causeway: cannot connect to {to}: ")),
        "{stderr}"
    );
    // The reason once, not again as the error's cause.
    assert_eq!(stderr.matches("refused").count(), 1, "{stderr}");
}

#[test]
fn tls_end_to_end_and_tls_needs_a_ca() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Causeway test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap())
        .unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let ca_file = write("ca.pem", &ca.pem());
    let cert_file = write("server.pem", &cert.pem());
    let key_file = write("server.key", &key.serialize_pem());

    let listener = Listener::start(&["--tls-cert", &cert_file, "--tls-key", &key_file, "--quiet"]);
    let corpus = corpus_file();
    let sent = send(&[
        "--to",
        &listener.addr,
        "--ca",
        &ca_file,
        "--server-name",
        "localhost",
        "--quiet",
        corpus.to_str().unwrap(),
    ]);
    let stderr = text(&sent.stderr);
    assert!(sent.status.success(), "{stderr}");
    assert!(
        summary(&stderr).starts_with("sent 13, AA/CA 13, "),
        "{stderr}"
    );

    let refused = send(&["--to", &listener.addr, "--tls", corpus.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(2));
    assert_eq!(
        text(&refused.stderr),
        "causeway: --tls needs --ca FILE: no trust roots are built in\n"
    );
    let stopped = listener.stop();
    assert!(
        stopped
            .stderr
            .contains("received 13, answered 13, dropped 0, connections 1,"),
        "{}",
        stopped.stderr
    );
}

/// Messages in enhanced mode, one per MSH-15 value, in one file.
fn enhanced_file(dir: &Path) -> PathBuf {
    let path = dir.join("enhanced.hl7");
    let text: String = [("N1", "NE"), ("E1", "ER"), ("A1", "AL"), ("S1", "SU")]
        .iter()
        .map(|(id, accept)| {
            format!(
                "MSH|^~\\&|APP|FAC|RCV|RFAC|20240101120000||ADT^A08^ADT_A01|{id}|P|2.5.1|||{accept}|NE\r\
                 PID|1||77^^^HOSP^MR||DOE^JANE\r"
            )
        })
        .collect();
    std::fs::write(&path, text).unwrap();
    path
}

/// MSH-15 is honoured at both ends: `listen` answers only what it asks for, `send` waits only
/// for what it asks for (NE: nothing; ER: silence is the acceptance; SU: silence is the
/// refusal), and a message that asked for no ACK does not fail the run.
#[test]
fn msh15_is_honoured_by_send_and_listen() {
    let dir = tempfile::tempdir().unwrap();
    let file = enhanced_file(dir.path());
    // A real sender's file with MSH-15 NE as well.
    let corpus_ne = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/corpus/fhir-converter/SampleData/Hl7v2/ADT-A40-02.hl7");

    let listener = Listener::start(&[]);
    let args = [
        "--to",
        &listener.addr,
        "--timeout",
        "300ms",
        file.to_str().unwrap(),
        corpus_ne.to_str().unwrap(),
    ];
    let sent = send(&args);
    let stderr = text(&sent.stderr);
    assert!(sent.status.success(), "{stderr}");
    let lines: Vec<String> = text(&sent.stdout).lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 5, "{lines:?}");
    assert_eq!(lines[0], "SENT N1 (MSH-15 NE: no ACK asked)");
    assert!(
        lines[1].starts_with("SENT E1 (MSH-15 ER: no error reported within "),
        "{}",
        lines[1]
    );
    assert_eq!(lines[2..4], ["AA A1", "AA S1"]);
    assert_eq!(lines[4], "SENT 8919-40 (MSH-15 NE: no ACK asked)");
    assert!(
        summary(&stderr).starts_with("sent 5, AA/CA 2, AE 0, AR 0, errors 0, "),
        "{stderr}"
    );
    assert!(
        summary(&stderr).ends_with(", no ACK as MSH-15 asked 3"),
        "{stderr}"
    );
    let stopped = listener.stop();
    let outcomes: Vec<&str> = stopped
        .stdout
        .lines()
        .map(|l| l.split(" -> ").nth(1).unwrap())
        .collect();
    assert_eq!(
        outcomes,
        [
            "AA not sent (MSH-15 NE)",
            "AA not sent (MSH-15 ER)",
            "AA",
            "AA",
            "AA not sent (MSH-15 NE)"
        ]
    );

    // A receiver that refuses everything: ER's refusal comes back, SU's silence is a failure.
    let listener = Listener::start(&["--ack", "AR"]);
    let sent = send(&[
        "--to",
        &listener.addr,
        "--timeout",
        "300ms",
        file.to_str().unwrap(),
    ]);
    assert_eq!(sent.status.code(), Some(1));
    let lines: Vec<String> = text(&sent.stdout).lines().map(str::to_string).collect();
    assert_eq!(lines[0], "SENT N1 (MSH-15 NE: no ACK asked)");
    assert_eq!(
        lines[1..3],
        ["AR E1 rejected on request", "AR A1 rejected on request"]
    );
    assert!(
        lines[3].starts_with("ERROR S1 no ACK within ")
            && lines[3].ends_with("MSH-15 SU asks for one only on success, so it was not accepted"),
        "{}",
        lines[3]
    );
    let stderr = text(&sent.stderr);
    assert!(
        summary(&stderr).starts_with("sent 4, AA/CA 0, AE 0, AR 2, errors 1, "),
        "{stderr}"
    );
    listener.stop();
}
