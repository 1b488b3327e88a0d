//! Drift detection: each channel learns what its feed looks like and says when it changes.
//!
//! Map:
//! - [`learner`]: the pure part. A [`FeedProfile`] per channel, learned from parsed messages over a
//!   baseline, then each later message compared with it: a new message type, a new segment (Z
//!   segments included), a coded field carrying a code never seen, a field whose fill rate over
//!   the last `window` messages moved away from the baseline's by `fill_rate_change` or more.
//! - [`export`]: a learned profile as a starting conformance profile for `causeway validate`.
//! - this file: [`DriftSettings`] (`[channel.drift]`) and [`DriftTracker`], the per-channel
//!   holder the ingest path calls, which persists the profile.
//!
//! Persistence: `DATA_DIR/drift/CHANNEL.json`, the [`FeedProfile`] as JSON, written atomically
//! (a temporary file, fsync, rename) by the engine every [`SAVE_EVERY`] while it changed and when
//! the engine stops (shutdown or reload), and read when the channel starts. A crash loses at
//! most the last [`SAVE_EVERY`] of learning; a file that does not read (edited, another format)
//! is set aside as `CHANNEL.json.bad` and learning starts again, with a logged warning.
//!
//! Findings become `drift` events in the store, written with the message they were found in
//! (same transaction), and count in `ChannelStats::drift_findings`. Their text names message
//! types, segments, fields, codes of coded fields and rates: no other value of a message.

pub mod export;
pub mod learner;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub use learner::{FeedProfile, Finding};

/// Default baseline: messages learned from before comparing. Enough for the common codes of a
/// busy feed (an hour of an ADT feed) without waiting days on a quiet one.
pub const DEFAULT_BASELINE_MESSAGES: u64 = 500;
/// Default change of a field's fill rate (as a fraction, 0.5 = 50 points) that is reported.
pub const DEFAULT_FILL_RATE_CHANGE: f64 = 0.5;
/// Default recent window, in messages of one type, whose fill rate is compared.
pub const DEFAULT_WINDOW: usize = 100;
/// Default messages of a type in the baseline before that type is compared: a rare type seen
/// three times has not shown its codes yet.
pub const DEFAULT_MIN_SAMPLES: u64 = 50;
/// Default distinct values kept per coded field; more and it is not a closed code set.
pub const DEFAULT_MAX_VALUES: usize = 256;
/// Largest window that may be configured (bits per field and type).
pub const MAX_WINDOW: usize = 10_000;
/// How often the engine writes a changed profile to disk.
pub const SAVE_EVERY: Duration = Duration::from_secs(10);

/// `[channel.drift]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct DriftSettings {
    pub enabled: bool,
    /// Messages in the baseline (0: time only).
    pub baseline_messages: u64,
    /// Time the baseline lasts at least, from the first message.
    pub baseline_duration: Option<Duration>,
    /// Fraction (0 to 1) a fill rate must move to be reported.
    pub fill_rate_change: f64,
    pub window: usize,
    pub min_samples: u64,
    pub max_values: usize,
    /// Segments (`ZPD`) and fields (`PID-8`) not learned nor compared.
    pub ignore: BTreeSet<String>,
}

impl Default for DriftSettings {
    fn default() -> Self {
        DriftSettings {
            enabled: true,
            baseline_messages: DEFAULT_BASELINE_MESSAGES,
            baseline_duration: None,
            fill_rate_change: DEFAULT_FILL_RATE_CHANGE,
            window: DEFAULT_WINDOW,
            min_samples: DEFAULT_MIN_SAMPLES,
            max_values: DEFAULT_MAX_VALUES,
            ignore: BTreeSet::new(),
        }
    }
}

impl DriftSettings {
    pub fn ignores_segment(&self, id: &str) -> bool {
        !self.ignore.is_empty() && self.ignore.contains(id)
    }

    pub fn ignores_field(&self, segment: &str, n: usize) -> bool {
        !self.ignore.is_empty() && self.ignore.contains(&format!("{segment}-{n}"))
    }
}

/// `SEG` or `SEG-n`: what `ignore` takes.
pub fn check_ignore_entry(entry: &str) -> Result<(), String> {
    let (seg, n) = match entry.split_once('-') {
        Some((s, n)) => (s, Some(n)),
        None => (entry, None),
    };
    let seg_ok = seg.len() == 3
        && seg
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    let n_ok = n.is_none_or(|n| {
        n.parse::<usize>()
            .is_ok_and(|n| (1..=learner::MAX_FIELD_NUMBER).contains(&n))
    });
    if seg_ok && n_ok {
        Ok(())
    } else {
        Err(format!(
            "{entry:?} is not a segment (\"ZPD\") or a field (\"PID-8\", 1 to {})",
            learner::MAX_FIELD_NUMBER
        ))
    }
}

/// One channel's learner, shared by its connections.
#[derive(Debug)]
pub struct DriftTracker {
    pub settings: DriftSettings,
    profile: Mutex<FeedProfile>,
    /// `None`: kept in memory only (a channel built without a data directory).
    path: Option<PathBuf>,
    dirty: AtomicBool,
}

impl DriftTracker {
    /// A tracker for `channel`, with the profile saved in `data_dir/drift/` when there is one.
    pub fn open(settings: DriftSettings, data_dir: Option<&Path>, channel: &str) -> DriftTracker {
        let path = data_dir.map(|d| profile_path(d, channel));
        let profile = match &path {
            Some(p) => load(p, channel),
            None => FeedProfile::new(),
        };
        DriftTracker {
            settings,
            profile: Mutex::new(profile),
            path,
            dirty: AtomicBool::new(false),
        }
    }

    /// Learns from (or compares) one parsed message. Cheap: no I/O, one short lock.
    pub fn observe(&self, msg: &hl7v2::Message<'_>, now_ms: i64) -> Vec<Finding> {
        let mut p = self.profile.lock().unwrap_or_else(|e| e.into_inner());
        let findings = p.observe(msg, &self.settings, now_ms);
        self.dirty.store(true, Ordering::Relaxed);
        findings
    }

    /// A copy of the profile as learned so far.
    pub fn profile(&self) -> FeedProfile {
        self.profile
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Forgets everything learned and starts a new baseline (saved at once).
    pub fn reset(&self) -> std::io::Result<()> {
        *self.profile.lock().unwrap_or_else(|e| e.into_inner()) = FeedProfile::new();
        self.dirty.store(true, Ordering::Relaxed);
        self.save()
    }

    /// Writes the profile when it changed since the last save.
    pub fn save(&self) -> std::io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        if !self.dirty.swap(false, Ordering::Relaxed) {
            return Ok(());
        }
        let json = {
            let p = self.profile.lock().unwrap_or_else(|e| e.into_inner());
            serde_json::to_vec(&*p).map_err(std::io::Error::other)?
        };
        write_atomically(path, &json).inspect_err(|_| {
            // Try again next time.
            self.dirty.store(true, Ordering::Relaxed);
        })
    }

    /// Where the profile is saved, if anywhere.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }
}

/// `DATA_DIR/drift/CHANNEL.json`.
pub fn profile_path(data_dir: &Path, channel: &str) -> PathBuf {
    data_dir.join("drift").join(format!("{channel}.json"))
}

/// Reads a saved profile.
///
/// # Errors
/// The file cannot be read or is not a profile of this format (the text says which).
pub fn read_profile(path: &Path) -> Result<FeedProfile, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let p: FeedProfile = serde_json::from_slice(&bytes)
        .map_err(|e| format!("{}: not a drift profile: {e}", path.display()))?;
    if p.format != learner::FORMAT {
        return Err(format!(
            "{}: drift profile format {} (this version reads {})",
            path.display(),
            p.format,
            learner::FORMAT
        ));
    }
    Ok(p)
}

fn load(path: &Path, channel: &str) -> FeedProfile {
    if !path.exists() {
        return FeedProfile::new();
    }
    match read_profile(path) {
        Ok(p) => p,
        Err(e) => {
            let bad = path.with_extension("json.bad");
            let _ = std::fs::rename(path, &bad);
            tracing::warn!(channel, error = %e, moved_to = %bad.display(), "drift profile unreadable; learning again");
            FeedProfile::new()
        }
    }
}

/// Temporary file, fsync, rename: a crash leaves the old file or the new one, never half.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
