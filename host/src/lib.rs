//! agenthook: a webhook host for AI agents.
//!
//! A webhook follows one path through the modules: `ingress` verifies and acknowledges
//! it once `store` has it on disk, `dispatch` hands each due delivery to `runtime`,
//! which runs the plugin's handler in a sandbox where it can act only through `tools`.
//! `admin` reads what happened; `config` is validated before any of it starts.
//!
//! The library never binds ports or reads the environment on its own (except for
//! secrets named `env:` in the config): [`run`] takes bound listeners and a shutdown
//! future, so tests serve on `127.0.0.1:0` exactly as the binary does.

pub mod admin;
pub mod clock;
pub mod config;
pub mod dispatch;
pub mod health;
pub mod http;
pub mod ingress;
pub mod metrics;
pub mod plugins;
pub mod runtime;
pub mod store;
pub mod telemetry;
pub mod tools;
pub mod wit;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;

use config::{Config, ConfigError, Secret};
use plugins::{PluginError, Registry};
use runtime::Runtime;
use store::{Store, StoreError};

/// Why the host could not start or keep running.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot create {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Plugin(#[from] PluginError),
    #[error("cannot start the WebAssembly runtime: {0:#}")]
    Runtime(wasmtime::Error),
    #[error("admin token file {path}: {source}")]
    AdminToken {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The two bound listeners the host serves.
#[derive(Debug)]
pub struct Listeners {
    pub ingress: TcpListener,
    pub admin: TcpListener,
}

/// A host with its store open and plugins loaded, not yet serving.
pub struct Host {
    config: Config,
    /// Each source's signature check and schemas, built once from the config.
    verifiers: ingress::Verifiers,
    store: Store,
    registry: Arc<Registry>,
    runtime: Arc<Runtime>,
    admin_token: Secret,
    clock: clock::Clock,
    /// Shared by the tools of every attempt: HTTP clients, SMTP transport, emit routing.
    tools: Arc<tools::Services>,
    /// Hot (re)load and removal of plugins: the watcher and the admin API use it.
    deployer: Arc<plugins::deploy::Deployer>,
    /// Where a generated admin token was written, if one was.
    pub admin_token_file: Option<PathBuf>,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Host {
    /// Build each source's verifier, open the store, load and compile every plugin,
    /// settle the admin token. Nothing listens yet; any error here means the config or a
    /// plugin must be fixed.
    pub async fn prepare(config: Config) -> Result<Host, RunError> {
        Self::prepare_with(config, clock::Clock::system()).await
    }

    /// [`Host::prepare`] with a given clock for scheduling (tests move it forward).
    pub async fn prepare_with(config: Config, clock: clock::Clock) -> Result<Host, RunError> {
        let verifiers = ingress::Verifiers::build(&config.sources)?;
        create_dir(&config.server.data_dir)?;
        let store = Store::open(&config.server.data_dir, &config.store).await?;
        Self::prepare_on(config, clock, store, verifiers).await
    }

    /// [`Host::prepare_with`] on a store the caller opened (tests wrap one to inject
    /// faults).
    pub async fn prepare_with_store(
        config: Config,
        clock: clock::Clock,
        store: Store,
    ) -> Result<Host, RunError> {
        let verifiers = ingress::Verifiers::build(&config.sources)?;
        Self::prepare_on(config, clock, store, verifiers).await
    }

    async fn prepare_on(
        config: Config,
        clock: clock::Clock,
        store: Store,
        verifiers: ingress::Verifiers,
    ) -> Result<Host, RunError> {
        let data_dir = config.server.data_dir.clone();
        create_dir(&data_dir)?;
        create_dir(&config.server.plugins_dir)?;
        let runtime = Arc::new(
            Runtime::with_options(&runtime::RuntimeOptions {
                compile_cache: Some(data_dir.join("compile-cache")),
                guest_threads: config.server.plugin_threads,
                ..runtime::RuntimeOptions::default()
            })
            .map_err(RunError::Runtime)?,
        );

        let rt = runtime.clone();
        let (allowed, dir) = (config.plugins.clone(), config.server.plugins_dir.clone());
        let plugins = tokio::task::spawn_blocking(move || plugins::load_dir(&rt, &allowed, &dir))
            .await
            .map_err(|e| RunError::Runtime(wasmtime::Error::msg(e.to_string())))??;
        let registry = Arc::new(Registry::new(store.due_changed()));
        let tools = Arc::new(tools::Services::new(
            &config,
            registry.clone(),
            clock.clone(),
        )?);
        let deployer = Arc::new(
            plugins::deploy::Deployer::new(
                runtime.clone(),
                registry.clone(),
                tools.clone(),
                config.server.plugins_dir.clone(),
                config.sources.keys().cloned().collect(),
                config.plugins.clone(),
            )
            .with_cluster(store.clone()),
        );
        let mut versions = std::collections::HashSet::new();
        for plugin in plugins {
            for sub in &plugin.manifest.subscribe {
                if !config.sources.contains_key(&sub.source) && !sub.source.starts_with("plugin:") {
                    tracing::warn!(plugin = %plugin.name, source = %sub.source, "plugin subscribes to a source that is not configured");
                }
            }
            deployer.trial(&plugin).await?;
            tracing::info!(plugin = %plugin.name, version = %&plugin.compiled.version[..12], origin = ?plugin.compiled.origin, load_ms = plugin.compiled.load_time.as_millis() as u64, "plugin loaded");
            versions.insert(plugin.compiled.version.clone());
            registry.insert(plugin);
        }
        if let Some(cache) = runtime.compile_cache() {
            cache.retain(&versions);
        }

        let (admin_token, admin_token_file) = match &config.admin_token {
            Some(t) => (t.clone(), None),
            None => {
                let path = data_dir.join("admin.token");
                (load_or_create_token(&path)?, Some(path))
            }
        };
        Ok(Host {
            config,
            verifiers,
            store,
            registry,
            runtime,
            admin_token,
            clock,
            tools,
            deployer,
            admin_token_file,
        })
    }

    /// Serve until `shutdown` resolves; then stop accepting, let in-flight requests and
    /// deliveries finish (each up to a deadline), and close the store.
    pub async fn serve(
        self,
        listeners: Listeners,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), RunError> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let stopped = move || {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        };

        let health = health::Health::new(self.store.clone(), self.registry.clone());
        let ingress = ingress::Ingress::new(
            &self.config,
            self.verifiers,
            self.store.clone(),
            self.registry.clone(),
            self.clock.clone(),
            health.clone(),
        );
        // Each listener has its own connection cap, so a flood of ingress connections
        // never locks the operator out of the admin API.
        let listener_options = |stats: &Arc<http::ConnectionStats>| http::ServeOptions {
            max_connections: self.config.server.max_connections,
            stats: stats.clone(),
            ..http::ServeOptions::default()
        };
        let ingress_connections = Arc::new(http::ConnectionStats::default());
        let admin_connections = Arc::new(http::ConnectionStats::default());
        let ingress_options = listener_options(&ingress_connections);
        let admin_options = listener_options(&admin_connections);
        let telemetry = metrics::Sources {
            store: self.store.clone(),
            registry: self.registry.clone(),
            ingress: ingress.metrics(),
            body_budget: ingress.body_budget(),
            connections: vec![
                ("ingress", ingress_connections),
                ("admin", admin_connections),
            ],
            deliveries: metrics::DeliveryMetrics::default(),
            tools: self.tools.metrics(),
            health: health.clone(),
        };
        let ingress = Arc::new(ingress);
        // Running from before the ports answer until the loop ends (or panics), so
        // /readyz never reports a dispatcher that is merely not scheduled yet.
        let running = health.dispatcher_running();
        let dispatcher = dispatch::Dispatcher::new(
            self.store.clone(),
            self.runtime.clone(),
            self.registry.clone(),
            self.clock.clone(),
            self.tools.clone(),
            telemetry.deliveries.clone(),
            health.clone(),
        );
        let mut admin = admin::Admin::new(
            self.admin_token.clone(),
            self.store.clone(),
            self.deployer.clone(),
            telemetry,
        );
        // The console's test sender posts to ingress over loopback.
        if let Ok(addr) = listeners.ingress.local_addr() {
            admin = admin.with_test_sender(self.config.sources.clone(), addr);
        }
        let admin = Arc::new(admin);
        let sampler_task = tokio::spawn(admin.clone().sample_status(stopped()));
        let janitor = store::Janitor::new(self.store.clone(), self.config.store.clone());

        let ingress_task = tokio::spawn(http::serve(
            listeners.ingress,
            ingress_options,
            move |req| ingress.clone().handle(req),
            stopped(),
        ));
        let admin_task = tokio::spawn(http::serve(
            listeners.admin,
            admin_options,
            move |req| admin.clone().handle(req),
            stopped(),
        ));
        let dispatch_stopped = stopped();
        let dispatch_task = tokio::spawn(async move {
            let _running = running;
            dispatcher.run(dispatch_stopped).await;
        });
        let clock = self.clock.clone();
        let janitor_task = tokio::spawn(janitor.run(move || clock.now_ms(), stopped()));
        let watch_task = tokio::spawn(plugins::watch::run(self.deployer.clone(), stopped()));
        let clock = self.clock.clone();
        let cluster_task = tokio::spawn(plugins::cluster::run(
            self.deployer.clone(),
            self.store.clone(),
            clock.now_ms(),
            move || clock.now_ms(),
            stopped(),
        ));

        shutdown.await;
        tracing::info!("shutting down: draining requests and deliveries");
        health.set_draining();
        let _ = stop_tx.send(true);
        let _ = ingress_task.await;
        let _ = dispatch_task.await;
        let _ = janitor_task.await;
        let _ = watch_task.await;
        let _ = cluster_task.await;
        let _ = admin_task.await;
        let _ = sampler_task.await;
        self.store.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Prepare and serve: the whole host.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    Host::prepare(config)
        .await?
        .serve(listeners, shutdown)
        .await
}

fn create_dir(path: &Path) -> Result<(), RunError> {
    std::fs::create_dir_all(path).map_err(|source| RunError::Dir {
        path: path.to_path_buf(),
        source,
    })
}

/// The generated admin token, kept in the data dir (mode 0600) so that the CLI on the
/// same machine can read it and it survives restarts.
fn load_or_create_token(path: &Path) -> Result<Secret, RunError> {
    let err = |source| RunError::AdminToken {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => return Ok(Secret::new(text.trim())),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    let token = hex::encode(rand::random::<[u8; 32]>());
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    use std::io::Write;
    let mut file = opts.open(path).map_err(err)?;
    file.write_all(token.as_bytes()).map_err(err)?;
    file.sync_all().map_err(err)?;
    Ok(Secret::new(token))
}
