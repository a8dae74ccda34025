//! `incident-triage` — monitoring alerts → dedupe the noise in kv → emit
//! `incident.opened` / `incident.resolved` for the plugins that tell people (see
//! `chat-notify`).
//!
//! Monitors re-fire the same alert every few minutes while it lasts. An alert is
//! identified by its `fingerprint`; the first `firing` opens an incident (kv
//! `open/{fingerprint}`), repeats within `repeat_after_secs` (default 3600) only bump
//! its count, and `resolved` closes it. Only severities at or above `min_severity`
//! (default `warning`) open incidents.
//!
//! An opened incident carries a `brief`: with `llm_model` in `[config]` (and a
//! `grants.llm` allowing it), a one-sentence summary written by the model; without
//! it, or when the model cannot answer (not configured, budget spent, provider down),
//! the alert's own `[severity] service: summary` — the incident is never held back for
//! the model. `brief_by` says which (`llm` or `alert`).

use agenthook_sdk::llm::Chat;
use agenthook_sdk::{Event, HandlerError, config, events, kv, log};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Alert {
    fingerprint: String,
    status: String,
    #[serde(default = "default_severity")]
    severity: String,
    service: String,
    summary: String,
    /// When the monitor saw it, in seconds since the Unix epoch.
    starts_at: Option<u64>,
}

fn default_severity() -> String {
    "warning".into()
}

/// What `open/{fingerprint}` holds.
#[derive(Serialize, Deserialize)]
struct Incident {
    service: String,
    severity: String,
    summary: String,
    opened_at_ms: u64,
    last_seen_ms: u64,
    count: u64,
}

#[derive(Serialize)]
struct IncidentEvent<'a> {
    fingerprint: &'a str,
    service: &'a str,
    severity: &'a str,
    summary: &'a str,
    count: u64,
    /// Opened incidents: a one-line brief for people, and who wrote it.
    #[serde(skip_serializing_if = "Option::is_none")]
    brief: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    brief_by: Option<&'static str>,
}

/// A one-sentence brief of a new incident: from the model named by `llm_model` when
/// there is one and it answers, else from the alert itself.
fn brief(alert: &Alert) -> (String, &'static str) {
    let fallback = format!("[{}] {}: {}", alert.severity, alert.service, alert.summary);
    let Some(model) = config::get("llm_model") else {
        return (fallback, "alert");
    };
    let answer = Chat::new(model)
        .system(
            "You brief the on-call engineer. In one sentence of at most 30 words, say what \
             is affected and how badly. No preamble.",
        )
        .user(format!(
            "service: {}\nseverity: {}\nalert: {}",
            alert.service, alert.severity, alert.summary
        ))
        .max_tokens(80)
        .temperature(0.2)
        .send();
    match answer {
        Ok(a) if !a.content.trim().is_empty() => (a.content.trim().to_string(), "llm"),
        Ok(_) => (fallback, "alert"),
        Err(e) => {
            log::warn(format!("no llm brief ({e}); using the alert's summary"));
            (fallback, "alert")
        }
    }
}

fn rank(severity: &str) -> u8 {
    match severity {
        "critical" => 3,
        "error" => 2,
        "warning" => 1,
        _ => 0,
    }
}

fn handle(event: Event) -> Result<(), HandlerError> {
    let alert: Alert = event.json()?;
    let key = format!("open/{}", alert.fingerprint);
    let open = kv::get_json::<Incident>(&key)?;
    let now = alert
        .starts_at
        .map_or(event.received_at_ms, |s| s.saturating_mul(1000));

    match (alert.status.as_str(), open) {
        ("resolved", Some(incident)) => {
            kv::delete(&key)?;
            events::emit(
                "incident.resolved",
                &IncidentEvent {
                    fingerprint: &alert.fingerprint,
                    service: &incident.service,
                    severity: &incident.severity,
                    summary: &incident.summary,
                    count: incident.count,
                    brief: None,
                    brief_by: None,
                },
            )?;
            log::info(format!("incident {} resolved", alert.fingerprint));
        }
        ("resolved", None) => log::info(format!("{} resolved; it was not open", alert.fingerprint)),
        ("firing", Some(mut incident)) => {
            let repeat_after =
                config::get_parsed::<u64>("repeat_after_secs")?.unwrap_or(3600) * 1000;
            incident.count += 1;
            let stale = now.saturating_sub(incident.last_seen_ms) >= repeat_after;
            incident.last_seen_ms = now;
            kv::set_json(&key, &incident)?;
            if stale {
                events::emit(
                    "incident.opened",
                    &IncidentEvent {
                        fingerprint: &alert.fingerprint,
                        service: &incident.service,
                        severity: &incident.severity,
                        summary: &incident.summary,
                        count: incident.count,
                        brief: None,
                        brief_by: None,
                    },
                )?;
                log::info(format!(
                    "incident {} still firing; re-announced",
                    alert.fingerprint
                ));
            } else {
                log::info(format!(
                    "duplicate alert {} suppressed ({} so far)",
                    alert.fingerprint, incident.count
                ));
            }
        }
        ("firing", None) => {
            let min = config::get("min_severity").unwrap_or_else(|| "warning".into());
            if rank(&alert.severity) < rank(&min) {
                log::info(format!(
                    "{} is {}: below {min}",
                    alert.fingerprint, alert.severity
                ));
                return Ok(());
            }
            let (brief, brief_by) = brief(&alert);
            let incident = Incident {
                service: alert.service,
                severity: alert.severity,
                summary: alert.summary,
                opened_at_ms: now,
                last_seen_ms: now,
                count: 1,
            };
            kv::set_json(&key, &incident)?;
            events::emit(
                "incident.opened",
                &IncidentEvent {
                    fingerprint: &alert.fingerprint,
                    service: &incident.service,
                    severity: &incident.severity,
                    summary: &incident.summary,
                    count: 1,
                    brief: Some(brief),
                    brief_by: Some(brief_by),
                },
            )?;
            log::info(format!("incident {} opened", alert.fingerprint));
        }
        (other, _) => {
            return Err(HandlerError::permanent(format!(
                "alert status `{other}` is neither firing nor resolved"
            )));
        }
    }
    Ok(())
}

agenthook_sdk::plugin!(handle);

#[cfg(test)]
mod tests {
    use agenthook_sdk::llm::Answer;
    use agenthook_sdk::testing::{self, TestHost, Tool};
    use serde_json::{Value, json};

    use super::*;

    fn firing() -> Event {
        testing::event("alert.firing")
            .json(&json!({
                "fingerprint": "db-disk",
                "status": "firing",
                "severity": "critical",
                "service": "db",
                "summary": "disk /var at 97%",
            }))
            .build()
    }

    fn answer(text: &str) -> Answer {
        Answer {
            content: text.into(),
            tool_calls: vec![],
            finish_reason: "stop".into(),
            model: "gpt-4o-mini".into(),
            input_tokens: 30,
            output_tokens: 10,
        }
    }

    #[test]
    fn a_new_incident_is_briefed_by_the_model_when_one_is_configured() {
        let host = TestHost::new().config("llm_model", "gpt-4o-mini");
        host.answer_llm(answer("The db host is almost out of disk."));
        handle(firing()).unwrap();
        assert_eq!(host.llm_calls()[0].0, "gpt-4o-mini");
        assert!(host.llm_calls()[0].1.contains("disk /var at 97%"));
        let opened: Value = host.emits()[0].body();
        assert_eq!(opened["brief"], "The db host is almost out of disk.");
        assert_eq!(opened["brief_by"], "llm");
    }

    #[test]
    fn without_a_model_or_a_grant_the_alert_is_the_brief() {
        let host = TestHost::new();
        handle(firing()).unwrap();
        assert!(host.llm_calls().is_empty());
        let opened: Value = host.emits()[0].body();
        assert_eq!(opened["brief"], "[critical] db: disk /var at 97%");
        assert_eq!(opened["brief_by"], "alert");

        let host = TestHost::new()
            .config("llm_model", "gpt-4o-mini")
            .deny(Tool::Llm);
        handle(firing()).unwrap();
        assert_eq!(host.emits()[0].body::<Value>()["brief_by"], "alert");
        assert!(host.logged("no llm brief (denied: llm is not granted"));
    }
}
