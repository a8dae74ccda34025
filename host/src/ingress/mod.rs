//! Ingress: `POST /hooks/{source}`. Reads the body under the size limit, verifies the
//! sender's signature and timestamp on the raw bytes, extracts the event id and type,
//! and acknowledges only after the event and its deliveries are durably stored.
//!
//! One file per signature scheme. Nothing here decides what a plugin does with the
//! event, and nothing refused here is stored.

pub mod standard_webhooks;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};

use crate::config::{Config, ConfigError, Scheme, SourceConfig};
use crate::http::{self as web, Body, Request};
use crate::runtime::registry::Registry;
use crate::store::{EventMeta, Ingested, NewEvent, Store, now_ms};

/// What a verified request told us about the event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The sender's id for the event: the dedup key within the source.
    pub event_id: String,
    pub event_type: String,
}

/// Why a request was refused: the status, a stable machine-readable reason, and a
/// message that tells an operator what to fix without helping an attacker (it never
/// contains a secret or a computed signature).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub status: StatusCode,
    pub reason: &'static str,
    pub message: String,
}

impl Rejection {
    pub fn unauthorized(reason: &'static str, message: impl Into<String>) -> Self {
        Rejection {
            status: StatusCode::UNAUTHORIZED,
            reason,
            message: message.into(),
        }
    }

    pub fn bad_request(reason: &'static str, message: impl Into<String>) -> Self {
        Rejection {
            status: StatusCode::BAD_REQUEST,
            reason,
            message: message.into(),
        }
    }
}

/// A source's verifier, built once from its config.
enum Verifier {
    StandardWebhooks(standard_webhooks::Verifier),
}

impl Verifier {
    fn new(source: &SourceConfig) -> Result<Verifier, ConfigError> {
        Ok(match source.scheme {
            Scheme::StandardWebhooks => {
                Verifier::StandardWebhooks(standard_webhooks::Verifier::new(source)?)
            }
        })
    }

    fn verify(
        &self,
        headers: &http::HeaderMap,
        body: &[u8],
        now_secs: i64,
    ) -> Result<Verified, Rejection> {
        match self {
            Verifier::StandardWebhooks(v) => v.verify(headers, body, now_secs),
        }
    }
}

/// Check a source's secrets and settings at config load, so a bad secret is a config
/// error rather than a 401 for every request.
pub fn validate_source(source: &SourceConfig) -> Result<(), ConfigError> {
    Verifier::new(source).map(|_| ())
}

/// The ingress service.
pub struct Ingress {
    sources: HashMap<String, Verifier>,
    store: Store,
    registry: Arc<Registry>,
    max_body_bytes: usize,
}

impl Ingress {
    pub fn new(
        config: &Config,
        store: Store,
        registry: Arc<Registry>,
    ) -> Result<Ingress, ConfigError> {
        let sources = config
            .sources
            .iter()
            .map(|(name, src)| Ok((name.clone(), Verifier::new(src)?)))
            .collect::<Result<_, ConfigError>>()?;
        Ok(Ingress {
            sources,
            store,
            registry,
            max_body_bytes: config.server.max_body_bytes,
        })
    }

    pub async fn handle(self: Arc<Self>, req: Request) -> Response<Body> {
        let path = req.uri().path().to_string();
        match (req.method(), path.as_str()) {
            (&Method::GET, "/healthz") => {
                web::json(StatusCode::OK, &serde_json::json!({"status": "ok"}))
            }
            (&Method::GET, "/readyz") => {
                web::json(StatusCode::OK, &serde_json::json!({"status": "ready"}))
            }
            (method, p) if p.starts_with("/hooks/") => {
                let source = &p["/hooks/".len()..];
                if method != Method::POST {
                    let mut resp = web::error(
                        StatusCode::METHOD_NOT_ALLOWED,
                        "method_not_allowed",
                        "webhooks are delivered with POST",
                    );
                    resp.headers_mut()
                        .insert(header::ALLOW, http::HeaderValue::from_static("POST"));
                    return resp;
                }
                match self.receive(source, req).await {
                    Ok(resp) => resp,
                    Err(r) => {
                        tracing::info!(
                            source,
                            reason = r.reason,
                            status = r.status.as_u16(),
                            "webhook refused"
                        );
                        web::error(r.status, r.reason, &r.message)
                    }
                }
            }
            _ => web::error(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such route; webhooks go to POST /hooks/{source}",
            ),
        }
    }

    async fn receive(&self, source: &str, req: Request) -> Result<Response<Body>, Rejection> {
        let Some(verifier) = self.sources.get(source) else {
            return Err(Rejection {
                status: StatusCode::NOT_FOUND,
                reason: "unknown_source",
                message: "no source with this name is configured".into(),
            });
        };
        let (parts, body) = req.into_parts();
        let too_large = || Rejection {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            reason: "body_too_large",
            message: format!("the body exceeds {} bytes", self.max_body_bytes),
        };
        // Refuse early on a declared length; `Limited` enforces it while reading when
        // the length is absent or false, so a huge body is never buffered.
        if let Some(len) = parts.headers.get(header::CONTENT_LENGTH) {
            match len.to_str().ok().and_then(|s| s.parse::<u64>().ok()) {
                Some(n) if n > self.max_body_bytes as u64 => return Err(too_large()),
                Some(_) => {}
                None => {
                    return Err(Rejection::bad_request(
                        "malformed_header",
                        "content-length is not a number",
                    ));
                }
            }
        }
        let body: Bytes = match Limited::new(body, self.max_body_bytes).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => return Err(too_large()),
            Err(_) => {
                return Err(Rejection::bad_request(
                    "body_read_error",
                    "the request body could not be read",
                ));
            }
        };

        let now = now_ms();
        let verified = verifier.verify(&parts.headers, &body, (now / 1000) as i64)?;
        let headers = parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let plugins = self.registry.subscribers(source, &verified.event_type);
        let event = NewEvent {
            meta: EventMeta {
                source: source.to_string(),
                event_id: verified.event_id.clone(),
                event_type: verified.event_type.clone(),
                received_at_ms: now,
                headers,
            },
            body,
            plugins,
        };
        match self.store.ingest(event).await {
            Ok(Ingested::Stored(id)) => {
                tracing::info!(source, event_id = %verified.event_id, id, event_type = %verified.event_type, "webhook stored");
                Ok(web::json(
                    StatusCode::OK,
                    &serde_json::json!({"status": "stored", "id": id.to_string()}),
                ))
            }
            Ok(Ingested::Duplicate(id)) => {
                tracing::info!(source, event_id = %verified.event_id, id, "duplicate webhook acknowledged");
                Ok(web::json(
                    StatusCode::OK,
                    &serde_json::json!({"status": "duplicate", "id": id.to_string()}),
                ))
            }
            Err(e) => {
                tracing::error!(source, error = %e, "could not store a webhook");
                let mut resp = web::error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "the event could not be stored; retry later",
                );
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, http::HeaderValue::from_static("5"));
                Ok(resp)
            }
        }
    }
}
