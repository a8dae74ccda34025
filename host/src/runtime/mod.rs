//! The WebAssembly runtime: compiles plugin components, and runs one handler call per
//! delivery in a fresh, sandboxed instance.
//!
//! One `Engine` with the pooling allocator and epoch interruption serves every plugin.
//! A plugin is compiled and linked once (`HandlerPre`); each delivery instantiates it
//! from the pool into a new `Store` that holds only what the manifest grants: no
//! filesystem, environment, sockets or clocks beyond WASI's defaults, a memory limit,
//! a CPU and a wall-clock deadline, and the host tools (`tools`).
//!
//! Loading validates before anything can run: the bytes must be a component, compile,
//! import only what the host provides, export the `handler` world, and instantiate
//! within the manifest's memory limit. Compiled code is cached on disk (`cache`).

pub mod cache;
mod demand;
pub mod output;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{
    Config as EngineConfig, Engine, InstanceAllocationStrategy, PoolingAllocationConfig,
    ResourceLimiter, Store, UpdateDeadline,
};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::config::manifest::{MAX_MEMORY_MB, Manifest};
use crate::tools::Tools;
use crate::wit;
use output::CapturedOutput;

pub use crate::wit::{HandlerError, WitEvent};

/// How often the epoch advances; the CPU deadline is counted in these ticks.
const EPOCH_TICK: Duration = Duration::from_millis(10);
/// Bytes of stdout+stderr kept per attempt.
const OUTPUT_CAP: usize = 16 * 1024;
/// Bytes of a handler's error text kept with the attempt; the rest is cut, with a note.
pub const MAX_ERROR_BYTES: usize = 4096;
/// The largest component the host accepts.
pub const MAX_COMPONENT_BYTES: usize = 32 << 20;
/// Bytes at the bottom of each linear memory slot that are reset in place and kept
/// resident between instances: a Rust guest's 1 MiB stack plus its data and first
/// heap pages. Only pages a guest dirtied stay resident, so the cost is bounded by
/// (slots in use + wasmtime's 100 warm unused slots) × this, and is far lower in
/// practice (a no-op handler dirties a few dozen KiB).
const KEEP_RESIDENT_BYTES: usize = 2 << 20;
/// Freed instance slots returned to the pool together (see `decommit_batch_size`).
const DECOMMIT_BATCH: usize = 32;
/// Deliveries that may run at once across all plugins; kept below the instance pool
/// size so instantiation never fails for lack of a slot.
pub const MAX_INSTANCES: u32 = 256;

/// A plugin could not be loaded. The message says what is wrong with the component.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("the component is {size} bytes; the largest accepted is {MAX_COMPONENT_BYTES}")]
    TooLarge { size: usize },
    #[error(
        "this is a core WebAssembly module, not a component: build the plugin for the wasm32-wasip2 target (or wrap it with `wasm-tools component new`)"
    )]
    CoreModule,
    #[error("not a valid WebAssembly component: {0:#}")]
    Compile(wasmtime::Error),
    #[error("the component imports something this host does not provide: {0:#}")]
    Imports(wasmtime::Error),
    #[error(
        "the component does not export the agenthook:plugin `handler` world (`handle: func(event) -> result<_, handler-error>`): {0:#}"
    )]
    Exports(wasmtime::Error),
    #[error("the component cannot be instantiated under its manifest's limits: {0}")]
    Instantiate(String),
}

/// Which instance allocator the engine uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocator {
    /// Pre-reserved slots with copy-on-write memory images: what the host runs with.
    Pooling,
    /// Wasmtime's default: map fresh memory for every instance. For comparison only.
    OnDemand,
}

/// How to build a [`Runtime`].
///
/// ## Defaults
///
/// Pooling allocator; no compile cache (every load compiles); one guest thread per core
/// but one (at least one).
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    pub allocator: Allocator,
    /// Directory of the on-disk compile cache; `None` compiles every time.
    pub compile_cache: Option<PathBuf>,
    /// Threads that run plugin code (0: one per core but one, so a core always stays
    /// for ingress, the admin API and the store writer; at least one).
    pub guest_threads: usize,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            allocator: Allocator::Pooling,
            compile_cache: None,
            guest_threads: 0,
        }
    }
}

/// How much lower than the host's threads the guest threads are scheduled (a `nice`
/// increment): a busy guest takes the CPU the host's own threads leave, not theirs.
const GUEST_NICE: i32 = 10;

/// The shared engine and linker, and the threads plugin code runs on.
pub struct Runtime {
    engine: Engine,
    linker: Linker<Invocation>,
    cache: Option<cache::CompileCache>,
    stop_ticker: Arc<AtomicBool>,
    /// Plugin code runs here, never on the threads that serve ingress, the admin API
    /// and the store writer: a guest spinning until its CPU deadline slows only other
    /// guests. Taken (and shut down without waiting) when the runtime drops.
    guests: Option<tokio::runtime::Runtime>,
    guests_handle: tokio::runtime::Handle,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Runtime")
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
        if let Some(guests) = self.guests.take() {
            guests.shutdown_background();
        }
    }
}

/// A compiled, linked plugin ready to instantiate, by the ABI version it was built
/// against.
enum Pre {
    /// `agenthook:plugin@0.2.x`, the current version.
    Current(wit::HandlerPre<Invocation>),
    /// `agenthook:plugin@0.1.x`: its tool calls are adapted (`tools::compat`).
    V0_1(wit::v0_1::HandlerPre<Invocation>),
}

impl Pre {
    async fn instantiate(&self, store: &mut Store<Invocation>) -> wasmtime::Result<Instance> {
        Ok(match self {
            Pre::Current(pre) => Instance::Current(pre.instantiate_async(store).await?),
            Pre::V0_1(pre) => Instance::V0_1(pre.instantiate_async(store).await?),
        })
    }
}

enum Instance {
    Current(wit::Handler),
    V0_1(wit::v0_1::Handler),
}

impl Instance {
    async fn handle(
        &self,
        store: &mut Store<Invocation>,
        event: WitEvent,
    ) -> wasmtime::Result<Result<(), HandlerError>> {
        match self {
            Instance::Current(h) => h.call_handle(store, &event).await,
            Instance::V0_1(h) => Ok(h
                .call_handle(store, &event.into())
                .await?
                .map_err(Into::into)),
        }
    }
}

/// The `agenthook:plugin` ABI version a component imports (`0.1` or `0.2`), from the
/// names of its imports; None when it imports no versioned agenthook interface.
fn abi_version(component: &Component, engine: &Engine) -> Result<Option<String>, LoadError> {
    let mut found: Option<String> = None;
    for (name, _) in component.component_type().imports(engine) {
        let Some(rest) = name.strip_prefix(wit::v0_1::PACKAGE_PREFIX) else {
            continue;
        };
        let Some((_, version)) = rest.split_once('@') else {
            continue;
        };
        let minor = version.splitn(3, '.').take(2).collect::<Vec<_>>().join(".");
        match &found {
            Some(seen) if *seen != minor => {
                return Err(LoadError::Imports(wasmtime::Error::msg(format!(
                    "the component imports agenthook:plugin at two versions ({seen} and {minor}); build it against one"
                ))));
            }
            _ => found = Some(minor),
        }
    }
    Ok(found)
}

/// A compiled, linked plugin ready to instantiate.
pub struct CompiledPlugin {
    pre: Pre,
    /// The `agenthook:plugin` version the component was built against (`0.1`, `0.2`).
    pub abi: &'static str,
    /// Hex SHA-256 of the component bytes: the plugin version recorded with attempts.
    pub version: String,
    /// Whether the code came from the compile cache, and how long loading took.
    pub origin: cache::Origin,
    pub load_time: Duration,
    /// What this version has done since it was loaded.
    pub stats: CallStats,
}

/// Counters of one loaded plugin version, updated by every call.
#[derive(Debug, Default)]
pub struct CallStats {
    pub calls: AtomicU64,
    pub in_flight: AtomicU64,
    pub done: AtomicU64,
    /// Handler-requested retries and permanent failures.
    pub handler_errors: AtomicU64,
    pub traps: AtomicU64,
    pub cpu_deadlines: AtomicU64,
    pub memory_limits: AtomicU64,
    pub timeouts: AtomicU64,
    pub total_micros: AtomicU64,
}

/// The state of one handler call. Holds nothing the manifest does not grant.
pub struct Invocation {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: Limiter,
    tools: Tools,
    /// Epoch ticks the guest has spent running, and the budget. A tick is counted when
    /// the guest is running as the epoch advances, so time in tool calls is not CPU.
    cpu_ticks: u64,
    cpu_budget_ticks: u64,
    cpu_exceeded: bool,
}

impl WasiView for Invocation {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Memory and table limits of one instance; remembers whether a limit was hit so the
/// trap can be reported as `memory_limit` rather than a bare trap.
struct Limiter {
    memory_bytes: usize,
    exceeded: bool,
    /// The largest linear memory size the instance asked for (granted or not).
    peak_bytes: usize,
}

const MAX_TABLE_ELEMENTS: usize = 100_000;

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.peak_bytes = self.peak_bytes.max(desired);
        if desired > self.memory_bytes {
            self.exceeded = true;
            wasmtime::bail!(
                "memory_limit: the plugin tried to grow its memory to {desired} bytes; its limit is {} bytes (limits.memory_mb)",
                self.memory_bytes
            );
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            self.exceeded = true;
            wasmtime::bail!(
                "memory_limit: the plugin tried to grow a table to {desired} elements; the limit is {MAX_TABLE_ELEMENTS}"
            );
        }
        Ok(true)
    }
}

/// How a handler call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallOutcome {
    Done,
    /// Retryable: a handler retry error, a trap, a deadline. `delay_ms` is the handler's
    /// requested delay, if any.
    Retry {
        reason: String,
        delay_ms: Option<u64>,
    },
    /// The handler said the event can never be handled.
    Permanent(String),
}

/// The result of one call, with what the plugin logged and printed.
#[derive(Debug)]
pub struct CallReport {
    pub outcome: CallOutcome,
    pub duration: Duration,
    pub logs: Vec<String>,
    /// The largest linear memory the instance asked for, in bytes (its high-water mark,
    /// or the refused size when it hit `limits.memory_mb`).
    pub memory_peak_bytes: u64,
    /// What kind of end it was: `ok`, `handler` (the handler returned an error),
    /// `trap`, `cpu_deadline`, `memory_limit` or `timeout`.
    pub kind: &'static str,
}

impl Runtime {
    /// The host's runtime: pooling allocator, no compile cache.
    pub fn new() -> wasmtime::Result<Runtime> {
        Self::with_options(&RuntimeOptions::default())
    }

    pub fn with_options(options: &RuntimeOptions) -> wasmtime::Result<Runtime> {
        let mut config = EngineConfig::new();
        config.epoch_interruption(true).memory_init_cow(true);
        // Plugins are wasip2 components called once per store; the component-model-async
        // machinery (task state, a worker fiber per store that must be resumed with an
        // error just to be disposed of when the store drops) is pure per-call overhead.
        config.concurrency_support(false);
        if options.allocator == Allocator::Pooling {
            let mut pool = PoolingAllocationConfig::new();
            pool.total_component_instances(1000)
                .total_core_instances(4000)
                .total_memories(1000)
                .total_tables(2000)
                .total_stacks(1000)
                .max_memory_size((MAX_MEMORY_MB as usize) << 20)
                // Reset a returned slot by rewriting only the pages the guest dirtied
                // (found with Linux's PAGEMAP_SCAN where available) and keep them
                // resident, instead of unmapping them and page-faulting them back on
                // the next delivery: the bulk of per-delivery cost otherwise.
                .pagemap_scan(wasmtime::Enabled::Auto)
                .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
                .table_keep_resident(64 << 10)
                // Return freed slots to the pool's free lists in batches: each return
                // takes the index allocators' locks and sets up per-shard buffers, a
                // fixed cost worth sharing. Slots are already reset when queued, and
                // an allocation that finds the pool empty flushes the queue first.
                .decommit_batch_size(DECOMMIT_BATCH);
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        let engine = Engine::new(&config)?;
        let cache = match &options.compile_cache {
            Some(dir) => Some(cache::CompileCache::new(dir, &engine).map_err(|e| {
                wasmtime::Error::msg(format!("compile cache {}: {e}", dir.display()))
            })?),
            None => None,
        };

        let mut linker = Linker::<Invocation>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wit::Handler::add_to_linker::<_, HasSelf<Tools>>(&mut linker, |s| &mut s.tools)?;
        wit::v0_1::Handler::add_to_linker::<_, HasSelf<Tools>>(&mut linker, |s| &mut s.tools)?;

        let stop_ticker = Arc::new(AtomicBool::new(false));
        let (ticker_engine, stop) = (engine.clone(), stop_ticker.clone());
        std::thread::Builder::new()
            .name("agenthook-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    ticker_engine.increment_epoch();
                }
            })?;
        let threads = match options.guest_threads {
            0 => {
                std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1))
            }
            n => n,
        };
        let guests = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("agenthook-guest")
            .on_thread_start(lower_priority)
            .enable_all()
            .build()?;
        Ok(Runtime {
            engine,
            linker,
            cache,
            stop_ticker,
            guests_handle: guests.handle().clone(),
            guests: Some(guests),
        })
    }

    /// The threads plugin code runs on: spawn each handler call here.
    pub fn guests(&self) -> &tokio::runtime::Handle {
        &self.guests_handle
    }

    /// The compile cache, if this runtime has one.
    pub fn compile_cache(&self) -> Option<&cache::CompileCache> {
        self.cache.as_ref()
    }

    /// Compile (or load from the cache) and link a component, checking that it imports
    /// only what the host provides and exports the `handler` world. CPU-heavy: call it
    /// off the async executor.
    pub fn compile(&self, wasm: &[u8]) -> Result<CompiledPlugin, LoadError> {
        let started = Instant::now();
        if wasm.len() > MAX_COMPONENT_BYTES {
            return Err(LoadError::TooLarge { size: wasm.len() });
        }
        // `\0asm` then a version: 1 for a core module; components use another layer.
        if wasm.starts_with(b"\0asm\x01\0\0\0") {
            return Err(LoadError::CoreModule);
        }
        let version = content_hash(wasm);
        let (component, origin) = match &self.cache {
            Some(cache) => cache.load_or_compile(&self.engine, wasm, &version),
            None => Component::new(&self.engine, wasm).map(|c| (c, cache::Origin::Compiled)),
        }
        .map_err(LoadError::Compile)?;
        let abi = abi_version(&component, &self.engine)?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(LoadError::Imports)?;
        let (pre, abi) = match abi.as_deref() {
            Some("0.1") => (
                Pre::V0_1(wit::v0_1::HandlerPre::new(pre).map_err(LoadError::Exports)?),
                "0.1",
            ),
            _ => (
                Pre::Current(wit::HandlerPre::new(pre).map_err(LoadError::Exports)?),
                "0.2",
            ),
        };
        Ok(CompiledPlugin {
            pre,
            abi,
            version,
            origin,
            load_time: started.elapsed(),
            stats: CallStats::default(),
        })
    }

    /// Instantiate the plugin once, without calling it, under the manifest's limits:
    /// catches a component whose initial memory or start-up code does not fit them
    /// before it is swapped in.
    pub async fn trial_instantiate(
        &self,
        plugin: &CompiledPlugin,
        manifest: &Manifest,
        tools: Tools,
    ) -> Result<(), LoadError> {
        let mut store = self.new_store(manifest, tools, WasiCtx::builder().build());
        let timeout = Duration::from_millis(manifest.limits.timeout_ms);
        match tokio::time::timeout(timeout, plugin.pre.instantiate(&mut store)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(LoadError::Instantiate(classify_trap(
                &e,
                store.data(),
                manifest,
            ))),
            Err(_) => Err(LoadError::Instantiate(format!(
                "timeout: instantiation ran past limits.timeout_ms ({} ms)",
                manifest.limits.timeout_ms
            ))),
        }
    }

    /// A store for one instance, holding the manifest's limits and the tools.
    fn new_store(&self, manifest: &Manifest, tools: Tools, wasi: WasiCtx) -> Store<Invocation> {
        let budget = (manifest.limits.timeout_ms / EPOCH_TICK.as_millis() as u64).max(1);
        let mut store = Store::new(
            &self.engine,
            Invocation {
                wasi,
                table: ResourceTable::new(),
                limiter: Limiter {
                    memory_bytes: (manifest.limits.memory_mb as usize) << 20,
                    exceeded: false,
                    peak_bytes: 0,
                },
                tools,
                cpu_ticks: 0,
                cpu_budget_ticks: budget,
                cpu_exceeded: false,
            },
        );
        store.limiter(|s| &mut s.limiter);
        // Every tick spent running guest code counts against the CPU budget; between
        // ticks the guest yields so one busy plugin cannot hold an executor thread.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut ctx| {
            let s = ctx.data_mut();
            s.cpu_ticks += 1;
            if s.cpu_ticks > s.cpu_budget_ticks {
                s.cpu_exceeded = true;
                return Ok(UpdateDeadline::Interrupt);
            }
            Ok(UpdateDeadline::Yield(1))
        });
        store
    }

    /// Run the plugin's handler once, in a fresh instance, under the manifest's limits.
    pub async fn call(
        &self,
        plugin: &CompiledPlugin,
        manifest: &Manifest,
        tools: Tools,
        event: WitEvent,
    ) -> CallReport {
        let started = Instant::now();
        let stdout = CapturedOutput::new(OUTPUT_CAP);
        let stderr = CapturedOutput::new(OUTPUT_CAP);
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .build();
        let timeout = Duration::from_millis(manifest.limits.timeout_ms);
        let logs = tools.logs();
        let stats = &plugin.stats;
        stats.calls.fetch_add(1, Ordering::Relaxed);
        stats.in_flight.fetch_add(1, Ordering::Relaxed);
        let mut store = self.new_store(manifest, tools, wasi);

        let run = async {
            let instance = plugin.pre.instantiate(&mut store).await?;
            instance.handle(&mut store, event).await
        };
        let run = demand::Demand::new(run);
        let demand = run.clock();
        let result = tokio::time::timeout(timeout, run).await;
        let counter = |c: &AtomicU64| {
            c.fetch_add(1, Ordering::Relaxed);
        };
        let (kind, outcome) = match result {
            Err(_) => {
                // The wall deadline passed. A guest that spent most of it computing (or
                // ready to, waiting only for a CPU on a busy host) is reported as the CPU
                // hog it is; otherwise the time went to tool calls or sleeps.
                let wanted_ms = demand.wanted_ms();
                let (kind, reason) = if wanted_ms * 2 >= manifest.limits.timeout_ms {
                    counter(&stats.cpu_deadlines);
                    (
                        "cpu_deadline",
                        format!(
                            "cpu_deadline: the handler computed for ~{wanted_ms} ms without finishing (limits.timeout_ms = {} ms)",
                            manifest.limits.timeout_ms
                        ),
                    )
                } else {
                    counter(&stats.timeouts);
                    (
                        "timeout",
                        format!(
                            "timeout: the handler ran past limits.timeout_ms ({} ms); ~{wanted_ms} ms of it computing, the rest waiting (tool calls, sleeps)",
                            manifest.limits.timeout_ms
                        ),
                    )
                };
                let outcome = CallOutcome::Retry {
                    reason,
                    delay_ms: None,
                };
                (kind, outcome)
            }
            Ok(Ok(Ok(()))) => {
                counter(&stats.done);
                ("ok", CallOutcome::Done)
            }
            Ok(Ok(Err(HandlerError::Retry(r)))) => {
                counter(&stats.handler_errors);
                let outcome = CallOutcome::Retry {
                    reason: cap_error(format!("handler: {}", r.reason)),
                    delay_ms: r.delay_ms,
                };
                ("handler", outcome)
            }
            Ok(Ok(Err(HandlerError::Permanent(reason)))) => {
                counter(&stats.handler_errors);
                let outcome = CallOutcome::Permanent(cap_error(format!("handler: {reason}")));
                ("handler", outcome)
            }
            Ok(Err(trap)) => {
                let state = store.data();
                let (kind, count) = if state.cpu_exceeded {
                    ("cpu_deadline", &stats.cpu_deadlines)
                } else if state.limiter.exceeded {
                    ("memory_limit", &stats.memory_limits)
                } else {
                    ("trap", &stats.traps)
                };
                counter(count);
                let outcome = CallOutcome::Retry {
                    reason: cap_error(classify_trap(&trap, state, manifest)),
                    delay_ms: None,
                };
                (kind, outcome)
            }
        };
        let memory_peak_bytes = store.data().limiter.peak_bytes as u64;
        drop(store);
        stats.in_flight.fetch_sub(1, Ordering::Relaxed);
        stats
            .total_micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);

        let mut lines = logs.take();
        for (stream, out) in [("stdout", &stdout), ("stderr", &stderr)] {
            let (captured, dropped) = out.lines();
            lines.extend(captured.into_iter().map(|l| format!("[{stream}] {l}")));
            if dropped > 0 {
                lines.push(format!(
                    "[{stream}] … {dropped} more bytes dropped (cap {OUTPUT_CAP})"
                ));
            }
        }
        CallReport {
            outcome,
            duration: started.elapsed(),
            logs: lines,
            memory_peak_bytes,
            kind,
        }
    }
}

/// Schedule the calling thread below the host's own (Linux: a thread's nice value is
/// its own). Best effort: where it cannot be set, guests still run on threads apart.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        let tid = rustix::thread::gettid();
        if let Err(e) = rustix::process::setpriority_process(Some(tid), GUEST_NICE) {
            tracing::debug!(error = %e, "cannot lower the priority of a guest thread");
        }
    }
}

/// Hex SHA-256 of a component's bytes: its version.
pub fn content_hash(wasm: &[u8]) -> String {
    hex::encode(Sha256::digest(wasm))
}

/// The reason of a call or instantiation that trapped: `cpu_deadline: …`,
/// `memory_limit: …` or `trap: …`.
fn classify_trap(trap: &wasmtime::Error, state: &Invocation, manifest: &Manifest) -> String {
    if state.cpu_exceeded {
        format!(
            "cpu_deadline: the handler used more than {} ms of CPU (limits.timeout_ms)",
            manifest.limits.timeout_ms
        )
    } else if state.limiter.exceeded {
        format!("{:#}", trap.root_cause())
    } else {
        format!("trap: {}", describe_trap(trap))
    }
}

/// Cut an error text to [`MAX_ERROR_BYTES`] (on a char boundary), noting how much went.
pub fn cap_error(mut text: String) -> String {
    if text.len() <= MAX_ERROR_BYTES {
        return text;
    }
    let total = text.len();
    let mut cut = MAX_ERROR_BYTES;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.truncate(cut);
    text.push_str(&format!(
        "… ({} more bytes cut; errors are kept up to {MAX_ERROR_BYTES} bytes)",
        total - cut
    ));
    text
}

/// A one-line trap description: the trap code or message, plus the innermost frame.
fn describe_trap(err: &wasmtime::Error) -> String {
    let mut text = err.to_string();
    let trap = err.downcast_ref::<wasmtime::Trap>();
    if let Some(trap) = trap {
        text = trap.to_string();
    }
    // The full chain carries e.g. the panic message printed to stderr separately; the
    // root cause is the most precise single line.
    let root = err.root_cause().to_string();
    if root != text {
        text = format!("{text}: {root}");
    }
    let mut line = text.lines().next().unwrap_or_default().to_string();
    if let Some(rest) = line.strip_prefix("wasm trap: ") {
        line = rest.to_string();
    }
    match trap {
        Some(wasmtime::Trap::StackOverflow) => {
            line.push_str(" (stack overflow: unbounded recursion?)");
        }
        Some(wasmtime::Trap::MemoryOutOfBounds) => {
            line.push_str(" (a bad pointer, or the guest's in-memory stack overflowed)");
        }
        _ => {}
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_capped_on_a_char_boundary_with_a_note() {
        assert_eq!(cap_error("short".into()), "short");
        let long = "é".repeat(MAX_ERROR_BYTES); // 2 bytes each
        let capped = cap_error(long.clone());
        assert!(capped.len() < MAX_ERROR_BYTES + 100, "{}", capped.len());
        assert!(capped.contains(&format!("({} more bytes cut", long.len() - MAX_ERROR_BYTES)));
        assert!(long.starts_with(capped.split('…').next().unwrap()));
    }

    #[test]
    fn core_modules_and_oversized_components_are_refused_before_compiling() {
        let rt = Runtime::new().unwrap();
        let core = rt.compile(b"\0asm\x01\0\0\0").err().unwrap();
        assert!(matches!(core, LoadError::CoreModule), "{core}");
        let big = vec![0u8; MAX_COMPONENT_BYTES + 1];
        let err = rt.compile(&big).err().unwrap();
        assert!(matches!(err, LoadError::TooLarge { .. }), "{err}");
        // An empty component compiles but does not export `handle`.
        let empty = rt.compile(b"\0asm\x0d\0\x01\0").err().unwrap();
        assert!(matches!(empty, LoadError::Exports(_)), "{empty}");
    }
}
