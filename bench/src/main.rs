//! agenthook benchmarks. One module per scenario; each prints its figures as plain
//! lines so they can be pasted into notes.
//!
//! ```text
//! cargo run --release -p agenthook-bench -- overhead [--wasm PATH] [--iterations N]
//! cargo run --release -p agenthook-bench -- ingest [--quick] [--seconds N] [--size BYTES]
//! ```

mod ingest;
mod load;
mod overhead;

use std::process::ExitCode;

/// The scenarios this binary runs.
#[derive(Debug, Clone, Copy)]
enum Scenario {
    /// Per-delivery overhead (instantiate + call a trivial handler), pooling against
    /// wasmtime's default on-demand allocator; host RSS with 100 plugins loaded.
    Overhead,
    /// Durable ingest throughput and latency at several concurrencies, group commit
    /// against one commit per event.
    Ingest,
}

impl Scenario {
    const ALL: &[(&str, Scenario)] = &[
        ("overhead", Scenario::Overhead),
        ("ingest", Scenario::Ingest),
    ];

    fn parse(name: &str) -> Option<Scenario> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
    }
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let names: Vec<&str> = Scenario::ALL.iter().map(|(n, _)| *n).collect();
    let Some(scenario) = args.next().as_deref().and_then(Scenario::parse) else {
        eprintln!("usage: agenthook-bench <{}> [options]", names.join("|"));
        return ExitCode::from(64);
    };
    let rest: Vec<String> = args.collect();
    let result = match scenario {
        Scenario::Overhead => overhead::run(&rest),
        Scenario::Ingest => ingest::main(&rest),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("agenthook-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
