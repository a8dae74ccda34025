#!/usr/bin/env bash
# Build the example `tally` plugin, install it into ./plugins.d, and start the host with
# its defaults (ingress on 127.0.0.1:8080, admin on 127.0.0.1:9090). Extra arguments go
# to `agenthook serve`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

rustup target add wasm32-wasip2
cargo build --release --manifest-path plugins/Cargo.toml --target wasm32-wasip2 \
    --target-dir target/plugins

mkdir -p plugins.d
cp target/plugins/wasm32-wasip2/release/tally.wasm plugins/tally/tally.toml plugins.d/

exec cargo run --release -p agenthook -- serve "$@"
