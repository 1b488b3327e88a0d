//! The ingest path of one channel: parse, accept, filter, transform, store, acknowledge.
//!
//! The ACK contract lives here and only here:
//! - **AA** (or CA in enhanced mode) is returned only after [`Store::insert_inbound`] has
//!   committed and flushed the message with its delivery entries and the ACK itself;
//! - **AE** (ERR-3 207) when the message could not be stored: the sender keeps it and retries;
//! - **AR** when the channel refuses the message (ERR-3 200/201/202/203 for type, event,
//!   processing id, version; 100/102 for messages that do not parse; 207 for a script's
//!   `reject`). Refused messages are stored too (state `rejected`), so nothing is lost;
//! - a duplicate (same sender, control id and bytes) gets the ACK stored for the first copy
//!   and is not routed again.
//!
//! With `[channel.fhir]`, the routed message is also converted to FHIR R4 before it is stored:
//! - a code map with the `reject` policy meeting a code it does not know answers **AE** (ERR-3 103,
//!   "table value not found", naming the field and the code); the message is stored as rejected;
//! - a message type the conversion does not cover answers **AR** (ERR-3 200);
//! - a `hold` map meeting an unknown code stores the message as `held` (not routed) and answers AA: it
//!   is safe with us and waits for an analyst to fix the map and reprocess it;
//! - every unmapped value is counted and recorded as an `unmapped_code` event (map, field, code, sender),
//!   written in the same transaction as the message, so it costs the sender no extra commit.
//!
//! A stopped channel (see [`Channel::stop`]) answers every inbound message **AE** (ERR-3 207,
//! "channel stopped") and stores nothing: the sender keeps the message and retries until the
//! channel is started again. Its destination workers stop claiming meanwhile.
//!
//! A transform failure is the engine's problem, not the sender's: the message is stored in
//! state `error` (reprocessable), an event is raised, and the sender gets AA because the
//! message is safe with us. The ACK is built before the insert so it is committed with the
//! message; a duplicate arriving after a crash gets exactly the ACK the first copy earned.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Instant;

use causeway_store::{Header, MessageState, NewMessage, Store, UnixMillis};
use hl7v2::{AckCode, AckError, AckHeader, AckMode, Message};
use tokio::sync::Notify;

use crate::destinations::handoff::Outgoing;
use crate::filter::{Accept, Filter};
use crate::transform::{TransformContext, Transforms, Verdict};

/// Counters of one channel, read by metrics and the dashboard. No PHI.
#[derive(Debug, Default)]
pub struct ChannelStats {
    pub received: AtomicU64,
    pub accepted: AtomicU64,
    pub rejected: AtomicU64,
    pub filtered: AtomicU64,
    pub errored: AtomicU64,
    pub duplicates: AtomicU64,
    /// Messages whose store insert failed (answered AE).
    pub store_failures: AtomicU64,
    pub unmapped_codes: AtomicU64,
    pub script_errors: AtomicU64,
    /// Messages refused (AE, not stored, not counted as received) while the channel was stopped.
    pub refused_stopped: AtomicU64,
    /// Drift findings: changes from the feed's learned profile (see [`crate::drift`]).
    pub drift_findings: AtomicU64,
    /// When the last message came in (Unix ms; 0 = none yet).
    pub last_received_ms: AtomicI64,
    /// From a message's arrival at the channel to its acknowledgement (stored, or refused).
    pub ack_time: crate::monitor::LatencyHistogram,
}

impl ChannelStats {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A channel ready to take messages.
pub struct Channel {
    pub name: String,
    pub accept: Accept,
    pub filters: Vec<Filter>,
    pub transforms: Transforms,
    /// Queue names (`channel/destination`) every routed message is queued to.
    pub queues: Vec<String>,
    pub store: Arc<dyn Store>,
    /// Woken after each routed insert so idle destination workers start at once.
    pub wake: Arc<Notify>,
    pub stats: Arc<ChannelStats>,
    /// `[channel.fhir]`: conversion to the unified model at ingest (for a `fhir-api` channel:
    /// the EHR's profiles, used the other way, FHIR -> v2, by the API).
    pub fhir: crate::fhir::SharedConversion,
    /// `[channel.write_back]`: this channel carries FHIR API writes to an EHR.
    pub write_back: Option<crate::config::WriteBack>,
    /// The source's kind (`mllp`, `http`, `directory`), for the management API; empty when the
    /// channel was built without a configuration.
    pub source_kind: &'static str,
    /// Set while the channel is stopped; shared with its destination workers, which stop
    /// claiming while it is set. Kept in memory only: a restart starts every channel.
    pub paused: Arc<AtomicBool>,
    /// `[channel.drift]`: the feed's learned profile; `None` when drift detection is off.
    pub drift: Option<Arc<crate::drift::DriftTracker>>,
    /// Its destinations with their counters (shared with their workers), for the monitor.
    pub destinations: Vec<crate::monitor::DestinationHandle>,
    /// Messages just stored, left for the destination workers' first attempt.
    pub handoff: Arc<crate::destinations::handoff::Handoff>,
    ack_ids: AckIds,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("name", &self.name)
            .field("queues", &self.queues)
            .finish_non_exhaustive()
    }
}

/// What ingest decided, for the source to act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The acknowledgement to send back; `None` when enhanced mode asked for no commit ACK.
    pub ack: Option<Vec<u8>>,
    /// MSA-1 of that acknowledgement (AE when it could not be stored).
    pub code: AckCode,
    /// The stored message, when it was stored.
    pub message_id: Option<causeway_store::MessageId>,
}

/// Unique control ids for the ACKs this process sends: a per-process prefix (its start time)
/// and a counter, so ids do not repeat across restarts.
#[derive(Debug)]
struct AckIds {
    prefix: String,
    next: AtomicU64,
}

impl AckIds {
    fn new() -> Self {
        AckIds {
            prefix: format!("CW{:x}", UnixMillis::now().0),
            next: AtomicU64::new(1),
        }
    }

    fn next(&self) -> String {
        format!(
            "{}-{}",
            self.prefix,
            self.next.fetch_add(1, Ordering::Relaxed)
        )
    }
}

/// HL7 DTM for now, with milliseconds and the local offset.
pub fn hl7_timestamp() -> String {
    jiff::ZonedDateTime::now()
        .strftime("%Y%m%d%H%M%S%.3f%z")
        .to_string()
}

/// Patient identifiers of PID-3 (and MRG-1 for merges) as `id^authority`, for search.
fn patient_ids(msg: &Message<'_>) -> Vec<String> {
    let mut ids = Vec::new();
    for path in ["PID-3", "MRG-1"] {
        if let Ok(Some(field)) = msg.get(path) {
            for rep in field.repetitions() {
                let id = rep.component(1).map(|c| c.decoded()).unwrap_or_default();
                if id.is_empty() {
                    continue;
                }
                let authority = rep
                    .component(4)
                    .and_then(|c| c.subcomponent(1))
                    .map(|c| c.decoded())
                    .unwrap_or_default();
                ids.push(format!("{id}^{authority}"));
            }
        }
    }
    ids.truncate(causeway_store::MAX_PATIENT_IDS);
    ids
}

/// HL7 table 0357 "required field missing".
const ERR3_REQUIRED_FIELD_MISSING: u16 = 101;

/// The first of MSH-9.1 and MSH-10 that is empty, as the ACK error refusing the message: without
/// a message type nothing can say what the message is or route it, and without a control id the
/// sender cannot match the ACK (MSA-2) nor can a resent copy be told from a new message.
fn missing_header_field(msg: &Message<'_>) -> Option<AckError> {
    let required = [
        (9, "message type", msg.message_code()),
        (10, "message control id", msg.control_id()),
    ];
    let (field, name, _) = required
        .into_iter()
        .find(|(_, _, value)| value.as_deref().is_none_or(|v| v.trim().is_empty()))?;
    // The field as a whole (ERR-2 `MSH^1^9`), whether it is empty or cut off.
    let location = hl7v2::Position {
        byte: msg
            .segment(1)
            .and_then(|msh| msh.field(field))
            .map_or(0, |node| node.position().byte),
        segment_index: 1,
        segment_id: *b"MSH",
        field: field as u16,
        ..Default::default()
    };
    Some(
        AckError::new(
            ERR3_REQUIRED_FIELD_MISSING,
            format!("required field MSH-{field} ({name}) is empty"),
        )
        .at(location),
    )
}

/// The handoff bits of a channel's `n` queues (every one of them: a routed message goes to all).
fn all_queues(n: usize) -> u64 {
    match n {
        0 => 0,
        64.. => u64::MAX,
        n => (1u64 << n) - 1,
    }
}

/// The header fields the store indexes. Values longer than the store accepts are cut (on a
/// character boundary) rather than refused: a sender's oversized MSH-10 must not turn into
/// an AE it would resend forever.
fn header_of(msg: &Message<'_>) -> Header {
    let text =
        |s: Option<std::borrow::Cow<'_, str>>| clip(s.map(|s| s.into_owned()).unwrap_or_default());
    Header {
        sending_app: text(msg.sending_application()),
        sending_facility: text(msg.sending_facility()),
        message_type: clip(msg.message_type()),
        control_id: text(msg.control_id()),
        version: text(msg.version()),
    }
}

fn clip(mut s: String) -> String {
    if s.len() > causeway_store::MAX_FIELD_LEN {
        let mut end = causeway_store::MAX_FIELD_LEN;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// What of MSH can be read from a message that did not parse, so it can be found by its
/// control id among the rejected messages.
fn raw_header_of(raw: &[u8]) -> Header {
    let h = hl7v2::read_raw_header(raw);
    Header {
        sending_app: clip(h.sending_application),
        sending_facility: clip(h.sending_facility),
        message_type: clip(h.message_type),
        control_id: clip(h.control_id),
        version: clip(h.version),
    }
}

/// The routing decision for a parsed message.
enum Decision {
    Route {
        outbound: Option<Vec<u8>>,
    },
    /// AR: the channel does not take this message.
    Refuse(AckError),
    /// AE: the message is well formed but its content cannot be processed (an unmapped code).
    RefuseContent(AckError),
    /// Stored, acknowledged, not routed until reviewed.
    Hold {
        outbound: Option<Vec<u8>>,
    },
    Filter,
    Error(String),
}

/// A coded value no code map knew, to be recorded as an event once the message has its id.
struct Unmapped {
    detail: String,
}

impl Channel {
    pub fn new(
        name: String,
        accept: Accept,
        filters: Vec<Filter>,
        transforms: Transforms,
        queues: Vec<String>,
        store: Arc<dyn Store>,
        wake: Arc<Notify>,
    ) -> Self {
        Channel {
            name,
            accept,
            filters,
            transforms,
            queues,
            store,
            wake,
            stats: Arc::new(ChannelStats::default()),
            fhir: crate::fhir::SharedConversion::default(),
            write_back: None,
            source_kind: "",
            drift: None,
            paused: Arc::new(AtomicBool::new(false)),
            destinations: Vec::new(),
            handoff: Arc::default(),
            ack_ids: AckIds::new(),
        }
    }

    /// Stops the channel: inbound messages are answered AE ("channel stopped") and not stored,
    /// and its destination workers stop claiming (a batch being sent is finished, its untried
    /// rest released). Returns `false` when it was already stopped.
    pub fn stop(&self) -> bool {
        !self.paused.swap(true, Ordering::SeqCst)
    }

    /// Starts a stopped channel again and wakes its destination workers. Returns `false` when
    /// it was already running.
    pub fn start(&self) -> bool {
        let was_stopped = self.paused.swap(false, Ordering::SeqCst);
        if was_stopped {
            self.wake.notify_waiters();
        }
        was_stopped
    }

    /// Whether the channel takes messages (it is not stopped).
    pub fn is_running(&self) -> bool {
        !self.paused.load(Ordering::SeqCst)
    }

    /// Takes one inbound message and returns what to answer. Never panics on any input.
    pub async fn ingest(&self, raw: &[u8], peer: &str) -> Reply {
        self.ingest_with(raw, peer, None).await
    }

    /// [`Channel::ingest`] for a message that carries a FHIR API write (`fhir-api` channels):
    /// the resource is stored with the message and applied only once a delivery of it
    /// settles `delivered` (the EHR accepted it).
    pub async fn ingest_with(
        &self,
        raw: &[u8],
        peer: &str,
        pending_resource: Option<causeway_store::ResourcePut>,
    ) -> Reply {
        let arrived = Instant::now();
        let reply = self.answer(raw, peer, pending_resource).await;
        self.stats.ack_time.record(arrived.elapsed());
        reply
    }

    /// [`Channel::ingest_with`] without the timing.
    async fn answer(
        &self,
        raw: &[u8],
        peer: &str,
        pending_resource: Option<causeway_store::ResourcePut>,
    ) -> Reply {
        let ack_id = self.ack_ids.next();
        let timestamp = hl7_timestamp();
        let header = AckHeader {
            control_id: &ack_id,
            timestamp: &timestamp,
        };
        if !self.is_running() {
            return self.refuse_stopped(raw, peer, header);
        }
        ChannelStats::bump(&self.stats.received);
        let received_at = UnixMillis::now();
        self.stats
            .last_received_ms
            .store(received_at.0, Ordering::Relaxed);
        let msg = match hl7v2::parse(raw) {
            Ok(msg) => msg,
            Err(e) => {
                return self
                    .refuse_unparseable(raw, peer, received_at, &e, header)
                    .await;
            }
        };
        let mode = AckMode::of(&msg);
        let drift = self.observe_drift(&msg, received_at);
        let (decision, unmapped) = self.decide(&msg);
        let (state, queues, outbound, code, errors) = match decision {
            Decision::Hold { outbound } => (
                MessageState::Held,
                Vec::new(),
                outbound,
                AckCode::AA,
                Vec::new(),
            ),
            Decision::RefuseContent(err) => (
                MessageState::Rejected,
                Vec::new(),
                None,
                AckCode::AE,
                vec![err],
            ),
            Decision::Route { outbound } => (
                MessageState::Accepted,
                self.queues.clone(),
                outbound,
                AckCode::AA,
                Vec::new(),
            ),
            Decision::Filter => (
                MessageState::Filtered,
                Vec::new(),
                None,
                AckCode::AA,
                Vec::new(),
            ),
            Decision::Refuse(err) => (
                MessageState::Rejected,
                Vec::new(),
                None,
                AckCode::AR,
                vec![err],
            ),
            Decision::Error(text) => {
                tracing::warn!(channel = %self.name, control_id = %msg.control_id().unwrap_or_default(), error = %text, "transform failed; message kept in state error");
                (
                    MessageState::Error,
                    Vec::new(),
                    None,
                    AckCode::AA,
                    Vec::new(),
                )
            }
        };
        let wire_code = match mode {
            AckMode::Original => code,
            AckMode::Enhanced { .. } => code.to_commit(),
        };
        let ack = hl7v2::build_ack(&msg, wire_code, &errors, header);
        let queues_empty = queues.is_empty();
        let stored_header = header_of(&msg);
        // What the destinations will send, handed to them once the message is committed.
        let handed = (!queues_empty).then(|| Outgoing {
            payload: Arc::from(outbound.as_deref().unwrap_or(raw)),
            header: Arc::new(stored_header.clone()),
        });
        let new = NewMessage {
            channel: self.name.clone(),
            peer: peer.to_string(),
            received_at,
            header: stored_header,
            patient_ids: patient_ids(&msg),
            raw: raw.to_vec(),
            destinations: queues,
            state,
            ack: Some(ack.clone()),
            outbound,
            events: unmapped
                .into_iter()
                .map(|u| (causeway_store::EventKind::UnmappedCode, u.detail))
                .chain(
                    drift
                        .iter()
                        .map(|f| (causeway_store::EventKind::Drift, f.detail())),
                )
                .collect(),
            // Only a routed message can be accepted by the EHR; otherwise the write is refused.
            pending_resource: pending_resource.filter(|_| !queues_empty),
        };
        match self.store.insert_inbound(new).await {
            Ok(outcome) => {
                if let Some(dup) = outcome.duplicate_of {
                    ChannelStats::bump(&self.stats.duplicates);
                    tracing::info!(channel = %self.name, control_id = %msg.control_id().unwrap_or_default(), original = %dup.original, "duplicate message; stored ACK returned");
                    let ack = dup.ack.unwrap_or(ack);
                    let code = ack_code_of(&ack).unwrap_or(wire_code);
                    return self.reply(mode, ack, code);
                }
                match state {
                    MessageState::Accepted => ChannelStats::bump(&self.stats.accepted),
                    MessageState::Filtered => ChannelStats::bump(&self.stats.filtered),
                    MessageState::Rejected => ChannelStats::bump(&self.stats.rejected),
                    _ => ChannelStats::bump(&self.stats.errored),
                }
                // Routed: its bytes are left for the destinations, which are woken.
                if let Some(outgoing) = handed {
                    self.handoff
                        .put(outcome.id, outgoing, all_queues(self.queues.len()));
                    self.wake.notify_waiters();
                }
                if state == MessageState::Held {
                    tracing::info!(channel = %self.name, id = %outcome.id, control_id = %msg.control_id().unwrap_or_default(), "message held for review: a code map's hold policy met an unmapped code");
                }
                tracing::debug!(channel = %self.name, id = %outcome.id, control_id = %msg.control_id().unwrap_or_default(), message_type = %msg.message_type(), size = raw.len(), state = %state, "message stored");
                let mut reply = self.reply(mode, ack, wire_code);
                reply.message_id = Some(outcome.id);
                reply
            }
            Err(e) => {
                ChannelStats::bump(&self.stats.store_failures);
                tracing::error!(channel = %self.name, control_id = %msg.control_id().unwrap_or_default(), error = %e, "message could not be stored; answering AE");
                let code = match mode {
                    AckMode::Original => AckCode::AE,
                    AckMode::Enhanced { .. } => AckCode::CE,
                };
                let err = AckError::new(207, "message could not be stored; please resend");
                let ack = hl7v2::build_ack(&msg, code, &[err], header);
                self.reply(mode, ack, code)
            }
        }
    }

    /// AE (CE in enhanced mode) without storing anything: the channel is stopped and the sender
    /// must keep the message and send it again later.
    fn refuse_stopped(&self, raw: &[u8], peer: &str, header: AckHeader<'_>) -> Reply {
        ChannelStats::bump(&self.stats.refused_stopped);
        let err = AckError::new(207, "channel stopped");
        match hl7v2::parse(raw) {
            Ok(msg) => {
                tracing::debug!(channel = %self.name, peer, control_id = %msg.control_id().unwrap_or_default(), "channel stopped; answering AE");
                let mode = AckMode::of(&msg);
                let code = match mode {
                    AckMode::Original => AckCode::AE,
                    AckMode::Enhanced { .. } => AckCode::CE,
                };
                let ack = hl7v2::build_ack(&msg, code, &[err], header);
                self.reply(mode, ack, code)
            }
            Err(_) => {
                tracing::debug!(channel = %self.name, peer, size = raw.len(), "channel stopped; answering AE");
                Reply {
                    ack: Some(hl7v2::build_nak_for_bytes(raw, AckCode::AE, &err, header)),
                    code: AckCode::AE,
                    message_id: None,
                }
            }
        }
    }

    /// Applies enhanced mode's MSH-15: a commit ACK only when the sender asked for it.
    fn reply(&self, mode: AckMode, ack: Vec<u8>, code: AckCode) -> Reply {
        let wanted = mode.accept_condition().wants(code.is_accept());
        Reply {
            ack: wanted.then_some(ack),
            code,
            message_id: None,
        }
    }

    /// Drift findings of a parsed message (none when drift detection is off), counted and logged
    /// by kind and names only.
    fn observe_drift(&self, msg: &Message<'_>, at: UnixMillis) -> Vec<crate::drift::Finding> {
        let Some(tracker) = &self.drift else {
            return Vec::new();
        };
        let findings = tracker.observe(msg, at.0);
        if !findings.is_empty() {
            self.stats
                .drift_findings
                .fetch_add(findings.len() as u64, Ordering::Relaxed);
            for f in &findings {
                tracing::info!(channel = %self.name, control_id = %msg.control_id().unwrap_or_default(), finding = %f.detail(), "drift");
            }
        }
        findings
    }

    fn decide(&self, msg: &Message<'_>) -> (Decision, Vec<Unmapped>) {
        let decision = self.route(msg);
        // A write-back message was made from FHIR: converting it back would be wasted work.
        match (decision, self.fhir.get()) {
            (Decision::Route { outbound }, Some(fhir)) if self.write_back.is_none() => {
                self.convert(msg, outbound, &fhir)
            }
            (decision, _) => (decision, Vec::new()),
        }
    }

    fn route(&self, msg: &Message<'_>) -> Decision {
        if let Some(missing) = missing_header_field(msg) {
            return Decision::Refuse(missing);
        }
        if let Err(refusal) = self.accept.check(msg) {
            return Decision::Refuse(AckError::new(refusal.err3, refusal.text));
        }
        if !self.filters.iter().all(|f| f.matches(msg)) {
            return Decision::Filter;
        }
        if self.transforms.is_empty() {
            return Decision::Route { outbound: None };
        }
        let mut owned = msg.to_owned_message();
        let mut ctx = TransformContext::new();
        let verdict = match self.transforms.apply(&mut owned, &mut ctx) {
            Ok(v) => v,
            Err(e) => {
                if e.is_script_error() {
                    ChannelStats::bump(&self.stats.script_errors);
                }
                return Decision::Error(e.to_string());
            }
        };
        self.stats
            .unmapped_codes
            .fetch_add(ctx.unmapped.len() as u64, Ordering::Relaxed);
        match verdict {
            Verdict::Continue => Decision::Route {
                outbound: Some(owned.encode()),
            },
            Verdict::Filter => Decision::Filter,
            Verdict::Reject { reason } => Decision::Refuse(AckError::new(207, reason)),
        }
    }

    /// Converts the routed message (as transformed) to FHIR and decides on the code maps' policies.
    fn convert(
        &self,
        msg: &Message<'_>,
        outbound: Option<Vec<u8>>,
        fhir: &crate::fhir::FhirConversion,
    ) -> (Decision, Vec<Unmapped>) {
        let result = match &outbound {
            Some(bytes) => match hl7v2::parse(bytes) {
                Ok(transformed) => fhir.convert(&transformed),
                Err(e) => {
                    return (
                        Decision::Error(format!("transformed message does not parse: {}", e.kind)),
                        Vec::new(),
                    );
                }
            },
            None => fhir.convert(msg),
        };
        let sender = format!(
            "{}/{}",
            msg.sending_application().unwrap_or_default(),
            msg.sending_facility().unwrap_or_default()
        );
        let conversion = match result {
            Ok(c) => c,
            Err(e) => {
                let refusal = match e.kind {
                    v2fhir::ErrorKind::Rejected => {
                        Decision::RefuseContent(AckError::new(103, e.message.clone()))
                    }
                    _ => Decision::Refuse(AckError::new(200, e.message.clone())),
                };
                let unmapped = match e.kind {
                    v2fhir::ErrorKind::Rejected => vec![Unmapped {
                        detail: format!("sender={sender} policy=reject {}", e.message),
                    }],
                    _ => Vec::new(),
                };
                self.stats
                    .unmapped_codes
                    .fetch_add(unmapped.len() as u64, Ordering::Relaxed);
                return (refusal, unmapped);
            }
        };
        let unmapped: Vec<Unmapped> = conversion
            .issues
            .iter()
            .filter_map(|i| match &i.kind {
                v2fhir::IssueKind::Unmapped { map, system, code } => Some(Unmapped {
                    detail: format!(
                        "sender={sender} map={map} field={} system={} code={code}",
                        i.at,
                        system.as_deref().unwrap_or("")
                    ),
                }),
                _ => None,
            })
            .collect();
        self.stats
            .unmapped_codes
            .fetch_add(unmapped.len() as u64, Ordering::Relaxed);
        let decision = if conversion.held {
            Decision::Hold { outbound }
        } else {
            Decision::Route { outbound }
        };
        (decision, unmapped)
    }

    async fn refuse_unparseable(
        &self,
        raw: &[u8],
        peer: &str,
        received_at: UnixMillis,
        e: &hl7v2::Error,
        header: AckHeader<'_>,
    ) -> Reply {
        // The error's text can quote the bytes it stopped at (a segment id, MSH-2): log only
        // its code and position, never message content.
        tracing::info!(channel = %self.name, peer, size = raw.len(), err3 = e.err3_code(), position = %e.position, "message does not parse; answering AR");
        let mut error = AckError::from_error(e);
        if raw.starts_with(b"BHS") || raw.starts_with(b"FHS") {
            // A whole batch file in one frame: say what to do instead.
            error.text.push_str(
                "; this is an HL7 batch: send each message in its own frame, \
                 or drop the batch file into a directory source",
            );
        }
        let nak = hl7v2::build_nak_for_bytes(raw, AckCode::AR, &error, header);
        let new = NewMessage {
            channel: self.name.clone(),
            peer: peer.to_string(),
            received_at,
            header: raw_header_of(raw),
            patient_ids: Vec::new(),
            raw: raw.to_vec(),
            destinations: Vec::new(),
            state: MessageState::Rejected,
            ack: Some(nak.clone()),
            outbound: None,
            events: Vec::new(),
            pending_resource: None,
        };
        match self.store.insert_inbound(new).await {
            Ok(_) => {
                ChannelStats::bump(&self.stats.rejected);
                Reply {
                    ack: Some(nak),
                    code: AckCode::AR,
                    message_id: None,
                }
            }
            Err(err) => {
                ChannelStats::bump(&self.stats.store_failures);
                tracing::error!(channel = %self.name, error = %err, "unparseable message could not be stored; answering AE");
                let ae = AckError::new(207, "message could not be stored; please resend");
                Reply {
                    ack: Some(hl7v2::build_nak_for_bytes(raw, AckCode::AE, &ae, header)),
                    code: AckCode::AE,
                    message_id: None,
                }
            }
        }
    }
}

/// Why a reprocess could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReprocessError {
    #[error("message {0} is not stored")]
    NotFound(causeway_store::MessageId),
    #[error("message {0} belongs to channel {1:?}, not {2:?}")]
    OtherChannel(causeway_store::MessageId, String, String),
    #[error("the payload of message {0} was purged by retention")]
    Purged(causeway_store::MessageId),
    #[error(transparent)]
    Store(#[from] causeway_store::Error),
}

/// The outcome of a reprocess.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reprocessed {
    pub state: MessageState,
    /// Queues the message was appended to (empty when filtered, refused or in error; a queue
    /// where it is still pending is skipped).
    pub queues: Vec<String>,
    /// Why it was not routed: the refusal's or the transform's error, the filter or hold; `None`
    /// when it was.
    pub reason: Option<String>,
}

impl Channel {
    /// Runs a stored message through this channel's accept rules, filters and transforms
    /// again (with the configuration as it is now) and appends it to the tail of each
    /// destination queue when it is routed. The sender is not answered again.
    pub async fn reprocess(
        &self,
        id: causeway_store::MessageId,
    ) -> Result<Reprocessed, ReprocessError> {
        let stored = self
            .store
            .message(id)
            .await?
            .ok_or(ReprocessError::NotFound(id))?;
        if stored.summary.channel != self.name {
            return Err(ReprocessError::OtherChannel(
                id,
                stored.summary.channel.clone(),
                self.name.clone(),
            ));
        }
        let raw = stored.raw.ok_or(ReprocessError::Purged(id))?;
        let (state, outbound, queues, reason) = match hl7v2::parse(&raw) {
            Err(e) => (
                MessageState::Rejected,
                None,
                Vec::new(),
                Some(AckError::from_error(&e).text),
            ),
            Ok(msg) => match self.decide(&msg).0 {
                Decision::Route { outbound } => {
                    (MessageState::Accepted, outbound, self.queues.clone(), None)
                }
                Decision::Hold { outbound } => (
                    MessageState::Held,
                    outbound,
                    Vec::new(),
                    Some("held for review: a code map with the hold policy met a code it does not map".into()),
                ),
                Decision::Filter => (
                    MessageState::Filtered,
                    None,
                    Vec::new(),
                    Some("a filter of the channel dropped it".into()),
                ),
                Decision::Refuse(e) | Decision::RefuseContent(e) => {
                    (MessageState::Rejected, None, Vec::new(), Some(e.text))
                }
                Decision::Error(text) => {
                    tracing::warn!(channel = %self.name, id = %id, error = %text, "transform failed on reprocess");
                    (MessageState::Error, None, Vec::new(), Some(text))
                }
            },
        };
        // The copy destinations send may change: a first attempt still to come reads it anew.
        self.handoff.forget(id);
        let created = self
            .store
            .reprocess(id, state, outbound, queues.clone())
            .await?;
        // The store skips a queue where the message is still pending: report only the
        // queues it was really appended to.
        let queues = if created.len() == queues.len() {
            queues
        } else {
            let deliveries = self.store.deliveries(id).await?;
            queues
                .into_iter()
                .filter(|q| {
                    deliveries
                        .iter()
                        .any(|d| &d.destination == q && created.contains(&d.seq))
                })
                .collect()
        };
        if !queues.is_empty() {
            self.wake.notify_waiters();
        }
        Ok(Reprocessed {
            state,
            queues,
            reason,
        })
    }
}

/// MSA-1 of an ACK we built or stored.
pub fn ack_code_of(ack: &[u8]) -> Option<AckCode> {
    let msg = hl7v2::parse(ack).ok()?;
    AckCode::parse(&msg.text("MSA-1")?)
}
