//! The HTTP upper bound: a plain hyper HTTP/1.1 server that reads the whole request body
//! and answers `200` with a short JSON body — no verification, no storage. It is served
//! the way agenthook serves ingress (hyper's http1 connection per accepted socket,
//! `TCP_NODELAY`, a header-read timeout, the default multi-thread tokio runtime) and
//! runs as its own process (`agenthook-bench plain-server`), like the host does.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};

/// Serve on an ephemeral loopback port until killed; print the ready line on stdout.
pub fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        println!("plain-server ready http://{}", listener.local_addr()?);
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            let service = service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                let ok = req.into_body().collect().await.is_ok();
                let (status, body) = if ok {
                    (200, &b"{\"status\":\"ok\"}"[..])
                } else {
                    (400, &b"{\"error\":\"body\"}"[..])
                };
                let resp = http::Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from_static(body)))
                    .unwrap_or_default();
                Ok::<_, Infallible>(resp)
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service);
            tokio::spawn(async move {
                let _ = conn.await;
            });
        }
    })
}
