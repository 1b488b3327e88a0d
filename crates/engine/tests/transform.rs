//! Every transform, configured from TOML as a user would, applied to real messages from the
//! shared corpus; the script sandbox's limits; verdicts of `filter()` and `reject()`.

use std::path::Path;

use causeway_engine::config::Config;
use causeway_engine::transform::{
    ScriptEngine, TransformContext, TransformErrorKind, Transforms, Unmapped, Verdict,
};
use hl7v2::OwnedMessage;

fn corpus(path: &str) -> Vec<u8> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus");
    let file = root.join(path);
    std::fs::read(&file).unwrap_or_else(|e| {
        panic!(
            "cannot read {} ({e}): the shared corpus must lie beside the clone",
            file.display()
        )
    })
}

/// A corpus file with its LF line ends turned into the CR that HL7 (and MLLP) uses.
fn corpus_cr(path: &str) -> String {
    String::from_utf8(corpus(path)).unwrap().replace('\n', "\r")
}

/// A full ADT^A01 (MIT, rethinkhealth/hl7v2): PID with two identifiers and an SSN in
/// PID-19, PV1-3 `ICU^201^A^HOSP_A^^^^LVL2`, NK1, PV2, DG1, IN1.
const ADT: &str = "rethinkhealth-hl7v2/qa/fixtures/adt-a01-full.hl7";
/// ADT^A01 with vendor segments ZVN and ZPD.
const ADT_Z: &str = "rethinkhealth-hl7v2/qa/fixtures/edge-z-segments.hl7";
/// ADT!A01 with the delimiters `#!@%*`.
const ADT_ODD: &str = "rethinkhealth-hl7v2/qa/fixtures/edge-custom-delimiters.hl7";

fn owned(text: &str) -> OwnedMessage {
    hl7v2::parse(text.as_bytes()).unwrap().to_owned_message()
}

fn encoded(m: &OwnedMessage) -> String {
    String::from_utf8(m.encode()).unwrap()
}

/// The transforms of the only channel of a configuration made of `transforms` (TOML entries)
/// and `tables`, with `files` written beside it first.
fn transforms_in(dir: &Path, tables: &str, transforms: &str, files: &[(&str, &str)]) -> Transforms {
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let text = format!(
        "{tables}\n[[channel]]\nname = \"t\"\nsource = {{ type = \"mllp\", listen = \"127.0.0.1:0\" }}\n{transforms}"
    );
    match Config::from_str(&text, dir) {
        Ok(c) => c.channels[0].transforms.clone(),
        Err(errors) => panic!(
            "{}",
            errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

fn transforms(toml: &str) -> Transforms {
    let dir = tempfile::tempdir().unwrap();
    transforms_in(dir.path(), "", toml, &[])
}

/// Applies `t` to `input`, expecting success, and returns the message and the context.
fn apply(t: &Transforms, input: &str) -> (String, TransformContext) {
    let mut m = owned(input);
    let mut ctx = TransformContext::new();
    let verdict = t.apply(&mut m, &mut ctx).unwrap();
    assert_eq!(verdict, Verdict::Continue);
    (encoded(&m), ctx)
}

#[test]
fn set_writes_one_component_and_leaves_everything_else_byte_identical() {
    let adt = corpus_cr(ADT);
    let t = transforms("[[channel.transform]]\nset = { path = \"PV1-3.4\", value = \"MAIN\" }\n");
    let (out, _) = apply(&t, &adt);
    assert_eq!(
        out,
        adt.replace("ICU^201^A^HOSP_A^^^^LVL2", "ICU^201^A^MAIN^^^^LVL2")
    );
    // Delimiters in a value are escaped, not taken as structure.
    let t = transforms(
        "[[channel.transform]]\nset = { path = \"PID-5.1\", value = \"SMITH|JONES^X\" }\n",
    );
    let (out, _) = apply(&t, &adt);
    assert_eq!(
        out,
        adt.replace("|SMITH^ALICE^", "|SMITH\\F\\JONES\\S\\X^ALICE^")
    );
    assert_eq!(owned(&out).text("PID-5.1").unwrap(), "SMITH|JONES^X");
}

#[test]
fn copy_delete_and_rename() {
    let adt = corpus_cr(ADT);
    let t = transforms(
        "[[channel.transform]]\ncopy = { from = \"PID-3(1).1\", to = \"PID-2\" }\n\
         [[channel.transform]]\ndelete = \"PID-19\"\n",
    );
    let (out, _) = apply(&t, &adt);
    assert_eq!(
        out,
        adt.replace("PID|1||98765^", "PID|1|98765|98765^")
            .replace("|ACCT001^^^HOSP_A|123-45-6789|", "|ACCT001^^^HOSP_A||")
    );
    // A move: the SSN repetition goes to PID-4 and its old place is removed.
    let t = transforms("[[channel.transform]]\nrename = { from = \"PID-3(2)\", to = \"PID-4\" }\n");
    let (out, _) = apply(&t, &adt);
    assert_eq!(
        out,
        adt.replace(
            "98765^^^MRN^MR~555-12-3456^^^SSN^SS||",
            "98765^^^MRN^MR|555-12-3456^^^SSN^SS|"
        )
    );
    let m = owned(&out);
    assert_eq!(m.text("PID-4.4").unwrap(), "SSN");
    assert_eq!(m.text("PID-3(2)").as_deref().unwrap_or(""), "");
    // Deleting several paths, one of them absent.
    let t = transforms("[[channel.transform]]\ndelete = [\"PID-19\", \"ZZZ-1\", \"NK1-5\"]\n");
    let (out, _) = apply(&t, &adt);
    assert_eq!(
        out,
        adt.replace("|123-45-6789|", "||").replace(
            "|SPO^Spouse^HL70063|789 OAK AVE^^METROPOLIS^IL^62960|217-555-6543",
            "|SPO^Spouse^HL70063|789 OAK AVE^^METROPOLIS^IL^62960"
        )
    );
}

#[test]
fn map_replaces_known_codes_reports_unknown_ones_and_uses_defaults() {
    let adt = corpus_cr(ADT);
    let dir = tempfile::tempdir().unwrap();
    let tables =
        "[tables.facility-codes]\n\"HOSP_A\" = \"MAIN\"\n\n[tables.other]\n\"X\" = \"Y\"\n";
    let t = transforms_in(
        dir.path(),
        tables,
        "[[channel.transform]]\nmap = { path = \"PV1-3.4\", table = \"facility-codes\" }\n",
        &[],
    );
    let (out, ctx) = apply(&t, &adt);
    assert_eq!(out, adt.replace("^A^HOSP_A^^^^LVL2", "^A^MAIN^^^^LVL2"));
    assert!(ctx.unmapped.is_empty());

    let t = transforms_in(
        dir.path(),
        tables,
        "[[channel.transform]]\nmap = { path = \"PV1-3.4\", table = \"other\" }\n\
         [[channel.transform]]\nmap = { path = \"PV1-99\", table = \"other\" }\n",
        &[],
    );
    let (out, ctx) = apply(&t, &adt);
    assert_eq!(out, adt, "unknown codes stay as they are");
    assert_eq!(
        ctx.unmapped,
        vec![Unmapped {
            table: "other".into(),
            path: "PV1-3.4".into(),
            value: "HOSP_A".into()
        }]
    );

    let t = transforms_in(
        dir.path(),
        tables,
        "[[channel.transform]]\nmap = { path = \"PV1-3.4\", table = \"other\", default = \"UNKNOWN\" }\n",
        &[],
    );
    let (out, ctx) = apply(&t, &adt);
    assert_eq!(out, adt.replace("^A^HOSP_A^^^^LVL2", "^A^UNKNOWN^^^^LVL2"));
    assert!(ctx.unmapped.is_empty());
}

#[test]
fn add_segment_after_before_and_at_the_end() {
    let adt = corpus_cr(ADT);
    let t = transforms(
        "[[channel.transform]]\nadd_segment = { after = \"PID\", segment = \"ZCW|1|CAUSEWAY\" }\n\
         [[channel.transform]]\nadd_segment = { before = \"PID\", segment = \"ZCB|A^B~C\" }\n\
         [[channel.transform]]\nadd_segment = { segment = \"ZCE|end\" }\n",
    );
    let (out, _) = apply(&t, &adt);
    let pid_line_end = adt.find("\rPD1|").unwrap();
    let pid_start = adt.find("PID|").unwrap();
    let want = format!(
        "{}ZCB|A^B~C\r{}\rZCW|1|CAUSEWAY{}ZCE|end\r",
        &adt[..pid_start],
        &adt[pid_start..pid_line_end],
        &adt[pid_line_end..]
    );
    assert_eq!(out, want);

    // With other delimiters, the configured segment is re-encoded in the message's own.
    let odd = corpus_cr(ADT_ODD);
    let t = transforms(
        "[[channel.transform]]\nadd_segment = { after = \"PID\", segment = \"ZCW|A^B~C&D|x\\\\F\\\\y\" }\n",
    );
    let (out, _) = apply(&t, &odd);
    assert_eq!(out, format!("{odd}ZCW#A!B@C*D#x|y\r"));
    assert_eq!(owned(&out).text("ZCW-2").unwrap(), "x|y");
}

#[test]
fn drop_and_rename_segments() {
    let z = corpus_cr(ADT_Z);
    let t = transforms("[[channel.transform]]\ndrop_segments = [\"ZPD\", \"ZVN\"]\n");
    let (out, _) = apply(&t, &z);
    let ids: Vec<String> = owned(&out)
        .segments()
        .iter()
        .map(|s| s.id().to_string())
        .collect();
    assert_eq!(ids, ["MSH", "PID"]);
    assert!(z.starts_with(&out));

    let t =
        transforms("[[channel.transform]]\nrename_segment = { from = \"ZVN\", to = \"ZV1\" }\n");
    let (out, _) = apply(&t, &z);
    assert_eq!(out, z.replace("\rZVN|", "\rZV1|"));
}

#[test]
fn a_missing_segment_fails_the_message_with_the_transform_named() {
    let z = corpus_cr(ADT_Z);
    let t = transforms(
        "[[channel.transform]]\ndelete = \"PV1-3\"\n[[channel.transform]]\nset = { path = \"PV1-3.4\", value = \"MAIN\" }\n",
    );
    let mut m = owned(&z);
    let e = t.apply(&mut m, &mut TransformContext::new()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "transform[1] (set PV1-3.4): the message has no PV1 segment"
    );
    assert_eq!(e.index, 1);
    assert!(!e.is_script_error());
}

const SCRIPT: &str = r#"
// Normalise the sex code, tag the message, drop vendor segments, count them.
let sex = msg.get("PID-8");
if sex != "M" && sex != "F" { msg.set("PID-8", "U"); }
if msg.message_type == "ADT^A01" && msg.count("PV1") > 0 {
    msg.set("PV1-3.4", "MAIN");
}
let dropped = msg.remove_segments("ZVN") + msg.remove_segments("ZPD");
msg.set("PID-2", `${msg.control_id}-${dropped}`);
let ids = msg.segments();
if ids.len() != 2 + msg.count("PV1") { throw "unexpected segments"; }
"#;

#[test]
fn a_script_edits_real_messages() {
    let dir = tempfile::tempdir().unwrap();
    let t = transforms_in(
        dir.path(),
        "",
        "[[channel.transform]]\nscript = \"adt.rhai\"\n",
        &[("adt.rhai", SCRIPT)],
    );
    let (out, _) = apply(&t, &corpus_cr(ADT_Z));
    assert_eq!(
        out,
        "MSH|^~\\&|VENDOR_APP|FAC|RECV|FAC|20260301120000||ADT^A01|MSG003|P|2.5\rPID|1|MSG003-2|99999^^^MRN||TEST^PATIENT||19900101|M\r"
    );
    // The full ADT has a PV1, a female patient and no vendor segments.
    let adt = corpus_cr(ADT);
    let err = {
        let mut m = owned(&adt);
        t.apply(&mut m, &mut TransformContext::new()).unwrap_err()
    };
    // It has 9 segments, so the script's own check throws; the thrown text stays out of the error.
    assert_eq!(
        err.to_string(),
        "transform[0] (script adt.rhai): script threw an error (value withheld from logs) at line 11, position 40"
    );
    assert!(err.is_script_error());
    let TransformErrorKind::Script(s) = &err.kind else {
        panic!("a script error")
    };
    assert_eq!(
        s.kind,
        causeway_engine::transform::ScriptErrorKind::Thrown {
            detail: "unexpected segments".into()
        }
    );
}

#[test]
fn filter_and_reject_end_the_pipeline_with_a_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let t = transforms_in(
        dir.path(),
        "",
        "[[channel.transform]]\nscript = \"verdict.rhai\"\n[[channel.transform]]\nset = { path = \"PID-1\", value = \"after\" }\n",
        &[(
            "verdict.rhai",
            r#"
            if msg.get("PID-5.1") == "TEST" { filter(); }
            if msg.get("PID-8") == "F" { reject("female patients go to another channel"); }
            "#,
        )],
    );
    for (file, verdict, pid1) in [
        (ADT_Z, Verdict::Filter, "1"),
        (
            ADT,
            Verdict::Reject {
                reason: "female patients go to another channel".into(),
            },
            "1",
        ),
        (ADT_ODD, Verdict::Continue, "after"),
    ] {
        let mut m = owned(&corpus_cr(file));
        let mut ctx = TransformContext::new();
        assert_eq!(t.apply(&mut m, &mut ctx).unwrap(), verdict, "{file}");
        assert_eq!(ctx.verdict, verdict);
        assert_eq!(
            m.text("PID-1").unwrap(),
            pid1,
            "{file}: later transforms skipped"
        );
    }
}

fn script_error(text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let t = transforms_in(
        dir.path(),
        "",
        "[[channel.transform]]\nscript = \"s.rhai\"\n",
        &[("s.rhai", text)],
    );
    let mut m = owned(&corpus_cr(ADT));
    let e = t.apply(&mut m, &mut TransformContext::new()).unwrap_err();
    assert!(e.is_script_error(), "{e}");
    e.to_string()
}

#[test]
fn the_sandbox_stops_runaway_scripts() {
    assert_eq!(
        script_error("let n = 0;\nwhile true { n += 1; }\n"),
        "transform[0] (script s.rhai): script stopped: more than 100000 operations at line 2, position 19"
    );
    assert_eq!(
        script_error("let s = msg.get(\"PID-5\");\nloop { s += s; }\n"),
        "transform[0] (script s.rhai): script stopped: length of string too large at line 2, position 10"
    );
    assert_eq!(
        script_error("let a = [];\nloop { a.push(1); }\n"),
        "transform[0] (script s.rhai): script stopped: size of array/blob too large at line 2, position 10"
    );
    assert_eq!(
        script_error("fn deep(n) { deep(n + 1) }\ndeep(0);\n"),
        "transform[0] (script s.rhai): script stopped: calls nested deeper than 32 at line 2, position 1"
    );
    assert_eq!(
        script_error("msg.set(\"ZZZ-1\", \"x\");\n"),
        "transform[0] (script s.rhai): script error: the message has no ZZZ segment at line 1, position 5"
    );
}

#[test]
fn the_sandbox_refuses_imports_and_eval_at_compile_time() {
    let engine = ScriptEngine::new();
    for (text, want) in [
        (
            "import \"fs\" as fs;",
            "'import' is a reserved keyword at line 1, position 1",
        ),
        (
            "let x = eval(\"1\");",
            "reserved keyword 'eval' is disabled at line 1, position 9",
        ),
        ("print(msg.get(\"PID-5\"));", ""),
    ] {
        match engine.compile("t.rhai", text) {
            Ok(_) => assert_eq!(want, "", "{text} compiled"),
            Err(e) => assert_eq!(e, want, "{text}"),
        }
    }
}

#[test]
fn scripts_share_one_engine_per_configuration_and_run_concurrently() {
    // The compiled config is Send + Sync: transforms run on the runtime's worker threads.
    fn assert_send_sync<T: Send + Sync>(_: &T) {}
    let dir = tempfile::tempdir().unwrap();
    let t = transforms_in(
        dir.path(),
        "",
        "[[channel.transform]]\nscript = \"adt.rhai\"\n",
        &[(
            "adt.rhai",
            "msg.set(\"PID-1\", msg.get(\"PID-1\") + \"x\");",
        )],
    );
    assert_send_sync(&t);
    let adt = corpus_cr(ADT);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..50 {
                    let (out, _) = apply(&t, &adt);
                    assert!(out.contains("\rPID|1x||"));
                }
            });
        }
    });
}
