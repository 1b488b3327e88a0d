//! Real receivers for alert notices: a webhook (axum on 127.0.0.1:0 collecting the JSON it is
//! POSTed, answering scripted statuses first) and an SMTP sink (a small tokio server speaking
//! enough SMTP for a client to deliver: 220, EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT),
//! collecting each message.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::eventually;

#[derive(Default)]
struct HookState {
    /// Statuses to answer, in order, before answering 200.
    statuses: Mutex<VecDeque<u16>>,
    /// Every POST body, answered 2xx or not.
    attempts: Mutex<Vec<serde_json::Value>>,
    /// The bodies answered 2xx.
    accepted: Mutex<Vec<serde_json::Value>>,
}

/// A webhook receiving alert notices.
pub struct AlertHook {
    pub addr: SocketAddr,
    state: Arc<HookState>,
    task: JoinHandle<()>,
}

async fn hook(State(state): State<Arc<HookState>>, body: Bytes) -> StatusCode {
    let value: serde_json::Value = serde_json::from_slice(&body).expect("a notice is JSON");
    state.attempts.lock().unwrap().push(value.clone());
    let status = state.statuses.lock().unwrap().pop_front().unwrap_or(200);
    if (200..300).contains(&status) {
        state.accepted.lock().unwrap().push(value);
    }
    StatusCode::from_u16(status).expect("valid status")
}

impl AlertHook {
    pub async fn start() -> AlertHook {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(HookState::default());
        let app = axum::Router::new()
            .route("/alerts", axum::routing::post(hook))
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("hook serves");
        });
        AlertHook { addr, state, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}/alerts", self.addr)
    }

    /// Answers the next POSTs with these statuses, in order (then 200).
    pub fn fail_next(&self, statuses: &[u16]) {
        self.state.statuses.lock().unwrap().extend(statuses);
    }

    /// The notices answered 2xx, in arrival order.
    pub fn notices(&self) -> Vec<serde_json::Value> {
        self.state.accepted.lock().unwrap().clone()
    }

    /// Every POST, failed ones included.
    pub fn attempts(&self) -> Vec<serde_json::Value> {
        self.state.attempts.lock().unwrap().clone()
    }

    /// `(status, rule, channel, destination)` of each accepted notice.
    pub fn summary(&self) -> Vec<(String, String, String, String)> {
        self.notices()
            .iter()
            .map(|n| {
                let s = |k: &str| n[k].as_str().unwrap_or_default().to_string();
                (s("status"), s("rule"), s("channel"), s("destination"))
            })
            .collect()
    }

    /// Waits until a notice of `rule` with `status` has arrived.
    pub async fn wait_for(&self, rule: &str, status: &str) {
        eventually(
            &format!("a {status} notice of {rule} at the webhook"),
            || async {
                self.notices()
                    .iter()
                    .any(|n| n["rule"] == rule && n["status"] == status)
                    .then_some(())
            },
        )
        .await
    }

    /// The statuses of `rule`'s notices, in order.
    pub fn statuses_of(&self, rule: &str) -> Vec<String> {
        self.notices()
            .iter()
            .filter(|n| n["rule"] == rule)
            .map(|n| n["status"].as_str().unwrap_or_default().to_string())
            .collect()
    }
}

impl Drop for AlertHook {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One message the SMTP sink took.
#[derive(Debug, Clone)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    /// Headers and body as sent (dot-stuffing undone).
    pub data: String,
}

impl Mail {
    pub fn subject(&self) -> String {
        self.data
            .lines()
            .find_map(|l| l.strip_prefix("Subject: "))
            .unwrap_or_default()
            .to_string()
    }
}

/// A local SMTP server that accepts everything and keeps it.
pub struct SmtpSink {
    pub addr: SocketAddr,
    mails: Arc<Mutex<Vec<Mail>>>,
    task: JoinHandle<()>,
}

impl SmtpSink {
    pub async fn start() -> SmtpSink {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mails = Arc::new(Mutex::new(Vec::new()));
        let kept = mails.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                let kept = kept.clone();
                tokio::spawn(async move {
                    let _ = session(socket, kept).await;
                });
            }
        });
        SmtpSink { addr, mails, task }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }

    /// Waits until a mail whose subject contains `text` has arrived.
    pub async fn wait_for(&self, text: &str) -> Mail {
        eventually(&format!("a mail about {text:?}"), || async {
            self.mails()
                .into_iter()
                .find(|m| m.subject().contains(text))
        })
        .await
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One SMTP session: replies to each command line; DATA reads up to the lone dot.
async fn session(
    socket: tokio::net::TcpStream,
    mails: Arc<Mutex<Vec<Mail>>>,
) -> std::io::Result<()> {
    let (read, mut write) = socket.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 sink.test ESMTP\r\n").await?;
    let (mut from, mut to) = (String::new(), Vec::new());
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_string();
        let verb = command
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => b"250-sink.test\r\n250 8BITMIME\r\n",
            "HELO" | "NOOP" => b"250 OK\r\n",
            "RSET" => {
                from.clear();
                to.clear();
                b"250 OK\r\n"
            }
            "MAIL" => {
                from = address(&command);
                b"250 OK\r\n"
            }
            "RCPT" => {
                to.push(address(&command));
                b"250 OK\r\n"
            }
            "DATA" => {
                write.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await?;
                let mut data = String::new();
                loop {
                    line.clear();
                    if lines.read_line(&mut line).await? == 0 {
                        return Ok(());
                    }
                    if line == ".\r\n" || line == ".\n" {
                        break;
                    }
                    data.push_str(line.strip_prefix('.').unwrap_or(&line));
                }
                mails.lock().unwrap().push(Mail {
                    from: std::mem::take(&mut from),
                    to: std::mem::take(&mut to),
                    data,
                });
                b"250 OK queued\r\n"
            }
            "QUIT" => {
                write.write_all(b"221 bye\r\n").await?;
                return Ok(());
            }
            _ => b"502 command not implemented\r\n",
        };
        write.write_all(reply).await?;
    }
}

/// The address in `MAIL FROM:<a@b>` or `RCPT TO:<a@b>`.
fn address(command: &str) -> String {
    match (command.find('<'), command.find('>')) {
        (Some(a), Some(b)) if a < b => command[a + 1..b].to_string(),
        _ => String::new(),
    }
}

/// An MLLP receiver that answers AA after `delay`: a destination slow to acknowledge.
pub struct SlowPeer {
    pub addr: SocketAddr,
    answered: Arc<std::sync::atomic::AtomicUsize>,
    task: JoinHandle<causeway_engine::net::server::ServerStats>,
}

struct Slow {
    delay: std::time::Duration,
    answered: Arc<std::sync::atomic::AtomicUsize>,
}

impl causeway_engine::net::server::Handler for Slow {
    async fn handle(
        &self,
        _peer: &causeway_engine::net::server::Peer,
        payload: Bytes,
    ) -> causeway_engine::net::server::Reply {
        tokio::time::sleep(self.delay).await;
        self.answered
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        causeway_engine::net::server::Reply::Ack(super::receiver_ack(&payload, hl7v2::AckCode::AA))
    }
}

impl SlowPeer {
    pub async fn start(delay: std::time::Duration) -> SlowPeer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let handler = Arc::new(Slow {
            delay,
            answered: answered.clone(),
        });
        let task = tokio::spawn(causeway_engine::net::server::run(
            listener,
            causeway_engine::net::server::ServerOptions::default(),
            handler,
            std::future::pending::<()>(),
        ));
        SlowPeer {
            addr,
            answered,
            task,
        }
    }

    /// Messages answered so far.
    pub fn answered(&self) -> usize {
        self.answered.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for SlowPeer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
