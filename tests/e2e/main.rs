//! End-to-end tests: one binary, split by topic. Each test starts the real host (in
//! process through `agenthook::run`, or the real binary) on loopback with a temp data
//! dir and real plugin components built from `plugins/`.

mod cluster;
mod compat;
mod console;
mod delivery;
mod faults;
mod foundation;
mod hardening;
mod harness;
mod ingress_bounds;
mod javascript;
mod journal;
mod lifecycle;
mod llm;
mod nats;
mod observability;
mod ordering;
mod python;
mod python_build;
mod scaffold;
mod secrets;
mod senders;
mod servers;
mod standards;
mod tools;
