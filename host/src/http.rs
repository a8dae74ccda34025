//! HTTP plumbing shared by the ingress and admin listeners: the accept loop with its
//! connection cap, header and idle deadlines and graceful shutdown; the budget of
//! request-body bytes buffered at once; JSON responses.
//!
//! What a request means is decided by the handlers (`ingress`, `admin`); nothing here
//! reads a body or knows a source.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub type Body = Full<Bytes>;
pub type Request = http::Request<Incoming>;

/// How long a client may take to send its request headers. hyper starts this deadline
/// whenever a connection waits for a request head — on a new connection and on an idle
/// keep-alive one alike — so it is also the idle keep-alive timeout.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long in-flight requests get to finish after shutdown starts.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// At most one "connection limit reached" warning per this interval.
const LIMIT_WARN_INTERVAL: Duration = Duration::from_secs(10);

/// The bounds of one listener.
///
/// ## Defaults
///
/// 10,000 open connections; 10 s for a request's headers ([`HEADER_READ_TIMEOUT`]),
/// which is also how long an idle keep-alive connection stays open.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Connections open at once; beyond it, accepting waits until one closes (the
    /// kernel's backlog holds the next ones), so a flood of connections costs memory
    /// only up to this bound.
    pub max_connections: usize,
    /// The header deadline, and the idle keep-alive timeout.
    pub header_timeout: Duration,
    /// Where the listener's connections are counted, for `/metrics`.
    pub stats: Arc<ConnectionStats>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            max_connections: 10_000,
            header_timeout: HEADER_READ_TIMEOUT,
            stats: Arc::default(),
        }
    }
}

/// One listener's connection counters (lock-free; `/metrics` reads them).
#[derive(Debug, Default)]
pub struct ConnectionStats {
    open: AtomicU64,
    limit_waits: AtomicU64,
    header_timeouts: AtomicU64,
}

impl ConnectionStats {
    /// Connections open now.
    pub fn open(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }

    /// How often the accept loop found every connection slot taken and waited.
    pub fn limit_waits(&self) -> u64 {
        self.limit_waits.load(Ordering::Relaxed)
    }

    /// Connections closed because no complete request head arrived in time (slow
    /// headers, or a keep-alive connection left idle).
    pub fn header_timeouts(&self) -> u64 {
        self.header_timeouts.load(Ordering::Relaxed)
    }
}

/// A connection's slot: counted open while it lives, its permit returned on drop.
struct Slot {
    stats: Arc<ConnectionStats>,
    _permit: OwnedSemaphorePermit,
}

impl Slot {
    fn new(stats: Arc<ConnectionStats>, permit: OwnedSemaphorePermit) -> Slot {
        stats.open.fetch_add(1, Ordering::Relaxed);
        Slot {
            stats,
            _permit: permit,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.stats.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serve HTTP/1.1 on `listener` until `shutdown` resolves, then stop accepting and let
/// in-flight requests finish (up to a deadline). At most `options.max_connections` are
/// open at once: each holds a permit, and the loop accepts only with one in hand.
pub async fn serve<H, F>(
    listener: TcpListener,
    options: ServeOptions,
    handler: H,
    shutdown: impl Future<Output = ()>,
) where
    H: Fn(Request) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(options.max_connections));
    let stats = options.stats.clone();
    let mut last_warned: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                stats.limit_waits.fetch_add(1, Ordering::Relaxed);
                if last_warned.is_none_or(|t| t.elapsed() >= LIMIT_WARN_INTERVAL) {
                    last_warned = Some(Instant::now());
                    tracing::warn!(
                        max_connections = options.max_connections,
                        "connection limit reached; new connections wait until one closes"
                    );
                }
                tokio::select! {
                    permit = permits.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        // The semaphore is never closed.
                        Err(_) => break,
                    },
                    () = &mut shutdown => break,
                }
            }
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    // Out of file descriptors and similar: back off briefly instead
                    // of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let slot = Slot::new(stats.clone(), permit);
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let service = service_fn(move |req| {
            let fut = handler(req);
            async move { Ok::<_, Infallible>(fut.await) }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(options.header_timeout)
            .serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                if e.is_timeout() {
                    slot.stats.header_timeouts.fetch_add(1, Ordering::Relaxed);
                }
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not finish within the drain timeout");
    }
}

/// A budget of request-body bytes buffered at once, shared by every request it is
/// handed to; clones share it. A request reserves its bytes before buffering them and
/// gives them back when its [`Reservation`] drops, whatever path it leaves by.
#[derive(Debug, Clone)]
pub struct BodyBudget(Arc<BudgetState>);

#[derive(Debug)]
struct BudgetState {
    limit: usize,
    used: AtomicUsize,
}

impl BodyBudget {
    pub fn new(limit: usize) -> BodyBudget {
        BodyBudget(Arc::new(BudgetState {
            limit,
            used: AtomicUsize::new(0),
        }))
    }

    /// Reserve `bytes`, or `None` when they do not fit in what is left.
    pub fn reserve(&self, bytes: usize) -> Option<Reservation> {
        self.take(bytes).then(|| Reservation {
            budget: self.clone(),
            bytes,
        })
    }

    /// Bytes reserved now.
    pub fn in_use(&self) -> usize {
        self.0.used.load(Ordering::Relaxed)
    }

    pub fn limit(&self) -> usize {
        self.0.limit
    }

    fn take(&self, bytes: usize) -> bool {
        let limit = self.0.limit;
        self.0
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&total| total <= limit)
            })
            .is_ok()
    }
}

/// Bytes held from a [`BodyBudget`]; released on drop.
#[derive(Debug)]
pub struct Reservation {
    budget: BodyBudget,
    bytes: usize,
}

impl Reservation {
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Reserve `more` bytes on top; `false` (and nothing reserved) when they do not fit.
    pub fn grow(&mut self, more: usize) -> bool {
        let ok = self.budget.take(more);
        if ok {
            self.bytes += more;
        }
        ok
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.0.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// A JSON response.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(value.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// A JSON error: `{"error": message, "reason": reason}`.
pub fn error(status: StatusCode, reason: &str, message: &str) -> Response<Body> {
    json(
        status,
        &serde_json::json!({ "error": message, "reason": reason }),
    )
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

    #[test]
    fn budget_reserves_grows_and_releases() {
        let budget = BodyBudget::new(100);
        let mut a = budget.reserve(60).unwrap();
        assert!(budget.reserve(50).is_none(), "60 + 50 > 100");
        assert!(a.grow(40));
        assert!(!a.grow(1), "full");
        assert_eq!((a.bytes(), budget.in_use()), (100, 100));
        drop(a);
        assert_eq!(budget.in_use(), 0);
        let empty = budget.reserve(0).unwrap();
        assert!(budget.reserve(100).is_some());
        drop(empty);
        assert!(budget.reserve(101).is_none());
        assert_eq!(budget.in_use(), 0);
    }

    /// Reads one response (headers and a `content-length` body) off `stream`.
    async fn read_response(stream: &mut TcpStream) -> String {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        loop {
            let text = String::from_utf8_lossy(&buf).to_string();
            if let Some(end) = text.find("\r\n\r\n") {
                let len: usize = text
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(str::to_string)
                    })
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    return text;
                }
            }
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed before a whole response: {buf:?}");
            buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// A keep-alive connection left idle is closed after the header deadline, and
    /// counted.
    #[tokio::test]
    async fn idle_keep_alive_connections_are_closed() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let options = ServeOptions {
            header_timeout: Duration::from_millis(200),
            ..ServeOptions::default()
        };
        let stats = options.stats.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(
            listener,
            options,
            |_req| async { json(StatusCode::OK, &serde_json::json!({"ok": true})) },
            async {
                let _ = stopped.await;
            },
        ));
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let resp = read_response(&mut stream).await;
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        assert_eq!(stats.open(), 1);
        // The server closes the idle connection: the read ends (EOF), well before the
        // test's own deadline.
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest))
            .await
            .expect("the idle connection was closed")
            .unwrap();
        assert_eq!(stats.header_timeouts(), 1);
        let _ = stop.send(());
        server.await.unwrap();
        assert_eq!(stats.open(), 0);
    }
}
