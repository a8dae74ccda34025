//! Send a test event: the simulator (`agenthook send`) in the browser. Signs a payload
//! for a configured source with its first secret, exactly as that sender would (the
//! signing functions beside each verifier, `ingress::sign`), and posts it to this host's
//! ingress listener over loopback; shows what ingress answered.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use maud::html;

use super::{Ctx, Form, layout, respond};
use crate::clock::now_ms;
use crate::config::SourceConfig;
use crate::http::Body;
use crate::ingress::{self, Outgoing};

const EXAMPLE: &str = "{\n  \"type\": \"test.event\",\n  \"data\": {\"hello\": \"world\"}\n}";

/// The sources to sign for and where ingress listens.
pub struct Sender {
    sources: BTreeMap<String, SourceConfig>,
    url_base: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Sender {
    pub fn new(sources: BTreeMap<String, SourceConfig>, ingress: SocketAddr) -> Sender {
        // A wildcard listen address is reached over loopback.
        let ip = match ingress.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        Sender {
            sources,
            url_base: format!("http://{}", SocketAddr::new(ip, ingress.port())),
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// Sign `body` for `source` and post it; returns ingress's status and answer.
    async fn send(
        &self,
        source: &str,
        event_type: Option<&str>,
        event_id: Option<&str>,
        body: &[u8],
    ) -> Result<(StatusCode, String), String> {
        let config = self
            .sources
            .get(source)
            .ok_or_else(|| format!("no source `{source}` is configured"))?;
        let secret = config
            .secrets
            .first()
            .ok_or_else(|| format!("source `{source}` has no secret"))?;
        let out = Outgoing {
            event_id,
            event_type,
            timestamp: (now_ms() / 1000) as i64,
            body,
        };
        let signed = ingress::sign(config, secret, &out).map_err(|e| e.to_string())?;
        let mut req = http::Request::post(format!("{}/hooks/{source}", self.url_base));
        for (k, v) in &signed.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let req = req
            .body(Full::new(Bytes::from(signed.body)))
            .map_err(|e| format!("cannot build the request: {e}"))?;
        let resp = self
            .client
            .request(req)
            .await
            .map_err(|e| format!("ingress could not be reached: {e}"))?;
        let status = resp.status();
        let answer = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("ingress's answer could not be read: {e}"))?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&answer).into_owned()))
    }
}

/// What the form shows: the last values and the outcome of a send.
#[derive(Default)]
pub struct Sent {
    source: String,
    event_type: String,
    event_id: String,
    payload: String,
    result: Option<Result<(StatusCode, String), String>>,
}

pub async fn page(ctx: &Ctx, sent: Option<Sent>) -> Response<Body> {
    let sources: Vec<(&String, &SourceConfig)> = ctx
        .admin
        .console
        .sender
        .as_ref()
        .map(|s| s.sources.iter().collect())
        .unwrap_or_default();
    let sent = sent.unwrap_or_else(|| Sent {
        payload: EXAMPLE.to_string(),
        ..Sent::default()
    });
    let event_link = match &sent.result {
        Some(Ok((_, answer))) => serde_json::from_str::<serde_json::Value>(answer)
            .ok()
            .and_then(|v| v["id"].as_str().map(str::to_string)),
        _ => None,
    };
    let status = match &sent.result {
        Some(Err(_)) => StatusCode::BAD_REQUEST,
        _ => StatusCode::OK,
    };
    let body = html! {
        @match &sent.result {
            Some(Ok((status, answer))) => {
                div role="status" class=(if status.is_success() { "notice" } else { "error" }) #send-result {
                    "Ingress answered " strong { (status.as_u16()) } ": " code { (answer) }
                    @if let Some(id) = &event_link { " — " a href={ "/ui/events/" (id) } { "open event " (id) } }
                }
            }
            Some(Err(message)) => { p.error role="alert" #send-result { (message) } }
            None => {}
        }
        @if sources.is_empty() {
            p.muted { "No sources are configured (or this host was started without the sender)." }
        } @else {
            form method="post" action="/ui/send" {
                (layout::csrf_field(&ctx.session.csrf))
                p {
                    label for="s-source" { "Source " }
                    select #s-source name="source" {
                        @for (name, config) in &sources {
                            option value=(name) selected[sent.source == **name] { (name) " (" (config.scheme.as_str()) ")" }
                        }
                    }
                }
                p { label for="s-type" { "Event type " } input #s-type type="text" name="type" value=(sent.event_type) placeholder="where the sender puts it"; }
                p { label for="s-id" { "Event id " } input #s-id type="text" name="id" value=(sent.event_id) placeholder="default: a fresh one"; }
                p {
                    label for="s-payload" { "Payload (sent exactly as written)" }
                    textarea #s-payload name="payload" rows="12" { (sent.payload) }
                }
                p.hint { "Signed with the source's first secret and a fresh timestamp, as " code { "agenthook send" } " would, and posted to this host's ingress." }
                button type="submit" { "Sign and send" }
            }
        }
    };
    respond(status, ctx.page("Send a test event", "/ui/send", body))
}

/// `POST /ui/send`.
pub async fn send(ctx: &Ctx, form: &Form) -> Response<Body> {
    let mut sent = Sent {
        source: form.get("source").unwrap_or("").to_string(),
        event_type: form.get("type").unwrap_or("").to_string(),
        event_id: form.get("id").unwrap_or("").to_string(),
        payload: form
            .0
            .iter()
            .find(|(k, _)| k == "payload")
            .map(|(_, v)| v.clone())
            .unwrap_or_default(),
        result: None,
    };
    sent.result = Some(match &ctx.admin.console.sender {
        None => Err("this host was started without the test sender".to_string()),
        Some(sender) => {
            sender
                .send(
                    &sent.source,
                    form.get("type"),
                    form.get("id"),
                    sent.payload.as_bytes(),
                )
                .await
        }
    });
    page(ctx, Some(sent)).await
}
