//! The Anthropic messages wire format (`POST {base_url}/messages`): the request body,
//! the answer, the error. System messages go to the top-level `system` text; tool
//! results are `tool_result` blocks of a user turn. A response schema is asked for as
//! the one tool the model must call (`respond`), whose input is the answer.

use serde_json::{Value, json};

use crate::wit::agenthook::plugin::llm::{Request, Response, Role, ToolCall, Usage};

pub const PATH: &str = "/messages";
pub const VERSION: &str = "2023-06-01";
/// The forced tool that carries a structured answer.
const RESPOND: &str = "respond";

pub fn body(req: &Request) -> Result<Value, String> {
    let mut system = Vec::new();
    let mut messages: Vec<Value> = Vec::new();
    for m in &req.messages {
        match m.role {
            Role::System => system.push(m.content.clone()),
            Role::User => messages.push(json!({"role": "user", "content": m.content})),
            Role::Assistant => {
                let mut blocks = Vec::new();
                if !m.content.is_empty() {
                    blocks.push(json!({"type": "text", "text": m.content}));
                }
                for c in &m.tool_calls {
                    let input: Value = serde_json::from_str(&c.arguments).map_err(|e| {
                        format!("the arguments of tool call `{}` are not JSON: {e}", c.id)
                    })?;
                    blocks.push(
                        json!({"type": "tool_use", "id": c.id, "name": c.name, "input": input}),
                    );
                }
                messages.push(json!({"role": "assistant", "content": blocks}));
            }
            Role::Tool => {
                let id = m
                    .tool_call_id
                    .as_ref()
                    .ok_or("a tool message needs tool-call-id")?;
                messages.push(json!({
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": id, "content": m.content}],
                }));
            }
        }
    }
    let mut body = json!({
        "model": req.model,
        "max_tokens": req.max_tokens.unwrap_or(super::DEFAULT_MAX_TOKENS),
        "messages": messages,
        "stream": false,
    });
    if !system.is_empty() {
        body["system"] = json!(system.join("\n\n"));
    }
    if let Some(t) = req.temperature {
        body["temperature"] = json!(t);
    }
    let mut tools = Vec::new();
    for t in &req.tools {
        tools.push(json!({
            "name": t.name,
            "description": t.description,
            "input_schema": super::schema(&t.parameters, "tools.parameters")?,
        }));
    }
    if let Some(schema) = &req.response_schema {
        tools.push(json!({
            "name": RESPOND,
            "description": "Give the answer in the required structure.",
            "input_schema": super::schema(schema, "response-schema")?,
        }));
        body["tool_choice"] = json!({"type": "tool", "name": RESPOND});
    }
    if !tools.is_empty() {
        body["tools"] = json!(tools);
    }
    Ok(body)
}

/// The answer of a 2xx response. With a response schema, the forced tool's input is
/// the content.
pub fn response(v: &Value, structured: bool) -> Result<Response, String> {
    let blocks = v["content"]
        .as_array()
        .ok_or("the answer has no content blocks")?;
    let mut content = String::new();
    let mut tool_calls = Vec::new();
    for b in blocks {
        match b["type"].as_str() {
            Some("text") => content.push_str(b["text"].as_str().unwrap_or_default()),
            Some("tool_use") if structured && b["name"] == RESPOND => {
                content = b["input"].to_string();
            }
            Some("tool_use") => tool_calls.push(ToolCall {
                id: text(&b["id"]),
                name: text(&b["name"]),
                arguments: b["input"].to_string(),
            }),
            _ => {}
        }
    }
    Ok(Response {
        content,
        tool_calls,
        finish_reason: text(&v["stop_reason"]),
        model: text(&v["model"]),
        usage: Usage {
            input_tokens: count(&v["usage"]["input_tokens"]),
            output_tokens: count(&v["usage"]["output_tokens"]),
        },
    })
}

/// The message of an error response (`{"type": "error", "error": {"type", "message"}}`).
pub fn error(v: &Value) -> Option<String> {
    let e = &v["error"];
    let message = e["message"].as_str()?;
    Some(match e["type"].as_str() {
        Some(kind) => format!("{kind}: {message}"),
        None => message.to_string(),
    })
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

fn count(v: &Value) -> u32 {
    v.as_u64()
        .map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX))
}
