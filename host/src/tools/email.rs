//! `email.send`: mail through the host's SMTP server (`[email]`), only to the
//! recipients in `grants.email`, within size caps and a per-plugin hourly cap.
//!
//! The sender is always the host's `[email] from`; a plugin chooses recipients, subject,
//! body and Reply-To, nothing else. The Message-ID is derived from the delivery's
//! idempotency key, so a retried attempt re-sends a message with the same id and the
//! receiving side can recognise it.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lettre::message::{Mailbox, MultiPart, SinglePart, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use sha2::{Digest, Sha256};

use super::Tools;
use super::journal::{self, Step};
use crate::config::{ConfigError, EmailConfig, SmtpTls};
use crate::wit::agenthook::plugin::email::{Host, Message};
use crate::wit::agenthook::plugin::types::ToolError;

pub const MAX_RECIPIENTS: usize = 50;
pub const MAX_SUBJECT_BYTES: usize = 998;
/// Text and HTML together.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
const HOUR: Duration = Duration::from_secs(3600);
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// The SMTP transport (pooled) and each plugin's sends in the last hour.
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    max_per_hour: u32,
    sent: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl Mailer {
    pub fn new(config: &EmailConfig) -> Result<Mailer, ConfigError> {
        let err = |e: lettre::transport::smtp::Error| {
            ConfigError::invalid("email.smtp_url", format!("cannot set up SMTP: {e}"))
        };
        let tls = |host: &str| TlsParameters::new(host.to_string()).map_err(err);
        let mut builder =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(config.host.clone())
                .port(config.port)
                .timeout(Some(SMTP_TIMEOUT))
                .tls(match config.tls {
                    SmtpTls::None => Tls::None,
                    SmtpTls::Starttls => Tls::Required(tls(&config.host)?),
                    SmtpTls::Tls => Tls::Wrapper(tls(&config.host)?),
                });
        if let (Some(user), Some(pass)) = (&config.username, &config.password) {
            builder = builder.credentials(Credentials::new(
                user.expose().to_string(),
                pass.expose().to_string(),
            ));
        }
        let from = config
            .from
            .parse::<Mailbox>()
            .map_err(|e| ConfigError::invalid("email.from", format!("`{}`: {e}", config.from)))?;
        Ok(Mailer {
            transport: builder.build(),
            from,
            max_per_hour: config.max_per_hour,
            sent: Mutex::default(),
        })
    }

    /// Count one send against the plugin's hourly cap, or say why not.
    fn take_quota(&self, plugin: &str) -> Result<(), ToolError> {
        let now = Instant::now();
        let mut sent = self.sent.lock().unwrap_or_else(|p| p.into_inner());
        let times = sent.entry(plugin.to_string()).or_default();
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= HOUR)
        {
            times.pop_front();
        }
        if times.len() >= self.max_per_hour as usize {
            return Err(ToolError::Limited(format!(
                "{} emails sent in the last hour; the cap is email.max_per_hour = {}",
                times.len(),
                self.max_per_hour
            )));
        }
        times.push_back(now);
        Ok(())
    }
}

impl Host for Tools {
    async fn send(&mut self, message: Message) -> Result<String, ToolError> {
        let result: Result<_, ToolError> = async {
            self.count_call()?;
            if self.grants.email.is_empty() {
                return Err(ToolError::Denied(
                    "email is not granted to this plugin (grants.email)".into(),
                ));
            }
            let Some(mailer) = self.services.mailer.clone() else {
                return Err(ToolError::Failed(
                    "this host has no [email] section (smtp_url, from) configured".into(),
                ));
            };
            if message.to.is_empty() {
                return Err(ToolError::Invalid("`to` is empty".into()));
            }
            if message.to.len() + message.cc.len() > MAX_RECIPIENTS {
                return Err(ToolError::Invalid(format!(
                    "{} recipients; the limit is {MAX_RECIPIENTS}",
                    message.to.len() + message.cc.len()
                )));
            }
            let to = self.recipients(&message.to)?;
            let cc = self.recipients(&message.cc)?;
            if message.subject.len() > MAX_SUBJECT_BYTES || message.subject.contains(['\r', '\n']) {
                return Err(ToolError::Invalid(format!(
                    "the subject must be one line of at most {MAX_SUBJECT_BYTES} bytes"
                )));
            }
            let body_bytes = message.text.len() + message.html.as_ref().map_or(0, String::len);
            if body_bytes > MAX_BODY_BYTES {
                return Err(ToolError::Invalid(format!(
                    "the body is {body_bytes} bytes; the limit is {MAX_BODY_BYTES}"
                )));
            }
            let reply_to = message
                .reply_to
                .as_deref()
                .map(|r| {
                    r.parse::<Mailbox>()
                        .map_err(|e| ToolError::Invalid(format!("reply-to `{r}`: {e}")))
                })
                .transpose()?;

            self.emails_sent += 1;
            let message_id = message_id(
                &self.origin.idempotency_key,
                self.emails_sent,
                mailer.from.email.domain(),
            );
            let journaled = self.journal.policy().email.then(|| {
                // The count of `to` recipients tells `to` and `cc` apart.
                let to_count = message.to.len().to_string();
                let mut parts: Vec<&[u8]> = vec![to_count.as_bytes()];
                for r in message.to.iter().chain(&message.cc) {
                    parts.push(r.as_bytes());
                }
                parts.push(message.subject.as_bytes());
                parts.push(message.text.as_bytes());
                parts.push(message.html.as_deref().unwrap_or("\0none").as_bytes());
                parts.push(message.reply_to.as_deref().unwrap_or("\0none").as_bytes());
                journal::request_hash("email.send", &parts)
            });
            let summary = format!("to {} — {}", message.to.join(", "), message.subject);
            let seq = match &journaled {
                Some(hash) => match self.journal.step("email.send", hash)? {
                    Step::Replay(recorded) => {
                        return recorded.as_str().map(str::to_string).ok_or_else(|| {
                            ToolError::Failed("the journal's record of this call is unreadable".into())
                        });
                    }
                    Step::Run { seq } => Some(seq),
                },
                None => None,
            };
            let mut builder = lettre::Message::builder()
                .from(mailer.from.clone())
                .subject(message.subject)
                .message_id(Some(message_id.clone()));
            for m in to {
                builder = builder.to(m);
            }
            for m in cc {
                builder = builder.cc(m);
            }
            if let Some(r) = reply_to {
                builder = builder.reply_to(r);
            }
            let built = match message.html {
                Some(html) => builder.multipart(MultiPart::alternative_plain_html(message.text, html)),
                None => builder.singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_PLAIN)
                        .body(message.text),
                ),
            }
            .map_err(|e| ToolError::Invalid(format!("cannot build the message: {e}")))?;

            mailer.take_quota(&self.plugin)?;
            let sent = tokio::time::timeout(self.remaining(), mailer.transport.send(built)).await;
            match sent {
                Ok(Ok(_)) => {
                    tracing::info!(plugin = &*self.plugin, event = self.event, %message_id, "email sent");
                    if let (Some(seq), Some(hash)) = (seq, journaled) {
                        let result = serde_json::Value::String(message_id.clone());
                        self.journal_record(seq, "email.send", hash, summary, result).await;
                    }
                    Ok(message_id)
                }
                Ok(Err(e)) if e.is_permanent() => Err(ToolError::Invalid(format!(
                    "the SMTP server refused the message: {e}"
                ))),
                Ok(Err(e)) => Err(ToolError::Failed(format!("SMTP: {e}"))),
                Err(_) => Err(ToolError::Failed(
                    "the SMTP server did not accept the message before the plugin's deadline".into(),
                )),
            }
        }
        .await;
        self.tally("email.send", result)
    }
}

impl Tools {
    /// Parse recipients and check each against `grants.email`.
    fn recipients(&self, list: &[String]) -> Result<Vec<Mailbox>, ToolError> {
        list.iter()
            .map(|r| {
                let mailbox = r
                    .parse::<Mailbox>()
                    .map_err(|e| ToolError::Invalid(format!("recipient `{r}`: {e}")))?;
                let address = mailbox.email.to_string();
                if !self.grants.email_allows(&address) {
                    return Err(ToolError::Denied(format!(
                        "recipient {address} is not granted to this plugin (grants.email)"
                    )));
                }
                Ok(mailbox)
            })
            .collect()
    }
}

/// `<hash.N@domain>`: the same for the Nth message of every attempt of a delivery.
fn message_id(idempotency_key: &str, n: u32, domain: &str) -> String {
    let hash = hex::encode(&Sha256::digest(idempotency_key.as_bytes())[..16]);
    format!("<{hash}.{n}@{domain}>")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_are_stable_per_delivery_and_position() {
        let a = message_id("agenthook:7:payment-notify", 1, "example.com");
        assert_eq!(
            a,
            message_id("agenthook:7:payment-notify", 1, "example.com")
        );
        assert_ne!(
            a,
            message_id("agenthook:7:payment-notify", 2, "example.com")
        );
        assert_ne!(
            a,
            message_id("agenthook:8:payment-notify", 1, "example.com")
        );
        assert!(a.starts_with('<') && a.ends_with("@example.com>"), "{a}");
    }
}
