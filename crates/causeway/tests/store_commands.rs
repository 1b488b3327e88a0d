//! Commands that work on what `serve` stored (`reprocess`, `audit verify`, `errors`) refuse, naming the
//! path, when the configuration's data directory holds no store, and create nothing there: a
//! new empty store with a new key would only hide a mistyped `data_dir` or `--config`.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_causeway");

#[test]
fn store_commands_refuse_a_missing_store_and_create_none() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("causeway.toml");
    std::fs::write(
        &config,
        format!("[server]\ndata_dir = \"{}\"\n", data.display()),
    )
    .unwrap();
    for args in [
        &["reprocess", "42"][..],
        &["audit", "verify"][..],
        &["errors"][..],
    ] {
        let out = Command::new(BIN)
            .args(args)
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(
            stderr.trim_end(),
            format!(
                "causeway: no store at {}",
                data.join("causeway.db").display()
            ),
            "{args:?}"
        );
        assert!(!data.exists(), "{args:?} created {}", data.display());
    }
}
