//! Dead letters: dead deliveries newest first, filtered; select some (or take every
//! one the filter matches) and replay or purge them, after a confirmation page that
//! says how many and which.

use http::{Response, StatusCode};
use maud::html;

use super::{Ctx, Form, error_page, layout, query_string, redirect, respond};
use crate::admin::{DlqAction, SCAN_LIMIT, parse_list_query, parse_time};
use crate::http::Body;
use crate::store::{DeliveryStatus, EventFilter};

const FILTERS: [(&str, &str); 5] = [
    ("plugin", "Plugin"),
    ("source", "Source"),
    ("type", "Type"),
    ("since", "Since"),
    ("until", "Until"),
];

pub async fn page(ctx: &Ctx) -> Response<Body> {
    let q: Vec<(String, String)> = ctx
        .query
        .iter()
        .filter(|(k, v)| !v.is_empty() && k != "done")
        .cloned()
        .collect();
    let listing = match parse_list_query(&q) {
        Ok((mut filter, before, limit)) => {
            filter.status = Some(DeliveryStatus::Dead);
            ctx.admin
                .store
                .list_events(&filter, before, limit, SCAN_LIMIT)
                .await
                .map(|page| (filter, page))
                .map_err(|e| format!("the store could not be read: {e}"))
        }
        Err(e) => Err(e.message),
    };
    let filter_pairs: Vec<(&str, &str)> = FILTERS
        .iter()
        .filter_map(|(k, _)| ctx.param(k).map(|v| (*k, v)))
        .collect();
    let status = if listing.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    let body = html! {
        @if let Some(done) = ctx.param("done") { p.notice role="status" { (done) } }
        form.filters method="get" action="/ui/dlq" role="search" aria-label="Filter dead letters" {
            @for (name, label) in FILTERS {
                label for={ "d-" (name) } {
                    (label)
                    input type="text" id={ "d-" (name) } name=(name) value=(ctx.param(name).unwrap_or("")) size="14"
                        placeholder=[matches!(name, "since" | "until").then_some("15m, 2h, 7d or Unix ms")];
                }
            }
            button type="submit" { "Filter" }
            a href="/ui/dlq" { "Clear" }
        }
        @match &listing {
            Err(message) => { p.error role="alert" { (message) } }
            Ok((filter, page)) => {
                form method="post" action="/ui/dlq" {
                    (layout::csrf_field(&ctx.session.csrf))
                    @for (k, v) in &filter_pairs { input type="hidden" name=(k) value=(v); }
                    div.actions {
                        button type="submit" name="do" value="replay-selected" { "Replay selected" }
                        button.danger type="submit" name="do" value="purge-selected" { "Purge selected" }
                        button.secondary type="submit" name="do" value="replay-matching" { "Replay all matching" }
                        button.danger type="submit" name="do" value="purge-matching" { "Purge all matching" }
                    }
                    table {
                        thead { tr {
                            th scope="col" {
                                input #select-all type="checkbox" data-select-all="sel" aria-label="Select every dead letter on this page";
                            }
                            th scope="col" { "Event" } th scope="col" { "Received" } th scope="col" { "Source" }
                            th scope="col" { "Type" } th scope="col" { "Plugin" } th.num scope="col" { "Attempts" }
                            th scope="col" { "Last error" } th scope="col" { "Dead since" }
                        } }
                        tbody {
                            @for (id, meta, deliveries) in &page.events {
                                @for d in deliveries.iter().filter(|d| filter.matches_delivery(d)) {
                                    tr {
                                        td { input type="checkbox" name="sel" value={ (id) "/" (d.plugin) }
                                            aria-label={ "Select event " (id) " for " (d.plugin) }; }
                                        td { a href={ "/ui/events/" (id) } { (id) } }
                                        td { (layout::time(meta.received_at_ms)) }
                                        td { (meta.source) }
                                        td { (meta.event_type) }
                                        td { (d.plugin) }
                                        td.num { (d.attempts.len()) }
                                        td { @if let Some(e) = d.attempts.last().and_then(|a| a.error.as_ref()) { code { (e) } } }
                                        td { (layout::time(d.updated_at_ms)) }
                                    }
                                }
                            }
                        }
                    }
                    @if page.events.is_empty() { p.muted { "No dead letters match." } }
                }
                nav.pager aria-label="Pages" {
                    @if ctx.param("cursor").is_some() { a href={ "/ui/dlq?" (query_string(filter_pairs.iter().copied())) } { "← Newest" } }
                    @if let Some(next) = page.next_cursor {
                        a href={ "/ui/dlq?" (older(&filter_pairs, next)) } rel="next" { "Older →" }
                    }
                }
            }
        }
    };
    respond(status, ctx.page("Dead letters", "/ui/dlq", body))
}

/// The query of the page after `cursor`, with the same filters.
fn older(filters: &[(&str, &str)], cursor: u64) -> String {
    let cursor = cursor.to_string();
    query_string(filters.iter().copied().chain([("cursor", cursor.as_str())]))
}

/// `POST /ui/dlq`: `do` = replay|purge - selected|matching. Without `confirmed`, shows
/// what would be done and asks; with it, does it and goes back to the list.
pub async fn action(ctx: &Ctx, form: &Form) -> Response<Body> {
    let (action, selected) = match form.get("do") {
        Some("replay-selected") => (DlqAction::Replay, true),
        Some("purge-selected") => (DlqAction::Purge, true),
        Some("replay-matching") => (DlqAction::Replay, false),
        Some("purge-matching") => (DlqAction::Purge, false),
        _ => {
            return error_page(
                ctx,
                StatusCode::BAD_REQUEST,
                "Choose replay or purge.",
                "/ui/dlq",
            );
        }
    };
    let filter_pairs: Vec<(&str, &str)> = FILTERS
        .iter()
        .filter_map(|(k, _)| form.get(k).map(|v| (*k, v)))
        .collect();
    let back = format!("/ui/dlq?{}", query_string(filter_pairs.iter().copied()));
    let targets: Vec<(u64, String)> = if selected {
        let mut t = Vec::new();
        for s in form.all("sel") {
            match s
                .split_once('/')
                .and_then(|(id, p)| Some((id.parse().ok()?, p)))
            {
                Some((id, plugin)) => t.push((id, plugin.to_string())),
                None => {
                    return error_page(
                        ctx,
                        StatusCode::BAD_REQUEST,
                        "A selection is malformed.",
                        &back,
                    );
                }
            }
        }
        if t.is_empty() {
            return error_page(
                ctx,
                StatusCode::BAD_REQUEST,
                "Select at least one dead letter first.",
                &back,
            );
        }
        // Only those still dead (the confirmation shows what is).
        let filter = EventFilter {
            status: Some(DeliveryStatus::Dead),
            ..EventFilter::default()
        };
        let mut still = Vec::new();
        for (id, plugin) in t {
            match ctx.admin.store.delivery(id, &plugin).await {
                Ok(Some(d)) if filter.matches_delivery(&d) => still.push((id, plugin)),
                Ok(_) => {}
                Err(e) => {
                    return error_page(
                        ctx,
                        StatusCode::INTERNAL_SERVER_ERROR,
                        &e.to_string(),
                        &back,
                    );
                }
            }
        }
        still
    } else {
        let mut filter = EventFilter {
            status: Some(DeliveryStatus::Dead),
            plugin: form.get("plugin").map(str::to_string),
            source: form.get("source").map(str::to_string),
            event_type: form.get("type").map(str::to_string),
            ..EventFilter::default()
        };
        for (name, slot) in [
            ("since", &mut filter.since_ms),
            ("until", &mut filter.until_ms),
        ] {
            if let Some(v) = form.get(name) {
                match parse_time(v, name) {
                    Ok(ms) => *slot = Some(ms),
                    Err(e) => return error_page(ctx, StatusCode::BAD_REQUEST, &e.message, &back),
                }
            }
        }
        match ctx.admin.dlq_targets(&filter, None).await {
            Ok(t) => t,
            Err(e) => return error_page(ctx, e.status, &e.message, &back),
        }
    };
    let verb = match action {
        DlqAction::Replay => "Replay",
        DlqAction::Purge => "Purge",
    };
    if form.get("confirmed") != Some("yes") {
        let body = html! {
            @if targets.is_empty() {
                p { "Nothing to do: no dead letters match." }
                p { a href=(back) { "Back to dead letters" } }
            } @else {
                p role="alert" {
                    (verb) " " strong { (targets.len()) } " dead letter" @if targets.len() != 1 { "s" } "?"
                    @if matches!(action, DlqAction::Purge) { " Purged deliveries are deleted and cannot be replayed." }
                }
                ul {
                    @for (id, plugin) in targets.iter().take(20) { li { "event " (id) " → " (plugin) } }
                    @if targets.len() > 20 { li { "and " (targets.len() - 20) " more" } }
                }
                form method="post" action="/ui/dlq" {
                    (layout::csrf_field(&ctx.session.csrf))
                    input type="hidden" name="do" value=(form.get("do").unwrap_or(""));
                    input type="hidden" name="confirmed" value="yes";
                    @for (k, v) in &filter_pairs { input type="hidden" name=(k) value=(v); }
                    @if selected { @for (id, plugin) in &targets { input type="hidden" name="sel" value={ (id) "/" (plugin) }; } }
                    div.actions {
                        button.danger[matches!(action, DlqAction::Purge)] type="submit" { "Yes, " (verb.to_lowercase()) " " (targets.len()) }
                        a href=(back) { "Cancel" }
                    }
                }
            }
        };
        return respond(
            StatusCode::OK,
            ctx.page(&format!("{verb} dead letters?"), "/ui/dlq", body),
        );
    }
    match ctx.admin.dlq_apply(action, targets).await {
        Ok(v) => {
            let done = match action {
                DlqAction::Replay => format!("Replayed {}.", v["replayed"]),
                DlqAction::Purge => format!("Purged {}.", v["purged"]),
            };
            let mut pairs = filter_pairs.clone();
            pairs.push(("done", &done));
            redirect(&format!("/ui/dlq?{}", query_string(pairs)))
        }
        Err(e) => error_page(ctx, e.status, &e.message, &back),
    }
}
