//! `net` over real sockets: the MLLP client against the MLLP listener (and against raw tokio
//! sockets where a misbehaving peer is needed), plain and TLS, with test certificates made by
//! rcgen at run time.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use causeway_engine::net::client::{
    AckVerdict, Answer, ClientError, DEFAULT_CONNECT_TIMEOUT, MllpClient, accept_condition_of,
    check_ack, read_ack,
};
use causeway_engine::net::server::{self, Handler, Peer, Reply, ServerOptions, ServerStats};
use causeway_engine::net::tls;
use hl7v2::{AckCode, AckCondition, AckError, AckHeader, AckMode};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;

const ACK_TIMEOUT: Duration = Duration::from_secs(10);

fn message(control_id: &str) -> Vec<u8> {
    format!(
        "MSH|^~\\&|LAB|HOSP|EHR|CLINIC|20240101120000||ORU^R01^ORU_R01|{control_id}|P|2.5.1\r\
         PID|1||123^^^HOSP^MR||DOE^JANE\r\
         OBX|1|NM|GLU^Glucose||5.5|mmol/L\r"
    )
    .into_bytes()
}

/// The ACK a receiver would send: `code`, with an ERR for anything but an accept.
fn ack_for(payload: &[u8], code: AckCode, text: &str) -> Vec<u8> {
    let msg = hl7v2::parse(payload).expect("test messages parse");
    let errors = if code.is_accept() {
        Vec::new()
    } else {
        vec![AckError::new(207, text)]
    };
    let header = AckHeader {
        control_id: "ACK1",
        timestamp: "20240101120001",
    };
    hl7v2::build_ack(&msg, code, &errors, header)
}

fn control_id(payload: &[u8]) -> String {
    hl7v2::parse(payload)
        .ok()
        .and_then(|m| m.control_id().map(|c| c.into_owned()))
        .unwrap_or_default()
}

/// Answers by the control id: `AE…` with AE, `AR…` with AR, `OTHER…` with an ACK for
/// another control id, `DROP…` by closing, `HANG…` never; anything else with AA.
#[derive(Default)]
struct Scripted {
    seen: AtomicU64,
}

impl Handler for Scripted {
    async fn handle(&self, _peer: &Peer, payload: Bytes) -> Reply {
        self.seen.fetch_add(1, Ordering::SeqCst);
        let id = control_id(&payload);
        if id.starts_with("AE") {
            Reply::Ack(ack_for(&payload, AckCode::AE, "database busy"))
        } else if id.starts_with("AR") {
            Reply::Ack(ack_for(&payload, AckCode::AR, "unknown patient"))
        } else if id.starts_with("OTHER") {
            let moved = String::from_utf8(payload.to_vec())
                .unwrap()
                .replace(&id, "SOMEONE-ELSE");
            Reply::Ack(ack_for(moved.as_bytes(), AckCode::AA, ""))
        } else if id.starts_with("DROP") {
            Reply::Close
        } else if id.starts_with("HANG") {
            std::future::pending::<()>().await;
            unreachable!()
        } else {
            Reply::Ack(ack_for(&payload, AckCode::AA, ""))
        }
    }
}

/// A listener on an ephemeral port, stopped by the returned sender.
struct Running {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<ServerStats>,
}

impl Running {
    async fn stop(self) -> ServerStats {
        let _ = self.stop.send(());
        self.task.await.expect("listener task")
    }
}

async fn start<H: Handler>(handler: Arc<H>, options: ServerOptions) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server::run(listener, options, handler, async move {
        let _ = stopped.await;
    }));
    Running { addr, stop, task }
}

/// Test certificates on disk: a CA, a server certificate for localhost / 127.0.0.1 and a
/// client certificate signed by it, and a second CA with its own client certificate.
struct Pki {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
    other_ca: PathBuf,
    other_client_cert: PathBuf,
    other_client_key: PathBuf,
}

fn issuer(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

fn leaf(
    ca: &CertifiedIssuer<'static, KeyPair>,
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> (String, String) {
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(
        DnType::CommonName,
        names.first().copied().unwrap_or("client"),
    );
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, ca).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let ca = issuer("Causeway test CA");
    let other = issuer("Some other CA");
    let (server_cert, server_key) = leaf(
        &ca,
        &["localhost", "127.0.0.1"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (client_cert, client_key) = leaf(&ca, &["lab-client"], ExtendedKeyUsagePurpose::ClientAuth);
    let (other_cert, other_key) = leaf(&other, &["stranger"], ExtendedKeyUsagePurpose::ClientAuth);
    Pki {
        ca: write("ca.pem", &ca.pem()),
        server_cert: write("server.pem", &server_cert),
        server_key: write("server.key", &server_key),
        client_cert: write("client.pem", &client_cert),
        client_key: write("client.key", &client_key),
        other_ca: write("other-ca.pem", &other.pem()),
        other_client_cert: write("other-client.pem", &other_cert),
        other_client_key: write("other-client.key", &other_key),
        _dir: dir,
    }
}

#[tokio::test]
async fn plain_messages_are_acknowledged_on_one_connection() {
    let handler = Arc::new(Scripted::default());
    let server = start(handler.clone(), ServerOptions::default()).await;
    let mut client =
        MllpClient::connect(server.addr.to_string(), None, None, DEFAULT_CONNECT_TIMEOUT)
            .await
            .unwrap();
    for id in ["C1", "C2", "C3"] {
        let ack = client.send(&message(id), ACK_TIMEOUT).await.unwrap();
        assert_eq!(check_ack(id, &ack), AckVerdict::Accepted, "{id}");
        let fields = read_ack(&ack).unwrap();
        assert_eq!(
            (fields.code.as_str(), fields.control_id.as_str()),
            ("AA", id)
        );
    }
    assert_eq!(client.connections_opened(), 1);
    assert!(client.is_connected());
    let stats = server.stop().await;
    assert_eq!(stats.connections, 1);
    assert_eq!(stats.frames, 3);
    assert_eq!(handler.seen.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn verdicts_over_the_wire() {
    let server = start(Arc::new(Scripted::default()), ServerOptions::default()).await;
    let mut client =
        MllpClient::connect(server.addr.to_string(), None, None, DEFAULT_CONNECT_TIMEOUT)
            .await
            .unwrap();
    let cases = [
        ("OK1", AckVerdict::Accepted),
        ("AE1", AckVerdict::Error("database busy".into())),
        ("AR1", AckVerdict::Rejected("unknown patient".into())),
        ("OTHER1", AckVerdict::Mismatch),
        ("OK2", AckVerdict::Accepted),
    ];
    for (id, verdict) in cases {
        let ack = client.send(&message(id), ACK_TIMEOUT).await.unwrap();
        assert_eq!(check_ack(id, &ack), verdict, "{id}");
    }
    // Negative answers are answers: the connection stays up.
    assert_eq!(client.connections_opened(), 1);
    server.stop().await;
}

#[tokio::test]
async fn ack_timeout_drops_the_connection_and_the_next_send_reconnects() {
    let options = ServerOptions {
        // The hung handler never returns; shutdown must not wait for it long.
        shutdown_grace: Duration::from_millis(50),
        ..ServerOptions::default()
    };
    let server = start(Arc::new(Scripted::default()), options).await;
    let mut client =
        MllpClient::connect(server.addr.to_string(), None, None, DEFAULT_CONNECT_TIMEOUT)
            .await
            .unwrap();
    let err = client
        .send(&message("HANG1"), Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::AckTimeout { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!("no acknowledgement from {} within 200ms", server.addr)
    );
    assert!(!client.is_connected());
    let ack = client.send(&message("C2"), ACK_TIMEOUT).await.unwrap();
    assert_eq!(check_ack("C2", &ack), AckVerdict::Accepted);
    assert_eq!(client.connections_opened(), 2);
    let stats = server.stop().await;
    assert_eq!(stats.connections, 2);
}

#[tokio::test]
async fn close_without_ack_is_an_error_then_the_client_reconnects() {
    let server = start(Arc::new(Scripted::default()), ServerOptions::default()).await;
    let mut client =
        MllpClient::connect(server.addr.to_string(), None, None, DEFAULT_CONNECT_TIMEOUT)
            .await
            .unwrap();
    let err = client
        .send(&message("DROP1"), ACK_TIMEOUT)
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Closed { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!("{} closed the connection before acknowledging", server.addr)
    );
    assert!(!client.is_connected());
    let ack = client.send(&message("C2"), ACK_TIMEOUT).await.unwrap();
    assert_eq!(check_ack("C2", &ack), AckVerdict::Accepted);
    assert_eq!(client.connections_opened(), 2);
    server.stop().await;
}

/// A message in enhanced mode: MSH-15 is `accept`.
fn enhanced(control_id: &str, accept: &str) -> Vec<u8> {
    format!(
        "MSH|^~\\&|LAB|HOSP|EHR|CLINIC|20240101120000||ORU^R01^ORU_R01|{control_id}|P|2.5.1|||{accept}|NE\r\
         PID|1||123^^^HOSP^MR||DOE^JANE\r"
    )
    .into_bytes()
}

/// An enhanced-mode receiver: refuses (CR) control ids starting `BAD`, accepts (CA) the rest,
/// and answers only when MSH-15 asks for it, like `causeway serve`; or, when `ignores_msh15`,
/// answers every message, those sent under NE only after a pause, so that the reply reaches
/// the client after its next message was written.
struct Enhanced {
    ignores_msh15: bool,
}

impl Handler for Enhanced {
    async fn handle(&self, _peer: &Peer, payload: Bytes) -> Reply {
        let msg = hl7v2::parse(&payload).expect("test messages parse");
        let code = if control_id(&payload).starts_with("BAD") {
            AckCode::CR
        } else {
            AckCode::CA
        };
        if AckMode::of(&msg).accept_condition().wants(code.is_accept()) {
            return Reply::Ack(ack_for(&payload, code, "refused"));
        }
        if !self.ignores_msh15 {
            return Reply::Nothing;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        Reply::Ack(ack_for(&payload, code, "refused"))
    }
}

#[tokio::test]
async fn msh15_decides_what_send_as_asked_waits_for() {
    let options = ServerOptions {
        shutdown_grace: Duration::from_millis(50),
        ..ServerOptions::default()
    };
    let server = start(
        Arc::new(Enhanced {
            ignores_msh15: false,
        }),
        options,
    )
    .await;
    let mut client =
        MllpClient::connect(server.addr.to_string(), None, None, DEFAULT_CONNECT_TIMEOUT)
            .await
            .unwrap();
    let short = Duration::from_millis(200);
    let answer = |id: &str, accept: &str| (enhanced(id, accept), id.to_owned());

    // NE: written, nothing waited for, the connection kept.
    let (ne, id) = answer("N1", "NE");
    assert_eq!(accept_condition_of(&ne), AckCondition::Never);
    let started = tokio::time::Instant::now();
    assert_eq!(
        client.send_as_asked(&ne, &id, ACK_TIMEOUT).await.unwrap(),
        Answer::NotAsked
    );
    assert!(started.elapsed() < ACK_TIMEOUT / 2, "NE was waited for");
    assert!(client.is_connected());
    // AL (and original mode): the ACK, on the same connection.
    for (payload, id) in [answer("A1", "AL"), (message("O1"), "O1".to_owned())] {
        let Answer::Ack(ack) = client.send_as_asked(&payload, &id, short).await.unwrap() else {
            panic!("{id}: no ACK");
        };
        assert_eq!(check_ack(&id, &ack), AckVerdict::Accepted, "{id}");
    }
    assert_eq!(client.connections_opened(), 1);
    // ER: an error is answered; silence is the acceptance, and the connection is dropped.
    let (bad, id) = answer("BAD1", "ER");
    let Answer::Ack(ack) = client.send_as_asked(&bad, &id, short).await.unwrap() else {
        panic!("ER: the refusal was not read");
    };
    assert_eq!(read_ack(&ack).unwrap().code, "CR");
    let (ok, id) = answer("E1", "ER");
    assert_eq!(accept_condition_of(&ok), AckCondition::OnError);
    assert_eq!(
        client.send_as_asked(&ok, &id, short).await.unwrap(),
        Answer::NoErrorReported
    );
    assert!(!client.is_connected());
    // SU: the acceptance is answered; silence is the refusal.
    let (ok, id) = answer("S1", "SU");
    let Answer::Ack(ack) = client.send_as_asked(&ok, &id, short).await.unwrap() else {
        panic!("SU: the acceptance was not read");
    };
    assert_eq!(check_ack(&id, &ack), AckVerdict::Accepted);
    let (bad, id) = answer("BAD2", "SU");
    assert_eq!(
        client.send_as_asked(&bad, &id, short).await.unwrap(),
        Answer::NotAccepted
    );
    // An MSH-15 outside HL7 table 0155 is read as AL: the answer is waited for.
    let unknown = enhanced("BAD3", "XX");
    assert_eq!(accept_condition_of(&unknown), AckCondition::Always);
    let answer = client.send_as_asked(&unknown, "BAD3", short).await;
    assert!(matches!(answer, Ok(Answer::Ack(_))), "{answer:?}");
    server.stop().await;
}

#[tokio::test]
async fn replies_to_ne_messages_from_a_receiver_that_answers_anyway_are_discarded() {
    let server = start(
        Arc::new(Enhanced {
            ignores_msh15: true,
        }),
        ServerOptions::default(),
    )
    .await;
    let mut client =
        MllpClient::connect(server.addr.to_string(), None, None, DEFAULT_CONNECT_TIMEOUT)
            .await
            .unwrap();
    for round in 1..=3 {
        let ne = format!("N{round}");
        assert_eq!(
            client
                .send_as_asked(&enhanced(&ne, "NE"), &ne, ACK_TIMEOUT)
                .await
                .unwrap(),
            Answer::NotAsked
        );
        // Written at once: the receiver answers the NE message first, 100 ms later.
        let al = format!("A{round}");
        let Answer::Ack(ack) = client
            .send_as_asked(&enhanced(&al, "AL"), &al, ACK_TIMEOUT)
            .await
            .unwrap()
        else {
            panic!("no ACK for {al}");
        };
        assert_eq!(check_ack(&al, &ack), AckVerdict::Accepted, "{al}");
    }
    assert_eq!(client.connections_opened(), 1);
    let stats = server.stop().await;
    assert_eq!(stats.frames, 6);
}

#[tokio::test]
async fn connection_refused_is_a_connect_error() {
    // Bind then drop, so the port is known to have no listener.
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let err = MllpClient::connect(addr.to_string(), None, None, DEFAULT_CONNECT_TIMEOUT)
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Connect { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with(&format!("cannot connect to {addr}: ")),
        "{err}"
    );
}

/// A raw peer that answers one message per connection and then closes the connection,
/// telling the test after each close.
async fn ack_once_per_connection(listener: TcpListener, closed: tokio::sync::mpsc::Sender<()>) {
    loop {
        let Ok((mut socket, _)) = listener.accept().await else {
            return;
        };
        let mut buf = BytesMut::new();
        let mut decoder = mllp::Decoder::new();
        let payload = loop {
            if let Some(payload) = decoder.decode(&mut buf).unwrap() {
                break payload;
            }
            if socket.read_buf(&mut buf).await.unwrap() == 0 {
                return;
            }
        };
        let ack = mllp::frame(&ack_for(&payload, AckCode::AA, "")).unwrap();
        socket.write_all(&ack).await.unwrap();
        drop(socket);
        if closed.send(()).await.is_err() {
            return;
        }
    }
}

#[tokio::test]
async fn a_connection_the_peer_closed_while_idle_is_replaced_before_sending() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (closed_tx, mut closed) = tokio::sync::mpsc::channel(4);
    let peer = tokio::spawn(ack_once_per_connection(listener, closed_tx));
    let mut client = MllpClient::connect(addr.to_string(), None, None, DEFAULT_CONNECT_TIMEOUT)
        .await
        .unwrap();
    for id in ["C1", "C2", "C3"] {
        let ack = client.send(&message(id), ACK_TIMEOUT).await.unwrap();
        assert_eq!(check_ack(id, &ack), AckVerdict::Accepted, "{id}");
        closed.recv().await.unwrap();
    }
    assert_eq!(client.connections_opened(), 3);
    peer.abort();
}

#[tokio::test]
async fn an_oversized_frame_closes_only_its_connection() {
    let options = ServerOptions {
        max_frame_len: 1024,
        ..ServerOptions::default()
    };
    let server = start(Arc::new(Scripted::default()), options).await;
    let mut raw = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let mut big = vec![mllp::VT];
    big.extend(std::iter::repeat_n(b'A', 2048));
    raw.write_all(&big).await.unwrap();
    let mut rest = Vec::new();
    // The listener closes the connection; nothing is answered.
    raw.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());

    let mut client =
        MllpClient::connect(server.addr.to_string(), None, None, DEFAULT_CONNECT_TIMEOUT)
            .await
            .unwrap();
    let ack = client.send(&message("C1"), ACK_TIMEOUT).await.unwrap();
    assert_eq!(check_ack("C1", &ack), AckVerdict::Accepted);
    let stats = server.stop().await;
    assert_eq!(stats.bad_frames, 1);
    assert_eq!(stats.frames, 1);
}

#[tokio::test]
async fn a_reply_over_the_client_limit_is_a_frame_error() {
    let server = start(Arc::new(Scripted::default()), ServerOptions::default()).await;
    let mut client = MllpClient::new(server.addr.to_string(), None, None, DEFAULT_CONNECT_TIMEOUT)
        .unwrap()
        .with_max_frame_len(16);
    let err = client.send(&message("C1"), ACK_TIMEOUT).await.unwrap_err();
    assert!(matches!(err, ClientError::Frame { .. }), "{err}");
    assert!(!client.is_connected());
    server.stop().await;
}

/// Holds the first message until released, to show shutdown waits for it.
struct Held {
    started: Notify,
    release: Notify,
}

impl Handler for Held {
    async fn handle(&self, _peer: &Peer, payload: Bytes) -> Reply {
        self.started.notify_one();
        self.release.notified().await;
        Reply::Ack(ack_for(&payload, AckCode::AA, ""))
    }
}

#[tokio::test]
async fn shutdown_lets_the_message_in_flight_finish() {
    let handler = Arc::new(Held {
        started: Notify::new(),
        release: Notify::new(),
    });
    let server = start(handler.clone(), ServerOptions::default()).await;
    let addr = server.addr.to_string();
    let sending = tokio::spawn(async move {
        let mut client = MllpClient::connect(addr, None, None, DEFAULT_CONNECT_TIMEOUT)
            .await
            .unwrap();
        client.send(&message("C1"), ACK_TIMEOUT).await
    });
    handler.started.notified().await;
    let _ = server.stop.send(());
    handler.release.notify_one();
    let ack = sending.await.unwrap().unwrap();
    assert_eq!(check_ack("C1", &ack), AckVerdict::Accepted);
    let stats = server.task.await.unwrap();
    assert_eq!(stats.frames, 1);
}

fn tls_options(pki: &Pki, client_ca: Option<&PathBuf>) -> ServerOptions {
    ServerOptions {
        tls: Some(
            tls::server_config(
                &pki.server_cert,
                &pki.server_key,
                client_ca.map(|p| p.as_path()),
            )
            .unwrap(),
        ),
        ..ServerOptions::default()
    }
}

#[tokio::test]
async fn tls_round_trip_by_ip_and_by_name() {
    let pki = pki();
    let server = start(Arc::new(Scripted::default()), tls_options(&pki, None)).await;
    let config = tls::client_config(&pki.ca, None).unwrap();
    // The default server name is the host of the address: 127.0.0.1, in the certificate.
    let mut by_ip = MllpClient::connect(
        server.addr.to_string(),
        Some(config.clone()),
        None,
        DEFAULT_CONNECT_TIMEOUT,
    )
    .await
    .unwrap();
    let ack = by_ip.send(&message("T1"), ACK_TIMEOUT).await.unwrap();
    assert_eq!(check_ack("T1", &ack), AckVerdict::Accepted);
    let mut by_name = MllpClient::connect(
        server.addr.to_string(),
        Some(config),
        Some("localhost"),
        DEFAULT_CONNECT_TIMEOUT,
    )
    .await
    .unwrap();
    let ack = by_name.send(&message("T2"), ACK_TIMEOUT).await.unwrap();
    assert_eq!(check_ack("T2", &ack), AckVerdict::Accepted);
    let stats = server.stop().await;
    assert_eq!(
        (stats.connections, stats.frames, stats.tls_failures),
        (2, 2, 0)
    );
}

#[tokio::test]
async fn tls_refuses_an_untrusted_server_and_a_wrong_name() {
    let pki = pki();
    let server = start(Arc::new(Scripted::default()), tls_options(&pki, None)).await;
    let untrusting = tls::client_config(&pki.other_ca, None).unwrap();
    let err = MllpClient::connect(
        server.addr.to_string(),
        Some(untrusting),
        None,
        DEFAULT_CONNECT_TIMEOUT,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ClientError::Handshake { .. }), "{err}");

    let trusting = tls::client_config(&pki.ca, None).unwrap();
    let err = MllpClient::connect(
        server.addr.to_string(),
        Some(trusting),
        Some("lab.example.org"),
        DEFAULT_CONNECT_TIMEOUT,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ClientError::Handshake { .. }), "{err}");
    let stats = server.stop().await;
    assert_eq!((stats.frames, stats.tls_failures), (0, 2));
}

#[tokio::test]
async fn a_plain_sender_is_told_that_the_listener_expects_tls() {
    let pki = pki();
    let server = start(Arc::new(Scripted::default()), tls_options(&pki, None)).await;
    let mut plain =
        MllpClient::connect(server.addr.to_string(), None, None, DEFAULT_CONNECT_TIMEOUT)
            .await
            .unwrap();
    let err = plain.send(&message("P1"), ACK_TIMEOUT).await.unwrap_err();
    assert!(matches!(err, ClientError::ExpectsTls { .. }), "{err}");
    assert!(
        err.to_string().contains("it expects a TLS connection"),
        "{err}"
    );
    let stats = server.stop().await;
    assert_eq!((stats.frames, stats.tls_failures), (0, 1));
}

/// Connects and sends one message; the error from whichever step failed.
async fn connect_and_send(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> Result<Bytes, ClientError> {
    let mut client = MllpClient::connect(
        addr.to_string(),
        Some(config),
        Some("localhost"),
        DEFAULT_CONNECT_TIMEOUT,
    )
    .await?;
    client.send(&message("M1"), ACK_TIMEOUT).await
}

#[tokio::test]
async fn mutual_tls_accepts_a_trusted_client_and_refuses_others() {
    let pki = pki();
    let server = start(
        Arc::new(Scripted::default()),
        tls_options(&pki, Some(&pki.ca)),
    )
    .await;

    let trusted = tls::client_config(
        &pki.ca,
        Some((pki.client_cert.as_path(), pki.client_key.as_path())),
    )
    .unwrap();
    let ack = connect_and_send(server.addr, trusted).await.unwrap();
    assert_eq!(check_ack("M1", &ack), AckVerdict::Accepted);

    // With TLS 1.3 the client finishes its side of the handshake before the server has
    // judged the client certificate, so the refusal may surface at connect or at send.
    let anonymous = tls::client_config(&pki.ca, None).unwrap();
    assert!(connect_and_send(server.addr, anonymous).await.is_err());
    let stranger = tls::client_config(
        &pki.ca,
        Some((
            pki.other_client_cert.as_path(),
            pki.other_client_key.as_path(),
        )),
    )
    .unwrap();
    assert!(connect_and_send(server.addr, stranger).await.is_err());

    let stats = server.stop().await;
    assert_eq!(stats.frames, 1);
    // Every connection but the trusted one failed its handshake (a refused client may have
    // tried twice: a connection found dead before sending is replaced once).
    assert!(stats.tls_failures >= 2, "{stats:?}");
    assert_eq!(stats.tls_failures, stats.connections - 1, "{stats:?}");
}

#[test]
fn tls_files_that_do_not_belong_together_are_named() {
    let pki = pki();
    let err = tls::server_config(&pki.server_cert, &pki.client_key, None).unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "{} with {}: ",
            pki.server_cert.display(),
            pki.client_key.display()
        )),
        "{text}"
    );
    // A key file given where certificates are expected.
    let err = tls::client_config(&pki.server_key, None).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{}: no CERTIFICATE section found", pki.server_key.display())
    );
}
