//! `agenthook serve`: load and validate the config, prepare the host, bind its two ports
//! and serve until SIGINT or SIGTERM. Owns the exit statuses a supervisor sees: 64 for a
//! bad config or plugin (before any port is bound), 69 when a port cannot be bound.

use std::path::PathBuf;
use std::process::ExitCode;

use agenthook::config::Config;
use agenthook::telemetry::{self, LogFormat};
use agenthook::{Host, Listeners};

/// Exit status for a bad config or bad arguments (sysexits EX_USAGE).
const EX_USAGE: u8 = 64;
/// Exit status when a port cannot be bound (sysexits EX_UNAVAILABLE).
const EX_UNAVAILABLE: u8 = 69;

pub async fn run(config_path: Option<PathBuf>, log_format: LogFormat) -> ExitCode {
    let config = match &config_path {
        Some(path) => Config::load(path),
        None => Config::embedded_default(),
    };
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            eprintln!("agenthook: {e}");
            return ExitCode::from(EX_USAGE);
        }
    };
    let telemetry = match telemetry::init(log_format, &config.telemetry) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("agenthook: {e}");
            return ExitCode::from(EX_USAGE);
        }
    };
    let code = serve_with(config).await;
    // Flush buffered spans (a blocking call with its own timeout).
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    code
}

/// Prepare the host and serve until SIGINT or SIGTERM.
async fn serve_with(config: Config) -> ExitCode {
    if config.embedded_default {
        tracing::warn!(
            "no --config given: serving the embedded defaults (loopback only, a `demo` source with the README's public secret)"
        );
    }
    let (listen, admin_listen) = (config.server.listen, config.server.admin_listen);
    let host = match Host::prepare(config).await {
        Ok(h) => h,
        Err(e) => {
            eprintln!("agenthook: {e}");
            return ExitCode::from(EX_USAGE);
        }
    };
    if let Some(path) = &host.admin_token_file {
        tracing::info!(path = %path.display(), "admin token (generated; set AGENTHOOK_ADMIN_TOKEN or server.admin_token to choose one)");
    }
    let bind = |addr| async move {
        tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot listen on {addr}: {e}"))
    };
    let listeners = match (bind(listen).await, bind(admin_listen).await) {
        (Ok(ingress), Ok(admin)) => Listeners { ingress, admin },
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("agenthook: {e}");
            return ExitCode::from(EX_UNAVAILABLE);
        }
    };
    let (ingress_addr, admin_addr) =
        match (listeners.ingress.local_addr(), listeners.admin.local_addr()) {
            (Ok(i), Ok(a)) => (i, a),
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("agenthook: {e}");
                return ExitCode::FAILURE;
            }
        };
    let shutdown = shutdown_signal();
    // One line on stdout that scripts and tests can wait for.
    println!("agenthook ready ingress=http://{ingress_addr} admin=http://{admin_addr}");
    match host.serve(listeners, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("agenthook: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Listen for SIGINT and SIGTERM from now on (the handlers are installed by this call,
/// before the ready line, so a supervisor's stop right after it is a clean shutdown, not
/// a kill); the future resolves at the first of them.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let handlers = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        );
        async move {
            match handlers {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
