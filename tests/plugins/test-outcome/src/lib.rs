//! `test-outcome` — TEST-ONLY plugin: ends each call the way its config says.
//!
//! Config: `outcome` = `ok` (default) | `retry` | `permanent` | `trap` (panics);
//! `succeed_on_attempt` = N returns `Ok` once `event.attempt >= N`; `retry_delay_ms` is
//! passed with a retry. Three kv records, each off by default so the plugin runs without
//! the kv grant: `record = "true"` writes `attempts/{event.id}` = the attempt number,
//! `count_runs = "true"` counts every call under `runs/{event.id}` (a count above 1 is a
//! duplicate delivery), and `record_headers = "true"` writes `headers/{event.id}` = the
//! names of the headers the plugin was handed, comma-separated in order.

use std::time::Duration;

use agenthook_sdk::{Event, HandlerError, config, kv, log};

fn handle(event: Event) -> Result<(), HandlerError> {
    let outcome = config::get("outcome").unwrap_or_else(|| "ok".to_owned());
    let succeed_on_attempt = config::get_parsed::<u32>("succeed_on_attempt")?;
    let retry_delay_ms = config::get_parsed::<u64>("retry_delay_ms")?;
    let attempt = event.attempt;

    log::info(format!(
        "test-outcome: event {} attempt {attempt}, outcome {outcome}",
        event.id
    ));
    if flag("record") {
        kv::set(&format!("attempts/{}", event.id), attempt.to_string())?;
    }
    if flag("record_headers") {
        let names: Vec<&str> = event.headers.iter().map(|(k, _)| k.as_str()).collect();
        kv::set(&format!("headers/{}", event.id), names.join(","))?;
    }
    if flag("count_runs") {
        let key = format!("runs/{}", event.id);
        let runs = match kv::get(&key)? {
            Some(bytes) => String::from_utf8_lossy(&bytes).parse::<u64>().unwrap_or(0),
            None => 0,
        };
        kv::set(&key, (runs + 1).to_string())?;
    }
    if succeed_on_attempt.is_some_and(|n| attempt >= n) {
        return Ok(());
    }

    match outcome.as_str() {
        "ok" => Ok(()),
        "retry" => {
            let reason = format!("test-outcome: retry requested on attempt {attempt}");
            Err(match retry_delay_ms {
                Some(ms) => HandlerError::retry_after(reason, Duration::from_millis(ms)),
                None => HandlerError::retry(reason),
            })
        }
        "permanent" => Err(HandlerError::permanent(format!(
            "test-outcome: permanent failure requested on attempt {attempt}"
        ))),
        "trap" => panic!("test-outcome: trap requested on attempt {attempt}"),
        other => Err(HandlerError::permanent(format!(
            "test-outcome: unknown outcome `{other}` (expected ok, retry, permanent or trap)"
        ))),
    }
}

fn flag(key: &str) -> bool {
    config::get(key).as_deref() == Some("true")
}

agenthook_sdk::plugin!(handle);
