//! End-to-end tests: one binary, split by topic. Each test starts the real host (in
//! process through `agenthook::run`, or the real binary) on loopback with a temp data
//! dir and real plugin components built from `plugins/`.

mod delivery;
mod faults;
mod foundation;
mod hardening;
mod harness;
mod ingress_bounds;
mod lifecycle;
mod observability;
mod secrets;
mod senders;
mod servers;
mod standards;
mod tools;
