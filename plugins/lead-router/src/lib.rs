//! `lead-router` — a form submission → enrich the lead over HTTP → score it → emit
//! `lead.scored` for the plugins that act on leads (see `sales-notify`).
//!
//! The enrichment API (`enrich_url`, called as `{enrich_url}?email=…`) answers with the
//! company behind the address. The score adds company size, a business (non-free-mail)
//! domain and buying words in the message; `hot_threshold` (default 70) and
//! `warm_threshold` (default 40) turn it into a tier. An unknown company is scored
//! without enrichment rather than failed.

use agenthook_sdk::{Event, HandlerError, config, events, http, log};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Submission {
    submission_id: String,
    email: String,
    name: Option<String>,
    message: Option<String>,
}

#[derive(Deserialize, Default)]
struct Enrichment {
    company: Option<Company>,
}

#[derive(Deserialize, Serialize, Clone)]
struct Company {
    name: String,
    employees: Option<u64>,
    industry: Option<String>,
}

/// The `lead.scored` event body.
#[derive(Serialize)]
struct ScoredLead {
    submission_id: String,
    email: String,
    name: Option<String>,
    company: Option<Company>,
    score: u32,
    tier: &'static str,
    reasons: Vec<String>,
}

const FREE_MAIL: &[&str] = &["gmail.com", "yahoo.com", "outlook.com", "hotmail.com"];
const BUYING_WORDS: &[&str] = &["pricing", "quote", "demo", "purchase", "contract", "seats"];

fn handle(event: Event) -> Result<(), HandlerError> {
    let lead: Submission = event.json()?;
    let enrich_url = config::require("enrich_url")?;
    let hot = config::get_parsed::<u32>("hot_threshold")?.unwrap_or(70);
    let warm = config::get_parsed::<u32>("warm_threshold")?.unwrap_or(40);

    let response = http::get(format!("{enrich_url}?email={}", query_escape(&lead.email)))
        .header("accept", "application/json")
        .send()?;
    let enrichment: Enrichment = if response.status == 404 {
        Enrichment::default()
    } else {
        response.error_for_status()?.json()?
    };

    let (score, reasons) = score(&lead, enrichment.company.as_ref());
    let tier = if score >= hot {
        "hot"
    } else if score >= warm {
        "warm"
    } else {
        "cold"
    };
    let id = events::emit(
        "lead.scored",
        &ScoredLead {
            submission_id: lead.submission_id.clone(),
            email: lead.email.clone(),
            name: lead.name,
            company: enrichment.company,
            score,
            tier,
            reasons,
        },
    )?;
    log::info(format!(
        "lead {} ({}) scored {score}: {tier}; emitted lead.scored {id}",
        lead.submission_id, lead.email
    ));
    Ok(())
}

fn score(lead: &Submission, company: Option<&Company>) -> (u32, Vec<String>) {
    let mut score = 0;
    let mut reasons = Vec::new();
    let domain = lead.email.rsplit_once('@').map_or("", |(_, d)| d);
    if !domain.is_empty() && !FREE_MAIL.contains(&domain.to_ascii_lowercase().as_str()) {
        score += 20;
        reasons.push(format!("business domain {domain}"));
    }
    if let Some(employees) = company.and_then(|c| c.employees) {
        let points = match employees {
            1000.. => 40,
            200..=999 => 25,
            20..=199 => 10,
            _ => 0,
        };
        if points > 0 {
            score += points;
            reasons.push(format!("{employees} employees"));
        }
    }
    let message = lead.message.as_deref().unwrap_or("").to_ascii_lowercase();
    let words: Vec<&str> = BUYING_WORDS
        .iter()
        .copied()
        .filter(|w| message.contains(w))
        .collect();
    if !words.is_empty() {
        score += 15 * words.len().min(3) as u32;
        reasons.push(format!("asks about {}", words.join(", ")));
    }
    (score.min(100), reasons)
}

/// Percent-encode a query value.
fn query_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

agenthook_sdk::plugin!(handle);

#[cfg(test)]
mod tests {
    use agenthook_sdk::testing::{self, Reply, TestHost};
    use serde_json::{Value, json};

    use super::*;

    const ENRICH: &str = "https://enrich.test/v1/lookup";

    fn submission(email: &str, message: &str) -> Event {
        testing::event("form.submitted")
            .json(&json!({"submission_id": "s1", "email": email, "name": "Bo", "message": message}))
            .build()
    }

    #[test]
    fn an_enriched_buying_lead_is_hot_and_emitted() {
        let host = TestHost::new().config("enrich_url", ENRICH);
        host.respond(
            "GET",
            &format!("{ENRICH}?email=bo%40bigco.com"),
            Reply::json(
                200,
                &json!({"company": {"name": "BigCo", "employees": 5000}}),
            ),
        );
        handle(submission("bo@bigco.com", "Pricing for 40 seats?")).unwrap();
        let emits = host.emits();
        assert_eq!(emits.len(), 1);
        assert_eq!(emits[0].event_type, "lead.scored");
        let lead: Value = emits[0].body();
        assert_eq!(lead["tier"], "hot");
        assert_eq!(lead["score"], 90);
        assert_eq!(lead["company"]["name"], "BigCo");
    }

    #[test]
    fn an_unknown_company_is_scored_without_enrichment() {
        let host = TestHost::new().config("enrich_url", ENRICH);
        host.respond(
            "GET",
            &format!("{ENRICH}?email=x%40gmail.com"),
            Reply::status(404),
        );
        handle(submission("x@gmail.com", "hello")).unwrap();
        let lead: Value = host.emits()[0].body();
        assert_eq!(
            (lead["tier"].as_str(), lead["score"].as_u64()),
            (Some("cold"), Some(0))
        );
    }

    #[test]
    fn a_failing_enrichment_api_is_retried_and_emits_nothing() {
        let host = TestHost::new().config("enrich_url", ENRICH);
        host.respond(
            "GET",
            &format!("{ENRICH}?email=bo%40bigco.com"),
            Reply::status(500),
        );
        assert!(
            handle(submission("bo@bigco.com", ""))
                .unwrap_err()
                .is_retry()
        );
        assert!(host.emits().is_empty());
    }

    #[test]
    fn without_enrich_url_the_delivery_fails_permanently() {
        let _host = TestHost::new();
        let err = handle(submission("bo@bigco.com", "")).unwrap_err();
        assert!(!err.is_retry(), "{err}");
    }
}
