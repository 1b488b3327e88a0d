//! [`RawConfig`] to [`Config`]: every value checked, every problem collected.
//!
//! The validator always builds a whole `Config`, putting defaults where a value was wrong,
//! so that one mistake never hides the next; the `Config` is returned only when no error was
//! found. Errors are sorted by position, file order being the order people fix them in.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;

use super::error::{ConfigError, ConfigErrorKind as K, Errors};
use super::raw::*;
use super::units::{self, check_name, format_duration, parse_address, parse_duration, parse_size};
use super::*;
use crate::drift::{self, DriftSettings};
use crate::fhir::FhirConversion;
use crate::filter::{Accept, Condition, Filter, TypePattern, Wildcard};
use crate::transform::{Anchor, CodeTable, InvalidTransform, ScriptEngine, Transform, Transforms};

mod alerts;

/// Most connections per MLLP source that may be configured (file descriptors are finite).
const MAX_CONNECTIONS_LIMIT: i64 = 100_000;

pub(crate) fn check(
    text: &str,
    file: Option<PathBuf>,
    base_dir: &Path,
) -> Result<Config, Vec<ConfigError>> {
    let mut errors = Errors::new(text, file.clone());
    let Some((raw, removed)) = super::parse::parse_raw(&mut errors) else {
        return Err(errors.list);
    };
    let shape_errors = errors.list.len();
    let mut v = Validator {
        errors,
        base_dir,
        scripts: None,
        tables: BTreeMap::new(),
    };
    let config = v.config(raw, file);
    let mut list = v.errors.list;
    // Entries set aside for shape errors would be reported again as missing: drop those.
    let mut kept: Vec<ConfigError> = list.drain(shape_errors..).collect();
    // So would the tables that held them ("the filter has no condition"): drop errors about
    // a table a removed entry belonged to as well.
    let related = |a: &str, b: &str| {
        a == b || a.starts_with(&format!("{b}.")) || a.starts_with(&format!("{b}["))
    };
    kept.retain(|e| {
        !removed
            .iter()
            .any(|r| related(&e.key, r) || (!e.key.is_empty() && related(r, &e.key)))
    });
    list.extend(kept);
    if list.is_empty() {
        return Ok(config);
    }
    list.sort_by_key(|e| e.position.map_or((usize::MAX, 0), |p| (p.line, p.column)));
    Err(list)
}

struct Validator<'a> {
    errors: Errors<'a>,
    base_dir: &'a Path,
    /// Built at the first script: an engine costs far more than a config without scripts.
    scripts: Option<ScriptEngine>,
    tables: BTreeMap<String, Arc<CodeTable>>,
}

/// A listener address in use, for conflict checks.
struct Bound {
    host: String,
    port: u16,
    owner: String,
    line: usize,
}

impl<'a> Validator<'a> {
    fn err(&mut self, kind: K, key: &str, span: Range<usize>, message: impl Into<String>) {
        self.errors.push(kind, key, Some(span), message);
    }

    fn missing(&mut self, key: &str, span: Range<usize>, why: &str) {
        self.err(K::Missing, key, span, format!("missing key ({why})"));
    }

    fn line(&self, span: &Range<usize>) -> usize {
        self.errors.line_of(span)
    }

    fn resolve(&self, p: &str) -> PathBuf {
        self.base_dir.join(p)
    }

    fn duration(&mut self, key: &str, v: &Text, default: Duration) -> Duration {
        self.opt_duration(key, v).unwrap_or(default)
    }

    fn opt_duration(&mut self, key: &str, v: &Text) -> Option<Duration> {
        let v = v.as_ref()?;
        match parse_duration(v.get_ref()) {
            Ok(d) => Some(d),
            Err(e) => {
                self.err(K::Invalid, key, v.span(), e);
                None
            }
        }
    }

    /// A duration that must not be zero (timeouts, intervals).
    fn positive_duration(&mut self, key: &str, v: &Text, default: Duration) -> Duration {
        let d = self.duration(key, v, default);
        if d.is_zero() {
            if let Some(v) = v {
                self.err(K::Invalid, key, v.span(), "must be longer than 0");
            }
            return default;
        }
        d
    }

    fn size(&mut self, key: &str, v: &Text, default: usize, max: usize) -> usize {
        let Some(v) = v else { return default };
        match parse_size(v.get_ref()) {
            Ok(0) => {
                self.err(K::Invalid, key, v.span(), "must be larger than 0");
                default
            }
            Ok(n) if n > max => {
                self.err(
                    K::Invalid,
                    key,
                    v.span(),
                    format!("must be at most {}", units::format_size(max)),
                );
                default
            }
            Ok(n) => n,
            Err(e) => {
                self.err(K::Invalid, key, v.span(), e);
                default
            }
        }
    }

    fn int(
        &mut self,
        key: &str,
        v: &Int,
        range: std::ops::RangeInclusive<i64>,
        default: i64,
    ) -> i64 {
        let Some(v) = v else { return default };
        let n = *v.get_ref();
        if range.contains(&n) {
            n
        } else {
            self.err(
                K::Invalid,
                key,
                v.span(),
                format!("must be from {} to {}", range.start(), range.end()),
            );
            default
        }
    }

    fn name(&mut self, key: &str, v: &Spanned<String>) -> String {
        if let Err(e) = check_name(v.get_ref()) {
            self.err(K::Invalid, key, v.span(), e);
        }
        v.get_ref().clone()
    }

    /// A file that must exist now (certificates, keys, scripts).
    fn existing_file(&mut self, key: &str, v: &Spanned<String>) -> PathBuf {
        let path = self.resolve(v.get_ref());
        if v.get_ref().is_empty() {
            self.err(K::Invalid, key, v.span(), "the path is empty");
        } else if !path.is_file() {
            self.err(
                K::NotFound,
                key,
                v.span(),
                format!("file not found: {}", path.display()),
            );
        }
        path
    }

    fn list(&mut self, key: &str, v: &TextList) -> Vec<Spanned<String>> {
        let Some(list) = v else { return Vec::new() };
        if list.get_ref().is_empty() {
            self.err(
                K::Invalid,
                key,
                list.span(),
                "the list is empty (leave the key out to allow any value)",
            );
        }
        list.get_ref().clone()
    }

    fn wildcards(&mut self, key: &str, v: &TextList) -> Vec<Wildcard> {
        let items = self.list(key, v);
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            if item.get_ref().is_empty() {
                self.err(
                    K::Invalid,
                    &format!("{key}[{i}]"),
                    item.span(),
                    "the value is empty",
                );
            }
            out.push(Wildcard::new(item.get_ref()));
        }
        out
    }

    /// Patterns of MSH-11.1; a value without a wildcard must be one HL7 table 0103 defines,
    /// since any other never matches a conformant sender and refuses all of its messages.
    fn processing_ids(&mut self, key: &str, v: &TextList) -> Vec<Wildcard> {
        let patterns = self.wildcards(key, v);
        let items = v
            .as_ref()
            .map(|l| l.get_ref().as_slice())
            .unwrap_or_default();
        for (i, item) in items.iter().enumerate() {
            let id = item.get_ref();
            if !id.is_empty() && !id.contains(['*', '?']) && !matches!(id.as_str(), "D" | "P" | "T")
            {
                self.err(
                    K::Invalid,
                    &format!("{key}[{i}]"),
                    item.span(),
                    format!(
                        "unknown processing id {id:?}: expected P (production), T (training) or D (debugging), HL7 table 0103"
                    ),
                );
            }
        }
        patterns
    }

    fn types(&mut self, key: &str, v: &TextList) -> Vec<TypePattern> {
        let items = self.list(key, v);
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match TypePattern::parse(item.get_ref()) {
                Ok(p) => out.push(p),
                Err(e) => self.err(K::Invalid, &format!("{key}[{i}]"), item.span(), e),
            }
        }
        out
    }

    /// Keys present in a table that do not apply to the chosen type.
    fn not_applicable(
        &mut self,
        key: &str,
        what: &str,
        present: &[(&str, Option<Range<usize>>)],
        allowed: &[&str],
    ) {
        for (name, span) in present {
            if let Some(span) = span
                && !allowed.contains(name)
            {
                self.err(
                    K::Invalid,
                    &format!("{key}.{name}"),
                    span.clone(),
                    format!("does not apply to {what}"),
                );
            }
        }
    }

    fn config(&mut self, raw: RawConfig, file: Option<PathBuf>) -> Config {
        let server = self.server(raw.server.as_ref());
        let store = self.store(raw.store.as_ref());
        for (name, entries) in &raw.tables {
            let key = format!("tables.{name}");
            if let Err(e) = check_name(name) {
                self.err(K::Invalid, &key, entries.span(), e);
            }
            let table = CodeTable::new(name, entries.get_ref().clone());
            self.tables.insert(name.clone(), Arc::new(table));
        }
        let mut channels = Vec::new();
        let mut names: HashMap<String, (usize, usize)> = HashMap::new();
        for (i, ch) in raw.channel.iter().enumerate() {
            let key = format!("channel[{i}]");
            let c = self.channel(&key, ch);
            if let Some(name) = &ch.get_ref().name {
                let line = self.line(&name.span());
                match names.get(name.get_ref()) {
                    Some(&(_, first)) => self.err(
                        K::Conflict,
                        &format!("{key}.name"),
                        name.span(),
                        format!(
                            "duplicate channel name {:?} (first at line {first})",
                            name.get_ref()
                        ),
                    ),
                    None => {
                        names.insert(name.get_ref().clone(), (i, line));
                    }
                }
            }
            channels.push(c);
        }
        self.write_back_types(&raw, &channels);
        self.listeners(&raw, &server);
        let alerts = self.alerts(&raw, &channels);
        Config {
            file,
            base_dir: self.base_dir.to_path_buf(),
            server,
            store,
            tables: std::mem::take(&mut self.tables),
            channels,
            alerts,
        }
    }

    fn server(&mut self, raw: Option<&Spanned<RawServer>>) -> ServerConfig {
        let default = RawServer::default();
        let s = raw.map_or(&default, |s| s.get_ref());
        let data_dir = match &s.data_dir {
            Some(d) if d.get_ref().is_empty() => {
                self.err(K::Invalid, "server.data_dir", d.span(), "the path is empty");
                self.resolve(DEFAULT_DATA_DIR)
            }
            Some(d) => self.resolve(d.get_ref()),
            None => self.resolve(DEFAULT_DATA_DIR),
        };
        let http = s.http.as_ref().map(|h| {
            if let Err(e) = parse_address(h.get_ref(), true) {
                self.err(K::Invalid, "server.http", h.span(), e);
            }
            h.get_ref().clone()
        });
        let log_format = match s.log_format.as_ref() {
            None => LogFormat::Text,
            Some(f) => match f.get_ref().as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                other => {
                    self.err(
                        K::Invalid,
                        "server.log_format",
                        f.span(),
                        format!("unknown log format {other:?}: expected \"text\" or \"json\""),
                    );
                    LogFormat::Text
                }
            },
        };
        let auth = self.auth(s.auth.as_ref());
        let http_tls = s.tls.as_ref().map(|t| {
            if http.is_none() {
                self.err(
                    K::Invalid,
                    "server.tls",
                    t.span(),
                    "HTTPS needs `server.http` (the address to serve it on)",
                );
            }
            self.server_tls("server.tls", t)
        });
        let metrics_token = s.metrics.as_ref().and_then(|m| self.metrics_token(m));
        let export = s
            .export
            .as_ref()
            .map(|e| self.export(e.get_ref()))
            .unwrap_or_default();
        ServerConfig {
            data_dir,
            http,
            http_tls,
            log_format,
            auth,
            metrics_token,
            export,
        }
    }

    /// `[server.export]`: each limit within its bounds.
    fn export(&mut self, e: &RawExport) -> ExportSettings {
        let max_jobs = self.int(
            "server.export.max_jobs",
            &e.max_jobs,
            1..=MAX_EXPORT_JOBS,
            DEFAULT_EXPORT_MAX_JOBS as i64,
        ) as usize;
        let file_expiry = self.lifetime(
            "server.export.file_expiry",
            &e.file_expiry,
            DEFAULT_EXPORT_FILE_EXPIRY,
            MAX_EXPORT_FILE_EXPIRY,
        );
        let max_file_size = self.size(
            "server.export.max_file_size",
            &e.max_file_size,
            usize::try_from(DEFAULT_EXPORT_MAX_FILE_SIZE).unwrap_or(usize::MAX),
            usize::try_from(MAX_EXPORT_FILE_SIZE).unwrap_or(usize::MAX),
        ) as u64;
        ExportSettings {
            max_jobs,
            file_expiry,
            max_file_size,
        }
    }

    /// `[server.metrics] token_env`: the variable must be set and not empty when the
    /// configuration is read, so a scraper is never locked out by a typo found later.
    fn metrics_token(&mut self, m: &Spanned<RawMetrics>) -> Option<MetricsToken> {
        let Some(name) = &m.get_ref().token_env else {
            return None;
        };
        let var = name.get_ref();
        if var.is_empty() {
            self.err(
                K::Invalid,
                "server.metrics.token_env",
                name.span(),
                "the variable name is empty",
            );
            return None;
        }
        match std::env::var(var) {
            Ok(token) if !token.trim().is_empty() => Some(MetricsToken(token.trim().to_string())),
            _ => {
                self.err(
                    K::Invalid,
                    "server.metrics.token_env",
                    name.span(),
                    format!("the environment variable {var} is not set (or is empty)"),
                );
                None
            }
        }
    }

    /// A lifetime: longer than 0, at most `max`.
    fn lifetime(&mut self, key: &str, v: &Text, default: Duration, max: Duration) -> Duration {
        let d = self.positive_duration(key, v, default);
        if d > max {
            if let Some(v) = v {
                self.err(
                    K::Invalid,
                    key,
                    v.span(),
                    format!("must be at most {}", format_duration(max)),
                );
            }
            return default;
        }
        d
    }

    fn auth(&mut self, raw: Option<&Spanned<RawAuth>>) -> AuthSettings {
        let Some(raw) = raw else {
            return AuthSettings::default();
        };
        let a = raw.get_ref();
        let token_lifetime = self.lifetime(
            "server.auth.token_lifetime",
            &a.token_lifetime,
            DEFAULT_TOKEN_LIFETIME,
            MAX_TOKEN_LIFETIME,
        );
        let session_lifetime = self.lifetime(
            "server.auth.session_lifetime",
            &a.session_lifetime,
            DEFAULT_SESSION_LIFETIME,
            MAX_SESSION_LIFETIME,
        );
        let token_url = a.token_url.as_ref().map(|u| {
            if let Err(e) = check_url(u.get_ref()) {
                self.err(K::Invalid, "server.auth.token_url", u.span(), e);
            }
            u.get_ref().clone()
        });
        let mut clients = Vec::new();
        let mut ids: HashMap<String, usize> = HashMap::new();
        for (i, c) in a.client.iter().enumerate() {
            let key = format!("server.auth.client[{i}]");
            let k = |name: &str| format!("{key}.{name}");
            let cl = c.get_ref();
            let id = match &cl.id {
                Some(id) => {
                    if let Err(e) = check_client_id(id.get_ref()) {
                        self.err(K::Invalid, &k("id"), id.span(), e);
                    }
                    let line = self.line(&id.span());
                    match ids.get(id.get_ref()) {
                        Some(first) => self.err(
                            K::Conflict,
                            &k("id"),
                            id.span(),
                            format!(
                                "duplicate client id {:?} (first at line {first})",
                                id.get_ref()
                            ),
                        ),
                        None => {
                            ids.insert(id.get_ref().clone(), line);
                        }
                    }
                    id.get_ref().clone()
                }
                None => {
                    self.missing(&k("id"), c.span(), "every client needs an id");
                    String::new()
                }
            };
            let keys = match (&cl.jwks, &cl.public_key) {
                (Some(j), None) => ClientKeys::Jwks(self.existing_file(&k("jwks"), j)),
                (None, Some(p)) => ClientKeys::PublicKey(self.existing_file(&k("public_key"), p)),
                (Some(j), Some(p)) => {
                    self.err(
                        K::Conflict,
                        &k("public_key"),
                        p.span(),
                        "give `jwks` or `public_key`, not both",
                    );
                    ClientKeys::Jwks(self.existing_file(&k("jwks"), j))
                }
                (None, None) => {
                    self.missing(
                        &k("jwks"),
                        c.span(),
                        "every client needs `jwks` or `public_key`",
                    );
                    ClientKeys::Jwks(PathBuf::new())
                }
            };
            let mut scopes = Vec::new();
            match &cl.scopes {
                None => self.missing(&k("scopes"), c.span(), "every client needs scopes"),
                Some(list) if list.get_ref().is_empty() => self.err(
                    K::Invalid,
                    &k("scopes"),
                    list.span(),
                    "the list is empty (a client without scopes can do nothing)",
                ),
                Some(list) => {
                    for (j, s) in list.get_ref().iter().enumerate() {
                        if let Err(e) = check_scope(s.get_ref()) {
                            self.err(K::Invalid, &format!("{}[{j}]", k("scopes")), s.span(), e);
                        }
                        scopes.push(s.get_ref().clone());
                    }
                }
            }
            clients.push(AuthClient { id, keys, scopes });
        }
        if !clients.is_empty() && token_url.is_none() {
            self.missing(
                "server.auth.token_url",
                raw.span(),
                "required when clients are registered: their assertions' `aud` must equal it",
            );
        }
        let requests_per_minute = self.int(
            "server.auth.requests_per_minute",
            &a.requests_per_minute,
            0..=MAX_REQUESTS_PER_MINUTE,
            0,
        ) as u32;
        AuthSettings {
            token_lifetime,
            session_lifetime,
            secure_cookies: a.secure_cookies.as_ref().is_some_and(|b| *b.get_ref()),
            token_url,
            requests_per_minute,
            clients,
        }
    }

    fn store(&mut self, raw: Option<&Spanned<RawStore>>) -> StoreConfig {
        let Some(s) = raw else {
            return StoreConfig::default();
        };
        let s = s.get_ref();
        let max_messages = self.int(
            "store.group_commit_max_messages",
            &s.group_commit_max_messages,
            1..=MAX_GROUP_COMMIT_MESSAGES as i64,
            DEFAULT_GROUP_COMMIT_MAX_MESSAGES as i64,
        ) as usize;
        let mut max_wait = self.duration(
            "store.group_commit_max_wait",
            &s.group_commit_max_wait,
            DEFAULT_GROUP_COMMIT_MAX_WAIT,
        );
        if max_wait > MAX_GROUP_COMMIT_WAIT {
            if let Some(v) = &s.group_commit_max_wait {
                self.err(
                    K::Invalid,
                    "store.group_commit_max_wait",
                    v.span(),
                    format!(
                        "must be at most {} (every ack waits this long)",
                        format_duration(MAX_GROUP_COMMIT_WAIT)
                    ),
                );
            }
            max_wait = DEFAULT_GROUP_COMMIT_MAX_WAIT;
        }
        StoreConfig {
            group_commit_max_messages: max_messages,
            group_commit_max_wait: max_wait,
        }
    }

    fn channel(&mut self, key: &str, raw: &Spanned<RawChannel>) -> ChannelConfig {
        let ch = raw.get_ref();
        let name = match &ch.name {
            Some(n) => self.name(&format!("{key}.name"), n),
            None => {
                self.missing(
                    &format!("{key}.name"),
                    raw.span(),
                    "every channel needs a name",
                );
                String::new()
            }
        };
        let source = match &ch.source {
            Some(s) => self.source(&format!("{key}.source"), s),
            None => {
                self.missing(
                    &format!("{key}.source"),
                    raw.span(),
                    "every channel needs a source",
                );
                SourceConfig::Mllp(MllpSource::with_defaults(DEFAULT_MLLP_LISTEN))
            }
        };
        let accept = match &ch.accept {
            Some(a) => {
                let k = format!("{key}.accept");
                let a = a.get_ref();
                Accept::new(
                    self.types(&format!("{k}.types"), &a.types),
                    self.processing_ids(&format!("{k}.processing_ids"), &a.processing_ids),
                    self.wildcards(&format!("{k}.versions"), &a.versions),
                )
            }
            None => Accept::any(),
        };
        let retention = match &ch.retention {
            Some(r) => self.retention(&format!("{key}.retention"), r.get_ref()),
            None => Retention::default(),
        };
        let filters = ch
            .filter
            .iter()
            .enumerate()
            .map(|(j, f)| self.filter(&format!("{key}.filter[{j}]"), f))
            .collect();
        let transforms = ch
            .transform
            .iter()
            .enumerate()
            .filter_map(|(j, t)| self.transform(&format!("{key}.transform[{j}]"), t))
            .collect();
        let mut destinations = Vec::new();
        let mut names: HashMap<String, usize> = HashMap::new();
        for (j, d) in ch.destination.iter().enumerate() {
            let dkey = format!("{key}.destination[{j}]");
            if j == MAX_DESTINATIONS {
                self.err(
                    K::Invalid,
                    &dkey,
                    d.span(),
                    format!("a channel has at most {MAX_DESTINATIONS} destinations"),
                );
            }
            if let Some(n) = &d.get_ref().name {
                let line = self.line(&n.span());
                if let Some(first) = names.get(n.get_ref()) {
                    self.err(
                        K::Conflict,
                        &format!("{dkey}.name"),
                        n.span(),
                        format!(
                            "duplicate destination name {:?} in this channel (first at line {first})",
                            n.get_ref()
                        ),
                    );
                } else {
                    names.insert(n.get_ref().clone(), line);
                }
            }
            destinations.push(self.destination(&dkey, d));
        }
        let fhir = ch
            .fhir
            .as_ref()
            .and_then(|f| self.fhir(&format!("{key}.fhir"), f));
        if fhir.is_none() {
            for (j, d) in ch.destination.iter().enumerate() {
                if let Some(f) = d
                    .get_ref()
                    .format
                    .as_ref()
                    .filter(|f| f.get_ref() == "fhir")
                {
                    self.err(
                        K::Invalid,
                        &format!("{key}.destination[{j}].format"),
                        f.span(),
                        "\"fhir\" needs the channel's [channel.fhir] section (its profiles)",
                    );
                }
            }
        }
        let write_back = self.write_back(key, ch, &source, &destinations);
        let drift = match &ch.drift {
            Some(d) => self.drift(&format!("{key}.drift"), d),
            None => DriftSettings::default(),
        };
        ChannelConfig {
            drift,
            fhir,
            write_back,
            name,
            enabled: ch.enabled.as_ref().is_none_or(|e| *e.get_ref()),
            source,
            accept,
            retention,
            filters,
            transforms: Transforms::new(transforms),
            destinations,
        }
    }

    /// Each written-back resource type belongs to one enabled channel.
    fn write_back_types(&mut self, raw: &RawConfig, channels: &[ChannelConfig]) {
        let mut owner: HashMap<&str, &str> = HashMap::new();
        for (i, c) in channels.iter().enumerate() {
            let Some(wb) = c.write_back.as_ref().filter(|_| c.enabled) else {
                continue;
            };
            for r in &wb.resources {
                if let Some(first) = owner.insert(r, &c.name) {
                    let span = raw.channel[i]
                        .get_ref()
                        .source
                        .as_ref()
                        .map_or(0..0, Spanned::span);
                    self.err(
                        K::Conflict,
                        &format!("channel[{i}].write_back.resources"),
                        span,
                        format!("{r} is already written back by channel {first:?}"),
                    );
                }
            }
        }
    }

    /// `[channel.write_back]` with a `fhir-api` source (defaults when the table is absent).
    fn write_back(
        &mut self,
        key: &str,
        ch: &RawChannel,
        source: &SourceConfig,
        destinations: &[DestinationConfig],
    ) -> Option<WriteBack> {
        let wkey = format!("{key}.write_back");
        if !matches!(source, SourceConfig::FhirApi) {
            if let Some(w) = &ch.write_back {
                self.err(
                    K::Invalid,
                    &wkey,
                    w.span(),
                    "only a channel whose source is \"fhir-api\" writes back",
                );
            }
            return None;
        }
        if destinations.len() != 1 {
            let span = ch.source.as_ref().map_or(0..0, Spanned::span);
            self.err(
                K::Invalid,
                &format!("{key}.destination"),
                span,
                format!(
                    "a fhir-api channel needs exactly one destination (the EHR whose ACK settles the write), not {}",
                    destinations.len()
                ),
            );
        }
        let mut wb = WriteBack::default();
        let Some(raw) = &ch.write_back else {
            return Some(wb);
        };
        let w = raw.get_ref();
        if let Some(list) = &w.resources {
            wb.resources.clear();
            for (i, r) in list.get_ref().iter().enumerate() {
                if WRITE_BACK_RESOURCES.contains(&r.get_ref().as_str()) {
                    wb.resources.push(r.get_ref().clone());
                } else {
                    self.err(
                        K::Invalid,
                        &format!("{wkey}.resources[{i}]"),
                        r.span(),
                        format!(
                            "{:?} is not written back: expected one of {}",
                            r.get_ref(),
                            WRITE_BACK_RESOURCES.join(", ")
                        ),
                    );
                }
            }
        }
        let text = |v: &Text, default: &str| {
            v.as_ref()
                .map_or_else(|| default.to_string(), |t| t.get_ref().clone())
        };
        wb.sending_application = text(&w.sending_application, &wb.sending_application);
        wb.sending_facility = text(&w.sending_facility, "");
        wb.receiving_application = text(&w.receiving_application, "");
        wb.receiving_facility = text(&w.receiving_facility, "");
        for (name, value) in [
            ("sending_application", &w.sending_application),
            ("sending_facility", &w.sending_facility),
            ("receiving_application", &w.receiving_application),
            ("receiving_facility", &w.receiving_facility),
        ] {
            if let Some(v) = value
                && v.get_ref().contains(['|', '^', '~', '\\', '&', '\r', '\n'])
            {
                self.err(
                    K::Invalid,
                    &format!("{wkey}.{name}"),
                    v.span(),
                    "must not contain HL7 delimiters or line breaks",
                );
            }
        }
        if let Some(v) = &w.version {
            if [
                "2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.7.1", "2.8",
            ]
            .contains(&v.get_ref().as_str())
            {
                wb.version = v.get_ref().clone();
            } else {
                self.err(
                    K::Invalid,
                    &format!("{wkey}.version"),
                    v.span(),
                    format!("unsupported version {:?}: expected 2.3 to 2.8", v.get_ref()),
                );
            }
        }
        if let Some(v) = &w.order_message {
            match v.get_ref().as_str() {
                "ORM^O01" | "OML^O21" => wb.order_message = v.get_ref().clone(),
                other => self.err(
                    K::Invalid,
                    &format!("{wkey}.order_message"),
                    v.span(),
                    format!("unknown order message {other:?}: expected \"ORM^O01\" or \"OML^O21\""),
                ),
            }
        }
        wb.sync_timeout = self.positive_duration(
            &format!("{wkey}.sync_timeout"),
            &w.sync_timeout,
            DEFAULT_SYNC_TIMEOUT,
        );
        Some(wb)
    }

    /// `[channel.fhir]`: the profiles are read and checked now, every problem reported.
    fn fhir(&mut self, key: &str, raw: &Spanned<RawFhir>) -> Option<Arc<FhirConversion>> {
        let Some(p) = &raw.get_ref().profiles else {
            // No profiles: every sender is read plainly (no code maps).
            return Some(Arc::new(FhirConversion {
                source: PathBuf::new(),
                profiles: Vec::new(),
            }));
        };
        let path = self.resolve(p.get_ref());
        if !path.exists() {
            self.err(
                K::NotFound,
                &format!("{key}.profiles"),
                p.span(),
                format!("no such file or folder: {}", path.display()),
            );
            return None;
        }
        match crate::fhir::load_profiles(&path) {
            Ok(profiles) => Some(Arc::new(FhirConversion {
                source: path,
                profiles,
            })),
            Err(errors) => {
                for e in errors {
                    self.err(K::Invalid, &format!("{key}.profiles"), p.span(), e);
                }
                None
            }
        }
    }

    /// `[channel.drift]`: every value checked, every problem reported.
    fn drift(&mut self, key: &str, raw: &Spanned<RawDrift>) -> DriftSettings {
        let d = raw.get_ref();
        let defaults = DriftSettings::default();
        let k = |name: &str| format!("{key}.{name}");
        let baseline_messages = self.int(
            &k("baseline_messages"),
            &d.baseline_messages,
            0..=1_000_000_000,
            defaults.baseline_messages as i64,
        ) as u64;
        let baseline_duration = self.opt_duration(&k("baseline_duration"), &d.baseline_duration);
        if baseline_messages == 0
            && baseline_duration.is_none_or(|d| d.is_zero())
            && let Some(v) = &d.baseline_messages
        {
            self.err(
                K::Invalid,
                &k("baseline_messages"),
                v.span(),
                "0 needs a baseline_duration: the baseline would be empty",
            );
        }
        let fill_rate_change = self.int(
            &k("fill_rate_change"),
            &d.fill_rate_change,
            1..=100,
            (defaults.fill_rate_change * 100.0) as i64,
        ) as f64
            / 100.0;
        let window = self.int(
            &k("window"),
            &d.window,
            1..=drift::MAX_WINDOW as i64,
            defaults.window as i64,
        ) as usize;
        let min_samples = self.int(
            &k("min_samples"),
            &d.min_samples,
            1..=1_000_000_000,
            defaults.min_samples as i64,
        ) as u64;
        let max_values = self.int(
            &k("max_values"),
            &d.max_values,
            1..=drift::DEFAULT_MAX_VALUES as i64 * 16,
            defaults.max_values as i64,
        ) as usize;
        let mut ignore = std::collections::BTreeSet::new();
        for (i, item) in self.list(&k("ignore"), &d.ignore).iter().enumerate() {
            match drift::check_ignore_entry(item.get_ref()) {
                Ok(()) => {
                    ignore.insert(item.get_ref().clone());
                }
                Err(e) => self.err(K::Invalid, &format!("{}[{i}]", k("ignore")), item.span(), e),
            }
        }
        DriftSettings {
            enabled: d.enabled.as_ref().is_none_or(|e| *e.get_ref()),
            baseline_messages,
            baseline_duration,
            fill_rate_change,
            window,
            min_samples,
            max_values,
            ignore,
        }
    }

    fn retention(&mut self, key: &str, r: &RawRetention) -> Retention {
        let mut keep = |v: &Text, name: &str| {
            let k = format!("{key}.{name}");
            let d = self.opt_duration(&k, v);
            if let (Some(d), Some(v)) = (d, v)
                && d.is_zero()
            {
                self.err(
                    K::Invalid,
                    &k,
                    v.span(),
                    "must be longer than 0 (leave the key out to keep forever)",
                );
                return None;
            }
            d
        };
        let payload = keep(&r.payload, "payload");
        let metadata = keep(&r.metadata, "metadata");
        if let (Some(p), Some(m), Some(v)) = (payload, metadata, &r.payload)
            && p > m
        {
            self.err(
                K::Invalid,
                &format!("{key}.payload"),
                v.span(),
                format!(
                    "payloads ({}) cannot be kept longer than metadata ({})",
                    format_duration(p),
                    format_duration(m)
                ),
            );
        }
        Retention { payload, metadata }
    }

    fn source(&mut self, key: &str, raw: &Spanned<RawSource>) -> SourceConfig {
        let s = raw.get_ref();
        let present: [(&str, Option<Range<usize>>); 13] = [
            ("listen", s.listen.as_ref().map(Spanned::span)),
            (
                "max_connections",
                s.max_connections.as_ref().map(Spanned::span),
            ),
            ("idle_timeout", s.idle_timeout.as_ref().map(Spanned::span)),
            ("read_timeout", s.read_timeout.as_ref().map(Spanned::span)),
            ("max_frame", s.max_frame.as_ref().map(Spanned::span)),
            ("tls", s.tls.as_ref().map(Spanned::span)),
            ("path", s.path.as_ref().map(Spanned::span)),
            ("max_body", s.max_body.as_ref().map(Spanned::span)),
            ("pattern", s.pattern.as_ref().map(Spanned::span)),
            ("poll", s.poll.as_ref().map(Spanned::span)),
            ("done", s.done.as_ref().map(Spanned::span)),
            ("error", s.error.as_ref().map(Spanned::span)),
            ("max_file", s.max_file.as_ref().map(Spanned::span)),
        ];
        let fallback = SourceConfig::Mllp(MllpSource::with_defaults(DEFAULT_MLLP_LISTEN));
        let Some(kind) = &s.kind else {
            self.missing(
                &format!("{key}.type"),
                raw.span(),
                "\"mllp\", \"http\", \"directory\" or \"fhir-api\"",
            );
            return fallback;
        };
        let k = |name: &str| format!("{key}.{name}");
        match kind.get_ref().as_str() {
            "fhir-api" => {
                self.not_applicable(key, "fhir-api sources", &present, &[]);
                SourceConfig::FhirApi
            }
            "mllp" => {
                self.not_applicable(
                    key,
                    "mllp sources",
                    &present,
                    &[
                        "listen",
                        "max_connections",
                        "idle_timeout",
                        "read_timeout",
                        "max_frame",
                        "tls",
                    ],
                );
                let listen = match &s.listen {
                    Some(l) => {
                        if let Err(e) = parse_address(l.get_ref(), true) {
                            self.err(K::Invalid, &k("listen"), l.span(), e);
                        }
                        l.get_ref().clone()
                    }
                    None => {
                        self.missing(&k("listen"), raw.span(), "required by mllp sources");
                        DEFAULT_MLLP_LISTEN.to_string()
                    }
                };
                let tls = s.tls.as_ref().map(|t| self.server_tls(&k("tls"), t));
                SourceConfig::Mllp(MllpSource {
                    listen,
                    max_connections: self.int(
                        &k("max_connections"),
                        &s.max_connections,
                        1..=MAX_CONNECTIONS_LIMIT,
                        DEFAULT_MAX_CONNECTIONS as i64,
                    ) as usize,
                    idle_timeout: self.positive_duration(
                        &k("idle_timeout"),
                        &s.idle_timeout,
                        DEFAULT_IDLE_TIMEOUT,
                    ),
                    read_timeout: self.positive_duration(
                        &k("read_timeout"),
                        &s.read_timeout,
                        DEFAULT_READ_TIMEOUT,
                    ),
                    max_frame: self.size(
                        &k("max_frame"),
                        &s.max_frame,
                        DEFAULT_MAX_FRAME,
                        MAX_FRAME,
                    ),
                    tls,
                })
            }
            "http" => {
                self.not_applicable(key, "http sources", &present, &["path", "max_body"]);
                let path = match &s.path {
                    Some(p) => {
                        let text = p.get_ref();
                        let ok_char = |c: char| c.is_ascii_alphanumeric() || "-._~/".contains(c);
                        // Clients resolve `.` and `..` segments before sending, and a trailing
                        // slash is another route: either way the path would never be reached.
                        let dot_segment = text.split('/').any(|seg| seg == "." || seg == "..");
                        if !text.starts_with('/')
                            || text.len() < 2
                            || !text.chars().all(ok_char)
                            || text.contains("//")
                            || text.ends_with('/')
                            || dot_segment
                        {
                            self.err(
                                K::Invalid,
                                &k("path"),
                                p.span(),
                                format!("invalid url path {text:?}: expected /letters-digits-and/slashes (no `.` or `..` segment, no trailing slash), e.g. \"/hl7/adt\""),
                            );
                        }
                        let reserved = [
                            "/fhir", "/api", "/auth", "/health", "/ready", "/metrics", "/ui",
                        ];
                        if let Some(r) = reserved
                            .iter()
                            .find(|r| text == *r || text.starts_with(&format!("{r}/")))
                        {
                            self.err(
                                K::Conflict,
                                &k("path"),
                                p.span(),
                                format!("{text:?} is under {r}, which the HTTP API serves"),
                            );
                        }
                        text.clone()
                    }
                    None => {
                        self.missing(&k("path"), raw.span(), "required by http sources");
                        String::new()
                    }
                };
                SourceConfig::Http(HttpSource {
                    path,
                    max_body: self.size(&k("max_body"), &s.max_body, DEFAULT_MAX_FRAME, MAX_FRAME),
                })
            }
            "directory" => {
                self.not_applicable(
                    key,
                    "directory sources",
                    &present,
                    &["path", "pattern", "poll", "done", "error", "max_file"],
                );
                let path = match &s.path {
                    Some(p) => {
                        let dir = self.resolve(p.get_ref());
                        if p.get_ref().is_empty() {
                            self.err(K::Invalid, &k("path"), p.span(), "the path is empty");
                        } else if !dir.is_dir() {
                            self.err(
                                K::NotFound,
                                &k("path"),
                                p.span(),
                                format!("directory not found: {}", dir.display()),
                            );
                        }
                        dir
                    }
                    None => {
                        self.missing(&k("path"), raw.span(), "required by directory sources");
                        PathBuf::new()
                    }
                };
                let pattern = match &s.pattern {
                    Some(p) => {
                        if p.get_ref().is_empty() || p.get_ref().contains(['/', '\\']) {
                            self.err(
                                K::Invalid,
                                &k("pattern"),
                                p.span(),
                                format!("invalid pattern {:?}: expected a file name pattern such as \"*.hl7\"", p.get_ref()),
                            );
                        }
                        Wildcard::new(p.get_ref())
                    }
                    None => Wildcard::new(DEFAULT_PATTERN),
                };
                let mut side_dir = |name: &str, v: &Text, default: &str| -> PathBuf {
                    let dir = match v {
                        Some(d) => self.resolve(d.get_ref()),
                        None => path.join(default),
                    };
                    if let Some(d) = v
                        && (d.get_ref().is_empty() || dir == path)
                    {
                        self.err(
                            K::Invalid,
                            &k(name),
                            d.span(),
                            "must be another directory than `path` (files would be read again)",
                        );
                    }
                    dir
                };
                let done = side_dir("done", &s.done, "done");
                let error = side_dir("error", &s.error, "error");
                SourceConfig::Directory(DirectorySource {
                    path,
                    pattern,
                    poll: self.positive_duration(&k("poll"), &s.poll, DEFAULT_POLL),
                    done,
                    error,
                    max_file: self.size(&k("max_file"), &s.max_file, DEFAULT_MAX_FRAME, MAX_FRAME),
                })
            }
            other => {
                self.err(
                    K::Invalid,
                    &k("type"),
                    kind.span(),
                    format!("unknown source type {other:?}: expected \"mllp\", \"http\", \"directory\" or \"fhir-api\""),
                );
                fallback
            }
        }
    }

    fn required_file(&mut self, key: &str, v: &Text, parent: Range<usize>) -> PathBuf {
        match v {
            Some(f) => self.existing_file(key, f),
            None => {
                let name = key.rsplit('.').next().unwrap_or(key).to_string();
                self.missing(key, parent, &format!("tls needs `{name}`"));
                PathBuf::new()
            }
        }
    }

    fn filter(&mut self, key: &str, raw: &Spanned<RawFilter>) -> Filter {
        let f = raw.get_ref();
        let mut conditions = Vec::new();
        if let Some(when) = &f.when {
            let list = when.get_ref().is_list();
            let items = when.get_ref().items(when.span());
            if items.is_empty() {
                self.err(
                    K::Invalid,
                    &format!("{key}.when"),
                    when.span(),
                    "the list is empty",
                );
            }
            for (i, (text, span)) in items.into_iter().enumerate() {
                let k = if list {
                    format!("{key}.when[{i}]")
                } else {
                    format!("{key}.when")
                };
                match Condition::parse(&text) {
                    Ok(c) => conditions.push(c),
                    Err(e) => self.err(K::Invalid, &k, span, format!("invalid condition: {e}")),
                }
            }
        }
        let filter = Filter {
            types: self.types(&format!("{key}.types"), &f.types),
            structures: self.wildcards(&format!("{key}.structures"), &f.structures),
            versions: self.wildcards(&format!("{key}.versions"), &f.versions),
            sending_applications: self.wildcards(
                &format!("{key}.sending_applications"),
                &f.sending_applications,
            ),
            sending_facilities: self
                .wildcards(&format!("{key}.sending_facilities"), &f.sending_facilities),
            conditions,
        };
        let empty = f.types.is_none()
            && f.structures.is_none()
            && f.versions.is_none()
            && f.sending_applications.is_none()
            && f.sending_facilities.is_none()
            && f.when.is_none();
        if empty {
            self.err(K::Invalid, key, raw.span(), "the filter has no condition");
        }
        filter
    }

    fn transform(&mut self, key: &str, raw: &Spanned<RawTransform>) -> Option<Transform> {
        let t = raw.get_ref();
        let present: Vec<(&str, Range<usize>)> = [
            ("set", t.set.as_ref().map(Spanned::span)),
            ("copy", t.copy.as_ref().map(Spanned::span)),
            ("delete", t.delete.as_ref().map(Spanned::span)),
            ("rename", t.rename.as_ref().map(Spanned::span)),
            ("map", t.map.as_ref().map(Spanned::span)),
            ("add_segment", t.add_segment.as_ref().map(Spanned::span)),
            ("drop_segments", t.drop_segments.as_ref().map(Spanned::span)),
            (
                "rename_segment",
                t.rename_segment.as_ref().map(Spanned::span),
            ),
            ("script", t.script.as_ref().map(Spanned::span)),
        ]
        .into_iter()
        .filter_map(|(n, s)| Some((n, s?)))
        .collect();
        match present.as_slice() {
            [] => {
                self.err(
                    K::Invalid,
                    key,
                    raw.span(),
                    "expected one of set, copy, delete, rename, map, add_segment, drop_segments, rename_segment, script",
                );
                return None;
            }
            [_] => {}
            [_, second, ..] => {
                let names: Vec<&str> = present.iter().map(|(n, _)| *n).collect();
                self.err(
                    K::Invalid,
                    &format!("{key}.{}", second.0),
                    second.1.clone(),
                    format!("one transform per entry, found {}", names.join(" and ")),
                );
                return None;
            }
        }
        let (name, span) = present[0].clone();
        let k = format!("{key}.{name}");
        // A required sub-key: its value, or an error naming it.
        let mut need = |v: &Text, sub: &str| -> Option<String> {
            match v {
                Some(s) => Some(s.get_ref().clone()),
                None => {
                    self.missing(
                        &format!("{k}.{sub}"),
                        span.clone(),
                        &format!("{name} needs `{sub}`"),
                    );
                    None
                }
            }
        };
        let built: Result<Transform, InvalidTransform> = match name {
            "set" => {
                let s = t.set.as_ref()?.get_ref();
                let (path, value) = (need(&s.path, "path"), need(&s.value, "value"));
                Transform::set(&path?, &value?)
            }
            "copy" | "rename" | "rename_segment" => {
                let ft = match name {
                    "copy" => t.copy.as_ref(),
                    "rename" => t.rename.as_ref(),
                    _ => t.rename_segment.as_ref(),
                }?
                .get_ref();
                let (from, to) = (need(&ft.from, "from"), need(&ft.to, "to"));
                let (from, to) = (from?, to?);
                match name {
                    "copy" => Transform::copy(&from, &to),
                    "rename" => Transform::rename(&from, &to),
                    _ => Transform::rename_segment(&from, &to),
                }
            }
            "delete" | "drop_segments" => {
                let v = if name == "delete" {
                    t.delete.as_ref()?
                } else {
                    t.drop_segments.as_ref()?
                };
                let items = v.get_ref().items(v.span());
                let strs: Vec<&str> = items.iter().map(|(s, _)| s.as_str()).collect();
                let r = if name == "delete" {
                    Transform::delete(&strs)
                } else {
                    Transform::drop_segments(&strs)
                };
                if let Err(e) = &r {
                    let (suffix, sp) = match e.item {
                        Some(i) if v.get_ref().is_list() => (format!("[{i}]"), items[i].1.clone()),
                        _ => (String::new(), v.span()),
                    };
                    self.err(K::Invalid, &format!("{k}{suffix}"), sp, e.message.clone());
                    return None;
                }
                r
            }
            "map" => {
                let m = t.map.as_ref()?.get_ref();
                let (path, table) = (need(&m.path, "path"), need(&m.table, "table"));
                let (path, table_name) = (path?, table?);
                let table_span = m.table.as_ref().map_or(span.clone(), Spanned::span);
                let Some(table) = self.tables.get(&table_name).cloned() else {
                    let defined: Vec<&str> = self.tables.keys().map(String::as_str).collect();
                    let hint = if defined.is_empty() {
                        "no [tables] are defined".to_string()
                    } else {
                        format!("defined: {}", defined.join(", "))
                    };
                    self.err(
                        K::Invalid,
                        &format!("{k}.table"),
                        table_span,
                        format!("unknown code table {table_name:?} ({hint})"),
                    );
                    return None;
                };
                let default = m.default.as_ref().map(|d| d.get_ref().as_str());
                Transform::map(&path, table, default)
            }
            "add_segment" => {
                let a = t.add_segment.as_ref()?.get_ref();
                let segment = need(&a.segment, "segment")?;
                let anchor = match (&a.after, &a.before) {
                    (Some(_), Some(b)) => {
                        self.err(
                            K::Invalid,
                            &format!("{k}.before"),
                            b.span(),
                            "give `after` or `before`, not both",
                        );
                        return None;
                    }
                    (Some(x), None) => Anchor::After(x.get_ref().clone()),
                    (None, Some(x)) => Anchor::Before(x.get_ref().clone()),
                    (None, None) => Anchor::End,
                };
                Transform::add_segment(&segment, anchor)
            }
            "script" => {
                let s = t.script.as_ref()?;
                let path = self.existing_file(&k, s);
                if !path.is_file() {
                    return None;
                }
                let text = match std::fs::read(&path) {
                    Ok(bytes) if bytes.len() > crate::transform::script::MAX_SCRIPT_LEN => {
                        Err(format!(
                            "script {} is larger than {}",
                            s.get_ref(),
                            units::format_size(crate::transform::script::MAX_SCRIPT_LEN)
                        ))
                    }
                    Ok(bytes) => String::from_utf8(bytes)
                        .map_err(|_| format!("script {} is not utf-8 text", s.get_ref())),
                    Err(e) => Err(format!(
                        "cannot read script {}: {}",
                        s.get_ref(),
                        super::io_text(&e)
                    )),
                };
                let text = match text {
                    Ok(t) => t,
                    Err(e) => {
                        self.err(K::Io, &k, s.span(), e);
                        return None;
                    }
                };
                let engine = self.scripts.get_or_insert_with(ScriptEngine::new);
                match engine.compile(s.get_ref(), &text) {
                    Ok(script) => Ok(Transform::script(script)),
                    Err(e) => {
                        self.err(
                            K::Script,
                            &k,
                            s.span(),
                            format!("script {} does not compile: {e}", s.get_ref()),
                        );
                        return None;
                    }
                }
            }
            _ => return None,
        };
        match built {
            Ok(t) => Some(t),
            Err(e) => {
                // Point at the sub-key the problem is about when it is written.
                let written = sub_span(t, e.key).unwrap_or(span.clone());
                let key = if e.key.is_empty() {
                    k
                } else {
                    format!("{k}.{}", e.key)
                };
                self.err(K::Invalid, &key, written, e.message);
                None
            }
        }
    }

    fn destination(&mut self, key: &str, raw: &Spanned<RawDestination>) -> DestinationConfig {
        let d = raw.get_ref();
        let k = |name: &str| format!("{key}.{name}");
        let name = match &d.name {
            Some(n) => self.name(&k("name"), n),
            None => {
                self.missing(&k("name"), raw.span(), "every destination needs a name");
                String::new()
            }
        };
        let present: [(&str, Option<Range<usize>>); 10] = [
            ("connect", d.connect.as_ref().map(Spanned::span)),
            ("tls", d.tls.as_ref().map(Spanned::span)),
            (
                "connect_timeout",
                d.connect_timeout.as_ref().map(Spanned::span),
            ),
            ("ack_timeout", d.ack_timeout.as_ref().map(Spanned::span)),
            ("wait_for_ack", d.wait_for_ack.as_ref().map(Spanned::span)),
            ("url", d.url.as_ref().map(Spanned::span)),
            ("headers", d.headers.as_ref().map(Spanned::span)),
            ("timeout", d.timeout.as_ref().map(Spanned::span)),
            ("dir", d.dir.as_ref().map(Spanned::span)),
            ("filename", d.filename.as_ref().map(Spanned::span)),
        ];
        let retry = self.retry(&k("retry"), d.retry.as_ref());
        let parallel = self.int(&k("parallel"), &d.parallel, 1..=MAX_PARALLEL as i64, 1) as usize;
        let fallback = DestinationKind::File(FileDestination {
            dir: PathBuf::new(),
            filename: FilenameTemplate::default(),
        });
        let kind = match &d.kind {
            None => {
                self.missing(
                    &k("type"),
                    raw.span(),
                    "\"mllp\", \"http\", \"file\" or \"fhir-store\"",
                );
                fallback
            }
            Some(t) => match t.get_ref().as_str() {
                "mllp" => {
                    self.not_applicable(
                        key,
                        "mllp destinations",
                        &present,
                        &[
                            "connect",
                            "tls",
                            "connect_timeout",
                            "ack_timeout",
                            "wait_for_ack",
                        ],
                    );
                    let (connect, host) = match &d.connect {
                        Some(c) => match parse_address(c.get_ref(), false) {
                            Ok((host, _)) => (c.get_ref().clone(), host),
                            Err(e) => {
                                self.err(K::Invalid, &k("connect"), c.span(), e);
                                (c.get_ref().clone(), String::new())
                            }
                        },
                        None => {
                            self.missing(
                                &k("connect"),
                                raw.span(),
                                "required by mllp destinations",
                            );
                            (String::new(), String::new())
                        }
                    };
                    let tls = d.tls.as_ref().map(|t| self.client_tls(&k("tls"), t, &host));
                    DestinationKind::Mllp(MllpDestination {
                        connect,
                        tls,
                        connect_timeout: self.positive_duration(
                            &k("connect_timeout"),
                            &d.connect_timeout,
                            DEFAULT_CONNECT_TIMEOUT,
                        ),
                        ack_timeout: self.positive_duration(
                            &k("ack_timeout"),
                            &d.ack_timeout,
                            DEFAULT_ACK_TIMEOUT,
                        ),
                        wait_for_ack: match d.wait_for_ack.as_ref() {
                            None => WaitForAck::AsAsked,
                            Some(w) => match w.get_ref().as_str() {
                                "as-asked" => WaitForAck::AsAsked,
                                "always" => WaitForAck::Always,
                                other => {
                                    self.err(
                                        K::Invalid,
                                        &k("wait_for_ack"),
                                        w.span(),
                                        format!(
                                            "unknown value {other:?}: expected \"as-asked\" or \"always\""
                                        ),
                                    );
                                    WaitForAck::AsAsked
                                }
                            },
                        },
                    })
                }
                "http" => {
                    self.not_applicable(
                        key,
                        "http destinations",
                        &present,
                        &["url", "headers", "timeout"],
                    );
                    let url = self.required_url(&k("url"), &d.url, raw.span(), "http destinations");
                    let headers = self.headers(&k("headers"), d.headers.as_ref());
                    DestinationKind::Http(HttpDestination {
                        url,
                        headers,
                        timeout: self.positive_duration(
                            &k("timeout"),
                            &d.timeout,
                            DEFAULT_HTTP_TIMEOUT,
                        ),
                    })
                }
                "file" => {
                    self.not_applicable(key, "file destinations", &present, &["dir", "filename"]);
                    let dir = match &d.dir {
                        Some(p) if p.get_ref().is_empty() => {
                            self.err(K::Invalid, &k("dir"), p.span(), "the path is empty");
                            PathBuf::new()
                        }
                        Some(p) => self.resolve(p.get_ref()),
                        None => {
                            self.missing(&k("dir"), raw.span(), "required by file destinations");
                            PathBuf::new()
                        }
                    };
                    let filename = match &d.filename {
                        Some(f) => FilenameTemplate::parse(f.get_ref()).unwrap_or_else(|e| {
                            self.err(K::Invalid, &k("filename"), f.span(), e);
                            FilenameTemplate::default()
                        }),
                        None => FilenameTemplate::default(),
                    };
                    DestinationKind::File(FileDestination { dir, filename })
                }
                "fhir-store" => {
                    self.not_applicable(key, "fhir-store destinations", &present, &[]);
                    DestinationKind::FhirStore
                }
                other => {
                    self.err(
                        K::Invalid,
                        &k("type"),
                        t.span(),
                        format!("unknown destination type {other:?}: expected \"mllp\", \"http\", \"file\" or \"fhir-store\""),
                    );
                    fallback
                }
            },
        };
        let format = match d.format.as_ref().map(|f| (f, f.get_ref().as_str())) {
            // The resource store keeps the unified model: it always receives the bundle.
            None | Some((_, "fhir")) if matches!(kind, DestinationKind::FhirStore) => {
                PayloadFormat::Fhir
            }
            Some((f, _)) if matches!(kind, DestinationKind::FhirStore) => {
                self.err(
                    K::Invalid,
                    &k("format"),
                    f.span(),
                    "fhir-store destinations always receive the FHIR bundle: \"fhir\" is the only format",
                );
                PayloadFormat::Fhir
            }
            None | Some((_, "hl7")) => PayloadFormat::Hl7,
            Some((f, "fhir")) => {
                if matches!(kind, DestinationKind::Mllp(_)) {
                    self.err(
                        K::Invalid,
                        &k("format"),
                        f.span(),
                        "mllp destinations carry HL7 v2: \"fhir\" is for http and file destinations",
                    );
                }
                PayloadFormat::Fhir
            }
            Some((f, other)) => {
                self.err(
                    K::Invalid,
                    &k("format"),
                    f.span(),
                    format!("unknown format {other:?}: expected \"hl7\" or \"fhir\""),
                );
                PayloadFormat::Hl7
            }
        };
        DestinationConfig {
            name,
            kind,
            retry,
            parallel,
            format,
        }
    }

    /// A listener's `tls = { cert, key, client_ca }`: the files must exist.
    /// A required `http(s)` URL (an HTTP destination's, a webhook's); empty when missing or
    /// invalid, with the error recorded.
    fn required_url(
        &mut self,
        key: &str,
        value: &Text,
        owner: Range<usize>,
        required_by: &str,
    ) -> String {
        match value {
            Some(u) => {
                if let Err(e) = check_url(u.get_ref()) {
                    self.err(K::Invalid, key, u.span(), e);
                }
                u.get_ref().clone()
            }
            None => {
                self.missing(key, owner, &format!("required by {required_by}"));
                String::new()
            }
        }
    }

    /// HTTP request headers (an HTTP destination's, a webhook's): names are tokens, values
    /// hold no line break. Values may be secrets and are never echoed.
    fn headers(
        &mut self,
        key: &str,
        raw: Option<&Spanned<BTreeMap<String, Spanned<String>>>>,
    ) -> Vec<(String, String)> {
        let mut headers = Vec::new();
        let Some(h) = raw else { return headers };
        for (name, value) in h.get_ref() {
            let hk = format!("{key}.{name}");
            let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
            if name.is_empty() || !name.chars().all(token) {
                self.err(
                    K::Invalid,
                    &hk,
                    value.span(),
                    format!("invalid header name {name:?}"),
                );
            }
            if value.get_ref().contains(['\r', '\n', '\0']) {
                self.err(
                    K::Invalid,
                    &hk,
                    value.span(),
                    "the header value contains a line break or nul",
                );
            }
            headers.push((name.clone(), value.get_ref().clone()));
        }
        headers
    }

    fn server_tls(&mut self, key: &str, t: &Spanned<RawServerTls>) -> ServerTls {
        let t_ref = t.get_ref();
        let cert = self.required_file(&format!("{key}.cert"), &t_ref.cert, t.span());
        let key_file = self.required_file(&format!("{key}.key"), &t_ref.key, t.span());
        let client_ca = t_ref
            .client_ca
            .as_ref()
            .map(|c| self.existing_file(&format!("{key}.client_ca"), c));
        ServerTls {
            cert,
            key: key_file,
            client_ca,
        }
    }

    fn client_tls(&mut self, key: &str, raw: &Spanned<RawClientTls>, host: &str) -> ClientTls {
        let t = raw.get_ref();
        let ca = self.required_file(&format!("{key}.ca"), &t.ca, raw.span());
        let server_name = match &t.server_name {
            Some(n) => {
                if parse_address(&format!("{}:1", n.get_ref()), false).is_err() {
                    self.err(
                        K::Invalid,
                        &format!("{key}.server_name"),
                        n.span(),
                        format!(
                            "invalid server name {:?}: expected a dns name or ip address",
                            n.get_ref()
                        ),
                    );
                }
                n.get_ref().clone()
            }
            None => host.to_string(),
        };
        let client_auth = match (&t.cert, &t.key) {
            (Some(c), Some(k)) => Some((
                self.existing_file(&format!("{key}.cert"), c),
                self.existing_file(&format!("{key}.key"), k),
            )),
            (None, None) => None,
            (Some(_), None) => {
                self.missing(&format!("{key}.key"), raw.span(), "`cert` needs `key`");
                None
            }
            (None, Some(_)) => {
                self.missing(&format!("{key}.cert"), raw.span(), "`key` needs `cert`");
                None
            }
        };
        ClientTls {
            ca,
            server_name,
            client_auth,
        }
    }

    fn retry(&mut self, key: &str, raw: Option<&Spanned<RawRetry>>) -> RetryPolicy {
        let Some(r) = raw else {
            return RetryPolicy::default();
        };
        let r = r.get_ref();
        let initial =
            self.positive_duration(&format!("{key}.initial"), &r.initial, DEFAULT_RETRY_INITIAL);
        let max = self.positive_duration(
            &format!("{key}.max"),
            &r.max,
            DEFAULT_RETRY_MAX.max(initial),
        );
        let max_attempts = self.int(
            &format!("{key}.max_attempts"),
            &r.max_attempts,
            0..=u32::MAX as i64,
            0,
        ) as u32;
        if initial > max {
            let span = r.initial.as_ref().or(r.max.as_ref()).map(Spanned::span);
            if let Some(span) = span {
                self.err(
                    K::Invalid,
                    &format!("{key}.initial"),
                    span,
                    format!(
                        "the first delay ({}) is longer than the longest ({})",
                        format_duration(initial),
                        format_duration(max)
                    ),
                );
            }
        }
        RetryPolicy {
            initial,
            max: max.max(initial),
            max_attempts,
        }
    }

    /// Two enabled listeners may not share a port on overlapping addresses; http sources
    /// need `server.http` and distinct paths; directory sources distinct directories.
    fn listeners(&mut self, raw: &RawConfig, server: &ServerConfig) {
        let mut bound: Vec<Bound> = Vec::new();
        if let (Some(http), Some(s)) = (&server.http, &raw.server)
            && let Some(h) = &s.get_ref().http
            && let Ok((host, port)) = parse_address(http, true)
        {
            bound.push(Bound {
                host,
                port,
                owner: "server.http".to_string(),
                line: self.line(&h.span()),
            });
        }
        let mut http_paths: HashMap<String, (String, usize)> = HashMap::new();
        let mut dirs: HashMap<PathBuf, (String, usize)> = HashMap::new();
        for (i, ch) in raw.channel.iter().enumerate() {
            let ch = ch.get_ref();
            if ch.enabled.as_ref().is_some_and(|e| !*e.get_ref()) {
                continue;
            }
            let owner = format!(
                "channel {:?}",
                ch.name
                    .as_ref()
                    .map_or(String::new(), |n| n.get_ref().clone())
            );
            let Some(src) = &ch.source else { continue };
            let s = src.get_ref();
            let kind = s.kind.as_ref().map(|k| k.get_ref().as_str());
            let key = format!("channel[{i}].source");
            match (kind, &s.listen, &s.path) {
                (Some("mllp"), Some(listen), _) => {
                    let Ok((host, port)) = parse_address(listen.get_ref(), true) else {
                        continue;
                    };
                    if port != 0 {
                        let clash = bound.iter().find(|b| {
                            b.port == port && (b.host == host || is_any(&b.host) || is_any(&host))
                        });
                        if let Some(b) = clash {
                            let message = format!(
                                "port {port} is already used by {} (line {})",
                                b.owner, b.line
                            );
                            self.err(
                                K::Conflict,
                                &format!("{key}.listen"),
                                listen.span(),
                                message,
                            );
                        }
                    }
                    let line = self.line(&listen.span());
                    bound.push(Bound {
                        host,
                        port,
                        owner,
                        line,
                    });
                }
                (Some("http"), _, Some(path)) => {
                    if server.http.is_none() {
                        self.err(
                            K::Invalid,
                            &format!("{key}.path"),
                            path.span(),
                            "http sources are served on server.http, which is not set",
                        );
                    }
                    let line = self.line(&path.span());
                    if let Some((first, first_line)) = http_paths.get(path.get_ref()) {
                        let message = format!(
                            "url path {:?} is already used by {first} (line {first_line})",
                            path.get_ref()
                        );
                        self.err(K::Conflict, &format!("{key}.path"), path.span(), message);
                    } else {
                        http_paths.insert(path.get_ref().clone(), (owner, line));
                    }
                }
                (Some("directory"), _, Some(path)) => {
                    let dir = self.resolve(path.get_ref());
                    let dir = dir.canonicalize().unwrap_or(dir);
                    let line = self.line(&path.span());
                    if let Some((first, first_line)) = dirs.get(&dir) {
                        let message =
                            format!("directory is already watched by {first} (line {first_line})");
                        self.err(K::Conflict, &format!("{key}.path"), path.span(), message);
                    } else {
                        dirs.insert(dir, (owner, line));
                    }
                }
                _ => {}
            }
        }
    }
}

/// `0.0.0.0` and `::` listen on every address.
fn is_any(host: &str) -> bool {
    host == "0.0.0.0" || host == "::"
}

/// The span of sub-key `key` of the one transform set in `t`, when written.
fn sub_span(t: &RawTransform, key: &str) -> Option<Range<usize>> {
    let from_to = |ft: &Option<Spanned<RawFromTo>>| {
        ft.as_ref().and_then(|v| match key {
            "from" => v.get_ref().from.as_ref().map(Spanned::span),
            "to" => v.get_ref().to.as_ref().map(Spanned::span),
            _ => None,
        })
    };
    let set = t.set.as_ref().and_then(|v| match key {
        "path" => v.get_ref().path.as_ref().map(Spanned::span),
        "value" => v.get_ref().value.as_ref().map(Spanned::span),
        _ => None,
    });
    let map = t.map.as_ref().and_then(|v| match key {
        "path" => v.get_ref().path.as_ref().map(Spanned::span),
        "table" => v.get_ref().table.as_ref().map(Spanned::span),
        "default" => v.get_ref().default.as_ref().map(Spanned::span),
        _ => None,
    });
    let add = t.add_segment.as_ref().and_then(|v| match key {
        "segment" => v.get_ref().segment.as_ref().map(Spanned::span),
        "after" => v.get_ref().after.as_ref().map(Spanned::span),
        "before" => v.get_ref().before.as_ref().map(Spanned::span),
        _ => None,
    });
    set.or(map)
        .or(add)
        .or_else(|| from_to(&t.copy))
        .or_else(|| from_to(&t.rename))
        .or_else(|| from_to(&t.rename_segment))
}

/// `http://host[:port][/path]` or `https://...`, checked for shape only.
fn check_url(url: &str) -> Result<(), String> {
    let bad = |why: &str| format!("invalid url {url:?}: {why}");
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| bad("expected http:// or https://"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return Err(bad("credentials in the url would be logged: use `headers`"));
    }
    let with_port = if authority.starts_with('[') {
        if authority.contains("]:") {
            authority.to_string()
        } else {
            format!("{authority}:1")
        }
    } else if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:1")
    };
    parse_address(&with_port, false).map_err(|_| bad("expected a host and an optional port"))?;
    if url.contains(char::is_whitespace) {
        return Err(bad("contains whitespace"));
    }
    Ok(())
}

/// Longest client id: ids are names or URLs.
const MAX_CLIENT_ID_LEN: usize = 255;

fn check_client_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("the client id is empty".to_string());
    }
    if id.len() > MAX_CLIENT_ID_LEN {
        return Err(format!(
            "the client id is longer than {MAX_CLIENT_ID_LEN} characters"
        ));
    }
    if id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("invalid client id {id:?}: contains whitespace"));
    }
    Ok(())
}

/// A SMART system scope: `system/` then a resource type or `*`, a dot, and `read`, `write` or
/// `*` (v1) or some of `cruds` in that order (v2).
fn check_scope(scope: &str) -> Result<(), String> {
    let bad = || {
        format!(
            "invalid scope {scope:?}: expected system/TYPE.PERMISSIONS, e.g. \"system/Observation.read\" or \"system/*.rs\""
        )
    };
    let rest = scope.strip_prefix("system/").ok_or_else(bad)?;
    let (resource, permissions) = rest.split_once('.').ok_or_else(bad)?;
    let resource_ok = resource == "*"
        || (resource.starts_with(|c: char| c.is_ascii_uppercase())
            && resource.bytes().all(|b| b.is_ascii_alphanumeric()));
    let v2_ok = !permissions.is_empty() && {
        let mut order = "cruds".chars();
        permissions.chars().all(|p| order.any(|o| o == p))
    };
    if resource_ok && (matches!(permissions, "read" | "write" | "*") || v2_ok) {
        Ok(())
    } else {
        Err(bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes() {
        for ok in [
            "system/Observation.read",
            "system/*.write",
            "system/*.*",
            "system/Patient.rs",
            "system/*.cruds",
            "system/Encounter.c",
        ] {
            assert_eq!(check_scope(ok), Ok(()), "{ok}");
        }
        for bad in [
            "patient/Observation.read",
            "system/Observation",
            "system/observation.read",
            "system/Observation.sr",
            "system/Observation.rr",
            "system/Observation.",
            "system/Obs-ervation.read",
            "system/Observation.rs?category=lab",
        ] {
            assert!(check_scope(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn urls() {
        for ok in [
            "http://127.0.0.1:8080/hook",
            "https://hooks.example.org/x?y=1",
            "https://[::1]:443/",
            "http://host",
        ] {
            assert_eq!(check_url(ok), Ok(()), "{ok}");
        }
        for (url, why) in [
            ("ftp://x", "expected http:// or https://"),
            ("http://", "expected a host and an optional port"),
            ("http://h:99999/", "expected a host and an optional port"),
            (
                "https://user:pw@h/",
                "credentials in the url would be logged: use `headers`",
            ),
            ("http://h/a b", "contains whitespace"),
        ] {
            assert_eq!(check_url(url), Err(format!("invalid url {url:?}: {why}")));
        }
    }
}
