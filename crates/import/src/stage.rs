//! Staging: the single writer that takes finished units in reading order and keeps, on disk,
//! everything the import has decided so far, so that it can finish (merge and write) or
//! resume after a kill.
//!
//! The staging folder holds append-only files and a journal:
//! - `resources.bin`: each resource version a message gave (`Type/id`, message time, reading
//!   ordinal, content hash, JSON); a version whose content is already staged for the same
//!   resource is written as a short "touch" (its time and ordinal only).
//! - `messages.bin`: each message's content hash and where it was, for duplicate detection.
//! - `quarantine.jsonl`, `duplicates.jsonl`: the report rows.
//! - `journal`: checkpoints, each the files' lengths and the counts after a whole number of
//!   units. A resume cuts every file back to the last checkpoint and rebuilds the index and
//!   the duplicate table from them, then continues with the next unit: nothing is counted or
//!   written twice.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::work::{Candidate, Done, DoneBody, FileNote, Outcome};

const JOURNAL_MAGIC: &str = "causeway-import staging v1";
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// One staged version of a resource.
#[derive(Debug, Clone, Copy)]
pub struct Version {
    pub content: u64,
    /// Message time and reading ordinal: the order versions are applied in.
    pub time: i64,
    pub seq: u64,
    /// Where the JSON is in `resources.bin`.
    pub offset: u64,
    pub len: u32,
}

/// Every staged resource (`Type/id`) and its distinct versions.
///
/// Hashed with foldhash rather than SipHash: the index grows to millions of keys in one thread
/// that every worker waits on, and rehashing them as it grows was a third of that thread's time.
pub type Index = HashMap<Box<str>, Vec<Version>, foldhash::fast::RandomState>;

/// The counts of an import, kept in each checkpoint.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Stats {
    pub files_read: u64,
    pub files_skipped: u64,
    pub files_damaged: u64,
    /// Bytes after decompression.
    pub bytes: u64,
    pub messages_read: u64,
    pub converted: u64,
    pub quarantined: u64,
    pub duplicates: u64,
    pub conversion_issues: u64,
    pub resource_versions: u64,
    pub files_by_compression: BTreeMap<String, u64>,
    pub message_types: BTreeMap<String, u64>,
    pub versions: BTreeMap<String, u64>,
    pub senders: BTreeMap<String, u64>,
    pub encodings: BTreeMap<String, u64>,
    pub quarantined_by_stage: BTreeMap<String, u64>,
    /// Earliest and latest MSH-7 (Unix ms).
    pub first_time: Option<i64>,
    pub last_time: Option<i64>,
    /// Files not read and why (a README next to the archive).
    pub skipped: Vec<(String, String)>,
    /// Files whose reading stopped early and why.
    pub damaged: Vec<(String, String)>,
}

/// A quarantined message (a row of the report).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct QuarantineRow {
    pub file: String,
    /// The message's number in its file (none for text between messages).
    pub message: Option<usize>,
    pub byte_offset: usize,
    pub line: usize,
    pub control_id: Option<String>,
    pub message_type: Option<String>,
    pub stage: String,
    pub reason: String,
    /// The message's bytes, relative to the quarantine folder.
    pub quarantine_file: String,
}

/// A message whose content was already read.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DuplicateRow {
    pub file: String,
    pub message: Option<usize>,
    pub byte_offset: usize,
    pub control_id: Option<String>,
    pub first_file: String,
    pub first_message: Option<usize>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Checkpoint {
    units: u64,
    resources_len: u64,
    messages_len: u64,
    quarantine_len: u64,
    duplicates_len: u64,
    stats: Stats,
    /// Staging is complete: every unit is in.
    #[serde(default)]
    complete: bool,
}

/// Where the first copy of a content was.
#[derive(Debug, Clone)]
struct FirstSeen {
    file: Arc<str>,
    number: Option<usize>,
}

/// The staging writer.
pub struct Stager {
    dir: PathBuf,
    quarantine_dir: PathBuf,
    resources: Appender,
    messages: Appender,
    quarantine: Appender,
    duplicates: Appender,
    /// `None` in a dry run.
    journal: Option<File>,
    index: Index,
    seen: HashMap<[u8; 16], FirstSeen>,
    labels: HashMap<Box<str>, Arc<str>>,
    stats: Stats,
    units: u64,
    complete: bool,
    last_checkpoint: Instant,
}

/// What staging produced, for the finishing step.
pub struct Staged {
    pub dir: PathBuf,
    pub index: Index,
    pub stats: Stats,
    /// The length of `resources.bin` at the last checkpoint (what is staged).
    pub resources_len: u64,
}

impl Staged {
    pub fn resources_path(&self) -> PathBuf {
        self.dir.join("resources.bin")
    }
}

impl Stager {
    /// Starts staging in `dir` (which must not hold staging yet), keeping quarantined
    /// messages under `quarantine_dir`. `fingerprint` names the inputs and options; a resume
    /// must present the same.
    ///
    /// # Errors
    /// The folders cannot be created or written.
    pub fn create(dir: &Path, quarantine_dir: &Path, fingerprint: &str) -> Result<Stager> {
        std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
        std::fs::create_dir_all(quarantine_dir).map_err(Error::io(quarantine_dir))?;
        let journal_path = dir.join("journal");
        let mut journal = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&journal_path)
            .map_err(Error::io(&journal_path))?;
        writeln!(journal, "{JOURNAL_MAGIC}\t{fingerprint}").map_err(Error::io(&journal_path))?;
        let open = |name: &str| Appender::open(&dir.join(name), 0);
        Ok(Stager {
            dir: dir.to_owned(),
            quarantine_dir: quarantine_dir.to_owned(),
            resources: open("resources.bin")?,
            messages: open("messages.bin")?,
            quarantine: open("quarantine.jsonl")?,
            duplicates: open("duplicates.jsonl")?,
            journal: Some(journal),
            index: Index::default(),
            seen: HashMap::new(),
            labels: HashMap::new(),
            stats: Stats::default(),
            units: 0,
            complete: false,
            last_checkpoint: Instant::now(),
        })
    }

    /// A dry run: everything counted, nothing written.
    pub fn dry() -> Stager {
        Stager {
            dir: PathBuf::new(),
            quarantine_dir: PathBuf::new(),
            resources: Appender::sink(),
            messages: Appender::sink(),
            quarantine: Appender::sink(),
            duplicates: Appender::sink(),
            journal: None,
            index: Index::default(),
            seen: HashMap::new(),
            labels: HashMap::new(),
            stats: Stats::default(),
            units: 0,
            complete: false,
            last_checkpoint: Instant::now(),
        }
    }

    /// Reopens staging after an interruption: every file cut back to the last checkpoint, the
    /// index and duplicate table rebuilt.
    ///
    /// # Errors
    /// No staging in `dir`, or staging written for other inputs or options.
    pub fn resume(dir: &Path, quarantine_dir: &Path, fingerprint: &str) -> Result<Stager> {
        let journal_path = dir.join("journal");
        let text = std::fs::read_to_string(&journal_path)
            .map_err(|_| Error::new(dir, ErrorKind::Resume("no earlier import here".into())))?;
        let header = text.lines().next().unwrap_or("");
        let (magic, found) = header.split_once('\t').unwrap_or((header, ""));
        if magic != JOURNAL_MAGIC {
            return Err(Error::new(
                &journal_path,
                ErrorKind::Staging("not an import journal".into()),
            ));
        }
        if found != fingerprint {
            return Err(Error::new(
                dir,
                ErrorKind::Resume(
                    "the earlier import read other inputs or used other options (--profile, \
                     --encoding, --timezone); run it with the same ones, or start over in an \
                     empty folder"
                        .into(),
                ),
            ));
        }
        // The last checkpoint written whole: a kill can cut the last line, which is dropped.
        let whole = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
        let checkpoint: Checkpoint = whole
            .lines()
            .skip(1)
            .filter_map(|l| serde_json::from_str(l).ok())
            .last()
            .unwrap_or_default();
        let journal = OpenOptions::new()
            .append(true)
            .open(&journal_path)
            .map_err(Error::io(&journal_path))?;
        journal
            .set_len(whole.len() as u64)
            .map_err(Error::io(&journal_path))?;
        let open = |name: &str, len: u64| Appender::open(&dir.join(name), len);
        let mut stager = Stager {
            dir: dir.to_owned(),
            quarantine_dir: quarantine_dir.to_owned(),
            resources: open("resources.bin", checkpoint.resources_len)?,
            messages: open("messages.bin", checkpoint.messages_len)?,
            quarantine: open("quarantine.jsonl", checkpoint.quarantine_len)?,
            duplicates: open("duplicates.jsonl", checkpoint.duplicates_len)?,
            journal: Some(journal),
            index: Index::default(),
            seen: HashMap::new(),
            labels: HashMap::new(),
            stats: checkpoint.stats,
            units: checkpoint.units,
            complete: checkpoint.complete,
            last_checkpoint: Instant::now(),
        };
        stager.rebuild()?;
        Ok(stager)
    }

    /// Units already staged: the reader skips these.
    pub fn units_done(&self) -> u64 {
        self.units
    }

    pub fn is_complete(&self) -> bool {
        self.complete
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Takes the next unit in reading order.
    ///
    /// # Errors
    /// A staging file cannot be written.
    pub fn apply(&mut self, done: Done) -> Result<()> {
        debug_assert_eq!(done.seq, self.units);
        match done.body {
            DoneBody::File(note) => self.file(note),
            DoneBody::Messages(outcomes) => {
                for outcome in outcomes {
                    self.message(outcome)?;
                }
            }
        }
        self.units += 1;
        if self.last_checkpoint.elapsed() >= CHECKPOINT_EVERY {
            self.checkpoint()?;
        }
        Ok(())
    }

    /// Every unit is in: the last checkpoint says so, and staging can be finished.
    ///
    /// # Errors
    /// The journal cannot be written.
    pub fn finish(mut self) -> Result<Staged> {
        self.complete = true;
        self.checkpoint()?;
        Ok(Staged {
            dir: self.dir,
            index: self.index,
            stats: self.stats,
            resources_len: self.resources.len,
        })
    }

    fn file(&mut self, note: FileNote) {
        let stats = &mut self.stats;
        if let Some(reason) = note.skipped {
            stats.files_skipped += 1;
            stats.skipped.push((note.label, reason.to_owned()));
            return;
        }
        stats.files_read += 1;
        stats.bytes += note.bytes;
        *stats
            .files_by_compression
            .entry(note.compression.as_str().to_owned())
            .or_default() += 1;
        if let Some(reason) = note.damaged {
            stats.files_damaged += 1;
            stats.damaged.push((note.label, reason));
        }
    }

    fn message(&mut self, outcome: Outcome) -> Result<()> {
        let stats = &mut self.stats;
        stats.messages_read += 1;
        let facts = &outcome.facts;
        // Looked up before a key is copied: every message names a type, version and sender
        // seen many times before, and this thread applies messages one after another.
        let count = |map: &mut BTreeMap<String, u64>, key: &Option<String>| {
            if let Some(k) = key {
                match map.get_mut(k) {
                    Some(n) => *n += 1,
                    None => {
                        map.insert(k.clone(), 1);
                    }
                }
            }
        };
        count(&mut stats.message_types, &facts.message_type);
        count(&mut stats.versions, &facts.version);
        count(&mut stats.senders, &facts.sender);
        count(&mut stats.encodings, &facts.encoding);
        if let Some(t) = facts.time {
            stats.first_time = Some(stats.first_time.map_or(t, |f| f.min(t)));
            stats.last_time = Some(stats.last_time.map_or(t, |l| l.max(t)));
        }
        let file = self.label(&outcome.file);
        let converted = outcome.result.is_ok();
        self.messages
            .write_record(&outcome.hash, &file, outcome.number, converted)?;
        // Only a message that converts has copies: a broken message is quarantined wherever
        // it is, since each place may need its own fix (and stray text often repeats).
        if let Some(first) = self.seen.get(&outcome.hash).filter(|_| converted) {
            self.stats.duplicates += 1;
            let row = DuplicateRow {
                file: file.to_string(),
                message: outcome.number,
                byte_offset: outcome.offset,
                control_id: outcome.facts.control_id.clone(),
                first_file: first.file.to_string(),
                first_message: first.number,
            };
            return self.duplicates.write_json(&row);
        }
        if converted {
            self.seen.insert(
                outcome.hash,
                FirstSeen {
                    file: file.clone(),
                    number: outcome.number,
                },
            );
        }
        match outcome.result {
            Ok(converted) => {
                self.stats.converted += 1;
                self.stats.conversion_issues += converted.issues;
                for candidate in converted.resources {
                    self.stage_resource(candidate, converted.time, outcome.seq)?;
                }
                Ok(())
            }
            Err(q) => {
                self.stats.quarantined += 1;
                *self
                    .stats
                    .quarantined_by_stage
                    .entry(q.stage.as_str().to_owned())
                    .or_default() += 1;
                let name = quarantine_name(&file, outcome.number, outcome.line);
                if self.journal.is_some() {
                    let path = self.quarantine_dir.join(&name);
                    if let Some(parent) = path.parent() {
                        std::fs::create_dir_all(parent).map_err(Error::io(parent))?;
                    }
                    std::fs::write(&path, &q.bytes).map_err(Error::io(&path))?;
                }
                let row = QuarantineRow {
                    file: file.to_string(),
                    message: outcome.number,
                    byte_offset: outcome.offset,
                    line: outcome.line,
                    control_id: outcome.facts.control_id,
                    message_type: outcome.facts.message_type,
                    stage: q.stage.as_str().to_owned(),
                    reason: q.reason,
                    quarantine_file: name,
                };
                self.quarantine.write_json(&row)
            }
        }
    }

    fn stage_resource(&mut self, candidate: Candidate, time: i64, seq: u64) -> Result<()> {
        let Candidate { key, json, content } = candidate;
        // Most resources are named by many messages: look up before allocating a key.
        let versions = match self.index.get_mut(key.as_str()) {
            Some(versions) => versions,
            None => self.index.entry(key.clone().into_boxed_str()).or_default(),
        };
        if let Some(v) = versions.iter_mut().find(|v| v.content == content) {
            // The same content again: only its place in time can change.
            if (time, seq) > (v.time, v.seq) {
                v.time = time;
                v.seq = seq;
                self.resources
                    .write_resource(&key, time, seq, content, None)?;
            }
            return Ok(());
        }
        let (offset, len) = self
            .resources
            .write_resource(&key, time, seq, content, Some(&json))?;
        versions.push(Version {
            content,
            time,
            seq,
            offset,
            len,
        });
        self.stats.resource_versions += 1;
        Ok(())
    }

    fn label(&mut self, file: &Arc<str>) -> Arc<str> {
        if let Some(label) = self.labels.get(&**file) {
            return label.clone();
        }
        self.labels.insert(Box::from(&**file), file.clone());
        file.clone()
    }

    fn checkpoint(&mut self) -> Result<()> {
        if self.journal.is_none() {
            return Ok(());
        }
        for appender in [
            &mut self.resources,
            &mut self.messages,
            &mut self.quarantine,
            &mut self.duplicates,
        ] {
            appender.sync()?;
        }
        let checkpoint = Checkpoint {
            units: self.units,
            resources_len: self.resources.len,
            messages_len: self.messages.len,
            quarantine_len: self.quarantine.len,
            duplicates_len: self.duplicates.len,
            stats: self.stats.clone(),
            complete: self.complete,
        };
        let line = serde_json::to_string(&checkpoint)
            .map_err(|e| Error::new(&self.dir, std::io::Error::other(e.to_string())))?;
        let path = self.dir.join("journal");
        if let Some(journal) = &mut self.journal {
            writeln!(journal, "{line}").map_err(Error::io(&path))?;
            journal.sync_data().map_err(Error::io(&path))?;
        }
        self.last_checkpoint = Instant::now();
        Ok(())
    }

    /// Rebuilds the index and the duplicate table from the staged files (after a resume).
    fn rebuild(&mut self) -> Result<()> {
        let path = self.dir.join("resources.bin");
        let mut reader = BufReader::with_capacity(1 << 20, open_read(&path)?);
        let mut offset = 0u64;
        while offset < self.resources.len {
            let record = read_resource_header(&mut reader).map_err(|e| {
                Error::new(&path, ErrorKind::Staging(format!("at byte {offset}: {e}")))
            })?;
            let body_offset = offset + record.header_len;
            if record.body_len > 0 {
                std::io::copy(
                    &mut (&mut reader).take(record.body_len.into()),
                    &mut std::io::sink(),
                )
                .map_err(Error::io(&path))?;
            }
            let versions = self.index.entry(record.key.into_boxed_str()).or_default();
            match versions.iter_mut().find(|v| v.content == record.content) {
                Some(v) => {
                    v.time = record.time;
                    v.seq = record.seq;
                }
                None => versions.push(Version {
                    content: record.content,
                    time: record.time,
                    seq: record.seq,
                    offset: body_offset,
                    len: record.body_len,
                }),
            }
            offset = body_offset + u64::from(record.body_len);
        }
        let path = self.dir.join("messages.bin");
        let mut reader = BufReader::with_capacity(1 << 20, open_read(&path)?);
        let mut offset = 0u64;
        while offset < self.messages.len {
            let (hash, converted, file, number, len) =
                read_message_record(&mut reader).map_err(|e| {
                    Error::new(&path, ErrorKind::Staging(format!("at byte {offset}: {e}")))
                })?;
            if converted {
                let file = self.label(&Arc::from(file));
                self.seen.entry(hash).or_insert(FirstSeen { file, number });
            }
            offset += len;
        }
        Ok(())
    }
}

/// Where a quarantined message is kept, relative to the quarantine folder: the source path
/// made safe (no root, no `..`), then the message number (or the line of stray text).
pub fn quarantine_name(file: &str, number: Option<usize>, line: usize) -> String {
    let safe: Vec<String> = file
        .split(['/', '\\', '!'])
        .filter(|p| !p.is_empty() && *p != "." && *p != "..")
        .map(|p| p.replace(':', "_"))
        .collect();
    let leaf = match number {
        Some(n) => format!("message-{n}.hl7"),
        None => format!("line-{line}.txt"),
    };
    format!("{}/{leaf}", safe.join("/"))
}

fn open_read(path: &Path) -> Result<File> {
    File::open(path).map_err(Error::io(path))
}

/// A staging file written at its end, whose length is known for checkpoints.
struct Appender {
    path: PathBuf,
    /// `None` in a dry run: lengths are counted, nothing is written.
    out: Option<BufWriter<File>>,
    len: u64,
}

impl Appender {
    /// Opens `path` cut back to `len` bytes (a new file when `len` is 0).
    fn open(path: &Path, len: u64) -> Result<Appender> {
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(path)
            .map_err(Error::io(path))?;
        file.set_len(len).map_err(Error::io(path))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        std::io::Seek::seek(&mut out, std::io::SeekFrom::Start(len)).map_err(Error::io(path))?;
        Ok(Appender {
            path: path.to_owned(),
            out: Some(out),
            len,
        })
    }

    fn sink() -> Appender {
        Appender {
            path: PathBuf::new(),
            out: None,
            len: 0,
        }
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        if let Some(out) = &mut self.out {
            out.write_all(bytes).map_err(Error::io(&self.path))?;
        }
        self.len += bytes.len() as u64;
        Ok(())
    }

    fn write_json<T: Serialize>(&mut self, row: &T) -> Result<()> {
        let mut line = serde_json::to_vec(row)
            .map_err(|e| Error::new(&self.path, std::io::Error::other(e.to_string())))?;
        line.push(b'\n');
        self.write(&line)
    }

    /// Resource record: `u32 key length, key, i64 time, u64 seq, u64 content, u32 body
    /// length, body`. Returns the body's offset and length.
    fn write_resource(
        &mut self,
        key: &str,
        time: i64,
        seq: u64,
        content: u64,
        body: Option<&[u8]>,
    ) -> Result<(u64, u32)> {
        let body = body.unwrap_or(&[]);
        let body_len = u32::try_from(body.len()).map_err(|_| {
            Error::new(
                &self.path,
                ErrorKind::Staging("a resource over 4 GiB".into()),
            )
        })?;
        let mut header = Vec::with_capacity(key.len() + 32);
        header.extend_from_slice(&(key.len() as u32).to_le_bytes());
        header.extend_from_slice(key.as_bytes());
        header.extend_from_slice(&time.to_le_bytes());
        header.extend_from_slice(&seq.to_le_bytes());
        header.extend_from_slice(&content.to_le_bytes());
        header.extend_from_slice(&body_len.to_le_bytes());
        self.write(&header)?;
        let offset = self.len;
        self.write(body)?;
        Ok((offset, body_len))
    }

    /// Message record: `hash (16), u8 converted, u64 number + 1 (0: none), u32 file length,
    /// file`.
    fn write_record(
        &mut self,
        hash: &[u8; 16],
        file: &str,
        number: Option<usize>,
        converted: bool,
    ) -> Result<()> {
        let mut record = Vec::with_capacity(32 + file.len());
        record.extend_from_slice(hash);
        record.push(u8::from(converted));
        record.extend_from_slice(&number.map_or(0u64, |n| n as u64 + 1).to_le_bytes());
        record.extend_from_slice(&(file.len() as u32).to_le_bytes());
        record.extend_from_slice(file.as_bytes());
        self.write(&record)
    }

    fn sync(&mut self) -> Result<()> {
        let Some(out) = &mut self.out else {
            return Ok(());
        };
        out.flush().map_err(Error::io(&self.path))?;
        out.get_ref().sync_data().map_err(Error::io(&self.path))
    }
}

/// The fixed part of a staged resource record.
pub(crate) struct ResourceHeader {
    pub key: String,
    pub time: i64,
    pub seq: u64,
    pub content: u64,
    pub body_len: u32,
    pub header_len: u64,
}

fn read_u32(r: &mut impl Read) -> std::io::Result<u32> {
    let mut b = [0; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

fn read_u64(r: &mut impl Read) -> std::io::Result<u64> {
    let mut b = [0; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

fn read_string(r: &mut impl Read, len: u32) -> std::io::Result<String> {
    let mut b = vec![0; len as usize];
    r.read_exact(&mut b)?;
    String::from_utf8(b).map_err(|e| std::io::Error::other(e.to_string()))
}

pub(crate) fn read_resource_header(r: &mut impl BufRead) -> std::io::Result<ResourceHeader> {
    let key_len = read_u32(r)?;
    let key = read_string(r, key_len)?;
    let time = read_u64(r)? as i64;
    let seq = read_u64(r)?;
    let content = read_u64(r)?;
    let body_len = read_u32(r)?;
    Ok(ResourceHeader {
        header_len: 4 + u64::from(key_len) + 28,
        key,
        time,
        seq,
        content,
        body_len,
    })
}

/// A message record: its hash, whether it converted, its file and number, the record's length.
type MessageRecord = ([u8; 16], bool, String, Option<usize>, u64);

fn read_message_record(r: &mut impl BufRead) -> std::io::Result<MessageRecord> {
    let mut hash = [0; 16];
    r.read_exact(&mut hash)?;
    let mut converted = [0; 1];
    r.read_exact(&mut converted)?;
    let number = read_u64(r)?;
    let file_len = read_u32(r)?;
    let file = read_string(r, file_len)?;
    let number = number.checked_sub(1).map(|n| n as usize);
    Ok((
        hash,
        converted[0] == 1,
        file,
        number,
        29 + u64::from(file_len),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quarantine_names_stay_inside_the_folder() {
        assert_eq!(
            quarantine_name("/data/../x/2019/a.hl7.gz", Some(3), 9),
            "data/x/2019/a.hl7.gz/message-3.hl7"
        );
        assert_eq!(
            quarantine_name("C:\\arch\\b.zip!in/c.hl7", None, 12),
            "C_/arch/b.zip/in/c.hl7/line-12.txt"
        );
    }
}
