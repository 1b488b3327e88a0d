//! `[alerts]`, `[[notifier]]` and `[[alert]]`: checked after the channels, since rules name
//! them and their destinations.

use super::*;
use crate::config::alerts::{
    AlertRule, AlertsConfig, Condition, DEFAULT_EVALUATE_EVERY, DEFAULT_MIN_MESSAGES,
    DEFAULT_NOTIFY_RETRIES, DEFAULT_NOTIFY_TIMEOUT, DEFAULT_QUANTILE, DEFAULT_RENOTIFY,
    EmailNotifier, MAX_NOTIFY_RETRIES, MAX_RULES, NotifierConfig, NotifierKind, Schedule, Severity,
    SmtpSecurity, WebhookNotifier,
};

/// Longest window a rule may look back over: the evaluator keeps that much history of the
/// counters (one sample per evaluation), and an hour is what the monitor keeps too.
const MAX_WINDOW: Duration = Duration::from_secs(60 * 60);

/// Longest `silence` window: a feed quiet over a long weekend is worth an alert; beyond a
/// week the rule means something else.
const MAX_SILENCE: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// Shortest evaluation interval: below this the evaluator would spin for nothing.
const MIN_EVALUATE_EVERY: Duration = Duration::from_millis(10);

/// Default window of the kinds that look back over one (all but `silence`, where the window
/// is the threshold and must be given).
const DEFAULT_WINDOW: Duration = Duration::from_secs(5 * 60);

/// Keys of `[[alert]]` that apply to each kind (besides the common ones).
fn kind_keys(kind: &str) -> &'static [&'static str] {
    match kind {
        "error_rate" => &["window", "threshold", "min_messages"],
        "queue_depth" => &["destination", "max"],
        "oldest_age" => &["destination", "max_age"],
        "silence" => &["window", "days", "hours", "timezone"],
        "destination_down" => &["destination", "failures", "no_success_for"],
        "ack_time" => &[
            "destination",
            "window",
            "quantile",
            "objective",
            "min_messages",
        ],
        _ => &["window"],
    }
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl Validator<'_> {
    pub(super) fn alerts(&mut self, raw: &RawConfig, channels: &[ChannelConfig]) -> AlertsConfig {
        let evaluate_every = match raw.alerts.as_ref() {
            None => DEFAULT_EVALUATE_EVERY,
            Some(a) => {
                let v = &a.get_ref().evaluate_every;
                let d = self.positive_duration("alerts.evaluate_every", v, DEFAULT_EVALUATE_EVERY);
                if d < MIN_EVALUATE_EVERY {
                    if let Some(v) = v {
                        self.err(
                            K::Invalid,
                            "alerts.evaluate_every",
                            v.span(),
                            format!("must be at least {}", format_duration(MIN_EVALUATE_EVERY)),
                        );
                    }
                    DEFAULT_EVALUATE_EVERY
                } else {
                    d
                }
            }
        };
        for (what, spans) in [
            ("notifier", raw.notifier.get(MAX_RULES).map(Spanned::span)),
            ("alert", raw.alert.get(MAX_RULES).map(Spanned::span)),
        ] {
            if let Some(span) = spans {
                self.err(
                    K::Invalid,
                    what,
                    span,
                    format!("at most {MAX_RULES} entries"),
                );
            }
        }
        let mut notifiers = Vec::new();
        let mut names: HashMap<String, usize> = HashMap::new();
        for (i, n) in raw.notifier.iter().enumerate() {
            let key = format!("notifier[{i}]");
            if let Some(nc) = self.notifier(&key, n) {
                let name = n.get_ref().name.as_ref().expect("a notifier has a name");
                let line = self.line(&name.span());
                match names.get(&nc.name) {
                    Some(first) => self.err(
                        K::Conflict,
                        &format!("{key}.name"),
                        name.span(),
                        format!(
                            "duplicate notifier name {:?} (first at line {first})",
                            nc.name
                        ),
                    ),
                    None => {
                        names.insert(nc.name.clone(), line);
                    }
                }
                notifiers.push(nc);
            }
        }
        let mut notifier_names: Vec<String> = Vec::new();
        for n in &notifiers {
            if !notifier_names.contains(&n.name) {
                notifier_names.push(n.name.clone());
            }
        }
        let mut rules = Vec::new();
        let mut rule_names: HashMap<String, usize> = HashMap::new();
        for (i, a) in raw.alert.iter().enumerate() {
            let key = format!("alert[{i}]");
            let rule = self.rule(&key, a, evaluate_every, &notifier_names, channels);
            if let Some(name) = &a.get_ref().name {
                let line = self.line(&name.span());
                match rule_names.get(name.get_ref()) {
                    Some(first) => self.err(
                        K::Conflict,
                        &format!("{key}.name"),
                        name.span(),
                        format!(
                            "duplicate alert name {:?} (first at line {first})",
                            name.get_ref()
                        ),
                    ),
                    None => {
                        rule_names.insert(name.get_ref().clone(), line);
                    }
                }
            }
            if let Some(rule) = rule {
                rules.push(rule);
            }
        }
        AlertsConfig {
            evaluate_every,
            notifiers,
            rules,
        }
    }

    /// One notifier; `None` without a name (reported).
    fn notifier(&mut self, key: &str, raw: &Spanned<RawNotifier>) -> Option<NotifierConfig> {
        let n = raw.get_ref();
        let k = |name: &str| format!("{key}.{name}");
        let name = match &n.name {
            Some(v) => self.name(&k("name"), v),
            None => {
                self.missing(&k("name"), raw.span(), "every notifier needs a name");
                return None;
            }
        };
        let present: [(&str, Option<Range<usize>>); 13] = [
            ("url", n.url.as_ref().map(Spanned::span)),
            ("headers", n.headers.as_ref().map(Spanned::span)),
            ("timeout", n.timeout.as_ref().map(Spanned::span)),
            ("retries", n.retries.as_ref().map(Spanned::span)),
            ("host", n.host.as_ref().map(Spanned::span)),
            ("port", n.port.as_ref().map(Spanned::span)),
            ("security", n.security.as_ref().map(Spanned::span)),
            ("username", n.username.as_ref().map(Spanned::span)),
            ("password", n.password.as_ref().map(Spanned::span)),
            ("password_env", n.password_env.as_ref().map(Spanned::span)),
            ("from", n.from.as_ref().map(Spanned::span)),
            ("to", n.to.as_ref().map(Spanned::span)),
            (
                "subject_prefix",
                n.subject_prefix.as_ref().map(Spanned::span),
            ),
        ];
        let Some(kind) = &n.kind else {
            self.missing(&k("type"), raw.span(), "\"webhook\", \"email\" or \"log\"");
            return Some(NotifierConfig {
                name,
                kind: NotifierKind::Log,
            });
        };
        let retries = |v: &mut Self| {
            v.int(
                &k("retries"),
                &n.retries,
                0..=MAX_NOTIFY_RETRIES as i64,
                DEFAULT_NOTIFY_RETRIES as i64,
            ) as u32
        };
        let kind = match kind.get_ref().as_str() {
            "webhook" => {
                self.not_applicable(
                    key,
                    "webhook notifiers",
                    &present,
                    &["url", "headers", "timeout", "retries"],
                );
                let url = self.required_url(&k("url"), &n.url, raw.span(), "webhook notifiers");
                let headers = self.headers(&k("headers"), n.headers.as_ref());
                NotifierKind::Webhook(WebhookNotifier {
                    url,
                    headers,
                    timeout: self.positive_duration(
                        &k("timeout"),
                        &n.timeout,
                        DEFAULT_NOTIFY_TIMEOUT,
                    ),
                    retries: retries(self),
                })
            }
            "email" => {
                self.not_applicable(
                    key,
                    "email notifiers",
                    &present,
                    &[
                        "timeout",
                        "retries",
                        "host",
                        "port",
                        "security",
                        "username",
                        "password",
                        "password_env",
                        "from",
                        "to",
                        "subject_prefix",
                    ],
                );
                let retries = retries(self);
                NotifierKind::Email(self.email(key, raw, retries))
            }
            "log" => {
                self.not_applicable(key, "log notifiers", &present, &[]);
                NotifierKind::Log
            }
            other => {
                self.err(
                    K::Invalid,
                    &k("type"),
                    kind.span(),
                    format!(
                        "unknown notifier type {other:?}: expected \"webhook\", \"email\" or \"log\""
                    ),
                );
                NotifierKind::Log
            }
        };
        Some(NotifierConfig { name, kind })
    }

    fn email(&mut self, key: &str, raw: &Spanned<RawNotifier>, retries: u32) -> EmailNotifier {
        let n = raw.get_ref();
        let k = |name: &str| format!("{key}.{name}");
        let host = match &n.host {
            Some(h) => {
                if parse_address(&format!("{}:1", h.get_ref()), false).is_err()
                    || h.get_ref().contains(':')
                {
                    self.err(
                        K::Invalid,
                        &k("host"),
                        h.span(),
                        format!("invalid host name {:?}", h.get_ref()),
                    );
                }
                h.get_ref().clone()
            }
            None => {
                self.missing(&k("host"), raw.span(), "the SMTP server of email notifiers");
                String::new()
            }
        };
        let security = match &n.security {
            None => SmtpSecurity::StartTls,
            Some(s) => match s.get_ref().as_str() {
                "none" => SmtpSecurity::None,
                "starttls" => SmtpSecurity::StartTls,
                "tls" => SmtpSecurity::Tls,
                other => {
                    self.err(
                        K::Invalid,
                        &k("security"),
                        s.span(),
                        format!(
                            "unknown security {other:?}: expected \"none\", \"starttls\" or \"tls\""
                        ),
                    );
                    SmtpSecurity::StartTls
                }
            },
        };
        let port = self.int(
            &k("port"),
            &n.port,
            1..=65535,
            security.default_port() as i64,
        ) as u16;
        let username = n.username.as_ref().map(|u| u.get_ref().clone());
        let password = match (&n.password, &n.password_env) {
            (Some(p), Some(e)) => {
                self.err(
                    K::Conflict,
                    &k("password_env"),
                    e.span(),
                    "give `password` or `password_env`, not both",
                );
                Some(p.get_ref().clone())
            }
            (Some(p), None) => Some(p.get_ref().clone()),
            (None, Some(e)) => match std::env::var(e.get_ref()) {
                Ok(v) if !v.is_empty() => Some(v),
                _ => {
                    self.err(
                        K::Invalid,
                        &k("password_env"),
                        e.span(),
                        format!("the environment variable {:?} is not set", e.get_ref()),
                    );
                    None
                }
            },
            (None, None) => None,
        };
        if let Some(span) = n
            .password
            .as_ref()
            .map(Spanned::span)
            .or_else(|| n.password_env.as_ref().map(Spanned::span))
            && username.is_none()
        {
            self.err(
                K::Invalid,
                &k("username"),
                span,
                "a password needs a `username` to sign in with",
            );
        }
        let mailbox = |v: &mut Self, key: &str, s: &Spanned<String>| {
            if s.get_ref().parse::<lettre::message::Mailbox>().is_err() {
                v.err(
                    K::Invalid,
                    key,
                    s.span(),
                    format!(
                        "invalid e-mail address {:?}: expected name@domain or \"Name <name@domain>\"",
                        s.get_ref()
                    ),
                );
            }
            s.get_ref().clone()
        };
        let from = match &n.from {
            Some(f) => mailbox(self, &k("from"), f),
            None => {
                self.missing(&k("from"), raw.span(), "the sender of email notifiers");
                String::new()
            }
        };
        let mut to = Vec::new();
        match &n.to {
            None => self.missing(&k("to"), raw.span(), "the recipients of email notifiers"),
            Some(list) if list.get_ref().is_empty() => self.err(
                K::Invalid,
                &k("to"),
                list.span(),
                "the list is empty (name at least one recipient)",
            ),
            Some(list) => {
                for (i, item) in list.get_ref().iter().enumerate() {
                    to.push(mailbox(self, &format!("{}[{i}]", k("to")), item));
                }
            }
        }
        let subject_prefix = match &n.subject_prefix {
            Some(p) if p.get_ref().contains(['\r', '\n']) => {
                self.err(
                    K::Invalid,
                    &k("subject_prefix"),
                    p.span(),
                    "contains a line break",
                );
                String::new()
            }
            Some(p) => p.get_ref().clone(),
            None => "[causeway]".to_string(),
        };
        EmailNotifier {
            host,
            port,
            security,
            username,
            password,
            from,
            to,
            subject_prefix,
            timeout: self.positive_duration(&k("timeout"), &n.timeout, DEFAULT_NOTIFY_TIMEOUT),
            retries,
        }
    }

    /// A window-like duration: present (or defaulted), above 0, at most `max`.
    fn window(
        &mut self,
        key: &str,
        v: &Text,
        default: Option<Duration>,
        parent: Range<usize>,
        max: Duration,
        why_missing: &str,
    ) -> Duration {
        let fallback = default.unwrap_or(DEFAULT_WINDOW);
        if v.is_none() {
            if default.is_none() {
                self.missing(key, parent, why_missing);
            }
            return fallback;
        }
        let d = self.positive_duration(key, v, fallback);
        if d > max {
            if let Some(v) = v {
                self.err(
                    K::Invalid,
                    key,
                    v.span(),
                    format!("must be at most {}", format_duration(max)),
                );
            }
            return fallback;
        }
        d
    }

    fn rule(
        &mut self,
        key: &str,
        raw: &Spanned<RawAlert>,
        evaluate_every: Duration,
        notifiers: &[String],
        channels: &[ChannelConfig],
    ) -> Option<AlertRule> {
        let a = raw.get_ref();
        let k = |name: &str| format!("{key}.{name}");
        let name = match &a.name {
            Some(v) => self.name(&k("name"), v),
            None => {
                self.missing(&k("name"), raw.span(), "every alert needs a name");
                String::new()
            }
        };
        let severity = match &a.severity {
            None => Severity::default(),
            Some(s) => Severity::parse(s.get_ref()).unwrap_or_else(|| {
                self.err(
                    K::Invalid,
                    &k("severity"),
                    s.span(),
                    format!(
                        "unknown severity {:?}: expected {}",
                        s.get_ref(),
                        quoted(&Severity::NAMES)
                    ),
                );
                Severity::default()
            }),
        };
        let pending_for = self.duration(&k("for"), &a.pending_for, Duration::ZERO);
        // Queue gauges are sampled once a second while counters are read live: a recovery must
        // be seen across at least one gauge refresh, or a stale gauge beside a fresh counter
        // could clear and raise the same alert again.
        let clear_for = self.duration(
            &k("clear_for"),
            &a.clear_for,
            evaluate_every.max(crate::monitor::SAMPLE_EVERY),
        );
        let renotify = match &a.renotify {
            None => Some(DEFAULT_RENOTIFY),
            Some(r) if r.get_ref() == "off" => None,
            Some(_) => self
                .opt_duration(&k("renotify"), &a.renotify)
                .filter(|d| !d.is_zero()),
        };
        let mut notify = Vec::new();
        for (i, n) in self.list(&k("notify"), &a.notify).iter().enumerate() {
            if !notifiers.contains(n.get_ref()) {
                let known = if notifiers.is_empty() {
                    "no [[notifier]] is defined".to_string()
                } else {
                    format!("defined: {}", notifiers.join(", "))
                };
                self.err(
                    K::Invalid,
                    &format!("{}[{i}]", k("notify")),
                    n.span(),
                    format!("unknown notifier {:?} ({known})", n.get_ref()),
                );
            }
            notify.push(n.get_ref().clone());
        }
        let mut channel_known = true;
        let channel = a.channel.as_ref().map(|c| {
            if !channels.iter().any(|ch| &ch.name == c.get_ref()) {
                channel_known = false;
                self.err(
                    K::Invalid,
                    &k("channel"),
                    c.span(),
                    format!("unknown channel {:?}", c.get_ref()),
                );
            }
            c.get_ref().clone()
        });
        let destination = a.destination.as_ref().map(|d| {
            let in_scope = channels
                .iter()
                .filter(|ch| channel.as_ref().is_none_or(|c| &ch.name == c))
                .any(|ch| ch.destinations.iter().any(|dest| &dest.name == d.get_ref()));
            let applies = a
                .kind
                .as_ref()
                .is_none_or(|k| kind_keys(k.get_ref()).contains(&"destination"));
            if !in_scope && channel_known && applies {
                let message = match &channel {
                    Some(c) => format!("channel {c:?} has no destination {:?}", d.get_ref()),
                    None => format!("no channel has a destination {:?}", d.get_ref()),
                };
                self.err(K::Invalid, &k("destination"), d.span(), message);
            }
            d.get_ref().clone()
        });

        let Some(kind) = &a.kind else {
            self.missing(
                &k("type"),
                raw.span(),
                &format!("one of {}", quoted(&Condition::KINDS)),
            );
            return None;
        };
        let kind_name = kind.get_ref().as_str();
        if !Condition::KINDS.contains(&kind_name) {
            self.err(
                K::Invalid,
                &k("type"),
                kind.span(),
                format!(
                    "unknown alert type {kind_name:?}: expected {}",
                    quoted(&Condition::KINDS)
                ),
            );
            return None;
        }
        let present: [(&str, Option<Range<usize>>); 13] = [
            ("destination", a.destination.as_ref().map(Spanned::span)),
            ("window", a.window.as_ref().map(Spanned::span)),
            ("threshold", a.threshold.as_ref().map(Spanned::span)),
            ("min_messages", a.min_messages.as_ref().map(Spanned::span)),
            ("max", a.max.as_ref().map(Spanned::span)),
            ("max_age", a.max_age.as_ref().map(Spanned::span)),
            ("days", a.days.as_ref().map(Spanned::span)),
            ("hours", a.hours.as_ref().map(Spanned::span)),
            ("timezone", a.timezone.as_ref().map(Spanned::span)),
            ("failures", a.failures.as_ref().map(Spanned::span)),
            (
                "no_success_for",
                a.no_success_for.as_ref().map(Spanned::span),
            ),
            ("quantile", a.quantile.as_ref().map(Spanned::span)),
            ("objective", a.objective.as_ref().map(Spanned::span)),
        ];
        self.not_applicable(
            key,
            &format!("{kind_name} alerts"),
            &present,
            kind_keys(kind_name),
        );
        let span = raw.span();
        let min_messages = |v: &mut Self| {
            v.int(
                &k("min_messages"),
                &a.min_messages,
                1..=i64::MAX,
                DEFAULT_MIN_MESSAGES as i64,
            ) as u64
        };
        let condition = match kind_name {
            "error_rate" => {
                let window = self.window(
                    &k("window"),
                    &a.window,
                    Some(DEFAULT_WINDOW),
                    span.clone(),
                    MAX_WINDOW,
                    "",
                );
                let threshold = match &a.threshold {
                    None => {
                        self.missing(
                            &k("threshold"),
                            span.clone(),
                            "the error rate above which the alert fires, from 0 to 1",
                        );
                        1.0
                    }
                    Some(t) => {
                        let v = *t.get_ref();
                        if !(0.0..1.0).contains(&v) {
                            self.err(
                                K::Invalid,
                                &k("threshold"),
                                t.span(),
                                "must be from 0 to below 1 (a share of the messages received: 0.05 is 5%)",
                            );
                        }
                        v
                    }
                };
                Condition::ErrorRate {
                    window,
                    threshold,
                    min_messages: min_messages(self),
                }
            }
            "queue_depth" => {
                let max = match &a.max {
                    None => {
                        self.missing(
                            &k("max"),
                            span.clone(),
                            "the queue depth above which the alert fires",
                        );
                        0
                    }
                    Some(_) => self.int(&k("max"), &a.max, 0..=i64::MAX, 0) as u64,
                };
                Condition::QueueDepth { max }
            }
            "oldest_age" => {
                let max_age = match &a.max_age {
                    None => {
                        self.missing(
                            &k("max_age"),
                            span.clone(),
                            "the age of the oldest waiting message above which the alert fires",
                        );
                        Duration::ZERO
                    }
                    Some(_) => self.positive_duration(&k("max_age"), &a.max_age, Duration::MAX),
                };
                Condition::OldestAge { max_age }
            }
            "silence" => {
                let window = self.window(
                    &k("window"),
                    &a.window,
                    None,
                    span.clone(),
                    MAX_SILENCE,
                    "how long without a message before the alert fires",
                );
                let schedule = self.schedule(key, a);
                Condition::Silence { window, schedule }
            }
            "destination_down" => {
                let failures = a
                    .failures
                    .as_ref()
                    .map(|_| self.int(&k("failures"), &a.failures, 1..=i64::MAX, 1) as u64);
                let no_success_for = a.no_success_for.as_ref().map(|_| {
                    self.positive_duration(&k("no_success_for"), &a.no_success_for, Duration::MAX)
                });
                if failures.is_none() && no_success_for.is_none() {
                    self.missing(
                        &k("failures"),
                        span.clone(),
                        "`failures` (consecutive failed attempts) or `no_success_for` (a duration), or both",
                    );
                }
                Condition::DestinationDown {
                    failures,
                    no_success_for,
                }
            }
            "ack_time" => {
                let window = self.window(
                    &k("window"),
                    &a.window,
                    Some(DEFAULT_WINDOW),
                    span.clone(),
                    MAX_WINDOW,
                    "",
                );
                let quantile = match &a.quantile {
                    None => DEFAULT_QUANTILE,
                    Some(q) => {
                        let v = *q.get_ref();
                        if !(v > 0.0 && v < 1.0) {
                            self.err(
                                K::Invalid,
                                &k("quantile"),
                                q.span(),
                                "must be between 0 and 1 (0.95 is the 95th percentile)",
                            );
                        }
                        v
                    }
                };
                let objective = match &a.objective {
                    None => {
                        self.missing(
                            &k("objective"),
                            span.clone(),
                            "the time-to-ACK above which the alert fires, e.g. \"2s\"",
                        );
                        Duration::ZERO
                    }
                    Some(_) => self.positive_duration(&k("objective"), &a.objective, Duration::MAX),
                };
                Condition::AckTime {
                    window,
                    quantile,
                    objective,
                    min_messages: a.min_messages.as_ref().map_or(1, |_| min_messages(self)),
                }
            }
            // The kinds that take a window and nothing else.
            _ => {
                let window = self.window(
                    &k("window"),
                    &a.window,
                    Some(DEFAULT_WINDOW),
                    span.clone(),
                    MAX_WINDOW,
                    "",
                );
                match kind_name {
                    "unmapped_code" => Condition::UnmappedCode { window },
                    "drift" => Condition::Drift { window },
                    _ => Condition::BadInput { window },
                }
            }
        };
        Some(AlertRule {
            name,
            condition,
            channel,
            destination,
            pending_for,
            clear_for,
            notify,
            renotify,
            severity,
        })
    }

    /// `days`, `hours` and `timezone` of a `silence` rule; `None` when none is given.
    fn schedule(&mut self, key: &str, a: &RawAlert) -> Option<Schedule> {
        if a.days.is_none() && a.hours.is_none() && a.timezone.is_none() {
            return None;
        }
        let k = |name: &str| format!("{key}.{name}");
        let mut days = [a.days.is_none(); 7];
        for (i, d) in self.list(&k("days"), &a.days).iter().enumerate() {
            match DAYS.iter().position(|n| n == d.get_ref()) {
                Some(p) => days[p] = true,
                None => self.err(
                    K::Invalid,
                    &format!("{}[{i}]", k("days")),
                    d.span(),
                    format!("unknown day {:?}: expected {}", d.get_ref(), quoted(&DAYS)),
                ),
            }
        }
        let hours = a
            .hours
            .as_ref()
            .and_then(|h| match parse_hours(h.get_ref()) {
                Ok(v) => Some(v),
                Err(e) => {
                    self.err(K::Invalid, &k("hours"), h.span(), e);
                    None
                }
            });
        let timezone = match &a.timezone {
            None => jiff::tz::TimeZone::UTC,
            Some(t) => match parse_timezone(t.get_ref()) {
                Ok(tz) => tz,
                Err(e) => {
                    self.err(K::Invalid, &k("timezone"), t.span(), e);
                    jiff::tz::TimeZone::UTC
                }
            },
        };
        Some(Schedule {
            days,
            hours,
            timezone,
        })
    }
}

/// `"a", "b" or "c"`.
fn quoted(names: &[&str]) -> String {
    let q: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
    match q.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => q.join(""),
    }
}

/// `"07:00-19:00"` to minutes after midnight; the two differ.
fn parse_hours(text: &str) -> Result<(u16, u16), String> {
    let bad = || format!("invalid hours {text:?}: expected \"HH:MM-HH:MM\", e.g. \"07:00-19:00\"");
    let (a, b) = text.split_once('-').ok_or_else(bad)?;
    let minute = |t: &str| -> Option<u16> {
        let (h, m) = t.trim().split_once(':')?;
        if h.len() != 2 || m.len() != 2 {
            return None;
        }
        let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
        // 24:00 closes a span at midnight.
        (h < 24 && m < 60 || h == 24 && m == 0).then_some(h * 60 + m)
    };
    let (start, end) = (minute(a).ok_or_else(bad)?, minute(b).ok_or_else(bad)?);
    if start == end {
        return Err(format!(
            "invalid hours {text:?}: the span is empty (leave `hours` out for all day)"
        ));
    }
    Ok((start, end))
}

/// `"UTC"`, an offset such as `"+01:00"`, or an IANA zone name such as `"Europe/Paris"`
/// (from the system's time zone database).
fn parse_timezone(text: &str) -> Result<jiff::tz::TimeZone, String> {
    if text == "UTC" || text == "Z" {
        return Ok(jiff::tz::TimeZone::UTC);
    }
    if let Some(rest) = text.strip_prefix(['+', '-']) {
        let sign: i32 = if text.starts_with('-') { -1 } else { 1 };
        let parsed = rest.split_once(':').and_then(|(h, m)| {
            let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
            (h.to_string().len() <= 2 && h <= 18 && m < 60).then_some(h * 3600 + m * 60)
        });
        return parsed
            .and_then(|secs| jiff::tz::Offset::from_seconds(sign * secs).ok())
            .map(jiff::tz::TimeZone::fixed)
            .ok_or_else(|| {
                format!("invalid time zone offset {text:?}: expected \"+HH:MM\" or \"-HH:MM\"")
            });
    }
    jiff::tz::TimeZone::get(text).map_err(|_| {
        format!("unknown time zone {text:?}: expected \"UTC\", an offset such as \"+01:00\", or a name such as \"Europe/Paris\"")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_and_zones() {
        assert_eq!(parse_hours("07:00-19:00"), Ok((420, 1140)));
        assert_eq!(parse_hours("22:00-06:30"), Ok((1320, 390)));
        assert_eq!(parse_hours("00:00-24:00"), Ok((0, 1440)));
        for bad in ["7-19", "07:00", "25:00-26:00", "07:60-08:00", "7:00-19:00"] {
            assert!(parse_hours(bad).is_err(), "{bad}");
        }
        assert!(parse_hours("08:00-08:00").unwrap_err().contains("empty"));
        assert_eq!(parse_timezone("UTC").unwrap(), jiff::tz::TimeZone::UTC);
        let plus_one = parse_timezone("+01:00").unwrap();
        let t: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(plus_one.to_datetime(t).hour(), 1);
        assert_eq!(parse_timezone("-05:30").unwrap().to_datetime(t).hour(), 18);
        assert!(parse_timezone("+1").is_err());
        assert!(parse_timezone("Mars/Olympus").is_err());
        assert_eq!(quoted(&["a", "b", "c"]), "\"a\", \"b\" or \"c\"");
    }
}
