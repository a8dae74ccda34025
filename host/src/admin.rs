//! The admin API on `admin_listen`: read the stored events, their deliveries and
//! attempts, the loaded plugins and their kv. Every route needs the bearer token.
//!
//! Read-only over the store and registry; it never changes what ingress stored.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use http::{Method, Response, StatusCode, header};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use crate::config::Secret;
use crate::http::{self as web, Body, Request};
use crate::runtime::registry::Registry;
use crate::store::{Delivery, DeliveryStatus, EventFilter, EventMeta, Store, now_ms};

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
}

impl Admin {
    pub fn new(token: Secret, store: Store, registry: Arc<Registry>) -> Self {
        Admin {
            token,
            store,
            registry,
        }
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
        let this = self.clone();
        let result = match (req.method(), segments.as_slice()) {
            (&Method::GET, ["admin", "v1", "events"]) => {
                tokio::task::spawn_blocking(move || this.list_events(&query)).await
            }
            (&Method::GET, ["admin", "v1", "events", id]) => {
                let id = id.to_string();
                tokio::task::spawn_blocking(move || this.show_event(&id)).await
            }
            (&Method::GET, ["admin", "v1", "plugins"]) => Ok(Ok(self.list_plugins())),
            (&Method::GET, ["admin", "v1", "plugins", name, "kv"]) => {
                let name = name.to_string();
                tokio::task::spawn_blocking(move || this.list_kv(&name, &query)).await
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

    fn list_events(&self, q: &[(String, String)]) -> Result<Value, ApiError> {
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
                    before = Some(v.parse().map_err(|_| {
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
        let page = self
            .store
            .list_events(&filter, before, limit, SCAN_LIMIT)
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

    fn show_event(&self, id: &str) -> Result<Value, ApiError> {
        let id: u64 = id.parse().map_err(|_| {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no event with this id")
        })?;
        let event = self
            .store
            .event(id)
            .map_err(ApiError::store)?
            .ok_or_else(|| {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", "no event with this id")
            })?;
        let deliveries = self.store.deliveries(id).map_err(ApiError::store)?;
        let mut v = event_summary(id, &event.meta, &deliveries);
        v["headers"] = json!(event.meta.headers);
        match std::str::from_utf8(&event.body) {
            Ok(text) => v["body"] = json!(text),
            Err(_) => v["body_base64"] = json!(B64.encode(&event.body)),
        }
        v["deliveries"] = json!(deliveries);
        Ok(v)
    }

    fn list_plugins(&self) -> Value {
        let plugins: Vec<Value> = self
            .registry
            .snapshot()
            .values()
            .map(|p| {
                let m = &p.manifest;
                json!({
                    "name": &*p.name,
                    "version": p.compiled.version,
                    "loaded_at_ms": p.loaded_at_ms,
                    "subscribe": m.subscribe.iter().map(|s| json!({
                        "source": s.source,
                        "types": s.types.as_ref().map(|t| t.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>()),
                    })).collect::<Vec<_>>(),
                    "limits": {
                        "memory_mb": m.limits.memory_mb,
                        "timeout_ms": m.limits.timeout_ms,
                        "max_concurrency": m.limits.max_concurrency,
                    },
                    "retry": {
                        "max_attempts": m.retry.max_attempts,
                        "initial_backoff_ms": m.retry.initial_backoff_ms,
                        "max_backoff_ms": m.retry.max_backoff_ms,
                    },
                    "grants": { "kv": m.grants.kv },
                    // Keys only: values may be secrets.
                    "config_keys": m.config.keys().collect::<Vec<_>>(),
                    "in_flight": m.limits.max_concurrency as usize - p.permits.available_permits(),
                })
            })
            .collect();
        json!({ "plugins": plugins })
    }

    fn list_kv(&self, plugin: &str, q: &[(String, String)]) -> Result<Value, ApiError> {
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
            .kv_list(plugin, &prefix, start_after.as_deref(), limit)
            .map_err(ApiError::store)?;
        let next = (entries.len() == limit).then(|| entries.last().map(|(k, _)| k.clone()));
        let entries: Vec<Value> = entries
            .into_iter()
            .map(|(key, value)| match String::from_utf8(value) {
                Ok(text) => json!({ "key": key, "value": text }),
                Err(e) => json!({ "key": key, "value_base64": B64.encode(e.as_bytes()) }),
            })
            .collect();
        Ok(json!({ "plugin": plugin, "entries": entries, "next_start_after": next.flatten() }))
    }
}

/// The overall status of an event across its deliveries: the least finished wins.
pub fn event_status(deliveries: &[Delivery]) -> &'static str {
    if deliveries.is_empty() {
        return "no_subscribers";
    }
    for s in [
        DeliveryStatus::Dead,
        DeliveryStatus::Retrying,
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
