//! The `agenthook` command line: the clap definitions and the dispatch to one module per
//! command. `serve` runs the host; `send` imitates a sender; `events`, `dlq`, `plugin`
//! and `status` are thin clients of the admin API. This is glue — it parses arguments,
//! reads the environment, binds ports and prints; the library does the work, and the
//! binary reaches it only through its public API.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use agenthook::telemetry::LogFormat;

use client::{AdminClient, ClientArgs};

mod client;
mod dlq;
mod events;
mod plugin;
mod plugin_build;
mod plugin_new;
mod print;
mod send;
mod serve;
mod status;

#[derive(Debug, Parser)]
#[command(name = "agenthook", version, about = "A webhook host for AI agents")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Sign a payload exactly as a sender would and POST it to the host (the simulator).
    Send(send::SendArgs),
    /// Run the host. With no --config, serves the embedded defaults on loopback.
    Serve {
        /// Path to the TOML config.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Log format on stderr.
        #[arg(long, value_enum, default_value_t = LogFormat::Pretty)]
        log_format: LogFormat,
    },
    /// Inspect stored events and their deliveries.
    Events {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: events::EventsCommand,
    },
    /// Inspect, replay and purge dead letters.
    Dlq {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: dlq::DlqCommand,
    },
    /// A summary of what the host is doing: per source rates and refusals, per plugin
    /// queue depth, success rate, latency and dead letters.
    Status {
        #[command(flatten)]
        client: ClientArgs,
        /// Refresh in place every --interval until interrupted.
        #[arg(long)]
        watch: bool,
        /// Seconds between the two samples rates are computed from.
        #[arg(long, default_value_t = 2.0, value_parser = status::parse_interval)]
        interval: f64,
    },
    /// Inspect, deploy and remove loaded plugins; build and scaffold plugin projects.
    Plugin {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: plugin::PluginCommand,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("agenthook: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        match cli.command {
            Command::Serve { config, log_format } => serve::run(config, log_format).await,
            Command::Send(args) => report(send::run(args).await),
            Command::Events { client, command } => report(events::run(&client, command).await),
            Command::Dlq { client, command } => report(dlq::run(&client, command).await),
            Command::Plugin { client, command } => report(plugin::run(&client, command).await),
            Command::Status {
                client,
                watch,
                interval,
            } => report(
                async {
                    let admin = AdminClient::new(&client)?;
                    status::run(
                        &admin,
                        watch,
                        std::time::Duration::from_secs_f64(interval),
                        client.json,
                    )
                    .await
                }
                .await,
            ),
        }
    })
}

/// A client command's exit: success, or its error on stderr and a failing status.
fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("agenthook: {e:#}");
            ExitCode::FAILURE
        }
    }
}
