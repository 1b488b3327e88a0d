//! E-mail notifier: one plain-text message per notice, over SMTP (plain, STARTTLS or TLS;
//! rustls with the platform's trusted roots), signed in when a username is configured.

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::Notice;
use crate::config::alerts::{EmailNotifier, SmtpSecurity};

pub(super) struct EmailSender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
    subject_prefix: String,
}

impl EmailSender {
    pub(super) fn new(c: &EmailNotifier) -> Result<EmailSender, String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let tls = |host: &str| {
            TlsParameters::new(host.to_string()).map_err(|e| format!("TLS settings: {e}"))
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&c.host)
            .port(c.port)
            .timeout(Some(c.timeout))
            .hello_name(ClientId::Domain(crate::runtime::node_name()));
        builder = match c.security {
            SmtpSecurity::None => builder.tls(Tls::None),
            SmtpSecurity::StartTls => builder.tls(Tls::Required(tls(&c.host)?)),
            SmtpSecurity::Tls => builder.tls(Tls::Wrapper(tls(&c.host)?)),
        };
        if let (Some(user), Some(password)) = (&c.username, &c.password) {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        let mailbox = |s: &str| {
            s.parse::<Mailbox>()
                .map_err(|e| format!("invalid address {s:?}: {e}"))
        };
        Ok(EmailSender {
            transport: builder.build(),
            from: mailbox(&c.from)?,
            to: c.to.iter().map(|t| mailbox(t)).collect::<Result<_, _>>()?,
            subject_prefix: c.subject_prefix.clone(),
        })
    }

    pub(super) async fn send(&self, notice: &Notice) -> Result<(), String> {
        let subject = if self.subject_prefix.is_empty() {
            notice.headline()
        } else {
            format!("{} {}", self.subject_prefix, notice.headline())
        };
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(subject)
            .header(ContentType::TEXT_PLAIN);
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        let message = builder
            .body(body(notice))
            .map_err(|e| format!("cannot build the message: {e}"))?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| format!("SMTP: {e}"))
    }
}

/// The text of the e-mail: the summary, then each field on its own line.
fn body(n: &Notice) -> String {
    let mut out = format!("{}\n\n{}\n\n", n.headline(), n.summary);
    let mut line = |k: &str, v: &str| out.push_str(&format!("{k:<14}{v}\n"));
    line("status:", n.status);
    line("rule:", &n.rule);
    line("type:", n.kind);
    line("severity:", n.severity);
    line("channel:", &n.channel);
    if let Some(d) = &n.destination {
        line("destination:", d);
    }
    line("value:", &format!("{} {}", n.value, n.unit));
    line("threshold:", &format!("{} {}", n.threshold, n.unit));
    line("started:", &n.started_at);
    if let Some(r) = &n.resolved_at {
        line("resolved:", r);
    }
    out
}
