//! The directory watcher: picks up files dropped into a folder.
//!
//! Every `poll`, files matching `pattern` that have not changed for one poll interval (so a
//! file still being written is left alone) are read in name order, split into messages, and
//! each message goes through ingest. A file whose messages were all accepted moves to
//! `done/`; otherwise it moves to `error/` with a `.errors.txt` report beside it naming each
//! message's number, byte offset and answer. A file over `max_file` moves to `error/` unread,
//! with a report saying so. Nothing is deleted.
//!
//! What a crash leaves behind: a file whose messages were stored but that was not yet moved
//! is read again on restart; its messages are then duplicates (same sender, control id and
//! bytes) and are not routed twice.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use hl7v2::AckCode;
use tokio::sync::watch;

use super::SourceStats;
use crate::runtime::channel::Channel;

#[derive(Debug, Clone)]
pub struct DirectoryOptions {
    pub path: PathBuf,
    pub pattern: String,
    pub poll: Duration,
    pub done: PathBuf,
    pub error: PathBuf,
    /// Larger files are moved to `error` unread.
    pub max_file: usize,
}

/// `*` matches any run of characters, `?` one character; everything else is literal.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    fn go(p: &[char], n: &[char]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some('*'), _) => go(&p[1..], n) || (!n.is_empty() && go(p, &n[1..])),
            (Some('?'), Some(_)) => go(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &n[1..]),
            _ => false,
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    go(&p, &n)
}

pub async fn run(
    options: DirectoryOptions,
    channel: Arc<Channel>,
    stats: Arc<SourceStats>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        if *shutdown.borrow() {
            break;
        }
        match ready_files(&options).await {
            Ok(files) => {
                for file in files {
                    // A stopped channel leaves its files where they are until it is started.
                    if *shutdown.borrow() || !channel.is_running() {
                        break;
                    }
                    process_file(&file, &options, &channel, &stats).await;
                }
            }
            Err(e) => {
                tracing::warn!(channel = %channel.name, dir = %options.path.display(), error = %e, "cannot list the watched directory")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(options.poll) => {}
            _ = shutdown.changed() => {}
        }
    }
}

async fn ready_files(options: &DirectoryOptions) -> std::io::Result<Vec<PathBuf>> {
    let mut entries = tokio::fs::read_dir(&options.path).await?;
    let mut files = Vec::new();
    let settled = SystemTime::now() - options.poll;
    while let Some(entry) = entries.next_entry().await? {
        let meta = entry.metadata().await?;
        if !meta.is_file() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with('.') || !glob_match(&options.pattern, &name) {
            continue;
        }
        if meta.modified().map(|m| m <= settled).unwrap_or(true) {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

async fn process_file(
    file: &Path,
    options: &DirectoryOptions,
    channel: &Channel,
    stats: &SourceStats,
) {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    // Checked before reading, so a huge file dropped by mistake is never loaded into memory.
    match tokio::fs::metadata(file).await {
        Ok(meta) if meta.len() > options.max_file as u64 => {
            let problem = format!(
                "the file is larger than {} bytes (max_file); not read",
                options.max_file
            );
            tracing::warn!(channel = %channel.name, file = %name, size = meta.len(), "dropped file over max_file; moved to error unread");
            match move_into(file, &options.error, &name, &[problem]).await {
                Ok(()) => {
                    stats.files_failed.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::error!(channel = %channel.name, file = %name, error = %e, "cannot move a processed file");
                }
            }
            return;
        }
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(channel = %channel.name, file = %name, error = %e, "cannot read a dropped file");
            return;
        }
    }
    let data = match tokio::fs::read(file).await {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(channel = %channel.name, file = %name, error = %e, "cannot read a dropped file");
            return;
        }
    };
    let peer = format!("file:{name}");
    let mut problems = Vec::new();
    let mut stored_ok = true;
    let mut count = 0usize;
    for item in hl7v2::split_file(&data) {
        count += 1;
        let (number, offset, bytes) = match item {
            Ok(raw) => (raw.number, raw.offset, raw.bytes),
            Err(e) => {
                problems.push(format!("line outside a message: {e}"));
                continue;
            }
        };
        let reply = channel.ingest(bytes, &peer).await;
        match reply.code {
            AckCode::AA | AckCode::CA => {}
            AckCode::AE | AckCode::CE => {
                stored_ok = false;
                problems.push(format!(
                    "message {number} at byte {offset}: could not be stored"
                ));
            }
            AckCode::AR | AckCode::CR => {
                let text = reply.ack.as_deref().and_then(err_text).unwrap_or_default();
                problems.push(format!(
                    "message {number} at byte {offset}: rejected: {text}"
                ));
            }
        }
    }
    if count == 0 {
        problems.push("no HL7 v2 message in the file".into());
    }
    if !stored_ok {
        // Leave the file in place: the store is failing and the next poll tries again.
        tracing::error!(channel = %channel.name, file = %name, "messages of a dropped file could not be stored; it stays for the next poll");
        return;
    }
    let (target_dir, counter) = if problems.is_empty() {
        (&options.done, &stats.files_done)
    } else {
        (&options.error, &stats.files_failed)
    };
    match move_into(file, target_dir, &name, &problems).await {
        Err(e) => {
            tracing::error!(channel = %channel.name, file = %name, error = %e, "cannot move a processed file");
        }
        Ok(()) => {
            counter.fetch_add(1, Ordering::Relaxed);
            if problems.is_empty() {
                tracing::info!(channel = %channel.name, file = %name, messages = count, "dropped file processed");
            } else {
                // The report beside the file says which message and why (no PHI here).
                tracing::warn!(channel = %channel.name, file = %name, messages = count, problems = problems.len(), "dropped file moved to error with a report");
            }
        }
    }
}

/// ERR-8 or MSA-3 of an ACK: the reason text, which carries no PHI (we wrote it).
fn err_text(ack: &[u8]) -> Option<String> {
    let msg = hl7v2::parse(ack).ok()?;
    msg.text("ERR-8")
        .or_else(|| msg.text("MSA-3"))
        .map(|t| t.into_owned())
}

async fn move_into(
    file: &Path,
    dir: &Path,
    name: &str,
    problems: &[String],
) -> std::io::Result<()> {
    tokio::fs::create_dir_all(dir).await?;
    let mut target = dir.join(name);
    let mut n = 1;
    while tokio::fs::try_exists(&target).await? {
        target = dir.join(format!("{name}.{n}"));
        n += 1;
    }
    if !problems.is_empty() {
        let report = format!("{}\n", problems.join("\n"));
        let report_name = format!(
            "{}.errors.txt",
            target
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default()
        );
        tokio::fs::write(dir.join(report_name), report).await?;
    }
    tokio::fs::rename(file, &target).await
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs() {
        assert!(glob_match("*.hl7", "a.hl7"));
        assert!(glob_match("*", "anything"));
        assert!(glob_match("adt-??.txt", "adt-01.txt"));
        assert!(!glob_match("*.hl7", "a.hl7.tmp"));
        assert!(!glob_match("adt-?.txt", "adt-01.txt"));
    }
}
