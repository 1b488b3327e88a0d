//! Alert rules through a real engine: a real SQLite store, real MLLP traffic and peers, and
//! real receivers for the notices (a local webhook and a local SMTP sink). Each rule kind must
//! fire exactly once for a sustained condition and send exactly one recovery notice; every
//! firing and recovery is an `alert` event in the store and shows on the engine's board.
//!
//! Rules are evaluated every 100 ms here. Proving that nothing *more* is sent needs some time
//! to pass after the recovery: those waits are a few evaluations long and commented.

mod support;

use std::time::Duration;

use causeway_store::{EventFilter, EventKind};
use support::alerting::{AlertHook, SlowPeer, SmtpSink};
use support::{Harness, Receiver, ack_of, eventually, free_addr, msg};

/// `[alerts]` every 100 ms, a webhook notifier `hook` and an e-mail notifier `mail`.
fn notifiers(hook: &AlertHook, smtp: &SmtpSink) -> String {
    format!(
        "[alerts]\nevaluate_every = \"100ms\"\n\n\
         [[notifier]]\nname = \"hook\"\ntype = \"webhook\"\nurl = \"{}\"\n\n\
         [[notifier]]\nname = \"mail\"\ntype = \"email\"\nhost = \"127.0.0.1\"\nport = {}\n\
         security = \"none\"\nfrom = \"causeway@example.org\"\nto = [\"oncall@example.org\"]\n\
         subject_prefix = \"[test]\"\n\n",
        hook.url(),
        smtp.port()
    )
}

/// A few evaluations' time, to show that nothing more arrives after a recovery.
async fn a_few_evaluations() {
    tokio::time::sleep(Duration::from_millis(500)).await;
}

/// The `alert` events in the store: `(channel, detail)`, oldest first.
async fn alert_events(h: &Harness) -> Vec<(String, String)> {
    h.store
        .events(EventFilter {
            kind: Some(EventKind::Alert),
            ..EventFilter::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.channel, e.detail))
        .collect()
}

/// Checks the whole trail of `rule`: one firing and one recovery at the webhook, in that
/// order; with `by_mail`, one e-mail each; two events; nothing left active.
async fn one_alert_one_all_clear(
    h: &Harness,
    hook: &AlertHook,
    smtp: &SmtpSink,
    rule: &str,
    by_mail: bool,
) {
    assert_eq!(hook.statuses_of(rule), ["firing", "resolved"], "{rule}");
    let notices: Vec<serde_json::Value> = hook
        .notices()
        .into_iter()
        .filter(|n| n["rule"] == rule)
        .collect();
    let (fired, resolved) = (&notices[0], &notices[1]);
    assert_eq!(fired["resolved_at"], serde_json::Value::Null);
    assert_eq!(fired["started_at"], resolved["started_at"]);
    assert!(resolved["resolved_at"].is_string(), "{resolved}");
    let mails: Vec<String> = smtp
        .mails()
        .iter()
        .map(|m| m.subject())
        .filter(|s| s.contains(&format!(": {rule} (")))
        .collect();
    if by_mail {
        assert_eq!(mails.len(), 2, "{mails:?}");
        assert!(
            mails[0].starts_with(&format!("[test] FIRING: {rule} (")),
            "{mails:?}"
        );
        assert!(
            mails[1].starts_with(&format!("[test] RESOLVED: {rule} (")),
            "{mails:?}"
        );
    } else {
        assert_eq!(mails, Vec::<String>::new());
    }
    let events: Vec<String> = alert_events(h)
        .await
        .into_iter()
        .map(|(_, d)| d)
        .filter(|d| d.contains(&format!(": {rule} (")))
        .collect();
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(
        events[0].starts_with(&format!("firing: {rule} (")),
        "{events:?}"
    );
    assert!(
        events[1].starts_with(&format!("resolved: {rule} (")),
        "{events:?}"
    );
    let board = h.engine().alerts();
    assert!(
        board.active().iter().all(|a| a.rule != rule),
        "{rule} still active: {:?}",
        board.active()
    );
    let recent: Vec<&'static str> = board
        .recent()
        .iter()
        .filter(|a| a.rule == rule)
        .map(|a| a.state)
        .collect();
    assert_eq!(recent, ["resolved", "firing"], "newest first");
}

fn mllp_channel_to(name: &str, destination: &str, connect: &str) -> String {
    format!(
        "[[channel]]\nname = \"{name}\"\nsource = {{ type = \"mllp\", listen = \"127.0.0.1:0\" }}\n\
           [[channel.destination]]\n  name = \"{destination}\"\n  type = \"mllp\"\n  connect = \"{connect}\"\n\
           connect_timeout = \"1s\"\n  ack_timeout = \"5s\"\n  retry = {{ initial = \"20ms\", max = \"100ms\" }}\n\n"
    )
}

#[tokio::test]
async fn a_destination_outage_raises_each_destination_alert_once_and_clears_each_once() {
    let (hook, smtp) = (AlertHook::start().await, SmtpSink::start().await);
    // Nothing listens there yet: every delivery attempt fails, and the queue grows.
    let lab = free_addr().await;
    let config = format!(
        "{}{}\
         [[alert]]\nname = \"lab-backlog\"\ntype = \"queue_depth\"\nchannel = \"adt\"\n\
         destination = \"lab\"\nmax = 2\nnotify = [\"hook\", \"mail\"]\nseverity = \"critical\"\n\n\
         [[alert]]\nname = \"lab-stale\"\ntype = \"oldest_age\"\nmax_age = \"300ms\"\nnotify = [\"hook\"]\n\n\
         [[alert]]\nname = \"lab-down\"\ntype = \"destination_down\"\nfailures = 3\nnotify = [\"hook\"]\n\n\
         [[alert]]\nname = \"lab-stalled\"\ntype = \"destination_down\"\nno_success_for = \"300ms\"\n\
         notify = [\"hook\", \"mail\"]\n",
        mllp_channel_to("adt", "lab", &lab.to_string()),
        notifiers(&hook, &smtp)
    );
    let h = Harness::start(&config).await;
    for cid in ["Q1", "Q2", "Q3"] {
        assert_eq!(ack_of(&h.send("adt", &msg(cid).build()).await).code, "AA");
    }
    for rule in ["lab-backlog", "lab-stale", "lab-down", "lab-stalled"] {
        hook.wait_for(rule, "firing").await;
    }
    smtp.wait_for("FIRING: lab-backlog").await;
    smtp.wait_for("FIRING: lab-stalled").await;
    let firing = &hook
        .notices()
        .into_iter()
        .find(|n| n["rule"] == "lab-backlog")
        .unwrap();
    assert_eq!(firing["kind"], "queue_depth");
    assert_eq!(firing["severity"], "critical");
    assert_eq!(firing["channel"], "adt");
    assert_eq!(firing["destination"], "lab");
    assert_eq!(firing["value"], 3.0);
    assert_eq!(firing["threshold"], 2.0);
    assert_eq!(firing["unit"], "messages");
    let active = h.engine().alerts().active();
    assert!(
        active
            .iter()
            .any(|a| a.rule == "lab-backlog" && a.state == "firing" && a.notified == 1),
        "{active:?}"
    );

    // The lab comes back: the queue drains, each alert clears once.
    let listener = tokio::net::TcpListener::bind(lab)
        .await
        .expect("rebind the lab's port");
    let receiver = Receiver::on(listener).await;
    receiver.wait_received(3).await;
    for rule in ["lab-backlog", "lab-stale", "lab-down", "lab-stalled"] {
        hook.wait_for(rule, "resolved").await;
    }
    smtp.wait_for("RESOLVED: lab-backlog").await;
    smtp.wait_for("RESOLVED: lab-stalled").await;
    a_few_evaluations().await;
    one_alert_one_all_clear(&h, &hook, &smtp, "lab-backlog", true).await;
    one_alert_one_all_clear(&h, &hook, &smtp, "lab-stale", false).await;
    one_alert_one_all_clear(&h, &hook, &smtp, "lab-down", false).await;
    one_alert_one_all_clear(&h, &hook, &smtp, "lab-stalled", true).await;
    let down = hook
        .notices()
        .into_iter()
        .find(|n| n["rule"] == "lab-down")
        .unwrap();
    assert_eq!(
        (down["kind"].as_str(), down["unit"].as_str()),
        (Some("destination_down"), Some("failures"))
    );
    assert!(down["value"].as_f64().unwrap() >= 3.0, "{down}");
    let mail = smtp.wait_for("FIRING: lab-backlog").await;
    assert_eq!(mail.from, "causeway@example.org");
    assert_eq!(mail.to, ["oncall@example.org"]);
    let fields: Vec<Vec<&str>> = mail
        .data
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    for field in [
        ["destination:", "lab"],
        ["channel:", "adt"],
        ["status:", "firing"],
    ] {
        assert!(
            fields.contains(&field.to_vec()),
            "{field:?} in {}",
            mail.data
        );
    }
}

#[tokio::test]
async fn a_burst_of_refused_messages_raises_the_error_rate_once() {
    let (hook, smtp) = (AlertHook::start().await, SmtpSink::start().await);
    let config = format!(
        "[[channel]]\nname = \"adt\"\nsource = {{ type = \"mllp\", listen = \"127.0.0.1:0\" }}\n\
         accept = {{ types = [\"ADT\"] }}\n\n{}\
         [[alert]]\nname = \"adt-errors\"\ntype = \"error_rate\"\nwindow = \"1s\"\nthreshold = 0.5\n\
         min_messages = 3\nnotify = [\"hook\", \"mail\"]\n",
        notifiers(&hook, &smtp)
    );
    let h = Harness::start(&config).await;
    // One good message, four refused ones: 80% errors over the window.
    assert_eq!(ack_of(&h.send("adt", &msg("G1").build()).await).code, "AA");
    for cid in ["B1", "B2", "B3", "B4"] {
        let ack = ack_of(&h.send("adt", &msg(cid).kind("ORU^R01").build()).await);
        assert_eq!(ack.code, "AR");
    }
    hook.wait_for("adt-errors", "firing").await;
    let fired = hook.notices()[0].clone();
    assert_eq!(fired["kind"], "error_rate");
    // Fired as soon as 3 messages were in and more than half were refused (a message is
    // counted received before it is counted refused, so the rate seen may be under 4 of 5).
    let rate = fired["value"].as_f64().unwrap();
    assert!(rate > 0.5 && rate <= 0.8, "{fired}");
    assert_eq!(fired["threshold"], 0.5);
    assert_eq!(fired["unit"], "ratio");
    // The window moves past the burst: the rate falls under `min_messages`, the alert clears.
    hook.wait_for("adt-errors", "resolved").await;
    smtp.wait_for("RESOLVED: adt-errors").await;
    a_few_evaluations().await;
    one_alert_one_all_clear(&h, &hook, &smtp, "adt-errors", true).await;
}

#[tokio::test]
async fn a_new_unmapped_code_raises_one_alert_which_clears_after_the_window() {
    let hook = AlertHook::start().await;
    let smtp = SmtpSink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let profiles = dir.path().join("profiles");
    std::fs::create_dir(&profiles).unwrap();
    std::fs::write(
        profiles.join("clinic.toml"),
        "name = \"CLINIC\"\n[sender]\napplication = \"LAB\"\nfacility = \"CLINIC\"\n\
         [[code_map]]\nname = \"smoking-status\"\nfields = [\"OBX-5\"]\nobservation = \"72166-2\"\nunmapped = \"pass\"\n\
         [[code_map.entry]]\ncode = \"3\"\n\
         target = { system = \"http://snomed.info/sct\", code = \"449868002\", display = \"Smokes tobacco daily\" }\n\
         added_by = \"test\"\nadded_at = \"2026-11-03\"\n",
    )
    .unwrap();
    let config = format!(
        "[[channel]]\nname = \"lab\"\nsource = {{ type = \"mllp\", listen = \"127.0.0.1:0\" }}\n\
         fhir = {{ profiles = \"profiles\" }}\n\n{}\
         [[alert]]\nname = \"lab-codes\"\ntype = \"unmapped_code\"\nchannel = \"lab\"\nwindow = \"1s\"\n\
         notify = [\"hook\"]\nseverity = \"info\"\n",
        notifiers(&hook, &smtp)
    );
    let h = Harness::start_in(dir, &config).await;
    let oru = |cid: &str, code: &str| {
        format!(
            "MSH|^~\\&|LAB|CLINIC|CAUSEWAY|CAUSEWAY|20261103101500||ORU^R01^ORU_R01|{cid}|P|2.5.1\r\
             PID|1||55501^^^CLINIC^MR||Sample^Robin||19700101|M\r\
             OBR|1|ORD-{cid}|FIL-{cid}|72166-2^Tobacco smoking status^LN|||20261103100000||||||||||||||||||F\r\
             OBX|1|CWE|72166-2^Tobacco smoking status^LN||{code}^^L||||||F|||20261103100000\r"
        )
        .into_bytes()
    };
    // A mapped code raises nothing.
    assert_eq!(ack_of(&h.send("lab", &oru("U1", "3")).await).code, "AA");
    // Two messages with a code the map does not know: one alert.
    assert_eq!(ack_of(&h.send("lab", &oru("U2", "9")).await).code, "AA");
    assert_eq!(ack_of(&h.send("lab", &oru("U3", "9")).await).code, "AA");
    hook.wait_for("lab-codes", "firing").await;
    assert_eq!(hook.notices()[0]["severity"], "info");
    hook.wait_for("lab-codes", "resolved").await;
    a_few_evaluations().await;
    one_alert_one_all_clear(&h, &hook, &smtp, "lab-codes", false).await;
}

#[tokio::test]
async fn a_failing_webhook_is_retried_and_never_holds_up_evaluation() {
    let (hook, smtp) = (AlertHook::start().await, SmtpSink::start().await);
    // The webhook refuses the first notice twice; the e-mail goes out meanwhile.
    hook.fail_next(&[503, 500]);
    let lab = free_addr().await;
    let config = format!(
        "{}{}\
         [[alert]]\nname = \"lab-backlog\"\ntype = \"queue_depth\"\nmax = 0\nnotify = [\"hook\", \"mail\"]\n",
        mllp_channel_to("adt", "lab", &lab.to_string()),
        notifiers(&hook, &smtp)
    );
    let h = Harness::start(&config).await;
    assert_eq!(ack_of(&h.send("adt", &msg("R1").build()).await).code, "AA");
    smtp.wait_for("FIRING: lab-backlog").await;
    hook.wait_for("lab-backlog", "firing").await;
    let attempts = hook.attempts();
    assert_eq!(attempts.len(), 3, "two refusals, then the one accepted");
    assert!(attempts.iter().all(|a| a["status"] == "firing"));
    let receiver = Receiver::on(tokio::net::TcpListener::bind(lab).await.unwrap()).await;
    receiver.wait_received(1).await;
    hook.wait_for("lab-backlog", "resolved").await;
    smtp.wait_for("RESOLVED: lab-backlog").await;
    a_few_evaluations().await;
    one_alert_one_all_clear(&h, &hook, &smtp, "lab-backlog", true).await;
}

#[tokio::test]
async fn without_rules_the_board_stays_empty() {
    let h = Harness::start(
        "[[channel]]\nname = \"adt\"\nsource = { type = \"mllp\", listen = \"127.0.0.1:0\" }\n",
    )
    .await;
    assert_eq!(ack_of(&h.send("adt", &msg("N1").build()).await).code, "AA");
    let board = h.engine().alerts();
    assert!(board.active().is_empty() && board.recent().is_empty());
    eventually("the message stored", || async {
        (!h.stored("N1").await.is_empty()).then_some(())
    })
    .await;
    assert!(alert_events(&h).await.is_empty());
}

#[tokio::test]
async fn a_silent_feed_raises_one_alert_and_clears_once_traffic_resumes() {
    let (hook, smtp) = (AlertHook::start().await, SmtpSink::start().await);
    let config = format!(
        "[[channel]]\nname = \"adt\"\nsource = {{ type = \"mllp\", listen = \"127.0.0.1:0\" }}\n\n{}\
         [[alert]]\nname = \"adt-quiet\"\ntype = \"silence\"\nwindow = \"500ms\"\nnotify = [\"hook\", \"mail\"]\n",
        notifiers(&hook, &smtp)
    );
    let h = Harness::start(&config).await;
    // Nothing arrives: the feed is silent from the start.
    hook.wait_for("adt-quiet", "firing").await;
    let fired = hook.notices()[0].clone();
    assert_eq!(fired["kind"], "silence");
    assert_eq!(fired["threshold"], 500.0);
    assert!(fired["value"].as_f64().unwrap() >= 500.0, "{fired}");
    // Traffic resumes and keeps flowing (a message every 100 ms, well inside the window).
    let mut client = h.client("adt").await;
    let mut n = 0;
    let mut sent = || {
        n += 1;
        msg(&format!("S{n}")).build()
    };
    support::send(&mut client, &sent()).await;
    let deadline = tokio::time::Instant::now() + support::DEADLINE;
    while !hook
        .statuses_of("adt-quiet")
        .contains(&"resolved".to_string())
    {
        assert!(tokio::time::Instant::now() < deadline, "never resolved");
        support::send(&mut client, &sent()).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Still flowing for a few more evaluations: nothing more is sent.
    for _ in 0..5 {
        support::send(&mut client, &sent()).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    smtp.wait_for("RESOLVED: adt-quiet").await;
    one_alert_one_all_clear(&h, &hook, &smtp, "adt-quiet", true).await;
}

#[tokio::test]
async fn a_slow_destination_breaches_the_ack_time_objective_once() {
    let (hook, smtp) = (AlertHook::start().await, SmtpSink::start().await);
    let peer = SlowPeer::start(Duration::from_millis(300)).await;
    let config = format!(
        "{}{}\
         [[alert]]\nname = \"lab-slow\"\ntype = \"ack_time\"\ndestination = \"lab\"\nwindow = \"2s\"\n\
         quantile = 0.9\nobjective = \"100ms\"\nnotify = [\"hook\", \"mail\"]\n",
        mllp_channel_to("adt", "lab", &peer.addr.to_string()),
        notifiers(&hook, &smtp)
    );
    let h = Harness::start(&config).await;
    for cid in ["T1", "T2"] {
        assert_eq!(ack_of(&h.send("adt", &msg(cid).build()).await).code, "AA");
    }
    hook.wait_for("lab-slow", "firing").await;
    let fired = hook.notices()[0].clone();
    assert_eq!(fired["kind"], "ack_time");
    assert_eq!(fired["destination"], "lab");
    assert_eq!(fired["threshold"], 100.0);
    assert!(fired["value"].as_f64().unwrap() > 100.0, "{fired}");
    // The slow answers leave the window: resolved.
    hook.wait_for("lab-slow", "resolved").await;
    smtp.wait_for("RESOLVED: lab-slow").await;
    a_few_evaluations().await;
    one_alert_one_all_clear(&h, &hook, &smtp, "lab-slow", true).await;
    assert_eq!(peer.answered(), 2);
}

#[tokio::test]
async fn a_drift_finding_raises_one_alert_which_clears_after_the_window() {
    let (hook, smtp) = (AlertHook::start().await, SmtpSink::start().await);
    let config = format!(
        "[[channel]]\nname = \"adt\"\nsource = {{ type = \"mllp\", listen = \"127.0.0.1:0\" }}\n\n{}\
         [[alert]]\nname = \"adt-drift\"\ntype = \"drift\"\nwindow = \"1s\"\nnotify = [\"hook\", \"mail\"]\n",
        notifiers(&hook, &smtp)
    );
    let h = Harness::start(&config).await;
    // Drift detection counts its findings on the channel, as it records each one.
    let stats = &h.engine().channel("adt").expect("channel").stats;
    stats
        .drift_findings
        .fetch_add(2, std::sync::atomic::Ordering::Relaxed);
    hook.wait_for("adt-drift", "firing").await;
    assert_eq!(hook.notices()[0]["value"], 2.0);
    hook.wait_for("adt-drift", "resolved").await;
    smtp.wait_for("RESOLVED: adt-drift").await;
    a_few_evaluations().await;
    one_alert_one_all_clear(&h, &hook, &smtp, "adt-drift", true).await;
}

#[tokio::test]
async fn bad_input_at_the_source_raises_one_alert_which_clears_after_the_window() {
    let (hook, smtp) = (AlertHook::start().await, SmtpSink::start().await);
    let config = format!(
        "[[channel]]\nname = \"adt\"\nsource = {{ type = \"mllp\", listen = \"127.0.0.1:0\" }}\n\n{}\
         [[alert]]\nname = \"adt-bad-input\"\ntype = \"bad_input\"\nwindow = \"1s\"\nnotify = [\"hook\"]\n",
        notifiers(&hook, &smtp)
    );
    let h = Harness::start(&config).await;
    // A sender with broken framing: bytes before the frame, which is still answered.
    let mut conn = support::RawConnection::open(h.mllp_addr("adt")).await;
    conn.write_raw(b"JUNK").await;
    conn.write_frame(&msg("BAD-IN-1").build()).await;
    assert_eq!(ack_of(&conn.read_frame().await).code, "AA");
    hook.wait_for("adt-bad-input", "firing").await;
    let fired = &hook.notices()[0];
    assert_eq!(fired["value"], 1.0, "{fired}");
    assert!(
        fired["summary"]
            .as_str()
            .is_some_and(|s| s.contains("4 bytes outside MLLP frames")),
        "{fired}"
    );
    hook.wait_for("adt-bad-input", "resolved").await;
    a_few_evaluations().await;
    one_alert_one_all_clear(&h, &hook, &smtp, "adt-bad-input", false).await;
}
