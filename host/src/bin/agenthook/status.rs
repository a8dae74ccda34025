//! `agenthook status [--watch]`: a terminal summary of `GET /admin/v1/status` — per
//! source rates and refusals, per plugin queue, success rate, latency and dead letters.
//!
//! Rates come from two samples `--interval` apart (the host keeps totals since start),
//! so even a one-shot `status` shows what is happening now, not an average since boot.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::client::AdminClient;

/// Run the status view: one report after one interval, or with `watch` a report every
/// interval until interrupted.
pub async fn run(
    client: &AdminClient,
    watch: bool,
    interval: Duration,
    json: bool,
) -> anyhow::Result<()> {
    if json {
        let now = client.get("/admin/v1/status").await?;
        println!("{}", serde_json::to_string_pretty(&now)?);
        return Ok(());
    }
    let mut before = client.get("/admin/v1/status").await?;
    let mut taken = Instant::now();
    loop {
        tokio::time::sleep(interval).await;
        let now = client.get("/admin/v1/status").await?;
        let elapsed = taken.elapsed();
        taken = Instant::now();
        let text = render(&before, &now, elapsed);
        if watch {
            // Home the cursor and clear the screen, then draw: refreshed in place.
            print!("\x1b[H\x1b[2J{text}");
            use std::io::Write;
            std::io::stdout().flush()?;
        } else {
            print!("{text}");
            return Ok(());
        }
        before = now;
    }
}

/// The `--interval` flag: seconds, from 0.1 to an hour.
pub fn parse_interval(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if (0.1..=3600.0).contains(&v) => Ok(v),
        _ => Err("a number of seconds from 0.1 to 3600".into()),
    }
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// Per second between two counter samples.
fn rate(before: &Value, now: &Value, secs: f64) -> f64 {
    u(now).saturating_sub(u(before)) as f64 / secs.max(0.001)
}

fn find<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array()
        .and_then(|l| l.iter().find(|x| x["name"] == name))
        .unwrap_or(&Value::Null)
}

fn human_ms(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{}m{}s", ms / 60_000, ms % 60_000 / 1000),
        _ => format!("{}h{}m", ms / 3_600_000, ms % 3_600_000 / 60_000),
    }
}

/// The report for the window between `before` and `now`.
pub fn render(before: &Value, now: &Value, window: Duration) -> String {
    let secs = window.as_secs_f64();
    let mut out = String::new();
    let up = u(&now["now_ms"]).saturating_sub(u(&now["started_at_ms"]));
    let ready = if now["ready"].as_bool() == Some(true) {
        "ready"
    } else {
        "NOT READY (see /readyz)"
    };
    let _ = writeln!(
        out,
        "agenthook  up {}  {}  store {:.1} MiB, {} events  (rates over {:.1} s)",
        human_ms(up),
        ready,
        u(&now["store"]["size_bytes"]) as f64 / 1048576.0,
        u(&now["store"]["events"]),
        secs
    );
    let unknown = u(&now["unknown_source_requests"]);
    if unknown > 0 {
        let _ = writeln!(
            out,
            "{unknown} requests to unconfigured sources since start"
        );
    }

    let _ = writeln!(
        out,
        "\n{:<16} {:>9} {:>9} {:>12} {:>9} {:>7} {:>9}  REFUSALS SINCE START",
        "SOURCE", "STORED/s", "REFUSED/s", "VERIFYFAIL/s", "STORED", "DUPES", "REFUSED"
    );
    for s in now["sources"].as_array().into_iter().flatten() {
        let name = s["name"].as_str().unwrap_or("?");
        let b = find(&before["sources"], name);
        let reasons: Vec<String> = s["rejected_by_reason"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let _ = writeln!(
            out,
            "{:<16} {:>9.1} {:>9.1} {:>12.1} {:>9} {:>7} {:>9}  {}",
            name,
            rate(&b["stored"], &s["stored"], secs),
            rate(&b["rejected"], &s["rejected"], secs),
            rate(
                &b["verification_failures"],
                &s["verification_failures"],
                secs
            ),
            u(&s["stored"]),
            u(&s["duplicates"]),
            u(&s["rejected"]),
            reasons.join(" ")
        );
    }

    let _ = writeln!(
        out,
        "\n{:<16} {:<12} {:>7} {:>6} {:>8} {:>5} {:>10} {:>7} {:>8} {:>7} {:>7}",
        "PLUGIN",
        "VERSION",
        "PENDING",
        "LEASED",
        "RETRYING",
        "DEAD",
        "OLDESTDUE",
        "DONE/s",
        "SUCCESS",
        "P50",
        "P99"
    );
    for p in now["plugins"].as_array().into_iter().flatten() {
        let name = p["name"].as_str().unwrap_or("?");
        let b = find(&before["plugins"], name);
        let version = match p["version"].as_str() {
            Some(v) => v.get(..12).unwrap_or(v).to_string(),
            None => "(removed)".to_string(),
        };
        // Success over the window when it saw attempts, else since start.
        let window: Vec<u64> = ["attempts_done", "attempts_retry", "attempts_dead"]
            .iter()
            .map(|k| u(&p[*k]).saturating_sub(u(&b[*k])))
            .collect();
        let total: Vec<u64> = ["attempts_done", "attempts_retry", "attempts_dead"]
            .iter()
            .map(|k| u(&p[*k]))
            .collect();
        let pick = if window.iter().sum::<u64>() > 0 {
            &window
        } else {
            &total
        };
        let attempts: u64 = pick.iter().sum();
        let success = if attempts == 0 {
            "-".to_string()
        } else {
            format!("{:.1}%", pick[0] as f64 * 100.0 / attempts as f64)
        };
        let ms = |v: &Value| v.as_u64().map_or("-".to_string(), human_ms);
        let q = &p["queue"];
        let _ = writeln!(
            out,
            "{:<16} {:<12} {:>7} {:>6} {:>8} {:>5} {:>10} {:>7.1} {:>8} {:>7} {:>7}",
            name,
            version,
            u(&q["pending"]),
            u(&q["leased"]),
            u(&q["retrying"]),
            u(&q["dead"]),
            ms(&p["oldest_due_age_ms"]),
            rate(&b["attempts_done"], &p["attempts_done"], secs),
            success,
            ms(&p["latency_p50_ms"]),
            ms(&p["latency_p99_ms"]),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample(stored: u64, done: u64, retry: u64) -> Value {
        json!({
            "now_ms": 10_000, "started_at_ms": 0, "ready": true,
            "unknown_source_requests": 0,
            "store": {"size_bytes": 1048576, "events": stored},
            "sources": [{"name": "stripe", "stored": stored, "duplicates": 1, "challenges": 0,
                         "rejected": 2, "verification_failures": 2,
                         "rejected_by_reason": {"signature_mismatch": 2}}],
            "plugins": [{"name": "tally", "loaded": true, "version": "0123456789abcdef",
                         "queue": {"pending": 3, "leased": 1, "retrying": 0, "dead": 4},
                         "oldest_due_age_ms": 1500,
                         "attempts_done": done, "attempts_retry": retry, "attempts_dead": 0,
                         "latency_samples": 5, "latency_p50_ms": 12, "latency_p99_ms": 80}]
        })
    }

    #[test]
    fn rates_come_from_the_window_and_totals_from_now() {
        let text = render(
            &sample(100, 50, 0),
            &sample(120, 68, 2),
            Duration::from_secs(2),
        );
        let source = text.lines().find(|l| l.starts_with("stripe")).unwrap();
        let cols: Vec<&str> = source.split_whitespace().collect();
        assert_eq!(cols[1], "10.0", "{text}"); // 20 stored in 2 s
        assert_eq!(cols[4], "120");
        assert!(source.ends_with("signature_mismatch=2"));
        let plugin = text.lines().find(|l| l.starts_with("tally")).unwrap();
        let cols: Vec<&str> = plugin.split_whitespace().collect();
        assert_eq!(
            cols,
            [
                "tally",
                "0123456789ab",
                "3",
                "1",
                "0",
                "4",
                "1.5s",
                "9.0",
                "90.0%",
                "12ms",
                "80ms"
            ],
            "{text}"
        );
        assert!(text.starts_with("agenthook  up 10.0s  ready  store 1.0 MiB, 120 events"));
    }
}
