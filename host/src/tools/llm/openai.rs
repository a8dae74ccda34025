//! The OpenAI chat completions wire format (`POST {base_url}/chat/completions`), also
//! spoken by most OpenAI-compatible servers: the request body, the answer, the error.

use serde_json::{Value, json};

use crate::wit::agenthook::plugin::llm::{Request, Response, Role, ToolCall, Usage};

pub const PATH: &str = "/chat/completions";

/// The request body. Streaming is always off: the tool returns whole answers.
pub fn body(req: &Request) -> Result<Value, String> {
    let messages: Vec<Value> = req
        .messages
        .iter()
        .map(|m| {
            let mut v = json!({ "role": role(m.role), "content": m.content });
            if let Some(id) = &m.tool_call_id {
                v["tool_call_id"] = json!(id);
            }
            if !m.tool_calls.is_empty() {
                v["tool_calls"] = json!(
                    m.tool_calls
                        .iter()
                        .map(|c| json!({
                            "id": c.id,
                            "type": "function",
                            "function": {"name": c.name, "arguments": c.arguments},
                        }))
                        .collect::<Vec<_>>()
                );
            }
            v
        })
        .collect();
    let mut body = json!({
        "model": req.model,
        "messages": messages,
        "max_tokens": req.max_tokens.unwrap_or(super::DEFAULT_MAX_TOKENS),
        "stream": false,
    });
    if let Some(t) = req.temperature {
        body["temperature"] = json!(t);
    }
    if !req.tools.is_empty() {
        let mut tools = Vec::with_capacity(req.tools.len());
        for t in &req.tools {
            tools.push(json!({
                "type": "function",
                "function": {
                    "name": t.name,
                    "description": t.description,
                    "parameters": super::schema(&t.parameters, "tools.parameters")?,
                },
            }));
        }
        body["tools"] = json!(tools);
    }
    if let Some(schema) = &req.response_schema {
        body["response_format"] = json!({
            "type": "json_schema",
            "json_schema": {
                "name": "response",
                "strict": true,
                "schema": super::schema(schema, "response-schema")?,
            },
        });
    }
    Ok(body)
}

fn role(r: Role) -> &'static str {
    match r {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
    }
}

/// The answer of a 2xx response.
pub fn response(v: &Value) -> Result<Response, String> {
    let choice = v["choices"].get(0).ok_or("the answer has no choices[0]")?;
    let message = &choice["message"];
    let tool_calls = message["tool_calls"]
        .as_array()
        .map(|calls| {
            calls
                .iter()
                .map(|c| ToolCall {
                    id: text(&c["id"]),
                    name: text(&c["function"]["name"]),
                    arguments: text(&c["function"]["arguments"]),
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Response {
        content: text(&message["content"]),
        tool_calls,
        finish_reason: text(&choice["finish_reason"]),
        model: text(&v["model"]),
        usage: Usage {
            input_tokens: count(&v["usage"]["prompt_tokens"]),
            output_tokens: count(&v["usage"]["completion_tokens"]),
        },
    })
}

/// The message of an error response (`{"error": {"message", "type", …}}`).
pub fn error(v: &Value) -> Option<String> {
    let e = &v["error"];
    let message = e["message"].as_str().or_else(|| e.as_str())?;
    Some(match e["type"].as_str().or_else(|| e["code"].as_str()) {
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
