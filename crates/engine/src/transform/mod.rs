//! Transforms: edits applied in order to an accepted message before it is routed.
//!
//! Map:
//! - [`Transform`]: one `[[channel.transform]]` entry, compiled at config load (paths
//!   parsed, tables resolved, segments decoded, scripts compiled): `set`, `copy`, `delete`,
//!   `rename`, `map`, `add_segment`, `drop_segments`, `rename_segment`, `script`.
//! - [`Transforms`]: a channel's list; [`Transforms::apply`] runs it and returns the
//!   [`Verdict`].
//! - [`TransformContext`]: what one run reports besides the edits (unmapped codes, the
//!   verdict of a script).
//! - [`CodeTable`]: a `[tables.NAME]` code map; [`segment`]: configured segments;
//!   [`script`]: the Rhai sandbox.
//!
//! Invariants: nothing here is parsed at message time, so a failure is always about the
//! message at hand (a segment it lacks, a script that breaks on it), never about the
//! configuration. Errors name transforms, paths and segment ids, never values. A failed run
//! leaves the message partly edited: callers keep the received bytes for the error queue.

pub mod script;
pub mod segment;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use hl7v2::{OwnedMessage, Path};

pub use script::{Script, ScriptEngine, ScriptError, ScriptErrorKind};
pub use segment::SegmentTemplate;

/// What should happen to the message after the transforms.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Verdict {
    /// Route it to the channel's destinations.
    #[default]
    Continue,
    /// A script called `filter()`: store it as filtered, route it nowhere, answer AA.
    Filter,
    /// A script called `reject(reason)`: store it as rejected and answer AR with ERR-3 207
    /// (application internal error) and this reason, which the script author wrote and which
    /// goes back to the sender.
    Reject { reason: String },
}

/// ERR-3 (HL7 table 0357) for a message a script rejected: "application internal error",
/// the closest code for a site-specific business rule.
pub const ERR3_SCRIPT_REJECT: u16 = 207;

/// A value that a `map` transform without a default could not map. The value is a code from
/// the message: show it on the dashboard, never use it as a metric label or log field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unmapped {
    pub table: String,
    /// The path as written in the transform, e.g. `PV1-3.4`.
    pub path: String,
    pub value: String,
}

/// What one run of a channel's transforms reports besides the edits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransformContext {
    /// Values left unmapped, in the order met.
    pub unmapped: Vec<Unmapped>,
    /// Set by a script's `filter()` / `reject()`; the remaining transforms are skipped.
    pub verdict: Verdict,
}

impl TransformContext {
    pub fn new() -> TransformContext {
        TransformContext::default()
    }
}

/// A code table: exact, case-sensitive lookups of decoded values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeTable {
    name: String,
    entries: HashMap<String, String>,
}

impl CodeTable {
    pub fn new(name: &str, entries: impl IntoIterator<Item = (String, String)>) -> CodeTable {
        CodeTable {
            name: name.to_string(),
            entries: entries.into_iter().collect(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn get(&self, code: &str) -> Option<&str> {
        self.entries.get(code).map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Where `add_segment` puts its segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Anchor {
    /// Right after the last segment with this id.
    After(String),
    /// Right before the first segment with this id.
    Before(String),
    /// At the end of the message.
    End,
}

#[derive(Debug, Clone)]
enum Step {
    Set {
        path: Path,
        value: String,
    },
    Copy {
        from: Path,
        to: Path,
    },
    Delete {
        paths: Vec<Path>,
    },
    Rename {
        from: Path,
        to: Path,
    },
    Map {
        path: Path,
        table: Arc<CodeTable>,
        default: Option<String>,
    },
    AddSegment {
        anchor: Anchor,
        segment: SegmentTemplate,
    },
    DropSegments {
        ids: Vec<String>,
    },
    RenameSegment {
        from: String,
        to: String,
    },
    Script(Script),
}

/// One compiled transform.
#[derive(Debug, Clone)]
pub struct Transform {
    /// Position in the channel's list (0-based), for errors.
    index: usize,
    step: Step,
}

/// Why a transform failed on a message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransformErrorKind {
    /// The message lacks a segment the transform writes to or places a segment next to.
    MissingSegment { segment: String },
    /// The edit itself was refused by the message model.
    Edit { text: String },
    /// A script failed: count these as script errors.
    Script(ScriptError),
}

/// A transform that failed on one message: which transform and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("transform[{index}] ({what}): {kind}")]
pub struct TransformError {
    /// Position of the transform in the channel's list (0-based, as in config key paths).
    pub index: usize,
    /// The transform in short, e.g. `set PV1-3.4`.
    pub what: String,
    pub kind: TransformErrorKind,
}

impl TransformError {
    /// True for failures of a `script` transform (including its limits).
    pub fn is_script_error(&self) -> bool {
        matches!(self.kind, TransformErrorKind::Script(_))
    }
}

impl fmt::Display for TransformErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransformErrorKind::MissingSegment { segment } => {
                write!(f, "the message has no {segment} segment")
            }
            TransformErrorKind::Edit { text } => f.write_str(text),
            TransformErrorKind::Script(e) => write!(f, "{e}"),
        }
    }
}

/// Why a transform could not be built: which of its keys is wrong, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidTransform {
    /// The key at fault inside the transform's value (`path`, `from`, `to`, `segment`,
    /// `after`, `before`); empty when the value as a whole is wrong.
    pub key: &'static str,
    /// For lists (`delete`, `drop_segments`): the 0-based entry at fault.
    pub item: Option<usize>,
    /// Lowercase, no trailing period.
    pub message: String,
}

impl fmt::Display for InvalidTransform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for InvalidTransform {}

fn invalid(key: &'static str, message: String) -> InvalidTransform {
    InvalidTransform {
        key,
        item: None,
        message,
    }
}

/// Paths a transform may not write: MSH-1 and MSH-2 are the message's delimiters.
fn check_writable(path: &Path) -> Result<(), String> {
    if path.segment_str() == "MSH" && path.field <= 2 {
        return Err(format!(
            "{path} holds the message's delimiters and cannot be changed"
        ));
    }
    Ok(())
}

fn parse_path(key: &'static str, text: &str) -> Result<Path, InvalidTransform> {
    Path::parse(text).map_err(|e| invalid(key, e.kind.to_string()))
}

fn parse_writable(key: &'static str, text: &str) -> Result<Path, InvalidTransform> {
    let p = parse_path(key, text)?;
    check_writable(&p).map_err(|m| invalid(key, m))?;
    Ok(p)
}

fn check_segment_id(id: &str) -> Result<(), String> {
    if id.len() != 3
        || !id
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    {
        return Err(format!(
            "invalid segment id {id:?}: expected 3 upper-case letters or digits"
        ));
    }
    Ok(())
}

fn check_not_header(id: &str, verb: &str) -> Result<(), String> {
    check_segment_id(id)?;
    if matches!(id, "MSH" | "FHS" | "BHS" | "BTS" | "FTS") {
        return Err(format!("the {id} segment cannot be {verb}"));
    }
    Ok(())
}

/// Checks each entry of a list; the first bad one is reported with its index.
fn check_items(
    items: &[&str],
    check: impl Fn(&str) -> Result<(), String>,
) -> Result<(), InvalidTransform> {
    if items.is_empty() {
        return Err(invalid("", "the list is empty".to_string()));
    }
    for (i, item) in items.iter().enumerate() {
        check(item).map_err(|message| InvalidTransform {
            key: "",
            item: Some(i),
            message,
        })?;
    }
    Ok(())
}

/// `PID` or `OBX(3)`: how errors name the segment of a path.
pub(crate) fn segment_label(path: &Path) -> String {
    if path.segment_occurrence == 1 {
        path.segment_str().to_string()
    } else {
        format!("{}({})", path.segment_str(), path.segment_occurrence)
    }
}

pub(crate) fn has_segment(msg: &OwnedMessage, path: &Path) -> bool {
    msg.segments()
        .iter()
        .filter(|s| s.id().as_bytes() == path.segment)
        .nth(path.segment_occurrence - 1)
        .is_some()
}

/// `code^trigger` from MSH-9, like [`hl7v2::Message::message_type`].
pub(crate) fn message_type(msg: &OwnedMessage) -> String {
    let code = msg.text("MSH-9.1").unwrap_or_default();
    match msg.text("MSH-9.2") {
        Some(t) if !t.is_empty() => format!("{code}^{t}"),
        _ => code.into_owned(),
    }
}

impl Transform {
    fn new(step: Step) -> Transform {
        Transform { index: 0, step }
    }

    /// `set = { path, value }`: writes `value` (escaped as needed) at `path`.
    pub fn set(path: &str, value: &str) -> Result<Transform, InvalidTransform> {
        Ok(Transform::new(Step::Set {
            path: parse_writable("path", path)?,
            value: value.to_string(),
        }))
    }

    /// `copy = { from, to }`: copies the raw value (escapes and inner delimiters kept), so a
    /// whole field copied onto a component spreads into the components that follow.
    pub fn copy(from: &str, to: &str) -> Result<Transform, InvalidTransform> {
        Ok(Transform::new(Step::Copy {
            from: parse_path("from", from)?,
            to: parse_writable("to", to)?,
        }))
    }

    /// `delete = PATH | [PATH, ...]`: empties values (absent ones are left alone).
    pub fn delete(paths: &[&str]) -> Result<Transform, InvalidTransform> {
        check_items(paths, |p| {
            parse_writable("", p).map(|_| ()).map_err(|e| e.message)
        })?;
        let paths = paths
            .iter()
            .map(|p| parse_writable("", p))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Transform::new(Step::Delete { paths }))
    }

    /// `rename = { from, to }`: moves a value (copy, then delete the source).
    pub fn rename(from: &str, to: &str) -> Result<Transform, InvalidTransform> {
        let from = parse_writable("from", from)?;
        let to = parse_writable("to", to)?;
        if from == to {
            return Err(invalid(
                "to",
                "`from` and `to` are the same path".to_string(),
            ));
        }
        Ok(Transform::new(Step::Rename { from, to }))
    }

    /// `map = { path, table, default }`: replaces a code with its table entry. Without a
    /// default, unknown codes stay as they are and are reported in the context.
    pub fn map(
        path: &str,
        table: Arc<CodeTable>,
        default: Option<&str>,
    ) -> Result<Transform, InvalidTransform> {
        Ok(Transform::new(Step::Map {
            path: parse_writable("path", path)?,
            table,
            default: default.map(str::to_string),
        }))
    }

    /// `add_segment = { segment, after | before }`.
    pub fn add_segment(segment: &str, anchor: Anchor) -> Result<Transform, InvalidTransform> {
        match &anchor {
            Anchor::After(id) => check_segment_id(id).map_err(|m| invalid("after", m))?,
            Anchor::Before(id) => check_segment_id(id).map_err(|m| invalid("before", m))?,
            Anchor::End => {}
        }
        if matches!(&anchor, Anchor::Before(id) if id == "MSH") {
            return Err(invalid(
                "before",
                "nothing can be added before MSH".to_string(),
            ));
        }
        Ok(Transform::new(Step::AddSegment {
            anchor,
            segment: SegmentTemplate::parse(segment).map_err(|m| invalid("segment", m))?,
        }))
    }

    /// `drop_segments = [ID, ...]`: removes every segment with these ids.
    pub fn drop_segments(ids: &[&str]) -> Result<Transform, InvalidTransform> {
        check_items(ids, |id| check_not_header(id, "dropped"))?;
        Ok(Transform::new(Step::DropSegments {
            ids: ids.iter().map(|s| s.to_string()).collect(),
        }))
    }

    /// `rename_segment = { from, to }`: renames every segment `from` (e.g. `ZPI` to `PID`).
    pub fn rename_segment(from: &str, to: &str) -> Result<Transform, InvalidTransform> {
        check_not_header(from, "renamed").map_err(|m| invalid("from", m))?;
        check_not_header(to, "a rename target").map_err(|m| invalid("to", m))?;
        if from == to {
            return Err(invalid(
                "to",
                "`from` and `to` are the same segment id".to_string(),
            ));
        }
        Ok(Transform::new(Step::RenameSegment {
            from: from.to_string(),
            to: to.to_string(),
        }))
    }

    /// `script = "file.rhai"`, compiled with [`ScriptEngine::compile`].
    pub fn script(script: Script) -> Transform {
        Transform::new(Step::Script(script))
    }

    /// The transform in short, for errors and metrics, e.g. `set PV1-3.4`.
    pub fn what(&self) -> String {
        match &self.step {
            Step::Set { path, .. } => format!("set {path}"),
            Step::Copy { from, to } => format!("copy {from} to {to}"),
            Step::Delete { paths } => {
                let list: Vec<String> = paths.iter().map(Path::to_string).collect();
                format!("delete {}", list.join(", "))
            }
            Step::Rename { from, to } => format!("rename {from} to {to}"),
            Step::Map { path, table, .. } => format!("map {path} with {}", table.name()),
            Step::AddSegment { anchor, segment } => match anchor {
                Anchor::After(id) => format!("add_segment {} after {id}", segment.id()),
                Anchor::Before(id) => format!("add_segment {} before {id}", segment.id()),
                Anchor::End => format!("add_segment {} at the end", segment.id()),
            },
            Step::DropSegments { ids } => format!("drop_segments {}", ids.join(", ")),
            Step::RenameSegment { from, to } => format!("rename_segment {from} to {to}"),
            Step::Script(s) => format!("script {}", s.name()),
        }
    }

    /// True for a `script` transform.
    pub fn is_script(&self) -> bool {
        matches!(self.step, Step::Script(_))
    }

    fn fail(&self, kind: TransformErrorKind) -> TransformError {
        TransformError {
            index: self.index,
            what: self.what(),
            kind,
        }
    }

    fn write(
        &self,
        msg: &mut OwnedMessage,
        path: &Path,
        raw: Vec<u8>,
    ) -> Result<(), TransformError> {
        if !has_segment(msg, path) {
            return Err(self.fail(TransformErrorKind::MissingSegment {
                segment: segment_label(path),
            }));
        }
        msg.set_raw_path(path, raw).map_err(|e| {
            self.fail(TransformErrorKind::Edit {
                text: e.kind.to_string(),
            })
        })
    }

    fn encode(msg: &OwnedMessage, text: &str) -> Vec<u8> {
        hl7v2::escape::encode(text, &msg.separators(), msg.charset()).into_owned()
    }

    fn delete_path(&self, msg: &mut OwnedMessage, path: &Path) -> Result<(), TransformError> {
        msg.delete(&path.to_string()).map_err(|e| {
            self.fail(TransformErrorKind::Edit {
                text: e.kind.to_string(),
            })
        })
    }

    /// Applies this transform. A script's `filter()` / `reject()` lands in `ctx.verdict`.
    pub fn apply(
        &self,
        msg: &mut OwnedMessage,
        ctx: &mut TransformContext,
    ) -> Result<(), TransformError> {
        match &self.step {
            Step::Set { path, value } => {
                let raw = Transform::encode(msg, value);
                self.write(msg, path, raw)
            }
            Step::Copy { from, to } => {
                let raw = msg
                    .get_path(from)
                    .map(|n| n.raw().to_vec())
                    .unwrap_or_default();
                self.write(msg, to, raw)
            }
            Step::Delete { paths } => {
                for p in paths {
                    self.delete_path(msg, p)?;
                }
                Ok(())
            }
            Step::Rename { from, to } => {
                let Some(raw) = msg.get_path(from).map(|n| n.raw().to_vec()) else {
                    return Ok(());
                };
                self.write(msg, to, raw)?;
                self.delete_path(msg, from)
            }
            Step::Map {
                path,
                table,
                default,
            } => {
                let Some(value) = msg.get_path(path).map(|n| n.decoded().into_owned()) else {
                    return Ok(());
                };
                if value.is_empty() {
                    return Ok(());
                }
                let mapped = match (table.get(&value), default) {
                    (Some(m), _) => m.to_string(),
                    (None, Some(d)) => d.clone(),
                    (None, None) => {
                        ctx.unmapped.push(Unmapped {
                            table: table.name().to_string(),
                            path: path.to_string(),
                            value,
                        });
                        return Ok(());
                    }
                };
                let raw = Transform::encode(msg, &mapped);
                self.write(msg, path, raw)
            }
            Step::AddSegment { anchor, segment } => {
                let seg = segment.build_for(msg).map_err(|e| {
                    self.fail(TransformErrorKind::Edit {
                        text: e.kind.to_string(),
                    })
                })?;
                let ids: Vec<&str> = msg.segments().iter().map(|s| s.id()).collect();
                let index = match anchor {
                    Anchor::End => ids.len(),
                    Anchor::After(id) => match ids.iter().rposition(|s| s == id) {
                        Some(i) => i + 1,
                        None => {
                            return Err(self.fail(TransformErrorKind::MissingSegment {
                                segment: id.clone(),
                            }));
                        }
                    },
                    Anchor::Before(id) => match ids.iter().position(|s| s == id) {
                        Some(i) => i,
                        None => {
                            return Err(self.fail(TransformErrorKind::MissingSegment {
                                segment: id.clone(),
                            }));
                        }
                    },
                };
                msg.insert_segment(index, seg);
                Ok(())
            }
            Step::DropSegments { ids } => {
                for id in ids {
                    msg.remove_segments(id);
                }
                Ok(())
            }
            Step::RenameSegment { from, to } => {
                msg.rename_segments(from, to).map_err(|e| {
                    self.fail(TransformErrorKind::Edit {
                        text: e.kind.to_string(),
                    })
                })?;
                Ok(())
            }
            Step::Script(script) => {
                let verdict = script
                    .run(msg)
                    .map_err(|e| self.fail(TransformErrorKind::Script(e)))?;
                ctx.verdict = verdict;
                Ok(())
            }
        }
    }
}

/// A channel's transforms, in order.
#[derive(Debug, Clone, Default)]
pub struct Transforms {
    steps: Vec<Transform>,
}

impl Transforms {
    /// Numbers the transforms by their position, for errors.
    pub fn new(steps: Vec<Transform>) -> Transforms {
        let steps = steps
            .into_iter()
            .enumerate()
            .map(|(index, mut t)| {
                t.index = index;
                t
            })
            .collect();
        Transforms { steps }
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    pub fn len(&self) -> usize {
        self.steps.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Transform> {
        self.steps.iter()
    }

    /// Runs every transform in order until one fails or a script decides the message's
    /// fate; returns that verdict (also left in `ctx.verdict`).
    pub fn apply(
        &self,
        msg: &mut OwnedMessage,
        ctx: &mut TransformContext,
    ) -> Result<Verdict, TransformError> {
        for t in &self.steps {
            t.apply(msg, ctx)?;
            if ctx.verdict != Verdict::Continue {
                break;
            }
        }
        Ok(ctx.verdict.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(text: &str) -> OwnedMessage {
        hl7v2::parse(text.as_bytes()).unwrap().to_owned_message()
    }

    fn encoded(m: &OwnedMessage) -> String {
        String::from_utf8(m.encode()).unwrap()
    }

    #[test]
    fn constructor_errors_are_exact() {
        for (got, want) in [
            (
                Transform::set("MSH-2", "x").unwrap_err(),
                "MSH-2 holds the message's delimiters and cannot be changed",
            ),
            (
                Transform::set("PID-", "x").unwrap_err(),
                "invalid path \"PID-\": expected a field number",
            ),
            (
                Transform::rename("PID-2", "PID-2").unwrap_err(),
                "`from` and `to` are the same path",
            ),
            (
                Transform::drop_segments(&["MSH"]).unwrap_err(),
                "the MSH segment cannot be dropped",
            ),
            (
                Transform::drop_segments(&["zpd"]).unwrap_err(),
                "invalid segment id \"zpd\": expected 3 upper-case letters or digits",
            ),
            (
                Transform::rename_segment("ZPI", "MSH").unwrap_err(),
                "the MSH segment cannot be a rename target",
            ),
            (
                Transform::add_segment("ZCW|1", Anchor::Before("MSH".into())).unwrap_err(),
                "nothing can be added before MSH",
            ),
        ] {
            assert_eq!(got.to_string(), want);
        }
        let e = Transform::drop_segments(&["ZPD", "MSH"]).unwrap_err();
        assert_eq!((e.key, e.item), ("", Some(1)));
        let e = Transform::copy("PID-3", "PID-3.x").unwrap_err();
        assert_eq!((e.key, e.item), ("to", None));
    }

    #[test]
    fn missing_segments_fail_with_the_transform_named() {
        let mut m = msg("MSH|^~\\&|A\rPID|1\r");
        let t = Transforms::new(vec![
            Transform::delete(&["PV1-3"]).unwrap(),
            Transform::set("PV1-3.4", "MAIN").unwrap(),
        ]);
        let e = t.apply(&mut m, &mut TransformContext::new()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "transform[1] (set PV1-3.4): the message has no PV1 segment"
        );
        assert!(!e.is_script_error());
        let add = Transforms::new(vec![
            Transform::add_segment("ZCW|1", Anchor::After("PV1".into())).unwrap(),
        ]);
        assert_eq!(
            add.apply(&mut m, &mut TransformContext::new())
                .unwrap_err()
                .to_string(),
            "transform[0] (add_segment ZCW after PV1): the message has no PV1 segment"
        );
    }

    #[test]
    fn set_escapes_and_copy_keeps_raw() {
        let mut m = msg("MSH|^~\\&|A\rPID|1||123^^^H&1.2&ISO^MR\r");
        let mut ctx = TransformContext::new();
        Transform::set("PID-5.1", "O|B^C")
            .unwrap()
            .apply(&mut m, &mut ctx)
            .unwrap();
        Transform::copy("PID-3", "PID-2")
            .unwrap()
            .apply(&mut m, &mut ctx)
            .unwrap();
        Transform::copy("PID-30", "PID-1")
            .unwrap()
            .apply(&mut m, &mut ctx)
            .unwrap();
        assert_eq!(
            encoded(&m),
            "MSH|^~\\&|A\rPID||123^^^H&1.2&ISO^MR|123^^^H&1.2&ISO^MR||O\\F\\B\\S\\C\r"
        );
    }
}
