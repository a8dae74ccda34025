//! `test-journal` — TEST-ONLY plugin: makes the effectful tool calls its event lists, in
//! order, then traps (panics) on every attempt before `trap_until_attempt`.
//!
//! Body: `{"calls": [call…], "attempt_calls": {"N": [call…]}, "trap_until_attempt": n}`
//! where a call is `{"tool": "post", "url", "body"}`, `{"tool": "email", "to"}` or
//! `{"tool": "emit", "type"}`; `attempt_calls` replaces `calls` on attempt N (a handler
//! that changes its calls between attempts). Each result (`ok …` or the tool error) is
//! stored, in order, as a JSON array under `result/{event id}/{attempt}` in kv before
//! the trap.

use std::collections::BTreeMap;

use agenthook_sdk::email::{self, Email};
use agenthook_sdk::{Event, HandlerError, events, http, kv};
use serde::Deserialize;

#[derive(Deserialize, Default)]
#[serde(default)]
struct Plan {
    calls: Vec<Call>,
    attempt_calls: BTreeMap<String, Vec<Call>>,
    trap_until_attempt: u32,
}

#[derive(Deserialize)]
#[serde(tag = "tool", rename_all = "lowercase")]
enum Call {
    Post {
        url: String,
        body: String,
    },
    Email {
        to: String,
    },
    Emit {
        #[serde(rename = "type")]
        event_type: String,
    },
}

fn handle(event: Event) -> Result<(), HandlerError> {
    let plan: Plan = event.json()?;
    let calls = plan
        .attempt_calls
        .get(&event.attempt.to_string())
        .unwrap_or(&plan.calls);
    let mut results = Vec::new();
    for call in calls {
        let result = match call {
            Call::Post { url, body } => http::post(url.clone())
                .header("content-type", "text/plain")
                .body(body.clone())
                .send()
                .map(|r| format!("{} {}", r.status, r.text().unwrap_or("<binary>"))),
            Call::Email { to } => email::send(
                Email::to(to.clone())
                    .subject(format!("journal {}", event.event_id))
                    .text("sent once"),
            ),
            Call::Emit { event_type } => {
                events::emit_json(event_type, r#"{"from":"test-journal"}"#, None)
            }
        };
        results.push(match result {
            Ok(ok) => format!("ok {ok}"),
            Err(e) => e.to_string(),
        });
    }
    kv::set_json(
        &format!("result/{}/{}", event.event_id, event.attempt),
        &results,
    )?;
    if event.attempt < plan.trap_until_attempt {
        panic!("test-journal: trap on attempt {}", event.attempt);
    }
    Ok(())
}

agenthook_sdk::plugin!(handle);
