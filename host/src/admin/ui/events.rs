//! Events: the stored events newest first, filtered by source, type, status, plugin,
//! time range and the sender's event id, a page at a time (the store's cursor), with a
//! live tail of the first page.

use http::{Response, StatusCode};
use maud::{Markup, html};

use super::{Ctx, layout, query_string, respond};
use crate::admin::{SCAN_LIMIT, event_status, parse_list_query};
use crate::http::Body;

/// The filters the page understands, as (query name, label, hint).
const FILTERS: [(&str, &str, &str); 6] = [
    ("source", "Source", ""),
    ("type", "Type", ""),
    ("plugin", "Plugin", ""),
    ("event_id", "Sender's event id", ""),
    ("since", "Since", "15m, 2h, 7d or Unix ms"),
    ("until", "Until", "15m, 2h, 7d or Unix ms"),
];

const STATUSES: [&str; 5] = ["pending", "leased", "retrying", "done", "dead"];

pub async fn page(ctx: &Ctx) -> Response<Body> {
    // Empty form fields mean "any"; `tail` is the page's own switch.
    let q: Vec<(String, String)> = ctx
        .query
        .iter()
        .filter(|(k, v)| !v.is_empty() && k != "tail")
        .cloned()
        .collect();
    let listing = match parse_list_query(&q) {
        Ok((filter, before, limit)) => {
            match ctx
                .admin
                .store
                .list_events(&filter, before, limit, SCAN_LIMIT)
                .await
            {
                Ok(page) => Ok((page, limit)),
                Err(e) => Err(format!("the store could not be read: {e}")),
            }
        }
        Err(e) => Err(e.message),
    };
    let first_page = ctx.param("cursor").is_none();
    let tail = ctx.param("tail").is_some();
    let status = match &listing {
        Ok(_) => StatusCode::OK,
        Err(_) => StatusCode::BAD_REQUEST,
    };
    let filters_only = |extra: &[(&'static str, &str)]| {
        let mut pairs: Vec<(&str, &str)> = FILTERS
            .iter()
            .filter_map(|(k, _, _)| ctx.param(k).map(|v| (*k, v)))
            .collect();
        if let Some(s) = ctx.param("status") {
            pairs.push(("status", s));
        }
        pairs.extend_from_slice(extra);
        query_string(pairs)
    };
    let body = html! {
        (filter_form(ctx, tail, first_page))
        @match &listing {
            Err(message) => { p.error role="alert" { (message) } }
            Ok((page, limit)) => {
                div #events-live data-live=[first_page.then_some("2000")] data-live-toggle="tail" {
                    @if page.events.is_empty() {
                        p.muted { "No events match." }
                    } @else {
                        table {
                            thead { tr {
                                th scope="col" { "Id" }
                                th scope="col" { "Received" }
                                th scope="col" { "Source" }
                                th scope="col" { "Type" }
                                th scope="col" { "Sender's id" }
                                th scope="col" { "Status" }
                                th scope="col" { "Deliveries" }
                            } }
                            tbody {
                                @for (id, meta, deliveries) in &page.events {
                                    tr {
                                        td { a href={ "/ui/events/" (id) } { (id) } }
                                        td { (layout::time(meta.received_at_ms)) }
                                        td { (meta.source) }
                                        td { (meta.event_type) }
                                        td { code { (meta.event_id) } }
                                        td { (layout::status(event_status(deliveries))) }
                                        td {
                                            @for d in deliveries {
                                                span.delivery { (d.plugin) " " (layout::status(d.status.as_str())) " " }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    nav.pager aria-label="Pages" {
                        @if !first_page { a href={ "/ui/events?" (filters_only(&[])) } { "← Newest" } }
                        @if let Some(next) = page.next_cursor {
                            @let next = next.to_string();
                            @let limit_text = limit.to_string();
                            a href={ "/ui/events?" (filters_only(&[("cursor", &next), ("limit", &limit_text)])) } rel="next" { "Older →" }
                            @if page.events.len() < *limit {
                                span.muted { "(searched " (SCAN_LIMIT) " events; older ones continue on the next page)" }
                            }
                        }
                    }
                }
            }
        }
    };
    respond(status, ctx.page("Events", "/ui/events", body))
}

fn filter_form(ctx: &Ctx, tail: bool, first_page: bool) -> Markup {
    let status = ctx.param("status").unwrap_or("");
    html! {
        form.filters method="get" action="/ui/events" role="search" aria-label="Filter events" {
            @for (name, label, hint) in FILTERS {
                label for={ "f-" (name) } {
                    (label)
                    input type="text" id={ "f-" (name) } name=(name) value=(ctx.param(name).unwrap_or(""))
                        placeholder=(hint) size="14";
                }
            }
            label for="f-status" {
                "Status"
                select #f-status name="status" {
                    option value="" selected[status.is_empty()] { "any" }
                    @for s in STATUSES {
                        option value=(s) selected[status == s] { (s) }
                    }
                }
            }
            @if first_page {
                label for="tail" {
                    "Live tail"
                    input #tail type="checkbox" name="tail" value="1" checked[tail];
                }
            }
            button type="submit" { "Filter" }
            a href="/ui/events" { "Clear" }
        }
    }
}
