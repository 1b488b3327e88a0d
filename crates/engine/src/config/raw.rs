//! `causeway.toml` exactly as written: the serde layer.
//!
//! Every struct refuses unknown keys, and nearly every value is optional and wrapped in
//! [`Spanned`], so that absent keys, bad values and conflicts are found by validation (which
//! reports all of them at once, with positions) instead of by serde (which stops at the
//! first). Sources, destinations and transforms are flat structs with every key any variant
//! takes; validation checks which keys fit the chosen `type`. (Serde's tagged enums would
//! buffer their content and lose the spans.)
//!
//! The names here are the user-facing keys: `docs/configuration.md` documents each of them,
//! and a test checks that none is missing there.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use toml::Spanned;

/// A string with its position.
pub type Text = Option<Spanned<String>>;
/// A list of strings, each with its position, the list with its own.
pub type TextList = Option<Spanned<Vec<Spanned<String>>>>;
/// An integer with its position (TOML integers are `i64`; ranges are checked in validation).
pub type Int = Option<Spanned<i64>>;

/// The whole file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<Spanned<RawServer>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<Spanned<RawStore>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tables: BTreeMap<String, Spanned<BTreeMap<String, String>>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channel: Vec<Spanned<RawChannel>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerts: Option<Spanned<RawAlerts>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notifier: Vec<Spanned<RawNotifier>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alert: Vec<Spanned<RawAlert>>,
}

/// `[alerts]`: how often the alert rules are evaluated.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlerts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluate_every: Text,
}

/// `[[notifier]]`: where alerts are sent. Every key of every type; `type` says which apply.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNotifier {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Text,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Text,
    // webhook
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
    // webhook and email
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Int,
    // email
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Int,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_env: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: TextList,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_prefix: Text,
}

/// `[[alert]]`: one rule. Every key of every type; `type` says which apply.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlert {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Text,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Text,
    #[serde(rename = "for", default, skip_serializing_if = "Option::is_none")]
    pub pending_for: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clear_for: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: TextList,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renotify: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Text,
    // error_rate, silence, ack_time, unmapped_code, drift, bad_input
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Text,
    // error_rate
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<Spanned<f64>>,
    // error_rate, ack_time
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_messages: Int,
    // queue_depth
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Int,
    // oldest_age
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Text,
    // silence
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days: TextList,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hours: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Text,
    // destination_down
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failures: Int,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_success_for: Text,
    // ack_time
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantile: Option<Spanned<f64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objective: Text,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_dir: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_format: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Spanned<RawServerTls>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<Spanned<RawAuth>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Spanned<RawMetrics>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export: Option<Spanned<RawExport>>,
}

/// `[server.export]`: limits of FHIR Bulk Data export jobs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExport {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_jobs: Int,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_expiry: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_file_size: Text,
}

/// `[server.metrics]`: who may read `/metrics`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    /// The environment variable holding the bearer token scrapers must send.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_env: Text,
}

/// `[server.auth]`: sign-in of users and of backend clients to the HTTP API.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_lifetime: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_lifetime: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secure_cookies: Option<Spanned<bool>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_url: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_minute: Int,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub client: Vec<Spanned<RawAuthClient>>,
}

/// `[[server.auth.client]]`: a registered SMART Backend Services client.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuthClient {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: TextList,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_commit_max_messages: Int,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_commit_max_wait: Text,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawChannel {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<Spanned<bool>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Spanned<RawSource>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accept: Option<Spanned<RawAccept>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Spanned<RawRetention>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filter: Vec<Spanned<RawFilter>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transform: Vec<Spanned<RawTransform>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destination: Vec<Spanned<RawDestination>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fhir: Option<Spanned<RawFhir>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_back: Option<Spanned<RawWriteBack>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<Spanned<RawDrift>>,
}

/// `[channel.drift]`: learning the feed's profile and reporting changes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDrift {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<Spanned<bool>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_messages: Int,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_duration: Text,
    /// Percent points, 1 to 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fill_rate_change: Int,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Int,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_samples: Int,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_values: Int,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore: TextList,
}

/// `[channel.write_back]`: how FHIR API writes become HL7 v2 messages to the EHR.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWriteBack {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: TextList,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sending_application: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sending_facility: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiving_application: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiving_facility: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_message: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_timeout: Text,
}

/// `[channel.fhir]`: convert each routed message to FHIR R4 at ingest, through sender profiles.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFhir {
    /// A profile file or a folder of `*.toml` profiles, relative to the configuration file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profiles: Text,
}

/// Every key of every source type; `type` says which apply.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Text,
    // mllp
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Int,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_timeout: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_frame: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Spanned<RawServerTls>>,
    // http and directory
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Text,
    // http
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_body: Text,
    // directory
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_file: Text,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServerTls {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ca: Text,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccept {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub types: TextList,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub versions: TextList,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processing_ids: TextList,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetention {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Text,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub types: TextList,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub structures: TextList,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub versions: TextList,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sending_applications: TextList,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sending_facilities: TextList,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<Spanned<OneOrMany>>,
}

/// One transform: exactly one of these keys is set.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTransform {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set: Option<Spanned<RawSet>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy: Option<Spanned<RawFromTo>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete: Option<Spanned<OneOrMany>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rename: Option<Spanned<RawFromTo>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map: Option<Spanned<RawMap>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add_segment: Option<Spanned<RawAddSegment>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop_segments: Option<Spanned<OneOrMany>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rename_segment: Option<Spanned<RawFromTo>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Text,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSet {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Text,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFromTo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Text,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMap {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Text,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAddSegment {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Text,
}

/// Every key of every destination type; `type` says which apply.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDestination {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Text,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Text,
    /// `hl7` (default) or `fhir` (http and file destinations of a channel with `[channel.fhir]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Text,
    // mllp
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Spanned<RawClientTls>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack_timeout: Text,
    /// `as-asked` (default: as the message's MSH-15 asks) or `always`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_for_ack: Text,
    // http
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Text,
    // file
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Text,
    // all
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<Spanned<RawRetry>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel: Int,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClientTls {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Text,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Int,
}

/// `"x"` or `["x", "y"]`: for `when`, `delete` and `drop_segments`.
#[derive(Debug, Clone, PartialEq)]
pub enum OneOrMany {
    One(String),
    Many(Vec<Spanned<String>>),
}

impl OneOrMany {
    /// The strings with their spans; a single string takes the span of the whole value.
    pub fn items(&self, span: std::ops::Range<usize>) -> Vec<(String, std::ops::Range<usize>)> {
        match self {
            OneOrMany::One(s) => vec![(s.clone(), span)],
            OneOrMany::Many(v) => v.iter().map(|s| (s.get_ref().clone(), s.span())).collect(),
        }
    }

    pub fn is_list(&self) -> bool {
        matches!(self, OneOrMany::Many(_))
    }
}

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany::One(s.to_string()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<OneOrMany, A::Error> {
                let mut out = Vec::new();
                while let Some(item) = seq.next_element::<Spanned<String>>()? {
                    out.push(item);
                }
                Ok(OneOrMany::Many(out))
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for OneOrMany {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            OneOrMany::One(v) => s.serialize_str(v),
            OneOrMany::Many(v) => v.serialize(s),
        }
    }
}
