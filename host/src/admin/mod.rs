//! The admin API on `admin_listen`: read the stored events, their deliveries and
//! attempts, the loaded plugins and their kv. Every route needs the bearer token.
//!
//! Read-only over the store and registry; it never changes what ingress stored.
//! The web console (`/ui`, in `ui/`) is served here too, behind its own sign-in.

mod plugins;
pub mod status;
mod ui;

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use http::{Method, Response, StatusCode, header};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use crate::clock::now_ms;
use crate::config::Secret;
use crate::http::{self as web, Body, Request};
use crate::metrics;
use crate::plugins::Registry;
use crate::plugins::deploy::Deployer;
use crate::store::{Delivery, DeliveryStatus, EventFilter, EventMeta, Store};

const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 1000;
/// Events examined per list request at most, so that a rare filter answers quickly
/// with a cursor instead of scanning the whole store.
const SCAN_LIMIT: usize = 50_000;

/// The admin service.
pub struct Admin {
    token: Secret,
    store: Store,
    registry: Arc<Registry>,
    /// Deploys and removes plugins (`plugins.rs`).
    deployer: Arc<Deployer>,
    /// `/metrics` and `/admin/v1/status`.
    telemetry: metrics::Sources,
    metrics: metrics::Metrics,
    /// The web console's sessions, chart history and test-event sender.
    console: ui::Console,
}

impl Admin {
    pub fn new(
        token: Secret,
        store: Store,
        deployer: Arc<Deployer>,
        telemetry: metrics::Sources,
    ) -> Self {
        Admin {
            token,
            store,
            registry: deployer.registry().clone(),
            deployer,
            metrics: metrics::Metrics::new(&telemetry),
            console: ui::Console::new(),
            telemetry,
        }
    }

    /// Let the console's "Send a test event" page sign for these sources and post to
    /// the ingress listener at `ingress` (without it, the page says it is unavailable).
    pub fn with_test_sender(
        mut self,
        sources: std::collections::BTreeMap<String, crate::config::SourceConfig>,
        ingress: std::net::SocketAddr,
    ) -> Self {
        self.console.set_sender(sources, ingress);
        self
    }

    /// Keep the last minutes of the status for the console's charts, until `stop`
    /// resolves. The host runs it beside the admin listener and awaits it before
    /// closing the store.
    pub async fn sample_status(self: Arc<Self>, stop: impl std::future::Future<Output = ()>) {
        ui::sample(&self, stop).await;
    }

    fn authorized(&self, req: &Request) -> bool {
        let Some(value) = req.headers().get(header::AUTHORIZATION) else {
            return false;
        };
        let Some(given) = value.as_bytes().strip_prefix(b"Bearer ") else {
            return false;
        };
        given.ct_eq(self.token.expose().as_bytes()).into()
    }

    pub async fn handle(self: Arc<Self>, req: Request) -> Response<Body> {
        let path = req.uri().path();
        if path == "/ui" || path.starts_with("/ui/") {
            return ui::handle(self, req).await;
        }
        if !self.authorized(&req) {
            let mut resp = web::error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "the admin API needs `Authorization: Bearer <admin token>`",
            );
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer"),
            );
            return resp;
        }
        let path = req.uri().path().trim_end_matches('/').to_string();
        let query = query_pairs(req.uri().query());
        let segments: Vec<&str> = path.split('/').skip(1).collect();
        let method = req.method().clone();
        if let ["admin", "v1", "plugins", rest @ ..] = segments.as_slice()
            && rest.len() <= 1
        {
            return self.plugins_route(&method, rest, req).await;
        }
        let this = self.clone();
        if method == Method::POST {
            let body = match read_json(req).await {
                Ok(b) => b,
                Err(e) => return web::error(e.status, e.reason, &e.message),
            };
            let result = match segments.as_slice() {
                ["admin", "v1", "events", id, "replay"] => self.replay_event(id, &body).await,
                ["admin", "v1", "dlq", "replay"] => self.dlq_action(&body, DlqAction::Replay).await,
                ["admin", "v1", "dlq", "purge"] => self.dlq_action(&body, DlqAction::Purge).await,
                _ => Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    "no such admin route",
                )),
            };
            return match result {
                Ok(value) => web::json(StatusCode::OK, &value),
                Err(e) => web::error(e.status, e.reason, &e.message),
            };
        }
        let result = match (&method, segments.as_slice()) {
            (&Method::GET, ["metrics"]) => {
                return match tokio::task::spawn_blocking(move || this.metrics.render()).await {
                    Ok(text) => {
                        let mut resp = Response::new(Body::from(text));
                        resp.headers_mut().insert(
                            header::CONTENT_TYPE,
                            http::HeaderValue::from_static(metrics::CONTENT_TYPE),
                        );
                        resp
                    }
                    Err(_) => web::error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal",
                        "internal error",
                    ),
                };
            }
            (&Method::GET, ["admin", "v1", "status"]) => {
                let hosts = match this.store.cluster() {
                    Some(c) => Some((c.host().to_string(), c.hosts().await)),
                    None => None,
                };
                tokio::task::spawn_blocking(move || {
                    let mut v =
                        serde_json::to_value(status::report(&this.telemetry)).map_err(|e| {
                            ApiError::new(
                                StatusCode::INTERNAL_SERVER_ERROR,
                                "internal",
                                e.to_string(),
                            )
                        })?;
                    // On a store several hosts share: this host's name, and every
                    // host's report (what it runs, what it sees waiting).
                    if let Some((host, reports)) = hosts {
                        let reports = reports.map_err(ApiError::store)?;
                        v["cluster"] = serde_json::json!({ "host": host, "hosts": reports });
                    }
                    Ok(v)
                })
                .await
            }
            (&Method::GET, ["admin", "v1", "events"]) => Ok(this.list_events(&query).await),
            (&Method::GET, ["admin", "v1", "events", id]) => Ok(this.show_event(id).await),
            (&Method::GET, ["admin", "v1", "dlq"]) => Ok(this.list_dlq(&query).await),
            (&Method::GET, ["admin", "v1", "plugins", name, "kv"]) => {
                Ok(this.list_kv(name, &query).await)
            }
            _ => Ok(Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such admin route",
            ))),
        };
        match result {
            Ok(Ok(value)) => web::json(StatusCode::OK, &value),
            Ok(Err(e)) => web::error(e.status, e.reason, &e.message),
            Err(e) => {
                tracing::error!(error = %e, "admin request task failed");
                web::error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error",
                )
            }
        }
    }

    async fn list_events(&self, q: &[(String, String)]) -> Result<Value, ApiError> {
        let (filter, before, limit) = parse_list_query(q)?;
        let page = self
            .store
            .list_events(&filter, before, limit, SCAN_LIMIT)
            .await
            .map_err(ApiError::store)?;
        let events: Vec<Value> = page
            .events
            .iter()
            .map(|(id, meta, ds)| event_summary(*id, meta, ds))
            .collect();
        Ok(json!({
            "events": events,
            "next_cursor": page.next_cursor.map(|c| c.to_string()),
        }))
    }

    async fn show_event(&self, id: &str) -> Result<Value, ApiError> {
        let id: u64 = id.parse().map_err(|_| {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no event with this id")
        })?;
        let event = self
            .store
            .event(id)
            .await
            .map_err(ApiError::store)?
            .ok_or_else(|| {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", "no event with this id")
            })?;
        let deliveries = self.store.deliveries(id).await.map_err(ApiError::store)?;
        let mut v = event_summary(id, &event.meta, &deliveries);
        v["headers"] = json!(event.meta.headers);
        match std::str::from_utf8(&event.body) {
            Ok(text) => v["body"] = json!(text),
            Err(_) => v["body_base64"] = json!(B64.encode(&event.body)),
        }
        let mut shown = Vec::with_capacity(deliveries.len());
        for d in &deliveries {
            let journal = self
                .store
                .journal(id, &d.plugin)
                .await
                .map_err(ApiError::store)?;
            let mut dv = json!(d);
            dv["journal"] = json!(journal);
            // A delivery waiting in its ordering lane names the one it waits behind.
            if let Some((key, head)) = self.registry.lanes().held_by(&d.plugin, id) {
                dv["held_by"] = json!({ "ordering_key": key, "event": head.to_string() });
            }
            shown.push(dv);
        }
        v["deliveries"] = json!(shown);
        Ok(v)
    }

    /// Dead deliveries, newest event first: one row per (event, plugin).
    async fn list_dlq(&self, q: &[(String, String)]) -> Result<Value, ApiError> {
        let (mut filter, before, limit) = parse_list_query(q)?;
        filter.status = Some(DeliveryStatus::Dead);
        let page = self
            .store
            .list_events(&filter, before, limit, SCAN_LIMIT)
            .await
            .map_err(ApiError::store)?;
        let mut rows = Vec::new();
        for (id, meta, deliveries) in &page.events {
            for d in deliveries.iter().filter(|d| filter.matches_delivery(d)) {
                let last = d.attempts.last();
                rows.push(json!({
                    "id": id.to_string(),
                    "event_id": meta.event_id,
                    "source": meta.source,
                    "type": meta.event_type,
                    "plugin": d.plugin,
                    "attempts": d.attempts.len(),
                    "last_error": last.and_then(|a| a.error.clone()),
                    "dead_at_ms": d.updated_at_ms,
                }));
            }
        }
        Ok(json!({
            "dead_letters": rows,
            "next_cursor": page.next_cursor.map(|c| c.to_string()),
        }))
    }

    /// Replay one event to all its plugins, or to `{"plugin": NAME}` only. Plugins that
    /// subscribe to the event now but had no delivery get one.
    async fn replay_event(&self, id: &str, body: &Value) -> Result<Value, ApiError> {
        let id = parse_id(id)?;
        let event = self
            .store
            .event(id)
            .await
            .map_err(ApiError::store)?
            .ok_or_else(|| {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", "no event with this id")
            })?;
        let subscribed = self
            .registry
            .subscribers(&event.meta.source, &event.meta.event_type);
        let (only, add) = match body.get("plugin") {
            None | Some(Value::Null) => (None, subscribed),
            Some(Value::String(p)) => {
                let has_delivery = self
                    .store
                    .delivery(id, p)
                    .await
                    .map_err(ApiError::store)?
                    .is_some();
                if !has_delivery && !subscribed.contains(p) {
                    return Err(ApiError::bad(format!(
                        "plugin `{p}` has no delivery of this event and does not subscribe to it"
                    )));
                }
                (Some(vec![p.clone()]), vec![p.clone()])
            }
            Some(_) => return Err(ApiError::bad("`plugin` must be a plugin name")),
        };
        let keep_journal = keep_journal(body)?;
        let replayed = self
            .store
            .replay(id, only, add, false, keep_journal, now_ms())
            .await
            .map_err(ApiError::store)?;
        Ok(json!({ "id": id.to_string(), "replayed": replayed }))
    }

    /// Replay or purge dead letters chosen by `{"ids": [...]}`, by filters
    /// (`plugin`, `source`, `type`, `since`, `until`), or `{"all": true}`. An empty
    /// selector is refused, so nothing is replayed or purged by accident.
    async fn dlq_action(&self, body: &Value, action: DlqAction) -> Result<Value, ApiError> {
        let obj = body.as_object().cloned().unwrap_or_default();
        for key in obj.keys() {
            if ![
                "ids",
                "plugin",
                "source",
                "type",
                "since",
                "until",
                "all",
                "keep_journal",
            ]
            .contains(&key.as_str())
            {
                return Err(ApiError::bad(format!("unknown field `{key}`")));
            }
        }
        let mut filter = EventFilter {
            status: Some(DeliveryStatus::Dead),
            ..EventFilter::default()
        };
        let text = |k: &str| -> Result<Option<String>, ApiError> {
            match obj.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(ApiError::bad(format!("`{k}` must be a string"))),
            }
        };
        filter.plugin = text("plugin")?;
        filter.source = text("source")?;
        filter.event_type = text("type")?;
        filter.since_ms = text("since")?
            .map(|v| parse_time(&v, "since"))
            .transpose()?;
        filter.until_ms = text("until")?
            .map(|v| parse_time(&v, "until"))
            .transpose()?;
        let all = obj.get("all").and_then(Value::as_bool).unwrap_or(false);
        let ids: Option<Vec<u64>> = match obj.get("ids") {
            None | Some(Value::Null) => None,
            Some(Value::Array(a)) => Some(
                a.iter()
                    .map(|v| {
                        v.as_str()
                            .map(parse_id)
                            .unwrap_or_else(|| Err(ApiError::bad("`ids` are event id strings")))
                    })
                    .collect::<Result<_, _>>()?,
            ),
            Some(_) => return Err(ApiError::bad("`ids` must be a list of event ids")),
        };
        let filtered = filter.plugin.is_some()
            || filter.source.is_some()
            || filter.event_type.is_some()
            || filter.since_ms.is_some()
            || filter.until_ms.is_some();
        if ids.is_none() && !filtered && !all {
            return Err(ApiError::bad(
                "choose dead letters with `ids`, a filter (plugin, source, type, since, until) or `all: true`",
            ));
        }

        let targets = self.dlq_targets(&filter, ids).await?;
        self.dlq_apply_keeping(action, targets, keep_journal(body)?)
            .await
    }

    /// The dead (event, plugin) pairs that `filter` selects, among the events `ids`
    /// when given, else among all stored events (paged through, newest first).
    async fn dlq_targets(
        &self,
        filter: &EventFilter,
        ids: Option<Vec<u64>>,
    ) -> Result<Vec<(u64, String)>, ApiError> {
        let mut targets: Vec<(u64, String)> = Vec::new();
        match ids {
            Some(ids) => {
                for id in ids {
                    for d in self.store.deliveries(id).await.map_err(ApiError::store)? {
                        if filter.matches_delivery(&d) {
                            targets.push((id, d.plugin));
                        }
                    }
                }
            }
            None => {
                let mut before = None;
                loop {
                    let page = self
                        .store
                        .list_events(filter, before, MAX_PAGE, SCAN_LIMIT)
                        .await
                        .map_err(ApiError::store)?;
                    for (id, _, ds) in &page.events {
                        targets.extend(
                            ds.iter()
                                .filter(|d| filter.matches_delivery(d))
                                .map(|d| (*id, d.plugin.clone())),
                        );
                    }
                    match page.next_cursor {
                        Some(c) => before = Some(c),
                        None => break,
                    }
                }
            }
        }
        Ok(targets)
    }

    /// Replay (only if still dead, with a fresh journal) or purge these dead deliveries.
    async fn dlq_apply(
        &self,
        action: DlqAction,
        targets: Vec<(u64, String)>,
    ) -> Result<Value, ApiError> {
        self.dlq_apply_keeping(action, targets, false).await
    }

    /// Like [`Admin::dlq_apply`]; a replay keeps each delivery's journal when asked.
    async fn dlq_apply_keeping(
        &self,
        action: DlqAction,
        targets: Vec<(u64, String)>,
        keep_journal: bool,
    ) -> Result<Value, ApiError> {
        match action {
            DlqAction::Replay => {
                let mut replayed = 0;
                let now = now_ms();
                for (id, plugin) in targets {
                    let done = self
                        .store
                        .replay(id, Some(vec![plugin]), Vec::new(), true, keep_journal, now)
                        .await
                        .map_err(ApiError::store)?;
                    replayed += done.len();
                }
                Ok(json!({ "replayed": replayed }))
            }
            DlqAction::Purge => {
                let purged = self
                    .store
                    .purge_dead(targets)
                    .await
                    .map_err(ApiError::store)?;
                Ok(json!({ "purged": purged }))
            }
        }
    }

    async fn list_kv(&self, plugin: &str, q: &[(String, String)]) -> Result<Value, ApiError> {
        let mut prefix = String::new();
        let mut start_after = None;
        let mut limit = 100;
        for (k, v) in q {
            match k.as_str() {
                "prefix" => prefix = v.clone(),
                "start_after" => start_after = Some(v.clone()),
                "limit" => {
                    limit = v
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=MAX_PAGE).contains(n))
                        .ok_or_else(|| ApiError::bad(format!("limit must be 1 to {MAX_PAGE}")))?
                }
                other => return Err(ApiError::bad(format!("unknown query parameter `{other}`"))),
            }
        }
        let entries = self
            .store
            .kv_list(plugin, &prefix, start_after.as_deref(), limit, true)
            .await
            .map_err(ApiError::store)?;
        let next = (entries.len() == limit).then(|| entries.last().map(|(k, _)| k.clone()));
        let entries: Vec<Value> = entries
            .into_iter()
            .map(
                |(key, value)| match String::from_utf8(value.unwrap_or_default()) {
                    Ok(text) => json!({ "key": key, "value": text }),
                    Err(e) => json!({ "key": key, "value_base64": B64.encode(e.as_bytes()) }),
                },
            )
            .collect();
        Ok(json!({ "plugin": plugin, "entries": entries, "next_start_after": next.flatten() }))
    }
}

/// The event filters, cursor and page size of a list request.
fn parse_list_query(q: &[(String, String)]) -> Result<(EventFilter, Option<u64>, usize), ApiError> {
    let mut filter = EventFilter::default();
    let mut before = None;
    let mut limit = DEFAULT_PAGE;
    for (k, v) in q {
        match k.as_str() {
            "source" => filter.source = Some(v.clone()),
            "event_id" => filter.event_id = Some(v.clone()),
            "type" => filter.event_type = Some(v.clone()),
            "plugin" => filter.plugin = Some(v.clone()),
            "status" => {
                filter.status = Some(DeliveryStatus::parse(v).ok_or_else(|| {
                    ApiError::bad(format!(
                        "status must be pending, retrying, done or dead, not `{v}`"
                    ))
                })?)
            }
            "since" => filter.since_ms = Some(parse_time(v, "since")?),
            "until" => filter.until_ms = Some(parse_time(v, "until")?),
            "cursor" => {
                before =
                    Some(v.parse().map_err(|_| {
                        ApiError::bad("cursor must be a cursor from a previous page")
                    })?)
            }
            "limit" => {
                limit = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE).contains(n))
                    .ok_or_else(|| ApiError::bad(format!("limit must be 1 to {MAX_PAGE}")))?
            }
            other => return Err(ApiError::bad(format!("unknown query parameter `{other}`"))),
        }
    }
    Ok((filter, before, limit))
}

#[derive(Debug, Clone, Copy)]
enum DlqAction {
    Replay,
    Purge,
}

/// `keep_journal` of a replay request: replay the recorded effects instead of starting
/// a fresh journal (default false).
fn keep_journal(body: &Value) -> Result<bool, ApiError> {
    match body.get("keep_journal") {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(ApiError::bad("`keep_journal` must be true or false")),
    }
}

fn parse_id(id: &str) -> Result<u64, ApiError> {
    id.parse()
        .map_err(|_| ApiError::new(StatusCode::NOT_FOUND, "not_found", "no event with this id"))
}

/// Largest admin request body.
const MAX_ADMIN_BODY: usize = 64 * 1024;

/// A POST body as JSON; empty means `{}`.
async fn read_json(req: Request) -> Result<Value, ApiError> {
    use http_body_util::BodyExt;
    let body = http_body_util::Limited::new(req.into_body(), MAX_ADMIN_BODY)
        .collect()
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "the request body is too large",
            )
        })?
        .to_bytes();
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(&body).map_err(|e| ApiError::bad(format!("the body is not JSON: {e}")))
}

/// The overall status of an event across its deliveries: the least finished wins.
pub fn event_status(deliveries: &[Delivery]) -> &'static str {
    if deliveries.is_empty() {
        return "no_subscribers";
    }
    for s in [
        DeliveryStatus::Dead,
        DeliveryStatus::Retrying,
        DeliveryStatus::Leased,
        DeliveryStatus::Pending,
    ] {
        if deliveries.iter().any(|d| d.status == s) {
            return s.as_str();
        }
    }
    "done"
}

fn event_summary(id: u64, meta: &EventMeta, deliveries: &[Delivery]) -> Value {
    json!({
        "id": id.to_string(),
        "event_id": meta.event_id,
        "source": meta.source,
        "type": meta.event_type,
        "received_at_ms": meta.received_at_ms,
        "status": event_status(deliveries),
        "delivery_summary": deliveries.iter().map(|d| json!({
            "plugin": d.plugin,
            "status": d.status,
            "attempts": d.attempts.len(),
            "last_error": d.attempts.last().and_then(|a| a.error.clone()),
        })).collect::<Vec<_>>(),
    })
}

/// Unix milliseconds, or a duration back from now: `90s`, `15m`, `2h`, `7d`.
fn parse_time(v: &str, name: &str) -> Result<u64, ApiError> {
    if let Ok(ms) = v.parse::<u64>() {
        return Ok(ms);
    }
    let (num, unit) = v.split_at(v.len().saturating_sub(1));
    let scale = match unit {
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => 0,
    };
    match num.parse::<u64>() {
        Ok(n) if scale > 0 => Ok(now_ms().saturating_sub(n.saturating_mul(scale))),
        _ => Err(ApiError::bad(format!(
            "{name} must be Unix milliseconds or a duration ago like 15m, 2h, 7d"
        ))),
    }
}

fn query_pairs(q: Option<&str>) -> Vec<(String, String)> {
    q.map(|q| {
        form_urlencoded::parse(q.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    })
    .unwrap_or_default()
}

struct ApiError {
    status: StatusCode,
    reason: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            reason,
            message: message.into(),
        }
    }

    fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    fn store(e: crate::store::StoreError) -> Self {
        tracing::error!(error = %e, "admin read failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "store_error",
            e.to_string(),
        )
    }
}
