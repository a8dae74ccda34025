//! The `llm` tool end to end, against loopback servers that speak each provider's real
//! wire format: OpenAI chat completions and Anthropic messages, with structured output,
//! tool calls, token usage, errors, 429 with `Retry-After`, streaming off; the API key
//! held by the host; grants and the hourly token budget; a retried attempt that gets
//! the journaled answer instead of a second paid call.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{TestEnv, TestHost, attempts, manifest, plugins, post_id, wait_until};
use crate::servers::{ApiServer, Recorded, Reply};

const WAIT: Duration = Duration::from_secs(30);

async fn results(host: &TestHost, plugin: &str, event_id: &str, attempt: u32) -> Vec<Value> {
    let text = wait_until(
        &format!("{plugin} records its results for {event_id} attempt {attempt}"),
        WAIT,
        || async {
            host.kv(plugin, &format!("result/{event_id}/{attempt}"))
                .await
        },
    )
    .await;
    serde_json::from_str(&text).expect("results are a JSON array")
}

fn llm_manifest(grant: &str, extra: &str) -> String {
    manifest(
        "llm.*",
        &format!(
            "[limits]\ntimeout_ms = 10000\n\n[retry]\nmax_attempts = 3\ninitial_backoff_ms = 1\nmax_backoff_ms = 1\n\n[grants]\nkv = true\n{grant}\n{extra}"
        ),
    )
}

pub(crate) fn provider(name: &str, kind: &str, server: &ApiServer, key: &str) -> String {
    format!(
        "[llm.providers.{name}]\nkind = \"{kind}\"\nbase_url = \"{}/v1\"\napi_key = \"{key}\"\n",
        server.origin()
    )
}

/// The last user message of an OpenAI or Anthropic request body.
fn prompt(req: &Recorded) -> String {
    let body = req.json();
    body["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_string()
}

pub(crate) fn openai_answer(content: &str, input: u32, output: u32) -> Reply {
    Reply::json(
        200,
        json!({
            "id": "chatcmpl-9x",
            "object": "chat.completion",
            "created": 1_733_300_000,
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": null},
                "logprobs": null,
                "finish_reason": "stop",
            }],
            "usage": {"prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output},
            "system_fingerprint": "fp_e2e",
        }),
    )
}

fn with_header(mut reply: Reply, name: &str, value: &str) -> Reply {
    reply.headers.push((name.into(), value.into()));
    reply
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_structured_output_with_the_hosts_key_and_a_retry_that_does_not_pay_twice() {
    let server = ApiServer::start(|_, _| openai_answer(r#"{"severity":"high"}"#, 12, 5)).await;
    let mut env = TestEnv::new();
    env.extra_config = provider("openai", "openai", &server, "env:AGENTHOOK_E2E_OPENAI_KEY");
    env.install_plugin(
        "test-llm",
        plugins::TEST_LLM,
        &llm_manifest(
            "llm = { provider = \"openai\", models = [\"gpt-4o-*\"] }",
            "",
        ),
    );
    let host = env
        .start_binary_with_env(&[("AGENTHOOK_E2E_OPENAI_KEY", "sk-e2e-secret")])
        .await;
    let schema = json!({
        "type": "object",
        "properties": {"severity": {"type": "string", "enum": ["low", "high"]}},
        "required": ["severity"],
        "additionalProperties": false,
    });
    let body = json!({
        "type": "llm.triage",
        "calls": [{
            "model": "gpt-4o-mini",
            "system": "Rate alerts.",
            "prompt": "disk /var at 97% on db-1",
            "schema": schema,
        }],
        "trap_until_attempt": 2,
    });
    let id = post_id(&host, "llm_openai", body).await;
    let event = host.wait_status(&id, "done", WAIT).await;

    // One request, in the chat completions format, with the host's key.
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1, "the retry did not call again: {reqs:?}");
    let req = &reqs[0];
    assert_eq!(
        (req.method.as_str(), req.path.as_str()),
        ("POST", "/v1/chat/completions")
    );
    assert_eq!(req.header("authorization"), Some("Bearer sk-e2e-secret"));
    let sent = req.json();
    assert_eq!(sent["stream"], false);
    assert_eq!(sent["model"], "gpt-4o-mini");
    assert_eq!(sent["max_tokens"], 200);
    assert_eq!(
        sent["messages"],
        json!([
            {"role": "system", "content": "Rate alerts."},
            {"role": "user", "content": "disk /var at 97% on db-1"},
        ])
    );
    assert_eq!(sent["response_format"]["type"], "json_schema");
    assert_eq!(sent["response_format"]["json_schema"]["schema"], schema);

    // Both attempts got the answer; the second from the journal.
    let expected = json!([{
        "content": "{\"severity\":\"high\"}",
        "tool_calls": [],
        "finish_reason": "stop",
        "model": "gpt-4o-mini-2024-07-18",
        "input_tokens": 12,
        "output_tokens": 5,
    }]);
    assert_eq!(
        json!(results(&host, "test-llm", "llm_openai", 1).await),
        expected
    );
    assert_eq!(
        json!(results(&host, "test-llm", "llm_openai", 2).await),
        expected
    );
    let a = attempts(&event, "test-llm");
    assert_eq!(a[1]["journal"], "1 replayed, 0 recorded");
    // The prompt and the answer are recorded with the attempt; the key is nowhere.
    let logs = a[0]["logs"].to_string();
    assert!(
        logs.contains("[llm] openai → gpt-4o-mini user: disk /var at 97% on db-1"),
        "{logs}"
    );
    assert!(
        logs.contains("[llm] ← gpt-4o-mini-2024-07-18 (stop, 12 in / 5 out tokens)"),
        "{logs}"
    );
    assert!(!event.to_string().contains("sk-e2e-secret"));
    let (_, _, metrics) = host.get_text(host.admin, "/metrics").await;
    for line in [
        r#"agenthook_llm_tokens_total{plugin="test-llm",model="gpt-4o-mini",direction="input"} 12"#,
        r#"agenthook_llm_tokens_total{plugin="test-llm",model="gpt-4o-mini",direction="output"} 5"#,
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_tool_calls_and_provider_errors() {
    let server = ApiServer::start(|req, _| match prompt(req).as_str() {
        "check db-1" => Reply::json(
            200,
            json!({
                "id": "msg_01",
                "type": "message",
                "role": "assistant",
                "model": "claude-sonnet-4-5",
                "content": [
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "toolu_01", "name": "lookup", "input": {"host": "db-1"}},
                ],
                "stop_reason": "tool_use",
                "stop_sequence": null,
                "usage": {"input_tokens": 30, "output_tokens": 12},
            }),
        ),
        "bad" => Reply::json(
            400,
            json!({"type": "error", "error": {"type": "invalid_request_error", "message": "messages: text content blocks must be non-empty"}}),
        ),
        _ => Reply::json(
            529,
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
        ),
    })
    .await;
    let mut env = TestEnv::new();
    env.extra_config = provider("claude", "anthropic", &server, "sk-ant-e2e");
    env.install_plugin(
        "test-llm",
        plugins::TEST_LLM,
        &llm_manifest(
            "llm = { provider = \"claude\", models = [\"claude-*\"] }",
            "",
        ),
    );
    let host = env.start().await;
    let call = |p: &str| {
        json!({
            "model": "claude-sonnet-4-5",
            "system": "You are on call.",
            "prompt": p,
            "tool": {"name": "lookup", "parameters": {"type": "object", "properties": {"host": {"type": "string"}}}},
        })
    };
    let body = json!({"type": "llm.tools", "calls": [call("check db-1"), call("bad"), call("overloaded")]});
    let id = post_id(&host, "llm_anthropic", body).await;
    host.wait_status(&id, "done", WAIT).await;
    let r = results(&host, "test-llm", "llm_anthropic", 1).await;
    assert_eq!(
        r[0],
        json!({
            "content": "Checking.",
            "tool_calls": [["toolu_01", "lookup", "{\"host\":\"db-1\"}"]],
            "finish_reason": "tool_use",
            "model": "claude-sonnet-4-5",
            "input_tokens": 30,
            "output_tokens": 12,
        })
    );
    assert_eq!(
        r[1]["error"],
        "invalid: the provider refused the request (400): invalid_request_error: messages: text content blocks must be non-empty"
    );
    assert_eq!(
        r[2]["error"],
        "failed: the provider answered 529: overloaded_error: Overloaded"
    );
    let reqs = server.requests();
    assert_eq!(reqs.len(), 3);
    let req = &reqs[0];
    assert_eq!(req.path, "/v1/messages");
    assert_eq!(req.header("x-api-key"), Some("sk-ant-e2e"));
    assert_eq!(req.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(req.header("authorization"), None);
    let sent = req.json();
    assert_eq!(sent["stream"], false);
    assert_eq!(sent["system"], "You are on call.");
    assert_eq!(sent["max_tokens"], 200);
    assert_eq!(
        sent["messages"],
        json!([{"role": "user", "content": "check db-1"}])
    );
    assert_eq!(sent["tools"][0]["name"], "lookup");
    assert_eq!(
        sent["tools"][0]["input_schema"]["properties"]["host"]["type"],
        "string"
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_budgets_and_grants() {
    let server = ApiServer::start(|req, _| {
        match prompt(req).as_str() {
            "long-429" => with_header(
                Reply::json(429, json!({"error": {"message": "Rate limit reached for gpt-4o-mini", "type": "requests", "param": null, "code": "rate_limit_exceeded"}})),
                "retry-after",
                "120",
            ),
            _ => openai_answer("fine", 10, 10),
        }
    })
    .await;
    // A second server whose first answer is a short 429.
    let flaky = ApiServer::start(|_, n| {
        if n == 0 {
            with_header(
                Reply::json(429, json!({"error": {"message": "Rate limit reached", "type": "requests", "param": null, "code": "rate_limit_exceeded"}})),
                "retry-after",
                "1",
            )
        } else {
            openai_answer("after the wait", 10, 10)
        }
    })
    .await;
    let mut env = TestEnv::new();
    env.extra_config = format!(
        "{}{}",
        provider("openai", "openai", &server, "sk-1"),
        provider("flaky", "openai", &flaky, "sk-2")
    );
    let grant = |p: &str, budget: u32| {
        format!(
            "llm = {{ provider = \"{p}\", models = [\"gpt-4o-mini\"], max_tokens_per_hour = {budget} }}"
        )
    };
    env.install_plugin(
        "test-llm",
        plugins::TEST_LLM,
        &llm_manifest(&grant("openai", 30), ""),
    );
    env.install_plugin(
        "llm-flaky",
        plugins::TEST_LLM,
        &llm_manifest(&grant("flaky", 1000), ""),
    );
    env.install_plugin("llm-ungranted", plugins::TEST_LLM, &llm_manifest("", ""));
    env.install_plugin(
        "llm-unknown",
        plugins::TEST_LLM,
        &llm_manifest(&grant("nowhere", 10), ""),
    );
    let host = env.start().await;
    let call = |model: &str, p: &str| json!({"model": model, "prompt": p});
    let body = json!({"type": "llm.limits", "calls": [
        call("gpt-5", "not granted"),
        call("gpt-4o-mini", "long-429"),
        call("gpt-4o-mini", "one"),
        call("gpt-4o-mini", "two"),
        call("gpt-4o-mini", "over budget"),
    ]});
    let started = Instant::now();
    let id = post_id(&host, "llm_limits", body).await;
    host.wait_status(&id, "done", WAIT).await;

    let r = results(&host, "test-llm", "llm_limits", 1).await;
    assert_eq!(
        r[0]["error"],
        "denied: model `gpt-5` is not granted to this plugin (grants.llm.models = [\"gpt-4o-mini\"])"
    );
    assert_eq!(
        r[1]["error"],
        "limited: the provider is rate limiting (429, Retry-After: 120 s): requests: Rate limit reached for gpt-4o-mini"
    );
    assert_eq!(r[2]["content"], "fine");
    assert_eq!(
        r[3]["content"], "fine",
        "20 of 30 tokens used: the call may start"
    );
    assert_eq!(
        r[4]["error"],
        "limited: 40 tokens used in the last hour; the budget is grants.llm.max_tokens_per_hour = 30"
    );
    let prompts: Vec<String> = server.requests().iter().map(prompt).collect();
    assert_eq!(
        prompts,
        ["long-429", "one", "two"],
        "nothing past the budget, no wait for 120 s"
    );

    // A short Retry-After is waited out, within the deadline.
    let flaky_results = results(&host, "llm-flaky", "llm_limits", 1).await;
    assert_eq!(
        flaky_results[1]["content"], "after the wait",
        "{flaky_results:?}"
    );
    let fr = flaky.requests();
    assert_eq!(
        fr.len(),
        5,
        "429 then 200 for the first granted call, one for each other"
    );
    assert_eq!(prompt(&fr[0]), prompt(&fr[1]));
    assert!(started.elapsed() >= Duration::from_secs(1));

    let ungranted = results(&host, "llm-ungranted", "llm_limits", 1).await;
    assert!(
        ungranted
            .iter()
            .all(|r| r["error"] == "denied: llm is not granted to this plugin (grants.llm)"),
        "{ungranted:?}"
    );
    let unknown = results(&host, "llm-unknown", "llm_limits", 1).await;
    assert_eq!(
        unknown[2]["error"],
        "failed: provider `nowhere` (grants.llm.provider) is not configured on this host ([llm.providers.nowhere])"
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incident_triage_briefs_with_the_model_or_falls_back_to_the_alert() {
    let server = ApiServer::start(|_, _| {
        openai_answer(
            "Checkout is slow for every customer: p99 above 2 s.",
            40,
            14,
        )
    })
    .await;
    let mut env = TestEnv::new();
    env.extra_config = provider("openai", "openai", &server, "sk-triage");
    let triage = |grant: &str, model: &str| {
        manifest(
            "alert.*",
            &format!(
                "[grants]\nkv = true\nemit = [\"incident.*\"]\n{grant}\n\n[config]\n{model}\n"
            ),
        )
    };
    let grant = "llm = { provider = \"openai\", models = [\"gpt-4o-mini\"] }";
    env.install_plugin(
        "incident-triage",
        plugins::INCIDENT_TRIAGE,
        &triage(grant, "llm_model = \"gpt-4o-mini\""),
    );
    // The documented fallbacks: no llm_model at all; a model but no usable provider.
    env.install_plugin("triage-plain", plugins::INCIDENT_TRIAGE, &triage("", ""));
    env.install_plugin(
        "triage-unconfigured",
        plugins::INCIDENT_TRIAGE,
        &triage(
            "llm = { provider = \"absent\", models = [\"gpt-4o-mini\"] }",
            "llm_model = \"gpt-4o-mini\"",
        ),
    );
    let host = env.start().await;
    let alert = json!({
        "type": "alert.firing",
        "fingerprint": "checkout-latency-p99",
        "status": "firing",
        "severity": "critical",
        "service": "checkout",
        "summary": "p99 latency above 2s for 5m",
    });
    let id = post_id(&host, "alert_brief", alert).await;
    host.wait_status(&id, "done", WAIT).await;
    let opened = |plugin: &'static str| {
        let host = &host;
        async move {
            let events = wait_until(&format!("{plugin} opens an incident"), WAIT, || async {
                let e: Vec<Value> = host
                    .all_events()
                    .await
                    .into_iter()
                    .filter(|e| e["source"] == format!("plugin:{plugin}"))
                    .collect();
                (!e.is_empty()).then_some(e)
            })
            .await;
            let full = host.event(events[0]["id"].as_str().unwrap()).await;
            serde_json::from_str::<Value>(full["body"].as_str().unwrap()).unwrap()
        }
    };
    let with_llm = opened("incident-triage").await;
    assert_eq!(
        (with_llm["brief"].as_str(), with_llm["brief_by"].as_str()),
        (
            Some("Checkout is slow for every customer: p99 above 2 s."),
            Some("llm")
        )
    );
    assert_eq!(
        prompt(&server.requests()[0]).lines().next(),
        Some("service: checkout")
    );
    for plugin in ["triage-plain", "triage-unconfigured"] {
        let plain = opened(plugin).await;
        assert_eq!(
            (plain["brief"].as_str(), plain["brief_by"].as_str()),
            (
                Some("[critical] checkout: p99 latency above 2s for 5m"),
                Some("alert")
            ),
            "{plugin}"
        );
    }
    assert_eq!(
        server.requests().len(),
        1,
        "only the granted, configured one asked"
    );
    host.stop().await;
}
