//! Event: one stored event — its payload (pretty JSON when it is JSON), headers as
//! stored, and every delivery with its attempts on a timeline, their logs, errors,
//! plugin version and the tool calls with an effect it made (its journal) — with replay to one plugin or all of them.

use http::{Response, StatusCode};
use maud::{Markup, html};
use serde_json::json;

use super::{Ctx, Form, error_page, layout, redirect, respond};
use crate::admin::event_status;
use crate::http::Body;
use crate::store::{AttemptOutcome, Delivery, JournalEntry};

pub async fn page(ctx: &Ctx, id: &str) -> Response<Body> {
    let Ok(id) = id.parse::<u64>() else {
        return error_page(
            ctx,
            StatusCode::NOT_FOUND,
            "No event with this id.",
            "/ui/events",
        );
    };
    let store = &ctx.admin.store;
    let (event, deliveries) = match (store.event(id).await, store.deliveries(id).await) {
        (Ok(Some(e)), Ok(d)) => (e, d),
        (Ok(None), _) => {
            return error_page(
                ctx,
                StatusCode::NOT_FOUND,
                "No event with this id.",
                "/ui/events",
            );
        }
        (Err(e), _) | (_, Err(e)) => {
            return error_page(
                ctx,
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("The store could not be read: {e}"),
                "/ui/events",
            );
        }
    };
    // The effectful tool calls each delivery made (its journal): few per delivery, and
    // an unreadable journal only hides that table.
    let mut journals = Vec::with_capacity(deliveries.len());
    for d in &deliveries {
        journals.push(store.journal(id, &d.plugin).await.unwrap_or_default());
    }
    let meta = &event.meta;
    let replayed = ctx.param("replayed");
    let payload = match serde_json::from_slice::<serde_json::Value>(&event.body) {
        Ok(v) => serde_json::to_string_pretty(&v).unwrap_or_default(),
        Err(_) => match std::str::from_utf8(&event.body) {
            Ok(text) => text.to_string(),
            Err(_) => format!("({} bytes, not UTF-8)", event.body.len()),
        },
    };
    let body = html! {
        @if let Some(r) = replayed { p.notice role="status" { "Replayed to: " (r) } }
        dl.kv {
            dt { "Host id" } dd { (id) }
            dt { "Sender's id" } dd { code { (meta.event_id) } }
            dt { "Source" } dd { a href={ "/ui/events?source=" (meta.source) } { (meta.source) } }
            dt { "Type" } dd { (meta.event_type) }
            dt { "Received" } dd { (layout::time(meta.received_at_ms)) }
        }
        div #deliveries data-live="2000" {
            h2 { "Deliveries " (layout::status(event_status(&deliveries))) }
            @if deliveries.is_empty() { p.muted { "No plugin subscribed to this event when it arrived." } }
            @for (d, journal) in deliveries.iter().zip(&journals) {
                (delivery(ctx, id, meta.received_at_ms, d, journal))
            }
            form method="post" action={ "/ui/events/" (id) "/replay" } {
                (layout::csrf_field(&ctx.session.csrf))
                button.secondary type="submit" { "Replay to every subscribed plugin" }
            }
        }
        div.grid2 {
            section aria-labelledby="payload-h" {
                h2 #payload-h { "Payload (" (event.body.len()) " bytes)" }
                pre tabindex="0" aria-label="Payload" { (payload) }
            }
            section aria-labelledby="headers-h" {
                h2 #headers-h { "Headers as stored" }
                table {
                    thead { tr { th scope="col" { "Name" } th scope="col" { "Value" } } }
                    tbody {
                        @for (k, v) in &meta.headers {
                            tr { td { code { (k) } } td { code { (v) } } }
                        }
                    }
                }
            }
        }
    };
    respond(
        StatusCode::OK,
        ctx.page(&format!("Event {id}"), "/ui/events", body),
    )
}

fn delivery(
    ctx: &Ctx,
    id: u64,
    received_at_ms: u64,
    d: &Delivery,
    journal: &[JournalEntry],
) -> Markup {
    html! {
        section.card aria-label={ "Delivery to " (d.plugin) } {
            h3 { (d.plugin) " " (layout::status(d.status.as_str())) }
            dl.kv {
                dt { "Attempts" } dd { (d.attempts.len()) }
                @if let Some(at) = d.next_attempt_at_ms { dt { "Next attempt" } dd { (layout::time(at)) } }
                @if let Some(v) = d.attempts.last().map(|a| &a.plugin_version) {
                    dt { "Plugin version" } dd { code title=(v) { (v.get(..12).unwrap_or(v)) } }
                }
            }
            (timeline(received_at_ms, d))
            @if !d.attempts.is_empty() {
                table {
                    thead { tr {
                        th scope="col" { "#" } th scope="col" { "Started" } th.num scope="col" { "ms" }
                        th scope="col" { "Outcome" } th scope="col" { "Error" } th scope="col" { "Version" } th scope="col" { "Logs" }
                    } }
                    tbody {
                        @for a in &d.attempts {
                            tr {
                                td { (a.number) }
                                td { (layout::time(a.started_at_ms)) }
                                td.num { (a.duration_ms) }
                                td { (layout::status(outcome(a.outcome))) }
                                td { @if let Some(e) = &a.error { code { (e) } } }
                                td { code title=(a.plugin_version) { (a.plugin_version.get(..12).unwrap_or(&a.plugin_version)) } }
                                td {
                                    @if a.logs.is_empty() { span.muted { "none" } } @else {
                                        details {
                                            summary { (a.logs.len()) " lines" }
                                            pre { @for line in &a.logs { (line) "\n" } }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if !journal.is_empty() {
                table aria-label={ "Tool calls with an effect made for " (d.plugin) } {
                    caption { "Tool calls with an effect (the journal: a retry gets these results back instead of repeating them)" }
                    thead { tr {
                        th scope="col" { "#" } th scope="col" { "Tool" } th scope="col" { "Call" }
                        th scope="col" { "Attempt" } th scope="col" { "Recorded" }
                    } }
                    tbody {
                        @for c in journal {
                            tr {
                                td { (c.seq) }
                                td { code { (c.tool) } }
                                td { code { (c.summary) } }
                                td { (c.attempt) }
                                td { (layout::time(c.recorded_at_ms)) }
                            }
                        }
                    }
                }
            }
            @for a in d.attempts.iter().filter(|a| a.journal.is_some()) {
                p.muted { "Attempt " (a.number) ": " (a.journal.as_deref().unwrap_or_default()) }
            }
            form method="post" action={ "/ui/events/" (id) "/replay" } {
                (layout::csrf_field(&ctx.session.csrf))
                input type="hidden" name="plugin" value=(d.plugin);
                button.secondary type="submit" aria-label={ "Replay to " (d.plugin) } { "Replay to " (d.plugin) }
            }
        }
    }
}

fn outcome(o: AttemptOutcome) -> &'static str {
    match o {
        AttemptOutcome::Done => "done",
        AttemptOutcome::Retry => "retrying",
        AttemptOutcome::Dead => "dead",
    }
}

/// The attempts as bars on a line from the event's arrival to the last attempt's end.
fn timeline(received_at_ms: u64, d: &Delivery) -> Markup {
    const W: f64 = 600.0;
    let end = d
        .attempts
        .iter()
        .map(|a| a.started_at_ms + a.duration_ms)
        .chain(d.next_attempt_at_ms)
        .max()
        .unwrap_or(received_at_ms)
        .max(received_at_ms + 1);
    let span = (end - received_at_ms) as f64;
    let x = |ms: u64| ms.saturating_sub(received_at_ms) as f64 / span * W;
    let label = format!(
        "Timeline of {} attempts over {} ms from arrival",
        d.attempts.len(),
        end - received_at_ms
    );
    html! {
        svg.timeline role="img" aria-label=(label) viewBox="0 0 600 34" preserveAspectRatio="none" {
            title { (label) }
            line x1="0" y1="17" x2="600" y2="17" stroke="#767676" {}
            @for a in &d.attempts {
                @let class = match a.outcome { AttemptOutcome::Done => "t-done", AttemptOutcome::Retry => "t-retry", AttemptOutcome::Dead => "t-dead" };
                rect class=(class) x=(format!("{:.1}", x(a.started_at_ms).min(W - 3.0)))
                    y="5" height="24" width=(format!("{:.1}", (x(a.started_at_ms + a.duration_ms) - x(a.started_at_ms)).max(3.0))) {
                    title { "attempt " (a.number) ": " (outcome(a.outcome)) ", " (a.duration_ms) " ms" }
                }
            }
            @if let Some(next) = d.next_attempt_at_ms {
                line x1=(format!("{:.1}", x(next))) x2=(format!("{:.1}", x(next))) y1="2" y2="32" stroke="#1d4ed8" stroke-dasharray="3 2" {}
            }
        }
    }
}

/// `POST /ui/events/{id}/replay` with an optional `plugin`.
pub async fn replay(ctx: &Ctx, id: &str, form: &Form) -> Response<Body> {
    let body = match form.get("plugin") {
        Some(p) => json!({ "plugin": p }),
        None => json!({}),
    };
    match ctx.admin.replay_event(id, &body).await {
        Ok(v) => {
            let names: Vec<&str> = v["replayed"]
                .as_array()
                .map(|a| a.iter().filter_map(|p| p.as_str()).collect())
                .unwrap_or_default();
            let names = if names.is_empty() {
                "nothing (no delivery could be replayed: in flight or none)".to_string()
            } else {
                names.join(", ")
            };
            let q = super::query_string([("replayed", names.as_str())]);
            redirect(&format!("/ui/events/{id}?{q}"))
        }
        Err(e) => error_page(ctx, e.status, &e.message, &format!("/ui/events/{id}")),
    }
}
