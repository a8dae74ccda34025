//! `forward` — relays every event it receives to `target_url` (the generic "deliver to
//! my internal service" plugin), as a `POST` of the event body with its metadata in
//! headers. A 2xx is done; a 5xx, 408 or 429, or no response, is retried with the
//! host's backoff; any other status is a permanent failure. The receiver can dedupe on
//! the `idempotency-key` header, which is the same on every attempt.

use agenthook_sdk::{Event, HandlerError, ToolError, config, http, log};

fn handle(event: Event) -> Result<(), HandlerError> {
    let url = config::require("target_url")?;
    let content_type = event
        .header("content-type")
        .unwrap_or("application/octet-stream")
        .to_string();
    let response = http::post(url)
        .header("content-type", content_type)
        .header("idempotency-key", event.idempotency_key.clone())
        .header("x-agenthook-event-id", event.id.clone())
        .header("x-agenthook-source", event.source.clone())
        .header("x-agenthook-event-type", event.event_type.clone())
        .header("x-agenthook-attempt", event.attempt.to_string())
        .body(event.body.clone())
        .send()
        .map_err(|err| match err {
            // No response at all (connection refused, timeout): the service may be back
            // later, so retry.
            ToolError::Failed(why) => HandlerError::retry(format!("no response: {why}")),
            other => HandlerError::from(other),
        })?;
    let status = response.status;
    response.error_for_status()?;
    log::info(format!("forwarded {} ({status})", event.id));
    Ok(())
}

agenthook_sdk::plugin!(handle);
