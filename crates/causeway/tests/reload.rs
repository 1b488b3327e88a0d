//! Configuration reload on a running `causeway serve`, through `POST /api/config/reload`:
//! an invalid file is refused with every problem and the running configuration keeps
//! serving; a valid one restarts the channels from it (a new channel takes messages, the
//! store and the signed-in session carry over); the data directory cannot move.

mod support;

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{Mllp, Server, adt, toml_path, write_config};

const LIMIT: Duration = Duration::from_secs(30);

fn config(data: &str, extra: &str) -> String {
    format!(
        r#"
[server]
data_dir = {data}
http = "127.0.0.1:0"
log_format = "json"

[[channel]]
name = "first"
source = {{ type = "mllp", listen = "127.0.0.1:0" }}
{extra}"#
    )
}

fn aa(addr: std::net::SocketAddr, control_id: &str) {
    let mut mllp = Mllp::connect(addr, LIMIT).expect("connect");
    let ack = mllp.send(&adt(control_id, "P", 0)).expect("ack");
    assert!(
        String::from_utf8_lossy(&ack).contains("MSA|AA|"),
        "{control_id}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_file_replaces_the_running_configuration_and_an_invalid_one_does_not() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().expect("tempdir");
    let data = toml_path(&dir.path().join("data"));
    let path = write_config(dir.path(), &config(&data, ""));
    let mut server = Server::start(&path);
    aa(server.addr("first"), "RELOAD-1");
    let password = server.admin_password.clone().expect("admin password");
    let http = reqwest::Client::new();
    let base = format!("http://{}", server.http.expect("http"));
    let login = http
        .post(format!("{base}/auth/login"))
        .json(&json!({"username": "admin", "password": password}))
        .send()
        .await
        .expect("login");
    let cookie = login
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .expect("cookie")
        .to_string();
    let reload = |base: String| {
        let http = http.clone();
        let cookie = cookie.clone();
        async move {
            let r = http
                .post(format!("{base}/api/config/reload"))
                .header("cookie", cookie)
                .send()
                .await
                .expect("reload");
            let status = r.status();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };

    // Invalid: two problems, both reported; nothing changes.
    std::fs::write(
        &path,
        config(
            &data,
            "[[channel]]\nname = \"second\"\nsource = { type = \"mllp\", listen = \"127.0.0.1:0\", idle_timeout = \"soon\" }\n\
             [[channel.destination]]\nname = \"x\"\ntype = \"carrier-pigeon\"\n",
        ),
    )
    .unwrap();
    let (status, body) = reload(base.clone()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let problems = body["problems"].as_array().expect("problems");
    assert_eq!(problems.len(), 2, "{body}");
    assert!(
        problems
            .iter()
            .any(|p| p.as_str().unwrap().contains("idle_timeout")),
        "{body}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.as_str().unwrap().contains("carrier-pigeon")),
        "{body}"
    );
    aa(server.addr("first"), "RELOAD-2");

    // The data directory cannot move under a running store.
    std::fs::write(&path, config(&toml_path(&dir.path().join("elsewhere")), "")).unwrap();
    let (status, body) = reload(base.clone()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("data_dir"),
        "{body}"
    );

    // Valid: a second channel appears; the first keeps its messages.
    std::fs::write(
        &path,
        config(
            &data,
            "[[channel]]\nname = \"second\"\nsource = { type = \"mllp\", listen = \"127.0.0.1:0\" }\n",
        ),
    )
    .unwrap();
    let (status, body) = reload(base.clone()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["channels"], 2);
    server.wait_ready(2);
    aa(server.addr("second"), "RELOAD-3");
    aa(server.addr("first"), "RELOAD-4");
    // The session signed in before the reload still works (sessions live in the store).
    let base = format!("http://{}", server.http.expect("http after reload"));
    let r = http
        .get(format!("{base}/api/messages?channel=first"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("search");
    assert_eq!(r.status(), StatusCode::OK);
    let found: Value = r.json().await.expect("json");
    let text = found.to_string();
    for id in ["RELOAD-1", "RELOAD-2", "RELOAD-4"] {
        assert!(text.contains(id), "{id} in {text}");
    }
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
}
