//! `llm.chat`: chat completions through a model provider the operator configured
//! (`[llm.providers.NAME]`), with the host's API key, never the plugin's.
//!
//! A call needs `grants.llm` naming the provider and a glob matching the model; it
//! spends the plugin's hourly token budget (`grants.llm.max_tokens_per_hour`, counted
//! from the usage the provider reports; a call starts only while the last hour's usage
//! is below it). Prompts and answers go to the attempt's log lines (capped like any
//! log line). Calls are journaled (`journal`), so a retried attempt gets the recorded
//! answer and pays nothing. A 429 whose `Retry-After` is short is waited out within
//! the plugin's deadline; a longer one is `limited`. The wire formats are in `openai`
//! and `anthropic`.

mod anthropic;
mod openai;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde_json::{Value, json};

use super::Tools;
use super::http::OperatorClient;
use super::journal::{self, Step};
use crate::config::{LlmConfig, LlmKind, LlmProvider};
use crate::wit::agenthook::plugin::llm::{Host, Request, Response, Role, ToolCall, Usage};
use crate::wit::agenthook::plugin::types::ToolError;

/// `max-tokens` when the request gives none.
pub const DEFAULT_MAX_TOKENS: u32 = 1024;
/// The request's text (messages, tools, schema) may be this large at most.
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;
pub const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;
pub const MAX_MESSAGES: usize = 1000;
/// A `Retry-After` up to this long is waited out (if the deadline allows); a longer
/// one ends the call as `limited`.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(10);
/// Rate-limited answers waited out per call at most.
const MAX_RATE_LIMIT_WAITS: u32 = 2;
/// Bytes of one prompt or answer kept in the attempt's log lines.
const LOGGED_TEXT: usize = 2000;
const HOUR: Duration = Duration::from_secs(3600);

/// Tokens by plugin, model and direction, for `/metrics`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabels {
    pub plugin: String,
    pub model: String,
    /// `input` or `output`.
    pub direction: &'static str,
}

/// The configured providers, their HTTP client, and each plugin's token use in the
/// last hour.
pub struct Providers {
    client: OperatorClient,
    providers: BTreeMap<String, LlmProvider>,
    /// Per plugin: (when, tokens) of its calls in the last hour.
    spent: Mutex<HashMap<String, VecDeque<(Instant, u64)>>>,
    tokens: Family<TokenLabels, Counter>,
}

impl Providers {
    pub fn new(
        config: &LlmConfig,
        client: OperatorClient,
        tokens: Family<TokenLabels, Counter>,
    ) -> Self {
        Providers {
            client,
            providers: config.providers.clone(),
            spent: Mutex::default(),
            tokens,
        }
    }

    /// Tokens `plugin` used in the hour before `now`.
    fn used(&self, plugin: &str, now: Instant) -> u64 {
        let mut spent = self.spent.lock().unwrap_or_else(|p| p.into_inner());
        let Some(calls) = spent.get_mut(plugin) else {
            return 0;
        };
        while calls
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) >= HOUR)
        {
            calls.pop_front();
        }
        calls.iter().map(|(_, n)| n).sum()
    }

    fn spend(&self, plugin: &str, model: &str, usage: &Usage) {
        let total = u64::from(usage.input_tokens) + u64::from(usage.output_tokens);
        self.spent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(plugin.to_string())
            .or_default()
            .push_back((Instant::now(), total));
        for (direction, n) in [
            ("input", usage.input_tokens),
            ("output", usage.output_tokens),
        ] {
            self.tokens
                .get_or_create(&TokenLabels {
                    plugin: plugin.to_string(),
                    model: model.to_string(),
                    direction,
                })
                .inc_by(n.into());
        }
    }
}

impl Host for Tools {
    async fn chat(&mut self, request: Request) -> Result<Response, ToolError> {
        let result = self.chat_call(request).await;
        self.tally("llm.chat", result)
    }
}

impl Tools {
    async fn chat_call(&mut self, request: Request) -> Result<Response, ToolError> {
        self.count_call()?;
        let Some(grant) = self.grants.llm.clone() else {
            return Err(ToolError::Denied(
                "llm is not granted to this plugin (grants.llm)".into(),
            ));
        };
        if !grant.allows_model(&request.model) {
            let listed: Vec<&str> = grant.models.iter().map(|(p, _)| p.as_str()).collect();
            return Err(ToolError::Denied(format!(
                "model `{}` is not granted to this plugin (grants.llm.models = {listed:?})",
                request.model
            )));
        }
        let services = self.services.clone();
        let Some(provider) = services.llm.providers.get(&grant.provider) else {
            return Err(ToolError::Failed(format!(
                "provider `{}` (grants.llm.provider) is not configured on this host ([llm.providers.{}])",
                grant.provider, grant.provider
            )));
        };
        validate(&request)?;
        let canonical = canonical(&request);
        let journaled = self
            .journal
            .policy()
            .llm
            .then(|| journal::request_hash("llm.chat", &[canonical.to_string().as_bytes()]));
        let seq = match &journaled {
            Some(hash) => match self.journal.step("llm.chat", hash)? {
                Step::Replay(recorded) => return decode(recorded),
                Step::Run { seq } => Some(seq),
            },
            None => None,
        };
        let used = services.llm.used(&self.plugin, Instant::now());
        if used >= grant.max_tokens_per_hour {
            return Err(ToolError::Limited(format!(
                "{used} tokens used in the last hour; the budget is grants.llm.max_tokens_per_hour = {}",
                grant.max_tokens_per_hour
            )));
        }
        for m in &request.messages {
            self.logs.push(format!(
                "[llm] {} → {} {}: {}",
                grant.provider,
                request.model,
                role(m.role),
                cut(&m.content)
            ));
        }
        let response = self.send(&services.llm, provider, &request).await?;
        services
            .llm
            .spend(&self.plugin, &request.model, &response.usage);
        self.logs.push(format!(
            "[llm] ← {} ({}, {} in / {} out tokens): {}",
            response.model,
            response.finish_reason,
            response.usage.input_tokens,
            response.usage.output_tokens,
            cut(&response.content)
        ));
        for c in &response.tool_calls {
            self.logs.push(format!(
                "[llm] ← tool call {} {}({})",
                c.id,
                c.name,
                cut(&c.arguments)
            ));
        }
        if let (Some(seq), Some(hash)) = (seq, journaled) {
            let summary = format!(
                "{} {} → {} ({} tokens)",
                grant.provider,
                request.model,
                response.finish_reason,
                response.usage.input_tokens + response.usage.output_tokens
            );
            self.journal_record(seq, "llm.chat", hash, summary, encode(&response))
                .await;
        }
        Ok(response)
    }

    /// Send the request in the provider's wire format; wait out short rate limits.
    async fn send(
        &self,
        llm: &Providers,
        provider: &LlmProvider,
        request: &Request,
    ) -> Result<Response, ToolError> {
        let (path, body) = match provider.kind {
            LlmKind::Openai => (openai::PATH, openai::body(request)),
            LlmKind::Anthropic => (anthropic::PATH, anthropic::body(request)),
        };
        let body = Bytes::from(body.map_err(ToolError::Invalid)?.to_string());
        let url = format!("{}{path}", provider.base_url);
        let budget = Duration::from_secs(provider.timeout_secs).min(self.remaining());
        let deadline = Instant::now() + budget;
        let mut waits = 0;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let exchange = tokio::time::timeout(left, post(llm, provider, &url, body.clone()));
            let (status, retry_after, json) = exchange.await.map_err(|_| {
                ToolError::Failed(format!("{url}: no answer within {} ms", budget.as_millis()))
            })??;
            let message = || {
                match provider.kind {
                    LlmKind::Openai => openai::error(&json),
                    LlmKind::Anthropic => anthropic::error(&json),
                }
                .unwrap_or_else(|| format!("HTTP {status}"))
            };
            match status {
                200..=299 => {
                    let parsed = match provider.kind {
                        LlmKind::Openai => openai::response(&json),
                        LlmKind::Anthropic => {
                            anthropic::response(&json, request.response_schema.is_some())
                        }
                    };
                    return parsed.map_err(|e| {
                        ToolError::Failed(format!("{url}: an answer this host cannot read: {e}"))
                    });
                }
                429 => {
                    let wait = retry_after.unwrap_or(Duration::from_secs(1));
                    let fits = Instant::now() + wait < deadline;
                    if waits < MAX_RATE_LIMIT_WAITS && wait <= MAX_RETRY_AFTER && fits {
                        waits += 1;
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    return Err(ToolError::Limited(format!(
                        "the provider is rate limiting (429, Retry-After: {} s): {}",
                        wait.as_secs(),
                        message()
                    )));
                }
                400 | 404 | 413 | 422 => {
                    return Err(ToolError::Invalid(format!(
                        "the provider refused the request ({status}): {}",
                        message()
                    )));
                }
                401 | 403 => {
                    return Err(ToolError::Failed(format!(
                        "the provider refused the host's API key ({status}; check [llm.providers] api_key): {}",
                        message()
                    )));
                }
                _ => {
                    return Err(ToolError::Failed(format!(
                        "the provider answered {status}: {}",
                        message()
                    )));
                }
            }
        }
    }
}

/// One POST: the status, a `Retry-After` in seconds, and the body as JSON (Null when
/// it is not JSON).
async fn post(
    llm: &Providers,
    provider: &LlmProvider,
    url: &str,
    body: Bytes,
) -> Result<(u16, Option<Duration>, Value), ToolError> {
    let mut req = http::Request::post(url).header("content-type", "application/json");
    req = match provider.kind {
        LlmKind::Openai => req.header(
            "authorization",
            format!("Bearer {}", provider.api_key.expose()),
        ),
        LlmKind::Anthropic => req
            .header("x-api-key", provider.api_key.expose())
            .header("anthropic-version", anthropic::VERSION),
    };
    let req = req
        .body(Full::new(body))
        .map_err(|e| ToolError::Failed(format!("cannot build the request to {url}: {e}")))?;
    let resp = llm
        .client
        .request(req)
        .await
        .map_err(|e| ToolError::Failed(format!("{url}: {e}")))?;
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let bytes = Limited::new(resp.into_body(), MAX_RESPONSE_BYTES)
        .collect()
        .await
        .map_err(|e| ToolError::Failed(format!("{url}: reading the answer: {e}")))?
        .to_bytes();
    Ok((
        status,
        retry_after,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

/// Refuse what no provider would take, before spending anything.
fn validate(r: &Request) -> Result<(), ToolError> {
    let invalid = |m: String| Err(ToolError::Invalid(m));
    if r.messages.is_empty() {
        return invalid("`messages` is empty".into());
    }
    if r.messages.len() > MAX_MESSAGES {
        return invalid(format!(
            "{} messages; the limit is {MAX_MESSAGES}",
            r.messages.len()
        ));
    }
    if r.model.is_empty() {
        return invalid("`model` is empty".into());
    }
    let bytes: usize = r
        .messages
        .iter()
        .map(|m| {
            m.content.len()
                + m.tool_calls
                    .iter()
                    .map(|c| c.arguments.len())
                    .sum::<usize>()
        })
        .sum::<usize>()
        + r.tools
            .iter()
            .map(|t| t.parameters.len() + t.description.len())
            .sum::<usize>()
        + r.response_schema.as_ref().map_or(0, String::len);
    if bytes > MAX_REQUEST_BYTES {
        return invalid(format!(
            "the request is {bytes} bytes; the limit is {MAX_REQUEST_BYTES}"
        ));
    }
    if r.max_tokens == Some(0) {
        return invalid("`max-tokens` is 0".into());
    }
    if r.temperature.is_some_and(|t| !(0.0..=2.0).contains(&t)) {
        return invalid("`temperature` must be between 0 and 2".into());
    }
    for t in &r.tools {
        schema(&t.parameters, "tools.parameters").map_err(ToolError::Invalid)?;
    }
    if let Some(s) = &r.response_schema {
        schema(s, "response-schema").map_err(ToolError::Invalid)?;
    }
    Ok(())
}

/// A JSON Schema given as JSON text: it must be a JSON object.
pub(super) fn schema(text: &str, what: &str) -> Result<Value, String> {
    match serde_json::from_str::<Value>(text) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(format!("`{what}` must be a JSON object (a JSON Schema)")),
        Err(e) => Err(format!("`{what}` is not JSON: {e}")),
    }
}

/// The request as one JSON value: what its journal hash covers.
fn canonical(r: &Request) -> Value {
    json!({
        "model": r.model,
        "messages": r.messages.iter().map(|m| json!([
            role(m.role), m.content, m.tool_call_id,
            m.tool_calls.iter().map(|c| [&c.id, &c.name, &c.arguments]).collect::<Vec<_>>(),
        ])).collect::<Vec<_>>(),
        "max_tokens": r.max_tokens,
        "temperature": r.temperature,
        "tools": r.tools.iter().map(|t| [&t.name, &t.description, &t.parameters]).collect::<Vec<_>>(),
        "response_schema": r.response_schema,
    })
}

fn role(r: Role) -> &'static str {
    match r {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
    }
}

/// A response as the journal records it.
fn encode(r: &Response) -> Value {
    json!({
        "content": r.content,
        "tool_calls": r.tool_calls.iter().map(|c| json!({"id": c.id, "name": c.name, "arguments": c.arguments})).collect::<Vec<_>>(),
        "finish_reason": r.finish_reason,
        "model": r.model,
        "input_tokens": r.usage.input_tokens,
        "output_tokens": r.usage.output_tokens,
    })
}

/// A response as the journal recorded it.
fn decode(v: Value) -> Result<Response, ToolError> {
    let text = |k: &str| v[k].as_str().map(str::to_string);
    let tokens = |k: &str| v[k].as_u64().and_then(|n| u32::try_from(n).ok());
    let calls = v["tool_calls"].as_array().map(|a| {
        a.iter()
            .filter_map(|c| {
                Some(ToolCall {
                    id: c["id"].as_str()?.to_string(),
                    name: c["name"].as_str()?.to_string(),
                    arguments: c["arguments"].as_str()?.to_string(),
                })
            })
            .collect()
    });
    let unreadable = || ToolError::Failed("the journal's record of this call is unreadable".into());
    Ok(Response {
        content: text("content").ok_or_else(unreadable)?,
        tool_calls: calls.ok_or_else(unreadable)?,
        finish_reason: text("finish_reason").ok_or_else(unreadable)?,
        model: text("model").ok_or_else(unreadable)?,
        usage: Usage {
            input_tokens: tokens("input_tokens").ok_or_else(unreadable)?,
            output_tokens: tokens("output_tokens").ok_or_else(unreadable)?,
        },
    })
}

/// Text for a log line: at most [`LOGGED_TEXT`] bytes, cut on a char boundary.
fn cut(text: &str) -> String {
    if text.len() <= LOGGED_TEXT {
        return text.to_string();
    }
    let mut end = LOGGED_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} more bytes)", &text[..end], text.len() - end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wit::agenthook::plugin::llm::{Message, ToolDefinition};

    fn request() -> Request {
        Request {
            model: "m".into(),
            messages: vec![
                Message {
                    role: Role::System,
                    content: "be brief".into(),
                    tool_call_id: None,
                    tool_calls: vec![],
                },
                Message {
                    role: Role::User,
                    content: "hi".into(),
                    tool_call_id: None,
                    tool_calls: vec![],
                },
            ],
            max_tokens: None,
            temperature: Some(0.5),
            tools: vec![ToolDefinition {
                name: "lookup".into(),
                description: "d".into(),
                parameters: r#"{"type":"object"}"#.into(),
            }],
            response_schema: None,
        }
    }

    #[test]
    fn bodies_follow_each_wire_format_with_streaming_off() {
        let o = openai::body(&request()).unwrap();
        assert_eq!(o["stream"], false);
        assert_eq!(
            o["messages"][0],
            json!({"role": "system", "content": "be brief"})
        );
        assert_eq!(
            o["tools"][0]["function"]["parameters"],
            json!({"type": "object"})
        );
        assert_eq!(o["max_tokens"], DEFAULT_MAX_TOKENS);
        let a = anthropic::body(&request()).unwrap();
        assert_eq!(a["stream"], false);
        assert_eq!(a["system"], "be brief");
        assert_eq!(a["messages"], json!([{"role": "user", "content": "hi"}]));
        assert_eq!(a["tools"][0]["input_schema"], json!({"type": "object"}));
        let mut structured = request();
        structured.response_schema = Some(r#"{"type":"object"}"#.into());
        let a = anthropic::body(&structured).unwrap();
        assert_eq!(a["tool_choice"], json!({"type": "tool", "name": "respond"}));
    }

    #[test]
    fn bad_requests_are_refused_before_any_call() {
        let mut r = request();
        r.messages.clear();
        assert!(matches!(validate(&r), Err(ToolError::Invalid(_))));
        let mut r = request();
        r.tools[0].parameters = "[1]".into();
        assert!(matches!(validate(&r), Err(ToolError::Invalid(m)) if m.contains("JSON object")));
        let mut r = request();
        r.temperature = Some(f32::NAN);
        assert!(validate(&r).is_err());
        assert!(validate(&request()).is_ok());
    }

    #[test]
    fn journal_records_round_trip() {
        let r = Response {
            content: "c".into(),
            tool_calls: vec![ToolCall {
                id: "1".into(),
                name: "n".into(),
                arguments: "{}".into(),
            }],
            finish_reason: "stop".into(),
            model: "m".into(),
            usage: Usage {
                input_tokens: 3,
                output_tokens: 4,
            },
        };
        let back = decode(encode(&r)).unwrap();
        assert_eq!(back.content, "c");
        assert_eq!(back.tool_calls[0].arguments, "{}");
        assert_eq!(back.usage.output_tokens, 4);
        assert!(decode(json!({"content": 1})).is_err());
    }
}
