//! The journal of effects end to end: a retried attempt gets the recorded results of the
//! POST, the email and the emit its failed attempt made, instead of making them again
//! (loopback HTTP sink, the real SMTP server process, the real store); a `kill -9`
//! between an effect and its record repeats it at most once, with the same
//! `Idempotency-Key`; a handler that changes its calls diverges and runs the rest.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{TestEnv, TestHost, attempts, manifest, plugins, post_id, wait_until};
use crate::servers::{ApiServer, Recorded, Reply, SmtpSink};

const WAIT: Duration = Duration::from_secs(30);

/// The test-journal plugin's results for one attempt of the event posted as `event_id`.
async fn results(host: &TestHost, event_id: &str, attempt: u32) -> Vec<String> {
    let text = wait_until(
        &format!("test-journal records its results for {event_id} attempt {attempt}"),
        WAIT,
        || async {
            host.kv("test-journal", &format!("result/{event_id}/{attempt}"))
                .await
        },
    )
    .await;
    serde_json::from_str(&text).expect("results are a JSON array")
}

/// A sink that answers each POST `201 created #n` (n from 1).
async fn sink() -> ApiServer {
    ApiServer::start(|_, n| Reply::json(201, json!(format!("created #{}", n + 1)))).await
}

fn keys(requests: &[Recorded]) -> Vec<Option<String>> {
    requests
        .iter()
        .map(|r| r.header("idempotency-key").map(str::to_string))
        .collect()
}

fn grants(sink: &ApiServer, extra: &str) -> String {
    manifest(
        "journal.*",
        &format!(
            "[grants]\nkv = true\nhttp = [\"{}\"]\nemail = [\"ops@example.com\"]\nemit = [\"done.*\"]\n\n[retry]\nmax_attempts = 3\ninitial_backoff_ms = 1\nmax_backoff_ms = 1\n{extra}",
            sink.origin()
        ),
    )
}

fn journal_of(event: &Value, plugin: &str) -> Vec<Value> {
    event["deliveries"]
        .as_array()
        .and_then(|ds| ds.iter().find(|d| d["plugin"] == plugin))
        .and_then(|d| d["journal"].as_array().cloned())
        .unwrap_or_default()
}

async fn emitted(host: &TestHost) -> usize {
    host.all_events()
        .await
        .iter()
        .filter(|e| e["source"] == "plugin:test-journal")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapped_attempt_is_retried_without_repeating_its_post_email_or_emit() {
    let sink = sink().await;
    let smtp = SmtpSink::start().await;
    let mut env = TestEnv::new();
    env.extra_config = smtp.email_config("");
    env.install_plugin("test-journal", plugins::TEST_JOURNAL, &grants(&sink, ""));
    let host = env.start_binary().await;
    let body = json!({
        "type": "journal.run",
        "calls": [
            {"tool": "post", "url": sink.url("/crm/leads"), "body": "lead 42"},
            {"tool": "email", "to": "ops@example.com"},
            {"tool": "emit", "type": "done.lead"},
        ],
        "trap_until_attempt": 2,
    });
    let id = post_id(&host, "msg_journal", body).await;
    let event = host.wait_status(&id, "done", WAIT).await;

    // The sink, the SMTP server and the store each saw the effect once.
    let posts = sink.requests();
    assert_eq!(posts.len(), 1, "{posts:?}");
    let key = format!("agenthook:{id}:test-journal:1");
    assert_eq!(keys(&posts), [Some(key.clone())]);
    assert_eq!(posts[0].body, b"lead 42");
    assert_eq!(smtp.wait_messages(1).await.len(), 1);
    assert_eq!(emitted(&host).await, 1);

    // Attempt 2 got attempt 1's results back, word for word.
    let first = results(&host, "msg_journal", 1).await;
    let second = results(&host, "msg_journal", 2).await;
    assert!(first[0].starts_with("ok 201 \"created #1\""), "{first:?}");
    assert!(first.iter().all(|r| r.starts_with("ok ")), "{first:?}");
    assert_eq!(first, second);
    let a = attempts(&event, "test-journal");
    assert_eq!(a.len(), 2, "{a:?}");
    assert!(
        a[0]["error"].as_str().unwrap().starts_with("trap:"),
        "{a:?}"
    );
    assert_eq!(a[0]["journal"], "0 replayed, 3 recorded");
    assert_eq!(a[1]["journal"], "3 replayed, 0 recorded");
    let journal = journal_of(&event, "test-journal");
    let tools: Vec<&str> = journal
        .iter()
        .map(|e| e["tool"].as_str().unwrap())
        .collect();
    assert_eq!(tools, ["http.fetch", "email.send", "events.emit"]);
    assert_eq!(
        journal[0]["summary"],
        format!("POST {} → 201", sink.url("/crm/leads"))
    );
    assert!(journal.iter().all(|e| e["attempt"] == 1), "{journal:?}");
    // `events show` prints it.
    let shown = host.cli(&["events", "show", &id]);
    assert!(shown.contains("journal: 3 replayed, 0 recorded"), "{shown}");
    assert!(shown.contains("call 2 (email.send, attempt 1)"), "{shown}");

    // A replay that keeps the journal makes nothing again.
    let out = host.cli(&["events", "replay", &id, "--keep-journal"]);
    assert!(out.contains("replaying to test-journal"), "{out}");
    let event = wait_until("the kept-journal replay finishes", WAIT, || async {
        let e = host.event(&id).await;
        (attempts(&e, "test-journal").len() == 3 && e["status"] == "done").then_some(e)
    })
    .await;
    assert_eq!(
        attempts(&event, "test-journal")[2]["journal"],
        "3 replayed, 0 recorded"
    );
    assert_eq!(sink.requests().len(), 1);
    assert_eq!(smtp.messages().len(), 1);
    // A plain replay starts a fresh journal: the POST and the email are made again (the
    // POST with the same Idempotency-Key, so the receiver can tell); the emit is still
    // recognised by its id.
    host.cli(&["events", "replay", &id]);
    let posts = sink.wait_requests(2).await;
    assert_eq!(keys(&posts), [Some(key.clone()), Some(key)]);
    assert_eq!(smtp.wait_messages(2).await.len(), 2);
    host.wait_status(&id, "done", WAIT).await;
    assert_eq!(emitted(&host).await, 1);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_between_the_effect_and_its_record_repeats_it_once_with_the_same_key() {
    // The sink kills the host (kill -9) when the first POST arrives: the effect has
    // happened, its record has not.
    let pid = Arc::new(AtomicU32::new(0));
    let to_kill = pid.clone();
    let sink = ApiServer::start(move |_, n| {
        if n == 0 {
            let pid = to_kill.load(Ordering::SeqCst);
            assert_ne!(pid, 0, "the host's pid is set before any event is sent");
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status();
        }
        Reply::json(201, json!(format!("created #{}", n + 1)))
    })
    .await;
    let env = TestEnv::new();
    env.install_plugin("test-journal", plugins::TEST_JOURNAL, &grants(&sink, ""));
    let host = env.start_binary().await;
    pid.store(
        host.process.as_ref().and_then(|c| c.id()).expect("pid"),
        Ordering::SeqCst,
    );
    let body = json!({
        "type": "journal.run",
        "calls": [{"tool": "post", "url": sink.url("/charge"), "body": "charge 1"}],
    });
    let id = post_id(&host, "msg_kill", body).await;
    sink.wait_requests(1).await;
    host.kill9().await;

    let host = env.start_binary().await;
    let event = host.wait_status(&id, "done", WAIT).await;
    let posts = sink.requests();
    assert_eq!(posts.len(), 2, "one repeat, no more: {posts:?}");
    let key = format!("agenthook:{id}:test-journal:1");
    assert_eq!(keys(&posts), [Some(key.clone()), Some(key)]);
    // The repeat was recorded; the plugin saw its answer.
    let journal = journal_of(&event, "test-journal");
    assert_eq!(journal.len(), 1, "{journal:?}");
    assert_eq!(
        results(&host, "msg_kill", 1).await,
        ["ok 201 \"created #2\""]
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_changes_its_calls_diverges_and_the_rest_run() {
    let sink = sink().await;
    let env = TestEnv::new();
    env.install_plugin("test-journal", plugins::TEST_JOURNAL, &grants(&sink, ""));
    let host = env.start().await;
    let post = |body: &str| json!({"tool": "post", "url": sink.url("/p"), "body": body});
    let body = json!({
        "type": "journal.run",
        "calls": [post("a"), post("b")],
        "attempt_calls": {"2": [post("a"), post("c"), post("d")]},
        "trap_until_attempt": 2,
    });
    let id = post_id(&host, "msg_diverge", body).await;
    let event = host.wait_status(&id, "done", WAIT).await;
    let bodies: Vec<String> = sink
        .requests()
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    assert_eq!(
        bodies,
        ["a", "b", "c", "d"],
        "a once; c and d after the divergence"
    );
    let a = attempts(&event, "test-journal");
    assert_eq!(
        a[1]["journal"],
        "diverged at call 2 (1 replayed, 2 recorded)"
    );
    let second = results(&host, "msg_diverge", 2).await;
    assert_eq!(
        second,
        [
            "ok 201 \"created #1\"",
            "ok 201 \"created #3\"",
            "ok 201 \"created #4\""
        ]
    );
    let journal = journal_of(&event, "test-journal");
    let shown: Vec<(u64, u64)> = journal
        .iter()
        .map(|e| (e["seq"].as_u64().unwrap(), e["attempt"].as_u64().unwrap()))
        .collect();
    assert_eq!(shown, [(1, 1), (2, 2), (3, 2)]);
    // Calls made after a divergence are new operations: their Idempotency-Key names the
    // attempt too, so a receiver never takes "c" for a repeat of "b".
    let keys: Vec<String> = keys(&sink.requests()).into_iter().flatten().collect();
    let base = format!("agenthook:{id}:test-journal");
    assert_eq!(
        keys,
        [
            format!("{base}:1"),
            format!("{base}:2"),
            format!("{base}:2:a2"),
            format!("{base}:3:a2")
        ]
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_excluded_from_the_journal_is_made_again_on_every_attempt() {
    let sink = sink().await;
    let env = TestEnv::new();
    env.install_plugin(
        "test-journal",
        plugins::TEST_JOURNAL,
        &grants(&sink, "\n[journal]\nexclude = [\"http\"]\n"),
    );
    let host = env.start().await;
    let body = json!({
        "type": "journal.run",
        "calls": [
            {"tool": "post", "url": sink.url("/p"), "body": "x"},
            {"tool": "emit", "type": "done.x"},
        ],
        "trap_until_attempt": 2,
    });
    let id = post_id(&host, "msg_excluded", body).await;
    let event = host.wait_status(&id, "done", WAIT).await;
    let posts = sink.requests();
    assert_eq!(posts.len(), 2, "{posts:?}");
    assert_eq!(
        keys(&posts),
        [None, None],
        "no host key without the journal"
    );
    let a = attempts(&event, "test-journal");
    assert_eq!(
        a[1]["journal"], "1 replayed, 0 recorded",
        "the emit still is"
    );
    assert_eq!(journal_of(&event, "test-journal").len(), 1);
    host.stop().await;
}
