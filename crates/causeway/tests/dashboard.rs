//! The web dashboard in a real browser: Debian's headless Chromium driven through
//! chromedriver (W3C WebDriver, [`support::webdriver`]) against the real `causeway serve`
//! binary with an MLLP channel fed over real sockets and delivering to a real `causeway
//! listen`.
//!
//! The walk: sign in; watch the channel's counters move on the overview, without a reload,
//! as messages arrive over MLLP; search a message by control id; open it and see its fields
//! labelled by name with the patient's fields masked; reveal them (admin); reprocess it; stop
//! and start the channel from its page; send a refusing laboratory's error queue again from
//! its channel's page; an alert appears and clears as the EHR goes away and comes back; the
//! same pages at tablet width (800 px); sign out. Screenshots of each step are written to
//! `target/dashboard-screenshots/NN-name.png`.
//!
//! This test fails, never skips, when chromium or chromedriver is missing.

mod support;

use std::time::Duration;

use causeway_server::auth::{self, Role};
use causeway_store::{NewUser, SqliteOptions, SqliteStore, Store};
use reqwest::StatusCode;
use serde_json::json;
use support::webdriver::Browser;
use support::{Ack, Listener, Mllp, Server, toml_path, write_config};

/// The WebDriver key code of Enter.
const ENTER: char = '\u{E007}';

/// Longest an MLLP exchange may take.
const MLLP_LIMIT: Duration = Duration::from_secs(20);

/// A rule that fires while the channel's destination is down (one failed attempt), evaluated
/// often so the test need not wait.
const ALERT_RULE: &str = r#"
[alerts]
evaluate_every = "200ms"

[[alert]]
name = "ehr-down"
type = "destination_down"
channel = "wards"
destination = "ehr"
failures = 1
severity = "critical"
"#;

/// Test data only: no real patient.
fn adt(control_id: &str) -> String {
    format!(
        "MSH|^~\\&|WARDAPP|NORTH|CAUSEWAY|HUB|20240301101500||ADT^A01^ADT_A01|{control_id}|P|2.5.1\r\
         EVN|A01|20240301101500\r\
         PID|1||MRN-DASH-7^^^NORTH^MR||QUILLFEATHER^ROSALIND^J||19800517|F|||12 HARBOUR RD^^PORTSMOUTH^^PO1 2AB^GBR\r\
         PV1|1|I|WARD^12^3^NORTH||||1234^WELBY^MARCUS^^^DR|||MED||||ADM|||||V-DASH-1\r"
    )
}

/// Sends one message over MLLP and returns its ACK (blocking socket: run off the runtime).
async fn send(addr: std::net::SocketAddr, message: String) -> Ack {
    tokio::task::spawn_blocking(move || {
        let mut mllp = Mllp::connect(addr, MLLP_LIMIT).expect("connect over MLLP");
        Ack::parse(&mllp.send(message.as_bytes()).expect("an ACK"))
    })
    .await
    .expect("sender task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_live_counters_finds_masks_and_reprocesses_a_message() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().expect("tempdir");
    let ehr = Listener::start(0, &dir.path().join("ehr.hl7"));
    // A laboratory system that refuses everything: its messages wait in the error queue.
    let lis = Listener::start_with(0, &dir.path().join("lis.hl7"), &["--ack", "AR"]);
    let config = write_config(
        dir.path(),
        &format!(
            r#"
[server]
data_dir = {data}
http = "127.0.0.1:0"
log_format = "json"

[[channel]]
name = "wards"
source = {{ type = "mllp", listen = "127.0.0.1:0" }}
fhir = {{}}

  [[channel.destination]]
  name = "ehr"
  type = "mllp"
  connect = "{ehr}"

[[channel]]
name = "labs"
source = {{ type = "mllp", listen = "127.0.0.1:0" }}

  [[channel.destination]]
  name = "lis"
  type = "mllp"
  connect = "{lis}"
{rule}
"#,
            data = toml_path(&dir.path().join("data")),
            ehr = ehr.addr,
            lis = lis.addr,
            rule = ALERT_RULE,
        ),
    );
    let server = Server::start(&config);
    let password = server
        .admin_password
        .clone()
        .expect("the first start prints the administrator's password");
    let base = format!("http://{}", server.http.expect("HTTP address logged"));
    let mllp = server.addr("wards");

    // The files are served with their security headers, without a session.
    let http = reqwest::Client::new();
    let index = http
        .get(format!("{base}/ui/"))
        .send()
        .await
        .expect("GET /ui/");
    assert_eq!(index.status(), StatusCode::OK);
    let csp = index.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(index.headers()["x-content-type-options"], "nosniff");

    let browser = Browser::start(1280, 900).await;

    // Sign in.
    browser.goto(&format!("{base}/ui/")).await;
    browser.type_into("#username", "admin").await;
    browser.type_into("#password", "not the password").await;
    browser.click_on("#login button[type=submit]").await;
    browser
        .text_is("#login-error", "Wrong user name or password.")
        .await;
    browser.screenshot("01-login").await;
    // From the keyboard: Enter in the password field signs in.
    browser
        .type_into("#password", &format!("{password}{ENTER}"))
        .await;
    browser
        .text_where("#who", "the admin signed in", |t| t.starts_with("admin"))
        .await;

    // The overview: the channel, its counters at zero, then moving as messages arrive.
    let received = "#channels tr[data-channel=\"wards\"] td.c-received";
    browser.text_is(received, "0").await;
    browser.element("#live-status[aria-live=\"polite\"]").await;
    browser.screenshot("02-overview-empty").await;
    // A mark in the page: it survives only if the page is not reloaded.
    browser
        .script("window.causewayTestMark = 42; return null;")
        .await;
    for n in 1..=3 {
        let ack = send(mllp, adt(&format!("DASH-{n}"))).await;
        assert_eq!(ack.code, "AA", "{ack:?}");
    }
    browser.text_is(received, "3").await;
    browser
        .text_is("#channels tr[data-channel=\"wards\"] td.c-accepted", "3")
        .await;
    assert_eq!(
        browser.script("return window.causewayTestMark;").await,
        json!(42),
        "the counters moved without a reload"
    );
    assert!(
        ehr.wait_for_all(
            &["DASH-1", "DASH-2", "DASH-3"]
                .map(String::from)
                .into_iter()
                .collect(),
            MLLP_LIMIT
        ),
        "the EHR received the three messages"
    );
    browser
        .text_is("#channels tr[data-channel=\"wards\"] td.c-queue", "0")
        .await;
    // With the engine's monitor (`/api/monitor`, `/api/stream`) the page is fed live and
    // shows the time to ACK; a server without it is polled and says so.
    let cookie = login_cookie(&http, &base, &password).await;
    let monitor = http
        .get(format!("{base}/api/monitor?seconds=0"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("GET /api/monitor");
    if monitor.status() == StatusCode::OK {
        browser
            .text_where("#live-status", "the live stream", |t| {
                t.contains(" · live · ")
            })
            .await;
        browser
            .text_where(
                "#channels tr[data-channel=\"wards\"] td.c-p95",
                "a time to ACK",
                |t| t.ends_with(" ms") || t.ends_with(" s"),
            )
            .await;
    } else {
        assert_eq!(monitor.status(), StatusCode::NOT_FOUND);
        browser
            .text_where("#live-status", "polling", |t| t.contains("polling"))
            .await;
    }
    browser.screenshot("03-overview-live").await;

    // The message browser: by control id.
    browser.click_on("nav a[href=\"#/messages\"]").await;
    browser.type_into("#f-control", "DASH-2").await;
    browser.click_on("#search button[type=submit]").await;
    only_result(&browser, "DASH-2").await;
    browser.screenshot("04-search").await;
    // A search by patient identifier never puts the identifier in the URL.
    browser.type_into("#f-control", "").await;
    browser.type_into("#f-patient", "MRN-DASH-7^NORTH").await;
    browser.click_on("#search button[type=submit]").await;
    browser
        .text_where("#results-note", "three results", |t| t.contains("1–3"))
        .await;
    let url = browser.url().await;
    assert!(url.ends_with("/ui/#/messages"), "no PHI in the URL: {url}");
    browser.type_into("#f-patient", "").await;
    // By sender (MSH-3 and MSH-4).
    browser.type_into("#f-app", "OTHERAPP").await;
    browser.click_on("#search button[type=submit]").await;
    browser
        .text_where("#results-note", "no match from another sender", |t| {
            t.contains("No message matches")
        })
        .await;
    browser.type_into("#f-app", "WARDAPP").await;
    browser.type_into("#f-facility", "NORTH").await;
    browser.type_into("#f-control", "DASH-2").await;
    browser.click_on("#search button[type=submit]").await;
    // The rows of the earlier search stay until the new answer replaces them.
    only_result(&browser, "DASH-2").await;
    browser
        .click_on("#results tbody tr[data-control=\"DASH-2\"] a.open")
        .await;
    let message_url = browser
        .wait("the message page", || async {
            let url = browser.url().await;
            url.contains("#/message/").then_some(url)
        })
        .await;

    // The message: fields labelled by name, the patient masked everywhere on the page.
    let pid5 = "#segments tr[data-position=\"PID-5\"]";
    browser
        .text_is(&format!("{pid5} td.f-name"), "Patient Name")
        .await;
    browser.text_is(&format!("{pid5} td.f-value"), "***").await;
    browser
        .text_is(
            "#segments tr[data-position=\"MSH-10\"] td.f-value",
            "DASH-2",
        )
        .await;
    browser.element("#masked-banner").await;
    let page = browser.body_text().await;
    for phi in ["QUILLFEATHER", "ROSALIND", "MRN-DASH-7", "HARBOUR", "WELBY"] {
        assert!(!page.contains(phi), "{phi} shown while masked:\n{page}");
    }
    browser.screenshot("05-message-masked").await;
    browser.click_on("#tab-raw").await;
    browser
        .text_where("#raw", "the masked raw text", |t| {
            t.contains("PID|1||***||***||***|***|||***") && t.contains("|DASH-2|")
        })
        .await;
    browser.click_on("#tab-fhir").await;
    let fhir = browser
        .text_where("#fhir", "the FHIR bundle", |t| t.contains("\"Patient\""))
        .await;
    for phi in ["QUILLFEATHER", "MRN-DASH-7", "1980-05-17"] {
        assert!(!fhir.contains(phi), "{phi} in the masked FHIR output");
    }
    browser.click_on("#tab-deliveries").await;
    browser
        .text_where("#deliveries", "the delivery with the EHR's ACK", |t| {
            t.contains("delivered") && t.contains("MSA|AA|DASH-2")
        })
        .await;
    browser.screenshot("06-message-deliveries").await;

    // An admin may reveal the patient's fields (audited by the API).
    browser.click_on("#reveal").await;
    browser.element("#revealed-banner").await;
    browser.click_on("#tab-fields").await;
    browser
        .text_where(&format!("{pid5} td.f-value"), "the name revealed", |t| {
            t.contains("QUILLFEATHER")
        })
        .await;
    browser.click_on("#hide").await;
    browser.element("#masked-banner").await;

    // Reprocess: the message runs through the channel again and is queued to the EHR.
    browser.click_on("#reprocess").await;
    browser
        .text_where("#toast", "the reprocess outcome", |t| {
            t.contains("reprocessed: accepted") && t.contains("wards/ehr")
        })
        .await;
    browser.text_is("#tab-deliveries", "Deliveries (2)").await;
    browser.screenshot("07-reprocessed").await;

    // The channel's page: counters, its destination, its events; stop and start.
    browser.goto(&format!("{base}/ui/#/channel/wards")).await;
    browser.text_is("#card-received .value", "3").await;
    browser
        .element("#destinations-table tr[data-destination=\"ehr\"]")
        .await;
    browser.click_on("#stop").await;
    browser.text_is("#channel-state", "stopped").await;
    let refused = send(mllp, adt("DASH-STOPPED")).await;
    assert_eq!(
        refused.code, "AE",
        "a stopped channel answers AE: {refused:?}"
    );
    browser.screenshot("08-channel-stopped").await;
    browser.click_on("#start").await;
    browser.text_is("#channel-state", "running").await;
    let ack = send(mllp, adt("DASH-4")).await;
    assert_eq!(ack.code, "AA", "{ack:?}");
    // A refused message is not received (it is counted apart); the next one is.
    browser.text_is("#card-received .value", "4").await;
    // Bytes that are no MLLP frame at all: no message, but the source's card counts them.
    tokio::task::spawn_blocking(move || {
        let mut raw = std::net::TcpStream::connect(mllp).expect("connect");
        std::io::Write::write_all(&mut raw, b"HELO causeway").expect("write");
    })
    .await
    .expect("garbage sender");
    browser.text_is("#card-garbage .value", "13").await;
    browser.text_is("#card-received .value", "4").await;
    browser.element("#error-queues #no-failures").await;
    browser.screenshot("09-channel").await;

    // An error queue: the laboratory refuses two messages (AR); once "fixed", the operator
    // sends the whole queue again from the channel's page, and it goes out in order.
    for n in 1..=2 {
        let ack = send(server.addr("labs"), adt(&format!("LAB-{n}"))).await;
        assert_eq!(ack.code, "AA", "{ack:?}");
    }
    browser.goto(&format!("{base}/ui/#/channel/labs")).await;
    let lab_queue = "#error-queues section[data-queue=\"labs/lis\"]";
    for n in 1..=2 {
        browser
            .text_where(
                &format!("{lab_queue} tr[data-control=\"LAB-{n}\"]"),
                "the refused message in the error queue",
                |t| t.contains("AR from the receiver"),
            )
            .await;
    }
    browser
        .text_where(&format!("{lab_queue} h3"), "two failed", |t| {
            t.contains("2 failed")
        })
        .await;
    browser
        .script("document.getElementById('error-queues').scrollIntoView(); return null;")
        .await;
    browser.screenshot("09b-error-queue").await;
    assert_eq!(lis.received().0, 2);
    browser
        .click_on(&format!("{lab_queue} button.retry-queue"))
        .await;
    browser
        .text_where("#toast", "the retry outcome", |t| {
            t.contains("labs/lis: 2 sent again")
        })
        .await;
    browser
        .wait("the laboratory to get both again", || async {
            (lis.received().0 == 4).then_some(())
        })
        .await;

    // Alerts.
    let alerts = http
        .get(format!("{base}/api/alerts"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("GET /api/alerts");
    assert_eq!(alerts.status(), StatusCode::OK);
    assert_eq!(
        alerts.json::<serde_json::Value>().await.expect("JSON")["active"],
        json!([]),
        "no alert while the EHR answers"
    );
    alert_appears_and_clears(&browser, &base, ehr, mllp).await;

    // The other pages render what their APIs answer (or say the route is missing).
    browser.goto(&format!("{base}/ui/#/unmapped")).await;
    browser
        .text_where("#unmapped-area", "the unmapped codes", |t| !t.is_empty())
        .await;
    browser.goto(&format!("{base}/ui/#/profiles")).await;
    browser
        .text_where("#profiles-area", "the profiles", |t| !t.is_empty())
        .await;

    // A tablet: 800 px wide, nothing wider than the window.
    browser.resize(800, 1100).await;
    for (shot, route, ready) in [
        ("10-overview-800", "#/overview", received),
        ("11-messages-800", "#/messages", "#results tbody tr"),
        ("12-channel-800", "#/channel/wards", "#card-received .value"),
    ] {
        browser.goto(&format!("{base}/ui/{route}")).await;
        browser.element(ready).await;
        let overflow = browser
            .script("return document.documentElement.scrollWidth - document.documentElement.clientWidth;")
            .await;
        assert!(
            overflow.as_i64().unwrap_or(1) <= 0,
            "{route} is wider than 800 px by {overflow}"
        );
        browser.screenshot(shot).await;
    }

    // No script error, no content-security-policy refusal in the console. (Chromium logs
    // every 4xx answer as an error; the pages handle those: 401 before signing in, 404 from
    // the routes other branches add.)
    let errors: Vec<_> = browser
        .console()
        .await
        .into_iter()
        .filter(|(level, text)| {
            level == "SEVERE"
                && !text
                    .contains("Failed to load resource: the server responded with a status of 4")
        })
        .collect();
    assert!(errors.is_empty(), "console errors: {errors:?}");

    // Sign out: the sign-in page, and the API refuses the old session.
    browser.resize(1280, 900).await;
    browser.click_on("#logout").await;
    browser.element("#login #username").await;
    let me = browser
        .script("return fetch('/auth/me').then((r) => r.status);")
        .await;
    assert_eq!(me, json!(401), "signed out");

    // A viewer sees the message masked, with no way to reveal it and no operator buttons.
    add_user(&dir.path().join("data"), "vera", Role::Viewer).await;
    browser.type_into("#username", "vera").await;
    browser
        .type_into("#password", &format!("{VIEWER_PASSWORD}{ENTER}"))
        .await;
    browser
        .text_where("#who", "the viewer signed in", |t| t.starts_with("vera"))
        .await;
    browser.goto(&message_url).await;
    browser.text_is(&format!("{pid5} td.f-value"), "***").await;
    browser
        .text_where("#masked-banner", "no reveal for a viewer", |t| {
            t.contains("Operators and admins can reveal it")
        })
        .await;
    assert!(browser.find("#reveal").await.is_none());
    assert!(browser.find("#reprocess").await.is_none());
    browser.screenshot("13-message-as-viewer").await;
    browser.goto(&format!("{base}/ui/#/channel/wards")).await;
    // Four from the walk and one sent while the EHR was away (the alert step).
    browser.text_is("#card-received .value", "5").await;
    browser.element("#channel-state").await;
    assert!(
        browser.find("#stop").await.is_none(),
        "a viewer cannot stop"
    );
    browser.goto(&format!("{base}/ui/#/channel/labs")).await;
    browser
        .element("#error-queues section[data-queue=\"labs/lis\"] tr[data-control=\"LAB-1\"]")
        .await;
    assert!(
        browser.find("button.retry-queue").await.is_none(),
        "a viewer cannot send a queue again"
    );
    browser.quit().await;
    let (status, log) = server.stop();
    assert!(status.success(), "serve exited cleanly:\n{log}");
}

/// The password of the users [`add_user`] creates.
const VIEWER_PASSWORD: &str = "a viewer's long passphrase";

/// Waits until the message browser's results are exactly one row, the message `control_id`.
async fn only_result(browser: &Browser, control_id: &str) {
    let row = format!("#results tbody tr[data-control=\"{control_id}\"]");
    browser
        .wait(&format!("one result, {control_id}"), || async {
            let rows = browser.find_all("#results tbody tr").await;
            let one = browser.find(&row).await;
            (rows.len() == 1 && one.is_some()).then_some(())
        })
        .await;
}

/// Adds a user to the running server's store (the store is shared with the server process,
/// as a second `causeway` process would share it).
async fn add_user(data_dir: &std::path::Path, username: &str, role: Role) {
    let store = SqliteStore::open(data_dir, SqliteOptions::default())
        .await
        .expect("open the store");
    store
        .create_user(NewUser {
            username: username.into(),
            password_hash: auth::hash_password(VIEWER_PASSWORD).expect("hash"),
            role,
        })
        .await
        .expect("create the user");
}

/// A session cookie for the API, as the browser has.
async fn login_cookie(http: &reqwest::Client, base: &str, password: &str) -> String {
    let login = http
        .post(format!("{base}/auth/login"))
        .json(&json!({"username": "admin", "password": password}))
        .send()
        .await
        .expect("login");
    assert_eq!(login.status(), StatusCode::OK);
    login.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

/// The alert step: the EHR goes away, a message cannot be
/// delivered, the destination-down alert appears on the alert page; the EHR comes back, the
/// alert clears.
async fn alert_appears_and_clears(
    browser: &Browser,
    base: &str,
    ehr: Listener,
    mllp: std::net::SocketAddr,
) {
    let port = ehr.addr.port();
    let out = ehr.out.clone();
    drop(ehr);
    let ack = send(mllp, adt("DASH-ALERT")).await;
    assert_eq!(ack.code, "AA", "{ack:?}");
    browser.goto(&format!("{base}/ui/#/alerts")).await;
    browser
        .text_where("#alerts-active-area", "an active alert for the EHR", |t| {
            t.contains("ehr")
        })
        .await;
    browser.screenshot("14-alert-active").await;
    let back = Listener::start(port, &out);
    browser
        .text_where("#alerts-active-area", "the alert cleared", |t| t == "None.")
        .await;
    browser
        .text_where("#alerts-recent-area", "the alert in the recent list", |t| {
            t.contains("ehr")
        })
        .await;
    browser.screenshot("15-alert-cleared").await;
    drop(back);
}
