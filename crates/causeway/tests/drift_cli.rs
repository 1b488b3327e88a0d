//! `causeway drift export` on what a real `causeway serve` learned: messages sent over MLLP, the
//! server stopped (it saves the learned profile), the profile exported, and the exported profile
//! loaded by `causeway validate --profile`, against which the feed's own messages validate (its Z
//! segment declared, its local codes added to their tables), while they do not without it.

mod support;

use std::process::Command;
use std::time::Duration;

use support::{BIN, Mllp, Server, toml_path, write_config};

/// An ADT^A01 of a sender that adds a ZPV segment and sends `X` (not in HL7 table 0136) in PID-24
/// (multiple birth indicator). Test data only.
fn adt(i: usize) -> String {
    format!(
        "MSH|^~\\&|EHR|NORTH|CAUSEWAY|HUB|20240101120000||ADT^A01^ADT_A01|DRIFT-{i}|P|2.5.1\r\
         EVN|A01|20240101120000\r\
         PID|1||{i}^^^NORTH^MR||TEST^PATIENT||19800101|F||||||||||||||||X\r\
         PV1|1|I|WARD^1^1\r\
         ZPV|{i}|VIP^Very important^L\r"
    )
}

fn causeway(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().expect("run causeway");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_exported_profile_validates_the_feed_it_was_learned_from() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = toml_path(&dir.path().join("data"));
    let config = write_config(
        dir.path(),
        &format!(
            "[server]\ndata_dir = {data}\nlog_format = \"json\"\n\
             [[channel]]\nname = \"adt\"\nsource = {{ type = \"mllp\", listen = \"127.0.0.1:0\" }}\n\
             drift = {{ baseline_messages = 5, min_samples = 5 }}\n"
        ),
    );
    let config_arg = config.to_str().expect("utf-8 path");

    // Nothing learned yet: said so, not an empty profile.
    let (code, _, err) = causeway(&[
        "drift",
        "export",
        "--channel",
        "adt",
        "--config",
        config_arg,
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("has learned nothing yet"), "{err}");
    let (code, _, err) = causeway(&[
        "drift",
        "export",
        "--channel",
        "nope",
        "--config",
        config_arg,
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("no channel \"nope\""), "{err}");

    let server = Server::start(&config);
    let mut mllp = Mllp::connect(server.addr("adt"), Duration::from_secs(30)).expect("connect");
    let mut feed = String::new();
    for i in 0..10 {
        let m = adt(i);
        let ack = mllp.send(m.as_bytes()).expect("ack");
        assert!(String::from_utf8_lossy(&ack).contains("MSA|AA|"), "{i}");
        feed.push_str(&m);
        feed.push('\n');
    }
    drop(mllp);
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");

    let (code, profile, err) = causeway(&[
        "drift",
        "export",
        "--channel",
        "adt",
        "--config",
        config_arg,
    ]);
    assert_eq!(code, 0, "{err}");
    let json: serde_json::Value = serde_json::from_str(&profile).expect("JSON");
    assert_eq!(json["name"], "adt-learned");
    assert_eq!(json["base_version"], "2.5.1");
    assert_eq!(
        json["segments"]["ZPV"]["fields"].as_array().map(Vec::len),
        Some(2)
    );
    assert!(
        json["tables"]["136"]["values"]
            .as_array()
            .is_some_and(|v| v.iter().any(|x| x == "X")),
        "{json}"
    );
    // No identifier, name or date is in it.
    for phi in ["TEST", "PATIENT", "19800101", "NORTH^MR"] {
        assert!(!profile.contains(phi), "{phi} in {profile}");
    }

    let profile_file = dir.path().join("learned.json");
    std::fs::write(&profile_file, &profile).unwrap();
    let feed_file = dir.path().join("feed.hl7");
    std::fs::write(&feed_file, &feed).unwrap();
    let feed_arg = feed_file.to_str().unwrap();
    let (code, out, err) = causeway(&["validate", feed_arg]);
    assert_eq!(
        code, 1,
        "without the profile, X is not in table 0136: {out}{err}"
    );
    assert!(out.contains("0136"), "{out}");
    let (code, out, err) = causeway(&[
        "validate",
        feed_arg,
        "--profile",
        profile_file.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("10 message(s), 0 invalid"), "{err}");
}
