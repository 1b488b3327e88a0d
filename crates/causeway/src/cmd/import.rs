//! `causeway import PATH… [--profile P] [--to store | --to ndjson DIR] [--resume] [--dry-run]`:
//! bulk migration of HL7 v2 archives (folders, files, `.gz`, `.zst`, `.zip`) into the unified
//! model, as FHIR Bulk Data NDJSON or into the resource store the API serves.
//!
//! Standard error shows progress and a summary for people; standard output gets the
//! machine-readable summary (JSON), also written as `summary.json`. Messages that cannot be
//! imported are kept in `quarantine/` with `report.csv` and `report.json`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use causeway_import::{Options, Progress, Settings, Summary, finish, store};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Folders (read recursively), files, and `.gz` / `.zst` / `.zip` archives of HL7 v2
    /// messages; `.ndjson` files are loaded as FHIR resources (an earlier export).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// A profile file (TOML), or a folder of them: each message is read with the most specific
    /// profile matching its MSH-3/MSH-4.
    #[arg(long)]
    profile: Option<String>,
    /// `--to ndjson DIR`: FHIR Bulk Data NDJSON files (one per resource type) and a manifest;
    /// `--to store`: the resource store of the configuration (`--config`).
    #[arg(long, num_args = 1..=2, value_names = ["TARGET", "DIR"], required_unless_present = "dry_run")]
    to: Vec<String>,
    /// Continue an interrupted import (same paths and options) where it stopped.
    #[arg(long)]
    resume: bool,
    /// Read and profile the archive (types, versions, senders, encodings, dates); write nothing.
    #[arg(long, conflicts_with = "resume")]
    dry_run: bool,
    /// Text encoding for messages that do not declare theirs (MSH-18) or declare it wrongly,
    /// e.g. `windows-1252`, `iso-8859-1`, `8859/1`. Without it, undeclared text that is not
    /// UTF-8 is read as windows-1252.
    #[arg(long)]
    encoding: Option<String>,
    /// The UTC offset of message times sent without one (`-05:00`, `+0100`, `UTC`), used to put
    /// updates in time order.
    #[arg(long)]
    timezone: Option<String>,
    /// Where staging, the quarantine and the report go (default: the NDJSON folder, or
    /// `./causeway-import` with `--to store`).
    #[arg(long)]
    work: Option<PathBuf>,
    /// Worker threads, 1 to 256 (default: one per core).
    #[arg(long, value_parser = parse_threads)]
    threads: Option<usize>,
    /// Configuration file (`--to store`: its data directory holds the store).
    #[arg(long, env = "CAUSEWAY_CONFIG")]
    config: Option<PathBuf>,
}

enum Target {
    Ndjson(PathBuf),
    Store,
    DryRun,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let target = target(&args)?;
    let work_dir = match (&args.work, &target) {
        (Some(w), _) => w.clone(),
        (None, Target::Ndjson(dir)) => dir.clone(),
        (None, _) => PathBuf::from("causeway-import"),
    };
    if !args.resume && !matches!(target, Target::DryRun) && !is_empty_dir(&work_dir)? {
        bail!(
            "{}: holds files already; continue an interrupted import with --resume, or choose \
             an empty folder",
            work_dir.display()
        );
    }
    let (settings, fingerprint) = settings(&args, matches!(target, Target::DryRun))?;
    let options = Options {
        inputs: args.paths.clone(),
        settings,
        threads: args.threads.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
        }),
        work_dir: work_dir.clone(),
        resume: args.resume,
        dry_run: matches!(target, Target::DryRun),
        fingerprint,
    };
    let progress = Arc::new(Progress::default());
    let display = ProgressDisplay::start(Arc::clone(&progress));
    let staged = causeway_import::stage(&options, &progress);
    let result = match staged {
        Ok(s) => s,
        Err(e) => {
            display.stop();
            return Err(e.into());
        }
    };
    let quarantine_dir = work_dir.join("quarantine");
    let on_written = |n: u64| progress.written.store(n, Ordering::Relaxed);
    progress
        .resources_total
        .store(result.staged.index.len() as u64, Ordering::Relaxed);
    let finished = match &target {
        Target::DryRun => Ok((None, Default::default())),
        Target::Ndjson(dir) => (|| {
            let counts = finish::write_ndjson(&result.staged, dir, on_written)?;
            finish::write_reports(&result.staged, &quarantine_dir)?;
            finish::write_manifest(
                dir,
                &request_line(&args),
                &counts,
                result.staged.stats.quarantined,
            )?;
            anyhow::Ok((Some(dir.clone()), counts))
        })(),
        Target::Store => load_store(&args, &result, &quarantine_dir, on_written),
    };
    display.stop();
    let (output, resources) = finished?;
    let target_name = match target {
        Target::Ndjson(_) => "ndjson",
        Target::Store => "store",
        Target::DryRun => "dry-run",
    };
    let quarantine = (!options.dry_run).then(|| quarantine_dir.clone());
    let summary = Summary::new(
        target_name,
        output,
        &result,
        resources,
        quarantine,
        started.elapsed(),
    );
    print_human(&summary, &result);
    println!("{}", serde_json::to_string_pretty(&summary)?);
    if !options.dry_run {
        finish::write_json_file(&work_dir.join("summary.json"), &summary)?;
        // Staging is only for resuming; the import is whole now.
        let staging = causeway_import::staging_dir(&work_dir);
        std::fs::remove_dir_all(&staging)
            .with_context(|| format!("cannot remove {}", staging.display()))?;
    }
    Ok(if summary.reconciled {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn target(args: &Args) -> anyhow::Result<Target> {
    if args.dry_run {
        return Ok(Target::DryRun);
    }
    match args
        .to
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["ndjson", dir] => Ok(Target::Ndjson(PathBuf::from(dir))),
        ["ndjson"] => bail!("--to ndjson needs a folder: --to ndjson DIR"),
        ["store"] => Ok(Target::Store),
        ["store", _] => bail!("--to store takes no folder (the store is the configuration's)"),
        [other, ..] => bail!("--to {other}: expected `ndjson DIR` or `store`"),
        [] => bail!("--to is required: `--to ndjson DIR` or `--to store`"),
    }
}

fn is_empty_dir(dir: &Path) -> anyhow::Result<bool> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", dir.display())),
    }
}

/// The workers' settings, and the text that identifies the options for a resume.
fn settings(args: &Args, parse_only: bool) -> anyhow::Result<(Settings, String)> {
    let mut fingerprint = String::new();
    let profiles = match &args.profile {
        Some(p) => {
            fingerprint.push_str(&profile_fingerprint(Path::new(p))?);
            super::convert::load_profiles(p)?
        }
        None => Vec::new(),
    };
    let charset = match &args.encoding {
        None => None,
        Some(name) => {
            fingerprint.push_str(&format!("\0encoding={name}"));
            Some(charset(name)?)
        }
    };
    let offset = match &args.timezone {
        None => None,
        Some(text) => {
            fingerprint.push_str(&format!("\0timezone={text}"));
            Some(utc_offset(text)?)
        }
    };
    Ok((
        Settings {
            profiles,
            fallback_profile: v2fhir::Profile::default(),
            charset,
            offset,
            parse_only,
        },
        fingerprint,
    ))
}

/// The profiles' bytes, so a resume notices an edited profile.
fn profile_fingerprint(path: &Path) -> anyhow::Result<String> {
    let mut files = Vec::new();
    if path.is_dir() {
        for entry in
            std::fs::read_dir(path).with_context(|| format!("cannot read {}", path.display()))?
        {
            files.push(entry?.path());
        }
        files.sort();
    } else {
        files.push(path.to_path_buf());
    }
    let mut text = String::new();
    for f in files {
        let bytes = std::fs::read(&f).with_context(|| format!("cannot read {}", f.display()))?;
        text.push_str(&format!(
            "\0profile={}:{}",
            f.display(),
            String::from_utf8_lossy(&bytes)
        ));
    }
    Ok(text)
}

fn charset(name: &str) -> anyhow::Result<hl7v2::Charset> {
    if let Some(c) = hl7v2::Charset::from_msh18(name) {
        return Ok(c);
    }
    match encoding_rs::Encoding::for_label(name.trim().as_bytes()) {
        Some(e) if e == encoding_rs::UTF_8 => Ok(hl7v2::Charset::Utf8),
        Some(e) => Ok(hl7v2::Charset::Legacy(e)),
        None => bail!(
            "--encoding {name:?}: not a known encoding (try windows-1252, iso-8859-1, 8859/1, utf-8)"
        ),
    }
}

fn utc_offset(text: &str) -> anyhow::Result<jiff::tz::Offset> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("utc") || t == "Z" {
        return Ok(jiff::tz::Offset::UTC);
    }
    let digits: String = t.chars().filter(char::is_ascii_digit).collect();
    let sign = match t.chars().next() {
        Some('+') => 1,
        Some('-') => -1,
        _ => 0,
    };
    if sign == 0 || digits.len() != 4 {
        bail!("--timezone {text:?}: expected an offset such as -05:00, +0100 or UTC");
    }
    let hours: i32 = digits[..2].parse()?;
    let minutes: i32 = digits[2..].parse()?;
    jiff::tz::Offset::from_seconds(sign * (hours * 3600 + minutes * 60))
        .map_err(|e| anyhow::anyhow!("--timezone {text:?}: {e}"))
}

fn request_line(args: &Args) -> String {
    let paths: Vec<String> = args.paths.iter().map(|p| p.display().to_string()).collect();
    format!("causeway import {}", paths.join(" "))
}

type Finished = (Option<PathBuf>, std::collections::BTreeMap<String, u64>);

fn load_store(
    args: &Args,
    result: &causeway_import::StageResult,
    quarantine_dir: &Path,
    on_written: impl FnMut(u64),
) -> anyhow::Result<Finished> {
    let Some(config) = super::check::load(args.config.as_ref()) else {
        bail!("the configuration has problems (listed above)");
    };
    finish::write_reports(&result.staged, quarantine_dir)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let store = super::serve::open_store(&config).await?;
        let loaded = store::load(&result.staged, Arc::clone(&store), on_written).await;
        let _ = store.close().await;
        let loaded = loaded?;
        eprintln!(
            "store: {} created, {} updated, {} unchanged",
            loaded.created.values().sum::<u64>(),
            loaded.updated,
            loaded.unchanged
        );
        anyhow::Ok((Some(config.server.data_dir.clone()), result_counts(result)))
    })
}

/// Final resources per type (what the store now holds from this import).
fn result_counts(result: &causeway_import::StageResult) -> std::collections::BTreeMap<String, u64> {
    let mut counts = std::collections::BTreeMap::new();
    for key in result.staged.index.keys() {
        if let Some((t, _)) = key.split_once('/') {
            *counts.entry(t.to_owned()).or_default() += 1;
        }
    }
    counts
}

/// The human summary, on standard error.
fn print_human(s: &Summary, result: &causeway_import::StageResult) {
    let e = |text: String| eprintln!("{text}");
    e(format!(
        "{} files read ({} skipped, {} damaged), {:.1} MB, in {:.1} s{}",
        s.files.read,
        s.files.skipped,
        s.files.damaged,
        s.files.bytes as f64 / 1e6,
        s.seconds,
        if s.resumed { " (resumed)" } else { "" }
    ));
    e(format!(
        "messages: {} read = {} converted + {} quarantined + {} duplicates ({})",
        s.messages.read,
        s.messages.converted,
        s.messages.quarantined,
        s.messages.duplicates,
        if s.reconciled {
            "reconciled"
        } else {
            "NOT RECONCILED"
        }
    ));
    e(format!(
        "rate: {:.0} messages/s, {:.1} MB/s",
        s.messages_per_second, s.megabytes_per_second
    ));
    let list = |title: &str, map: &std::collections::BTreeMap<String, u64>| {
        let mut items: Vec<_> = map.iter().collect();
        items.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let shown: Vec<String> = items
            .iter()
            .take(12)
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let more = if items.len() > 12 {
            format!(", and {} more", items.len() - 12)
        } else {
            String::new()
        };
        eprintln!("{title}: {}{more}", shown.join(", "));
    };
    list("message types", &s.profile.message_types);
    list("versions", &s.profile.versions);
    list("senders (MSH-3|MSH-4)", &s.profile.senders);
    list("encodings", &s.profile.encodings);
    if let (Some(first), Some(last)) = (&s.profile.first_message_time, &s.profile.last_message_time)
    {
        eprintln!("message times: {first} to {last}");
    }
    if !s.resources.is_empty() {
        list("resources", &s.resources);
    }
    if s.messages.quarantined > 0 {
        list("quarantined by stage", &s.quarantine.by_stage);
        if let Some(q) = &s.quarantine.folder {
            eprintln!("quarantine: {} (report.csv, report.json)", q.display());
        }
    }
    for (file, reason) in &result.staged.stats.damaged {
        eprintln!("damaged file: {file}: {reason}");
    }
}

/// Progress for people: a bar at a terminal, a line every ten seconds otherwise (CI logs).
struct ProgressDisplay {
    /// Dropped to stop the display at once (not at its next tick, which the import's timing
    /// would include).
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ProgressDisplay {
    fn start(progress: Arc<Progress>) -> ProgressDisplay {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let terminal = std::io::stderr().is_terminal();
            let bar = indicatif::ProgressBar::with_draw_target(
                Some(0),
                if terminal {
                    indicatif::ProgressDrawTarget::stderr()
                } else {
                    indicatif::ProgressDrawTarget::hidden()
                },
            );
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{elapsed_precise} [{bar:30}] {bytes}/{total_bytes} {msg} ETA {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            let started = Instant::now();
            let mut last_line = Instant::now();
            loop {
                let line = status(&progress, started);
                bar.set_length(progress.bytes_total.load(Ordering::Relaxed));
                bar.set_position(progress.bytes_done.load(Ordering::Relaxed));
                bar.set_message(line.clone());
                if !terminal && last_line.elapsed() >= Duration::from_secs(10) {
                    eprintln!("import: {line}");
                    last_line = Instant::now();
                }
                match stopped.recv_timeout(Duration::from_millis(200)) {
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    _ => break,
                }
            }
            bar.finish_and_clear();
        });
        ProgressDisplay {
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn stop(mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn status(p: &Progress, started: Instant) -> String {
    let messages = p.messages.load(Ordering::Relaxed);
    let rate = messages as f64 / started.elapsed().as_secs_f64().max(0.001);
    let mut line = format!(
        "files {}/{} · {messages} messages ({rate:.0}/s) · {} quarantined · {} duplicates",
        p.files_done.load(Ordering::Relaxed),
        p.files_total.load(Ordering::Relaxed),
        p.quarantined.load(Ordering::Relaxed),
        p.duplicates.load(Ordering::Relaxed),
    );
    let written = p.written.load(Ordering::Relaxed);
    if written > 0 {
        line.push_str(&format!(
            " · writing {}/{} resources",
            written.min(p.resources_total.load(Ordering::Relaxed)),
            p.resources_total.load(Ordering::Relaxed)
        ));
    }
    line
}

/// `--threads`: 0 used to mean one thread without saying so, and a typo such as `80000` started
/// that many threads.
fn parse_threads(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=256).contains(&n) => Ok(n),
        _ => Err("expected a whole number of threads from 1 to 256".into()),
    }
}
