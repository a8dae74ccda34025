//! `test-misbehave` — TEST-ONLY plugin: misbehaves the way its `mode` config says, so
//! the tests can check that the host contains each kind of misbehaviour.
//!
//! Modes: `loop` (spins forever), `membomb` (allocates until its memory limit),
//! `stack` (unbounded recursion), `logflood` (tens of thousands of log lines and
//! megabytes on stdout/stderr, then succeeds), `giant-error` (fails with a 4 MiB error
//! string), `ungranted` (writes kv without the grant), `sleep` (waits `sleep_ms` on
//! the wall clock without using CPU), `toolflood` (calls kv as fast as it can, to hit
//! `limits.tool_calls_per_second`), `ok` (default: succeeds).

use std::hint::black_box;
use std::io::Write as _;
use std::time::Duration;

use agenthook_sdk::{Event, HandlerError, config, kv, log};

fn handle(event: Event) -> Result<(), HandlerError> {
    let mode = config::get("mode").unwrap_or_else(|| "ok".to_owned());
    match mode.as_str() {
        "ok" => Ok(()),
        "loop" => {
            let mut n: u64 = 0;
            loop {
                n = black_box(n.wrapping_add(1));
            }
        }
        "membomb" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                // Touch every page so the memory is really used, not just reserved.
                hoard.push(vec![0xA5; 1 << 20]);
                black_box(&hoard);
            }
        }
        "stack" => {
            black_box(recurse(black_box(1)));
            Ok(())
        }
        "logflood" => {
            for i in 0..50_000u32 {
                log::info(format!("flood line {i} of event {}", event.id));
            }
            let line = "x".repeat(1023) + "\n";
            let mut out = std::io::stdout().lock();
            let mut err = std::io::stderr().lock();
            for _ in 0..2048 {
                let _ = out.write_all(line.as_bytes());
                let _ = err.write_all(line.as_bytes());
            }
            Ok(())
        }
        "giant-error" => Err(HandlerError::permanent("E".repeat(4 << 20))),
        "toolflood" => {
            // Calls a cheap tool as fast as it can; the host's rate limit answers
            // `limited`, which `?` turns into a retryable failure.
            for _ in 0..1_000_000u32 {
                black_box(kv::get("flood")?);
            }
            Ok(())
        }
        "ungranted" => {
            kv::set("forbidden", b"1")?;
            Ok(())
        }
        "sleep" => {
            let ms = config::get_parsed::<u64>("sleep_ms")?.unwrap_or(60_000);
            std::thread::sleep(Duration::from_millis(ms));
            Ok(())
        }
        other => Err(HandlerError::permanent(format!(
            "test-misbehave: unknown mode `{other}`"
        ))),
    }
}

/// Recurses until the wasm call stack is exhausted. The frame is kept small: a large
/// one would live on the guest's in-memory shadow stack and overflow that first (which
/// shows as an out-of-bounds access, not a stack overflow).
#[allow(unconditional_recursion)]
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    black_box(recurse(black_box(depth + 1))).wrapping_add(depth)
}

agenthook_sdk::plugin!(handle);
