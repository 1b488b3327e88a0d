//! The text log format written to a pipe or a file (a service manager, `2> serve.log`) is plain
//! text: no terminal colour codes for `grep` or a log shipper to trip over.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use support::{BIN, toml_path, write_config};

#[test]
fn text_logs_to_a_pipe_carry_no_colour_codes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = toml_path(&dir.path().join("data"));
    let path = write_config(
        dir.path(),
        &format!(
            "[server]\ndata_dir = {data}\nlog_format = \"text\"\n\n[[channel]]\nname = \"plain\"\nsource = {{ type = \"mllp\", listen = \"127.0.0.1:0\" }}\n"
        ),
    );
    let mut child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&path)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start causeway serve");
    let mut lines = Vec::new();
    for line in BufReader::new(child.stderr.take().expect("stderr")).lines() {
        let line = line.expect("utf-8 log line");
        let ready = line.contains("causeway serving");
        lines.push(line);
        if ready {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let log = lines.join("\n");
    assert!(log.contains("causeway serving"), "never ready:\n{log}");
    assert!(log.contains("MLLP listening"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a piped log:\n{log}"
    );
}
