//! `test-tool-probe` — TEST-ONLY plugin: calls the network tools as the event body
//! says and records what each call returned.
//!
//! Body: `{"fetch": [url…], "timeout_ms": n?, "email": [recipient…], "emit": [{"type",
//! "key"?, "body"?}…], "strict": bool, "retry_first_attempt": bool}`. Each result (`ok …` or the tool
//! error's text) is logged and stored, in order, as a JSON array under
//! `result/{event id}/{attempt}` in kv. An emit without `body` re-emits this event's own
//! body (a loop when the plugin subscribes to its own events). With `strict`, the first
//! failing call fails the handler through `?`; with `retry_first_attempt`, attempt 1
//! ends with a retry after its calls.

use agenthook_sdk::email::{self, Email};
use agenthook_sdk::{Event, HandlerError, events, http, kv, log};
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize, Default)]
#[serde(default)]
struct Plan {
    fetch: Vec<String>,
    timeout_ms: Option<u64>,
    email: Vec<String>,
    emit: Vec<Emit>,
    strict: bool,
    retry_first_attempt: bool,
}

#[derive(Deserialize)]
struct Emit {
    #[serde(rename = "type")]
    event_type: String,
    key: Option<String>,
    body: Option<Value>,
}

fn handle(event: Event) -> Result<(), HandlerError> {
    let plan: Plan = event.json()?;
    let own_body = event.body_str().unwrap_or("{}").to_string();
    let mut results = Vec::new();
    let mut first_error: Option<HandlerError> = None;
    let mut record = |result: Result<String, agenthook_sdk::ToolError>| {
        let line = match result {
            Ok(ok) => format!("ok {ok}"),
            Err(err) => {
                let line = err.to_string();
                first_error.get_or_insert(HandlerError::from(err));
                line
            }
        };
        log::info(format!("test-tool-probe: {line}"));
        results.push(line);
    };

    for url in &plan.fetch {
        let mut request = http::get(url.clone());
        if let Some(ms) = plan.timeout_ms {
            request = request.timeout(std::time::Duration::from_millis(ms));
        }
        record(
            request
                .send()
                .map(|r| format!("{} {}", r.status, r.text().unwrap_or("<binary>"))),
        );
    }
    for to in &plan.email {
        record(email::send(
            Email::to(to.clone())
                .subject(format!("probe {}", event.event_id))
                .text("probe"),
        ));
    }
    for emit in &plan.emit {
        let json = match &emit.body {
            Some(body) => body.to_string(),
            None => own_body.clone(),
        };
        record(events::emit_json(
            &emit.event_type,
            &json,
            emit.key.as_deref(),
        ));
    }

    kv::set_json(
        &format!("result/{}/{}", event.event_id, event.attempt),
        &results,
    )?;
    if plan.strict
        && let Some(err) = first_error
    {
        return Err(err);
    }
    if plan.retry_first_attempt && event.attempt == 1 {
        return Err(HandlerError::retry("retry_first_attempt"));
    }
    Ok(())
}

agenthook_sdk::plugin!(handle);
