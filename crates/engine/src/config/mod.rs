//! `causeway.toml`: parsed, then validated into a [`Config`] the runtime can run without
//! further checks, with every problem reported at once.
//!
//! Map:
//! - [`raw`]: the file as written ([`RawConfig`], serde, unknown keys refused);
//! - `validate`: `RawConfig` -> [`Config`] or a list of [`ConfigError`]s;
//! - `parse`: TOML syntax and shape errors, all of them, with key paths;
//! - [`units`]: durations, sizes, addresses and names;
//! - [`error`]: [`ConfigError`] (`FILE:LINE:COLUMN: KEY: MESSAGE`).
//!
//! The stages: syntax errors (all, from the TOML parser's recovery) stop there; otherwise
//! shape errors (unknown keys, wrong types: each offending entry is set aside and the rest
//! read again, so they are all found) and validation errors are reported together. A
//! [`Config`] holds only checked values: addresses parse, referenced files exist, paths,
//! regexes and scripts are compiled, names are unique, and relative paths are resolved
//! against the directory of the configuration file. `causeway check` runs exactly this.
//!
//! The key reference is `docs/configuration.md`; a test keeps it and [`raw`] in step.

pub mod alerts;
pub mod error;
mod parse;
pub mod raw;
pub mod units;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use alerts::AlertsConfig;
pub use error::{ConfigError, ConfigErrorKind, LineCol};
pub use raw::RawConfig;

use crate::filter::{Accept, Filter, Wildcard};
use crate::transform::{CodeTable, Transforms};

/// Largest configuration file read, in bytes: a real one is a few KiB; 4 MiB leaves room for
/// large code tables while refusing a wrong file (a log, a database) passed by mistake.
pub const MAX_CONFIG_LEN: usize = 4 * 1024 * 1024;

/// Default data directory, relative to the configuration file (or the working directory
/// when there is none).
pub const DEFAULT_DATA_DIR: &str = "causeway-data";

/// Default MLLP listen address of the built-in channel: the registered HL7 port, all
/// interfaces.
pub const DEFAULT_MLLP_LISTEN: &str = "0.0.0.0:2575";

/// Default most messages per store group commit (as the SQLite store's own default).
///
/// A backlog drains in few fsyncs while one commit stays within a few milliseconds.
pub const DEFAULT_GROUP_COMMIT_MAX_MESSAGES: usize = 512;

/// Most messages per group commit that may be configured: beyond this one commit holds
/// every waiting sender's ACK for too long.
pub const MAX_GROUP_COMMIT_MESSAGES: usize = 65_536;

/// Default wait for more messages once a group commit has its first: none, so a lone
/// message is not delayed; under load groups form from what queued during the last fsync.
pub const DEFAULT_GROUP_COMMIT_MAX_WAIT: Duration = Duration::ZERO;

/// Longest configurable group-commit wait: every ACK waits this long in the worst case, and
/// senders time out after a few seconds.
pub const MAX_GROUP_COMMIT_WAIT: Duration = Duration::from_secs(1);

/// Default most concurrent connections per MLLP source.
///
/// Senders keep one or a few long-lived connections each; 256 covers a hospital's feeds while
/// bounding file descriptors and memory (each connection may buffer a frame).
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;

/// Default idle time before an MLLP connection is closed: senders reconnect on demand, and
/// half-open connections left by network equipment must not hold a slot forever.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Default time allowed to receive the rest of a frame once it has started: a sender that
/// stalls mid-frame for this long is gone.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Default largest inbound frame or body: ORU results with embedded PDFs reach several MiB.
pub const DEFAULT_MAX_FRAME: usize = 16 * 1024 * 1024;

/// Largest configurable frame, body or file: the store refuses payloads above 64 MiB.
pub const MAX_FRAME: usize = 64 * 1024 * 1024;

/// Default poll interval of a directory source: files appear in batches from other systems;
/// a second is prompt without spinning.
pub const DEFAULT_POLL: Duration = Duration::from_secs(1);

/// Default file name pattern of a directory source.
pub const DEFAULT_PATTERN: &str = "*.hl7";

/// Default wait for a TCP connection to a destination.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Default wait for a destination's ACK: long enough for slow EHR interfaces, short enough
/// that a dead peer is noticed and the message retried.
pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(30);

/// Default HTTP destination request timeout (same reasoning as [`DEFAULT_ACK_TIMEOUT`]).
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Default first retry delay; later delays double up to [`DEFAULT_RETRY_MAX`].
pub const DEFAULT_RETRY_INITIAL: Duration = Duration::from_secs(1);

/// Default longest retry delay: a receiver back after an outage gets its backlog within
/// five minutes, without being hammered meanwhile.
pub const DEFAULT_RETRY_MAX: Duration = Duration::from_secs(300);

/// Most parallel deliveries per destination: a handful of connections saturates any real
/// HL7 receiver, and each one holds a store lease.
pub const MAX_PARALLEL: usize = 64;

/// Most destinations per channel (the store's limit per message).
pub const MAX_DESTINATIONS: usize = 64;

/// Default file name of a file destination: `{id}` keeps names unique.
pub const DEFAULT_FILENAME: &str = "{channel}-{id}.hl7";

/// Default lifetime of an access token issued to a backend client.
///
/// SMART Backend Services suggests at most an hour; five minutes bound what a leaked token is
/// worth, and a client simply signs a new assertion when its token runs out.
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(5 * 60);

/// Longest configurable access-token lifetime: tokens cannot be revoked from the client side,
/// so an hour is the most a stolen one may stay good.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(60 * 60);

/// Default lifetime of a user's session: one working shift.
pub const DEFAULT_SESSION_LIFETIME: Duration = Duration::from_secs(8 * 60 * 60);

/// Longest configurable session: a week, so that a forgotten browser does not stay signed in.
pub const MAX_SESSION_LIFETIME: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// [`Config::default_config`] written as a file (what `causeway serve` runs without one);
/// a test checks that it validates to the same configuration.
pub const DEFAULT_CONFIG_TOML: &str = r#"[server]
data_dir = "causeway-data"
http = "0.0.0.0:8080"

[[channel]]
name = "default"
source = { type = "mllp", listen = "0.0.0.0:2575" }

  [[channel.destination]]
  name = "unified"
  type = "fhir-store"
"#;

/// Where `causeway serve` serves HTTP (the APIs) without a configuration file.
pub const DEFAULT_HTTP_LISTEN: &str = "0.0.0.0:8080";

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from (`None` for [`Config::default_config`] and
    /// [`Config::from_str`]).
    pub file: Option<PathBuf>,
    /// Relative paths in the file were resolved against this directory.
    pub base_dir: PathBuf,
    pub server: ServerConfig,
    pub store: StoreConfig,
    /// Code tables by name (also referenced by the `map` transforms that use them).
    pub tables: BTreeMap<String, Arc<CodeTable>>,
    /// Channels in file order.
    pub channels: Vec<ChannelConfig>,
    /// `[alerts]`, `[[notifier]]`, `[[alert]]`: alert rules and where they notify.
    pub alerts: AlertsConfig,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Where the store and its key file live.
    pub data_dir: PathBuf,
    /// HTTP listen address (API, dashboard, metrics, HTTP sources); `None`: no HTTP server.
    pub http: Option<String>,
    /// `[server] tls`: the HTTP server speaks HTTPS with this certificate.
    pub http_tls: Option<ServerTls>,
    pub log_format: LogFormat,
    /// `[server.auth]`: who may use the HTTP API.
    pub auth: AuthSettings,
    /// `[server.metrics] token_env`: the bearer token `/metrics` asks for; `None`: open.
    pub metrics_token: Option<MetricsToken>,
    /// `[server.export]`: limits of Bulk Data export jobs.
    pub export: ExportSettings,
}

/// `[server.export]`: how many Bulk Data export jobs run at once, how long their files are
/// kept, and where a type's output is split into several files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportSettings {
    /// Jobs running at once; a kick-off beyond is answered 429.
    pub max_jobs: usize,
    /// How long a completed job's files stay downloadable.
    pub file_expiry: Duration,
    /// Size past which a type's output continues in a new file.
    pub max_file_size: u64,
}

/// Each running export holds a store read connection and most of a core while it renders;
/// two keep a 2-core server answering its feeds and API while exporting.
pub const DEFAULT_EXPORT_MAX_JOBS: usize = 2;
/// Most export jobs that may be configured to run at once.
pub const MAX_EXPORT_JOBS: i64 = 64;
/// A day covers a client that polls slowly or retries downloads overnight, without keeping
/// copies of PHI on disk for long.
pub const DEFAULT_EXPORT_FILE_EXPIRY: Duration = Duration::from_secs(24 * 60 * 60);
/// Longest configurable file expiry: exported PHI should not linger for months.
pub const MAX_EXPORT_FILE_EXPIRY: Duration = Duration::from_secs(30 * 24 * 60 * 60);
/// A client downloads (and retries) a large type in parts of this size.
pub const DEFAULT_EXPORT_MAX_FILE_SIZE: u64 = 256 * 1024 * 1024;
/// Largest configurable file part.
pub const MAX_EXPORT_FILE_SIZE: u64 = 64 * 1024 * 1024 * 1024;

impl Default for ExportSettings {
    fn default() -> Self {
        ExportSettings {
            max_jobs: DEFAULT_EXPORT_MAX_JOBS,
            file_expiry: DEFAULT_EXPORT_FILE_EXPIRY,
            max_file_size: DEFAULT_EXPORT_MAX_FILE_SIZE,
        }
    }
}

/// The bearer token scrapers send to `/metrics`; kept out of `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct MetricsToken(pub String);

impl std::fmt::Debug for MetricsToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsToken(..)")
    }
}

/// `[server.auth]`: users sign in with a password (session cookie); backend clients get access
/// tokens with SMART Backend Services client assertions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSettings {
    pub token_lifetime: Duration,
    pub session_lifetime: Duration,
    /// Session cookies carry `Secure` (only sent over HTTPS).
    pub secure_cookies: bool,
    /// The token endpoint's URL exactly as clients call it: their assertions' `aud` must equal
    /// it. Present whenever a client is registered.
    pub token_url: Option<String>,
    /// Requests per client address and minute on `/fhir` and `/api`; 0: no limit.
    pub requests_per_minute: u32,
    pub clients: Vec<AuthClient>,
}

/// Most requests per address and minute that may be configured (`server.auth`).
pub const MAX_REQUESTS_PER_MINUTE: i64 = 100_000_000;

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            token_lifetime: DEFAULT_TOKEN_LIFETIME,
            session_lifetime: DEFAULT_SESSION_LIFETIME,
            secure_cookies: false,
            token_url: None,
            requests_per_minute: 0,
            clients: Vec::new(),
        }
    }
}

/// A registered backend client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthClient {
    /// The client id: `iss` and `sub` of its assertions.
    pub id: String,
    /// Where its public keys are (the file exists; its contents are read at start).
    pub keys: ClientKeys,
    /// The most it may be granted, e.g. `system/Observation.read` (syntax checked).
    pub scopes: Vec<String>,
}

/// The public keys a client's assertions are checked with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientKeys {
    /// A JSON Web Key Set file (`{"keys": [...]}`).
    Jwks(PathBuf),
    /// A PEM public key (RSA or P-384).
    PublicKey(PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    pub group_commit_max_messages: usize,
    pub group_commit_max_wait: Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            group_commit_max_messages: DEFAULT_GROUP_COMMIT_MAX_MESSAGES,
            group_commit_max_wait: DEFAULT_GROUP_COMMIT_MAX_WAIT,
        }
    }
}

/// One channel: a source, what it accepts, its filters, transforms and destinations.
#[derive(Debug, Clone)]
pub struct ChannelConfig {
    pub name: String,
    /// A disabled channel is validated but not started (its listen address may be shared).
    pub enabled: bool,
    pub source: SourceConfig,
    /// Refusals are answered AR with the ERR-3 code of [`crate::filter::Refusal`].
    pub accept: Accept,
    pub retention: Retention,
    /// All must pass, or the message is stored as filtered.
    pub filters: Vec<Filter>,
    pub transforms: Transforms,
    /// No destinations: messages are stored and that is all.
    pub destinations: Vec<DestinationConfig>,
    /// `[channel.fhir]`: routed messages are converted to FHIR R4 at ingest through these profiles.
    pub fhir: Option<Arc<crate::fhir::FhirConversion>>,
    /// `[channel.write_back]`, for a `fhir-api` source: how API writes become v2 messages.
    pub write_back: Option<WriteBack>,
    /// `[channel.drift]`: learning the feed's profile and reporting changes (on by default).
    pub drift: crate::drift::DriftSettings,
}

/// Resource types the FHIR API writes back to an EHR (the FHIR -> v2 mapping's inputs).
pub const WRITE_BACK_RESOURCES: [&str; 5] = [
    "ServiceRequest",
    "Observation",
    "Patient",
    "Appointment",
    "Immunization",
];

/// Default wait of a `Prefer: respond-sync` write for the EHR's application ACK.
///
/// EHR interfaces answer within seconds; past this the client gets 202 and a status URL.
pub const DEFAULT_SYNC_TIMEOUT: Duration = Duration::from_secs(30);

/// `[channel.write_back]`: a `fhir-api` channel's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteBack {
    /// Resource types this channel writes back (each type to at most one channel).
    pub resources: Vec<String>,
    /// MSH-3, MSH-4, MSH-5, MSH-6 of the messages written (HD namespace ids).
    pub sending_application: String,
    pub sending_facility: String,
    pub receiving_application: String,
    pub receiving_facility: String,
    /// MSH-12.
    pub version: String,
    /// `ORM^O01` or `OML^O21` for a ServiceRequest.
    pub order_message: String,
    /// Longest a `Prefer: respond-sync` write waits for the EHR's ACK.
    pub sync_timeout: Duration,
}

impl Default for WriteBack {
    fn default() -> Self {
        WriteBack {
            resources: WRITE_BACK_RESOURCES.iter().map(|r| r.to_string()).collect(),
            sending_application: "CAUSEWAY".into(),
            sending_facility: String::new(),
            receiving_application: String::new(),
            receiving_facility: String::new(),
            version: "2.5.1".into(),
            order_message: "ORM^O01".into(),
            sync_timeout: DEFAULT_SYNC_TIMEOUT,
        }
    }
}

impl ChannelConfig {
    /// True when the message passes every filter of the channel.
    pub fn passes_filters(&self, msg: &hl7v2::Message<'_>) -> bool {
        crate::filter::passes_all(&self.filters, msg)
    }
}

/// How long a channel keeps its messages; `None` keeps them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Retention {
    /// After this, payloads are removed (metadata stays searchable).
    pub payload: Option<Duration>,
    /// After this, messages and their events are removed entirely.
    pub metadata: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceConfig {
    Mllp(MllpSource),
    Http(HttpSource),
    Directory(DirectorySource),
    /// Writes made through the FHIR API (`[channel.write_back]`).
    FhirApi,
}

impl SourceConfig {
    /// `mllp`, `http`, `directory` or `fhir-api`.
    pub fn kind(&self) -> &'static str {
        match self {
            SourceConfig::Mllp(_) => "mllp",
            SourceConfig::Http(_) => "http",
            SourceConfig::Directory(_) => "directory",
            SourceConfig::FhirApi => "fhir-api",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MllpSource {
    /// `host:port`, checked but not resolved.
    pub listen: String,
    pub max_connections: usize,
    pub idle_timeout: Duration,
    pub read_timeout: Duration,
    pub max_frame: usize,
    pub tls: Option<ServerTls>,
}

impl MllpSource {
    /// The built-in channel's source: [`DEFAULT_MLLP_LISTEN`] and every default.
    pub fn with_defaults(listen: &str) -> MllpSource {
        MllpSource {
            listen: listen.to_string(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            read_timeout: DEFAULT_READ_TIMEOUT,
            max_frame: DEFAULT_MAX_FRAME,
            tls: None,
        }
    }
}

/// TLS for a listener; the files exist (their contents are read at start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// When set, clients must present a certificate signed by this CA.
    pub client_ca: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSource {
    /// URL path on `server.http`, starting with `/`.
    pub path: String,
    pub max_body: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectorySource {
    /// Polled directory (not recursive).
    pub path: PathBuf,
    /// File names to take; others are left alone.
    pub pattern: Wildcard,
    pub poll: Duration,
    /// Where files go once stored.
    pub done: PathBuf,
    /// Where files go that could not be read as HL7.
    pub error: PathBuf,
    /// Larger files are moved to `error` unread.
    pub max_file: usize,
}

/// One destination: where messages go, how often to retry, how many at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationConfig {
    pub name: String,
    pub kind: DestinationKind,
    pub retry: RetryPolicy,
    /// 1: strict FIFO (a failing head blocks the queue); more: that many deliveries at once,
    /// in roughly FIFO order.
    pub parallel: usize,
    /// What is delivered: the HL7 v2 message, or its FHIR R4 bundle (JSON).
    pub format: PayloadFormat,
}

/// What a destination delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PayloadFormat {
    /// The HL7 v2 message as stored (after the channel's transforms).
    #[default]
    Hl7,
    /// The FHIR R4 transaction bundle of the message, as JSON (`application/fhir+json`).
    Fhir,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DestinationKind {
    Mllp(MllpDestination),
    Http(HttpDestination),
    File(FileDestination),
    /// The FHIR resource store behind the API: the message's bundle is written into it.
    FhirStore,
}

impl DestinationKind {
    /// `mllp`, `http`, `file` or `fhir-store`.
    pub fn kind(&self) -> &'static str {
        match self {
            DestinationKind::Mllp(_) => "mllp",
            DestinationKind::Http(_) => "http",
            DestinationKind::File(_) => "file",
            DestinationKind::FhirStore => "fhir-store",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MllpDestination {
    /// `host:port`, checked but not resolved (resolved at each connection).
    pub connect: String,
    pub tls: Option<ClientTls>,
    pub connect_timeout: Duration,
    pub ack_timeout: Duration,
    pub wait_for_ack: WaitForAck,
}

/// When an MLLP destination waits for the receiver's ACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WaitForAck {
    /// As the outbound message's MSH-15 asks, as a compliant receiver answers: not for NE,
    /// silence meaning accepted for ER and refused for SU.
    #[default]
    AsAsked,
    /// For every message, whatever its MSH-15 says: for receivers that answer everything.
    Always,
}

/// TLS towards a destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTls {
    /// CA certificates that sign the server's certificate.
    pub ca: PathBuf,
    /// Name checked against the server's certificate (default: the host of `connect`).
    pub server_name: String,
    /// Client certificate and key, both or neither.
    pub client_auth: Option<(PathBuf, PathBuf)>,
}

/// An HTTP webhook: the raw message is POSTed as `x-application/hl7-v2+er7`.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpDestination {
    pub url: String,
    /// Extra request headers. Values may be secrets: `Debug` shows names only.
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
}

impl fmt::Debug for HttpDestination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("HttpDestination")
            .field("url", &self.url)
            .field("headers", &names)
            .field("timeout", &self.timeout)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDestination {
    pub dir: PathBuf,
    pub filename: FilenameTemplate,
}

/// Retries of a destination: delays double from `initial` up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub initial: Duration,
    pub max: Duration,
    /// Attempts before a message goes to the error queue; 0: retry forever. Applies to
    /// failures a retry may fix (AE, timeouts, refused connections); an AR goes to the error
    /// queue at once.
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial: DEFAULT_RETRY_INITIAL,
            max: DEFAULT_RETRY_MAX,
            max_attempts: 0,
        }
    }
}

impl RetryPolicy {
    /// Delay before attempt `attempt + 1` after `attempt` failures (1-based):
    /// `initial * 2^(attempt-1)`, capped at `max`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(32);
        self.initial
            .checked_mul(1u32 << doublings.min(31))
            .map_or(self.max, |d| d.min(self.max))
    }

    /// True when a message that failed `attempts` times should go to the error queue.
    pub fn exhausted(&self, attempts: u32) -> bool {
        self.max_attempts != 0 && attempts >= self.max_attempts
    }
}

/// A file name with placeholders: `{channel}`, `{destination}`, `{id}` (the store's message
/// id, required so no file overwrites another), `{control_id}` and `{message_type}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilenameTemplate {
    parts: Vec<NamePart>,
    text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum NamePart {
    Literal(String),
    Channel,
    Destination,
    Id,
    ControlId,
    MessageType,
}

impl Default for FilenameTemplate {
    /// [`DEFAULT_FILENAME`].
    fn default() -> Self {
        FilenameTemplate {
            parts: vec![
                NamePart::Channel,
                NamePart::Literal("-".to_string()),
                NamePart::Id,
                NamePart::Literal(".hl7".to_string()),
            ],
            text: DEFAULT_FILENAME.to_string(),
        }
    }
}

impl fmt::Display for FilenameTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Values for [`FilenameTemplate::render`].
#[derive(Debug, Clone, Copy)]
pub struct FilenameVars<'a> {
    pub channel: &'a str,
    pub destination: &'a str,
    pub id: i64,
    /// MSH-10 (from the sender: cleaned before use).
    pub control_id: &'a str,
    /// `ADT^A01` (the `^` becomes `_`).
    pub message_type: &'a str,
}

/// Longest text one placeholder adds to a file name: control ids are up to 199 characters,
/// file names up to 255 bytes.
const MAX_PLACEHOLDER_LEN: usize = 64;

impl FilenameTemplate {
    pub fn parse(text: &str) -> Result<FilenameTemplate, String> {
        let bad = |why: &str| format!("invalid file name {text:?}: {why}");
        if text.contains(['/', '\\', '\0']) {
            return Err(bad("a file name, without directories"));
        }
        if text.starts_with('.') {
            return Err(bad("must not start with '.'"));
        }
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(NamePart::Literal(rest[..open].to_string()));
            }
            let close = rest[open..].find('}').ok_or_else(|| bad("unclosed '{'"))?;
            let name = &rest[open + 1..open + close];
            parts.push(match name {
                "channel" => NamePart::Channel,
                "destination" => NamePart::Destination,
                "id" => NamePart::Id,
                "control_id" => NamePart::ControlId,
                "message_type" => NamePart::MessageType,
                _ => {
                    return Err(bad(&format!(
                        "unknown placeholder {{{name}}} (known: {{channel}}, {{destination}}, {{id}}, {{control_id}}, {{message_type}})"
                    )));
                }
            });
            rest = &rest[open + close + 1..];
        }
        if rest.contains('}') {
            return Err(bad("'}' without '{'"));
        }
        if !rest.is_empty() {
            parts.push(NamePart::Literal(rest.to_string()));
        }
        if !parts.contains(&NamePart::Id) {
            return Err(bad("must contain {id}, so that no file overwrites another"));
        }
        Ok(FilenameTemplate {
            parts,
            text: text.to_string(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The file name for one message. Values from the message are reduced to letters,
    /// digits, `-`, `_` and `.` (others become `_`) and cut to 64 characters, so a control
    /// id like `../../x` cannot leave the directory.
    pub fn render(&self, vars: &FilenameVars<'_>) -> String {
        fn clean(s: &str) -> String {
            let mut out: String = s
                .chars()
                .take(MAX_PLACEHOLDER_LEN)
                .map(|c| {
                    if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            if out.starts_with('.') {
                out.replace_range(..1, "_");
            }
            out
        }
        let mut out = String::new();
        for part in &self.parts {
            match part {
                NamePart::Literal(s) => out.push_str(s),
                NamePart::Channel => out.push_str(vars.channel),
                NamePart::Destination => out.push_str(vars.destination),
                NamePart::Id => out.push_str(&vars.id.to_string()),
                NamePart::ControlId => out.push_str(&clean(vars.control_id)),
                NamePart::MessageType => out.push_str(&clean(vars.message_type)),
            }
        }
        out
    }
}

impl Config {
    /// Reads and validates a configuration file. Relative paths in it are resolved against
    /// the file's directory.
    pub fn load(path: impl AsRef<Path>) -> Result<Config, Vec<ConfigError>> {
        let path = path.as_ref();
        let io_error = |message: String| {
            vec![ConfigError {
                kind: ConfigErrorKind::Io,
                file: Some(path.to_path_buf()),
                position: None,
                key: String::new(),
                message,
            }]
        };
        let meta = std::fs::metadata(path).map_err(|e| io_error(io_text(&e)))?;
        if meta.len() > MAX_CONFIG_LEN as u64 {
            return Err(io_error(format!(
                "the file is larger than {} (is it a configuration file?)",
                units::format_size(MAX_CONFIG_LEN)
            )));
        }
        let bytes = std::fs::read(path).map_err(|e| io_error(io_text(&e)))?;
        let text = String::from_utf8(bytes).map_err(|e| {
            io_error(format!(
                "not utf-8 text (byte {})",
                e.utf8_error().valid_up_to()
            ))
        })?;
        let base_dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        validate::check(&text, Some(path.to_path_buf()), &base_dir)
    }

    /// Validates configuration text; relative paths are resolved against `base_dir`.
    pub fn from_str(text: &str, base_dir: impl AsRef<Path>) -> Result<Config, Vec<ConfigError>> {
        validate::check(text, None, base_dir.as_ref())
    }

    /// What `causeway serve` runs without a configuration file: data in `./causeway-data`,
    /// the HTTP API on [`DEFAULT_HTTP_LISTEN`], and one enabled channel `default` with an MLLP
    /// source on [`DEFAULT_MLLP_LISTEN`] that accepts any HL7 v2 message, no filters, no
    /// transforms, and one destination `unified` (`fhir-store`): every message is stored and
    /// its FHIR form is served by the FHIR API.
    pub fn default_config() -> Config {
        Config {
            file: None,
            base_dir: PathBuf::from("."),
            server: ServerConfig {
                data_dir: PathBuf::from(".").join(DEFAULT_DATA_DIR),
                http: Some(DEFAULT_HTTP_LISTEN.to_string()),
                http_tls: None,
                log_format: LogFormat::Text,
                auth: AuthSettings::default(),
                metrics_token: None,
                export: ExportSettings::default(),
            },
            store: StoreConfig::default(),
            tables: BTreeMap::new(),
            channels: vec![ChannelConfig {
                name: "default".to_string(),
                enabled: true,
                source: SourceConfig::Mllp(MllpSource::with_defaults(DEFAULT_MLLP_LISTEN)),
                accept: Accept::any(),
                retention: Retention::default(),
                filters: Vec::new(),
                transforms: Transforms::default(),
                // The unified model behind the FHIR API.
                destinations: vec![DestinationConfig {
                    name: "unified".to_string(),
                    kind: DestinationKind::FhirStore,
                    retry: RetryPolicy::default(),
                    parallel: 1,
                    format: PayloadFormat::Fhir,
                }],
                fhir: None,
                write_back: None,
                drift: crate::drift::DriftSettings::default(),
            }],
            alerts: AlertsConfig::default(),
        }
    }

    /// The channel with this name.
    pub fn channel(&self, name: &str) -> Option<&ChannelConfig> {
        self.channels.iter().find(|c| c.name == name)
    }

    /// The enabled channels, in file order.
    pub fn enabled_channels(&self) -> impl Iterator<Item = &ChannelConfig> {
        self.channels.iter().filter(|c| c.enabled)
    }
}

/// `io::Error` text, lowercase and without rust's "(os error n)" suffix.
fn io_text(e: &std::io::Error) -> String {
    let text = e.to_string();
    let text = match text.find(" (os error") {
        Some(i) => &text[..i],
        None => &text,
    };
    let mut c = text.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_double_up_to_max() {
        let r = RetryPolicy {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(10),
            max_attempts: 3,
        };
        let delays: Vec<u64> = (1..=6).map(|a| r.delay(a).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 10, 10]);
        assert_eq!(r.delay(u32::MAX), Duration::from_secs(10));
        assert!(!r.exhausted(2) && r.exhausted(3));
        assert!(!RetryPolicy::default().exhausted(u32::MAX));
    }

    #[test]
    fn the_default_filename_is_what_its_text_says() {
        assert_eq!(
            FilenameTemplate::default(),
            FilenameTemplate::parse(DEFAULT_FILENAME).unwrap()
        );
    }

    #[test]
    fn filenames() {
        let t = FilenameTemplate::parse("{channel}-{message_type}-{control_id}-{id}.hl7").unwrap();
        let vars = FilenameVars {
            channel: "adt",
            destination: "files",
            id: 42,
            control_id: "../../etc/passwd",
            message_type: "ADT^A01",
        };
        assert_eq!(t.render(&vars), "adt-ADT_A01-_._.._etc_passwd-42.hl7");
        for (text, why) in [
            ("a/{id}", "a file name, without directories"),
            (".{id}", "must not start with '.'"),
            ("{id", "unclosed '{'"),
            ("{id}}", "'}' without '{'"),
            (
                "{channel}.hl7",
                "must contain {id}, so that no file overwrites another",
            ),
            (
                "{nope}{id}",
                "unknown placeholder {nope} (known: {channel}, {destination}, {id}, {control_id}, {message_type})",
            ),
        ] {
            assert_eq!(
                FilenameTemplate::parse(text).unwrap_err(),
                format!("invalid file name {text:?}: {why}")
            );
        }
    }

    #[test]
    fn headers_are_hidden_from_debug() {
        let d = HttpDestination {
            url: "https://x.example/hook".into(),
            headers: vec![("Authorization".into(), "Bearer s3cret".into())],
            timeout: Duration::from_secs(1),
        };
        let shown = format!("{d:?}");
        assert!(
            shown.contains("Authorization") && !shown.contains("s3cret"),
            "{shown}"
        );
    }
}
