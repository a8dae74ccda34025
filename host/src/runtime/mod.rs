//! The WebAssembly runtime: compiles plugin components, and runs one handler call per
//! delivery in a fresh, sandboxed instance.
//!
//! One `Engine` with the pooling allocator and epoch interruption serves every plugin.
//! A plugin is compiled and linked once (`HandlerPre`); each delivery instantiates it
//! from the pool into a new `Store` that holds only what the manifest grants: no
//! filesystem, environment, sockets or clocks beyond WASI's defaults, a memory limit,
//! a CPU and a wall-clock deadline, and the host tools (`crate::tools`).

pub mod output;
pub mod registry;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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
use output::CapturedOutput;

/// The generated bindings of the `agenthook:plugin` WIT package.
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "handler",
        imports: { default: async },
        exports: { default: async },
    });
}

pub use bindings::agenthook::plugin::types::{Event as WitEvent, HandlerError};

/// How often the epoch advances; the CPU deadline is counted in these ticks.
const EPOCH_TICK: Duration = Duration::from_millis(10);
/// Bytes of stdout+stderr kept per attempt.
const OUTPUT_CAP: usize = 16 * 1024;
/// Deliveries that may run at once across all plugins; kept below the instance pool
/// size so instantiation never fails for lack of a slot.
pub const MAX_INSTANCES: u32 = 256;

/// A plugin could not be loaded. The message says what is wrong with the component.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("not a valid WebAssembly component: {0:#}")]
    Compile(wasmtime::Error),
    #[error("the component does not fit the agenthook:plugin `handler` world: {0:#}")]
    Link(wasmtime::Error),
}

/// The shared engine and linker.
pub struct Runtime {
    engine: Engine,
    linker: Linker<Invocation>,
    stop_ticker: Arc<AtomicBool>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Runtime")
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
    }
}

/// A compiled, linked plugin ready to instantiate.
pub struct CompiledPlugin {
    pre: bindings::HandlerPre<Invocation>,
    /// Hex SHA-256 of the component bytes: the plugin version recorded with attempts.
    pub version: String,
}

/// The state of one handler call. Holds nothing the manifest does not grant.
pub struct Invocation {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: Limiter,
    tools: Tools,
    /// Epoch ticks the guest has spent running, and the budget.
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
}

const MAX_TABLE_ELEMENTS: usize = 100_000;

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
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
}

impl Runtime {
    pub fn new() -> wasmtime::Result<Runtime> {
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(1000)
            .total_core_instances(4000)
            .total_memories(1000)
            .total_tables(2000)
            .total_stacks(1000)
            .max_memory_size((MAX_MEMORY_MB as usize) << 20);
        let mut config = EngineConfig::new();
        config
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            .memory_init_cow(true);
        let engine = Engine::new(&config)?;

        let mut linker = Linker::<Invocation>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        bindings::Handler::add_to_linker::<_, HasSelf<Tools>>(&mut linker, |s| &mut s.tools)?;

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
        Ok(Runtime {
            engine,
            linker,
            stop_ticker,
        })
    }

    /// Compile and link a component. CPU-heavy: call it off the async executor.
    pub fn compile(&self, wasm: &[u8]) -> Result<CompiledPlugin, LoadError> {
        let version = hex::encode(Sha256::digest(wasm));
        let component = Component::new(&self.engine, wasm).map_err(LoadError::Compile)?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(LoadError::Link)?;
        let pre = bindings::HandlerPre::new(pre).map_err(LoadError::Link)?;
        Ok(CompiledPlugin { pre, version })
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
        let budget = (manifest.limits.timeout_ms / EPOCH_TICK.as_millis() as u64).max(1);
        let logs = tools.logs();
        let mut store = Store::new(
            &self.engine,
            Invocation {
                wasi,
                table: ResourceTable::new(),
                limiter: Limiter {
                    memory_bytes: (manifest.limits.memory_mb as usize) << 20,
                    exceeded: false,
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

        let run = async {
            let instance = plugin.pre.instantiate_async(&mut store).await?;
            instance.call_handle(&mut store, &event).await
        };
        let result = tokio::time::timeout(timeout, run).await;
        let outcome = match result {
            Err(_) => CallOutcome::Retry {
                reason: format!(
                    "timeout: the handler ran past limits.timeout_ms ({} ms)",
                    manifest.limits.timeout_ms
                ),
                delay_ms: None,
            },
            Ok(Ok(Ok(()))) => CallOutcome::Done,
            Ok(Ok(Err(HandlerError::Retry(r)))) => CallOutcome::Retry {
                reason: format!("handler: {}", r.reason),
                delay_ms: r.delay_ms,
            },
            Ok(Ok(Err(HandlerError::Permanent(reason)))) => {
                CallOutcome::Permanent(format!("handler: {reason}"))
            }
            Ok(Err(trap)) => {
                let state = store.data();
                let reason = if state.cpu_exceeded {
                    format!(
                        "cpu_deadline: the handler used more than {} ms of CPU (limits.timeout_ms)",
                        manifest.limits.timeout_ms
                    )
                } else if state.limiter.exceeded {
                    format!("{:#}", trap.root_cause())
                } else {
                    format!("trap: {}", describe_trap(&trap))
                };
                CallOutcome::Retry {
                    reason,
                    delay_ms: None,
                }
            }
        };
        drop(store);

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
        }
    }
}

/// A one-line trap description: the trap code or message, plus the innermost frame.
fn describe_trap(err: &wasmtime::Error) -> String {
    let mut text = err.to_string();
    if let Some(trap) = err.downcast_ref::<wasmtime::Trap>() {
        text = trap.to_string();
    }
    // The full chain carries e.g. the panic message printed to stderr separately; the
    // root cause is the most precise single line.
    let root = err.root_cause().to_string();
    if root != text {
        text = format!("{text}: {root}");
    }
    text.lines().next().unwrap_or_default().to_string()
}
