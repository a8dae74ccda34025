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
# The console's browser test drives Debian's chromium with Playwright for Python
# (Playwright downloads no browser). This script installs both, so the test is required
# here; run `cargo test` directly to have it skipped, with a notice, where chromium is
# missing.
python3 -m pip install --quiet playwright
command -v chromium >/dev/null || { apt-get update && apt-get install -y chromium; }
export AGENTHOOK_REQUIRE_BROWSER=1
# Python plugins (tests/e2e/python.rs, plugins/tally-py) are built with componentize-py;
# the tests cache each built component in target/python-plugins by content hash.
python3 -m pip install --quiet componentize-py==0.25.1
# The JavaScript plugin (tests/e2e/javascript.rs, plugins/counter-js) is built with
# componentize-js, which the test installs with npm (Node.js 18+) into target/js-plugins.
command -v npm >/dev/null || { apt-get update && apt-get install -y nodejs npm; }
# The NATS backend's tests start real nats-server processes (Debian's package, 2.9).
command -v nats-server >/dev/null || { apt-get update && apt-get install -y nats-server; }
cargo test --workspace "$@"
if [ $# -eq 0 ]; then
    # The event path again with the store on NATS JetStream: one 3-node cluster on
    # loopback, shared by these tests.
    AGENTHOOK_TEST_STORE=nats cargo test --workspace --test e2e -- foundation:: delivery:: tools:: journal:: ordering::
fi
# The example plugins' unit tests: the handlers run on the host target against
# agenthook_sdk::testing (no wasm, no host).
host_target="$(rustc -vV | sed -n 's/^host: //p')"
cargo test --manifest-path plugins/Cargo.toml --target "$host_target" --target-dir target/plugins
