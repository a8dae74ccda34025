#!/usr/bin/env bash
# Run the whole test suite on a fresh machine (Rust + rustup present, nothing else):
# installs the wasm target, builds the plugins in plugins/ and tests/plugins/ (the test
# build script does that), the host, and runs every unit and end-to-end test.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

rustup target add wasm32-wasip2
# The email tests talk to a real SMTP server process (tests/e2e/smtp_sink.py); the
# metrics test parses /metrics with the Prometheus project's own Python parser.
# The senders tests (tests/e2e/standards.rs) sign with the senders' own libraries:
# twilio's RequestValidator, the CloudEvents SDK, the A2A SDK (with a PyJWT token).
python3 -m pip install --quiet aiosmtpd prometheus-client twilio cloudevents a2a-sdk pyjwt cryptography
cargo test --workspace "$@"
