//! Finishing: each staged resource's versions applied in message-time order into its final
//! state, then written out as FHIR Bulk Data NDJSON or into the resource store; the report.
//!
//! Versions are merged as HL7 v2 updates are read (the `fhir-store` destination does the
//! same): an element a later message sent replaces the earlier one whole, an element it did not
//! send is kept. So an ORU whose PID has only the MRN does not erase the address an ADT gave,
//! and the A08 of 2021 wins over the A08 of 2019 even when the 2019 file is read last.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::error::{Error, ErrorKind, Result};
use crate::stage::{DuplicateRow, Index, QuarantineRow, Staged, Version, read_resource_header};

/// The final resources, in the order they were first staged (reading order): one sequential
/// pass over the staged versions, so the output depends only on the inputs, not on thread
/// timing or on a resume (staging is written in reading order, byte for byte the same).
pub struct FinalResources<'a> {
    index: &'a Index,
    reader: BufReader<File>,
    /// For the later versions of a resource seen more than once.
    spill: File,
    spill_path: PathBuf,
    offset: u64,
    end: u64,
}

/// One resource in its final state.
pub struct FinalResource<'a> {
    pub resource_type: &'a str,
    pub id: &'a str,
    pub json: Vec<u8>,
    /// How many distinct versions were merged.
    pub versions: usize,
}

impl<'a> FinalResources<'a> {
    /// # Errors
    /// The staged resources cannot be opened.
    pub fn new(staged: &'a Staged) -> Result<FinalResources<'a>> {
        let spill_path = staged.resources_path();
        let spill = File::open(&spill_path).map_err(Error::io(&spill_path))?;
        let reader =
            BufReader::with_capacity(1 << 20, spill.try_clone().map_err(Error::io(&spill_path))?);
        Ok(FinalResources {
            index: &staged.index,
            reader,
            spill,
            spill_path,
            offset: 0,
            end: staged.resources_len,
        })
    }

    /// How many resources there are.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The next resource, merged.
    ///
    /// # Errors
    /// A staged version cannot be read or is not a JSON object.
    pub fn next_resource(&mut self) -> Option<Result<FinalResource<'a>>> {
        loop {
            if self.offset >= self.end {
                return None;
            }
            match self.next_record() {
                Ok(Some(r)) => return Some(Ok(r)),
                Ok(None) => {}
                Err(e) => return Some(Err(e)),
            }
        }
    }

    /// Reads one record; a resource when it is the first version of its resource.
    fn next_record(&mut self) -> Result<Option<FinalResource<'a>>> {
        let damaged = |e: std::io::Error, at: u64| {
            Error::new(
                &self.spill_path,
                ErrorKind::Staging(format!("at byte {at}: {e}")),
            )
        };
        let at = self.offset;
        let header = read_resource_header(&mut self.reader).map_err(|e| damaged(e, at))?;
        let body_offset = at + header.header_len;
        self.offset = body_offset + u64::from(header.body_len);
        if header.body_len == 0 {
            return Ok(None);
        }
        let Some((key, versions)) = self.index.get_key_value(header.key.as_str()) else {
            return Err(damaged(
                std::io::Error::other("a record not in the index"),
                at,
            ));
        };
        if versions.first().map(|v| v.offset) != Some(body_offset) {
            // A later version: it is read with the first, when the resource is merged.
            self.reader
                .seek_relative(i64::from(header.body_len))
                .map_err(|e| damaged(e, body_offset))?;
            return Ok(None);
        }
        let mut body = vec![0; header.body_len as usize];
        self.reader
            .read_exact(&mut body)
            .map_err(|e| damaged(e, body_offset))?;
        let json = if versions.len() == 1 {
            body
        } else {
            self.merged(versions)?
        };
        let (resource_type, id) = key.split_once('/').unwrap_or((key, ""));
        Ok(Some(FinalResource {
            resource_type,
            id,
            json,
            versions: versions.len(),
        }))
    }

    fn merged(&self, versions: &[Version]) -> Result<Vec<u8>> {
        let read = |v: &Version| -> Result<Vec<u8>> {
            let mut buf = vec![0; v.len as usize];
            self.spill
                .read_exact_at(&mut buf, v.offset)
                .map_err(Error::io(&self.spill_path))?;
            Ok(buf)
        };
        let mut ordered: Vec<&Version> = versions.iter().collect();
        ordered.sort_by_key(|v| (v.time, v.seq));
        let bodies = ordered.into_iter().map(read).collect::<Result<Vec<_>>>()?;
        merge(&bodies).map_err(|e| Error::new(&self.spill_path, ErrorKind::Staging(e)))
    }
}

/// Top-level members of a JSON object, in their order, values left as raw text.
struct Members<'a>(Vec<(String, &'a RawValue)>);

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Self::Value, A::Error> {
                let mut members = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, &'de RawValue>()? {
                    members.push((k, v));
                }
                Ok(Members(members))
            }
        }
        d.deserialize_map(V)
    }
}

/// Applies `bodies` in order: a later body's members replace earlier ones, new members are
/// added at the end; the first body's member order is kept.
///
/// # Errors
/// A body that is not a JSON object.
pub fn merge(bodies: &[Vec<u8>]) -> std::result::Result<Vec<u8>, String> {
    let mut merged: Vec<(String, &RawValue)> = Vec::new();
    for body in bodies {
        let Members(members) =
            serde_json::from_slice(body).map_err(|e| format!("staged resource: {e}"))?;
        for (k, v) in members {
            match merged.iter_mut().find(|(m, _)| *m == k) {
                Some(slot) => slot.1 = v,
                None => merged.push((k, v)),
            }
        }
    }
    let mut out = Vec::with_capacity(bodies.iter().map(Vec::len).max().unwrap_or(0) + 64);
    out.push(b'{');
    for (i, (k, v)) in merged.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut out, k).map_err(|e| e.to_string())?;
        out.push(b':');
        out.extend_from_slice(v.get().as_bytes());
    }
    out.push(b'}');
    Ok(out)
}

/// Writes one `Type.ndjson` per resource type into `dir` (through temporary names, renamed
/// when whole), returning the count per type.
///
/// # Errors
/// A file cannot be written.
pub fn write_ndjson(
    staged: &Staged,
    dir: &Path,
    mut progress: impl FnMut(u64),
) -> Result<BTreeMap<String, u64>> {
    std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
    let mut resources = FinalResources::new(staged)?;
    let mut files: HashMap<&str, (BufWriter<File>, u64)> = HashMap::new();
    let mut written = 0u64;
    while let Some(resource) = resources.next_resource() {
        let resource = resource?;
        let t = resource.resource_type;
        // Named only when a write fails (this loop runs once per resource).
        let failed = |e| Error::io(dir.join(format!("{t}.ndjson")))(e);
        let (out, count) = match files.get_mut(t) {
            Some(f) => f,
            None => {
                let partial = partial_path(dir, t);
                let file = File::create(&partial).map_err(Error::io(&partial))?;
                files
                    .entry(t)
                    .or_insert((BufWriter::with_capacity(1 << 18, file), 0))
            }
        };
        out.write_all(&resource.json).map_err(failed)?;
        out.write_all(b"\n").map_err(failed)?;
        *count += 1;
        written += 1;
        if written.is_multiple_of(10_000) {
            progress(written);
        }
    }
    let mut counts = BTreeMap::new();
    for (t, (mut out, count)) in files {
        let done = dir.join(format!("{t}.ndjson"));
        out.flush().map_err(Error::io(&done))?;
        out.get_ref().sync_data().map_err(Error::io(&done))?;
        std::fs::rename(partial_path(dir, t), &done).map_err(Error::io(&done))?;
        counts.insert(t.to_owned(), count);
    }
    progress(written);
    Ok(counts)
}

fn partial_path(dir: &Path, resource_type: &str) -> PathBuf {
    dir.join(format!(".{resource_type}.ndjson.partial"))
}

/// Writes the Bulk Data manifest of an NDJSON output (`manifest.json`).
///
/// # Errors
/// The file cannot be written.
pub fn write_manifest(
    dir: &Path,
    request: &str,
    counts: &BTreeMap<String, u64>,
    quarantined: u64,
) -> Result<()> {
    let output: Vec<serde_json::Value> = counts
        .iter()
        .map(|(t, n)| serde_json::json!({ "type": t, "url": format!("{t}.ndjson"), "count": n }))
        .collect();
    let error: Vec<serde_json::Value> = if quarantined > 0 {
        vec![serde_json::json!({
            "type": "OperationOutcome",
            "url": "quarantine/report.json",
            "count": quarantined,
        })]
    } else {
        Vec::new()
    };
    let manifest = serde_json::json!({
        "transactionTime": jiff::Timestamp::now().to_string(),
        "request": request,
        "requiresAccessToken": false,
        "output": output,
        "error": error,
    });
    write_json_file(&dir.join("manifest.json"), &manifest)
}

/// Writes the quarantine report (`report.csv`, `report.json`) and the duplicates list
/// (`duplicates.csv`) from the staged rows.
///
/// # Errors
/// A staged row cannot be read or a report written.
pub fn write_reports(staged: &Staged, quarantine_dir: &Path) -> Result<()> {
    std::fs::create_dir_all(quarantine_dir).map_err(Error::io(quarantine_dir))?;
    let rows: Vec<QuarantineRow> = read_rows(&staged.dir.join("quarantine.jsonl"))?;
    write_json_file(&quarantine_dir.join("report.json"), &rows)?;
    let mut csv = String::from(
        "file,message,byte_offset,line,control_id,message_type,stage,reason,quarantine_file\n",
    );
    for r in &rows {
        let fields = [
            r.file.clone(),
            r.message.map(|n| n.to_string()).unwrap_or_default(),
            r.byte_offset.to_string(),
            r.line.to_string(),
            r.control_id.clone().unwrap_or_default(),
            r.message_type.clone().unwrap_or_default(),
            r.stage.clone(),
            r.reason.clone(),
            r.quarantine_file.clone(),
        ];
        csv_line(&mut csv, &fields);
    }
    let path = quarantine_dir.join("report.csv");
    std::fs::write(&path, csv).map_err(Error::io(&path))?;
    let duplicates: Vec<DuplicateRow> = read_rows(&staged.dir.join("duplicates.jsonl"))?;
    let mut csv = String::from("file,message,byte_offset,control_id,first_file,first_message\n");
    for d in &duplicates {
        let fields = [
            d.file.clone(),
            d.message.map(|n| n.to_string()).unwrap_or_default(),
            d.byte_offset.to_string(),
            d.control_id.clone().unwrap_or_default(),
            d.first_file.clone(),
            d.first_message.map(|n| n.to_string()).unwrap_or_default(),
        ];
        csv_line(&mut csv, &fields);
    }
    let path = quarantine_dir.join("duplicates.csv");
    std::fs::write(&path, csv).map_err(Error::io(&path))
}

fn read_rows<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    let file = File::open(path).map_err(Error::io(path))?;
    let mut rows = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(Error::io(path))?;
        let row = serde_json::from_str(&line)
            .map_err(|e| Error::new(path, ErrorKind::Staging(format!("line {}: {e}", i + 1))))?;
        rows.push(row);
    }
    Ok(rows)
}

/// One CSV record (RFC 4180 quoting).
fn csv_line(out: &mut String, fields: &[String]) {
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        if f.contains([',', '"', '\n', '\r']) {
            out.push('"');
            out.push_str(&f.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(f);
        }
    }
    out.push('\n');
}

/// Writes JSON through a temporary name, so a reader never sees half a file.
pub fn write_json_file<T: serde::Serialize + ?Sized>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_vec_pretty(value)
        .map_err(|e| Error::new(path, std::io::Error::other(e.to_string())))?;
    let tmp = path.with_extension("json.partial");
    std::fs::write(&tmp, text).map_err(Error::io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(Error::io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_replaces_sent_members_and_keeps_the_rest_in_order() {
        let a = br#"{"resourceType":"Patient","id":"p","name":[{"family":"Old"}],"address":[{"city":"A"}]}"#;
        let b = br#"{"resourceType":"Patient","id":"p","name":[{"family":"New"}],"telecom":[{"value":"1"}]}"#;
        let merged = merge(&[a.to_vec(), b.to_vec()]).unwrap();
        assert_eq!(
            std::str::from_utf8(&merged).unwrap(),
            r#"{"resourceType":"Patient","id":"p","name":[{"family":"New"}],"address":[{"city":"A"}],"telecom":[{"value":"1"}]}"#
        );
        assert!(merge(&[b"[1]".to_vec()]).is_err());
    }

    #[test]
    fn csv_quotes_what_needs_it() {
        let mut s = String::new();
        csv_line(&mut s, &["a".into(), "b,c".into(), "say \"x\"".into()]);
        assert_eq!(s, "a,\"b,c\",\"say \"\"x\"\"\"\n");
    }
}
