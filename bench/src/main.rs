//! agenthook benchmarks: one command runs every scenario of issues 8 and 12 against a
//! baseline measured in the same run and prints one Markdown table per scenario
//! (baseline and ratio in each row), the targets met or not, and writes the figures as
//! JSON.
//!
//! ```text
//! cargo run --release -p agenthook-bench -- all [--quick] [--json PATH] [options]
//! cargo run --release -p agenthook-bench -- ingest|e2e|latency|memory|history|abuse|console|ordering|python|cluster [options]
//! cargo run --release -p agenthook-bench -- overhead [--wasm PATH] [--iterations N]
//! ```
//!
//! The servers under test run as their own processes on loopback (`server`): the real
//! `agenthook` binary (built by the bench, `cargo build --release -p agenthook`) and a
//! plain hyper server (`plain`, this binary in `plain-server` mode). The load generator
//! (`load`) runs in this process, on the same cores. Scenarios: `ingest` (1), `e2e` (2),
//! `overhead` (3), `latency` (4), `memory` (5), `history` (6), `abuse` (7), `console`
//! (8, on its own), `ordering` (9), `python` (10), `cluster` (11, on its own); `all` runs
//! 1–7, 9 and 10 in the order 1, 4, 2, 3, 5, 6, 7, 9, 10 since later ones use the rates
//! of earlier ones.

mod abuse;
mod cluster;
mod console;
mod e2e;
mod history;
mod ingest;
mod latency;
mod load;
mod memory;
mod ordering;
mod overhead;
mod plain;
mod python;
mod report;
mod server;
mod suite;

use std::process::ExitCode;

use suite::Scenario;

const USAGE: &str = "\
usage: agenthook-bench <scenario> [options]

scenarios (each row: agenthook, its baseline in the same run, the ratio):
  all        every scenario below but console, in the order 1, 4, 2, 3, 5, 6, 7, 9, 10
  ingest     1. durable ingest vs a plain hyper server (closed loop; also vs one commit per event)
  e2e        2. ingest + dispatch to a no-op plugin until done: events/s, received→done p50/p99
  overhead   3. per-delivery overhead, pooling vs on-demand allocator; RSS of 100 idle plugins
             (in process; options: --wasm PATH, --iterations N — nothing else)
  delivery   only the per-delivery loop of one component (--wasm PATH [--iterations N]),
             memory_mb = 128: a target for a profiler
  latency    4. ingest latency at 50% and 90% of the max rate, open loop (p50/p99/p99.9)
  memory     5. RSS of the agenthook process: idle, 100 plugins loaded, at max load
  history    6. ingest rate with N events stored vs an empty store
  console    8. the web console's pages (events, dead letters, overview) with N events stored
             vs the admin API's JSON for the same query (--events N, default 1000000)
  ordering   9. a backlog drained by a plugin with [ordering]: 20 keys vs one key
  abuse      7. a well-behaved sender's p99 (200 ev/s) idle vs with 4,000 slow senders and vs
             64 CPU-spinning deliveries in flight; host RSS with the slow senders (issue 12)
  python    10. a Python no-op plugin beside the Rust no-op: per delivery, end to end,
             10 plugins loaded (start → ready, RSS); needs componentize-py (issue 15)
  cluster   11. the store on a 3-node NATS JetStream cluster (needs nats-server): one host's
             ingest on NATS vs redb; one vs three hosts on one deployment (share, latency);
             not part of `all`

options (all scenarios but `overhead`):
  --quick                  every scenario in under 2 minutes: 1 s per point, c=64 only,
                           100,000 stored events instead of 1,000,000
  --seconds N              measured seconds per load point (default 5; --quick 1)
  --size BYTES             event body size (default 1024)
  --concurrency 1,16,64    closed-loop concurrencies of `ingest` (default 1,16,64,256)
  --events N               stored events for `history` and `console` (default 1000000)
  --plugin-concurrency N   limits.max_concurrency of the no-op plugin in `e2e` (default 64)
  --repeats N              measurements of the points behind a ratio target (ingest at c=64,
                           history), alternating, median kept (default 3; --quick 1)
  --iterations N           calls per allocator in the per-delivery scenario (default 20000)
  --json PATH              where to write the JSON (default target/bench/agenthook-bench.json)
  --log FILTER             AGENTHOOK_LOG for the hosts (default: unset, the host logs at info)
  --agenthook PATH         use this agenthook binary instead of building it
";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let command = args.next().unwrap_or_default();
    let rest: Vec<String> = args.collect();
    let result = match command.as_str() {
        "all" => suite::run("all", &suite::ALL, &rest),
        "ingest" => suite::run("ingest", &[Scenario::Ingest], &rest),
        "e2e" => suite::run("e2e", &[Scenario::EndToEnd], &rest),
        "latency" => suite::run("latency", &[Scenario::Latency], &rest),
        "memory" => suite::run("memory", &[Scenario::Memory], &rest),
        "history" => suite::run("history", &[Scenario::History], &rest),
        "abuse" => suite::run("abuse", &[Scenario::Abuse], &rest),
        "cluster" => suite::run("cluster", &[Scenario::Cluster], &rest),
        "console" => suite::run("console", &[Scenario::Console], &rest),
        "ordering" => suite::run("ordering", &[Scenario::Ordering], &rest),
        "python" => suite::run("python", &[Scenario::Python], &rest),
        // The yardstick of runtime work: its options and output lines stay as they are.
        "overhead" => overhead::run(&rest),
        // Per-delivery timing of one component only (with memory_mb = 128): a target for
        // a profiler, e.g. `perf record -g agenthook-bench delivery --wasm X.wasm`.
        "delivery" => overhead::delivery_only(&rest),
        // The baseline server process, started by `server::Server::plain`.
        "plain-server" => plain::main(),
        "help" | "--help" | "-h" => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprint!("{USAGE}");
            return ExitCode::from(64);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("agenthook-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
