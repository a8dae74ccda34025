#!/usr/bin/env bash
# Build the example `tally` plugin, install it into ./plugins.d, build the host in release
# mode and start it with its defaults (ingress on 127.0.0.1:8080, admin on
# 127.0.0.1:9090, data in ./agenthook-data). Extra arguments go to `agenthook serve`.
# The README's "Try it" commands run the same binary, target/release/agenthook.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

rustup target add wasm32-wasip2
cargo build --release --manifest-path plugins/Cargo.toml --target wasm32-wasip2 \
    --target-dir target/plugins

mkdir -p plugins.d
cp target/plugins/wasm32-wasip2/release/tally.wasm plugins/tally/tally.toml plugins.d/

cargo build --release -p agenthook
bin="${CARGO_TARGET_DIR:-target}/release/agenthook"
echo "run-example: serving with $bin (the README's \"Try it\" runs it from $PWD)" >&2
exec "$bin" serve "$@"
