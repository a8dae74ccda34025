//! Plugin management: the registry of loaded plugins (what ingress routes to and the
//! dispatcher runs), hot deploy and removal (`deploy`), and the `plugins_dir` watcher
//! (`watch`), the ordering lanes of plugins that declare `[ordering]` (`ordering`), and
//! on a store several hosts share, applying what any host deployed (`cluster`). It
//! compiles through `runtime` and hands each plugin's grants to `tools`;
//! it never runs a handler itself, beyond the trial instantiation a deploy requires.

pub mod cluster;
pub mod deploy;
pub mod ordering;
mod registry;
pub mod watch;

pub use registry::{Plugin, PluginError, Registry, build_plugin, load_dir, manifest_digest};
