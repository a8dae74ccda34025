//! Chat completions through a model provider the operator configured in the host.
//!
//! The host holds the API key; the manifest grants a provider, the models (globs) the
//! plugin may call and an hourly token budget:
//! `[grants] llm = { provider = "openai", models = ["gpt-4o-mini"], max_tokens_per_hour = 100000 }`.
//! A model the grant does not list is [`ToolError::Denied`]; a spent budget, or a
//! provider rate limiting for long, is [`ToolError::Limited`] (the handler's `?` turns
//! it into a retry). Calls are journaled: when an attempt fails after a call, the retry
//! gets the recorded answer instead of paying for a new one.
//!
//! ```no_run
//! use agenthook_sdk::{HandlerError, llm::Chat};
//! # fn run() -> Result<(), HandlerError> {
//! let answer = Chat::new("gpt-4o-mini")
//!     .system("Summarise alerts for the on-call engineer in one sentence.")
//!     .user("disk /var at 97% on db-1")
//!     .max_tokens(100)
//!     .send()?;
//! println!("{} ({} tokens)", answer.content, answer.input_tokens + answer.output_tokens);
//!
//! #[derive(serde::Deserialize)]
//! struct Triage { severity: String }
//! let triage: Triage = Chat::new("gpt-4o-mini")
//!     .user("disk /var at 97% on db-1: how bad?")
//!     .json_schema(&serde_json::json!({
//!         "type": "object",
//!         "properties": {"severity": {"type": "string", "enum": ["low", "high"]}},
//!         "required": ["severity"],
//!         "additionalProperties": false,
//!     }))
//!     .send()?
//!     .json()?;
//! # Ok(()) }
//! ```

use serde::de::DeserializeOwned;

use crate::abi::llm as wit;
use crate::{HandlerError, ToolError};

/// A tool call the model asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    /// Answer it with [`Chat::tool_result`] and this id.
    pub id: String,
    /// The name of the offered function it calls.
    pub name: String,
    /// The arguments as JSON text.
    pub arguments: String,
}

impl ToolCall {
    /// The arguments parsed into `T`.
    pub fn arguments<T: DeserializeOwned>(&self) -> Result<T, HandlerError> {
        Ok(serde_json::from_str(&self.arguments)?)
    }
}

/// The model's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The text (JSON text when the request had a [`Chat::json_schema`]).
    pub content: String,
    /// Functions the model called instead of (or besides) answering.
    pub tool_calls: Vec<ToolCall>,
    /// Why the model stopped, as the provider says (`stop`, `end_turn`, `length`, …).
    pub finish_reason: String,
    /// The model that answered.
    pub model: String,
    /// Tokens of the prompt, as the provider counted them.
    pub input_tokens: u32,
    /// Tokens of the answer, as the provider counted them.
    pub output_tokens: u32,
}

impl Answer {
    /// The content parsed as JSON into `T` (for answers to a [`Chat::json_schema`]).
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, HandlerError> {
        Ok(serde_json::from_str(&self.content)?)
    }
}

/// A chat completion request being built; [`Chat::send`] sends it.
#[derive(Debug, Clone)]
pub struct Chat {
    request: wit::Request,
}

impl Chat {
    /// A request to `model` (one the manifest's `grants.llm.models` allows).
    pub fn new(model: impl Into<String>) -> Chat {
        Chat {
            request: wit::Request {
                model: model.into(),
                messages: Vec::new(),
                max_tokens: None,
                temperature: None,
                tools: Vec::new(),
                response_schema: None,
            },
        }
    }

    fn message(mut self, role: wit::Role, content: String, call: Option<String>) -> Chat {
        self.request.messages.push(wit::Message {
            role,
            content,
            tool_call_id: call,
            tool_calls: Vec::new(),
        });
        self
    }

    /// Add a system message (instructions).
    pub fn system(self, text: impl Into<String>) -> Chat {
        self.message(wit::Role::System, text.into(), None)
    }

    /// Add a user message.
    pub fn user(self, text: impl Into<String>) -> Chat {
        self.message(wit::Role::User, text.into(), None)
    }

    /// Add an earlier answer of the model (to continue a conversation), with the tool
    /// calls it made.
    pub fn assistant(mut self, answer: &Answer) -> Chat {
        self.request.messages.push(wit::Message {
            role: wit::Role::Assistant,
            content: answer.content.clone(),
            tool_call_id: None,
            tool_calls: answer
                .tool_calls
                .iter()
                .map(|c| wit::ToolCall {
                    id: c.id.clone(),
                    name: c.name.clone(),
                    arguments: c.arguments.clone(),
                })
                .collect(),
        });
        self
    }

    /// Add the result of the tool call `call_id`.
    pub fn tool_result(self, call_id: impl Into<String>, content: impl Into<String>) -> Chat {
        self.message(wit::Role::Tool, content.into(), Some(call_id.into()))
    }

    /// Generate at most `n` tokens (default 1024).
    pub fn max_tokens(mut self, n: u32) -> Chat {
        self.request.max_tokens = Some(n);
        self
    }

    /// Sampling temperature, 0 to 2.
    pub fn temperature(mut self, t: f32) -> Chat {
        self.request.temperature = Some(t);
        self
    }

    /// Offer a function the model may call; `parameters` is its JSON Schema.
    pub fn tool(
        mut self,
        name: impl Into<String>,
        description: impl Into<String>,
        parameters: &serde_json::Value,
    ) -> Chat {
        self.request.tools.push(wit::ToolDefinition {
            name: name.into(),
            description: description.into(),
            parameters: parameters.to_string(),
        });
        self
    }

    /// Ask for an answer that follows this JSON Schema; read it with [`Answer::json`].
    pub fn json_schema(mut self, schema: &serde_json::Value) -> Chat {
        self.request.response_schema = Some(schema.to_string());
        self
    }

    /// Send the request and wait for the whole answer.
    pub fn send(self) -> Result<Answer, ToolError> {
        let r = wit::chat(&self.request).map_err(ToolError::from)?;
        Ok(Answer {
            content: r.content,
            tool_calls: r
                .tool_calls
                .into_iter()
                .map(|c| ToolCall {
                    id: c.id,
                    name: c.name,
                    arguments: c.arguments,
                })
                .collect(),
            finish_reason: r.finish_reason,
            model: r.model,
            input_tokens: r.usage.input_tokens,
            output_tokens: r.usage.output_tokens,
        })
    }
}

/// One question to `model`: a single user message.
pub fn ask(model: &str, prompt: impl Into<String>) -> Result<Answer, ToolError> {
    Chat::new(model).user(prompt).send()
}
