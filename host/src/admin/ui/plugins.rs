//! Plugins: each loaded plugin's version, subscriptions, limits, grants and recent
//! outcomes; upload a new version (component + manifest, multipart) with a refused
//! deploy's reason shown beside the form; remove one after a confirmation.

use http::{Response, StatusCode, header};
use maud::{Markup, html};

use super::{Ctx, Form, error_page, layout, query_string, redirect, respond};
use crate::admin::plugins::{PluginApiError, plugin_view};
use crate::http::{Body, Request};
use crate::runtime::MAX_COMPONENT_BYTES;
use crate::store::EventFilter;

/// Largest upload: the largest component plus room for the manifest and fields.
const MAX_UPLOAD: u64 = MAX_COMPONENT_BYTES as u64 + (2 << 20);
/// Events examined per plugin for its recent outcomes.
const RECENT_SCAN: usize = 2000;

/// What the upload form shows again after a refused deploy.
#[derive(Default)]
pub struct Refused {
    name: String,
    manifest: String,
    message: String,
}

pub async fn page(ctx: &Ctx, refused: Option<Refused>) -> Response<Body> {
    let status = if refused.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let registry = ctx.admin.deployer.registry().snapshot();
    let refusals = ctx.admin.deployer.refusals();
    let mut cards = Vec::new();
    for plugin in registry.values() {
        cards.push(card(ctx, plugin).await);
    }
    let body = html! {
        @if let Some(name) = ctx.param("deployed") {
            p.notice role="status" { "Deployed " (name) " (" (ctx.param("action").unwrap_or("")) ")." }
        }
        @if let Some(name) = ctx.param("removed") {
            p.notice role="status" { "Removed " (name) ". Its pending deliveries stay stored and run if it is deployed again." }
        }
        @if !refusals.is_empty() {
            h2 { "Refused from the plugins directory" }
            ul { @for (name, reason) in &refusals { li { strong { (name) } ": " code { (reason) } } } }
        }
        @if cards.is_empty() { p.muted { "No plugins are loaded." } }
        div.cards { @for c in &cards { (c) } }
        (upload_form(ctx, refused.as_ref()))
    };
    respond(status, ctx.page("Plugins", "/ui/plugins", body))
}

async fn card(ctx: &Ctx, plugin: &crate::plugins::Plugin) -> Markup {
    let v = plugin_view(plugin);
    let name = plugin.name.to_string();
    let filter = EventFilter {
        plugin: Some(name.clone()),
        ..EventFilter::default()
    };
    let recent = ctx
        .admin
        .store
        .list_events(&filter, None, 5, RECENT_SCAN)
        .await
        .map(|p| p.events)
        .unwrap_or_default();
    let history = &ctx.admin.console.history;
    let pretty = |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap_or_default();
    let version = v["version"].as_str().unwrap_or("");
    html! {
        section.card #{ "plugin-" (name) } aria-labelledby={ "p-" (name) } {
            h3 #{ "p-" (name) } { (name) }
            dl.kv {
                dt { "Version" } dd { code title=(version) { (version.get(..12).unwrap_or(version)) } }
                dt { "Loaded" } dd { (layout::time(plugin.loaded_at_ms)) }
                dt { "Subscriptions" } dd {
                    @for s in v["subscribe"].as_array().into_iter().flatten() {
                        div { (s["source"].as_str().unwrap_or("")) ": "
                            @match s["types"].as_array() {
                                Some(t) => { (t.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(", ")) }
                                None => { "all types" }
                            }
                        }
                    }
                }
                dt { "In flight" } dd { (v["in_flight"]) }
                dt { "Done / errors / traps" } dd {
                    (v["stats"]["done"]) " / " (v["stats"]["handler_errors"]) " / " (v["stats"]["traps"])
                    " (timeouts " (v["stats"]["timeouts"]) ", memory " (v["stats"]["memory_limits"]) ")"
                }
                dt { "Done per second" } dd { (layout::sparkline(&format!("{name} done per second"), "/s", &history.outcome_rate(&name, false))) }
                dt { "Dead per second" } dd { (layout::sparkline(&format!("{name} dead per second"), "/s", &history.outcome_rate(&name, true))) }
            }
            details {
                summary { "Limits, retry and grants" }
                h4 { "Limits" } pre { (pretty(&v["limits"])) }
                h4 { "Retry" } pre { (pretty(&v["retry"])) }
                h4 { "Grants" } pre { (pretty(&v["grants"])) }
                h4 { "Config keys" } pre { (pretty(&v["config_keys"])) }
            }
            h4 { "Recent events" }
            @if recent.is_empty() { p.muted { "None among the latest " (RECENT_SCAN) " events." } }
            ul {
                @for (id, meta, ds) in &recent {
                    @for d in ds.iter().filter(|d| d.plugin == name) {
                        li { a href={ "/ui/events/" (id) } { (id) } " " (meta.event_type) " " (layout::status(d.status.as_str())) }
                    }
                }
            }
            form method="post" action={ "/ui/plugins/" (name) "/remove" } {
                (layout::csrf_field(&ctx.session.csrf))
                button.danger type="submit" { "Remove " (name) "…" }
            }
        }
    }
}

fn upload_form(ctx: &Ctx, refused: Option<&Refused>) -> Markup {
    let empty = Refused::default();
    let r = refused.unwrap_or(&empty);
    html! {
        h2 #deploy-h { "Deploy a plugin" }
        form #deploy method="post" action="/ui/plugins/deploy" enctype="multipart/form-data" aria-labelledby="deploy-h" {
            (layout::csrf_field(&ctx.session.csrf))
            @if refused.is_some() {
                p.error #deploy-error role="alert" data-focus { "Refused: " (r.message) }
            }
            p { label for="up-name" { "Name " } input #up-name type="text" name="name" value=(r.name) required pattern="[a-z0-9][a-z0-9_-]*"; }
            p { label for="up-wasm" { "Component (.wasm) " } input #up-wasm type="file" name="wasm" accept=".wasm" required; }
            p { label for="up-manifest-file" { "Manifest file (.toml) " } input #up-manifest-file type="file" name="manifest" accept=".toml"; }
            p {
                label for="up-manifest" { "…or the manifest text" }
                textarea #up-manifest name="manifest_text" rows="8" { (r.manifest) }
            }
            p.hint { "A new version is validated (manifest, grants, the component's interface) before it replaces the running one; a refused deploy leaves it serving." }
            button type="submit" { "Deploy" }
        }
    }
}

/// `POST /ui/plugins/deploy` (multipart/form-data).
pub async fn deploy(ctx: &Ctx, req: Request) -> Response<Body> {
    let boundary = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|ct| multer::parse_boundary(ct).ok());
    let Some(boundary) = boundary else {
        return super::plain(
            StatusCode::BAD_REQUEST,
            "the upload must be multipart/form-data",
        );
    };
    use http_body_util::BodyExt;
    let constraints = multer::Constraints::new()
        .allowed_fields(vec!["csrf", "name", "wasm", "manifest", "manifest_text"])
        .size_limit(multer::SizeLimit::new().whole_stream(MAX_UPLOAD));
    let mut multipart = multer::Multipart::with_constraints(
        req.into_body().into_data_stream(),
        boundary,
        constraints,
    );
    let mut fields: Vec<(String, Vec<u8>)> = Vec::new();
    loop {
        match multipart.next_field().await {
            Ok(Some(field)) => {
                let name = field.name().unwrap_or("").to_string();
                match field.bytes().await {
                    Ok(b) => fields.push((name, b.to_vec())),
                    Err(e) => return upload_error(e),
                }
            }
            Ok(None) => break,
            Err(e) => return upload_error(e),
        }
    }
    let get = |k: &str| {
        fields
            .iter()
            .find(|(n, v)| n == k && !v.is_empty())
            .map(|(_, v)| v.as_slice())
    };
    let text = |k: &str| get(k).map(|b| String::from_utf8_lossy(b).into_owned());
    if !text("csrf").is_some_and(|t| ctx.session.csrf_matches(&t)) {
        return super::csrf_refused();
    }
    let name = text("name").unwrap_or_default().trim().to_string();
    let (manifest, manifest_error) = match get("manifest") {
        Some(bytes) => match String::from_utf8(bytes.to_vec()) {
            Ok(t) => (t, None),
            Err(_) => (String::new(), Some("the manifest file is not UTF-8 text")),
        },
        None => (text("manifest_text").unwrap_or_default(), None),
    };
    let refuse = |message: String| Refused {
        name: name.clone(),
        manifest: manifest.clone(),
        message,
    };
    let Some(wasm) = get("wasm").map(<[u8]>::to_vec) else {
        return page(
            ctx,
            Some(refuse("choose the component (.wasm) to deploy".into())),
        )
        .await;
    };
    if let Some(message) = manifest_error {
        return page(ctx, Some(refuse(message.into()))).await;
    }
    if manifest.trim().is_empty() {
        return page(
            ctx,
            Some(refuse(
                "give the manifest (a .toml file or its text)".into(),
            )),
        )
        .await;
    }
    match ctx.admin.deploy_parts(&name, manifest.clone(), wasm).await {
        Ok((_, v)) => {
            let action = v["action"].as_str().unwrap_or("");
            redirect(&format!(
                "/ui/plugins?{}",
                query_string([("deployed", name.as_str()), ("action", action)])
            ))
        }
        Err(PluginApiError(_, _, message)) => page(ctx, Some(refuse(message))).await,
    }
}

fn upload_error(e: multer::Error) -> Response<Body> {
    let too_large = matches!(
        e,
        multer::Error::StreamSizeExceeded { .. } | multer::Error::FieldSizeExceeded { .. }
    );
    if too_large {
        super::plain(StatusCode::PAYLOAD_TOO_LARGE, "the upload is too large")
    } else {
        super::plain(
            StatusCode::BAD_REQUEST,
            "the upload is not a valid multipart form",
        )
    }
}

/// `POST /ui/plugins/{name}/remove`: confirm, then remove.
pub async fn remove(ctx: &Ctx, name: &str, form: &Form) -> Response<Body> {
    if ctx.admin.deployer.registry().get(name).is_none() {
        return error_page(
            ctx,
            StatusCode::NOT_FOUND,
            &format!("No plugin `{name}` is loaded."),
            "/ui/plugins",
        );
    }
    if form.get("confirmed") != Some("yes") {
        let body = html! {
            p role="alert" { "Remove " strong { (name) } "? No new deliveries to it start; its pending deliveries stay stored and run if it is deployed again." }
            form method="post" action={ "/ui/plugins/" (name) "/remove" } {
                (layout::csrf_field(&ctx.session.csrf))
                input type="hidden" name="confirmed" value="yes";
                div.actions {
                    button.danger type="submit" { "Yes, remove " (name) }
                    a href="/ui/plugins" { "Cancel" }
                }
            }
        };
        return respond(
            StatusCode::OK,
            ctx.page(&format!("Remove {name}?"), "/ui/plugins", body),
        );
    }
    match ctx.admin.remove_plugin(name).await {
        Ok(_) => redirect(&format!(
            "/ui/plugins?{}",
            query_string([("removed", name)])
        )),
        Err(PluginApiError(status, _, message)) => error_page(ctx, status, &message, "/ui/plugins"),
    }
}
