//! `/admin/v1/plugins`: list the loaded plugins, show one, deploy (`PUT`) and remove
//! (`DELETE`) them in the running host.
//!
//! A deploy is validated before it replaces anything (see `plugins::deploy`); a refused
//! one answers 422 with the reason and leaves the running version serving.
//!
//! Wire format of `PUT /admin/v1/plugins/{name}` — one JSON object:
//! `{"manifest": "<the NAME.toml text>", "wasm_base64": "<the component, base64>"}`.
//! JSON keeps the deploy one self-describing request that curl, scripts and the CLI
//! send alike; base64 costs a third more bytes on a loopback admin port.

use std::sync::atomic::Ordering;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use http::{Method, Response, StatusCode};
use serde_json::{Value, json};

use super::Admin;
use crate::config::validate_name;
use crate::http::{self as web, Body, Request};
use crate::plugins::deploy::Action;
use crate::plugins::{Plugin, PluginError};
use crate::runtime::{MAX_COMPONENT_BYTES, MAX_ERROR_BYTES, cache};

/// Largest deploy body: the largest component in base64, plus room for the manifest.
const MAX_DEPLOY_BODY: usize = MAX_COMPONENT_BYTES / 3 * 4 + (1 << 20);

impl Admin {
    /// Route `/admin/v1/plugins` and `/admin/v1/plugins/{name}`; `rest` is the part
    /// after `plugins` (at most one segment: `/plugins/{name}/kv` is not routed here).
    pub(super) async fn plugins_route(
        &self,
        method: &Method,
        rest: &[&str],
        req: Request,
    ) -> Response<Body> {
        let result = match (method, rest) {
            (&Method::GET, []) => Ok((StatusCode::OK, self.list_plugins().await)),
            (&Method::GET, [name]) => self.show_plugin(name),
            (&Method::PUT, [name]) => self.deploy_plugin(name, req).await,
            (&Method::DELETE, [name]) => self.remove_plugin(name).await,
            _ => Err(PluginApiError(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "use GET /admin/v1/plugins, or GET, PUT or DELETE /admin/v1/plugins/{name}"
                    .to_string(),
            )),
        };
        match result {
            Ok((status, value)) => web::json(status, &value),
            Err(PluginApiError(status, reason, message)) => web::error(status, reason, &message),
        }
    }

    async fn list_plugins(&self) -> Value {
        // On a store several hosts share: which version each host reported running.
        let hosts = match self.store.cluster() {
            Some(c) => c.hosts().await.unwrap_or_else(|e| {
                tracing::warn!(error = %e, "cannot read the hosts' reports");
                Vec::new()
            }),
            None => Vec::new(),
        };
        let plugins: Vec<Value> = self
            .deployer
            .registry()
            .snapshot()
            .values()
            .map(|p| {
                let mut view = plugin_view(p);
                if self.store.cluster().is_some() {
                    let running: serde_json::Map<String, Value> = hosts
                        .iter()
                        .map(|h| (h.host.clone(), json!(h.plugins.get(&*p.name))))
                        .collect();
                    view["hosts"] = Value::Object(running);
                }
                view
            })
            .collect();
        let refused: Vec<Value> = self
            .deployer
            .refusals()
            .into_iter()
            .map(|(name, reason)| json!({ "name": name, "reason": reason }))
            .collect();
        let mut out = json!({ "plugins": plugins, "refused": refused });
        if let Some(c) = self.store.cluster() {
            out["host"] = json!(c.host());
            out["hosts"] = json!(hosts);
        }
        out
    }

    fn show_plugin(&self, name: &str) -> Result<(StatusCode, Value), PluginApiError> {
        let plugin = self
            .deployer
            .registry()
            .get(name)
            .ok_or_else(|| not_loaded(name))?;
        let mut view = plugin_view(&plugin);
        if let Some(spec) = &plugin.manifest.ordering {
            // The busiest lanes: which delivery each key waits behind.
            let lanes = self.deployer.registry().lanes().view(name, MAX_LANES_SHOWN);
            view["ordering"] = json!({ "key": spec.to_string(), "lanes": lanes });
        }
        if let Some(reason) = self.deployer.refusals().get(name) {
            view["refused"] = json!(reason);
        }
        Ok((StatusCode::OK, view))
    }

    async fn deploy_plugin(
        &self,
        name: &str,
        req: Request,
    ) -> Result<(StatusCode, Value), PluginApiError> {
        validate_name(name).map_err(|m| PluginApiError::bad("bad_request", m))?;
        let (manifest, wasm) = read_deploy_body(req).await?;
        self.deploy_parts(name, manifest, wasm).await
    }

    /// Validate and deploy a plugin from its manifest text and component bytes (the
    /// API's `PUT` and the console's upload). A refused deploy is 422 with the reason.
    pub(super) async fn deploy_parts(
        &self,
        name: &str,
        manifest: String,
        wasm: Vec<u8>,
    ) -> Result<(StatusCode, Value), PluginApiError> {
        validate_name(name).map_err(|m| PluginApiError::bad("bad_request", m))?;
        let deployed = self
            .deployer
            .deploy(name, manifest, wasm)
            .await
            .map_err(|e| match e {
                PluginError::Read { .. } => PluginApiError(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "write_failed",
                    e.to_string(),
                ),
                other => {
                    let serving = self
                        .deployer
                        .registry()
                        .get(name)
                        .map(|p| format!(" (version {} keeps serving)", &p.compiled.version[..12]))
                        .unwrap_or_default();
                    PluginApiError(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "invalid_plugin",
                        format!("{other}{serving}"),
                    )
                }
            })?;
        let (status, action, previous) = match &deployed.action {
            Action::Added => (StatusCode::CREATED, "added", None),
            Action::Replaced { previous } => (StatusCode::OK, "replaced", Some(previous.clone())),
            Action::Unchanged => (StatusCode::OK, "unchanged", None),
        };
        Ok((
            status,
            json!({
                "name": name,
                "action": action,
                "version": deployed.plugin.compiled.version,
                "previous_version": previous,
                "warnings": deployed.warnings,
                "plugin": plugin_view(&deployed.plugin),
            }),
        ))
    }

    pub(super) async fn remove_plugin(
        &self,
        name: &str,
    ) -> Result<(StatusCode, Value), PluginApiError> {
        let removed = self.deployer.remove(name).await.map_err(|e| {
            PluginApiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                "remove_failed",
                e.to_string(),
            )
        })?;
        let plugin = removed.ok_or_else(|| not_loaded(name))?;
        Ok((
            StatusCode::OK,
            json!({
                "name": name,
                "removed_version": plugin.compiled.version,
                "note": "no new deliveries start; its pending deliveries stay stored and run if the plugin is deployed again",
            }),
        ))
    }
}

/// Ordering lanes shown per plugin, longest first.
const MAX_LANES_SHOWN: usize = 100;

/// One plugin as the admin API shows it.
pub(super) fn plugin_view(p: &Plugin) -> Value {
    let m = &p.manifest;
    let s = &p.compiled.stats;
    let n = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let calls = n(&s.calls);
    let finished = calls.saturating_sub(n(&s.in_flight));
    json!({
        "name": &*p.name,
        "version": p.compiled.version,
        "manifest_digest": p.manifest_digest,
        "loaded_at_ms": p.loaded_at_ms,
        "load": {
            "from_cache": p.compiled.origin == cache::Origin::Cached,
            "ms": p.compiled.load_time.as_secs_f64() * 1000.0,
        },
        "subscribe": m.subscribe.iter().map(|s| json!({
            "source": s.source,
            "types": s.types.as_ref().map(|t| t.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>()),
        })).collect::<Vec<_>>(),
        "limits": {
            "memory_mb": m.limits.memory_mb,
            "timeout_ms": m.limits.timeout_ms,
            "cpu_ms": m.limits.timeout_ms,
            "max_concurrency": m.limits.max_concurrency,
            "tool_calls_per_second": m.limits.tool_calls_per_second,
            "error_bytes": MAX_ERROR_BYTES,
        },
        "retry": {
            "max_attempts": m.retry.max_attempts,
            "initial_backoff_ms": m.retry.initial_backoff_ms,
            "max_backoff_ms": m.retry.max_backoff_ms,
        },
        "grants": p.grants_view,
        // Keys only: values may be secrets.
        "config_keys": m.config.keys().collect::<Vec<_>>(),
        "in_flight": n(&s.in_flight),
        "stats": {
            "calls": calls,
            "done": n(&s.done),
            "handler_errors": n(&s.handler_errors),
            "traps": n(&s.traps),
            "cpu_deadlines": n(&s.cpu_deadlines),
            "memory_limits": n(&s.memory_limits),
            "timeouts": n(&s.timeouts),
            "mean_call_us": n(&s.total_micros).checked_div(finished),
        },
    })
}

/// The manifest text and component bytes of a deploy request.
async fn read_deploy_body(req: Request) -> Result<(String, Vec<u8>), PluginApiError> {
    use http_body_util::BodyExt;
    let body = http_body_util::Limited::new(req.into_body(), MAX_DEPLOY_BODY)
        .collect()
        .await
        .map_err(|_| {
            PluginApiError(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("the deploy body is larger than {MAX_DEPLOY_BODY} bytes"),
            )
        })?
        .to_bytes();
    let value: Value = serde_json::from_slice(&body).map_err(|e| {
        PluginApiError::bad(
            "bad_request",
            format!(
                "the body must be JSON {{\"manifest\": \"<NAME.toml text>\", \"wasm_base64\": \"<component>\"}}: {e}"
            ),
        )
    })?;
    let obj = value
        .as_object()
        .ok_or_else(|| PluginApiError::bad("bad_request", "the body must be a JSON object"))?;
    if let Some(key) = obj
        .keys()
        .find(|k| !["manifest", "wasm_base64"].contains(&k.as_str()))
    {
        return Err(PluginApiError::bad(
            "bad_request",
            format!("unknown field `{key}` (expected `manifest` and `wasm_base64`)"),
        ));
    }
    let text = |k: &str| {
        obj.get(k).and_then(Value::as_str).ok_or_else(|| {
            PluginApiError::bad(
                "bad_request",
                format!("`{k}` is required and must be a string"),
            )
        })
    };
    let manifest = text("manifest")?.to_string();
    let wasm = B64.decode(text("wasm_base64")?).map_err(|e| {
        PluginApiError::bad("bad_request", format!("`wasm_base64` is not base64: {e}"))
    })?;
    Ok((manifest, wasm))
}

fn not_loaded(name: &str) -> PluginApiError {
    PluginApiError(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no plugin `{name}` is loaded"),
    )
}

/// An error answer: status, machine-readable reason, message.
pub(super) struct PluginApiError(
    pub(super) StatusCode,
    pub(super) &'static str,
    pub(super) String,
);

impl PluginApiError {
    fn bad(reason: &'static str, message: impl Into<String>) -> Self {
        PluginApiError(StatusCode::BAD_REQUEST, reason, message.into())
    }
}
