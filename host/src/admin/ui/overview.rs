//! Overview: per source and per plugin what `agenthook status` shows, refreshed live,
//! with charts of the last minutes (`history.rs`).

use http::{Response, StatusCode};
use maud::html;

use super::{Ctx, layout, respond};
use crate::admin::status;
use crate::http::Body;

pub async fn page(ctx: &Ctx) -> Response<Body> {
    let telemetry = ctx.admin.telemetry.clone();
    let Ok(report) = tokio::task::spawn_blocking(move || status::report(&telemetry)).await else {
        return super::plain(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
    };
    let history = &ctx.admin.console.history;
    let uptime_s = report.now_ms.saturating_sub(report.started_at_ms) / 1000;
    let body = html! {
        div #overview data-live="2000" {
            dl.kv {
                dt { "Ready" } dd { @if report.ready { span.status.s-done { "ready" } } @else { span.status.s-dead { "not ready" } } }
                dt { "Up for" } dd { (uptime_s / 3600) "h " (uptime_s % 3600 / 60) "m " (uptime_s % 60) "s" }
                dt { "Stored events" } dd { (report.store.events) }
                dt { "Store size" } dd { (report.store.size_bytes / (1 << 20)) " MiB" }
                dt { "Requests to unknown sources" } dd { (report.unknown_source_requests) }
            }
            h2 { "Sources" }
            @if report.sources.is_empty() {
                p.muted { "No requests since the host started." }
            } @else {
                table {
                    caption.muted { "Requests since the host started" }
                    thead { tr {
                        th scope="col" { "Source" }
                        th.num scope="col" { "Stored" }
                        th.num scope="col" { "Duplicates" }
                        th.num scope="col" { "Rejected" }
                        th.num scope="col" { "Bad signature / timestamp" }
                        th scope="col" { "Stored per second" }
                    } }
                    tbody {
                        @for s in &report.sources {
                            tr {
                                th scope="row" { a href={ "/ui/events?source=" (s.name) } { (s.name) } }
                                td.num { (s.stored) }
                                td.num { (s.duplicates) }
                                td.num title=(format!("{:?}", s.rejected_by_reason)) { (s.rejected) }
                                td.num { (s.verification_failures) }
                                td { (layout::sparkline(&format!("{} stored per second", s.name), "/s", &history.stored_rate(&s.name))) }
                            }
                        }
                    }
                }
            }
            h2 { "Plugins" }
            @if report.plugins.is_empty() {
                p.muted { "No plugins are loaded. " a href="/ui/plugins" { "Deploy one" } }
            } @else {
                table {
                    thead { tr {
                        th scope="col" { "Plugin" }
                        th.num scope="col" { "Queued" }
                        th.num scope="col" { "Running" }
                        th.num scope="col" { "Retrying" }
                        th.num scope="col" { "Dead" }
                        th.num scope="col" { "Oldest due" }
                        th.num scope="col" { "Success" }
                        th.num scope="col" { "p50 / p99 ms" }
                        th scope="col" { "Done per second" }
                        th scope="col" { "Queue" }
                    } }
                    tbody {
                        @for p in &report.plugins {
                            @let s = &p.summary;
                            @let finished = s.attempts_done + s.attempts_retry + s.attempts_dead;
                            tr {
                                th scope="row" {
                                    a href={ "/ui/events?plugin=" (p.name) } { (p.name) }
                                    @if !p.loaded { " " span.muted { "(removed)" } }
                                }
                                td.num { (p.queue.queued()) }
                                td.num { (p.queue.leased) }
                                td.num { (p.queue.retrying) }
                                td.num { a href={ "/ui/dlq?plugin=" (p.name) } { (p.queue.dead) } }
                                td.num { @match p.oldest_due_age_ms { Some(ms) => { (ms) " ms" }, None => "–" } }
                                td.num {
                                    @if finished > 0 {
                                        (format!("{:.1}%", s.attempts_done as f64 * 100.0 / finished as f64))
                                    } @else { "–" }
                                }
                                td.num {
                                    (s.latency_p50_ms.map_or("–".into(), |v| v.to_string()))
                                    " / "
                                    (s.latency_p99_ms.map_or("–".into(), |v| v.to_string()))
                                }
                                td { (layout::sparkline(&format!("{} done per second", p.name), "/s", &history.outcome_rate(&p.name, false))) }
                                td { (layout::sparkline(&format!("{} deliveries queued", p.name), "queued", &history.queued(&p.name))) }
                            }
                        }
                    }
                }
                p.hint { "Success is attempts done over attempts finished since start; p50/p99 are received → done over the latest deliveries. Charts cover the last five minutes, one point every two seconds." }
            }
        }
    };
    respond(StatusCode::OK, ctx.page("Overview", "/ui", body))
}
