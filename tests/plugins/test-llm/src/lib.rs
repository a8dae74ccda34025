//! `test-llm` — TEST-ONLY plugin: makes the `llm.chat` calls its event lists, in order,
//! and records each answer, then traps (panics) on every attempt before
//! `trap_until_attempt`.
//!
//! Body: `{"calls": [{"model", "prompt", "system"?, "schema"?, "tool"?}…],
//! "trap_until_attempt": n}`; `tool` offers one function `{"name", "parameters"}`. Each
//! result — `{"content", "tool_calls": [[id, name, arguments]…], "finish_reason",
//! "model", "input_tokens", "output_tokens"}` or `{"error": text}` — is stored, in order,
//! as a JSON array under `result/{event id}/{attempt}` in kv.

use agenthook_sdk::llm::Chat;
use agenthook_sdk::{Event, HandlerError, kv};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize, Default)]
#[serde(default)]
struct Plan {
    calls: Vec<Call>,
    trap_until_attempt: u32,
}

#[derive(Deserialize)]
struct Call {
    model: String,
    prompt: String,
    system: Option<String>,
    schema: Option<Value>,
    tool: Option<Tool>,
}

#[derive(Deserialize)]
struct Tool {
    name: String,
    parameters: Value,
}

fn handle(event: Event) -> Result<(), HandlerError> {
    let plan: Plan = event.json()?;
    let mut results = Vec::new();
    for call in &plan.calls {
        let mut chat = Chat::new(call.model.clone());
        if let Some(system) = &call.system {
            chat = chat.system(system.clone());
        }
        chat = chat.user(call.prompt.clone()).max_tokens(200);
        if let Some(schema) = &call.schema {
            chat = chat.json_schema(schema);
        }
        if let Some(tool) = &call.tool {
            chat = chat.tool(tool.name.clone(), "a test tool", &tool.parameters);
        }
        results.push(match chat.send() {
            Ok(a) => json!({
                "content": a.content,
                "tool_calls": a.tool_calls.iter().map(|c| [&c.id, &c.name, &c.arguments]).collect::<Vec<_>>(),
                "finish_reason": a.finish_reason,
                "model": a.model,
                "input_tokens": a.input_tokens,
                "output_tokens": a.output_tokens,
            }),
            Err(e) => json!({ "error": e.to_string() }),
        });
    }
    kv::set_json(
        &format!("result/{}/{}", event.event_id, event.attempt),
        &results,
    )?;
    if event.attempt < plan.trap_until_attempt {
        panic!("test-llm: trap on attempt {}", event.attempt);
    }
    Ok(())
}

agenthook_sdk::plugin!(handle);
