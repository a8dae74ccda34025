//! `sales-notify` — the second agent of the lead chain: takes `lead.scored` events
//! from `lead-router` and emails the hot ones to sales (`sales_to`); warm and cold leads
//! are only logged.

use agenthook_sdk::email::{self, Email};
use agenthook_sdk::{Event, HandlerError, config, log};
use serde::Deserialize;

#[derive(Deserialize)]
struct ScoredLead {
    submission_id: String,
    email: String,
    name: Option<String>,
    company: Option<Company>,
    score: u32,
    tier: String,
    #[serde(default)]
    reasons: Vec<String>,
}

#[derive(Deserialize)]
struct Company {
    name: String,
    employees: Option<u64>,
}

fn handle(event: Event) -> Result<(), HandlerError> {
    let lead: ScoredLead = event.json()?;
    if lead.tier != "hot" {
        log::info(format!(
            "lead {} is {} ({}): no email",
            lead.submission_id, lead.tier, lead.score
        ));
        return Ok(());
    }
    let to = config::require("sales_to")?;
    let who = lead.name.as_deref().unwrap_or(&lead.email);
    let company = lead
        .company
        .as_ref()
        .map(|c| match c.employees {
            Some(n) => format!("{} ({n} employees)", c.name),
            None => c.name.clone(),
        })
        .unwrap_or_else(|| "unknown company".into());
    let text = format!(
        "Hot lead, score {}: {who} <{}> at {company}.\n\nWhy: {}\n\nSubmission {}\n",
        lead.score,
        lead.email,
        lead.reasons.join("; "),
        lead.submission_id
    );
    let id = email::send(
        Email::to(to)
            .subject(format!("Hot lead: {who} ({company})"))
            .text(text)
            .reply_to(lead.email.clone()),
    )?;
    log::info(format!(
        "hot lead {} mailed to sales: {id}",
        lead.submission_id
    ));
    Ok(())
}

agenthook_sdk::plugin!(handle);
