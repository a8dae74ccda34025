//! `test-ordered` — TEST-ONLY plugin: records, per ordering key, each attempt it runs.
//!
//! Body: `{"data": {"customer": KEY}, "seq": n, "delay_ms": d, "fail_first": bool,
//! "fail_always": bool}`. Each attempt sleeps `delay_ms`, then appends
//! `[seq, attempt, start_us, end_us, ok]` to the JSON array under `obs/{KEY}` in kv and
//! ends: a retry on attempt 1 with `fail_first`, on every attempt with `fail_always`,
//! `ok` otherwise. The read-modify-write of `obs/{KEY}` is only safe while one delivery
//! of a key runs at a time: an ordering violation shows up as a lost or misplaced entry.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agenthook_sdk::{Event, HandlerError, kv};
use serde::Deserialize;

#[derive(Deserialize)]
struct Body {
    data: Data,
    seq: u64,
    #[serde(default)]
    delay_ms: u64,
    #[serde(default)]
    fail_first: bool,
    #[serde(default)]
    fail_always: bool,
}

#[derive(Deserialize)]
struct Data {
    customer: String,
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

fn handle(event: Event) -> Result<(), HandlerError> {
    let body: Body = event.json()?;
    let start = now_us();
    let key = format!("obs/{}", body.data.customer);
    let mut seen: Vec<(u64, u32, u64, u64, bool)> = kv::get_json(&key)?.unwrap_or_default();
    std::thread::sleep(Duration::from_millis(body.delay_ms));
    let ok = !(body.fail_always || (body.fail_first && event.attempt == 1));
    seen.push((body.seq, event.attempt, start, now_us(), ok));
    kv::set_json(&key, &seen)?;
    if ok {
        Ok(())
    } else {
        Err(HandlerError::retry(format!(
            "test-ordered: injected retry of seq {} on attempt {}",
            body.seq, event.attempt
        )))
    }
}

agenthook_sdk::plugin!(handle);
