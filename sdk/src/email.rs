//! Email through the host's SMTP server, to the recipients the manifest grants.
//!
//! Every recipient (`to` and `cc`) must match an entry of `email` under the manifest's
//! `[grants]` (`ops@example.com`, or `*@example.org` for a whole domain); otherwise
//! [`send`] returns [`ToolError::Denied`] naming the recipient. The sender address is
//! the host's (`[email] from`), and each plugin has an hourly cap.
//!
//! ```no_run
//! use agenthook_sdk::email::{self, Email};
//! # fn run() -> Result<(), agenthook_sdk::HandlerError> {
//! let message_id = email::send(
//!     Email::to("ops@example.com")
//!         .subject("Payment received")
//!         .text("Thanks!")
//!         .reply_to("billing@example.com"),
//! )?;
//! # Ok(()) }
//! ```

use crate::ToolError;
use crate::abi::email as wit;

/// An email being built; pass it to [`send`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    to: Vec<String>,
    cc: Vec<String>,
    subject: String,
    text: String,
    html: Option<String>,
    reply_to: Option<String>,
}

impl Email {
    /// An email to `recipient` (`ops@example.com` or `Ops <ops@example.com>`).
    pub fn to(recipient: impl Into<String>) -> Email {
        Email {
            to: vec![recipient.into()],
            cc: Vec::new(),
            subject: String::new(),
            text: String::new(),
            html: None,
            reply_to: None,
        }
    }

    /// Add another `To:` recipient.
    pub fn and_to(mut self, recipient: impl Into<String>) -> Email {
        self.to.push(recipient.into());
        self
    }

    /// Add a `Cc:` recipient.
    pub fn cc(mut self, recipient: impl Into<String>) -> Email {
        self.cc.push(recipient.into());
        self
    }

    /// Set the subject (one line).
    pub fn subject(mut self, subject: impl Into<String>) -> Email {
        self.subject = subject.into();
        self
    }

    /// Set the plain-text body.
    pub fn text(mut self, text: impl Into<String>) -> Email {
        self.text = text.into();
        self
    }

    /// Add an HTML alternative to the text body.
    pub fn html(mut self, html: impl Into<String>) -> Email {
        self.html = Some(html.into());
        self
    }

    /// Set the Reply-To address.
    pub fn reply_to(mut self, address: impl Into<String>) -> Email {
        self.reply_to = Some(address.into());
        self
    }
}

/// Send `email`; returns its Message-ID, which is the same on every attempt of the
/// delivery (the Nth message of an attempt gets the Nth id).
pub fn send(email: Email) -> Result<String, ToolError> {
    let message = wit::Message {
        to: email.to,
        cc: email.cc,
        subject: email.subject,
        text: email.text,
        html: email.html,
        reply_to: email.reply_to,
    };
    wit::send(&message).map_err(ToolError::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_collects_every_field() {
        let e = Email::to("a@example.com")
            .and_to("B <b@example.com>")
            .cc("c@example.org")
            .subject("Hi")
            .text("plain")
            .html("<p>html</p>")
            .reply_to("r@example.com");
        assert_eq!(e.to, ["a@example.com", "B <b@example.com>"]);
        assert_eq!(e.cc, ["c@example.org"]);
        assert_eq!((e.subject.as_str(), e.text.as_str()), ("Hi", "plain"));
        assert_eq!(e.html.as_deref(), Some("<p>html</p>"));
        assert_eq!(e.reply_to.as_deref(), Some("r@example.com"));
    }
}
