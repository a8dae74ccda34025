//! `incident-triage` — monitoring alerts → dedupe the noise in kv → emit
//! `incident.opened` / `incident.resolved` for the plugins that tell people (see
//! `chat-notify`).
//!
//! Monitors re-fire the same alert every few minutes while it lasts. An alert is
//! identified by its `fingerprint`; the first `firing` opens an incident (kv
//! `open/{fingerprint}`), repeats within `repeat_after_secs` (default 3600) only bump
//! its count, and `resolved` closes it. Only severities at or above `min_severity`
//! (default `warning`) open incidents.

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
