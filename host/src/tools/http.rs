//! `http.fetch`: outbound HTTP(S) to the origins in `grants.http`, and nowhere else.
//!
//! Two checks guard every request. The URL's origin (and every redirect's) must be
//! granted; and the connector refuses, after DNS resolution and at connect time, any
//! internal address (loopback, private, link-local, metadata, …) unless the grant names
//! that address and port literally — so a granted name that resolves (or is rebound)
//! to an internal address reaches nothing. Each plugin has its own pooled client, so a
//! connection opened under one plugin's grants never serves another plugin.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use super::Tools;
use super::journal::{self, Step};
use crate::config::manifest::{GrantHost, default_port};
use crate::wit::agenthook::plugin::http::{Host, Request, Response};
use crate::wit::agenthook::plugin::types::ToolError;

/// A request without `timeout-ms` gives up after this long (or at the plugin's deadline).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub const MAX_REQUEST_BODY: usize = 1024 * 1024;
pub const MAX_RESPONSE_BODY: usize = 4 * 1024 * 1024;
pub const MAX_RESPONSE_HEADER_BYTES: usize = 64 * 1024;
pub const MAX_REDIRECTS: usize = 5;
/// Requests one plugin may have in flight at once, across all its deliveries.
pub const MAX_CONCURRENT_PER_PLUGIN: usize = 8;
const USER_AGENT: &str = concat!("agenthook/", env!("CARGO_PKG_VERSION"));

type PluginHttpClient = Client<HttpsConnector<GuardedConnector>, Full<Bytes>>;
/// A client for endpoints the operator configured (model providers).
pub type OperatorClient =
    Client<HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>, Full<Bytes>>;

/// The pooled clients, one per plugin, sharing one TLS configuration.
pub struct HttpClients {
    tls: rustls::ClientConfig,
    plugins: Mutex<HashMap<String, Arc<PluginClient>>>,
}

/// One plugin's client: built for its exempt addresses, with its concurrency cap.
struct PluginClient {
    exempt: Vec<SocketAddr>,
    client: PluginHttpClient,
    permits: Semaphore,
}

impl HttpClients {
    pub fn new() -> Result<HttpClients, rustls::Error> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(HttpClients {
            tls,
            plugins: Mutex::default(),
        })
    }

    /// A client for the endpoints the operator configured in the host config (model
    /// providers): the same TLS roots, but no address guard, since the operator chose
    /// the URL, not a plugin.
    pub fn operator_client(&self) -> OperatorClient {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(self.tls.clone())
            .https_or_http()
            .enable_http1()
            .build();
        Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector)
    }

    /// The plugin's client; rebuilt when its exempt addresses changed (a redeploy).
    fn for_plugin(&self, plugin: &str, exempt: Vec<SocketAddr>) -> Arc<PluginClient> {
        let mut plugins = self.plugins.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = plugins.get(plugin).filter(|c| c.exempt == exempt) {
            return c.clone();
        }
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(self.tls.clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(GuardedConnector {
                exempt: exempt.clone().into(),
            });
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(MAX_CONCURRENT_PER_PLUGIN)
            .build(connector);
        let c = Arc::new(PluginClient {
            exempt,
            client,
            permits: Semaphore::new(MAX_CONCURRENT_PER_PLUGIN),
        });
        plugins.insert(plugin.to_string(), c.clone());
        c
    }
}

impl Host for Tools {
    async fn fetch(&mut self, request: Request) -> Result<Response, ToolError> {
        let result: Result<_, ToolError> = async {
            self.count_call()?;
            if self.grants.http.is_empty() {
                return Err(ToolError::Denied(
                    "http is not granted to this plugin (grants.http)".into(),
                ));
            }
            let method = match request.method.to_ascii_uppercase().as_str() {
                m @ ("GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS") => {
                    Method::from_bytes(m.as_bytes()).map_err(|e| ToolError::Invalid(e.to_string()))?
                }
                other => {
                    return Err(ToolError::Invalid(format!(
                        "method `{other}` is not one of GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS"
                    )));
                }
            };
            let effectful = !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
            let body = Bytes::from(request.body.unwrap_or_default());
            if body.len() > MAX_REQUEST_BODY {
                return Err(ToolError::Invalid(format!(
                    "the request body is {} bytes; the limit is {MAX_REQUEST_BODY}",
                    body.len()
                )));
            }
            let journaled = effectful && self.journal.policy().http;
            let hash = journaled.then(|| {
                let mut parts: Vec<&[u8]> = vec![method.as_str().as_bytes(), request.url.as_bytes()];
                for (k, v) in &request.headers {
                    parts.extend([k.as_bytes(), v.as_bytes()]);
                }
                parts.push(&body);
                journal::request_hash("http.fetch", &parts)
            });
            let mut headers = plugin_headers(request.headers)?;
            let target = Target::parse(&request.url)?;
            let seq = match &hash {
                Some(hash) => match self.journal.step("http.fetch", hash)? {
                    Step::Replay(recorded) => return decode_response(recorded),
                    Step::Run { seq } => Some(seq),
                },
                None => None,
            };
            // The receiver can recognise a request it already handled: the one case the
            // journal cannot cover is a crash between the effect and its record.
            if let Some(seq) = seq
                && !headers.iter().any(|(n, _)| n.as_str() == "idempotency-key")
            {
                let key = self.journal.idempotency_key(&self.origin.idempotency_key, seq);
                if let Ok(value) = HeaderValue::from_str(&key) {
                    headers.push((HeaderName::from_static("idempotency-key"), value));
                }
            }
            let asked = request
                .timeout_ms
                .map_or(DEFAULT_TIMEOUT, |ms| Duration::from_millis(ms.into()));
            let budget = asked.min(self.remaining());
            let method_name = method.to_string();
            let client = self
                .services
                .http
                .for_plugin(&self.plugin, self.grants.http_exempt_addrs());

            let call = async {
                let _permit = client
                    .permits
                    .acquire()
                    .await
                    .map_err(|_| ToolError::Failed("the http tool is shutting down".into()))?;
                self.follow(&client.client, method, target, headers, body)
                    .await
            };
            let result = match tokio::time::timeout(budget, call).await {
                Ok(result) => result,
                Err(_) => Err(ToolError::Failed(format!(
                    "{} {}: no response within {} ms",
                    request.method,
                    request.url,
                    budget.as_millis()
                ))),
            };
            // A response that says "not done, try again" is not recorded: a retry makes
            // the request again.
            if let (Some(seq), Some(hash), Ok(response)) = (seq, hash, &result)
                && !matches!(response.status, 408 | 429 | 500..)
            {
                let summary = format!("{method_name} {} → {}", request.url, response.status);
                self.journal_record(seq, "http.fetch", hash, summary, encode_response(response))
                    .await;
            }
            result
        }
        .await;
        self.tally("http.fetch", result)
    }
}

impl Tools {
    /// Send the request, following redirects to granted origins only.
    async fn follow(
        &self,
        client: &PluginHttpClient,
        mut method: Method,
        mut target: Target,
        mut headers: Vec<(HeaderName, HeaderValue)>,
        mut body: Bytes,
    ) -> Result<Response, ToolError> {
        let mut from: Option<String> = None;
        for _ in 0..=MAX_REDIRECTS {
            let Some(grant) = self
                .grants
                .http_grant(&target.scheme, &target.host, target.port)
            else {
                let origin = target.origin();
                return Err(ToolError::Denied(match &from {
                    None => format!("{origin} is not granted to this plugin (grants.http)"),
                    Some(prev) => format!(
                        "{prev} redirected to {origin}, which is not granted to this plugin (grants.http)"
                    ),
                }));
            };
            let mut req = http::Request::builder()
                .method(method.clone())
                .uri(target.uri.clone());
            let h = req.headers_mut().expect("a fresh builder has headers");
            for (name, value) in &headers {
                h.append(name.clone(), value.clone());
            }
            if !h.contains_key(http::header::USER_AGENT) {
                h.insert(
                    http::header::USER_AGENT,
                    HeaderValue::from_static(USER_AGENT),
                );
            }
            // The grant's headers (credentials from secrets) win over the plugin's.
            for (name, secret) in &grant.headers {
                if let Ok(value) = HeaderValue::from_str(secret.expose()) {
                    h.insert(name.clone(), value);
                }
            }
            let req = req
                .body(Full::new(body.clone()))
                .map_err(|e| ToolError::Invalid(format!("cannot build the request: {e}")))?;

            let resp = client
                .request(req)
                .await
                .map_err(|e| send_error(&target, &e))?;
            let status = resp.status();
            let location = resp
                .headers()
                .get(http::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .map(str::to_string);
            if let (true, Some(location)) = (status.is_redirection(), location) {
                let next = target.join(&location)?;
                if status == http::StatusCode::SEE_OTHER
                    || (matches!(status.as_u16(), 301 | 302) && method == Method::POST)
                {
                    method = Method::GET;
                    body = Bytes::new();
                    headers.retain(|(n, _)| !n.as_str().starts_with("content-"));
                }
                if next.origin() != target.origin() {
                    // Credentials the plugin set for one origin never go to another.
                    headers.retain(|(n, _)| {
                        !matches!(
                            n.as_str(),
                            "authorization" | "cookie" | "proxy-authorization"
                        )
                    });
                }
                from = Some(target.origin());
                target = next;
                continue;
            }
            return read_response(resp).await;
        }
        Err(ToolError::Failed(format!(
            "more than {MAX_REDIRECTS} redirects (last to {})",
            target.origin()
        )))
    }
}

/// A URL split into what the grant check and the redirect logic need.
#[derive(Debug, Clone)]
struct Target {
    uri: Uri,
    scheme: String,
    host: GrantHost,
    port: u16,
}

impl Target {
    fn parse(url: &str) -> Result<Target, ToolError> {
        let invalid = |why: &str| ToolError::Invalid(format!("`{url}` {why}"));
        let uri: Uri = url
            .parse()
            .map_err(|e| invalid(&format!("is not a valid URL: {e}")))?;
        let scheme = uri
            .scheme_str()
            .ok_or_else(|| invalid("is not an absolute URL"))?
            .to_ascii_lowercase();
        let default =
            default_port(&scheme).ok_or_else(|| invalid("is not an http:// or https:// URL"))?;
        let authority = uri.authority().ok_or_else(|| invalid("has no host"))?;
        if authority.as_str().contains('@') {
            return Err(invalid(
                "carries credentials in the URL; send them in a header (or let the grant attach them)",
            ));
        }
        let host = GrantHost::parse(authority.host()).map_err(|e| invalid(&e))?;
        Ok(Target {
            port: uri.port_u16().unwrap_or(default),
            scheme,
            host,
            uri,
        })
    }

    fn origin(&self) -> String {
        format!("{}://{}:{}", self.scheme, self.host, self.port)
    }

    /// Resolve a `Location` header against this URL.
    fn join(&self, location: &str) -> Result<Target, ToolError> {
        let absolute = if location.contains("://") {
            location.to_string()
        } else if let Some(rest) = location.strip_prefix("//") {
            format!("{}://{rest}", self.scheme)
        } else {
            let base = format!(
                "{}://{}",
                self.scheme,
                self.uri.authority().map_or("", |a| a.as_str())
            );
            if location.starts_with('/') {
                format!("{base}{location}")
            } else {
                let path = self.uri.path();
                let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
                let dir = if dir.is_empty() { "/" } else { dir };
                format!("{base}{dir}{location}")
            }
        };
        Target::parse(&absolute)
    }
}

/// The plugin's request headers, validated; hop-by-hop and framing headers are the
/// host's business.
fn plugin_headers(raw: Vec<(String, String)>) -> Result<Vec<(HeaderName, HeaderValue)>, ToolError> {
    let mut out = Vec::with_capacity(raw.len());
    for (name, value) in raw {
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| ToolError::Invalid(format!("`{name}` is not a valid header name")))?;
        if matches!(
            header.as_str(),
            "host"
                | "content-length"
                | "transfer-encoding"
                | "connection"
                | "keep-alive"
                | "upgrade"
                | "te"
                | "trailer"
                | "proxy-connection"
        ) {
            return Err(ToolError::Invalid(format!(
                "header `{name}` is set by the host"
            )));
        }
        let value = HeaderValue::from_str(&value).map_err(|_| {
            ToolError::Invalid(format!("the value of header `{name}` is not valid"))
        })?;
        out.push((header, value));
    }
    Ok(out)
}

/// A response as the journal records it.
fn encode_response(r: &Response) -> serde_json::Value {
    use base64::Engine as _;
    serde_json::json!({
        "status": r.status,
        "headers": r.headers,
        "body_base64": base64::engine::general_purpose::STANDARD.encode(&r.body),
    })
}

/// A response as the journal recorded it.
fn decode_response(v: serde_json::Value) -> Result<Response, ToolError> {
    use base64::Engine as _;
    let corrupt = || ToolError::Failed("the journal's record of this call is unreadable".into());
    let status = v["status"]
        .as_u64()
        .and_then(|s| u16::try_from(s).ok())
        .ok_or_else(corrupt)?;
    let headers: Vec<(String, String)> =
        serde_json::from_value(v["headers"].clone()).map_err(|_| corrupt())?;
    let body = base64::engine::general_purpose::STANDARD
        .decode(v["body_base64"].as_str().ok_or_else(corrupt)?)
        .map_err(|_| corrupt())?;
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// Read the final response within the size caps.
async fn read_response(resp: http::Response<hyper::body::Incoming>) -> Result<Response, ToolError> {
    let status = resp.status().as_u16();
    let mut header_bytes = 0;
    let mut headers = Vec::with_capacity(resp.headers().len());
    for (name, value) in resp.headers() {
        header_bytes += name.as_str().len() + value.len();
        headers.push((
            name.as_str().to_string(),
            String::from_utf8_lossy(value.as_bytes()).into_owned(),
        ));
    }
    if header_bytes > MAX_RESPONSE_HEADER_BYTES {
        return Err(ToolError::Limited(format!(
            "the response headers are {header_bytes} bytes; the limit is {MAX_RESPONSE_HEADER_BYTES}"
        )));
    }
    let too_big = || {
        ToolError::Limited(format!(
            "the response body is larger than {MAX_RESPONSE_BODY} bytes"
        ))
    };
    if resp
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .is_some_and(|n| n > MAX_RESPONSE_BODY as u64)
    {
        return Err(too_big());
    }
    let body = Limited::new(resp.into_body(), MAX_RESPONSE_BODY)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                too_big()
            } else {
                ToolError::Failed(format!("reading the response body: {e}"))
            }
        })?
        .to_bytes();
    Ok(Response {
        status,
        headers,
        body: body.to_vec(),
    })
}

/// Map a client error: a refused address is `denied`, everything else `failed`.
fn send_error(target: &Target, err: &hyper_util::client::legacy::Error) -> ToolError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(refused) = e.downcast_ref::<ConnectError>() {
            return match refused {
                ConnectError::Refused { .. } => ToolError::Denied(refused.to_string()),
                _ => ToolError::Failed(refused.to_string()),
            };
        }
        source = e.source();
    }
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(e) = source {
        text = format!("{text}: {e}");
        source = e.source();
    }
    ToolError::Failed(format!("{}: {text}", target.origin()))
}

/// Why the connector did not open a connection.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(
        "{host}:{port} resolves to {addr}, a {class} address, which plugins may not reach; only a grant naming that address, like http://{addr_url}:{port}, allows it"
    )]
    Refused {
        host: String,
        port: u16,
        addr: IpAddr,
        addr_url: String,
        class: &'static str,
    },
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        host: String,
        source: std::io::Error,
    },
    #[error("{host}:{port}: connection failed: {source}")]
    Connect {
        host: String,
        port: u16,
        source: std::io::Error,
    },
    #[error("{host}:{port}: no connection within {} ms", CONNECT_TIMEOUT.as_millis())]
    Timeout { host: String, port: u16 },
    #[error("the URL has no host")]
    NoHost,
}

/// Opens TCP connections only to addresses a plugin may reach, checked after
/// resolution — the address connected to is the address checked.
#[derive(Clone)]
pub struct GuardedConnector {
    /// Internal addresses this plugin's grants name literally.
    exempt: Arc<[SocketAddr]>,
}

impl tower_service::Service<Uri> for GuardedConnector {
    type Response = TokioIo<TcpStream>;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let exempt = self.exempt.clone();
        Box::pin(async move { connect(&uri, &exempt).await.map(TokioIo::new) })
    }
}

async fn connect(uri: &Uri, exempt: &[SocketAddr]) -> Result<TcpStream, ConnectError> {
    let host = uri.host().ok_or(ConnectError::NoHost)?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri
        .port_u16()
        .or_else(|| default_port(uri.scheme_str().unwrap_or("http")))
        .unwrap_or(80);
    let resolved: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((bare, port))
            .await
            .map_err(|source| ConnectError::Resolve {
                host: bare.to_string(),
                source,
            })?
            .collect(),
    };
    let mut refused = None;
    let mut last_err = None;
    for addr in resolved {
        let ip = addr.ip().to_canonical();
        let addr = SocketAddr::new(ip, port);
        if let Some(class) = forbidden(ip)
            && !exempt.contains(&addr)
        {
            refused.get_or_insert(ConnectError::Refused {
                host: bare.to_string(),
                port,
                addr: ip,
                addr_url: match ip {
                    IpAddr::V6(v6) => format!("[{v6}]"),
                    IpAddr::V4(v4) => v4.to_string(),
                },
                class,
            });
            continue;
        }
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Ok(Err(source)) => {
                last_err = Some(ConnectError::Connect {
                    host: bare.to_string(),
                    port,
                    source,
                })
            }
            Err(_) => {
                last_err = Some(ConnectError::Timeout {
                    host: bare.to_string(),
                    port,
                })
            }
        }
    }
    Err(last_err
        .or(refused)
        .unwrap_or_else(|| ConnectError::Resolve {
            host: bare.to_string(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no addresses"),
        }))
}

/// The class of an address plugins must not reach by default, or `None` for a public
/// address. IPv4-mapped, NAT64 and 6to4 IPv6 forms are judged by the IPv4 address
/// they carry.
pub fn forbidden(ip: IpAddr) -> Option<&'static str> {
    match ip.to_canonical() {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        _ if ip == Ipv4Addr::new(169, 254, 169, 254) => "cloud metadata",
        (0, _, _) => "unspecified",
        (127, _, _) => "loopback",
        (10, _, _) | (192, 168, _) => "private",
        (172, 16..=31, _) => "private",
        (169, 254, _) => "link-local",
        (100, 64..=127, _) => "shared (CGNAT)",
        (192, 0, 0) => "IETF protocol assignment",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        (198, 18..=19, _) => "benchmarking",
        (224..=239, _, _) => "multicast",
        (240..=255, _, _) => "reserved",
        _ => return None,
    })
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let seg = ip.segments();
    let embedded_v4 = |hi: u16, lo: u16| Ipv4Addr::from(((hi as u32) << 16) | lo as u32);
    if ip.is_unspecified() {
        return Some("unspecified");
    }
    if ip.is_loopback() {
        return Some("loopback");
    }
    Some(match seg[0] {
        // ::/96 (IPv4-compatible, deprecated) and the rest of ::/8.
        0 => "reserved",
        // 64:ff9b::/96 NAT64: judged by the IPv4 address inside.
        0x64 if seg[1] == 0xff9b => return forbidden_v4(embedded_v4(seg[6], seg[7])),
        0x100 if seg[1..4] == [0, 0, 0] => "discard",
        0x2001 if seg[1] == 0xdb8 => "documentation",
        // 6to4 carries an IPv4 address in the next 32 bits.
        0x2002 => return forbidden_v4(embedded_v4(seg[1], seg[2])),
        s if s & 0xfe00 == 0xfc00 => "unique-local",
        s if s & 0xffc0 == 0xfe80 => "link-local",
        s if s & 0xffc0 == 0xfec0 => "site-local",
        s if s & 0xff00 == 0xff00 => "multicast",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_classified() {
        for (addr, class) in [
            ("127.0.0.1", "loopback"),
            ("127.8.9.10", "loopback"),
            ("::1", "loopback"),
            ("::ffff:127.0.0.1", "loopback"),
            ("0.0.0.0", "unspecified"),
            ("::", "unspecified"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("::ffff:10.0.0.1", "private"),
            ("169.254.169.254", "cloud metadata"),
            ("::ffff:169.254.169.254", "cloud metadata"),
            ("169.254.1.1", "link-local"),
            ("fe80::1", "link-local"),
            ("100.64.0.1", "shared (CGNAT)"),
            ("fc00::1", "unique-local"),
            ("fd00:ec2::254", "unique-local"),
            ("224.0.0.1", "multicast"),
            ("ff02::1", "multicast"),
            ("192.0.2.1", "documentation"),
            ("198.51.100.7", "documentation"),
            ("203.0.113.9", "documentation"),
            ("2001:db8::1", "documentation"),
            ("64:ff9b::7f00:1", "loopback"),
            ("2002:a00:1::", "private"),
            ("255.255.255.255", "reserved"),
        ] {
            let ip: IpAddr = addr.parse().unwrap();
            assert_eq!(forbidden(ip), Some(class), "{addr}");
        }
        for addr in [
            "93.184.216.34",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            let ip: IpAddr = addr.parse().unwrap();
            assert_eq!(forbidden(ip), None, "{addr}");
        }
    }

    /// The connector itself refuses internal addresses — literal, mapped, or reached
    /// through a name — even where something is listening.
    #[tokio::test]
    async fn connector_refuses_internal_addresses_unless_exempt() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        for url in [
            format!("http://127.0.0.1:{port}/"),
            format!("http://[::ffff:127.0.0.1]:{port}/"),
            format!("http://localhost:{port}/"),
            "http://[::1]:9/".to_string(),
            "http://169.254.169.254/latest/meta-data/".to_string(),
            "http://10.0.0.1/".to_string(),
        ] {
            let uri: Uri = url.parse().unwrap();
            let err = connect(&uri, &[]).await.unwrap_err();
            assert!(matches!(err, ConnectError::Refused { .. }), "{url}: {err}");
        }
        let exempt = [SocketAddr::from(([127, 0, 0, 1], port))];
        for url in [
            format!("http://127.0.0.1:{port}/"),
            format!("http://[::ffff:127.0.0.1]:{port}/"),
            format!("http://localhost:{port}/"),
        ] {
            let uri: Uri = url.parse().unwrap();
            connect(&uri, &exempt).await.unwrap();
        }
        // Exempt is per port: the same address on another port is still refused.
        let uri: Uri = format!("http://127.0.0.1:{}/", port.wrapping_add(1))
            .parse()
            .unwrap();
        assert!(matches!(
            connect(&uri, &exempt).await,
            Err(ConnectError::Refused { .. })
        ));
    }

    #[test]
    fn redirect_locations_resolve_against_the_url() {
        let t = Target::parse("https://api.example.com/v1/customers/cus_1?x=1").unwrap();
        assert_eq!(
            t.join("/v2/c").unwrap().uri.to_string(),
            "https://api.example.com/v2/c"
        );
        assert_eq!(
            t.join("cus_2").unwrap().uri.to_string(),
            "https://api.example.com/v1/customers/cus_2"
        );
        assert_eq!(
            t.join("//other.example.com/x").unwrap().origin(),
            "https://other.example.com:443"
        );
        assert_eq!(
            t.join("http://127.0.0.1:9/").unwrap().origin(),
            "http://127.0.0.1:9"
        );
        assert!(Target::parse("ftp://x.example.com/").is_err());
        assert!(Target::parse("https://user:pw@x.example.com/").is_err());
    }
}
