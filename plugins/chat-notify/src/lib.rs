//! `chat-notify` — posts incident events from `incident-triage` to a chat webhook
//! (Slack-style incoming webhook: `POST {"text": …}` to `webhook_url`). A 5xx or 429
//! from the chat service is retried with backoff; other 4xx are permanent. A new
//! incident's model-written brief (`brief_by = "llm"`) is quoted under the headline.

use agenthook_sdk::{Event, HandlerError, config, http, log};
use serde::Deserialize;

#[derive(Deserialize)]
struct Incident {
    fingerprint: String,
    service: String,
    severity: String,
    summary: String,
    count: u64,
    #[serde(default)]
    brief: Option<String>,
    #[serde(default)]
    brief_by: Option<String>,
}

fn handle(event: Event) -> Result<(), HandlerError> {
    let incident: Incident = event.json()?;
    let url = config::require("webhook_url")?;
    let text = match event.event_type.as_str() {
        "incident.opened" if incident.count > 1 => format!(
            ":rotating_light: still firing ({}x): [{}] {} — {}",
            incident.count, incident.severity, incident.service, incident.summary
        ),
        "incident.opened" => {
            let mut text = format!(
                ":rotating_light: [{}] {} — {}",
                incident.severity, incident.service, incident.summary
            );
            if let (Some(brief), Some("llm")) = (&incident.brief, incident.brief_by.as_deref()) {
                text.push_str(&format!("\n> {brief}"));
            }
            text
        }
        "incident.resolved" => format!(
            ":white_check_mark: resolved: {} — {}",
            incident.service, incident.summary
        ),
        other => {
            log::info(format!("ignoring {other}"));
            return Ok(());
        }
    };
    http::post(url)
        .json(&serde_json::json!({ "text": text, "incident": incident.fingerprint }))?
        .send()?
        .error_for_status()?;
    log::info(format!(
        "posted {} for {}",
        event.event_type, incident.fingerprint
    ));
    Ok(())
}

agenthook_sdk::plugin!(handle);
