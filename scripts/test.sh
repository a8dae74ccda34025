#!/usr/bin/env bash
# Run the whole test suite on a fresh machine (Rust + rustup present, nothing else):
# installs the wasm target, builds the plugins in plugins/ and tests/plugins/ (the test
# build script does that), the host, and runs every unit and end-to-end test.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

rustup target add wasm32-wasip2
# The email tests talk to a real SMTP server process (tests/e2e/smtp_sink.py); the
# metrics test parses /metrics with the Prometheus project's own Python parser.
python3 -m pip install --quiet aiosmtpd prometheus-client
# The NATS backend's tests start real nats-server processes (Debian's package, 2.9).
command -v nats-server >/dev/null || { apt-get update && apt-get install -y nats-server; }
cargo test --workspace "$@"
if [ $# -eq 0 ]; then
    # The event path again with the store on NATS JetStream: one 3-node cluster on
    # loopback, shared by these tests; then the multi-host cluster tests.
    AGENTHOOK_TEST_STORE=nats cargo test --workspace --test e2e -- foundation:: delivery:: tools::
fi
