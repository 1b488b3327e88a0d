//! `causeway errors` beside a running `causeway serve`: it lists a destination's error queue
//! (deliveries a receiver refused) and, with `--retry`, sends it again, and the server's workers
//! deliver what it queued.

mod support;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use support::{BIN, Listener, Mllp, Server, adt, control_id_of, toml_path, write_config};

const LIMIT: Duration = Duration::from_secs(30);

fn errors(config: &std::path::Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("errors")
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .expect("run causeway errors")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn an_error_queue_is_listed_and_sent_again_from_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A laboratory system that refuses everything it gets.
    let lis = Listener::start_with(0, &dir.path().join("lis.hl7"), &["--ack", "AR"]);
    let config = write_config(
        dir.path(),
        &format!(
            "[server]\ndata_dir = {data}\nlog_format = \"json\"\n\n[[channel]]\nname = \"labs\"\nsource = {{ type = \"mllp\", listen = \"127.0.0.1:0\" }}\n\n  [[channel.destination]]\n  name = \"lis\"\n  type = \"mllp\"\n  connect = \"{lis}\"\n",
            data = toml_path(&dir.path().join("data")),
            lis = lis.addr,
        ),
    );
    let server = Server::start(&config);
    let mut mllp = Mllp::connect(server.addr("labs"), LIMIT).expect("connect");
    for cid in ["ERRQ-1", "ERRQ-2"] {
        let ack = mllp.send(&adt(cid, "P", 0)).expect("an ACK");
        assert!(String::from_utf8_lossy(&ack).contains("MSA|AA|"), "{cid}");
    }

    // Both refused: listed newest first, with the receiver's code and no message content.
    let deadline = Instant::now() + LIMIT;
    let listing = loop {
        let out = errors(&config, &[]);
        assert!(out.status.success(), "{}", text(&out));
        let shown = text(&out);
        if shown.starts_with("labs/lis: 2 failed") {
            break shown;
        }
        assert!(Instant::now() < deadline, "never two failures:\n{shown}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(lines.len(), 3, "{listing}");
    assert!(
        lines[1].contains("ERRQ-2") && lines[2].contains("ERRQ-1"),
        "{listing}"
    );
    for line in &lines[1..] {
        assert!(
            line.contains("ADT^A01 attempts 1: AR from the receiver, ERR-3"),
            "{line}"
        );
        assert!(!line.contains("TEST^PATIENT"), "{line}");
    }

    // Sent again: both go out once more, oldest first, from the running server.
    let out = errors(&config, &["--queue", "labs/lis", "--retry"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        text(&out).trim_end(),
        "labs/lis: 2 queued again, 0 skipped, 0 left in the error queue"
    );
    let deadline = Instant::now() + LIMIT;
    while lis.received().0 < 4 {
        assert!(
            Instant::now() < deadline,
            "the retried messages never arrived"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let records = std::fs::read_to_string(&lis.out).expect("the listener's file");
    let order: Vec<String> = records
        .split('\n')
        .filter(|r| !r.is_empty())
        .map(|r| control_id_of(r.as_bytes()))
        .collect();
    assert_eq!(order, ["ERRQ-1", "ERRQ-2", "ERRQ-1", "ERRQ-2"]);

    // Mistakes are refused with the reason.
    let out = errors(&config, &["--queue", "labs/nowhere", "--retry"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("no destination queue \"labs/nowhere\""),
        "{}",
        text(&out)
    );
    let out = errors(&config, &["--retry"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--queue"), "{}", text(&out));
    drop(server);
}
