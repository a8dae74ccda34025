//! The web console at `/ui` on the admin listener: server-rendered pages over the same
//! store, registry and deployer as the admin API, with a stylesheet and a little
//! JavaScript compiled into the binary (nothing is fetched at run time).
//!
//! Sign-in exchanges the admin token for a session cookie (`session.rs`). Every page
//! and action needs the session, except the sign-in page and the stylesheet, which show
//! no data; every state-changing request must carry the session's CSRF token and, when
//! the browser says where it comes from, come from this origin.

mod dlq;
mod event;
mod events;
mod history;
mod layout;
mod overview;
mod plugins;
mod send;
mod session;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{HeaderValue, Method, Response, StatusCode, header};
use http_body_util::BodyExt;
use maud::{Markup, html};
use subtle::ConstantTimeEq;

use super::Admin;
use crate::config::SourceConfig;
use crate::http::{Body, Request};
use history::History;
use session::{Session, Sessions};

const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");

/// Largest urlencoded form body (a test event's payload is the big one).
const MAX_FORM_BODY: usize = 4 << 20;

/// The console's state inside the admin service.
pub struct Console {
    sessions: Sessions,
    history: History,
    /// Signs and posts test events; None when the host did not give it its sources.
    sender: Option<send::Sender>,
}

impl Console {
    pub fn new() -> Console {
        Console {
            sessions: Sessions::default(),
            history: History::default(),
            sender: None,
        }
    }

    pub fn set_sender(&mut self, sources: BTreeMap<String, SourceConfig>, ingress: SocketAddr) {
        self.sender = Some(send::Sender::new(sources, ingress));
    }
}

/// What a signed-in request carries to a page.
pub struct Ctx {
    admin: Arc<Admin>,
    session: Session,
    query: Vec<(String, String)>,
}

impl Ctx {
    /// A query parameter, if given and not empty.
    fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    fn page(&self, title: &str, current: &str, body: Markup) -> Markup {
        layout::page(title, current, &self.session.csrf, body)
    }
}

/// Sample the overview's charts until `stop` resolves.
pub async fn sample(admin: &Admin, stop: impl std::future::Future<Output = ()>) {
    history::sample(&admin.console.history, &admin.telemetry, stop).await;
}

/// Serve a `/ui` request.
pub async fn handle(admin: Arc<Admin>, req: Request) -> Response<Body> {
    let mut resp = route(admin, req).await;
    let h = resp.headers_mut();
    for (name, value) in [
        (header::CACHE_CONTROL, "no-store"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "same-origin"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    resp
}

async fn route(admin: Arc<Admin>, req: Request) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().trim_end_matches('/').to_string();
    let query = super::query_pairs(req.uri().query());
    match (&method, path.as_str()) {
        (&Method::GET, "/ui/static/console.css") => return asset(CSS, "text/css"),
        (&Method::GET, "/ui/login") => {
            if session_of(&admin, req.headers()).is_some() {
                return redirect("/ui");
            }
            let next = query
                .iter()
                .find(|(k, _)| k == "next")
                .map(|(_, v)| safe_next(v))
                .unwrap_or("/ui");
            return respond(StatusCode::OK, layout::login(None, next));
        }
        (&Method::POST, "/ui/login") => return login(&admin, req).await,
        _ => {}
    }
    let Some((id, session)) = session_of(&admin, req.headers()) else {
        return refuse(&method, req.uri());
    };
    let segments: Vec<String> = path.split('/').skip(1).map(str::to_string).collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let ctx = Ctx {
        admin: admin.clone(),
        session,
        query,
    };
    if method == Method::GET {
        return match segments.as_slice() {
            ["ui"] => overview::page(&ctx).await,
            ["ui", "static", "console.js"] => asset(JS, "text/javascript"),
            ["ui", "events"] => events::page(&ctx).await,
            ["ui", "events", id] => event::page(&ctx, id).await,
            ["ui", "dlq"] => dlq::page(&ctx).await,
            ["ui", "plugins"] => plugins::page(&ctx, None).await,
            ["ui", "send"] => send::page(&ctx, None).await,
            _ => not_found(&ctx),
        };
    }
    if method != Method::POST {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    }
    if !same_origin(req.headers()) {
        return plain(
            StatusCode::FORBIDDEN,
            "refused: this request came from another site (Origin / Sec-Fetch-Site)",
        );
    }
    // The upload is multipart; its CSRF field is checked after parsing, before acting.
    if segments == ["ui", "plugins", "deploy"] {
        return plugins::deploy(&ctx, req).await;
    }
    let header_token = req
        .headers()
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let form = match read_form(req).await {
        Ok(f) => f,
        Err(resp) => return resp,
    };
    let token = header_token.or_else(|| form.get("csrf").map(str::to_string));
    if !token.is_some_and(|t| ctx.session.csrf_matches(&t)) {
        return csrf_refused();
    }
    match segments.as_slice() {
        ["ui", "logout"] => {
            admin.console.sessions.end(&id);
            let mut resp = redirect("/ui/login");
            set_cookie(&mut resp, &session::clear_cookie());
            resp
        }
        ["ui", "events", id, "replay"] => event::replay(&ctx, id, &form).await,
        ["ui", "dlq"] => dlq::action(&ctx, &form).await,
        ["ui", "plugins", name, "remove"] => plugins::remove(&ctx, name, &form).await,
        ["ui", "send"] => send::send(&ctx, &form).await,
        _ => not_found(&ctx),
    }
}

async fn login(admin: &Admin, req: Request) -> Response<Body> {
    if !same_origin(req.headers()) {
        return plain(
            StatusCode::FORBIDDEN,
            "refused: this sign-in came from another site",
        );
    }
    let form = match read_form(req).await {
        Ok(f) => f,
        Err(resp) => return resp,
    };
    let next = safe_next(form.get("next").unwrap_or("/ui"));
    let given = form.get("token").unwrap_or("");
    let ok: bool = given
        .as_bytes()
        .ct_eq(admin.token.expose().as_bytes())
        .into();
    if !ok || given.is_empty() {
        tracing::warn!("console sign-in refused: wrong admin token");
        return respond(
            StatusCode::UNAUTHORIZED,
            layout::login(Some("That is not the admin token."), next),
        );
    }
    let id = admin.console.sessions.create();
    let mut resp = redirect(next);
    set_cookie(&mut resp, &session::set_cookie(&id));
    resp
}

fn session_of(admin: &Admin, headers: &http::HeaderMap) -> Option<(String, Session)> {
    let id = session::cookie_value(headers)?;
    let s = admin.console.sessions.get(&id)?;
    Some((id, s))
}

/// Without a session: a page redirects to the sign-in, anything else is 401. Neither
/// says anything about the host.
fn refuse(method: &Method, uri: &http::Uri) -> Response<Body> {
    if *method == Method::GET {
        let next = uri.path_and_query().map_or("/ui", |p| p.as_str());
        let target: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("next", safe_next(next))
            .finish();
        return redirect(&format!("/ui/login?{target}"));
    }
    plain(StatusCode::UNAUTHORIZED, "sign in at /ui/login first")
}

fn csrf_refused() -> Response<Body> {
    plain(
        StatusCode::FORBIDDEN,
        "refused: the form's CSRF token is missing or stale; reload the page and try again",
    )
}

/// Whether the browser's `Origin` (when sent) is this host, and `Sec-Fetch-Site` (when
/// sent) does not name another site.
fn same_origin(headers: &http::HeaderMap) -> bool {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = text("sec-fetch-site")
        && !matches!(site, "same-origin" | "none")
    {
        return false;
    }
    match (text("origin"), text("host")) {
        (None, _) => true,
        (Some(origin), Some(host)) => {
            origin == format!("http://{host}") || origin == format!("https://{host}")
        }
        (Some(_), None) => false,
    }
}

/// A redirect target inside the console, never elsewhere.
fn safe_next(next: &str) -> &str {
    let inside = (next == "/ui" || next.starts_with("/ui/") || next.starts_with("/ui?"))
        && !next.contains("//")
        && !next.contains('\\');
    if inside { next } else { "/ui" }
}

/// A urlencoded form's fields, in order.
#[derive(Debug, Default)]
pub struct Form(Vec<(String, String)>);

impl Form {
    /// The first value of `name`, if given and not empty.
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    fn all(&self, name: &str) -> impl Iterator<Item = &str> {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

async fn read_form(req: Request) -> Result<Form, Response<Body>> {
    let body = http_body_util::Limited::new(req.into_body(), MAX_FORM_BODY)
        .collect()
        .await
        .map_err(|_| plain(StatusCode::PAYLOAD_TOO_LARGE, "the form is too large"))?
        .to_bytes();
    Ok(Form(
        form_urlencoded::parse(&body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect(),
    ))
}

fn respond(status: StatusCode, markup: Markup) -> Response<Body> {
    let mut resp = Response::new(Body::from(markup.into_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    resp
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut resp = Response::new(Body::from(text));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn asset(text: &'static str, content_type: &'static str) -> Response<Body> {
    let mut resp = plain(StatusCode::OK, text);
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

fn redirect(to: &str) -> Response<Body> {
    let mut resp = Response::new(Body::default());
    *resp.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = HeaderValue::from_str(to) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

fn set_cookie(resp: &mut Response<Body>, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
}

fn not_found(ctx: &Ctx) -> Response<Body> {
    respond(
        StatusCode::NOT_FOUND,
        ctx.page(
            "Not found",
            "",
            html! { p { "No such page. " a href="/ui" { "Back to the overview" } } },
        ),
    )
}

/// A page that reports a refused request, with a way back.
fn error_page(ctx: &Ctx, status: StatusCode, message: &str, back: &str) -> Response<Body> {
    respond(
        status,
        ctx.page(
            "Refused",
            "",
            html! {
                p.error role="alert" { (message) }
                p { a href=(back) { "Back" } }
            },
        ),
    )
}

/// A query string of the non-empty pairs.
fn query_string<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if !v.is_empty() {
            s.append_pair(k, v);
        }
    }
    s.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn origin_checks() {
        assert!(same_origin(&headers(&[("host", "127.0.0.1:9090")])));
        assert!(same_origin(&headers(&[
            ("host", "127.0.0.1:9090"),
            ("origin", "http://127.0.0.1:9090"),
            ("sec-fetch-site", "same-origin"),
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "127.0.0.1:9090"),
            ("origin", "http://evil.example"),
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "127.0.0.1:9090"),
            ("sec-fetch-site", "cross-site"),
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "127.0.0.1:9090"),
            ("origin", "null"),
        ])));
    }

    #[test]
    fn redirects_stay_inside_the_console() {
        assert_eq!(safe_next("/ui/events?source=a"), "/ui/events?source=a");
        assert_eq!(safe_next("/ui"), "/ui");
        for bad in [
            "https://evil.example",
            "//evil.example",
            "/ui//evil",
            "/uix",
            "/admin/v1/events",
            "/ui/\\evil",
        ] {
            assert_eq!(safe_next(bad), "/ui", "{bad}");
        }
    }
}
