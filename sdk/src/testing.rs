//! Run a handler under `cargo test`, on the machine's own target, with no wasm and no
//! host: an in-memory stand-in for every tool, that the test scripts and inspects.
//!
//! Enable the `testing` feature for tests only:
//!
//! ```toml
//! [dev-dependencies]
//! agenthook-sdk = { path = "../sdk", features = ["testing"] }
//! ```
//!
//! A [`TestHost`] serves the tool calls made on the thread that created it (each
//! `#[test]` runs on its own thread) until it is dropped. It keeps kv in memory (with
//! versions, compare-and-swap and increment as the real host does them), answers HTTP
//! requests from scripted [`Reply`]s, records emails, emits and log lines, and hands
//! out config values. A tool can be withheld with [`TestHost::deny`] to test the
//! denied path; the error text is the real host's.
//!
//! ```ignore
//! use agenthook_sdk::testing::{self, Reply, TestHost};
//!
//! #[test]
//! fn fetches_the_customer_and_sends_a_receipt() {
//!     let host = TestHost::new().config("customers_url", "https://api.example.com");
//!     host.respond("GET", "https://api.example.com/v1/customers/cus_1",
//!                  Reply::json(200, &serde_json::json!({"email": "a@example.com"})));
//!     let event = testing::event("payment_intent.succeeded")
//!         .json(&serde_json::json!({"data": {"object": {"customer": "cus_1"}}}))
//!         .build();
//!     handle(event).unwrap();
//!     assert_eq!(host.emails()[0].to, ["a@example.com"]);
//! }
//! ```
//!
//! With the feature on, calls made on a thread without a `TestHost` panic, naming it.

pub(crate) mod fake;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Event;

/// A tool [`TestHost::deny`] can withhold, as an operator does by leaving out its grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    /// `grants.kv`
    Kv,
    /// `grants.http`
    Http,
    /// `grants.email`
    Email,
    /// `grants.emit`
    Emit,
    /// `grants.llm`
    Llm,
}

impl Tool {
    /// The real host's refusal text for this tool.
    fn denial(self) -> &'static str {
        match self {
            Tool::Kv => "kv is not granted to this plugin (grants.kv = true)",
            Tool::Http => "http is not granted to this plugin (grants.http)",
            Tool::Email => "email is not granted to this plugin (grants.email)",
            Tool::Emit => "emit is not granted to this plugin (grants.emit)",
            Tool::Llm => "llm is not granted to this plugin (grants.llm)",
        }
    }
}

/// A scripted HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// Response headers (names lower-cased, as the host hands them over).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Reply {
    /// An empty response with this status.
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A JSON response.
    pub fn json<T: Serialize + ?Sized>(status: u16, value: &T) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: serde_json::to_vec(value).expect("the reply serializes to JSON"),
        }
    }

    /// A text response.
    pub fn text(status: u16, text: impl Into<String>) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: text.into().into_bytes(),
        }
    }

    /// Add a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Reply {
        self.headers
            .push((name.into().to_ascii_lowercase(), value.into()));
        self
    }
}

/// An HTTP request the handler sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentRequest {
    /// `GET`, `POST`, …
    pub method: String,
    /// The URL as the handler gave it.
    pub url: String,
    /// The headers the handler set.
    pub headers: Vec<(String, String)>,
    /// The body, if any.
    pub body: Option<Vec<u8>>,
}

impl SentRequest {
    /// The body parsed as JSON (panics when it is not: this is for tests).
    pub fn json<T: DeserializeOwned>(&self) -> T {
        serde_json::from_slice(self.body.as_deref().unwrap_or_default())
            .expect("the request body is JSON")
    }
}

/// An email the handler sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentEmail {
    /// Recipients.
    pub to: Vec<String>,
    /// Copy recipients.
    pub cc: Vec<String>,
    /// The subject line.
    pub subject: String,
    /// The plain-text body.
    pub text: String,
    /// The HTML alternative, if any.
    pub html: Option<String>,
    /// The Reply-To address, if any.
    pub reply_to: Option<String>,
    /// The Message-ID `email::send` returned.
    pub message_id: String,
}

/// An event the handler emitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emitted {
    /// Its type.
    pub event_type: String,
    /// Its JSON body, as text.
    pub json: String,
    /// The emit key, if one was given.
    pub key: Option<String>,
    /// The event id `events::emit` returned.
    pub id: String,
}

impl Emitted {
    /// The body parsed (panics when it is not `T`: this is for tests).
    pub fn body<T: DeserializeOwned>(&self) -> T {
        serde_json::from_str(&self.json).expect("the emitted body is the expected JSON")
    }
}

/// A line the handler logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// `trace`, `debug`, `info`, `warn` or `error`.
    pub level: &'static str,
    /// The message.
    pub message: String,
}

#[derive(Default)]
pub(crate) struct State {
    config: BTreeMap<String, String>,
    denied: Vec<Tool>,
    /// key → (value, version)
    kv: BTreeMap<String, (Vec<u8>, u64)>,
    kv_clock: u64,
    /// (method, url, reply); the first match is used and removed unless it is the last
    /// one for its route.
    replies: Vec<(String, String, Reply)>,
    requests: Vec<SentRequest>,
    emails: Vec<SentEmail>,
    emits: Vec<Emitted>,
    logs: Vec<LogLine>,
    /// Scripted `llm.chat` answers, used in order; none left fails the call.
    llm_answers: std::collections::VecDeque<crate::llm::Answer>,
    /// The models and last user messages of the `llm.chat` calls made.
    llm_calls: Vec<(String, String)>,
}

thread_local! {
    static CURRENT: RefCell<Option<Rc<RefCell<State>>>> = const { RefCell::new(None) };
}

/// Run `f` on the state of this thread's [`TestHost`].
pub(crate) fn with_state<R>(f: impl FnOnce(&mut State) -> R) -> R {
    let state = CURRENT.with(|c| c.borrow().clone()).expect(
        "a tool was called with agenthook-sdk's `testing` feature on, but this thread has no \
         agenthook_sdk::testing::TestHost: create one at the start of the test",
    );
    let mut state = state.borrow_mut();
    f(&mut state)
}

/// The in-memory host of one test. See the [module docs](self).
pub struct TestHost {
    state: Rc<RefCell<State>>,
}

impl std::fmt::Debug for TestHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TestHost")
    }
}

impl Default for TestHost {
    fn default() -> Self {
        TestHost::new()
    }
}

impl TestHost {
    /// A host with every tool granted, no config, empty kv and no scripted replies,
    /// serving this thread's tool calls (replacing any earlier one) until dropped.
    pub fn new() -> TestHost {
        let state = Rc::new(RefCell::new(State::default()));
        CURRENT.with(|c| *c.borrow_mut() = Some(state.clone()));
        TestHost { state }
    }

    /// Set a config value, as the manifest's `[config]` table would.
    pub fn config(self, key: impl Into<String>, value: impl Into<String>) -> TestHost {
        self.state
            .borrow_mut()
            .config
            .insert(key.into(), value.into());
        self
    }

    /// Withhold a tool: every call of it returns `denied` with the host's text.
    pub fn deny(self, tool: Tool) -> TestHost {
        self.state.borrow_mut().denied.push(tool);
        self
    }

    /// Answer the next `method` request to exactly `url` with `reply`. Replies for one
    /// route are used in the order given; the last one keeps answering. A request with
    /// no scripted reply fails with `tool-error.failed` naming it.
    pub fn respond(&self, method: &str, url: &str, reply: Reply) {
        self.state
            .borrow_mut()
            .replies
            .push((method.to_ascii_uppercase(), url.to_string(), reply));
    }

    /// Answer the next `llm.chat` call with `answer` (answers are used in order; a call
    /// with none left fails with `tool-error.failed`).
    pub fn answer_llm(&self, answer: crate::llm::Answer) {
        self.state.borrow_mut().llm_answers.push_back(answer);
    }

    /// The `llm.chat` calls made so far: (model, the last user message).
    pub fn llm_calls(&self) -> Vec<(String, String)> {
        self.state.borrow().llm_calls.clone()
    }

    /// Store a value in kv before the handler runs.
    pub fn kv_set(&self, key: &str, value: impl AsRef<[u8]>) {
        self.state
            .borrow_mut()
            .kv_write(key, value.as_ref().to_vec());
    }

    /// Store a value as JSON in kv before the handler runs.
    pub fn kv_set_json<T: Serialize + ?Sized>(&self, key: &str, value: &T) {
        self.kv_set(key, serde_json::to_vec(value).expect("serializes"));
    }

    /// The value in kv under `key`.
    pub fn kv(&self, key: &str) -> Option<Vec<u8>> {
        self.state.borrow().kv.get(key).map(|(v, _)| v.clone())
    }

    /// The value in kv under `key`, parsed as JSON (panics when it is not `T`).
    pub fn kv_json<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        self.kv(key)
            .map(|v| serde_json::from_slice(&v).expect("the kv value is the expected JSON"))
    }

    /// Every kv key, in order.
    pub fn kv_keys(&self) -> Vec<String> {
        self.state.borrow().kv.keys().cloned().collect()
    }

    /// The HTTP requests sent so far, in order (denied ones are not sent).
    pub fn requests(&self) -> Vec<SentRequest> {
        self.state.borrow().requests.clone()
    }

    /// The emails sent so far, in order.
    pub fn emails(&self) -> Vec<SentEmail> {
        self.state.borrow().emails.clone()
    }

    /// The events emitted so far, in order.
    pub fn emits(&self) -> Vec<Emitted> {
        self.state.borrow().emits.clone()
    }

    /// The lines logged so far, in order.
    pub fn logs(&self) -> Vec<LogLine> {
        self.state.borrow().logs.clone()
    }

    /// Whether some logged line contains `text`.
    pub fn logged(&self, text: &str) -> bool {
        self.state
            .borrow()
            .logs
            .iter()
            .any(|l| l.message.contains(text))
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        CURRENT.with(|c| {
            let mut current = c.borrow_mut();
            if current.as_ref().is_some_and(|s| Rc::ptr_eq(s, &self.state)) {
                *current = None;
            }
        });
    }
}

/// Start building an event of `event_type`.
pub fn event(event_type: impl Into<String>) -> EventBuilder {
    EventBuilder {
        event: Event {
            id: "1".into(),
            event_id: "evt_test".into(),
            source: "test".into(),
            event_type: event_type.into(),
            received_at_ms: 1_700_000_000_000,
            attempt: 1,
            idempotency_key: String::new(),
            headers: Vec::new(),
            body: b"{}".to_vec(),
        },
    }
}

/// Builds an [`Event`] for a test.
///
/// ## Defaults
///
/// id `1`, event id `evt_test`, source `test`, attempt 1, body `{}`, no headers, an
/// idempotency key derived from the id (`idem-{id}`) unless set.
#[derive(Debug, Clone)]
pub struct EventBuilder {
    event: Event,
}

impl EventBuilder {
    /// The body: `value` as JSON.
    pub fn json<T: Serialize + ?Sized>(mut self, value: &T) -> EventBuilder {
        self.event.body = serde_json::to_vec(value).expect("the body serializes to JSON");
        self
    }

    /// The body, as raw bytes.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> EventBuilder {
        self.event.body = body.into();
        self
    }

    /// Add a request header (the name is lower-cased, as the host does).
    pub fn header(mut self, name: &str, value: impl Into<String>) -> EventBuilder {
        self.event
            .headers
            .push((name.to_ascii_lowercase(), value.into()));
        self
    }

    /// The host's event id.
    pub fn id(mut self, id: impl Into<String>) -> EventBuilder {
        self.event.id = id.into();
        self
    }

    /// The sender's event id.
    pub fn event_id(mut self, event_id: impl Into<String>) -> EventBuilder {
        self.event.event_id = event_id.into();
        self
    }

    /// The source (`plugin:NAME` for an event another plugin emitted).
    pub fn source(mut self, source: impl Into<String>) -> EventBuilder {
        self.event.source = source.into();
        self
    }

    /// The attempt number (1 for the first delivery).
    pub fn attempt(mut self, attempt: u32) -> EventBuilder {
        self.event.attempt = attempt;
        self
    }

    /// The idempotency key.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> EventBuilder {
        self.event.idempotency_key = key.into();
        self
    }

    /// When the host received it, in ms since the Unix epoch.
    pub fn received_at_ms(mut self, ms: u64) -> EventBuilder {
        self.event.received_at_ms = ms;
        self
    }

    /// The event.
    pub fn build(mut self) -> Event {
        if self.event.idempotency_key.is_empty() {
            self.event.idempotency_key = format!("idem-{}", self.event.id);
        }
        self.event
    }
}
