//! Bulk migration of HL7 v2 archives into the unified model (issue 7): `causeway import`.
//!
//! An import has two steps:
//! 1. **Staging** ([`stage`]): a reader thread walks the inputs ([`input`]) and cuts each file
//!    into units of messages; worker threads (one per core) parse and convert them ([`work`]);
//!    the calling thread takes the finished units back in reading order and stages them
//!    ([`stage::Stager`]): resource versions, duplicates, quarantined messages, checkpoints.
//! 2. **Finishing** ([`finish`]): each resource's versions merged in message-time order, then
//!    written as NDJSON ([`finish::write_ndjson`]) or into the store ([`store::load`]), and the
//!    report written.
//!
//! Invariants:
//! - Nothing is lost: every message read is converted, quarantined (with file, byte offset,
//!   line and reason) or counted as a duplicate of an earlier one; [`Summary::reconciled`].
//! - The output depends only on the inputs and options: not on thread timing, and not on
//!   whether the import was interrupted and resumed.
//! - No patient data in logs or on the terminal: counts, codes, file names and control ids.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use sha2::{Digest, Sha256};

pub mod error;
pub mod finish;
pub mod input;
pub mod stage;
pub mod store;
pub mod work;

pub use error::{Error, ErrorKind, Result};
pub use stage::{Staged, Stats};
pub use work::Settings;

use input::{Content, InputFile};
use work::{FileNote, Item, UNIT_MESSAGES, Unit, UnitBody};

/// The name of the staging folder inside the work folder.
pub const STAGING_DIR: &str = ".staging";

/// What to import and how.
pub struct Options {
    pub inputs: Vec<PathBuf>,
    pub settings: Settings,
    /// Worker threads (at least 1).
    pub threads: usize,
    /// Holds staging (`.staging/`) and the quarantine (`quarantine/`).
    pub work_dir: PathBuf,
    pub resume: bool,
    /// Only read and profile the archive; write nothing.
    pub dry_run: bool,
    /// What, besides the inputs, changes the output (profile files, encoding, zone): a resume
    /// must be given the same.
    pub fingerprint: String,
}

/// Live counters for a progress display (read from another thread).
#[derive(Debug, Default)]
pub struct Progress {
    pub files_total: AtomicU64,
    pub files_done: AtomicU64,
    /// Bytes on disk.
    pub bytes_total: AtomicU64,
    pub bytes_done: AtomicU64,
    pub messages: AtomicU64,
    pub converted: AtomicU64,
    pub quarantined: AtomicU64,
    pub duplicates: AtomicU64,
    /// Resources written by the finishing step.
    pub written: AtomicU64,
    pub resources_total: AtomicU64,
}

/// The result of staging, with the time it took.
pub struct StageResult {
    pub staged: Staged,
    pub resumed: bool,
    pub files: Vec<InputFile>,
    pub elapsed: std::time::Duration,
}

/// Stages the inputs (step 1); with `dry_run`, only reads and counts.
///
/// # Errors
/// An input that does not exist, a staging folder that cannot be written, or a resume that does
/// not match the earlier import.
pub fn stage(options: &Options, progress: &Progress) -> Result<StageResult> {
    let started = Instant::now();
    let staging = options.work_dir.join(STAGING_DIR);
    let quarantine = options.work_dir.join("quarantine");
    let files = input::discover(&options.inputs, std::slice::from_ref(&options.work_dir))?;
    progress
        .files_total
        .store(files.len() as u64, Ordering::Relaxed);
    progress
        .bytes_total
        .store(files.iter().map(|f| f.size).sum(), Ordering::Relaxed);
    let fingerprint = fingerprint(&files, &options.fingerprint);
    let mut resumed = false;
    let stager = if options.dry_run {
        stage::Stager::dry()
    } else if options.resume {
        resumed = true;
        stage::Stager::resume(&staging, &quarantine, &fingerprint)?
    } else {
        if staging.join("journal").exists() {
            return Err(Error::new(
                &options.work_dir,
                ErrorKind::Resume(
                    "holds an earlier import: continue it with --resume, or choose an empty folder"
                        .into(),
                ),
            ));
        }
        stage::Stager::create(&staging, &quarantine, &fingerprint)?
    };
    let staged = if stager.is_complete() {
        progress
            .files_done
            .store(files.len() as u64, Ordering::Relaxed);
        stager.finish()?
    } else {
        run_pipeline(&files, options, stager, progress)?
    };
    Ok(StageResult {
        staged,
        resumed,
        files,
        elapsed: started.elapsed(),
    })
}

/// Reader -> workers -> this thread, in reading order.
fn run_pipeline(
    files: &[InputFile],
    options: &Options,
    mut stager: stage::Stager,
    progress: &Progress,
) -> Result<Staged> {
    let threads = options.threads.max(1);
    let skip = stager.units_done();
    let (unit_tx, unit_rx) = sync_channel::<Unit>(threads * 4);
    let (done_tx, done_rx) = sync_channel::<work::Done>(threads * 4);
    let unit_rx = Arc::new(Mutex::new(unit_rx));
    std::thread::scope(|scope| {
        let reader = scope.spawn(|| read_all(files, skip, unit_tx, progress));
        for _ in 0..threads {
            let unit_rx = Arc::clone(&unit_rx);
            let done_tx = done_tx.clone();
            let settings = &options.settings;
            scope.spawn(move || worker(&unit_rx, &done_tx, settings));
        }
        drop(done_tx);
        let applied = apply_in_order(&mut stager, done_rx, progress);
        let total = reader.join().unwrap_or(0);
        applied?;
        if stager.units_done() != total {
            return Err(Error::new(
                &options.work_dir,
                ErrorKind::Staging(format!(
                    "{} of {total} units staged: a worker stopped early",
                    stager.units_done()
                )),
            ));
        }
        stager.finish()
    })
}

fn worker(units: &Mutex<Receiver<Unit>>, done: &SyncSender<work::Done>, settings: &Settings) {
    loop {
        let unit = match units.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(unit) = unit else { return };
        if done.send(work::work(unit, settings)).is_err() {
            return;
        }
    }
}

/// Applies finished units in reading order, holding early ones until their turn.
fn apply_in_order(
    stager: &mut stage::Stager,
    done: Receiver<work::Done>,
    progress: &Progress,
) -> Result<()> {
    let mut waiting: BTreeMap<u64, work::Done> = BTreeMap::new();
    for d in done {
        waiting.insert(d.seq, d);
        while let Some(next) = waiting.remove(&stager.units_done()) {
            stager.apply(next)?;
            let s = stager.stats();
            progress.messages.store(s.messages_read, Ordering::Relaxed);
            progress.converted.store(s.converted, Ordering::Relaxed);
            progress.quarantined.store(s.quarantined, Ordering::Relaxed);
            progress.duplicates.store(s.duplicates, Ordering::Relaxed);
        }
    }
    Ok(())
}

/// Reads every file, sending units numbered from 0 (those below `skip` are already staged and
/// only counted). Returns the number of units.
fn read_all(files: &[InputFile], skip: u64, tx: SyncSender<Unit>, progress: &Progress) -> u64 {
    let mut seq = 0u64;
    let mut ordinal = 0u64;
    let send = |body: UnitBody, seq: &mut u64| -> bool {
        let unit = Unit { seq: *seq, body };
        *seq += 1;
        unit.seq < skip || tx.send(unit).is_ok()
    };
    for file in files {
        let result = input::read(file, &mut |entry| {
            let note = FileNote {
                label: entry.label.clone(),
                compression: entry.compression,
                bytes: entry.data.len() as u64,
                skipped: match entry.content {
                    Content::Skip(reason) => Some(reason),
                    _ => None,
                },
                damaged: entry.damaged.clone(),
            };
            if !send(UnitBody::File(note), &mut seq) {
                return Err(Error::new(&file.path, ErrorKind::Staging("stopped".into())));
            }
            let items = match entry.content {
                Content::Skip(_) => return Ok(()),
                Content::Hl7 => split_hl7(&entry.data),
                Content::Ndjson => split_lines(&entry.data),
            };
            let label: Arc<str> = Arc::from(entry.label.as_str());
            let data = Arc::new(entry.data);
            for chunk in items.chunks(UNIT_MESSAGES) {
                let body = UnitBody::Messages {
                    file: Arc::clone(&label),
                    data: Arc::clone(&data),
                    first: ordinal,
                    items: chunk.to_vec(),
                };
                ordinal += chunk.len() as u64;
                if !send(body, &mut seq) {
                    return Err(Error::new(&file.path, ErrorKind::Staging("stopped".into())));
                }
            }
            Ok(())
        });
        if let Err(e) = result {
            if matches!(e.kind, ErrorKind::Staging(_)) {
                break;
            }
            // A file that cannot be opened at all: reported, and the import goes on.
            let note = FileNote {
                label: file.path.display().to_string(),
                compression: input::Compression::of(&file.path.display().to_string()),
                bytes: 0,
                skipped: None,
                damaged: Some(e.kind.to_string()),
            };
            if !send(UnitBody::File(note), &mut seq) {
                break;
            }
        }
        progress.files_done.fetch_add(1, Ordering::Relaxed);
        progress.bytes_done.fetch_add(file.size, Ordering::Relaxed);
    }
    seq
}

/// The messages of an HL7 v2 file, and the stray text between them.
fn split_hl7(data: &[u8]) -> Vec<Item> {
    let found: Vec<_> = hl7v2::split_file(data).collect();
    let mut items = Vec::with_capacity(found.len());
    for (i, item) in found.iter().enumerate() {
        match item {
            Ok(raw) => items.push(Item::Message {
                number: raw.number,
                line: raw.line,
                range: raw.offset..raw.offset + raw.bytes.len(),
            }),
            Err(e) => {
                let start = e.position.byte.min(data.len());
                // Stray text runs to the next message (or the end of the file).
                let end = found[i + 1..]
                    .iter()
                    .find_map(|n| n.as_ref().ok().map(|r| r.offset))
                    .unwrap_or(data.len())
                    .max(start);
                let found =
                    String::from_utf8_lossy(&data[start..(start + 3).min(end)]).into_owned();
                items.push(Item::Stray {
                    line: hl7v2::batch::line_of(data, start),
                    range: start..end,
                    found,
                });
            }
        }
    }
    items
}

/// The non-blank lines of an NDJSON file.
fn split_lines(data: &[u8]) -> Vec<Item> {
    let mut items = Vec::new();
    let mut start = 0;
    let mut line = 1;
    while start < data.len() {
        let end = memchr::memchr(b'\n', &data[start..]).map_or(data.len(), |n| start + n);
        let text = &data[start..end];
        if !text.trim_ascii().is_empty() {
            let trimmed_end = start + text.trim_ascii_end().len();
            items.push(Item::Json {
                line,
                range: start..trimmed_end,
            });
        }
        start = end + 1;
        line += 1;
    }
    items
}

/// Identifies an import: its files (path and size) and the options that change its output.
fn fingerprint(files: &[InputFile], options: &str) -> String {
    let mut h = Sha256::new();
    for f in files {
        h.update(f.path.display().to_string().as_bytes());
        h.update(b"\0");
        h.update(f.size.to_le_bytes());
    }
    h.update(options.as_bytes());
    hex(&h.finalize()[..16])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The machine-readable end of an import (also written as `summary.json`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    /// `ndjson`, `store` or `dry-run`.
    pub target: String,
    pub output: Option<PathBuf>,
    pub resumed: bool,
    pub files: FilesSummary,
    pub messages: MessagesSummary,
    /// read = converted + quarantined + duplicates.
    pub reconciled: bool,
    /// Final resources per type.
    pub resources: BTreeMap<String, u64>,
    pub resource_versions_staged: u64,
    pub conversion_issues: u64,
    pub profile: ArchiveProfile,
    pub quarantine: QuarantineSummary,
    pub seconds: f64,
    /// Of `seconds`, the time spent reading, converting and staging (the rest merged and wrote).
    pub staging_seconds: f64,
    pub messages_per_second: f64,
    pub megabytes_per_second: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct FilesSummary {
    pub read: u64,
    pub skipped: u64,
    pub damaged: u64,
    pub by_compression: BTreeMap<String, u64>,
    pub skipped_files: Vec<(String, String)>,
    pub damaged_files: Vec<(String, String)>,
    /// Bytes after decompression.
    pub bytes: u64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct MessagesSummary {
    pub read: u64,
    pub converted: u64,
    pub quarantined: u64,
    pub duplicates: u64,
}

/// What the archive holds (the dry run's answer).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ArchiveProfile {
    pub message_types: BTreeMap<String, u64>,
    pub versions: BTreeMap<String, u64>,
    pub senders: BTreeMap<String, u64>,
    pub encodings: BTreeMap<String, u64>,
    pub first_message_time: Option<String>,
    pub last_message_time: Option<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct QuarantineSummary {
    pub by_stage: BTreeMap<String, u64>,
    pub folder: Option<PathBuf>,
}

impl Summary {
    /// The summary of a staged import and what finishing wrote.
    pub fn new(
        target: &str,
        output: Option<PathBuf>,
        result: &StageResult,
        resources: BTreeMap<String, u64>,
        quarantine_dir: Option<PathBuf>,
        elapsed: std::time::Duration,
    ) -> Summary {
        let s = &result.staged.stats;
        let time = |t: Option<i64>| {
            t.and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
                .map(|t| t.to_string())
        };
        let seconds = elapsed.as_secs_f64().max(1e-9);
        Summary {
            target: target.to_owned(),
            output,
            resumed: result.resumed,
            files: FilesSummary {
                read: s.files_read,
                skipped: s.files_skipped,
                damaged: s.files_damaged,
                by_compression: s.files_by_compression.clone(),
                skipped_files: s.skipped.clone(),
                damaged_files: s.damaged.clone(),
                bytes: s.bytes,
            },
            messages: MessagesSummary {
                read: s.messages_read,
                converted: s.converted,
                quarantined: s.quarantined,
                duplicates: s.duplicates,
            },
            reconciled: s.messages_read == s.converted + s.quarantined + s.duplicates,
            resources,
            resource_versions_staged: s.resource_versions,
            conversion_issues: s.conversion_issues,
            profile: ArchiveProfile {
                message_types: s.message_types.clone(),
                versions: s.versions.clone(),
                senders: s.senders.clone(),
                encodings: s.encodings.clone(),
                first_message_time: time(s.first_time),
                last_message_time: time(s.last_time),
            },
            quarantine: QuarantineSummary {
                by_stage: s.quarantined_by_stage.clone(),
                folder: quarantine_dir,
            },
            seconds,
            staging_seconds: result.elapsed.as_secs_f64(),
            messages_per_second: s.messages_read as f64 / seconds,
            megabytes_per_second: s.bytes as f64 / 1e6 / seconds,
        }
    }
}

/// The staging folder of a work folder.
pub fn staging_dir(work_dir: &Path) -> PathBuf {
    work_dir.join(STAGING_DIR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stray_text_runs_to_the_next_message() {
        let data = b"junk line\r\nmore\r\nMSH|^~\\&|A|B\rPID|1\r";
        let items = split_hl7(data);
        assert_eq!(items.len(), 2);
        match &items[0] {
            Item::Stray { line, range, found } => {
                assert_eq!((*line, range.clone(), found.as_str()), (1, 0..17, "jun"));
            }
            other => panic!("expected stray text, got {other:?}"),
        }
        assert!(matches!(
            &items[1],
            Item::Message {
                number: 1,
                line: 3,
                ..
            }
        ));
    }

    #[test]
    fn ndjson_lines_skip_blanks() {
        let items = split_lines(b"{\"a\":1}\r\n\n  \n{\"b\":2}");
        let lines: Vec<usize> = items
            .iter()
            .map(|i| match i {
                Item::Json { line, .. } => *line,
                _ => 0,
            })
            .collect();
        assert_eq!(lines, vec![1, 4]);
    }
}
