//! The load generator: unique, correctly signed Standard Webhooks events over keep-alive
//! HTTP/1.1 connections, at a fixed concurrency (closed loop) for a fixed time, with
//! latencies in an HDR histogram.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use hdrhistogram::Histogram;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use sha2::Sha256;

/// The bench source's secret (Standard Webhooks `whsec_` form).
pub const SECRET: &str = "whsec_YmVuY2gtc2VjcmV0LWZvci1hZ2VudGhvb2s=";

/// What one load run measured.
#[derive(Debug, Clone)]
pub struct LoadResult {
    pub requests: u64,
    pub errors: u64,
    pub elapsed: Duration,
    pub latency: Histogram<u64>,
}

impl LoadResult {
    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    /// A latency quantile in milliseconds.
    pub fn ms(&self, q: f64) -> f64 {
        self.latency.value_at_quantile(q) as f64 / 1000.0
    }
}

/// A signed request: (headers, body). Ids are unique per run via `prefix` + counter.
pub fn signed_event(
    key: &[u8],
    prefix: &str,
    n: u64,
    size: usize,
    event_type: &str,
) -> (Vec<(&'static str, String)>, Bytes) {
    let id = format!("{prefix}-{n}");
    let head = format!("{{\"type\":\"{event_type}\",\"id\":\"{id}\",\"pad\":\"");
    let tail = "\"}";
    let pad = size.saturating_sub(head.len() + tail.len());
    let body = format!("{head}{}{tail}", "x".repeat(pad));
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(body.as_bytes());
    let sig = B64.encode(mac.finalize().into_bytes());
    let headers = vec![
        ("webhook-id", id),
        ("webhook-timestamp", ts.to_string()),
        ("webhook-signature", format!("v1,{sig}")),
        ("content-type", "application/json".to_string()),
    ];
    (headers, Bytes::from(body))
}

/// The decoded bench secret.
pub fn key() -> Vec<u8> {
    B64.decode(SECRET.trim_start_matches("whsec_"))
        .expect("bench secret is base64")
}

/// Run `concurrency` workers against `addr{path}` for `duration`, each over its own
/// keep-alive connection, each sending one request at a time.
pub async fn closed_loop(
    addr: SocketAddr,
    path: &str,
    concurrency: usize,
    duration: Duration,
    body_size: usize,
    event_type: &str,
    run_id: &str,
) -> LoadResult {
    let counter = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let key = Arc::new(key());
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (counter, errors, key) = (counter.clone(), errors.clone(), key.clone());
        let (path, event_type, run_id) =
            (path.to_string(), event_type.to_string(), run_id.to_string());
        tasks.spawn(async move {
            let mut hist =
                Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds");
            let mut sender = match connect(addr).await {
                Some(s) => s,
                None => {
                    errors.fetch_add(1, Ordering::Relaxed);
                    return hist;
                }
            };
            while Instant::now() < deadline {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let (headers, body) = signed_event(&key, &run_id, n, body_size, &event_type);
                let mut req = http::Request::post(&path).header("host", addr.to_string());
                for (k, v) in headers {
                    req = req.header(k, v);
                }
                let Ok(req) = req.body(Full::new(body)) else {
                    errors.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let t = Instant::now();
                let ok = match sender.send_request(req).await {
                    Ok(resp) => {
                        let ok = resp.status().is_success();
                        ok && resp.into_body().collect().await.is_ok()
                    }
                    Err(_) => false,
                };
                if ok {
                    let _ = hist.record(t.elapsed().as_micros().max(1) as u64);
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                    match connect(addr).await {
                        Some(s) => sender = s,
                        None => return hist,
                    }
                }
            }
            hist
        });
    }
    let mut latency =
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds");
    while let Some(h) = tasks.join_next().await {
        if let Ok(h) = h {
            let _ = latency.add(h);
        }
    }
    LoadResult {
        requests: latency.len(),
        errors: errors.load(Ordering::Relaxed),
        elapsed: start.elapsed(),
        latency,
    }
}

async fn connect(addr: SocketAddr) -> Option<http1::SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = http1::handshake(TokioIo::new(stream)).await.ok()?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Some(sender)
}
