//! `[email]` and `[emit]`: the limits on what plugins send out of the host — mail
//! through the operator's SMTP server, and events emitted to other plugins. Only
//! validated here; the tools that send are `tools::email` and `tools::emit`.

use serde::Deserialize;

use super::{ConfigError, Secret};

pub const DEFAULT_EMAILS_PER_HOUR: u32 = 100;

/// `[email]`: where `email.send` delivers, and the per-plugin cap.
#[derive(Debug, Clone)]
pub struct EmailConfig {
    /// The SMTP server's host name or address.
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    /// The `From:` of every message (`Agents <agents@example.com>`).
    pub from: String,
    /// SMTP AUTH, both or neither.
    pub username: Option<Secret>,
    pub password: Option<Secret>,
    /// Messages one plugin may send in any hour.
    pub max_per_hour: u32,
}

/// How the SMTP connection is protected (`[email] tls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain text; only allowed to a loopback server.
    None,
    /// `smtp://`, upgraded with STARTTLS, which is required.
    Starttls,
    /// TLS from the first byte (`smtps://`, usually port 465).
    Tls,
}

/// `[emit]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmitConfig {
    /// Plugin-to-plugin hops an event chain may take; an emit past it is refused and the
    /// emitting delivery is dead-lettered with the chain in the reason.
    pub max_chain_depth: u32,
}

impl Default for EmitConfig {
    fn default() -> Self {
        EmitConfig { max_chain_depth: 8 }
    }
}

/// The `[email]` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEmail {
    smtp_url: String,
    from: String,
    tls: Option<SmtpTls>,
    username: Option<String>,
    password: Option<String>,
    max_per_hour: Option<u32>,
}

impl RawEmail {
    /// Validate `[email]`: the URL, the sender address, TLS and credentials.
    pub(super) fn resolve(&self) -> Result<EmailConfig, ConfigError> {
        let bad_url = || {
            ConfigError::invalid(
                "email.smtp_url",
                format!(
                    "`{}` is not smtp://host[:port] or smtps://host[:port]",
                    self.smtp_url
                ),
            )
        };
        let (scheme, rest) = self.smtp_url.split_once("://").ok_or_else(bad_url)?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.is_empty() || rest.contains(['/', '@', '?', '#']) {
            return Err(bad_url());
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() && !p.contains(']') => (
                h,
                Some(
                    p.parse::<u16>()
                        .ok()
                        .filter(|p| *p != 0)
                        .ok_or_else(bad_url)?,
                ),
            ),
            _ => (rest, None),
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let loopback = host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        let (tls, default_port) = match (scheme, self.tls) {
            ("smtps", None | Some(SmtpTls::Tls)) => (SmtpTls::Tls, 465),
            ("smtps", Some(_)) => {
                return Err(ConfigError::invalid(
                    "email.tls",
                    "smtps:// is TLS from the first byte; remove `tls` or use smtp://",
                ));
            }
            ("smtp", Some(SmtpTls::Tls)) => (SmtpTls::Tls, 465),
            ("smtp", Some(tls)) => (tls, 587),
            ("smtp", None) if loopback => (SmtpTls::None, 25),
            ("smtp", None) => (SmtpTls::Starttls, 587),
            _ => return Err(bad_url()),
        };
        if tls == SmtpTls::None && !loopback {
            return Err(ConfigError::invalid(
                "email.tls",
                format!("\"none\" (plain text) is only allowed to a loopback server, not {host}"),
            ));
        }
        if let Err(e) = self.from.parse::<lettre::message::Mailbox>() {
            return Err(ConfigError::invalid(
                "email.from",
                format!(
                    "`{}` is not an address like Agents <agents@example.com>: {e}",
                    self.from
                ),
            ));
        }
        let username = self
            .username
            .as_deref()
            .map(|s| Secret::resolve(s, "email.username"))
            .transpose()?;
        let password = self
            .password
            .as_deref()
            .map(|s| Secret::resolve(s, "email.password"))
            .transpose()?;
        if username.is_some() != password.is_some() {
            return Err(ConfigError::invalid(
                if username.is_some() {
                    "email.password"
                } else {
                    "email.username"
                },
                "SMTP AUTH needs both username and password",
            ));
        }
        let max_per_hour = self.max_per_hour.unwrap_or(DEFAULT_EMAILS_PER_HOUR);
        if max_per_hour == 0 {
            return Err(ConfigError::invalid(
                "email.max_per_hour",
                "must be at least 1 (remove the email grants to stop a plugin sending)",
            ));
        }
        Ok(EmailConfig {
            host,
            port: port.unwrap_or(default_port),
            tls,
            from: self.from.clone(),
            username,
            password,
            max_per_hour,
        })
    }
}

/// The `[emit]` table as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEmit {
    max_chain_depth: Option<u32>,
}

impl RawEmit {
    pub(super) fn resolve(&self) -> Result<EmitConfig, ConfigError> {
        let max_chain_depth = match self.max_chain_depth {
            Some(n) if (1..=64).contains(&n) => n,
            Some(n) => {
                return Err(ConfigError::invalid(
                    "emit.max_chain_depth",
                    format!("must be between 1 and 64, got {n}"),
                ));
            }
            None => EmitConfig::default().max_chain_depth,
        };
        Ok(EmitConfig { max_chain_depth })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::parse;

    #[test]
    fn email_and_emit_sections_parse_and_errors_name_the_field() {
        let c = parse(
            "[email]\nsmtp_url = \"smtp://127.0.0.1:2525\"\nfrom = \"Agents <agents@example.com>\"\n[emit]\nmax_chain_depth = 3\n",
        )
        .unwrap();
        let e = c.email.unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.tls),
            ("127.0.0.1", 2525, SmtpTls::None)
        );
        assert_eq!(e.max_per_hour, DEFAULT_EMAILS_PER_HOUR);
        assert_eq!(c.emit.max_chain_depth, 3);
        let c =
            parse("[email]\nsmtp_url = \"smtps://smtp.example.com\"\nfrom = \"a@example.com\"\n")
                .unwrap();
        let e = c.email.unwrap();
        assert_eq!((e.port, e.tls), (465, SmtpTls::Tls));
        let c =
            parse("[email]\nsmtp_url = \"smtp://smtp.example.com\"\nfrom = \"a@example.com\"\n")
                .unwrap();
        assert_eq!(c.email.unwrap().tls, SmtpTls::Starttls);
        assert!(parse("").unwrap().email.is_none());
        for (text, field) in [
            (
                "[email]\nsmtp_url = \"http://x\"\nfrom = \"a@example.com\"\n",
                "email.smtp_url",
            ),
            (
                "[email]\nsmtp_url = \"smtp://x.example.com\"\nfrom = \"a@example.com\"\ntls = \"none\"\n",
                "email.tls",
            ),
            (
                "[email]\nsmtp_url = \"smtp://127.0.0.1:25\"\nfrom = \"nobody\"\n",
                "email.from",
            ),
            (
                "[email]\nsmtp_url = \"smtp://127.0.0.1:25\"\nfrom = \"a@example.com\"\nusername = \"u\"\n",
                "email.password",
            ),
            (
                "[email]\nsmtp_url = \"smtp://127.0.0.1:25\"\nfrom = \"a@example.com\"\nmax_per_hour = 0\n",
                "email.max_per_hour",
            ),
            ("[emit]\nmax_chain_depth = 0\n", "emit.max_chain_depth"),
            ("[emit]\ndepth = 1\n", "depth"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(field), "{text}: {e}");
        }
    }
}
