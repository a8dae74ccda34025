//! The load generator: unique, correctly signed Standard Webhooks events over keep-alive
//! HTTP/1.1 connections, with latencies in HDR histograms (µs), either
//!
//! - closed loop ([`closed_loop`]): a fixed number of connections, each sending its next
//!   request when the previous one is answered — the maximum rate; or
//! - open loop ([`open_loop`]): requests on a fixed timetable (a steady arrival rate),
//!   each latency measured from the request's *scheduled* send time, so a server that
//!   stalls is charged for every request that should have gone out meanwhile (no
//!   coordinated omission).

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
    /// Successful requests per second.
    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    /// A latency quantile in milliseconds.
    pub fn ms(&self, q: f64) -> f64 {
        self.latency.value_at_quantile(q) as f64 / 1000.0
    }

    /// The figures as JSON (rates per second, latencies in ms).
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "requests": self.requests,
            "errors": self.errors,
            "seconds": self.elapsed.as_secs_f64(),
            "rate_per_s": self.rate(),
            "latency_ms": {
                "p50": self.ms(0.5),
                "p90": self.ms(0.9),
                "p99": self.ms(0.99),
                "p99_9": self.ms(0.999),
                "max": self.latency.max() as f64 / 1000.0,
            },
        })
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("constant histogram bounds")
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
            let mut hist = histogram();
            let mut sender = match connect(addr).await {
                Some(s) => s,
                None => {
                    errors.fetch_add(1, Ordering::Relaxed);
                    return hist;
                }
            };
            while Instant::now() < deadline {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let Some(req) = request(addr, &path, &key, &run_id, n, body_size, &event_type)
                else {
                    errors.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let t = Instant::now();
                match exchange(&mut sender, req).await {
                    Exchange::Ok => {
                        let _ = hist.record(t.elapsed().as_micros().max(1) as u64);
                    }
                    Exchange::Refused => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                    Exchange::Broken => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        match connect(addr).await {
                            Some(s) => sender = s,
                            None => return hist,
                        }
                    }
                }
            }
            hist
        });
    }
    let mut latency = histogram();
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

/// How one request went.
enum Exchange {
    /// 2xx and the whole response read.
    Ok,
    /// An answer that is not 2xx (e.g. 503 under backpressure): the connection is fine.
    Refused,
    /// The connection failed; open a new one.
    Broken,
}

async fn exchange(
    sender: &mut http1::SendRequest<Full<Bytes>>,
    req: http::Request<Full<Bytes>>,
) -> Exchange {
    match sender.send_request(req).await {
        Ok(resp) => {
            let ok = resp.status().is_success();
            match (ok, resp.into_body().collect().await.is_ok()) {
                (true, true) => Exchange::Ok,
                (false, true) => Exchange::Refused,
                (_, false) => Exchange::Broken,
            }
        }
        Err(_) => Exchange::Broken,
    }
}

/// A signed request for event number `n` of this run.
fn request(
    addr: SocketAddr,
    path: &str,
    key: &[u8],
    run_id: &str,
    n: u64,
    body_size: usize,
    event_type: &str,
) -> Option<http::Request<Full<Bytes>>> {
    let (headers, body) = signed_event(key, run_id, n, body_size, event_type);
    let mut req = http::Request::post(path).header("host", addr.to_string());
    for (k, v) in headers {
        req = req.header(k, v);
    }
    req.body(Full::new(body)).ok()
}

/// Send requests at `rate` per second for `duration` on a fixed timetable (request `n`
/// is due at `start + n / rate`), over at most `connections` keep-alive connections.
///
/// A timer thread releases each request at its due time (std sleep: tens of µs of
/// jitter, not tokio's 1 ms timer wheel); a free connection takes it. Latency runs from
/// the due time to the end of the response, so time spent waiting for a free
/// connection — because the server is slow — is counted, as it would be for a real
/// sender. `connections` bounds what is in flight at once (Little's law: enough for
/// rate × latency with room to spare); they are all opened before the timetable starts
/// (within 10 s), as a steady sender's would be.
#[allow(clippy::too_many_arguments)]
pub async fn open_loop(
    addr: SocketAddr,
    path: &str,
    rate: f64,
    duration: Duration,
    connections: usize,
    body_size: usize,
    event_type: &str,
    run_id: &str,
) -> LoadResult {
    let errors = Arc::new(AtomicU64::new(0));
    let key = Arc::new(key());
    let total = (rate * duration.as_secs_f64()).max(1.0) as u64;
    let interval = Duration::from_secs_f64(1.0 / rate.max(1e-3));
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<(u64, Instant)>();
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    // Every connection is opened before the timetable starts, so opening the pool is not
    // charged to the first requests.
    let opened = Arc::new(tokio::sync::Semaphore::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let (errors, key, rx, opened) = (errors.clone(), key.clone(), rx.clone(), opened.clone());
        let (path, event_type, run_id) =
            (path.to_string(), event_type.to_string(), run_id.to_string());
        tasks.spawn(async move {
            let mut hist = histogram();
            let mut sender = connect(addr).await;
            opened.add_permits(1);
            loop {
                let Some((n, due)) = rx.lock().await.recv().await else {
                    return hist;
                };
                let Some(req) = request(addr, &path, &key, &run_id, n, body_size, &event_type)
                else {
                    errors.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                if sender.is_none() {
                    sender = connect(addr).await;
                }
                let Some(s) = sender.as_mut() else {
                    errors.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                match exchange(s, req).await {
                    Exchange::Ok => {
                        let _ = hist.record(due.elapsed().as_micros().max(1) as u64);
                    }
                    Exchange::Refused => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                    Exchange::Broken => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        sender = None;
                    }
                }
            }
        });
    }
    let all = u32::try_from(connections).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(Duration::from_secs(10), opened.acquire_many(all)).await;
    let start = Instant::now() + Duration::from_millis(20);
    let timetable = std::thread::spawn(move || {
        for n in 0..total {
            let due = start + interval.mul_f64(n as f64);
            let now = Instant::now();
            // Sleeping less than this oversleeps by more than it waits.
            if due > now + Duration::from_micros(20) {
                std::thread::sleep(due - now);
            }
            if tx.send((n, due)).is_err() {
                return;
            }
        }
    });
    let mut latency = histogram();
    while let Some(h) = tasks.join_next().await {
        if let Ok(h) = h {
            let _ = latency.add(h);
        }
    }
    let _ = timetable.join();
    LoadResult {
        requests: latency.len(),
        errors: errors.load(Ordering::Relaxed),
        elapsed: start.elapsed(),
        latency,
    }
}

/// A keep-alive HTTP/1.1 client connection.
pub async fn connect(addr: SocketAddr) -> Option<http1::SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = http1::handshake(TokioIo::new(stream)).await.ok()?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Some(sender)
}
