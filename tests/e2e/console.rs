//! The web console (`/ui` on the admin port): sign-in, the session cookie, CSRF and
//! origin checks over plain HTTP against the real host, and the browser test
//! (`console/browser.py`, Playwright driving Debian's chromium) against the real binary.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;

use crate::harness::{TOKEN, TestEnv, TestHost, attempts, manifest, plugins, post_id, wait_until};

/// `steady` takes every `demo` event and succeeds; `flaky` takes `flaky.*`, dies on
/// its first attempt and succeeds from its second (so a replayed dead letter succeeds).
fn console_env() -> TestEnv {
    let env = TestEnv::new();
    env.install_plugin("steady", plugins::TEST_OUTCOME, &manifest("*", ""));
    env.install_plugin(
        "flaky",
        plugins::TEST_OUTCOME,
        &manifest(
            "flaky.*",
            "[config]\noutcome = \"permanent\"\nsucceed_on_attempt = \"2\"\n",
        ),
    );
    env
}

struct Page {
    status: u16,
    headers: HeaderMap,
    text: String,
}

async fn ui(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Page {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut req = http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = client
        .request(
            req.body(Full::new(Bytes::from(body.to_string())))
                .expect("request"),
        )
        .await
        .expect("request to the console");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    Page {
        status,
        headers,
        text: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

/// Sign in; returns the `Cookie` header value and the session's CSRF token.
async fn sign_in(host: &TestHost) -> (String, String) {
    let r = ui(
        host.admin,
        Method::POST,
        "/ui/login",
        &[FORM],
        &format!("token={TOKEN}&next=%2Fui%2Fdlq"),
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.text);
    assert_eq!(r.headers["location"], "/ui/dlq");
    let set = r.headers["set-cookie"].to_str().unwrap().to_string();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(set.contains(attr), "cookie lacks {attr}: {set}");
    }
    let cookie = set.split(';').next().unwrap().to_string();
    let page = ui(
        host.admin,
        Method::GET,
        "/ui/dlq",
        &[("cookie", &cookie)],
        "",
    )
    .await;
    assert_eq!(page.status, 200);
    let csrf = page
        .text
        .split("name=\"csrf-token\" content=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("the page carries its CSRF token")
        .to_string();
    (cookie, csrf)
}

const PAGES: [&str; 7] = [
    "/ui",
    "/ui/events",
    "/ui/events/1",
    "/ui/dlq",
    "/ui/plugins",
    "/ui/send",
    "/ui/static/console.js",
];

/// Every page redirects to the sign-in and every action is 401, showing nothing.
async fn assert_refused(host: &TestHost, cookie: Option<&str>) {
    let headers: Vec<(&str, &str)> = cookie.map(|c| vec![("cookie", c)]).unwrap_or_default();
    for path in PAGES {
        let r = ui(host.admin, Method::GET, path, &headers, "").await;
        assert_eq!(r.status, 303, "GET {path}");
        assert!(
            r.headers["location"]
                .to_str()
                .unwrap()
                .starts_with("/ui/login?next=")
        );
        assert!(r.text.is_empty(), "GET {path} shows {}", r.text);
    }
    for path in [
        "/ui/dlq",
        "/ui/send",
        "/ui/events/1/replay",
        "/ui/plugins/flaky/remove",
        "/ui/plugins/deploy",
        "/ui/logout",
    ] {
        let mut h = headers.clone();
        h.push(FORM);
        let r = ui(
            host.admin,
            Method::POST,
            path,
            &h,
            "csrf=x&do=purge-matching&confirmed=yes",
        )
        .await;
        assert_eq!(r.status, 401, "POST {path}");
        for word in ["flaky", "steady", "demo"] {
            assert!(!r.text.contains(word), "POST {path} shows {word}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_session_and_csrf_guard_every_change() {
    let env = console_env();
    let host = env.start().await;
    let id = post_id(&host, "csrf-1", json!({"type": "flaky.fail"})).await;
    host.wait_status(&id, "dead", Duration::from_secs(30)).await;

    // Nothing without a session; a wrong token or a foreign sign-in form gets none.
    assert_refused(&host, None).await;
    assert_refused(&host, Some("agenthook_session=forged")).await;
    let wrong = ui(host.admin, Method::POST, "/ui/login", &[FORM], "token=nope").await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.headers.get("set-cookie").is_none());
    assert!(wrong.text.contains("not the admin token"));
    let foreign = ui(
        host.admin,
        Method::POST,
        "/ui/login",
        &[FORM, ("origin", "http://evil.example")],
        &format!("token={TOKEN}"),
    )
    .await;
    assert_eq!(foreign.status, 403);
    assert!(foreign.headers.get("set-cookie").is_none());
    // The admin API's bearer token is not a console session.
    let bearer = format!("Bearer {TOKEN}");
    let r = ui(
        host.admin,
        Method::GET,
        "/ui",
        &[("authorization", &bearer)],
        "",
    )
    .await;
    assert_eq!(r.status, 303);

    let (cookie, csrf) = sign_in(&host).await;
    let page = ui(host.admin, Method::GET, "/ui", &[("cookie", &cookie)], "").await;
    assert_eq!(page.status, 200);
    assert!(page.text.contains("steady") && page.text.contains("flaky"));
    for h in [
        "content-security-policy",
        "x-frame-options",
        "cache-control",
    ] {
        assert!(page.headers.contains_key(h), "no {h}");
    }

    // A replay without the CSRF token, with another session's token, or from another
    // site is refused and changes nothing.
    let sel = format!("sel={id}%2Fflaky&do=replay-selected&confirmed=yes");
    let (_, other_csrf) = sign_in(&host).await;
    let attempts_before = attempts(&host.event(&id).await, "flaky").len();
    for (body, extra) in [
        (sel.clone(), None),
        (format!("{sel}&csrf=wrong"), None),
        (format!("{sel}&csrf={other_csrf}"), None),
        (
            format!("{sel}&csrf={csrf}"),
            Some(("origin", "http://evil.example")),
        ),
        (
            format!("{sel}&csrf={csrf}"),
            Some(("sec-fetch-site", "cross-site")),
        ),
    ] {
        let mut h = vec![("cookie", cookie.as_str()), FORM];
        h.extend(extra);
        let r = ui(host.admin, Method::POST, "/ui/dlq", &h, &body).await;
        assert_eq!(r.status, 403, "{body} {extra:?}: {}", r.text);
    }
    let event = host.event(&id).await;
    assert_eq!(event["status"], "dead", "a refused replay changed nothing");
    assert_eq!(attempts(&event, "flaky").len(), attempts_before);
    // Nor did a refused removal or deploy.
    let r = ui(
        host.admin,
        Method::POST,
        "/ui/plugins/flaky/remove",
        &[("cookie", &cookie), FORM],
        "confirmed=yes",
    )
    .await;
    assert_eq!(r.status, 403);
    let multipart = "--XX\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nsneaky\r\n--XX\r\nContent-Disposition: form-data; name=\"manifest_text\"\r\n\r\n[[subscribe]]\nsource = \"demo\"\n\r\n--XX\r\nContent-Disposition: form-data; name=\"wasm\"; filename=\"a.wasm\"\r\n\r\nxx\r\n--XX--\r\n";
    let r = ui(
        host.admin,
        Method::POST,
        "/ui/plugins/deploy",
        &[
            ("cookie", &cookie),
            ("content-type", "multipart/form-data; boundary=XX"),
        ],
        multipart,
    )
    .await;
    assert_eq!(r.status, 403);
    let listed = host.admin_get("/admin/v1/plugins").await;
    let names: Vec<&str> = listed.json["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["flaky", "steady"]);

    // The same replay with the token: asked to confirm first, then done.
    let r = ui(
        host.admin,
        Method::POST,
        "/ui/dlq",
        &[("cookie", &cookie), FORM],
        &format!("sel={id}%2Fflaky&do=replay-selected&csrf={csrf}"),
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.text.contains("Yes, replay 1"), "{}", r.text);
    assert_eq!(
        host.event(&id).await["status"],
        "dead",
        "asking to confirm changed nothing"
    );
    let r = ui(
        host.admin,
        Method::POST,
        "/ui/dlq",
        &[("cookie", &cookie), FORM],
        &format!("{sel}&csrf={csrf}"),
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.text);
    host.wait_status(&id, "done", Duration::from_secs(30)).await;

    // The header form of the token works for scripts (same origin).
    let r = ui(
        host.admin,
        Method::POST,
        "/ui/events/999/replay",
        &[("cookie", &cookie), FORM, ("x-csrf-token", &csrf)],
        "",
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.text);

    // Signing out ends the session: the old cookie opens nothing.
    let r = ui(
        host.admin,
        Method::POST,
        "/ui/logout",
        &[("cookie", &cookie), FORM],
        &format!("csrf={csrf}"),
    )
    .await;
    assert_eq!(r.status, 303);
    assert!(
        r.headers["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    assert_refused(&host, Some(&cookie)).await;
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_filter_page_and_escape() {
    let env = console_env();
    env.install_plugin(
        "emitter",
        plugins::TEST_TOOL_PROBE,
        &manifest("probe.*", "[grants]\nkv = true\nemit = [\"chain.*\"]\n"),
    );
    let host = env.start().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            post_id(
                &host,
                &format!("page-{i}"),
                json!({"type": "order.created", "n": i}),
            )
            .await,
        );
    }
    let hostile = post_id(
        &host,
        "<script>alert(1)</script>",
        json!({"type": "<img src=x onerror=alert(1)>"}),
    )
    .await;
    let (cookie, _) = sign_in(&host).await;
    let get = |path: String| {
        let cookie = cookie.clone();
        let admin = host.admin;
        async move { ui(admin, Method::GET, &path, &[("cookie", &cookie)], "").await }
    };

    // The event page lists the tool calls with an effect a delivery made (its journal).
    let emitting = post_id(
        &host,
        "emits-once",
        json!({"type": "probe.start", "emit": [{"type": "chain.next", "body": {"n": 1}}]}),
    )
    .await;
    host.wait_status(&emitting, "done", Duration::from_secs(30))
        .await;
    let page = get(format!("/ui/events/{emitting}")).await;
    assert_eq!(page.status, 200);
    assert!(
        page.text.contains("Tool calls with an effect") && page.text.contains("events.emit"),
        "the journal is shown: {}",
        page.text
    );

    // Two per page, newest first, with a cursor to the older ones.
    let first = get("/ui/events?limit=2&type=order.created".into()).await;
    assert_eq!(first.status, 200);
    assert!(
        first.text.contains("page-4")
            && first.text.contains("page-3")
            && !first.text.contains("page-2")
    );
    let next = first
        .text
        .split("href=\"/ui/events?")
        .find(|s| s.contains("cursor="))
        .and_then(|s| s.split('"').next())
        .expect("an older page")
        .replace("&amp;", "&");
    let second = get(format!("/ui/events?{next}")).await;
    assert!(
        second.text.contains("page-2")
            && second.text.contains("page-1")
            && !second.text.contains("page-3"),
        "{next}"
    );
    let one = get("/ui/events?event_id=page-1".into()).await;
    assert!(one.text.contains("page-1") && !one.text.contains("page-2"));
    let bad = get("/ui/events?status=sideways".into()).await;
    assert_eq!(bad.status, 400);
    assert!(
        bad.text
            .contains("status must be pending, retrying, done or dead")
    );

    // What a sender controls is shown escaped, never as markup.
    wait_until(
        "the hostile event is listed",
        Duration::from_secs(10),
        || async {
            let page = get("/ui/events".into()).await;
            page.text
                .contains("&lt;script&gt;alert(1)&lt;/script&gt;")
                .then_some(())
        },
    )
    .await;
    let page = get(format!("/ui/events/{hostile}")).await;
    assert_eq!(page.status, 200);
    assert!(!page.text.contains("<script>alert") && !page.text.contains("<img src=x"));
    assert!(page.text.contains("&lt;img src=x onerror=alert(1)&gt;"));
    for path in [
        "/ui",
        "/ui/dlq",
        "/ui/plugins",
        "/ui/send",
        &format!("/ui/events/{}", ids[0]),
    ] {
        assert_eq!(get(path.to_string()).await.status, 200, "{path}");
    }
    assert_eq!(get("/ui/events/nope".into()).await.status, 404);
    host.stop().await;
}

/// The browser test: Playwright for Python drives Debian's chromium against the real
/// binary. Without chromium or Playwright it is skipped with a notice, unless
/// `AGENTHOOK_REQUIRE_BROWSER` is set (CI sets it, and installs both).
/// `AGENTHOOK_CONSOLE_SCREENSHOTS=DIR` saves the README's screenshots there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_a_real_browser() {
    let required = std::env::var_os("AGENTHOOK_REQUIRE_BROWSER").is_some();
    let chromium = ["chromium", "chromium-browser"].iter().any(|b| {
        std::process::Command::new("sh")
            .args(["-c", &format!("command -v {b}")])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    let playwright = std::process::Command::new("python3")
        .args(["-c", "import playwright.sync_api"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !(chromium && playwright) {
        assert!(
            !required,
            "AGENTHOOK_REQUIRE_BROWSER is set but chromium ({chromium}) or Playwright for Python ({playwright}) is missing"
        );
        eprintln!(
            "SKIPPED console_in_a_real_browser: install chromium and `python3 -m pip install playwright`"
        );
        return;
    }
    let env = console_env();
    let host = env.start_binary().await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/e2e/console/browser.py");
    let mut cmd = tokio::process::Command::new("python3");
    cmd.arg(script)
        .arg(format!("http://{}", host.admin))
        .arg(TOKEN)
        .arg(plugins::TEST_NOOP);
    if let Some(dir) = std::env::var_os("AGENTHOOK_CONSOLE_SCREENSHOTS") {
        cmd.arg(dir);
    }
    let out = tokio::time::timeout(Duration::from_secs(300), cmd.output())
        .await
        .expect("the browser test finished within 300 s")
        .expect("run python3");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "browser test failed:\n{text}");
    assert!(text.contains("console browser test: ok"), "{text}");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_purge_asks_then_purges_only_what_matches() {
    let env = console_env();
    let host = env.start().await;
    let mut dead = Vec::new();
    for i in 0..3 {
        let id = post_id(&host, &format!("purge-{i}"), json!({"type": "flaky.fail"})).await;
        host.wait_status(&id, "dead", Duration::from_secs(30)).await;
        dead.push(id);
    }
    let kept = post_id(&host, "kept", json!({"type": "order.created"})).await;
    host.wait_status(&kept, "done", Duration::from_secs(30))
        .await;
    let (cookie, csrf) = sign_in(&host).await;
    let post = |body: String| {
        let cookie = cookie.clone();
        let admin = host.admin;
        async move {
            ui(
                admin,
                Method::POST,
                "/ui/dlq",
                &[("cookie", &cookie), FORM],
                &body,
            )
            .await
        }
    };

    // Asked first: the page names the count; nothing is purged yet.
    let ask = post(format!("do=purge-matching&plugin=flaky&csrf={csrf}")).await;
    assert_eq!(ask.status, 200);
    assert!(ask.text.contains("Yes, purge 3"), "{}", ask.text);
    assert_eq!(
        host.admin_get("/admin/v1/dlq").await.json["dead_letters"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    // A filter that matches nothing purges nothing.
    let none = post(format!(
        "do=purge-matching&plugin=steady&confirmed=yes&csrf={csrf}"
    ))
    .await;
    assert_eq!(none.status, 303);
    assert!(
        none.headers["location"]
            .to_str()
            .unwrap()
            .contains("Purged+0")
    );
    // Confirmed: the three dead deliveries go; the events and their done deliveries stay.
    let done = post(format!(
        "do=purge-matching&plugin=flaky&confirmed=yes&csrf={csrf}"
    ))
    .await;
    assert_eq!(done.status, 303, "{}", done.text);
    assert!(
        done.headers["location"]
            .to_str()
            .unwrap()
            .contains("Purged+3")
    );
    assert!(
        host.admin_get("/admin/v1/dlq").await.json["dead_letters"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    for id in &dead {
        let e = host.event(id).await;
        assert!(
            attempts(&e, "flaky").is_empty(),
            "the dead delivery is gone"
        );
        assert_eq!(attempts(&e, "steady").len(), 1, "the done delivery stays");
    }
    assert_eq!(host.event(&kept).await["status"], "done");
    let page = ui(
        host.admin,
        Method::GET,
        "/ui/dlq",
        &[("cookie", &cookie)],
        "",
    )
    .await;
    assert!(page.text.contains("No dead letters match."));
    host.stop().await;
}
