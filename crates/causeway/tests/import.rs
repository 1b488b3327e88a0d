//! `causeway import` as a user runs it, on archives made by the bench crate's generator (whose
//! manifest is the ground truth): totals reconcile with what was written, every broken message
//! is quarantined with a reason, sample patients end in the state of their latest message, an
//! import killed with SIGKILL and resumed writes exactly what an uninterrupted one writes, the
//! dry run writes nothing, and a store loaded from the archive answers searches as one loaded
//! from the NDJSON export does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use causeway_bench::archive::{ArchiveManifest, ArchiveSpec, write_archive};
use causeway_store::{IndexTest, ResourceQuery, SqliteOptions, SqliteStore, Store, ValueTest};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_causeway");

fn archive(dir: &Path, messages: usize, per_file: usize) -> ArchiveManifest {
    let spec = ArchiveSpec {
        seed: 7,
        messages_per_file: per_file,
        ..ArchiveSpec::scaled(messages)
    };
    write_archive(dir, &spec).expect("archive written")
}

fn causeway(args: &[&str], cwd: &Path) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("causeway runs")
}

fn summary(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "exit {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the summary on stdout is JSON")
}

/// The line `causeway import --to store` prints on standard error about what it wrote.
fn store_line(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    stderr
        .lines()
        .find(|l| l.starts_with("store: "))
        .unwrap_or_else(|| panic!("no store line in:\n{stderr}"))
        .to_owned()
}

fn ndjson(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_generated_archive_reconciles_with_its_ground_truth() {
    let dir = tempfile::tempdir().unwrap();
    let arch = dir.path().join("arch");
    let truth = archive(&arch, 2000, 250);
    let out = dir.path().join("out");
    let s = summary(&causeway(
        &[
            "import",
            arch.to_str().unwrap(),
            "--to",
            "ndjson",
            out.to_str().unwrap(),
        ],
        dir.path(),
    ));
    let m = &s["messages"];
    assert_eq!(m["read"], truth.messages_written, "{s}");
    assert_eq!(m["converted"], truth.distinct_valid, "{s}");
    assert_eq!(m["quarantined"], truth.broken, "{s}");
    assert_eq!(m["duplicates"], truth.duplicates, "{s}");
    assert_eq!(s["reconciled"], true);
    assert_eq!(s["files"]["damaged"], 0);
    assert_eq!(s["files"]["read"], truth.files.total);

    // Every broken message is in the report, where the manifest says, with a reason.
    let report: Vec<Value> =
        serde_json::from_slice(&std::fs::read(out.join("quarantine/report.json")).unwrap())
            .unwrap();
    assert_eq!(report.len() as u64, truth.broken);
    for broken in &truth.broken_messages {
        let row = report
            .iter()
            .find(|r| {
                r["file"].as_str().unwrap().ends_with(&broken.file)
                    && r["byte_offset"] == broken.offset
            })
            .unwrap_or_else(|| panic!("{broken:?} not in the report"));
        assert_eq!(row["message"].as_u64(), broken.message, "{broken:?}");
        assert!(row["reason"].as_str().unwrap().len() > 10, "{row}");
        assert!(
            out.join("quarantine")
                .join(row["quarantine_file"].as_str().unwrap())
                .is_file()
        );
    }

    // One Patient per MRN, one Encounter per visit; sample patients as their latest message.
    let patients = ndjson(&out.join("Patient.ndjson"));
    assert_eq!(patients.len() as u64, truth.patients);
    assert_eq!(
        ndjson(&out.join("Encounter.ndjson")).len() as u64,
        truth.visits
    );
    let by_mrn: BTreeMap<&str, &Value> = patients
        .iter()
        .map(|p| (p["identifier"][0]["value"].as_str().unwrap(), p))
        .collect();
    assert!(!truth.sample_patients.is_empty());
    for t in &truth.sample_patients {
        let p = by_mrn[t.mrn.as_str()];
        assert_eq!(p["name"][0]["family"], t.family.as_str(), "{}", t.mrn);
        assert_eq!(
            p["address"][0]["line"][0],
            t.address_line.as_str(),
            "{}",
            t.mrn
        );
        assert_eq!(p["address"][0]["city"], t.city.as_str(), "{}", t.mrn);
        // Compared by digits: the converter writes XTN's parts as one international number.
        let digits = |s: &str| s.chars().filter(char::is_ascii_digit).collect::<String>();
        let phones: Vec<String> = p["telecom"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t["value"].as_str())
                    .map(digits)
                    .collect()
            })
            .unwrap_or_default();
        assert!(
            phones.iter().any(|p| p.ends_with(&digits(&t.phone))),
            "{}: {phones:?}",
            t.mrn
        );
    }
    // The Bulk Data manifest lists every file with its count.
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    for o in manifest["output"].as_array().unwrap() {
        let lines = ndjson(&out.join(o["url"].as_str().unwrap())).len() as u64;
        assert_eq!(o["count"], lines, "{o}");
    }
    assert!(
        !out.join(".staging").exists(),
        "staging is removed after a whole import"
    );
}

/// Waits until the staging journal has at least `lines` lines (checkpoints), or the process ends.
fn wait_for_checkpoints(child: &mut std::process::Child, journal: &Path, lines: usize) -> bool {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        let n = std::fs::read_to_string(journal)
            .map(|t| t.lines().count())
            .unwrap_or(0);
        if n >= lines {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no checkpoint within two minutes");
}

fn files_under(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    for entry in walk(root) {
        let rel = entry.strip_prefix(root).unwrap().to_path_buf();
        let name = rel.to_string_lossy();
        // Times differ from run to run; the rest must not.
        if name == "summary.json" || name == "manifest.json" {
            continue;
        }
        out.insert(rel, std::fs::read(&entry).unwrap());
    }
    out
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn an_import_killed_twice_and_resumed_writes_what_an_uninterrupted_one_writes() {
    let dir = tempfile::tempdir().unwrap();
    let arch = dir.path().join("arch");
    archive(&arch, 4000, 200);
    let whole = dir.path().join("whole");
    let uninterrupted = summary(&causeway(
        &[
            "import",
            arch.to_str().unwrap(),
            "--to",
            "ndjson",
            whole.to_str().unwrap(),
        ],
        dir.path(),
    ));

    let resumed = dir.path().join("resumed");
    let journal = resumed.join(".staging/journal");
    let args = [
        "import",
        arch.to_str().unwrap(),
        "--to",
        "ndjson",
        resumed.to_str().unwrap(),
    ];
    let spawn = |extra: &[&str]| {
        Command::new(BIN)
            .args(args)
            .args(extra)
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    // Killed after its first checkpoint, then again one checkpoint into the resume.
    let mut first = spawn(&[]);
    assert!(
        wait_for_checkpoints(&mut first, &journal, 2),
        "finished before it could be killed"
    );
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(!resumed.join("summary.json").exists());
    let seen = std::fs::read_to_string(&journal).unwrap().lines().count();
    let mut second = spawn(&["--resume"]);
    let killed_again = wait_for_checkpoints(&mut second, &journal, seen + 1);
    second.kill().unwrap();
    second.wait().unwrap();
    let last = summary(&causeway(&[&args[..], &["--resume"]].concat(), dir.path()));
    assert!(killed_again || resumed.join("summary.json").exists());
    assert_eq!(last["resumed"], true);
    assert_eq!(last["messages"], uninterrupted["messages"]);
    assert_eq!(last["resources"], uninterrupted["resources"]);

    let a = files_under(&whole);
    let b = files_under(&resumed);
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (path, bytes) in &a {
        assert!(
            bytes == &b[path],
            "{} differs after the resume",
            path.display()
        );
    }
    assert!(a.keys().any(|p| p.ends_with("Patient.ndjson")));
}

#[test]
fn the_dry_run_profiles_the_archive_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let arch = dir.path().join("arch");
    let truth = archive(&arch, 600, 100);
    let before = walk(&arch).len();
    let s = summary(&causeway(
        &["import", arch.to_str().unwrap(), "--dry-run"],
        dir.path(),
    ));
    assert_eq!(s["target"], "dry-run");
    assert_eq!(s["messages"]["read"], truth.messages_written);
    assert_eq!(s["messages"]["duplicates"], truth.duplicates);
    let types = s["profile"]["message_types"].as_object().unwrap();
    for (t, n) in &truth.by_type {
        assert!(types[t].as_u64().unwrap() >= *n, "{t}");
    }
    let versions = s["profile"]["versions"].as_object().unwrap();
    assert_eq!(versions.len(), truth.by_version.len());
    assert!(
        s["profile"]["encodings"]
            .as_object()
            .unwrap()
            .contains_key("8859/1")
    );
    assert!(s["profile"]["first_message_time"].is_string());
    // Nothing written: no work folder, the archive untouched.
    let entries: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(entries, ["arch"]);
    assert_eq!(walk(&arch).len(), before);
}

#[test]
fn bad_invocations_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let arch = dir.path().join("arch");
    archive(&arch, 200, 100);
    let a = arch.to_str().unwrap();
    let fail = |args: &[&str], expect: &str| {
        let out = causeway(args, dir.path());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(expect), "{args:?}: {err}");
    };
    fail(
        &["import", "no/such/dir", "--to", "ndjson", "x"],
        "no/such/dir: not found",
    );
    fail(
        &["import", a, "--to", "ndjson"],
        "--to ndjson needs a folder",
    );
    fail(&["import", a, "--to", "parquet", "x"], "--to parquet");
    fail(
        &["import", a, "--to", "ndjson", "x", "--encoding", "klingon"],
        "not a known encoding",
    );
    fail(
        &["import", a, "--to", "ndjson", "x", "--timezone", "EST"],
        "--timezone",
    );
    fail(
        &["import", a, "--to", "ndjson", "out", "--resume"],
        "no earlier import",
    );
    for threads in ["0", "80000"] {
        fail(
            &["import", a, "--to", "ndjson", "x", "--threads", threads],
            "expected a whole number of threads from 1 to 256",
        );
    }
    // A finished import's folder is not written over.
    summary(&causeway(
        &["import", a, "--to", "ndjson", "done"],
        dir.path(),
    ));
    fail(
        &["import", a, "--to", "ndjson", "done"],
        "holds files already",
    );
    // A resume must read the same inputs with the same options.
    std::fs::create_dir_all(dir.path().join("half/.staging")).unwrap();
    std::fs::write(
        dir.path().join("half/.staging/journal"),
        "causeway-import staging v1\tabc\n",
    )
    .unwrap();
    fail(
        &["import", a, "--to", "ndjson", "half", "--resume"],
        "other inputs",
    );
}

async fn searches(data_dir: &Path) -> Vec<(String, u64, Vec<String>)> {
    let store = SqliteStore::open(data_dir, SqliteOptions::default())
        .await
        .unwrap();
    let mut out = Vec::new();
    let query = |t: &str, clauses: Vec<Vec<IndexTest>>| ResourceQuery {
        resource_type: t.into(),
        clauses,
        count: 1000,
        ..Default::default()
    };
    let test = |param: &str, test: ValueTest| {
        vec![IndexTest {
            param: param.into(),
            test,
        }]
    };
    let mut asked = vec![
        ("all patients".to_owned(), query("Patient", vec![])),
        ("all encounters".to_owned(), query("Encounter", vec![])),
        ("all observations".to_owned(), query("Observation", vec![])),
        (
            "glucose".to_owned(),
            query(
                "Observation",
                vec![test(
                    "Observation.code",
                    ValueTest::SystemCode {
                        system: "http://loinc.org".into(),
                        code: "2345-7".into(),
                    },
                )],
            ),
        ),
        (
            "family prefix".to_owned(),
            query(
                "Patient",
                vec![test("Patient.family", ValueTest::TextPrefix("s".into()))],
            ),
        ),
    ];
    // Each of the first patients' encounters and observations, by reference.
    let patients = store
        .search_resources(query("Patient", vec![]))
        .await
        .unwrap();
    for p in patients.resources.iter().take(5) {
        let r = format!("Patient/{}", p.id);
        asked.push((
            format!("encounters of {r}"),
            query(
                "Encounter",
                vec![test("Encounter.subject", ValueTest::Reference(r.clone()))],
            ),
        ));
        asked.push((
            format!("observations of {r}"),
            query(
                "Observation",
                vec![test("Observation.subject", ValueTest::Reference(r.clone()))],
            ),
        ));
    }
    for (name, q) in asked {
        let page = store.search_resources(q).await.unwrap();
        let mut ids: Vec<String> = page.resources.iter().map(|r| r.id.clone()).collect();
        ids.sort();
        out.push((name, page.total, ids));
    }
    store.close().await.unwrap();
    out
}

#[test]
fn the_store_loaded_from_the_archive_and_from_its_export_answer_alike() {
    let dir = tempfile::tempdir().unwrap();
    let arch = dir.path().join("arch");
    archive(&arch, 600, 200);
    let config = |name: &str| {
        let path = dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &path,
            format!(
                "[server]\ndata_dir = \"{}\"\n",
                dir.path().join(name).display()
            ),
        )
        .unwrap();
        path
    };
    let (direct, reloaded) = (config("direct"), config("reloaded"));
    let first = causeway(
        &[
            "import",
            arch.to_str().unwrap(),
            "--to",
            "store",
            "--config",
            direct.to_str().unwrap(),
            "--work",
            "w1",
        ],
        dir.path(),
    );
    let loaded = summary(&first);
    assert_eq!(loaded["target"], "store");
    // More resources than one store group holds, so several groups were written while the
    // next was prepared; every one is counted once.
    let total: u64 = loaded["resources"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert!(
        total > 2 * causeway_import::store::STORE_BATCH as u64,
        "{total}"
    );
    assert_eq!(
        store_line(&first),
        format!("store: {total} created, 0 updated, 0 unchanged")
    );
    summary(&causeway(
        &["import", arch.to_str().unwrap(), "--to", "ndjson", "export"],
        dir.path(),
    ));
    summary(&causeway(
        &[
            "import",
            "export",
            "--to",
            "store",
            "--config",
            reloaded.to_str().unwrap(),
            "--work",
            "w2",
        ],
        dir.path(),
    ));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let a = rt.block_on(searches(&dir.path().join("direct")));
    let b = rt.block_on(searches(&dir.path().join("reloaded")));
    assert!(
        a.iter().find(|(n, ..)| n == "all patients").unwrap().1 > 10,
        "{a:?}"
    );
    assert!(
        a.iter()
            .find(|(n, ..)| n == "glucose")
            .is_some_and(|g| g.1 > 0),
        "{a:?}"
    );
    assert_eq!(a, b);
    // Loading the same archive again changes nothing.
    let again_out = causeway(
        &[
            "import",
            arch.to_str().unwrap(),
            "--to",
            "store",
            "--config",
            direct.to_str().unwrap(),
            "--work",
            "w3",
        ],
        dir.path(),
    );
    let again = summary(&again_out);
    assert_eq!(again["messages"], loaded["messages"]);
    assert_eq!(
        store_line(&again_out),
        format!("store: 0 created, 0 updated, {total} unchanged")
    );
    assert_eq!(rt.block_on(searches(&dir.path().join("direct"))), a);
}
