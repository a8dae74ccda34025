//! The tool functions with the same names, arguments and types as the generated host
//! imports, served by this thread's [`TestHost`](super::TestHost) (see `crate::abi`).

use super::{State, Tool, with_state};
use crate::bindings::agenthook::plugin::types::ToolError;

impl State {
    fn check(&self, tool: Tool) -> Result<(), ToolError> {
        if self.denied.contains(&tool) {
            return Err(ToolError::Denied(tool.denial().into()));
        }
        Ok(())
    }

    pub(super) fn kv_write(&mut self, key: &str, value: Vec<u8>) -> u64 {
        self.kv_clock += 1;
        self.kv.insert(key.to_string(), (value, self.kv_clock));
        self.kv_clock
    }
}

pub(crate) mod config {
    use super::with_state;

    pub(crate) fn get(key: &str) -> Option<String> {
        with_state(|s| s.config.get(key).cloned())
    }
}

pub(crate) mod log {
    pub(crate) use crate::bindings::agenthook::plugin::log::Level;
    use crate::testing::LogLine;

    use super::with_state;

    pub(crate) fn write(level: Level, message: &str) {
        let level = match level {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        };
        with_state(|s| {
            s.logs.push(LogLine {
                level,
                message: message.to_string(),
            })
        });
    }
}

pub(crate) mod kv {
    pub(crate) use crate::bindings::agenthook::plugin::kv::{SwapOutcome, Versioned};

    use super::{Tool, ToolError, with_state};

    fn valid(key: &str) -> Result<(), ToolError> {
        if key.is_empty() {
            return Err(ToolError::Invalid("key is empty".into()));
        }
        Ok(())
    }

    pub(crate) fn get(key: &str) -> Result<Option<Vec<u8>>, ToolError> {
        with_state(|s| {
            s.check(Tool::Kv)?;
            Ok(s.kv.get(key).map(|(v, _)| v.clone()))
        })
    }

    pub(crate) fn set(key: &str, value: &[u8]) -> Result<(), ToolError> {
        with_state(|s| {
            s.check(Tool::Kv)?;
            valid(key)?;
            s.kv_write(key, value.to_vec());
            Ok(())
        })
    }

    pub(crate) fn delete(key: &str) -> Result<bool, ToolError> {
        with_state(|s| {
            s.check(Tool::Kv)?;
            Ok(s.kv.remove(key).is_some())
        })
    }

    pub(crate) fn list_keys(
        prefix: &str,
        start_after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<String>, ToolError> {
        with_state(|s| {
            s.check(Tool::Kv)?;
            Ok(s.kv
                .keys()
                .filter(|k| k.starts_with(prefix))
                .filter(|k| start_after.is_none_or(|a| k.as_str() > a))
                .take(limit.clamp(1, 1000) as usize)
                .cloned()
                .collect())
        })
    }

    pub(crate) fn get_versioned(key: &str) -> Result<Option<Versioned>, ToolError> {
        with_state(|s| {
            s.check(Tool::Kv)?;
            Ok(s.kv.get(key).map(|(value, version)| Versioned {
                value: value.clone(),
                version: *version,
            }))
        })
    }

    pub(crate) fn compare_and_swap(
        key: &str,
        expected: Option<u64>,
        value: &[u8],
    ) -> Result<SwapOutcome, ToolError> {
        with_state(|s| {
            s.check(Tool::Kv)?;
            valid(key)?;
            let current = s.kv.get(key).map(|(value, version)| Versioned {
                value: value.clone(),
                version: *version,
            });
            if current.as_ref().map(|c| c.version) != expected {
                return Ok(SwapOutcome::Conflict(current));
            }
            Ok(SwapOutcome::Swapped(s.kv_write(key, value.to_vec())))
        })
    }

    pub(crate) fn increment(key: &str, delta: i64) -> Result<i64, ToolError> {
        with_state(|s| {
            s.check(Tool::Kv)?;
            valid(key)?;
            let current = match s.kv.get(key) {
                None => 0,
                Some((v, _)) => std::str::from_utf8(v)
                    .ok()
                    .and_then(|t| t.parse::<i64>().ok())
                    .ok_or_else(|| {
                        ToolError::Invalid(format!(
                            "the value of `{key}` is not a decimal integer; increment leaves it unchanged"
                        ))
                    })?,
            };
            let sum = current.checked_add(delta).ok_or_else(|| {
                ToolError::Invalid(format!(
                    "adding {delta} to `{key}` overflows a signed 64-bit integer; the value is unchanged"
                ))
            })?;
            s.kv_write(key, sum.to_string().into_bytes());
            Ok(sum)
        })
    }
}

pub(crate) mod http {
    pub(crate) use crate::bindings::agenthook::plugin::http::{Request, Response};
    use crate::testing::SentRequest;

    use super::{Tool, ToolError, with_state};

    pub(crate) fn fetch(request: &Request) -> Result<Response, ToolError> {
        with_state(|s| {
            s.check(Tool::Http)?;
            let method = request.method.to_ascii_uppercase();
            s.requests.push(SentRequest {
                method: method.clone(),
                url: request.url.clone(),
                headers: request.headers.clone(),
                body: request.body.clone(),
            });
            let matching: Vec<usize> = s
                .replies
                .iter()
                .enumerate()
                .filter(|(_, (m, u, _))| *m == method && *u == request.url)
                .map(|(i, _)| i)
                .collect();
            let Some(&first) = matching.first() else {
                return Err(ToolError::Failed(format!(
                    "no scripted response for {method} {} (TestHost::respond)",
                    request.url
                )));
            };
            let reply = if matching.len() > 1 {
                s.replies.remove(first).2
            } else {
                s.replies[first].2.clone()
            };
            Ok(Response {
                status: reply.status,
                headers: reply.headers,
                body: reply.body,
            })
        })
    }
}

pub(crate) mod email {
    pub(crate) use crate::bindings::agenthook::plugin::email::Message;
    use crate::testing::SentEmail;

    use super::{Tool, ToolError, with_state};

    pub(crate) fn send(message: &Message) -> Result<String, ToolError> {
        with_state(|s| {
            s.check(Tool::Email)?;
            if message.to.is_empty() {
                return Err(ToolError::Invalid("`to` is empty".into()));
            }
            let message_id = format!("<test-{}@agenthook.test>", s.emails.len() + 1);
            s.emails.push(SentEmail {
                to: message.to.clone(),
                cc: message.cc.clone(),
                subject: message.subject.clone(),
                text: message.text.clone(),
                html: message.html.clone(),
                reply_to: message.reply_to.clone(),
                message_id: message_id.clone(),
            });
            Ok(message_id)
        })
    }
}

pub(crate) mod events {
    use crate::testing::Emitted;

    use super::{Tool, ToolError, with_state};

    pub(crate) fn emit(
        event_type: &str,
        json: &str,
        key: Option<&str>,
    ) -> Result<String, ToolError> {
        with_state(|s| {
            s.check(Tool::Emit)?;
            if serde_json::from_str::<serde_json::Value>(json).is_err() {
                return Err(ToolError::Invalid("the emitted body is not JSON".into()));
            }
            // As in the host: an emit key already used in this delivery is not emitted
            // again; its id is returned.
            if let Some(k) = key
                && let Some(e) = s
                    .emits
                    .iter()
                    .find(|e| e.event_type == event_type && e.key.as_deref() == Some(k))
            {
                return Ok(e.id.clone());
            }
            let id = format!("emitted-{}", s.emits.len() + 1);
            s.emits.push(Emitted {
                event_type: event_type.to_string(),
                json: json.to_string(),
                key: key.map(str::to_string),
                id: id.clone(),
            });
            Ok(id)
        })
    }
}

pub(crate) mod llm {
    pub(crate) use crate::bindings::agenthook::plugin::llm::{
        Message, Request, Response, Role, ToolCall, ToolDefinition, Usage,
    };

    use super::{Tool, ToolError, with_state};

    pub(crate) fn chat(request: &Request) -> Result<Response, ToolError> {
        with_state(|s| {
            s.check(Tool::Llm)?;
            let last_user = request
                .messages
                .iter()
                .rev()
                .find(|m| m.role == Role::User)
                .map(|m| m.content.clone())
                .unwrap_or_default();
            s.llm_calls.push((request.model.clone(), last_user));
            let a = s.llm_answers.pop_front().ok_or_else(|| {
                ToolError::Failed("no llm answer scripted (TestHost::answer_llm)".into())
            })?;
            Ok(Response {
                content: a.content,
                tool_calls: a
                    .tool_calls
                    .into_iter()
                    .map(|c| ToolCall {
                        id: c.id,
                        name: c.name,
                        arguments: c.arguments,
                    })
                    .collect(),
                finish_reason: a.finish_reason,
                model: a.model,
                usage: Usage {
                    input_tokens: a.input_tokens,
                    output_tokens: a.output_tokens,
                },
            })
        })
    }
}
