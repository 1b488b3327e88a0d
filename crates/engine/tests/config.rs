//! Black-box tests of `causeway.toml`: exact error texts with their positions (many errors in
//! one file, all reported together), the default configuration, the values a valid file gives,
//! and the reference in `docs/configuration.md` (its examples validate and it names every key).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use causeway_engine::config::raw::*;
use causeway_engine::config::{
    Config, ConfigErrorKind, DEFAULT_CONFIG_TOML, DestinationKind, LogFormat, SourceConfig,
};
use toml::Spanned;

/// Writes `text` as `causeway.toml` in `dir`, loads it, and returns the errors with the file
/// shown by name only (the directory is a random temporary one).
fn load_errors(dir: &Path, text: &str) -> Vec<String> {
    let file = dir.join("causeway.toml");
    std::fs::write(&file, text).unwrap();
    match Config::load(&file) {
        Ok(_) => Vec::new(),
        Err(errors) => errors
            .into_iter()
            .map(|mut e| {
                e.file = e.file.map(|f| f.file_name().unwrap().into());
                e.to_string()
            })
            .collect(),
    }
}

fn assert_errors(dir: &Path, text: &str, want: &[String]) {
    let got = load_errors(dir, text);
    if got != want {
        panic!(
            "errors differ\n--- got\n{}\n--- want\n{}\n",
            got.join("\n"),
            want.join("\n")
        );
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// A file with one or more mistakes in nearly every section.
const MANY_ERRORS: &str = r#"[server]
http = "0.0.0.0:8080"
log_format = "yaml"

[store]
group_commit_max_messages = 0
group_commit_max_wait = "5 s"

[tables.facility-codes]
"A" = "ALPHA"

[[channel]]
name = "adt"
source = { type = "mllp", listen = "0.0.0.0:2575", idle_timeout = "5min", max_frame = "16MB" }
accept = { types = ["ADT^", "ORU^R01"], versions = [] }

  [[channel.filter]]
  when = ["PID-8 in ['M', 'F']", "PID-x == 'a'"]

  [[channel.transform]]
  set = { path = "PV1-3.4", value = "MAIN" }
  copy = { from = "PID-3", to = "PID-2" }

  [[channel.transform]]
  map = { path = "PV1-3.4", table = "facility" }

  [[channel.destination]]
  name = "lab"
  type = "mllp"
  connect = "lab.example.org"
  retry = { initial = "10m", max = "5m" }
  parallel = 0

  [[channel.destination]]
  name = "lab"
  type = "file"
  dir = "out"
  filename = "{channel}.hl7"

[[channel]]
name = "adt"
source = { type = "mllp", listen = "127.0.0.1:2575" }

[[channel]]
name = "web"
source = { type = "http", path = "hl7" }
"#;

#[test]
fn many_errors_in_one_file_are_reported_together_in_file_order() {
    let dir = tempfile::tempdir().unwrap();
    let text = MANY_ERRORS;
    assert_errors(
        dir.path(),
        text,
        &strings(&[
            r#"causeway.toml:3:14: server.log_format: unknown log format "yaml": expected "text" or "json""#,
            r#"causeway.toml:6:29: store.group_commit_max_messages: must be from 1 to 65536"#,
            r#"causeway.toml:7:25: store.group_commit_max_wait: invalid duration "5 s": expected a whole number and a unit (ms, s, m, h, d), e.g. "30s""#,
            r#"causeway.toml:14:67: channel[0].source.idle_timeout: invalid duration "5min": expected a whole number and a unit (ms, s, m, h, d), e.g. "30s""#,
            r#"causeway.toml:14:87: channel[0].source.max_frame: invalid size "16MB": expected a whole number and a unit (B, KiB, MiB, GiB), e.g. "16MiB""#,
            r#"causeway.toml:15:21: channel[0].accept.types[0]: invalid message type pattern "ADT^": expected CODE^EVENT, e.g. "ADT^A01" or "ORU^*""#,
            r#"causeway.toml:15:52: channel[0].accept.versions: the list is empty (leave the key out to allow any value)"#,
            r#"causeway.toml:18:34: channel[0].filter[0].when[1]: invalid condition: invalid path "PID-x": expected a field number at character 1"#,
            r#"causeway.toml:22:10: channel[0].transform[0].copy: one transform per entry, found set and copy"#,
            r#"causeway.toml:25:37: channel[0].transform[1].map.table: unknown code table "facility" (defined: facility-codes)"#,
            r#"causeway.toml:30:13: channel[0].destination[0].connect: invalid address "lab.example.org": expected host:port"#,
            r#"causeway.toml:31:23: channel[0].destination[0].retry.initial: the first delay (10m) is longer than the longest (5m)"#,
            r#"causeway.toml:32:14: channel[0].destination[0].parallel: must be from 1 to 64"#,
            r#"causeway.toml:35:10: channel[0].destination[1].name: duplicate destination name "lab" in this channel (first at line 28)"#,
            r#"causeway.toml:38:14: channel[0].destination[1].filename: invalid file name "{channel}.hl7": must contain {id}, so that no file overwrites another"#,
            r#"causeway.toml:41:8: channel[1].name: duplicate channel name "adt" (first at line 13)"#,
            r#"causeway.toml:42:36: channel[1].source.listen: port 2575 is already used by channel "adt" (line 14)"#,
            r#"causeway.toml:46:34: channel[2].source.path: invalid url path "hl7": expected /letters-digits-and/slashes (no `.` or `..` segment, no trailing slash), e.g. "/hl7/adt""#,
        ]),
    );
}

#[test]
fn http_source_paths_that_no_client_could_reach_or_that_the_api_serves_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let bad = [
        ("/hl7/../api", "invalid url path"),
        ("/hl7/./adt", "invalid url path"),
        ("/hl7/adt/", "invalid url path"),
        ("/api/messages", "is under /api, which the HTTP API serves"),
        ("/fhir", "is under /fhir, which the HTTP API serves"),
    ];
    let mut text = String::from("[server]\nhttp = \"127.0.0.1:0\"\n");
    for (i, (path, _)) in bad.iter().enumerate() {
        text.push_str(&format!(
            "\n[[channel]]\nname = \"c{i}\"\nsource = {{ type = \"http\", path = \"{path}\" }}\n"
        ));
    }
    text.push_str("\n[[channel]]\nname = \"fine\"\nsource = { type = \"http\", path = \"/hl7/adt.v2_in~x\" }\n");
    let got = load_errors(dir.path(), &text);
    for (i, (path, why)) in bad.iter().enumerate() {
        assert!(
            got.iter()
                .any(|e| e.contains(&format!("channel[{i}].source.path:")) && e.contains(why)),
            "{path}: {got:#?}"
        );
    }
    assert_eq!(got.len(), bad.len(), "{got:#?}");
}

#[test]
fn unknown_keys_and_wrong_types_are_all_reported_with_validation_errors() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"[server]
htp = "0.0.0.0:8080"

[[channel]]
name = "adt"
source = { type = "mllp", lisen = "0.0.0.0:2575", tls = { cert = "c.pem", key = "k.pem" } }
enabled = "yes"

  [[channel.destination]]
  name = "x"
  type = "mllp"
  conect = "a:1"

[[channel]]
name = "b"
source = { type = "directory", path = "inbox", listen = "0.0.0.0:1" }
"#;
    let d = dir.path().display();
    assert_errors(
        dir.path(),
        text,
        &[
            "causeway.toml:2:1: server.htp: unknown field `htp`, expected one of `data_dir`, `http`, `log_format`, `tls`, `auth`, `metrics`, `export`".to_string(),
            "causeway.toml:6:10: channel[0].source.listen: missing key (required by mllp sources)".to_string(),
            "causeway.toml:6:27: channel[0].source.lisen: unknown field `lisen`, expected one of `type`, `listen`, `max_connections`, `idle_timeout`, `read_timeout`, `max_frame`, `tls`, `path`, `max_body`, `pattern`, `poll`, `done`, `error`, `max_file`".to_string(),
            format!("causeway.toml:6:66: channel[0].source.tls.cert: file not found: {d}/c.pem"),
            format!("causeway.toml:6:81: channel[0].source.tls.key: file not found: {d}/k.pem"),
            "causeway.toml:7:11: channel[0].enabled: invalid type: string \"yes\", expected a boolean".to_string(),
            "causeway.toml:9:3: channel[0].destination[0].connect: missing key (required by mllp destinations)".to_string(),
            "causeway.toml:12:3: channel[0].destination[0].conect: unknown field `conect`, expected one of `name`, `type`, `format`, `connect`, `tls`, `connect_timeout`, `ack_timeout`, `wait_for_ack`, `url`, `headers`, `timeout`, `dir`, `filename`, `retry`, `parallel`".to_string(),
            format!("causeway.toml:16:39: channel[1].source.path: directory not found: {d}/inbox"),
            "causeway.toml:16:57: channel[1].source.listen: does not apply to directory sources".to_string(),
        ],
    );
}

#[test]
fn syntax_errors_are_all_reported_and_stop_there() {
    let dir = tempfile::tempdir().unwrap();
    let text = "[server\nhttp = \n[[channel]]\nname = \"adt\nsource = { type = \"mllp\" listen = \"x\" }\n";
    assert_errors(
        dir.path(),
        text,
        &strings(&[
            "causeway.toml:1:8: invalid toml: unclosed table, expected `]`",
            "causeway.toml:4:12: invalid toml: invalid basic string, expected `\"`",
            "causeway.toml:5:26: invalid toml: missing comma between key-value pairs, expected `,`",
        ]),
    );
}

/// (configuration, exact errors): one problem area per row.
#[test]
fn error_table() {
    let cases: &[(&str, &[&str])] = &[
        (
            "[[channel]]\nname = \"a\"\nsource = { type = \"mllp\", listen = \"127.0.0.1:0\" }\n\
             [channel.drift]\nbaseline_messages = 0\nfill_rate_change = 0\nwindow = 100000\n\
             baseline_duration = \"soon\"\nignore = [\"PID-8\", \"pid\", \"PID-0\"]\n",
            &[
                "causeway.toml:5:21: channel[0].drift.baseline_messages: 0 needs a baseline_duration: the baseline would be empty",
                "causeway.toml:6:20: channel[0].drift.fill_rate_change: must be from 1 to 100",
                "causeway.toml:7:10: channel[0].drift.window: must be from 1 to 10000",
                "causeway.toml:8:21: channel[0].drift.baseline_duration: invalid duration \"soon\": expected a whole number and a unit (ms, s, m, h, d), e.g. \"30s\"",
                "causeway.toml:9:20: channel[0].drift.ignore[1]: \"pid\" is not a segment (\"ZPD\") or a field (\"PID-8\", 1 to 200)",
                "causeway.toml:9:27: channel[0].drift.ignore[2]: \"PID-0\" is not a segment (\"ZPD\") or a field (\"PID-8\", 1 to 200)",
            ],
        ),
        (
            "[server.export]\nmax_jobs = 0\nfile_expiry = \"90d\"\nmax_file_size = \"0B\"\n",
            &[
                "causeway.toml:2:12: server.export.max_jobs: must be from 1 to 64",
                "causeway.toml:3:15: server.export.file_expiry: must be at most 30d",
                "causeway.toml:4:17: server.export.max_file_size: must be larger than 0",
            ],
        ),
        (
            "[[channel]]\nenabled = false\n",
            &[
                "causeway.toml:1:1: channel[0].name: missing key (every channel needs a name)",
                "causeway.toml:1:1: channel[0].source: missing key (every channel needs a source)",
            ],
        ),
        (
            "[[channel]]\nname = \"a/b\"\nsource = { type = \"tcp\" }\n[[channel]]\nname = \"c\"\nsource = { listen = \"x:1\" }\n",
            &[
                "causeway.toml:2:8: channel[0].name: invalid name \"a/b\": use letters, digits, '-', '_' and '.' (not first)",
                "causeway.toml:3:19: channel[0].source.type: unknown source type \"tcp\": expected \"mllp\", \"http\", \"directory\" or \"fhir-api\"",
                "causeway.toml:6:10: channel[1].source.type: missing key (\"mllp\", \"http\", \"directory\" or \"fhir-api\")",
            ],
        ),
        (
            r#"[tables."bad name"]
x = "y"

[[channel]]
name = "a"
source = { type = "mllp", listen = "0.0.0.0:2575" }
  [[channel.transform]]
  rename = { from = "PID-2", to = "PID-2" }
  [[channel.transform]]
  drop_segments = ["ZPD", "MSH"]
  [[channel.transform]]
  delete = "MSH-2"
  [[channel.transform]]
  add_segment = { after = "pid", segment = "ZCW|1" }
  [[channel.transform]]
  add_segment = { before = "PV1", segment = "ZC|1" }
  [[channel.transform]]
  set = { path = "PID-3" }
  [[channel.transform]]
  map = { path = "PID-8", table = "sex" }
  [[channel.transform]]
  rename_segment = { from = "ZPI", to = "MSH" }
  [[channel.transform]]
  copy = { from = "PID-3", to = "PID-3.x" }
  [[channel.transform]]
"#,
            &[
                "causeway.toml:1:1: tables.bad name: invalid name \"bad name\": use letters, digits, '-', '_' and '.' (not first)",
                "causeway.toml:8:35: channel[0].transform[0].rename.to: `from` and `to` are the same path",
                "causeway.toml:10:27: channel[0].transform[1].drop_segments[1]: the MSH segment cannot be dropped",
                "causeway.toml:12:12: channel[0].transform[2].delete: MSH-2 holds the message's delimiters and cannot be changed",
                "causeway.toml:14:27: channel[0].transform[3].add_segment.after: invalid segment id \"pid\": expected 3 upper-case letters or digits",
                "causeway.toml:16:45: channel[0].transform[4].add_segment.segment: invalid segment \"ZC|1\": expected a 3-character segment id such as ZCW",
                "causeway.toml:18:9: channel[0].transform[5].set.value: missing key (set needs `value`)",
                "causeway.toml:20:35: channel[0].transform[6].map.table: unknown code table \"sex\" (defined: bad name)",
                "causeway.toml:22:41: channel[0].transform[7].rename_segment.to: the MSH segment cannot be a rename target",
                "causeway.toml:24:33: channel[0].transform[8].copy.to: invalid path \"PID-3.x\": expected a component number",
                "causeway.toml:25:3: channel[0].transform[9]: expected one of set, copy, delete, rename, map, add_segment, drop_segments, rename_segment, script",
            ],
        ),
        (
            r#"[[channel]]
name = "a"
source = { type = "mllp", listen = "0.0.0.0:2575" }
  [[channel.destination]]
  name = "m"
  type = "mllp"
  connect = "lab:0"
  url = "http://x"
  tls = { cert = "c.pem" }
  ack_timeout = "0s"
  wait_for_ack = "never"
  [[channel.destination]]
  name = "h"
  type = "http"
  url = "ftp://x"
  headers = { "Bad Name" = "v", Ok = "line\nbreak" }
  [[channel.destination]]
  name = "f"
  type = "file"
  filename = "../{id}"
  [[channel.destination]]
  name = "q"
  type = "smtp"
  retry = { initial = "0s", max_attempts = -1 }
  [[channel.destination]]
  type = "file"
  dir = "x"
"#,
            &[
                "causeway.toml:7:13: channel[0].destination[0].connect: invalid address \"lab:0\": the port must be a number from 1 to 65535",
                "causeway.toml:8:9: channel[0].destination[0].url: does not apply to mllp destinations",
                "causeway.toml:9:9: channel[0].destination[0].tls.ca: missing key (tls needs `ca`)",
                "causeway.toml:9:9: channel[0].destination[0].tls.key: missing key (`cert` needs `key`)",
                "causeway.toml:10:17: channel[0].destination[0].ack_timeout: must be longer than 0",
                "causeway.toml:11:18: channel[0].destination[0].wait_for_ack: unknown value \"never\": expected \"as-asked\" or \"always\"",
                "causeway.toml:15:9: channel[0].destination[1].url: invalid url \"ftp://x\": expected http:// or https://",
                "causeway.toml:16:28: channel[0].destination[1].headers.Bad Name: invalid header name \"Bad Name\"",
                "causeway.toml:16:38: channel[0].destination[1].headers.Ok: the header value contains a line break or nul",
                "causeway.toml:17:3: channel[0].destination[2].dir: missing key (required by file destinations)",
                "causeway.toml:20:14: channel[0].destination[2].filename: invalid file name \"../{id}\": a file name, without directories",
                "causeway.toml:23:10: channel[0].destination[3].type: unknown destination type \"smtp\": expected \"mllp\", \"http\", \"file\" or \"fhir-store\"",
                "causeway.toml:24:23: channel[0].destination[3].retry.initial: must be longer than 0",
                "causeway.toml:24:44: channel[0].destination[3].retry.max_attempts: must be from 0 to 4294967295",
                "causeway.toml:25:3: channel[0].destination[4].name: missing key (every destination needs a name)",
            ],
        ),
        (
            r#"[server]
http = "0.0.0.0:8080"
[[channel]]
name = "a"
source = { type = "mllp", listen = "127.0.0.1:8080" }
[[channel]]
name = "b"
source = { type = "http", path = "/hl7/x" }
[[channel]]
name = "c"
source = { type = "http", path = "/hl7/x" }
[[channel]]
name = "d"
enabled = false
source = { type = "mllp", listen = "0.0.0.0:8080" }
"#,
            &[
                "causeway.toml:5:36: channel[0].source.listen: port 8080 is already used by server.http (line 2)",
                "causeway.toml:11:34: channel[2].source.path: url path \"/hl7/x\" is already used by channel \"b\" (line 8)",
            ],
        ),
        (
            r#"[[channel]]
name = "a"
source = { type = "http", path = "/hl7/a" }
retention = { payload = "400d", metadata = "0d" }
[[channel]]
name = "b"
source = { type = "mllp", listen = "[::]:2575" }
retention = { payload = "400d", metadata = "365d" }
[[channel]]
name = "c"
source = { type = "mllp", listen = "[::1]:2575" }
"#,
            &[
                "causeway.toml:3:34: channel[0].source.path: http sources are served on server.http, which is not set",
                "causeway.toml:4:44: channel[0].retention.metadata: must be longer than 0 (leave the key out to keep forever)",
                "causeway.toml:8:25: channel[1].retention.payload: payloads (400d) cannot be kept longer than metadata (365d)",
                "causeway.toml:11:36: channel[2].source.listen: port 2575 is already used by channel \"b\" (line 7)",
            ],
        ),
        (
            r#"[store]
group_commit_max_wait = "2s"
[[channel]]
name = "a"
source = { type = "mllp", listen = "0.0.0.0:2575" }
accept = { types = ["ADT^A01^X"], processing_ids = ["", "Q"] }
  [[channel.filter]]
  [[channel.filter]]
  when = "PID-8 = 'M'"
  [[channel.filter]]
  when = 'PID-3 matches "(unclosed"'
"#,
            &[
                "causeway.toml:2:25: store.group_commit_max_wait: must be at most 1s (every ack waits this long)",
                "causeway.toml:6:21: channel[0].accept.types[0]: invalid message type pattern \"ADT^A01^X\": expected CODE^EVENT, e.g. \"ADT^A01\" or \"ORU^*\"",
                "causeway.toml:6:53: channel[0].accept.processing_ids[0]: the value is empty",
                "causeway.toml:6:57: channel[0].accept.processing_ids[1]: unknown processing id \"Q\": expected P (production), T (training) or D (debugging), HL7 table 0103",
                "causeway.toml:7:3: channel[0].filter[0]: the filter has no condition",
                "causeway.toml:9:10: channel[0].filter[1].when: invalid condition: expected an operator (==, !=, in, not in, matches) at character 7",
                "causeway.toml:11:10: channel[0].filter[2].when: invalid condition: invalid regular expression: unclosed group at character 15",
            ],
        ),
        (
            // Shape errors are set aside one by one, and what they leave behind (a filter
            // now without conditions, a transform without a key) is not reported again.
            "[sever]\nhttp = \"x\"\n\n[[channel]]\nname = \"a\"\nsource = \"mllp\"\n  [[channel.filter]]\n  tipes = [\"ADT\"]\n  [[channel.transform]]\n  set = \"x\"\n",
            &[
                "causeway.toml:1:2: sever: unknown field `sever`, expected one of `server`, `store`, `tables`, `channel`, `alerts`, `notifier`, `alert`",
                "causeway.toml:6:10: channel[0].source: invalid type: string \"mllp\", expected a table",
                "causeway.toml:8:3: channel[0].filter[0].tipes: unknown field `tipes`, expected one of `types`, `structures`, `versions`, `sending_applications`, `sending_facilities`, `when`",
                "causeway.toml:10:9: channel[0].transform[0].set: invalid type: string \"x\", expected a table",
            ],
        ),
    ];
    let mut wrong = Vec::new();
    for (text, want) in cases {
        let dir = tempfile::tempdir().unwrap();
        let got = load_errors(dir.path(), text);
        if got != strings(want) {
            wrong.push(format!(
                "{text}\n--- got\n{}\n--- want\n{}\n",
                got.join("\n"),
                want.join("\n")
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n======\n"));
}

#[test]
fn the_default_configuration_validates_and_matches_its_toml() {
    let parsed = Config::from_str(DEFAULT_CONFIG_TOML, ".").unwrap();
    let built = Config::default_config();
    assert_eq!(parsed.server, built.server);
    assert_eq!(built.server.data_dir, PathBuf::from("./causeway-data"));
    assert_eq!(parsed.store, built.store);
    assert_eq!(parsed.channels.len(), 1);
    let (p, b) = (&parsed.channels[0], &built.channels[0]);
    assert_eq!((p.name.as_str(), p.enabled), ("default", true));
    assert_eq!((b.name.as_str(), b.enabled), ("default", true));
    assert_eq!(p.source, b.source);
    assert_eq!(p.accept, b.accept);
    assert_eq!(p.retention, b.retention);
    assert!(b.filters.is_empty() && b.transforms.is_empty());
    assert!(p.filters.is_empty() && p.transforms.is_empty());
    assert_eq!(p.destinations, b.destinations);
    assert_eq!(b.destinations.len(), 1);
    assert_eq!(b.destinations[0].kind, DestinationKind::FhirStore);
    assert_eq!(built.server.http.as_deref(), Some("0.0.0.0:8080"));
    let SourceConfig::Mllp(m) = &b.source else {
        panic!("the default source is mllp")
    };
    assert_eq!(m.listen, "0.0.0.0:2575");
    assert!(m.tls.is_none());
}

#[test]
fn a_valid_file_gives_resolved_values_and_defaults() {
    let dir = tempfile::tempdir().unwrap();
    for f in [
        "certs/s.pem",
        "certs/s-key.pem",
        "certs/ca.pem",
        "t/adt.rhai",
    ] {
        let p = dir.path().join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, "").unwrap();
    }
    std::fs::create_dir(dir.path().join("inbox")).unwrap();
    let text = r#"
[server]
data_dir = "/var/lib/causeway"
http = "127.0.0.1:0"
log_format = "json"

[server.export]
max_jobs = 4
file_expiry = "2h"

[store]
group_commit_max_messages = 64
group_commit_max_wait = "2ms"

[[channel]]
name = "adt"
source = { type = "mllp", listen = "0.0.0.0:2575", max_frame = "512KiB", idle_timeout = "1h", tls = { cert = "certs/s.pem", key = "certs/s-key.pem" } }
retention = { payload = "30d" }
  [[channel.transform]]
  script = "t/adt.rhai"
  [[channel.destination]]
  name = "lab"
  type = "mllp"
  connect = "lab.example.org:2576"
  tls = { ca = "certs/ca.pem" }
  retry = { initial = "500ms", max = "1m", max_attempts = 5 }
  parallel = 3
  [[channel.destination]]
  name = "hook"
  type = "http"
  url = "https://hook.example.org/in"
  headers = { Authorization = "Bearer t" }
  [[channel.destination]]
  name = "out"
  type = "file"
  dir = "out"

[[channel]]
name = "files"
source = { type = "directory", path = "inbox" }
"#;
    let file = dir.path().join("causeway.toml");
    std::fs::write(&file, text).unwrap();
    let c = Config::load(&file).unwrap();
    let d = dir.path();
    assert_eq!(c.file.as_deref(), Some(file.as_path()));
    assert_eq!(c.base_dir, d);
    assert_eq!(c.server.data_dir, PathBuf::from("/var/lib/causeway"));
    assert_eq!(c.server.http.as_deref(), Some("127.0.0.1:0"));
    assert_eq!(c.server.log_format, LogFormat::Json);
    assert_eq!(c.server.export.max_jobs, 4);
    assert_eq!(c.server.export.file_expiry, Duration::from_secs(7200));
    assert_eq!(
        c.server.export.max_file_size,
        256 * 1024 * 1024,
        "the default"
    );
    assert_eq!(c.store.group_commit_max_messages, 64);
    assert_eq!(c.store.group_commit_max_wait, Duration::from_millis(2));
    let adt = c.channel("adt").unwrap();
    let SourceConfig::Mllp(m) = &adt.source else {
        panic!("mllp source expected")
    };
    assert_eq!(m.max_frame, 512 * 1024);
    assert_eq!(m.idle_timeout, Duration::from_secs(3600));
    assert_eq!(m.read_timeout, Duration::from_secs(30));
    assert_eq!(m.max_connections, 256);
    let tls = m.tls.as_ref().unwrap();
    assert_eq!(tls.cert, d.join("certs/s.pem"));
    assert_eq!(tls.client_ca, None);
    assert_eq!(
        adt.retention.payload,
        Some(Duration::from_secs(30 * 86_400))
    );
    assert_eq!(adt.retention.metadata, None);
    assert_eq!(adt.transforms.len(), 1);
    assert!(adt.transforms.iter().next().unwrap().is_script());
    let lab = &adt.destinations[0];
    assert_eq!(lab.parallel, 3);
    assert_eq!(lab.retry.initial, Duration::from_millis(500));
    assert_eq!(lab.retry.max, Duration::from_secs(60));
    assert_eq!(lab.retry.max_attempts, 5);
    let DestinationKind::Mllp(l) = &lab.kind else {
        panic!("mllp destination expected")
    };
    assert_eq!(l.connect, "lab.example.org:2576");
    let ltls = l.tls.as_ref().unwrap();
    assert_eq!(ltls.server_name, "lab.example.org");
    assert_eq!(ltls.ca, d.join("certs/ca.pem"));
    assert_eq!(l.ack_timeout, Duration::from_secs(30));
    let DestinationKind::Http(h) = &adt.destinations[1].kind else {
        panic!("http destination expected")
    };
    assert_eq!(
        h.headers,
        vec![("Authorization".to_string(), "Bearer t".to_string())]
    );
    assert_eq!(adt.destinations[1].retry.max_attempts, 0);
    let DestinationKind::File(f) = &adt.destinations[2].kind else {
        panic!("file destination expected")
    };
    assert_eq!(f.dir, d.join("out"));
    assert_eq!(f.filename.as_str(), "{channel}-{id}.hl7");
    let SourceConfig::Directory(src) = &c.channel("files").unwrap().source else {
        panic!("directory source expected")
    };
    assert_eq!(src.path, d.join("inbox"));
    assert_eq!(src.done, d.join("inbox").join("done"));
    assert_eq!(src.pattern.as_str(), "*.hl7");
    assert_eq!(c.enabled_channels().count(), 2);
}

#[test]
fn unreadable_files_are_reported_with_their_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.toml");
    let errors = Config::load(&missing).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].kind, ConfigErrorKind::Io);
    assert_eq!(
        errors[0].to_string(),
        format!("{}: no such file or directory", missing.display())
    );
    let binary = dir.path().join("binary.toml");
    std::fs::write(&binary, b"name = \"\xff\"").unwrap();
    assert_eq!(
        Config::load(&binary).unwrap_err()[0].to_string(),
        format!("{}: not utf-8 text (byte 8)", binary.display())
    );
}

#[test]
fn scripts_are_compiled_at_load_and_import_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("imports.rhai"), "import \"os\" as os;\n").unwrap();
    std::fs::write(
        dir.path().join("broken.rhai"),
        "let x = msg.get(\"PID-8\");\nif x == { }\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("typo.rhai"), "msg.set(\"PID-8\", sexx);\n").unwrap();
    let text = r#"[[channel]]
name = "a"
source = { type = "mllp", listen = "0.0.0.0:2575" }
  [[channel.transform]]
  script = "imports.rhai"
  [[channel.transform]]
  script = "broken.rhai"
  [[channel.transform]]
  script = "typo.rhai"
  [[channel.transform]]
  script = "absent.rhai"
"#;
    let d = dir.path().display();
    assert_errors(
        dir.path(),
        text,
        &[
            "causeway.toml:5:12: channel[0].transform[0].script: script imports.rhai does not compile: 'import' is a reserved keyword at line 1, position 1".to_string(),
            "causeway.toml:7:12: channel[0].transform[1].script: script broken.rhai does not compile: expecting '{' to start a statement block at line 3, position 1".to_string(),
            "causeway.toml:9:12: channel[0].transform[2].script: script typo.rhai does not compile: undefined variable: sexx at line 1, position 18".to_string(),
            format!("causeway.toml:11:12: channel[0].transform[3].script: file not found: {d}/absent.rhai"),
        ],
    );
}

fn reference() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Fenced blocks of one language: (line of the opening fence, text).
fn blocks(doc: &str, lang: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, line) in doc.lines().enumerate() {
        match &mut current {
            None if line.trim_start() == format!("```{lang}") => {
                current = Some((i + 1, String::new()))
            }
            Some((start, text)) => {
                if line.trim_start() == "```" {
                    out.push((*start, std::mem::take(text)));
                    current = None;
                } else {
                    text.push_str(line);
                    text.push('\n');
                }
            }
            None => {}
        }
    }
    out
}

fn touch(path: &Path, content: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

#[test]
fn every_toml_example_in_the_reference_validates() {
    let doc = reference();
    let scripts = blocks(&doc, "rhai");
    assert_eq!(scripts.len(), 1, "the reference shows one example script");
    let script = &scripts[0].1;
    let examples = blocks(&doc, "toml");
    assert!(
        examples.len() >= 7,
        "found only {} toml examples",
        examples.len()
    );
    for (line, text) in &examples {
        // Create the files and directories the example names, as a deployment would have them.
        let dir = tempfile::tempdir().unwrap();
        let raw: RawConfig =
            toml::from_str(text).unwrap_or_else(|e| panic!("docs/configuration.md:{line}: {e}"));
        if let Some(auth) = raw.server.as_ref().and_then(|s| s.get_ref().auth.as_ref()) {
            for c in &auth.get_ref().client {
                let c = c.get_ref();
                for f in [&c.jwks, &c.public_key].into_iter().flatten() {
                    touch(&dir.path().join(f.get_ref()), "");
                }
            }
        }
        for ch in &raw.channel {
            let ch = ch.get_ref();
            if let Some(src) = &ch.source {
                let s = src.get_ref();
                if let Some(tls) = &s.tls {
                    let t = tls.get_ref();
                    for f in [&t.cert, &t.key, &t.client_ca].into_iter().flatten() {
                        touch(&dir.path().join(f.get_ref()), "");
                    }
                }
                if s.kind.as_ref().map(|k| k.get_ref().as_str()) == Some("directory") {
                    let p = s.path.as_ref().unwrap();
                    std::fs::create_dir_all(dir.path().join(p.get_ref())).unwrap();
                }
            }
            if let Some(profiles) = ch.fhir.as_ref().and_then(|f| f.get_ref().profiles.as_ref()) {
                std::fs::create_dir_all(dir.path().join(profiles.get_ref())).unwrap();
            }
            for t in &ch.transform {
                if let Some(s) = &t.get_ref().script {
                    touch(&dir.path().join(s.get_ref()), script);
                }
            }
            for d in &ch.destination {
                if let Some(tls) = &d.get_ref().tls {
                    let t = tls.get_ref();
                    for f in [&t.ca, &t.cert, &t.key].into_iter().flatten() {
                        touch(&dir.path().join(f.get_ref()), "");
                    }
                }
            }
        }
        if let Err(errors) = Config::from_str(text, dir.path()) {
            let shown: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            panic!(
                "the example at docs/configuration.md:{line} does not validate:\n{}",
                shown.join("\n")
            );
        }
    }
}

#[test]
fn the_error_example_in_the_reference_is_real() {
    // The reference opens with three error lines; each must appear verbatim in what the
    // validator says about MANY_ERRORS (same lines, same columns).
    let doc = reference();
    let shown = &blocks(&doc, "text")[0].1;
    let dir = tempfile::tempdir().unwrap();
    let text = MANY_ERRORS;
    let got = load_errors(dir.path(), text);
    for line in shown.lines() {
        assert!(
            got.iter().any(|g| g == line),
            "the reference shows an error the validator does not give:\n{line}\n--- got\n{}",
            got.join("\n")
        );
    }
}

fn t(s: &str) -> Text {
    Some(Spanned::new(0..0, s.to_string()))
}

fn n(i: i64) -> Int {
    Some(Spanned::new(0..0, i))
}

fn list(items: &[&str]) -> TextList {
    Some(Spanned::new(
        0..0,
        items
            .iter()
            .map(|s| Spanned::new(0..0, s.to_string()))
            .collect(),
    ))
}

fn s<T>(v: T) -> Spanned<T> {
    Spanned::new(0..0, v)
}

/// A configuration with every key of every raw struct set. Struct literals without `..`
/// make a new key a compile error here until it is added, and so until it is documented.
fn every_key() -> RawConfig {
    let source = RawSource {
        kind: t("mllp"),
        listen: t("0.0.0.0:2575"),
        max_connections: n(1),
        idle_timeout: t("1s"),
        read_timeout: t("1s"),
        max_frame: t("1MiB"),
        tls: Some(s(RawServerTls {
            cert: t("c"),
            key: t("k"),
            client_ca: t("ca"),
        })),
        path: t("/p"),
        max_body: t("1MiB"),
        pattern: t("*"),
        poll: t("1s"),
        done: t("d"),
        error: t("e"),
        max_file: t("1MiB"),
    };
    let transform = RawTransform {
        set: Some(s(RawSet {
            path: t("PID-1"),
            value: t("x"),
        })),
        copy: Some(s(RawFromTo {
            from: t("PID-1"),
            to: t("PID-2"),
        })),
        delete: Some(s(OneOrMany::One("PID-1".into()))),
        rename: Some(s(RawFromTo {
            from: t("PID-1"),
            to: t("PID-2"),
        })),
        map: Some(s(RawMap {
            path: t("PID-8"),
            table: t("sex"),
            default: t("U"),
        })),
        add_segment: Some(s(RawAddSegment {
            segment: t("ZCW|1"),
            after: t("PID"),
            before: t("PV1"),
        })),
        drop_segments: Some(s(OneOrMany::Many(vec![s("ZPD".to_string())]))),
        rename_segment: Some(s(RawFromTo {
            from: t("ZPI"),
            to: t("ZP1"),
        })),
        script: t("s.rhai"),
    };
    let destination = RawDestination {
        name: t("d"),
        kind: t("mllp"),
        format: t("fhir"),
        connect: t("h:1"),
        tls: Some(s(RawClientTls {
            ca: t("ca"),
            server_name: t("h"),
            cert: t("c"),
            key: t("k"),
        })),
        connect_timeout: t("1s"),
        ack_timeout: t("1s"),
        wait_for_ack: t("always"),
        url: t("http://h"),
        headers: Some(s(
            [("X-Custom-Header".to_string(), s("v".to_string()))].into()
        )),
        timeout: t("1s"),
        dir: t("d"),
        filename: t("{id}"),
        retry: Some(s(RawRetry {
            initial: t("1s"),
            max: t("1s"),
            max_attempts: n(1),
        })),
        parallel: n(1),
    };
    let channel = RawChannel {
        fhir: Some(s(RawFhir {
            profiles: t("profiles"),
        })),
        name: t("c"),
        enabled: Some(s(true)),
        source: Some(s(source)),
        accept: Some(s(RawAccept {
            types: list(&["ADT"]),
            versions: list(&["2.5"]),
            processing_ids: list(&["P"]),
        })),
        retention: Some(s(RawRetention {
            payload: t("1d"),
            metadata: t("2d"),
        })),
        filter: vec![s(RawFilter {
            types: list(&["ADT"]),
            structures: list(&["ADT_A01"]),
            versions: list(&["2.5"]),
            sending_applications: list(&["A"]),
            sending_facilities: list(&["F"]),
            when: Some(s(OneOrMany::One("PID-8 == 'M'".into()))),
        })],
        transform: vec![s(transform)],
        destination: vec![s(destination)],
        write_back: Some(s(RawWriteBack {
            resources: list(&["ServiceRequest"]),
            sending_application: t("CAUSEWAY"),
            sending_facility: t("HUB"),
            receiving_application: t("EHR"),
            receiving_facility: t("MAIN"),
            version: t("2.5.1"),
            order_message: t("ORM^O01"),
            sync_timeout: t("30s"),
        })),
        drift: Some(s(RawDrift {
            enabled: Some(s(true)),
            baseline_messages: n(500),
            baseline_duration: t("1d"),
            fill_rate_change: n(50),
            window: n(100),
            min_samples: n(50),
            max_values: n(256),
            ignore: list(&["ZPD"]),
        })),
    };
    RawConfig {
        server: Some(s(RawServer {
            data_dir: t("d"),
            http: t("0.0.0.0:8080"),
            log_format: t("text"),
            tls: Some(s(RawServerTls {
                cert: t("c"),
                key: t("k"),
                client_ca: t("ca"),
            })),
            auth: Some(s(RawAuth {
                token_lifetime: t("5m"),
                session_lifetime: t("8h"),
                secure_cookies: Some(s(true)),
                token_url: t("https://h/auth/token"),
                requests_per_minute: n(6000),
                client: vec![s(RawAuthClient {
                    id: t("c"),
                    jwks: t("c.jwks"),
                    public_key: t("c.pem"),
                    scopes: list(&["system/*.read"]),
                })],
            })),
            metrics: Some(s(RawMetrics {
                token_env: t("CAUSEWAY_METRICS_TOKEN"),
            })),
            export: Some(s(RawExport {
                max_jobs: n(2),
                file_expiry: t("1d"),
                max_file_size: t("256MiB"),
            })),
        })),
        store: Some(s(RawStore {
            group_commit_max_messages: n(1),
            group_commit_max_wait: t("1ms"),
        })),
        tables: [(
            "user-table-name".to_string(),
            s([("A".to_string(), "B".to_string())].into()),
        )]
        .into(),
        channel: vec![s(channel)],
        alerts: Some(s(RawAlerts {
            evaluate_every: t("10s"),
        })),
        notifier: vec![s(RawNotifier {
            name: t("n"),
            kind: t("webhook"),
            url: t("http://h"),
            headers: Some(s([("Authorization".to_string(), s("v".to_string()))].into())),
            timeout: t("1s"),
            retries: n(1),
            host: t("smtp.example.org"),
            port: n(587),
            security: t("starttls"),
            username: t("u"),
            password: t("p"),
            password_env: t("P"),
            from: t("a@example.org"),
            to: list(&["b@example.org"]),
            subject_prefix: t("[x]"),
        })],
        alert: vec![s(RawAlert {
            name: t("a"),
            kind: t("error_rate"),
            channel: t("c"),
            destination: t("d"),
            pending_for: t("1m"),
            clear_for: t("1m"),
            notify: list(&["n"]),
            renotify: t("1h"),
            severity: t("critical"),
            window: t("5m"),
            threshold: Some(s(0.1)),
            min_messages: n(10),
            max: n(10),
            max_age: t("1m"),
            days: list(&["mon"]),
            hours: t("07:00-19:00"),
            timezone: t("UTC"),
            failures: n(3),
            no_success_for: t("1m"),
            quantile: Some(s(0.95)),
            objective: t("1s"),
        })],
    }
}

/// Key names in a TOML value, skipping the contents of tables whose keys are user data.
fn key_names(value: &toml::Value, out: &mut BTreeSet<String>) {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t {
                out.insert(k.clone());
                if k != "tables" && k != "headers" {
                    key_names(v, out);
                }
            }
        }
        toml::Value::Array(items) => items.iter().for_each(|i| key_names(i, out)),
        _ => {}
    }
}

#[test]
fn every_key_is_in_the_reference() {
    let text = toml::to_string(&every_key()).unwrap();
    let value: toml::Value = toml::from_str(&text).unwrap();
    let mut keys = BTreeSet::new();
    key_names(&value, &mut keys);
    // Nested keys are reached (the walk is not stopping at the top).
    for nested in [
        "client_ca",
        "max_attempts",
        "server_name",
        "processing_ids",
        "when",
    ] {
        assert!(keys.contains(nested), "{nested} missing from {keys:?}");
    }
    let doc = reference();
    let undocumented: Vec<&String> = keys
        .iter()
        .filter(|k| {
            // As `key` in text, or as a table header: `[server]`, `[[channel]]`, `[tables.NAME]`.
            !(doc.contains(&format!("`{k}`"))
                || doc.contains(&format!("`[{k}]`"))
                || doc.contains(&format!("`[[{k}]]`"))
                || doc.contains(&format!("`[{k}.")))
        })
        .collect();
    assert!(
        undocumented.is_empty(),
        "docs/configuration.md does not mention these keys: {undocumented:?}"
    );
    // And the documented example of every key is itself accepted by the parser.
    let back: RawConfig = toml::from_str(&text).unwrap();
    assert_eq!(back.channel.len(), 1);
}

#[test]
fn alert_rules_and_notifiers_are_checked_all_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"[[channel]]
name = "adt"
source = { type = "mllp", listen = "127.0.0.1:0" }
  [[channel.destination]]
  name = "lab"
  type = "mllp"
  connect = "127.0.0.1:2575"

[alerts]
evaluate_every = "1ms"

[[notifier]]
name = "hook"
type = "webhook"
url = "ftp://x"
host = "smtp.example.org"

[[notifier]]
name = "mail"
type = "email"
from = "not an address"
password_env = "CAUSEWAY_TEST_UNSET_VARIABLE"

[[notifier]]
name = "hook"
type = "log"

[[alert]]
name = "a1"
type = "error_rate"
notify = ["hook", "pager"]
threshold = 1.5

[[alert]]
name = "a2"
type = "queue_depth"
channel = "nope"
destination = "lab"

[[alert]]
name = "a3"
type = "destination_down"
destination = "ris"
window = "5m"

[[alert]]
name = "a4"
type = "silence"
days = ["mon", "fry"]
hours = "7-19"
timezone = "Mars/Olympus"

[[alert]]
name = "a5"
type = "ack_time"
quantile = 95
objective = "soon"
for = "2 m"

[[alert]]
name = "a1"
type = "errors"
"#;
    assert_errors(
        dir.path(),
        text,
        &strings(&[
            "causeway.toml:10:18: alerts.evaluate_every: must be at least 10ms",
            "causeway.toml:15:7: notifier[0].url: invalid url \"ftp://x\": expected http:// or https://",
            "causeway.toml:16:8: notifier[0].host: does not apply to webhook notifiers",
            "causeway.toml:18:1: notifier[1].host: missing key (the SMTP server of email notifiers)",
            "causeway.toml:18:1: notifier[1].to: missing key (the recipients of email notifiers)",
            "causeway.toml:21:8: notifier[1].from: invalid e-mail address \"not an address\": expected name@domain or \"Name <name@domain>\"",
            "causeway.toml:22:16: notifier[1].password_env: the environment variable \"CAUSEWAY_TEST_UNSET_VARIABLE\" is not set",
            "causeway.toml:22:16: notifier[1].username: a password needs a `username` to sign in with",
            "causeway.toml:25:8: notifier[2].name: duplicate notifier name \"hook\" (first at line 13)",
            "causeway.toml:31:19: alert[0].notify[1]: unknown notifier \"pager\" (defined: hook, mail)",
            "causeway.toml:32:13: alert[0].threshold: must be from 0 to below 1 (a share of the messages received: 0.05 is 5%)",
            "causeway.toml:34:1: alert[1].max: missing key (the queue depth above which the alert fires)",
            "causeway.toml:37:11: alert[1].channel: unknown channel \"nope\"",
            "causeway.toml:40:1: alert[2].failures: missing key (`failures` (consecutive failed attempts) or `no_success_for` (a duration), or both)",
            "causeway.toml:43:15: alert[2].destination: no channel has a destination \"ris\"",
            "causeway.toml:44:10: alert[2].window: does not apply to destination_down alerts",
            "causeway.toml:46:1: alert[3].window: missing key (how long without a message before the alert fires)",
            "causeway.toml:49:16: alert[3].days[1]: unknown day \"fry\": expected \"mon\", \"tue\", \"wed\", \"thu\", \"fri\", \"sat\" or \"sun\"",
            "causeway.toml:50:9: alert[3].hours: invalid hours \"7-19\": expected \"HH:MM-HH:MM\", e.g. \"07:00-19:00\"",
            "causeway.toml:51:12: alert[3].timezone: unknown time zone \"Mars/Olympus\": expected \"UTC\", an offset such as \"+01:00\", or a name such as \"Europe/Paris\"",
            "causeway.toml:56:12: alert[4].quantile: must be between 0 and 1 (0.95 is the 95th percentile)",
            "causeway.toml:57:13: alert[4].objective: invalid duration \"soon\": expected a whole number and a unit (ms, s, m, h, d), e.g. \"30s\"",
            "causeway.toml:58:7: alert[4].for: invalid duration \"2 m\": expected a whole number and a unit (ms, s, m, h, d), e.g. \"30s\"",
            "causeway.toml:61:8: alert[5].name: duplicate alert name \"a1\" (first at line 29)",
            "causeway.toml:62:8: alert[5].type: unknown alert type \"errors\": expected \"error_rate\", \"queue_depth\", \"oldest_age\", \"silence\", \"destination_down\", \"ack_time\", \"unmapped_code\", \"drift\" or \"bad_input\"",
        ]),
    );
}
