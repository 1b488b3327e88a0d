//! Finding and opening the archive: directories walked recursively in name order, single files,
//! and `.gz`, `.zst` and `.zip` archives (a zip's entries are files of their own).
//!
//! What a file holds is decided by its name, then by its first bytes: HL7 v2 (one or many
//! messages, batch envelopes, any line endings), FHIR NDJSON (the `$import`-style load of an
//! earlier export), or neither (a README, an expected-output JSON), which is skipped and listed.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind, Result};

/// A file found under the inputs, in the order it is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputFile {
    pub path: PathBuf,
    /// Bytes on disk (compressed), for progress and the rate in MB/s.
    pub size: u64,
}

/// How a file is stored on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    Zstd,
    Zip,
}

impl Compression {
    pub fn of(name: &str) -> Compression {
        let lower = name.to_ascii_lowercase();
        if lower.ends_with(".gz") || lower.ends_with(".gzip") {
            Compression::Gzip
        } else if lower.ends_with(".zst") || lower.ends_with(".zstd") {
            Compression::Zstd
        } else if lower.ends_with(".zip") {
            Compression::Zip
        } else {
            Compression::None
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::Zip => "zip",
        }
    }
}

/// What a file's content is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    Hl7,
    Ndjson,
    /// Not an archive file: the reason it was skipped.
    Skip(&'static str),
}

/// One file's content, decompressed: a plain file, or one entry of a zip.
#[derive(Debug)]
pub struct Entry {
    /// The file's path as given (`archive.zip!folder/file.hl7` for a zip entry).
    pub label: String,
    pub compression: Compression,
    pub content: Content,
    pub data: Vec<u8>,
    /// The stream ended in an error after `data` was read (a truncated gzip): what was read is
    /// imported and the error reported against the file.
    pub damaged: Option<String>,
}

/// Every file under `inputs`, in a stable order (inputs as given, directories in name order),
/// leaving out hidden files and folders and anything under `exclude` (the import's own
/// output, when it is written inside an input folder).
///
/// # Errors
/// An input that does not exist or a folder that cannot be listed.
pub fn discover(inputs: &[PathBuf], exclude: &[PathBuf]) -> Result<Vec<InputFile>> {
    let exclude: Vec<PathBuf> = exclude
        .iter()
        .filter_map(|p| std::fs::canonicalize(p).ok())
        .collect();
    let mut files = Vec::new();
    for input in inputs {
        let meta = std::fs::metadata(input).map_err(|_| Error::new(input, ErrorKind::NotFound))?;
        if meta.is_file() {
            files.push(InputFile {
                path: input.clone(),
                size: meta.len(),
            });
            continue;
        }
        let walk = walkdir::WalkDir::new(input)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| {
                let hidden = e.depth() > 0 && e.file_name().to_string_lossy().starts_with('.');
                let excluded = std::fs::canonicalize(e.path())
                    .map(|p| exclude.iter().any(|x| p.starts_with(x)))
                    .unwrap_or(false);
                !hidden && !excluded
            });
        for entry in walk {
            let entry = entry.map_err(|e| {
                let path = e.path().map(Path::to_path_buf).unwrap_or(input.clone());
                Error::new(path, std::io::Error::other(e.to_string()))
            })?;
            if entry.file_type().is_file() {
                let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
                files.push(InputFile {
                    path: entry.into_path(),
                    size,
                });
            }
        }
    }
    Ok(files)
}

/// Reads a file and hands each of its entries (one, or a zip's many) to `each`, in order.
///
/// # Errors
/// The file cannot be opened or is not a readable zip; a damaged compressed stream is not an
/// error (see [`Entry::damaged`]).
pub fn read(file: &InputFile, each: &mut dyn FnMut(Entry) -> Result<()>) -> Result<()> {
    let label = file.path.display().to_string();
    let compression = Compression::of(&label);
    let open = || {
        File::open(&file.path)
            .map(BufReader::new)
            .map_err(Error::io(&file.path))
    };
    match compression {
        Compression::Zip => read_zip(file, &label, open()?, each),
        Compression::None => {
            let data = std::fs::read(&file.path).map_err(Error::io(&file.path))?;
            each(entry(label.clone(), &label, compression, data, None))
        }
        Compression::Gzip => {
            let (data, damaged) = read_to_end(flate2::read::MultiGzDecoder::new(open()?));
            each(entry(label.clone(), &label, compression, data, damaged))
        }
        Compression::Zstd => {
            let decoder =
                zstd::stream::read::Decoder::new(open()?).map_err(Error::io(&file.path))?;
            let (data, damaged) = read_to_end(decoder);
            each(entry(label.clone(), &label, compression, data, damaged))
        }
    }
}

fn read_zip(
    file: &InputFile,
    label: &str,
    reader: BufReader<File>,
    each: &mut dyn FnMut(Entry) -> Result<()>,
) -> Result<()> {
    let bad = |e: zip::result::ZipError| {
        Error::new(
            &file.path,
            std::io::Error::other(format!("not a readable zip: {e}")),
        )
    };
    let mut archive = zip::ZipArchive::new(reader).map_err(bad)?;
    // Entries in name order, like a folder.
    let mut names: Vec<(String, usize)> = (0..archive.len())
        .filter_map(|i| {
            let name = archive.name_for_index(i)?.to_owned();
            (!name.ends_with('/')).then_some((name, i))
        })
        .collect();
    names.sort();
    for (name, index) in names {
        let hidden = name.split('/').any(|part| part.starts_with('.'));
        if hidden {
            continue;
        }
        let entry_label = format!("{label}!{name}");
        let (data, damaged) = match archive.by_index(index) {
            Ok(reader) => read_to_end(reader),
            Err(e) => (Vec::new(), Some(format!("zip entry unreadable: {e}"))),
        };
        // A compressed file inside a zip is unpacked too.
        let (data, damaged) = match (Compression::of(&name), damaged) {
            (Compression::Gzip, None) => read_to_end(flate2::read::MultiGzDecoder::new(&data[..])),
            (Compression::Zstd, None) => match zstd::stream::read::Decoder::new(&data[..]) {
                Ok(d) => read_to_end(d),
                Err(e) => (Vec::new(), Some(e.to_string())),
            },
            (_, damaged) => (data, damaged),
        };
        each(entry(entry_label, &name, Compression::Zip, data, damaged))?;
    }
    Ok(())
}

/// Everything a decompressing reader yields, and the error that ended it early, if any.
fn read_to_end(mut reader: impl Read) -> (Vec<u8>, Option<String>) {
    let mut data = Vec::new();
    match reader.read_to_end(&mut data) {
        Ok(_) => (data, None),
        Err(e) => (data, Some(format!("compressed stream damaged: {e}"))),
    }
}

fn entry(
    label: String,
    name: &str,
    compression: Compression,
    data: Vec<u8>,
    damaged: Option<String>,
) -> Entry {
    // An empty file (a failed export, a truncated copy) is listed with the skipped files rather
    // than read as a file of no messages, which no report would show.
    let content = if damaged.is_none() && data.iter().all(u8::is_ascii_whitespace) {
        Content::Skip("empty: no HL7 v2 message in it")
    } else {
        classify(name, &data)
    };
    Entry {
        label,
        compression,
        content,
        data,
        damaged,
    }
}

/// Decides what a file holds from its name (compression suffix removed) and its first bytes.
pub fn classify(name: &str, data: &[u8]) -> Content {
    let lower = name.to_ascii_lowercase();
    let base = ["gz", "gzip", "zst", "zstd"]
        .iter()
        .find_map(|ext| lower.strip_suffix(&format!(".{ext}")))
        .unwrap_or(&lower);
    let file_name = base.rsplit(['/', '\\']).next().unwrap_or(base);
    let ext = file_name.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
    match ext {
        "ndjson" | "jsonl" => return Content::Ndjson,
        // Named as HL7: read as HL7 whatever it holds, so garbage is quarantined, not skipped.
        "hl7" | "er7" | "hl7v2" | "msg" | "batch" => return Content::Hl7,
        "md" | "json" | "xml" | "tsv" | "csv" | "html" | "htm" | "pdf" | "png" | "jpg" | "jpeg"
        | "gif" | "toml" | "yaml" | "yml" | "rs" | "py" | "js" | "java" | "cs" => {
            return Content::Skip("not an HL7 v2 or NDJSON file (by its name)");
        }
        _ => {}
    }
    // `.txt`, `.dat`, no extension: HL7 when a line starts a message or an envelope.
    if looks_like_hl7(data) {
        Content::Hl7
    } else {
        Content::Skip("no MSH, FHS or BHS segment: not an HL7 v2 file")
    }
}

fn looks_like_hl7(data: &[u8]) -> bool {
    let starts = |at: &[u8]| {
        let at = at.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(at);
        let at = at.strip_prefix(b"\x0B").unwrap_or(at);
        at.len() > 3 && matches!(&at[..3], b"MSH" | b"FHS" | b"BHS")
    };
    if starts(data) {
        return true;
    }
    memchr::memchr2_iter(b'\r', b'\n', data).any(|i| starts(&data[i + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_is_skipped_saying_so() {
        for data in [&b""[..], b"\r\n\n  "] {
            let e = entry(
                "a".into(),
                "feed.hl7",
                Compression::None,
                data.to_vec(),
                None,
            );
            assert_eq!(e.content, Content::Skip("empty: no HL7 v2 message in it"));
        }
        // Damaged on the way in: reported as damaged, not as empty.
        let e = entry(
            "a".into(),
            "feed.hl7.gz",
            Compression::Gzip,
            Vec::new(),
            Some("compressed stream damaged".into()),
        );
        assert_eq!(e.content, Content::Hl7);
    }

    #[test]
    fn classifies_by_name_then_content() {
        assert_eq!(classify("a/b.hl7", b"junk"), Content::Hl7);
        assert_eq!(classify("a/b.HL7.gz", b"junk"), Content::Hl7);
        assert_eq!(classify("out/Patient.ndjson", b"{}"), Content::Ndjson);
        assert!(matches!(
            classify("README.md", b"MSH|^~\\&|"),
            Content::Skip(_)
        ));
        assert_eq!(classify("x.txt", b"\r\nMSH|^~\\&|A"), Content::Hl7);
        assert_eq!(
            classify("LICENSE", b"Apache License"),
            Content::Skip("no MSH, FHS or BHS segment: not an HL7 v2 file")
        );
        assert_eq!(classify("feed", b"\xEF\xBB\xBFFHS|^~\\&|"), Content::Hl7);
    }

    #[test]
    fn compression_by_suffix() {
        assert_eq!(Compression::of("a.hl7.GZ"), Compression::Gzip);
        assert_eq!(Compression::of("a.zst"), Compression::Zstd);
        assert_eq!(Compression::of("a.zip"), Compression::Zip);
        assert_eq!(Compression::of("a.hl7"), Compression::None);
    }
}
