//! `[alerts]`, `[[notifier]]` and `[[alert]]` once validated: the rules the evaluator in
//! [`crate::alerts`] runs and the notifiers it sends to.
//!
//! Every name a rule refers to (notifiers, channels, destinations) exists; every threshold its
//! kind needs is present; durations, quantiles and ratios are in range.

use std::fmt;
use std::time::Duration;

/// Default interval between two evaluations of the rules: alert conditions are about minutes
/// (a silent feed, a growing queue), and ten seconds costs nothing while noticing them promptly.
pub const DEFAULT_EVALUATE_EVERY: Duration = Duration::from_secs(10);

/// Default re-notification interval of a firing alert: a reminder an hour later that it still
/// holds, not a page every evaluation.
pub const DEFAULT_RENOTIFY: Duration = Duration::from_secs(60 * 60);

/// Default least messages in the window before an error rate or a time-to-ACK quantile means
/// anything: one bad message out of two is not an outage.
pub const DEFAULT_MIN_MESSAGES: u64 = 10;

/// Default quantile of an `ack_time` rule (the 95th percentile).
pub const DEFAULT_QUANTILE: f64 = 0.95;

/// Default timeout of one notification attempt (an HTTP POST, an SMTP session).
pub const DEFAULT_NOTIFY_TIMEOUT: Duration = Duration::from_secs(10);

/// Default attempts after the first failed one: with delays doubling from one second, six
/// retries span about a minute, long enough for a receiver's restart.
pub const DEFAULT_NOTIFY_RETRIES: u32 = 6;

/// Most retries that may be configured: notices are ordered per notifier, so a notifier that
/// keeps failing must not hold the ones behind it for ever.
pub const MAX_NOTIFY_RETRIES: u32 = 20;

/// Most `[[alert]]` rules and `[[notifier]]`s: each rule is evaluated for every channel or
/// destination every interval; a few hundred is far beyond a real deployment.
pub const MAX_RULES: usize = 500;

/// The alerting part of a configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertsConfig {
    /// `[alerts] evaluate_every`.
    pub evaluate_every: Duration,
    pub notifiers: Vec<NotifierConfig>,
    pub rules: Vec<AlertRule>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            evaluate_every: DEFAULT_EVALUATE_EVERY,
            notifiers: Vec::new(),
            rules: Vec::new(),
        }
    }
}

/// A `[[notifier]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct NotifierConfig {
    pub name: String,
    pub kind: NotifierKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NotifierKind {
    /// HTTP POST of the alert as JSON.
    Webhook(WebhookNotifier),
    /// A plain-text e-mail over SMTP.
    Email(EmailNotifier),
    /// A line in the server log (warn when firing, info when resolved).
    Log,
}

impl NotifierKind {
    /// `webhook`, `email` or `log`.
    pub fn kind(&self) -> &'static str {
        match self {
            NotifierKind::Webhook(_) => "webhook",
            NotifierKind::Email(_) => "email",
            NotifierKind::Log => "log",
        }
    }
}

#[derive(Clone, PartialEq, Eq)]
pub struct WebhookNotifier {
    pub url: String,
    /// Extra request headers; values may be secrets (`Debug` shows names only).
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
    /// Attempts after the first that failed (delays doubling from one second).
    pub retries: u32,
}

impl fmt::Debug for WebhookNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("WebhookNotifier")
            .field("url", &self.url)
            .field("headers", &names)
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .finish()
    }
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// Plain text (a relay on the same host or network only).
    None,
    /// Plain connection upgraded with STARTTLS, which the server must offer (port 587).
    StartTls,
    /// TLS from the first byte (port 465).
    Tls,
}

impl SmtpSecurity {
    /// The usual port of each.
    pub fn default_port(self) -> u16 {
        match self {
            SmtpSecurity::None => 25,
            SmtpSecurity::StartTls => 587,
            SmtpSecurity::Tls => 465,
        }
    }
}

#[derive(Clone, PartialEq, Eq)]
pub struct EmailNotifier {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    /// Sign-in, when the server asks for it. The password is never shown by `Debug`.
    pub username: Option<String>,
    pub password: Option<String>,
    pub from: String,
    pub to: Vec<String>,
    /// Put before every subject, e.g. `[causeway]`.
    pub subject_prefix: String,
    pub timeout: Duration,
    pub retries: u32,
}

impl fmt::Debug for EmailNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmailNotifier")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("from", &self.from)
            .field("to", &self.to)
            .field("subject_prefix", &self.subject_prefix)
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .finish()
    }
}

/// How serious an alert is: carried to notifiers as is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum Severity {
    Info,
    #[default]
    Warning,
    Critical,
}

impl Severity {
    pub const NAMES: [&'static str; 3] = ["info", "warning", "critical"];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Severity> {
        match s {
            "info" => Some(Severity::Info),
            "warning" => Some(Severity::Warning),
            "critical" => Some(Severity::Critical),
            _ => None,
        }
    }
}

/// One `[[alert]]` rule.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRule {
    pub name: String,
    pub condition: Condition,
    /// Only this channel; `None`: every channel (one alert per channel, or per destination).
    pub channel: Option<String>,
    /// Only destinations of this name (for the kinds about destinations); `None`: every one.
    pub destination: Option<String>,
    /// How long the condition must hold before the alert fires (`for`).
    pub pending_for: Duration,
    /// How long the condition must stay clear before the alert is resolved: the hysteresis
    /// that keeps a condition flapping at its threshold from sending a notice each time.
    pub clear_for: Duration,
    /// Notifier names, all defined.
    pub notify: Vec<String>,
    /// Re-notify a firing alert this often; `None`: never.
    pub renotify: Option<Duration>,
    pub severity: Severity,
}

/// What a rule watches.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// (rejected + errored) / received over `window` above `threshold`, once at least
    /// `min_messages` were received in it.
    ErrorRate {
        window: Duration,
        threshold: f64,
        min_messages: u64,
    },
    /// More than `max` deliveries waiting in a destination's queue.
    QueueDepth { max: u64 },
    /// The oldest waiting delivery of a destination older than `max_age`.
    OldestAge { max_age: Duration },
    /// No message received for `window` (only while `schedule` says so, when set).
    Silence {
        window: Duration,
        schedule: Option<Schedule>,
    },
    /// A destination failing: `failures` consecutive failed attempts, or no success for
    /// `no_success_for` while messages wait (either that is set).
    DestinationDown {
        failures: Option<u64>,
        no_success_for: Option<Duration>,
    },
    /// The `quantile` of time-to-ACK over `window` above `objective`: the channel's own ACKs
    /// to its senders, or with `destination` set, the wait for that destination's ACKs.
    AckTime {
        window: Duration,
        quantile: f64,
        objective: Duration,
        min_messages: u64,
    },
    /// Any unmapped code value in `window`.
    UnmappedCode { window: Duration },
    /// Any drift finding in `window`.
    Drift { window: Duration },
    /// Any bad input the source met in `window` that never became a message: bytes outside
    /// MLLP frames, oversized frames, frames left unfinished, failed TLS handshakes, files
    /// moved to a directory source's error folder.
    BadInput { window: Duration },
}

impl Condition {
    /// The names of `type`, in the order the reference lists them.
    pub const KINDS: [&'static str; 9] = [
        "error_rate",
        "queue_depth",
        "oldest_age",
        "silence",
        "destination_down",
        "ack_time",
        "unmapped_code",
        "drift",
        "bad_input",
    ];

    pub fn kind(&self) -> &'static str {
        match self {
            Condition::ErrorRate { .. } => "error_rate",
            Condition::QueueDepth { .. } => "queue_depth",
            Condition::OldestAge { .. } => "oldest_age",
            Condition::Silence { .. } => "silence",
            Condition::DestinationDown { .. } => "destination_down",
            Condition::AckTime { .. } => "ack_time",
            Condition::UnmappedCode { .. } => "unmapped_code",
            Condition::Drift { .. } => "drift",
            Condition::BadInput { .. } => "bad_input",
        }
    }

    /// The longest past this condition looks at (how much history the evaluator keeps).
    pub fn window(&self) -> Duration {
        match self {
            Condition::ErrorRate { window, .. }
            | Condition::AckTime { window, .. }
            | Condition::UnmappedCode { window }
            | Condition::Drift { window }
            | Condition::BadInput { window } => *window,
            _ => Duration::ZERO,
        }
    }
}

/// When a `silence` rule applies: on these weekdays, between these times, in this zone.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// Monday = 0 .. Sunday = 6; all seven when `days` is not given.
    pub days: [bool; 7],
    /// Minutes after midnight, `start..end`; `end` below `start` spans midnight (`22:00-06:00`).
    /// `None`: all day.
    pub hours: Option<(u16, u16)>,
    pub timezone: jiff::tz::TimeZone,
}

impl Schedule {
    /// True when `at` falls in the schedule. For a span past midnight the day is the one it
    /// started on (`22:00-06:00` on `fri` covers Friday night into Saturday morning).
    pub fn contains(&self, at: jiff::Timestamp) -> bool {
        let local = self.timezone.to_datetime(at);
        let day = local.weekday().to_monday_zero_offset() as usize;
        let minute = local.hour() as u16 * 60 + local.minute() as u16;
        match self.hours {
            None => self.days[day],
            Some((start, end)) if start <= end => self.days[day] && (start..end).contains(&minute),
            Some((start, end)) => {
                let yesterday = (day + 6) % 7;
                (self.days[day] && minute >= start) || (self.days[yesterday] && minute < end)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> jiff::Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn schedules() {
        let weekdays = Schedule {
            days: [true, true, true, true, true, false, false],
            hours: Some((7 * 60, 19 * 60)),
            timezone: jiff::tz::TimeZone::fixed(jiff::tz::offset(1)),
        };
        // 2026-11-27 is a Friday: 06:30Z is 07:30 at +01.
        assert!(weekdays.contains(at("2026-11-27T06:30:00Z")));
        assert!(!weekdays.contains(at("2026-11-27T05:59:00Z")));
        assert!(
            !weekdays.contains(at("2026-11-27T18:00:00Z")),
            "19:00 is out"
        );
        assert!(!weekdays.contains(at("2026-11-28T10:00:00Z")), "saturday");
        let nights = Schedule {
            days: [false, false, false, false, true, false, false],
            hours: Some((22 * 60, 6 * 60)),
            timezone: jiff::tz::TimeZone::UTC,
        };
        assert!(nights.contains(at("2026-11-27T23:00:00Z")));
        assert!(nights.contains(at("2026-11-28T05:00:00Z")), "friday night");
        assert!(
            !nights.contains(at("2026-11-27T05:00:00Z")),
            "thursday night"
        );
    }

    #[test]
    fn secrets_are_hidden_from_debug() {
        let e = EmailNotifier {
            host: "smtp.example.org".into(),
            port: 587,
            security: SmtpSecurity::StartTls,
            username: Some("causeway".into()),
            password: Some("s3cret".into()),
            from: "causeway@example.org".into(),
            to: vec!["oncall@example.org".into()],
            subject_prefix: "[causeway]".into(),
            timeout: DEFAULT_NOTIFY_TIMEOUT,
            retries: 1,
        };
        let w = WebhookNotifier {
            url: "https://hooks.example.org/x".into(),
            headers: vec![("Authorization".into(), "Bearer t0ken".into())],
            timeout: DEFAULT_NOTIFY_TIMEOUT,
            retries: 1,
        };
        let shown = format!("{e:?} {w:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("t0ken"),
            "{shown}"
        );
    }
}
