//! The state of one message's conversion: the bundle being built, the resources segments refer back to
//! (the current patient, visit, order, report), and what was noticed on the way.
//!
//! Segment mappings read the message through [`crate::read`], convert values with the methods here (which
//! apply the sender's profile and record problems as [`Issue`]s instead of failing), and add resources with
//! [`Ctx::add`], which deduplicates by deterministic id.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use fhir::{
    Bundle, BundleEntry, BundleRequest, CodeableConcept, Identifier, Reference, Resource,
    TypedResource,
};
use hl7v2::{Message, Node};

use crate::ids;
use crate::profile::Profile;
use crate::read;

/// How bad an [`Issue`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Kept, but not as sent (a time without a zone, a value a FHIR element cannot carry).
    Warning,
    /// A value was left out of the bundle.
    Error,
}

/// Something noticed while converting. `at` names the field (`PID-7`, `OBX[3]-5`), never its value, so
/// issues can be logged and counted without PHI. Codes are not patient data and are kept in `code`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub severity: Severity,
    pub at: String,
    pub kind: IssueKind,
    pub message: String,
}

/// What kind of [`Issue`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssueKind {
    /// A value could not be read as its type (a date, a number).
    Invalid,
    /// A coded value the sender's code map does not know; passed through flagged or held per the map.
    Unmapped {
        map: String,
        system: Option<String>,
        code: String,
    },
    /// A segment the converter has no mapping for.
    UnmappedSegment,
}

/// What a code map decided for one coded value.
#[derive(Debug, Clone, PartialEq)]
pub enum Coded {
    /// The concept to record.
    Concept(CodeableConcept),
    /// The sender's map says this value records nothing (e.g. AL1 "NA" meaning "not applicable").
    Nothing,
    /// No value was sent.
    Absent,
}

/// Appends `n` in decimal.
fn push_decimal(out: &mut String, n: usize) {
    if n >= 10 {
        push_decimal(out, n / 10);
    }
    out.push(char::from(b'0' + (n % 10) as u8));
}

/// A field location (`PID-7`, `OBX[3]-5`) as [`Ctx::at`] names it. Mappings name a field for nearly
/// every value they read and almost none of those names end up in an issue, so a name is kept
/// inline and becomes a `String` only when an issue records it.
#[derive(Clone)]
pub struct At(AtText);

#[derive(Clone)]
enum AtText {
    Inline {
        bytes: [u8; At::INLINE],
        len: u8,
    },
    /// A name too long for the inline form (a segment repeated thousands of times).
    Heap(String),
}

impl At {
    const INLINE: usize = 22;

    fn field(segment: &str, n: usize) -> At {
        let mut count = 1;
        let mut rest = n / 10;
        while rest > 0 {
            count += 1;
            rest /= 10;
        }
        let len = segment.len() + 1 + count;
        if len > At::INLINE {
            let mut text = String::with_capacity(len);
            text.push_str(segment);
            text.push('-');
            push_decimal(&mut text, n);
            return At(AtText::Heap(text));
        }
        let mut bytes = [0u8; At::INLINE];
        // Byte by byte: a segment name is a few bytes, and a slice copy was a `memcpy` call.
        for (to, from) in bytes.iter_mut().zip(segment.bytes()) {
            *to = from;
        }
        bytes[segment.len()] = b'-';
        let mut rest = n;
        for to in bytes[segment.len() + 1..len].iter_mut().rev() {
            *to = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        At(AtText::Inline {
            bytes,
            len: len as u8,
        })
    }

    pub fn as_str(&self) -> &str {
        match &self.0 {
            AtText::Inline { bytes, len } => std::str::from_utf8(&bytes[..usize::from(*len)])
                .expect("a str, '-' and ASCII digits, copied whole"),
            AtText::Heap(text) => text,
        }
    }
}

impl std::ops::Deref for At {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Display for At {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for At {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl From<&At> for String {
    fn from(at: &At) -> String {
        at.as_str().to_owned()
    }
}

impl From<At> for String {
    fn from(at: At) -> String {
        match at.0 {
            AtText::Heap(text) => text,
            AtText::Inline { .. } => at.as_str().to_owned(),
        }
    }
}

/// A multiply-rotate hash over 8-byte words for the entry index. Its keys are resource type names
/// and ids derived by [`ids`] (hex of a SHA-256), one message's worth, so SipHash's defence against
/// chosen keys bought nothing; it was about 3% of a conversion's instructions.
type IdHash = BuildHasherDefault<IdHasher>;

#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            self.mix(u64::from_le_bytes(word.try_into().expect("8 bytes")));
        }
        // The tail copied byte by byte: a variable-length copy was a call to `memcpy` per key.
        let tail = words.remainder();
        if !tail.is_empty() {
            let mut word = [0u8; 8];
            for (to, from) in word.iter_mut().zip(tail) {
                *to = *from;
            }
            self.mix(u64::from_le_bytes(word));
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl IdHasher {
    fn mix(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

/// The shared resources a v2 value names (an assigning authority, a practitioner, a location): one
/// message names the same few many times, and [`Ctx::memo`] builds each once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    OrganizationHd,
    OrganizationXon,
    Practitioner,
    LocationHd,
    LocationPl,
    DeviceHd,
}

/// A value [`Ctx::memo`] has seen: what was built from it, keyed by the value's bytes as sent and its
/// level (the same bytes split differently as a field and as a component).
struct Remembered {
    entity: Entity,
    level: hl7v2::Level,
    raw: Box<[u8]>,
    index: usize,
}

/// One message's conversion in progress.
pub struct Ctx<'a> {
    pub message: &'a Message<'a>,
    pub profile: &'a Profile,
    /// MSH-9.1, e.g. `ADT`.
    pub code: String,
    /// MSH-9.2 (else EVN-1), e.g. `A01`.
    pub event: String,
    /// MSH-9.3 or the structure the event implies, e.g. `ADT_A01`.
    pub structure: String,
    /// The segment being converted and its occurrence, for issue locations (`OBX[3]`).
    pub at_segment: String,
    /// MSH-3, MSH-4 and MSH-10 as text, read once: the identity of the message, in every
    /// message-scoped id and the bundle's id.
    pub message_key: [String; 3],
    /// The bundle's entries as they will be sent, each with its resource and request set: kept
    /// in their final form so finishing the bundle moves the list instead of every entry.
    entries: Vec<BundleEntry>,
    /// Entries by resource type, then id: looked up with a borrowed id, so finding a duplicate costs
    /// no allocation.
    index: HashMap<&'static str, HashMap<String, usize, IdHash>, IdHash>,
    /// Shared resources by the value they were built from ([`Ctx::memo`]); a message has a dozen or
    /// so, so a list beats a map.
    remembered: Vec<Remembered>,
    pub issues: Vec<Issue>,
    /// A value under a `hold` unmapped policy was seen: the message waits for review.
    pub held: bool,
    /// The current Patient (PID).
    pub patient: Option<usize>,
    /// The current Encounter (PV1).
    pub encounter: Option<usize>,
    /// The current order's ServiceRequest (ORC/OBR).
    pub order: Option<usize>,
    /// The current DiagnosticReport (OBR in a result message).
    pub report: Option<usize>,
    /// The resource the last segment produced; NTE attaches its notes here.
    pub last: Option<usize>,
    /// Set by a code map with the `reject` policy; the conversion fails with it at the end.
    pub rejected: Option<crate::Error>,
}

impl<'a> Ctx<'a> {
    pub fn new(message: &'a Message<'a>, profile: &'a Profile) -> Self {
        let code = message
            .message_code()
            .map(|c| c.into_owned())
            .unwrap_or_default();
        let event = message
            .trigger_event()
            .map(|c| c.into_owned())
            .or_else(|| message.text("EVN-1").map(|c| c.into_owned()))
            .unwrap_or_default();
        let structure = message
            .message_structure()
            .map(|c| c.into_owned())
            .filter(|s| s.contains('_'))
            .unwrap_or_else(|| crate::message::structure_of(&code, &event));
        Ctx {
            message,
            profile,
            code,
            event,
            structure,
            at_segment: String::new(),
            message_key: [
                message.sending_application(),
                message.sending_facility(),
                message.control_id(),
            ]
            .map(|s| s.map(|s| s.into_owned()).unwrap_or_default()),
            // A converted ADT^A01 or ORU^R01 holds 20 to 30 resources: grown from empty, the
            // list was copied four times.
            entries: Vec::with_capacity(32),
            index: HashMap::default(),
            remembered: Vec::new(),
            issues: Vec::new(),
            held: false,
            patient: None,
            encounter: None,
            order: None,
            report: None,
            last: None,
            rejected: None,
        }
    }

    /// Names the segment being converted: `id`, or `id[n]` after its first occurrence.
    pub fn set_segment(&mut self, id: &str, n: usize) {
        self.at_segment.clear();
        self.at_segment.push_str(id);
        if n > 1 {
            self.at_segment.push('[');
            push_decimal(&mut self.at_segment, n);
            self.at_segment.push(']');
        }
    }

    /// `PID-7` style location of field `n` of the current segment.
    pub fn at(&self, n: usize) -> At {
        At::field(&self.at_segment, n)
    }

    /// The deterministic id of a `resource_type` with identity `parts`.
    pub fn id(&self, resource_type: &str, parts: &[&str]) -> String {
        ids::id(resource_type, parts)
    }

    /// An id for a resource that has no business identifier: unique to this message (sender, control id)
    /// and the segment it came from, so redelivery of the message rewrites it rather than duplicating it.
    pub fn message_scoped_id(&self, resource_type: &str, discriminator: &str) -> String {
        let [app, facility, control] = &self.message_key;
        ids::id(
            resource_type,
            &[app, facility, control, &self.at_segment, discriminator],
        )
    }

    /// Adds `resource` (whose `id` must be set) and returns its index. A resource with the same type and
    /// id already in the bundle is kept and its index returned: the same practitioner named in five
    /// fields is one Practitioner.
    ///
    /// `identity` is the business identifier the id was derived from; with a system, the entry is a
    /// conditional update (`PUT Patient?identifier=system|value`) so a FHIR server that already knows the
    /// resource under another id updates it instead of creating a second one.
    pub fn add<T: TypedResource>(&mut self, resource: T, identity: Option<&Identifier>) -> usize {
        self.add_boxed(resource.into(), |_, id| request_url(T::TYPE, id, identity))
    }

    /// As [`Ctx::add`], with the identity found in the resource itself (`|p| p.identifier.first()`),
    /// so a builder need not keep a copy of an identifier it moved into the resource.
    pub fn add_identified<T: TypedResource>(
        &mut self,
        resource: T,
        identity: impl for<'r> FnOnce(&'r T) -> Option<&'r Identifier>,
    ) -> usize {
        self.add_boxed(resource.into(), |resource, id| {
            request_url(T::TYPE, id, resource.downcast_ref::<T>().and_then(identity))
        })
    }

    /// The one body of [`Ctx::add`] and [`Ctx::add_identified`]. The resource comes boxed, so the
    /// rest moves a pointer, not a struct of one to three kilobytes; `url` names the entry's
    /// request and runs only for a resource not in the bundle yet.
    fn add_boxed(
        &mut self,
        resource: Resource,
        url: impl FnOnce(&Resource, &str) -> String,
    ) -> usize {
        let resource_type = resource.resource_type();
        let id = resource.id().expect("resources are added with an id");
        if let Some(i) = self.existing(resource_type, id) {
            return i;
        }
        let url = url(&resource, id);
        let id = id.to_owned();
        self.entries.push(BundleEntry {
            full_url: Some(urn_uuid(&id)),
            resource: Some(resource),
            request: Some(BundleRequest::new("PUT", url)),
            ..Default::default()
        });
        let i = self.entries.len() - 1;
        self.index.entry(resource_type).or_default().insert(id, i);
        i
    }

    /// The resource `build` makes of `node`, built once per message for each distinct value: the
    /// second time a message names the same authority or practitioner (byte for byte, at the same
    /// level), the first one's index comes back without reading, decoding or hashing the value again.
    /// Within one message a value's bytes decide what `build` makes of it (separators, charset and
    /// profile are the message's), so this returns what `build` would find by id. A value that built
    /// nothing is not remembered (its issues, if any, are recorded again).
    pub fn memo(
        &mut self,
        entity: Entity,
        node: Node<'_>,
        build: impl FnOnce(&mut Self, Node<'_>) -> Option<usize>,
    ) -> Option<usize> {
        let (level, raw) = (node.level(), node.raw());
        if let Some(r) = self
            .remembered
            .iter()
            .find(|r| r.entity == entity && r.level == level && *r.raw == *raw)
        {
            return Some(r.index);
        }
        let index = build(self, node)?;
        self.remembered.push(Remembered {
            entity,
            level,
            raw: raw.into(),
            index,
        });
        Some(index)
    }

    /// The index of the `resource_type` with this `id` if the bundle has it already. Builders call it
    /// with the id they computed before building the rest of a resource that is often named many
    /// times in one message (an assigning authority, a practitioner, a location).
    pub fn existing(&self, resource_type: &str, id: &str) -> Option<usize> {
        self.index.get(resource_type)?.get(id).copied()
    }

    /// A reference to the resource at `index` (as `urn:uuid:`, the entry's fullUrl, so a server that
    /// resolves a conditional update rewrites it to the id it chose).
    pub fn reference(&self, index: usize) -> Reference {
        Reference {
            reference: self.entries[index].full_url.clone(),
            ..Default::default()
        }
    }

    /// The current patient as a reference.
    pub fn patient_ref(&self) -> Option<Reference> {
        self.patient.map(|i| self.reference(i))
    }

    /// The current encounter as a reference.
    pub fn encounter_ref(&self) -> Option<Reference> {
        self.encounter.map(|i| self.reference(i))
    }

    pub fn get<T: TypedResource>(&self, index: usize) -> Option<&T> {
        self.entries
            .get(index)?
            .resource
            .as_ref()?
            .downcast_ref::<T>()
    }

    pub fn get_mut<T: TypedResource>(&mut self, index: usize) -> Option<&mut T> {
        self.entries
            .get_mut(index)?
            .resource
            .as_mut()?
            .downcast_mut::<T>()
    }

    /// The resource at `index`.
    pub fn resource(&self, index: usize) -> Option<&Resource> {
        self.entries.get(index)?.resource.as_ref()
    }

    /// The resources added so far, in order.
    pub fn resources(&self) -> impl Iterator<Item = &Resource> {
        self.entries.iter().filter_map(|e| e.resource.as_ref())
    }

    /// Records a problem at `at` (a field location, never a value).
    pub fn issue(
        &mut self,
        severity: Severity,
        at: impl Into<String>,
        kind: IssueKind,
        message: String,
    ) {
        self.issues.push(Issue {
            severity,
            at: at.into(),
            kind,
            message,
        });
    }

    /// DTM/TS `node` as a FHIR dateTime (profile's default zone applied); problems become issues.
    pub fn dtm(&mut self, node: Option<Node<'_>>, at: impl Into<String>) -> Option<String> {
        // A TS field carries its time in component 1.
        let value = read::text(node.and_then(|n| n.component(1)).or(node))?;
        match crate::dtm(&value, self.profile.time_zone.as_deref()) {
            Ok(Some(dt)) => {
                if dt.time_dropped() {
                    self.issue(
                        Severity::Warning,
                        at.into(),
                        IssueKind::Invalid,
                        "time sent without a zone and the profile sets none: kept the date only"
                            .into(),
                    );
                }
                Some(dt.into_string())
            }
            Ok(None) => None,
            Err(e) => {
                self.issue(
                    Severity::Error,
                    at.into(),
                    IssueKind::Invalid,
                    e.to_string(),
                );
                None
            }
        }
    }

    /// DTM/TS `node` as a FHIR `instant` (Bundle.timestamp, Provenance.recorded, Appointment.start, the
    /// `issued` of results): an instant is a time to the second *with a zone*, so the value is kept only
    /// when the sender's time (with the profile's default zone) has both; a date, or a time whose zone is
    /// unknown, is left out with a Warning rather than invented (a guessed zone would shift the instant).
    pub fn instant(&mut self, node: Option<Node<'_>>, at: impl Into<String>) -> Option<String> {
        let value = read::text(node.and_then(|n| n.component(1)).or(node))?;
        match crate::dtm(&value, self.profile.time_zone.as_deref()) {
            // `dtm` only writes a time (always to the second) together with its zone.
            Ok(Some(dt)) if dt.as_str().contains('T') => Some(dt.into_string()),
            Ok(Some(dt)) => {
                let message = if dt.time_dropped() {
                    "instant left out: the sender's time has no zone and the profile sets none"
                } else {
                    "instant left out: the sender gave a date without a time"
                };
                self.issue(Severity::Warning, at, IssueKind::Invalid, message.into());
                None
            }
            Ok(None) => None,
            Err(e) => {
                self.issue(Severity::Error, at, IssueKind::Invalid, e.to_string());
                None
            }
        }
    }

    /// DT `node` as a FHIR date; problems become issues.
    pub fn date(&mut self, node: Option<Node<'_>>, at: impl Into<String>) -> Option<String> {
        let value = read::text(node.and_then(|n| n.component(1)).or(node))?;
        match crate::date(&value) {
            Ok(d) => d.map(crate::DateTime::into_string),
            Err(e) => {
                self.issue(
                    Severity::Error,
                    at.into(),
                    IssueKind::Invalid,
                    e.to_string(),
                );
                None
            }
        }
    }

    /// CX `node` as an Identifier, the profile's default assigning authority filling an empty CX.4.
    pub fn identifier(&self, node: Node<'_>) -> Option<Identifier> {
        crate::cx(node, self.profile.default_authority.as_deref())
    }

    /// CWE/CE/CNE `node` at `at` (`AL1-3`) through the sender's code maps.
    pub fn coded(&mut self, node: Option<Node<'_>>, at: &str) -> Coded {
        let Some(concept) = node.and_then(crate::cwe) else {
            return Coded::Absent;
        };
        crate::codemap::apply(self, concept, at)
    }

    /// As [`Ctx::coded`], `None` unless there is a concept to record.
    pub fn code(&mut self, node: Option<Node<'_>>, at: &str) -> Option<CodeableConcept> {
        match self.coded(node, at) {
            Coded::Concept(c) => Some(c),
            Coded::Nothing | Coded::Absent => None,
        }
    }

    /// The finished transaction bundle.
    pub fn into_bundle(self, bundle_id: String) -> Bundle {
        let mut bundle = Bundle::transaction();
        bundle.id = Some(bundle_id);
        bundle.entry = self.entries;
        bundle
    }
}

/// An entry's request URL: a conditional update on `identity` when it has a system and a value
/// (`Patient?identifier=system|value`), else an update by id (`Patient/{id}`).
fn request_url(resource_type: &str, id: &str, identity: Option<&Identifier>) -> String {
    let mut url = String::with_capacity(resource_type.len() + 64);
    url.push_str(resource_type);
    match identity.and_then(|i| Some((i.system.as_deref()?, i.value.as_deref()?))) {
        Some((system, value)) => {
            url.push_str("?identifier=");
            query_escape(system, &mut url);
            url.push('|');
            query_escape(value, &mut url);
        }
        None => {
            url.push('/');
            url.push_str(id);
        }
    }
    url
}

/// `urn:uuid:{id}`, the fullUrl of an entry and the form references take inside a bundle.
fn urn_uuid(id: &str) -> String {
    let mut out = String::with_capacity(9 + id.len());
    out.push_str("urn:uuid:");
    out.push_str(id);
    out
}

/// Appends `value` to `out`, percent-encoding what a query value may not carry unescaped (`|` and `:`
/// are left: FHIR token syntax).
fn query_escape(value: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b':' | b'/' => {
                out.push(char::from(b))
            }
            _ => {
                out.push('%');
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0x0f)]));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entities;

    #[test]
    fn field_locations_read_the_same_inline_or_on_the_heap() {
        for (segment, n, text) in [
            ("PID", 7, "PID-7"),
            ("OBX[3]", 5, "OBX[3]-5"),
            ("PID", 0, "PID-0"),
            ("ZXY[123456789]", 999, "ZXY[123456789]-999"),
            // Past the inline room: kept on the heap, read the same.
            ("ZXY[12345678901234]", 12345, "ZXY[12345678901234]-12345"),
        ] {
            let at = At::field(segment, n);
            assert_eq!(at.as_str(), text);
            assert_eq!(at.to_string(), text);
            assert_eq!(String::from(&at), text);
            assert_eq!(String::from(at), text);
        }
    }

    const MSG: &[u8] = b"MSH|^~\\&|APP|FAC|||20240102030405-0500||ADT^A01|1|P|2.5.1\r\
PV1|1|I|||||11^Lee^Ann^^^^^^NPI&2.16.840.1.113883.4.6&ISO|11^Lee^Ann^^^^^^NPI&2.16.840.1.113883.4.6&ISO|12^Lee^Bo\r\
ZXX|A&B|X^A&B\r";

    #[test]
    fn entries_are_found_by_type_and_id_even_where_two_types_share_an_id() {
        let message = hl7v2::parse(MSG).unwrap();
        let profile = Profile::default();
        let mut ctx = Ctx::new(&message, &profile);
        let with_id = |id: &str| Some(id.to_owned());
        let patient = ctx.add(
            fhir::Patient {
                id: with_id("same"),
                ..Default::default()
            },
            None,
        );
        let encounter = ctx.add(
            fhir::Encounter {
                id: with_id("same"),
                ..Default::default()
            },
            None,
        );
        assert_ne!(patient, encounter);
        assert_eq!(ctx.existing("Patient", "same"), Some(patient));
        assert_eq!(ctx.existing("Encounter", "same"), Some(encounter));
        assert_eq!(ctx.existing("Location", "same"), None);
        assert_eq!(ctx.existing("Patient", "other"), None);
        // Adding either again gives back the first.
        let again = ctx.add(
            fhir::Encounter {
                id: with_id("same"),
                ..Default::default()
            },
            None,
        );
        assert_eq!((again, ctx.resources().count()), (encounter, 2));
    }

    #[test]
    fn memo_builds_each_value_once_and_tells_levels_apart() {
        let message = hl7v2::parse(MSG).unwrap();
        let profile = Profile::default();
        let mut ctx = Ctx::new(&message, &profile);
        let pv1 = message.find_segment("PV1", 1).unwrap();
        let attending = entities::practitioner(&mut ctx, pv1.field(7).unwrap()).unwrap();
        let before = ctx.resources().count();
        // The same value again is the same Practitioner, and nothing new is built for it.
        let referring = entities::practitioner(&mut ctx, pv1.field(8).unwrap()).unwrap();
        assert_eq!((referring, ctx.resources().count()), (attending, before));
        let consulting = entities::practitioner(&mut ctx, pv1.field(9).unwrap()).unwrap();
        assert_ne!(consulting, attending);

        // `A&B` as a whole field reads as the namespace `A` (its first subcomponent); as a
        // component its subcomponents are the namespace `A` and the universal id `B`.
        let zxx = message.find_segment("ZXX", 1).unwrap();
        let as_field = entities::organization_hd(&mut ctx, zxx.field(1).unwrap()).unwrap();
        let as_component =
            entities::organization_hd(&mut ctx, zxx.field(2).unwrap().component(2).unwrap())
                .unwrap();
        assert_ne!(as_field, as_component);
        let identifiers = |i: usize| {
            let org = ctx.get::<fhir::Organization>(i).unwrap();
            org.identifier
                .iter()
                .map(|id| id.value.clone().unwrap_or_default())
                .collect::<Vec<_>>()
        };
        assert_eq!(identifiers(as_field), ["A"]);
        assert_eq!(identifiers(as_component), ["A", "B"]);
    }
}
