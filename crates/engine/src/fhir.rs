//! The unified model in a channel: each routed message is converted to a FHIR R4 transaction bundle at
//! ingest, through the profile of its sender (`[channel.fhir]`), so that a code map's `reject` policy can
//! answer AE and its `hold` policy can hold the message before anything is delivered. Destinations with
//! `format = "fhir"` receive the bundle: it is converted again from the stored message at delivery, which
//! gives the same bundle (the conversion is deterministic) without storing a second copy of the PHI.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use v2fhir::{Conversion, Profile};

/// A channel's conversion settings: its profiles, read and checked at configuration time.
#[derive(Debug, Clone, PartialEq)]
pub struct FhirConversion {
    /// Where the profiles were read from (a file or a folder).
    pub source: PathBuf,
    pub profiles: Vec<Profile>,
}

/// Reads a profile file, or every `*.toml` of a folder (sorted by name). Errors name the file, the line
/// and the field, every one of them.
///
/// # Errors
/// Unreadable files and every problem of every profile, one line each.
pub fn load_profiles(path: &Path) -> Result<Vec<Profile>, Vec<String>> {
    let files = if path.is_dir() {
        let entries =
            std::fs::read_dir(path).map_err(|e| vec![format!("{}: {e}", path.display())])?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        files
    } else {
        vec![path.to_path_buf()]
    };
    let mut profiles = Vec::new();
    let mut errors = Vec::new();
    for file in files {
        match std::fs::read_to_string(&file) {
            Ok(text) => match Profile::from_toml(&text, &file.display().to_string()) {
                Ok(p) => profiles.push(p),
                Err(e) => errors.extend(e.into_iter().map(|e| e.to_string())),
            },
            Err(e) => errors.push(format!("{}: {e}", file.display())),
        }
    }
    if errors.is_empty() {
        Ok(profiles)
    } else {
        Err(errors)
    }
}

/// A channel's conversion, shared by its ingest path and its `format = "fhir"` destinations, and
/// replaceable while they run: a code map entry added through the management API takes effect for
/// the next message without restarting anything.
#[derive(Debug, Clone, Default)]
pub struct SharedConversion(Arc<RwLock<Option<Arc<FhirConversion>>>>);

impl SharedConversion {
    pub fn new(conversion: Option<Arc<FhirConversion>>) -> Self {
        SharedConversion(Arc::new(RwLock::new(conversion)))
    }

    /// The conversion now (`None`: the channel has no `[channel.fhir]`).
    pub fn get(&self) -> Option<Arc<FhirConversion>> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the profiles (read again from `source` by the caller); the next message uses them.
    pub fn replace(&self, conversion: Arc<FhirConversion>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Some(conversion);
    }
}

impl FhirConversion {
    /// Converts a parsed message with its sender's profile (the plain reading when none matches).
    ///
    /// # Errors
    /// As [`v2fhir::convert`]: an unsupported message type, or a code refused by a `reject` map.
    pub fn convert(&self, message: &hl7v2::Message<'_>) -> Result<Conversion, v2fhir::Error> {
        let fallback = Profile::default();
        let profile = v2fhir::profile::select(&self.profiles, message).unwrap_or(&fallback);
        v2fhir::convert(message, profile)
    }

    /// The bundle JSON for a stored message (a `format = "fhir"` destination's payload).
    ///
    /// # Errors
    /// A message that does not parse or convert (it converted at ingest, so only a profile changed
    /// since then can cause this); the text names no patient data.
    pub fn bundle_json(&self, raw: &[u8]) -> Result<Vec<u8>, String> {
        let message =
            hl7v2::parse(raw).map_err(|e| format!("stored message does not parse: {}", e.kind))?;
        let conversion = self
            .convert(&message)
            .map_err(|e| format!("conversion to FHIR failed: {e}"))?;
        Ok(fhir::to_vec(&conversion.bundle))
    }
}
