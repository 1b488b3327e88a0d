//! Bad input against `causeway serve`: each case is sent while a well-behaved client keeps
//! using the same listener, and after each case that client still gets AA, both on the
//! connection it kept open and on a new one.
//!
//! Cases (config: `max_frame = "64KiB"`, `read_timeout = "2s"`, processing ids `["P"]`):
//!
//! | case                              | expected                                        |
//! |-----------------------------------|-------------------------------------------------|
//! | frame over `max_frame`            | AR (ERR-3 207) naming the limit, then closed    |
//! | garbage bytes before a frame      | the frame is answered AA                        |
//! | half a frame, then close          | nothing stored, nothing answered                |
//! | one byte a second                 | closed after `read_timeout`, others unaffected  |
//! | no MSH segment                    | AR, ERR-3 100, stored as rejected               |
//! | invalid MSH-2                     | AR, ERR-3 102, stored as rejected               |
//! | processing id T where P is asked  | AR, ERR-3 202, stored as rejected               |
//! | truncated TLS handshake           | that connection dropped; TLS clients get AA     |
//! | plain MLLP on the TLS listener    | dropped, logged as not speaking TLS             |
//!
//! The table of what each case got is printed (`--nocapture`) and written to
//! `target/bad-input-report.txt`.

mod support;

use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use causeway_store::MessageState;
use support::{
    Ack, CR, FS, Mllp, Server, VT, adt, report_path, stored, stored_payloads, toml_path,
    write_config,
};

/// `read_timeout` of both listeners in the config below.
const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// `max_frame` of the plain listener.
const MAX_FRAME: usize = 64 * 1024;

/// Hang guard for one reply.
const ACK_WAIT: Duration = Duration::from_secs(30);

/// A connection that is never closed by the server would still be open after this; the
/// read timeout must have closed it long before (a hang guard, not a speed check: without
/// the read timeout, the trickling sender would need minutes to finish its message and the
/// idle timeout is 5 minutes).
const CLOSE_LIMIT: Duration = Duration::from_secs(20);

type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// The well-behaved clients: one plain and one TLS connection kept open throughout.
struct Good {
    plain_addr: SocketAddr,
    tls_addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    plain: Mllp<TcpStream>,
    secure: Mllp<TlsStream>,
    sent: usize,
}

impl Good {
    fn tls_connect(addr: SocketAddr, config: &Arc<rustls::ClientConfig>) -> Mllp<TlsStream> {
        let tcp = TcpStream::connect_timeout(&addr, ACK_WAIT).unwrap();
        tcp.set_read_timeout(Some(ACK_WAIT)).unwrap();
        tcp.set_write_timeout(Some(ACK_WAIT)).unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let conn = rustls::ClientConnection::new(config.clone(), name).unwrap();
        Mllp::new(rustls::StreamOwned::new(conn, tcp))
    }

    fn next_id(&mut self) -> String {
        self.sent += 1;
        format!("GOOD-{}", self.sent)
    }

    /// A normal message on each kept connection and on a new plain and a new TLS
    /// connection: all four must get AA for their own control id.
    fn check(&mut self, after: &str) {
        let mut answers = Vec::new();
        let id = self.next_id();
        answers.push((id.clone(), self.plain.send(&adt(&id, "P", 0))));
        let id = self.next_id();
        answers.push((id.clone(), self.secure.send(&adt(&id, "P", 0))));
        let id = self.next_id();
        let mut fresh = Mllp::connect(self.plain_addr, ACK_WAIT).unwrap();
        answers.push((id.clone(), fresh.send(&adt(&id, "P", 0))));
        let id = self.next_id();
        let mut fresh = Good::tls_connect(self.tls_addr, &self.tls);
        answers.push((id.clone(), fresh.send(&adt(&id, "P", 0))));
        for (id, reply) in answers {
            let reply = reply.unwrap_or_else(|e| panic!("after {after}: {id} got no ACK: {e}"));
            let ack = Ack::parse(&reply);
            assert_eq!(
                (ack.code.as_str(), ack.control_id.as_str()),
                ("AA", id.as_str()),
                "after {after}: {ack:?}"
            );
        }
    }
}

/// How an answer reads in the table.
fn describe(ack: &Ack) -> String {
    let mut s = ack.code.clone();
    if let Some(code) = &ack.err3 {
        s.push_str(&format!(" ERR-3 {code}"));
    }
    if !ack.text.is_empty() {
        s.push_str(&format!(" \"{}\"", ack.text));
    }
    s
}

/// Test certificates: a CA and a `localhost` server certificate it signed.
struct Certs {
    ca_der: rustls::pki_types::CertificateDer<'static>,
    cert_pem: String,
    key_pem: String,
}

fn certs() -> Certs {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Causeway bad-input test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap())
        .unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    Certs {
        ca_der: ca.der().clone(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

fn tls_client_config(ca: rustls::pki_types::CertificateDer<'static>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// Waits for the server to close `stream`; returns how long that took, or `None` when it
/// was still open after [`CLOSE_LIMIT`].
fn wait_closed(stream: &mut TcpStream, since: Instant) -> Option<Duration> {
    stream.set_read_timeout(Some(CLOSE_LIMIT)).unwrap();
    let mut m = Mllp::new(stream);
    m.is_closed().then(|| since.elapsed())
}

#[test]
fn bad_input_is_answered_or_dropped_and_never_stops_the_listener() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let certs = certs();
    let cert_file = dir.path().join("server.pem");
    let key_file = dir.path().join("server.key");
    std::fs::write(&cert_file, &certs.cert_pem).unwrap();
    std::fs::write(&key_file, &certs.key_pem).unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            r#"[server]
data_dir = {data}
log_format = "json"

[[channel]]
name = "plain"
source = {{ type = "mllp", listen = "127.0.0.1:0", max_frame = "64KiB", read_timeout = "2s" }}
accept = {{ processing_ids = ["P"] }}

[[channel]]
name = "secure"
source = {{ type = "mllp", listen = "127.0.0.1:0", read_timeout = "2s", tls = {{ cert = {cert}, key = {key} }} }}
"#,
            data = toml_path(&data_dir),
            cert = toml_path(&cert_file),
            key = toml_path(&key_file),
        ),
    );
    let server = Server::start(&config);
    let plain_addr = server.addr("plain");
    let tls_addr = server.addr("secure");
    let tls = tls_client_config(certs.ca_der.clone());
    let mut good = Good {
        plain_addr,
        tls_addr,
        tls: tls.clone(),
        plain: Mllp::connect(plain_addr, ACK_WAIT).unwrap(),
        secure: Good::tls_connect(tls_addr, &tls),
        sent: 0,
    };
    good.check("start");
    let mut table: Vec<(&str, String)> = Vec::new();

    // 1. A frame over max_frame: refused with AR as soon as the limit is passed, then closed.
    let big = adt("BIG-1", "P", MAX_FRAME + 36 * 1024);
    let mut m = Mllp::connect(plain_addr, ACK_WAIT).unwrap();
    // The server may close while the tail is still being written: that is the point.
    let _ = m.write_message(&big);
    let reply = m
        .read_reply()
        .unwrap_or_else(|e| panic!("oversized frame: no NAK: {e}"));
    let ack = Ack::parse(&reply);
    assert_eq!(ack.code, "AR", "{ack:?}");
    assert_eq!(ack.control_id, "BIG-1", "{ack:?}");
    assert_eq!(ack.err3.as_deref(), Some("207"), "{ack:?}");
    assert!(
        ack.text.contains(&MAX_FRAME.to_string()),
        "the NAK names the limit: {ack:?}"
    );
    assert!(m.is_closed(), "connection closed after the oversized frame");
    table.push((
        "frame of 100 KiB over max_frame 64 KiB",
        format!("{}, then connection closed", describe(&ack)),
    ));
    good.check("oversized frame");

    // 2. Garbage before a valid frame: skipped, the frame is answered.
    let mut m = Mllp::connect(plain_addr, ACK_WAIT).unwrap();
    m.stream
        .write_all(b"\x00\xffGARBAGE before the frame\r\n")
        .unwrap();
    let ack = Ack::parse(&m.send(&adt("GARB-1", "P", 0)).unwrap());
    assert_eq!(
        (ack.code.as_str(), ack.control_id.as_str()),
        ("AA", "GARB-1")
    );
    table.push(("garbage bytes, then a valid frame", describe(&ack)));
    good.check("garbage");

    // 3. Half a frame, then the sender closes: nothing answered, nothing stored.
    let half = adt("HALF-1", "P", 0);
    let mut tcp = TcpStream::connect(plain_addr).unwrap();
    tcp.write_all(&[VT]).unwrap();
    tcp.write_all(&half[..half.len() / 2]).unwrap();
    tcp.shutdown(Shutdown::Write).unwrap();
    let mut m = Mllp::new(tcp);
    m.stream.set_read_timeout(Some(ACK_WAIT)).unwrap();
    let answer = m.read_reply();
    assert!(answer.is_err(), "no answer to half a frame: {answer:?}");
    table.push((
        "half a frame, then the sender closes",
        "no answer; connection closed".to_string(),
    ));
    good.check("half frame");

    // 4. A sender that trickles one byte a second: closed after read_timeout, while the
    //    well-behaved clients are served.
    let trickle = adt("TRICKLE-1", "P", 0);
    let mut tcp = TcpStream::connect(plain_addr).unwrap();
    let mut watcher = tcp.try_clone().unwrap();
    let started = Instant::now();
    let trickler = std::thread::spawn(move || {
        let mut frame = vec![VT];
        frame.extend_from_slice(&trickle);
        frame.extend_from_slice(&[FS, CR]);
        let mut written = 0;
        for byte in frame {
            if tcp.write_all(&[byte]).is_err() {
                break;
            }
            written += 1;
            std::thread::sleep(Duration::from_secs(1));
            if started.elapsed() > CLOSE_LIMIT {
                break;
            }
        }
        written
    });
    // Others are served while the trickle is in progress.
    good.check("the start of a trickle");
    let closed_after = wait_closed(&mut watcher, started);
    let written = trickler.join().unwrap();
    let closed_after =
        closed_after.unwrap_or_else(|| panic!("the trickling connection was never closed"));
    assert!(
        closed_after >= READ_TIMEOUT - Duration::from_millis(100),
        "closed after {closed_after:?}, before the read timeout"
    );
    table.push((
        "one byte a second (read_timeout 2s)",
        format!(
            "no answer; closed after {:.1} s ({written} bytes sent); other clients answered AA meanwhile",
            closed_after.as_secs_f64()
        ),
    ));
    good.check("trickle");

    // 5. to 7. Messages the channel refuses: AR with the ERR-3 code of HL7 table 0357.
    let refusals: [(&str, Vec<u8>, &str, &str); 3] = [
        (
            "no MSH segment",
            b"PID|1||NOMSH-1^^^TESTHOSP^MR||TEST^PATIENT\rPV1|1|I\r".to_vec(),
            "",
            "100",
        ),
        (
            "invalid MSH-2 (a letter as delimiter)",
            b"MSH|^~A&|CWTEST|LOAD|CAUSEWAY|TEST|20240101120000||ADT^A01|BADMSH2-1|P|2.5.1\rPID|1\r"
                .to_vec(),
            "BADMSH2-1",
            "102",
        ),
        (
            "processing id T where only P is accepted",
            adt("PROC-1", "T", 0),
            "PROC-1",
            "202",
        ),
    ];
    let mut refused_payloads = Vec::new();
    for (case, payload, control_id, err3) in refusals {
        let mut m = Mllp::connect(plain_addr, ACK_WAIT).unwrap();
        let ack = Ack::parse(&m.send(&payload).unwrap());
        assert_eq!(ack.code, "AR", "{case}: {ack:?}");
        assert_eq!(ack.control_id, control_id, "{case}: {ack:?}");
        assert_eq!(ack.err3.as_deref(), Some(err3), "{case}: {ack:?}");
        // The connection stays usable after a refusal.
        let ack_next = Ack::parse(&m.send(&adt(&format!("AFTER-{err3}"), "P", 0)).unwrap());
        assert_eq!(ack_next.code, "AA", "{case}: next message: {ack_next:?}");
        table.push((case, describe(&ack)));
        refused_payloads.push((case, payload));
        good.check(case);
    }

    // 8. A TLS handshake that stops half-way: that connection is dropped, TLS clients go on.
    let mut hello = Vec::new();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut client = rustls::ClientConnection::new(tls.clone(), name).unwrap();
    client.write_tls(&mut hello).unwrap();
    assert!(hello.len() > 10, "a ClientHello was produced");
    let mut tcp = TcpStream::connect(tls_addr).unwrap();
    let started = Instant::now();
    tcp.write_all(&hello[..hello.len() / 2]).unwrap();
    good.check("the start of a truncated TLS handshake");
    let closed_after = wait_closed(&mut tcp, started)
        .unwrap_or_else(|| panic!("the truncated TLS handshake was never dropped"));
    table.push((
        "TLS handshake cut half-way (ClientHello half sent)",
        format!(
            "no answer; connection dropped after {:.1} s; TLS clients answered AA",
            closed_after.as_secs_f64()
        ),
    ));
    good.check("truncated TLS handshake");

    // 9. A sender configured for plain MLLP on the TLS listener: dropped, and the log says why.
    let mut tcp = TcpStream::connect(tls_addr).unwrap();
    let started = Instant::now();
    let mut frame = vec![VT];
    frame.extend_from_slice(&adt("PLAIN-ON-TLS-1", "P", 0));
    frame.extend_from_slice(&[FS, CR]);
    tcp.write_all(&frame).unwrap();
    // The listener may answer with a TLS alert record before closing: read to the end.
    tcp.set_read_timeout(Some(CLOSE_LIMIT)).unwrap();
    let mut answer = Vec::new();
    std::io::Read::read_to_end(&mut tcp, &mut answer)
        .expect("the plain frame on the TLS listener is dropped (end of stream)");
    assert!(
        !answer.contains(&VT),
        "no MLLP answer in plain text: {answer:?}"
    );
    table.push((
        "plain MLLP frame sent to the TLS listener",
        format!(
            "no HL7 answer ({} bytes of TLS alert); connection dropped after {:.1} s; logged as not speaking TLS",
            answer.len(),
            started.elapsed().as_secs_f64()
        ),
    ));
    good.check("plain MLLP on the TLS listener");

    let (status, log) = server.stop();
    assert!(status.success(), "serve exited with {status}:\n{log}");
    assert!(
        log.contains("the peer does not speak TLS (a plain MLLP sender on this TLS listener?)"),
        "the plain sender is named in the log:\n{log}"
    );
    assert!(!log.contains("PLAIN-ON-TLS-1"), "no payload in the log");

    // What was stored.
    let rows = stored(&data_dir, "plain");
    let state_of = |id: &str| -> Vec<MessageState> {
        rows.iter()
            .filter(|r| r.control_id == id)
            .map(|r| r.state)
            .collect()
    };
    assert_eq!(state_of("GARB-1"), vec![MessageState::Accepted]);
    assert_eq!(state_of("HALF-1"), vec![], "half a frame is not stored");
    assert_eq!(
        state_of("TRICKLE-1"),
        vec![],
        "a timed-out frame is not stored"
    );
    assert_eq!(state_of("PROC-1"), vec![MessageState::Rejected]);
    let big_rows = state_of("BIG-1");
    // Messages that do not parse are stored with what of MSH could be read (nothing, for
    // the one without MSH): find them by their bytes.
    let all: Vec<_> = rows.iter().map(|r| r.id).collect();
    let payloads = stored_payloads(&data_dir, &all);
    for (case, payload) in &refused_payloads[..2] {
        let found: Vec<_> = rows
            .iter()
            .filter(|r| payloads.get(&r.id) == Some(payload))
            .map(|r| r.state)
            .collect();
        assert_eq!(
            found,
            vec![MessageState::Rejected],
            "{case}: stored once as rejected"
        );
    }
    let good_plain = rows
        .iter()
        .filter(|r| r.control_id.starts_with("GOOD-") && r.state == MessageState::Accepted)
        .count();
    let good_tls = stored(&data_dir, "secure")
        .iter()
        .filter(|r| r.control_id.starts_with("GOOD-") && r.state == MessageState::Accepted)
        .count();
    assert_eq!(
        good_plain + good_tls,
        good.sent,
        "every good message stored"
    );

    let mut report = String::from("bad input: what each case got\n");
    report.push_str(&format!("| {:<52} | answer\n", "case"));
    report.push_str(&format!("|{}|{}\n", "-".repeat(54), "-".repeat(60)));
    for (case, answer) in &table {
        report.push_str(&format!("| {case:<52} | {answer}\n"));
    }
    report.push_str(&format!(
        "stored: oversized frame {}, half frame none, trickle none, no-MSH / bad MSH-2 / processing id as rejected; \
         {} good messages on {} checks, all AA and stored\n",
        if big_rows.is_empty() {
            "not stored".to_string()
        } else {
            format!("{big_rows:?}")
        },
        good.sent,
        good.sent / 4,
    ));
    println!("{report}");
    std::fs::write(report_path("bad-input-report.txt"), &report).unwrap();
}
