//! The HTTP server over TLS (`[server] tls`), with certificates made by rcgen at run time:
//! an HTTPS client that trusts the test CA is served (the HTTP source answers with its ACK and
//! sees the client's address), a client that stalls in its handshake does not hold up the
//! others, and a plain-HTTP client gets no answer.

mod support;

use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use support::Harness;
use tokio::io::AsyncWriteExt;

fn pki(dir: &std::path::Path) -> (String, std::path::PathBuf) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Causeway test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();
    std::fs::write(dir.join("server.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("server-key.pem"), key.serialize_pem()).unwrap();
    let ca_pem = ca.pem();
    std::fs::write(dir.join("ca.pem"), &ca_pem).unwrap();
    (ca_pem, dir.join("ca.pem"))
}

const ADT: &str = "MSH|^~\\&|ADT|HOSP|CAUSEWAY|HUB|20240101120000||ADT^A01^ADT_A01|HTTPS-1|P|2.5.1\rPID|1||123^^^HOSP^MR||DOE^JANE\r";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_serves_trusting_clients_and_outlasts_stalled_handshakes() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca_pem, _) = pki(dir.path());
    let h = Harness::start_in(
        dir,
        r#"http = "127.0.0.1:0"
tls = { cert = "server.pem", key = "server-key.pem" }

[[channel]]
name = "posted"
source = { type = "http", path = "/hl7/in" }
"#,
    )
    .await;
    let addr = h.engine().http_addr().expect("http address");

    // A client that connects and never speaks TLS.
    let mut stalled = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stalled
        .write_all(&[0x16, 0x03])
        .await
        .expect("half a record");

    let root = reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("ca");
    let client = reqwest::Client::builder()
        .add_root_certificate(root)
        .resolve("localhost", addr)
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    let url = format!("https://localhost:{}/hl7/in", addr.port());
    let r = client
        .post(&url)
        .body(ADT)
        .send()
        .await
        .expect("https request");
    assert_eq!(r.status(), 200);
    let ack = r.text().await.expect("body");
    assert!(ack.contains("MSA|AA|HTTPS-1"), "{ack}");

    // The stored message records the client's address, as on plain HTTP.
    let found = h
        .store
        .search(causeway_store::SearchFilter {
            control_id: Some("HTTPS-1".into()),
            ..Default::default()
        })
        .await
        .expect("search");
    assert_eq!(found.len(), 1);
    assert!(
        found[0].peer.starts_with("http:127.0.0.1:"),
        "{}",
        found[0].peer
    );

    // Plain HTTP to the HTTPS port: no HTTP answer.
    let plain = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    assert!(
        plain
            .post(format!("http://{addr}/hl7/in"))
            .body(ADT)
            .send()
            .await
            .is_err(),
        "plain HTTP must not be served"
    );
    drop(stalled);
}
