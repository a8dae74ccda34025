//! Ingress under senders that hold resources, and header hygiene: a body that does not
//! arrive in time gets 408 and its connection closed; the budget of buffered body bytes
//! refuses with 503 + `Retry-After` when full and accepts again once freed; a source
//! over its rate gets 429 + `Retry-After` while the others are served; the connection
//! after `max_connections` waits for one to close; `/metrics` counts each refusal by
//! its reason. Credentials and signature headers are neither stored nor handed to
//! plugins unless a source keeps them. Real sockets throughout: the slow senders are
//! raw TCP connections that stop mid-request.
//!
//! Beside them: `server.plugin_threads` is the number of threads that run plugin code.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{
    SECRET, TestEnv, TestHost, plugins, post_id, standard_webhooks_headers, unix_now, wait_until,
};

const WAIT: Duration = Duration::from_secs(30);

/// A test env whose `[server]` table has `keys` besides the harness's.
fn with_server(mut env: TestEnv, keys: &str) -> TestEnv {
    env.server_config = keys.to_string();
    env
}

/// The value of the sample `name` whose labels include each of `labels` (0 when the
/// scrape has none). A plain reading of the text format; observability.rs checks the
/// format itself with Prometheus' parser.
async fn metric(host: &TestHost, name: &str, labels: &[(&str, &str)]) -> f64 {
    let (status, _, text) = host.get_text(host.admin, "/metrics").await;
    assert_eq!(status, 200, "{text}");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, rest) = series.split_once('{').unwrap_or((series, ""));
            (n == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\""))))
            .then(|| value.parse::<f64>().ok())
            .flatten()
        })
        .sum()
}

/// Wait until the metric reaches `at_least`.
async fn wait_metric(host: &TestHost, name: &str, labels: &[(&str, &str)], at_least: f64) {
    wait_until(
        &format!("{name}{labels:?} reaches {at_least}"),
        WAIT,
        || async { (metric(host, name, labels).await >= at_least).then_some(()) },
    )
    .await;
}

/// A signed request's head for `source` with `content-length`, without its body.
fn signed_head(source: &str, id: &str, body: &[u8], framing: &str) -> String {
    let mut head = format!("POST /hooks/{source} HTTP/1.1\r\nhost: x\r\n{framing}\r\n");
    for (k, v) in standard_webhooks_headers(SECRET, id, unix_now(), body) {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    head
}

/// A raw connection that sent a request head declaring `declared` bytes and then
/// `sent` of them, and now holds the request open.
async fn slow_sender(addr: SocketAddr, declared: usize, sent: usize) -> TcpStream {
    let body = vec![b'x'; declared];
    let head = signed_head(
        "demo",
        "msg_slow",
        &body,
        &format!("content-length: {declared}"),
    );
    let mut conn = TcpStream::connect(addr).await.expect("connect");
    conn.write_all(head.as_bytes()).await.expect("write head");
    conn.write_all(&body[..sent]).await.expect("write body");
    conn
}

/// Everything the host sends until it closes the connection (bounded by a deadline).
async fn read_until_closed(conn: &mut TcpStream) -> String {
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, conn.read_to_end(&mut out))
        .await
        .expect("the host closes the connection")
        .expect("read");
    String::from_utf8_lossy(&out).into_owned()
}

fn event(kind: &str, pad: usize) -> Value {
    json!({"type": kind, "pad": "p".repeat(pad)})
}

fn reason(r: &crate::harness::Resp) -> (u16, Option<&str>) {
    (r.status, r.json["reason"].as_str())
}

/// A body still trickling in after `server.body_timeout_secs` is answered 408, the
/// connection is closed, and nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_past_its_deadline_gets_408_and_the_connection_closes() {
    let env = TestEnv::new();
    let env = with_server(env, "body_timeout_secs = 1");
    let host = env.start().await;

    let mut conn = slow_sender(host.ingress, 100, 10).await;
    let answer = read_until_closed(&mut conn).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"reason\":\"body_timeout\""), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );

    assert!(host.all_events().await.is_empty());
    let timeouts = [("source", "demo"), ("outcome", "body_timeout")];
    assert_eq!(
        metric(&host, "agenthook_ingress_outcomes_total", &timeouts).await,
        1.0
    );
    let by_status = [("source", "demo"), ("status", "408")];
    assert_eq!(
        metric(&host, "agenthook_ingress_requests_total", &by_status).await,
        1.0
    );
    // A well-behaved sender is served as before.
    post_id(&host, "msg_after", event("t", 0)).await;
    host.stop().await;
}

/// With `max_inflight_body_mb = 1`, one sender holding a declared 1 MiB (or a chunked
/// body it keeps open) leaves no room: the next request gets 503 `overloaded` +
/// `Retry-After`, and once the holder goes the same request is stored. What was stored
/// before is untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_body_budget_refuses_when_full_and_accepts_once_freed() {
    let env = with_server(
        TestEnv::new(),
        "max_inflight_body_mb = 1\nbody_timeout_secs = 60",
    );
    let host = env.start().await;
    let kept = post_id(&host, "msg_before", event("t", 0)).await;
    let before = host.event(&kept).await;
    let inflight = "agenthook_ingress_inflight_body_bytes";

    // A declared length is reserved before a byte of the body is read.
    let holder = slow_sender(host.ingress, 1024 * 1024, 1000).await;
    wait_metric(&host, inflight, &[], 1024.0 * 1024.0).await;
    let r = host.post_signed("msg_refused", &event("t", 0)).await;
    assert_eq!(reason(&r), (503, Some("overloaded")), "{:?}", r.json);
    assert_eq!(r.headers.get("retry-after").unwrap(), "1");
    drop(holder);
    wait_until("the holder's bytes are released", WAIT, || async {
        (metric(&host, inflight, &[]).await == 0.0).then_some(())
    })
    .await;
    post_id(&host, "msg_refused", event("t", 0)).await;

    // A chunked body is reserved as its chunks arrive.
    let held = 1024 * 1024 - 500;
    let mut conn = TcpStream::connect(host.ingress).await.unwrap();
    let head = signed_head("demo", "msg_chunked", b"", "transfer-encoding: chunked");
    conn.write_all(head.as_bytes()).await.unwrap();
    let chunk = format!("{held:x}\r\n{}\r\n", "c".repeat(held));
    conn.write_all(chunk.as_bytes()).await.unwrap();
    wait_metric(&host, inflight, &[], held as f64).await;
    let r = host.post_signed("msg_big", &event("t", 600)).await;
    assert_eq!(reason(&r), (503, Some("overloaded")), "{:?}", r.json);
    assert!(r.headers.contains_key("retry-after"));
    drop(conn);
    wait_until("the chunked holder's bytes are released", WAIT, || async {
        (metric(&host, inflight, &[]).await == 0.0).then_some(())
    })
    .await;
    post_id(&host, "msg_big", event("t", 600)).await;

    let events = host.all_events().await;
    assert_eq!(events.len(), 3, "{events:?}");
    assert_eq!(host.event(&kept).await, before);
    let overloaded = [("source", "demo"), ("outcome", "overloaded")];
    assert_eq!(
        metric(&host, "agenthook_ingress_outcomes_total", &overloaded).await,
        2.0
    );
    let limit = metric(&host, "agenthook_ingress_inflight_body_limit_bytes", &[]).await;
    assert_eq!(limit, 1024.0 * 1024.0);
    host.stop().await;
}

/// `max_per_second` on one source answers 429 + `Retry-After` past its rate and stores
/// nothing refused; a source without a limit is served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_over_its_rate_gets_429_and_other_sources_are_unaffected() {
    let mut env = TestEnv::new();
    env.extra_config = format!(
        "[sources.limited]\nscheme = \"standard-webhooks\"\nsecrets = [\"{SECRET}\"]\nmax_per_second = 1\n"
    );
    let host = env.start().await;
    let post_limited = |id: String| {
        let host = &host;
        async move {
            let body = event("t", 0).to_string();
            let headers = standard_webhooks_headers(SECRET, &id, unix_now(), body.as_bytes());
            host.post("limited", &headers, body.as_bytes()).await
        }
    };

    let first = post_limited("lim_0".into()).await;
    assert_eq!(first.status, 200, "{:?}", first.json);
    // A burst of one: the next request within the second is refused (a few tries, in
    // case the machine is so slow that a second passed between two requests).
    let mut refused = None;
    for i in 1..=5 {
        let r = post_limited(format!("lim_{i}")).await;
        if r.status == 429 {
            refused = Some(r);
            break;
        }
    }
    let refused = refused.expect("a request past max_per_second is refused");
    assert_eq!(
        reason(&refused).1,
        Some("rate_limited"),
        "{:?}",
        refused.json
    );
    let retry: u64 = refused.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(retry, 1, "a token is free within the second");

    // `demo` has no limit: a burst is stored.
    for i in 0..5 {
        post_id(&host, &format!("demo_{i}"), event("t", 0)).await;
    }

    let limited_stored = host
        .all_events()
        .await
        .iter()
        .filter(|e| e["source"] == "limited")
        .count();
    let limited_refused = metric(
        &host,
        "agenthook_ingress_outcomes_total",
        &[("source", "limited"), ("outcome", "rate_limited")],
    )
    .await;
    assert!(limited_refused >= 1.0);
    assert_eq!(
        metric(
            &host,
            "agenthook_ingress_outcomes_total",
            &[("source", "limited"), ("outcome", "stored")],
        )
        .await,
        limited_stored as f64
    );
    let demo_limited = [("source", "demo"), ("outcome", "rate_limited")];
    assert_eq!(
        metric(&host, "agenthook_ingress_outcomes_total", &demo_limited).await,
        0.0
    );
    let by_status = [("source", "limited"), ("status", "429")];
    assert_eq!(
        metric(&host, "agenthook_ingress_requests_total", &by_status).await,
        limited_refused
    );
    host.stop().await;
}

/// With `max_connections = 3` held by slow senders, the next connection is not served
/// (accepting waits; it is not accepted and dropped) until one of them closes. The
/// admin listener has its own cap and keeps answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_after_max_connections_waits_until_one_closes() {
    let env = with_server(
        TestEnv::new(),
        "max_connections = 3\nbody_timeout_secs = 60",
    );
    let host = env.start().await;
    let open = "agenthook_connections";
    let ingress = [("listener", "ingress")];

    // The harness's client may keep a connection from its readiness check; fill
    // whatever is left with slow senders.
    let mut holders = Vec::new();
    loop {
        let now = metric(&host, open, &ingress).await;
        if now >= 3.0 {
            break;
        }
        holders.push(slow_sender(host.ingress, 100, 1).await);
        wait_metric(&host, open, &ingress, now + 1.0).await;
    }
    assert!(!holders.is_empty());
    wait_metric(
        &host,
        "agenthook_connection_limit_waits_total",
        &ingress,
        1.0,
    )
    .await;

    let mut waiting = TcpStream::connect(host.ingress)
        .await
        .expect("the kernel queues it");
    waiting
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(500), waiting.read(&mut buf)).await;
    assert!(early.is_err(), "served past max_connections: {early:?}");
    assert_eq!(metric(&host, open, &ingress).await, 3.0);

    drop(holders.pop());
    let answer = read_until_closed(&mut waiting).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // Senders still mid-body would hold the graceful stop until its drain deadline.
    drop(holders);
    host.stop().await;
}

/// `server.plugin_threads` is the number of threads plugin code runs on (counted by
/// name in the real binary's process).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_threads_sets_the_number_of_guest_threads() {
    let env = with_server(TestEnv::new(), "plugin_threads = 3");
    let host = env.start_binary().await;
    let pid = host.process.as_ref().and_then(|p| p.id()).expect("pid");
    let guests = || {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .expect("the host's threads")
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .filter(|name| name.trim() == "agenthook-guest")
            .count()
    };
    // The runtime starts its threads as it is built; each names itself once running.
    wait_until("three guest threads run", WAIT, || async {
        (guests() >= 3).then_some(())
    })
    .await;
    assert_eq!(guests(), 3);
    host.stop().await;
}

/// Authorization, Cookie, X-Api-Key and the signature header are neither stored nor
/// handed to the plugin; `keep_headers` keeps a signature header on the source that
/// names it, and `drop_headers` drops a custom one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_and_signatures_are_neither_stored_nor_handed_to_plugins() {
    let mut env = TestEnv::new();
    env.extra_config = format!(
        "[sources.kept]\nscheme = \"standard-webhooks\"\nsecrets = [\"{SECRET}\"]\nkeep_headers = [\"Webhook-Signature\", \"x-api-key\"]\ndrop_headers = [\"X-Internal-Trace\"]\n"
    );
    env.install_plugin(
        "recorder",
        plugins::TEST_OUTCOME,
        "[[subscribe]]\nsource = \"demo\"\n[[subscribe]]\nsource = \"kept\"\n\n[grants]\nkv = true\n\n[config]\nrecord_headers = \"true\"\n",
    );
    let host = env.start().await;

    let body = event("t", 0).to_string();
    let mut headers = standard_webhooks_headers(SECRET, "msg_creds", unix_now(), body.as_bytes());
    headers.extend([
        ("authorization", "Bearer leaked-token".to_string()),
        ("cookie", "session=leaked".to_string()),
        ("x-api-key", "leaked-key".to_string()),
        ("proxy-authorization", "Basic bGVha2Vk".to_string()),
        ("x-internal-trace", "trace-1".to_string()),
        ("x-request-id", "req-1".to_string()),
    ]);
    let mut ids = Vec::new();
    for source in ["demo", "kept"] {
        let r = host.post(source, &headers, body.as_bytes()).await;
        assert_eq!(r.status, 200, "{source}: {:?}", r.json);
        ids.push(r.json["id"].as_str().unwrap().to_string());
    }

    let stored = |e: &Value| -> Vec<String> {
        e["headers"]
            .as_array()
            .expect("headers")
            .iter()
            .map(|h| h[0].as_str().unwrap().to_string())
            .collect()
    };
    for (id, expect) in ids.iter().zip([
        // demo: the defaults.
        vec![
            "webhook-id",
            "webhook-timestamp",
            "content-type",
            "x-internal-trace",
            "x-request-id",
        ],
        // kept: the signature and the api key kept, the trace dropped.
        vec![
            "webhook-id",
            "webhook-timestamp",
            "webhook-signature",
            "content-type",
            "x-api-key",
            "x-request-id",
        ],
    ]) {
        let e = host.wait_status(id, "done", WAIT).await;
        let mut names = stored(&e);
        names.retain(|n| n != "host" && n != "content-length");
        assert_eq!(names, expect, "stored headers of {}", e["source"]);
        let text = e.to_string();
        for secret in ["leaked-token", "session=leaked", "bGVha2Vk"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        let seen = host
            .kv("recorder", &format!("headers/{id}"))
            .await
            .expect("the plugin recorded its headers");
        assert_eq!(
            seen.split(',').collect::<Vec<_>>(),
            stored(&e),
            "the plugin is handed exactly what is stored"
        );
    }
    host.stop().await;
}
