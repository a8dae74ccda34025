//! The `agenthook` command line: `serve` runs the host; `events` and `plugin` are thin
//! clients of the admin API.
//!
//! This is glue: it parses arguments, reads the environment, binds ports and prints.
//! The library does the work.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::config::Config;
use crate::telemetry::{self, LogFormat};
use crate::{Host, Listeners};

mod send;
mod status;

/// Exit status for a bad config or bad arguments (sysexits EX_USAGE).
const EX_USAGE: u8 = 64;
/// Exit status when a port cannot be bound (sysexits EX_UNAVAILABLE).
const EX_UNAVAILABLE: u8 = 69;

#[derive(Debug, Parser)]
#[command(name = "agenthook", version, about = "A webhook host for AI agents")]
pub struct Cli {
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
        command: EventsCommand,
    },
    /// Inspect, replay and purge dead letters.
    Dlq {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: DlqCommand,
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
        #[arg(long, default_value_t = 2.0, value_parser = parse_interval)]
        interval: f64,
    },
    /// Inspect loaded plugins.
    Plugin {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: PluginCommand,
    },
}

#[derive(Debug, Args)]
struct ClientArgs {
    /// Base URL of the admin API.
    #[arg(
        long,
        env = "AGENTHOOK_ADMIN_URL",
        default_value = "http://127.0.0.1:9090",
        global = true
    )]
    admin_url: String,
    /// Admin bearer token; defaults to the token file the host generated in --data-dir.
    #[arg(
        long,
        env = "AGENTHOOK_ADMIN_TOKEN",
        hide_env_values = true,
        global = true
    )]
    token: Option<String>,
    /// The host's data dir, where a generated admin token is kept.
    #[arg(long, default_value = crate::config::DEFAULT_DATA_DIR, global = true)]
    data_dir: PathBuf,
    /// Print the raw JSON answer.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum EventsCommand {
    /// List events, newest first.
    List {
        #[arg(long)]
        source: Option<String>,
        /// The sender's event id.
        #[arg(long)]
        event_id: Option<String>,
        #[arg(long = "type")]
        event_type: Option<String>,
        /// pending, retrying, done or dead.
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        plugin: Option<String>,
        /// Unix ms or a duration ago (15m, 2h, 7d).
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        until: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
        /// Continue from a previous page's cursor.
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Show one event with its payload, deliveries and every attempt.
    Show {
        /// The host's event id (the `id` column of `events list`).
        id: String,
    },
    /// Deliver an event again, with a fresh retry budget: to every plugin that had it or
    /// subscribes to it now, or to one plugin.
    Replay {
        id: String,
        #[arg(long)]
        plugin: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum DlqCommand {
    /// List dead letters (deliveries that failed permanently or ran out of attempts).
    List {
        #[arg(long)]
        plugin: Option<String>,
        #[arg(long)]
        source: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Replay dead letters: the given event ids, those matching the filters, or --all.
    Replay {
        #[command(flatten)]
        select: DlqSelect,
    },
    /// Delete dead letters: the given event ids, those matching the filters, or --all.
    Purge {
        #[command(flatten)]
        select: DlqSelect,
    },
}

#[derive(Debug, Args)]
struct DlqSelect {
    /// Event ids (the host's `id`).
    ids: Vec<String>,
    #[arg(long)]
    plugin: Option<String>,
    #[arg(long)]
    source: Option<String>,
    /// Every dead letter.
    #[arg(long, conflicts_with_all = ["ids", "plugin", "source"])]
    all: bool,
}

impl DlqSelect {
    fn body(&self) -> Value {
        let mut body = serde_json::Map::new();
        if !self.ids.is_empty() {
            body.insert("ids".into(), serde_json::json!(self.ids));
        }
        if let Some(p) = &self.plugin {
            body.insert("plugin".into(), serde_json::json!(p));
        }
        if let Some(s) = &self.source {
            body.insert("source".into(), serde_json::json!(s));
        }
        if self.all {
            body.insert("all".into(), serde_json::json!(true));
        }
        Value::Object(body)
    }
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// List loaded plugins with their versions, limits and grants.
    List,
    /// Deploy a plugin into the running host (add, or replace with zero downtime). It
    /// is validated first; a refused deploy leaves the running version serving.
    Deploy {
        /// The plugin's name (`plugins.d/NAME.toml` + `NAME.wasm`).
        name: String,
        /// The component (`.wasm`, built for wasm32-wasip2).
        #[arg(long)]
        wasm: PathBuf,
        /// The manifest (`.toml`).
        #[arg(long)]
        manifest: PathBuf,
    },
    /// Unload a plugin and delete its files; its pending deliveries are kept.
    Remove { name: String },
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
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
            Command::Serve { config, log_format } => serve(config, log_format).await,
            Command::Send(args) => report(send::run(args).await),
            Command::Events { client, command } => report(events(&client, command).await),
            Command::Dlq { client, command } => report(dlq(&client, command).await),
            Command::Plugin { client, command } => report(plugins(&client, command).await),
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

fn parse_interval(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if (0.1..=3600.0).contains(&v) => Ok(v),
        _ => Err("a number of seconds from 0.1 to 3600".into()),
    }
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("agenthook: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config_path: Option<PathBuf>, log_format: LogFormat) -> ExitCode {
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
    // One line on stdout that scripts and tests can wait for.
    println!("agenthook ready ingress=http://{ingress_addr} admin=http://{admin_addr}");
    match host.serve(listeners, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("agenthook: {e}");
            ExitCode::FAILURE
        }
    }
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// A minimal JSON client of the admin API.
struct AdminClient {
    base: String,
    token: String,
    http: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
}

impl AdminClient {
    fn new(args: &ClientArgs) -> anyhow::Result<AdminClient> {
        let token = match &args.token {
            Some(t) => t.clone(),
            None => {
                let path = args.data_dir.join("admin.token");
                std::fs::read_to_string(&path)
                    .with_context(|| {
                        format!(
                            "no admin token: pass --token, set AGENTHOOK_ADMIN_TOKEN, or point --data-dir at the host's data dir ({} not readable)",
                            path.display()
                        )
                    })?
                    .trim()
                    .to_string()
            }
        };
        Ok(AdminClient {
            base: args.admin_url.trim_end_matches('/').to_string(),
            token,
            http: Client::builder(TokioExecutor::new()).build_http(),
        })
    }

    async fn get(&self, path_and_query: &str) -> anyhow::Result<Value> {
        self.send(http::Method::GET, path_and_query, None).await
    }

    async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.send(http::Method::POST, path, Some(body)).await
    }

    async fn send(
        &self,
        method: http::Method,
        path_and_query: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let body = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
        let req = http::Request::builder()
            .method(method)
            .uri(format!("{}{path_and_query}", self.base))
            .header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", self.token),
            )
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))?;
        let resp = self
            .http
            .request(req)
            .await
            .with_context(|| format!("cannot reach the admin API at {}", self.base))?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        let value: Value = serde_json::from_slice(&body)
            .map_err(|_| anyhow!("the admin API answered {status} with a non-JSON body"))?;
        if !status.is_success() {
            let msg = value["error"].as_str().unwrap_or("(no message)");
            bail!("{status}: {msg}");
        }
        Ok(value)
    }
}

async fn events(args: &ClientArgs, command: EventsCommand) -> anyhow::Result<()> {
    let client = AdminClient::new(args)?;
    match command {
        EventsCommand::List {
            source,
            event_id,
            event_type,
            status,
            plugin,
            since,
            until,
            limit,
            cursor,
        } => {
            let mut q = form_urlencoded::Serializer::new(String::new());
            let params = [
                ("source", source),
                ("event_id", event_id),
                ("type", event_type),
                ("status", status),
                ("plugin", plugin),
                ("since", since),
                ("until", until),
                ("limit", limit.map(|l| l.to_string())),
                ("cursor", cursor),
            ];
            for (k, v) in params {
                if let Some(v) = v {
                    q.append_pair(k, &v);
                }
            }
            let value = client
                .get(&format!("/admin/v1/events?{}", q.finish()))
                .await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&value)?);
                return Ok(());
            }
            println!(
                "{:<8} {:<12} {:<26} {:<30} {:<14} DELIVERIES",
                "ID", "SOURCE", "EVENT ID", "TYPE", "STATUS"
            );
            for e in value["events"].as_array().into_iter().flatten() {
                let deliveries: Vec<String> = e["delivery_summary"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|d| format!("{}={}/{}", s(&d["plugin"]), s(&d["status"]), d["attempts"]))
                    .collect();
                println!(
                    "{:<8} {:<12} {:<26} {:<30} {:<14} {}",
                    s(&e["id"]),
                    s(&e["source"]),
                    s(&e["event_id"]),
                    s(&e["type"]),
                    s(&e["status"]),
                    deliveries.join(" ")
                );
            }
            if let Some(c) = value["next_cursor"].as_str() {
                println!("more: --cursor {c}");
            }
        }
        EventsCommand::Replay { id, plugin } => {
            let body = match plugin {
                Some(p) => serde_json::json!({ "plugin": p }),
                None => serde_json::json!({}),
            };
            let value = client
                .post(
                    &format!("/admin/v1/events/{}/replay", urlencode(&id)),
                    &body,
                )
                .await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else {
                let plugins: Vec<String> = value["replayed"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(s)
                    .collect();
                if plugins.is_empty() {
                    println!(
                        "event {id}: nothing to replay (deliveries in flight right now are left alone)"
                    );
                } else {
                    println!("event {id}: replaying to {}", plugins.join(", "));
                }
            }
        }
        EventsCommand::Show { id } => {
            let value = client
                .get(&format!("/admin/v1/events/{}", urlencode(&id)))
                .await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&value)?);
                return Ok(());
            }
            println!(
                "event {} ({} on {})",
                s(&value["id"]),
                s(&value["event_id"]),
                s(&value["source"])
            );
            println!("  type:     {}", s(&value["type"]));
            println!("  received: {} ms", value["received_at_ms"]);
            println!("  status:   {}", s(&value["status"]));
            for d in value["deliveries"].as_array().into_iter().flatten() {
                println!("  plugin {}: {}", s(&d["plugin"]), s(&d["status"]));
                for a in d["attempts"].as_array().into_iter().flatten() {
                    println!(
                        "    attempt {} at {} ms: {} in {} ms{}",
                        a["number"],
                        a["started_at_ms"],
                        s(&a["outcome"]),
                        a["duration_ms"],
                        a["error"]
                            .as_str()
                            .map(|e| format!(" — {e}"))
                            .unwrap_or_default()
                    );
                    for line in a["logs"].as_array().into_iter().flatten() {
                        println!("      {}", s(line));
                    }
                }
            }
            match value["body"].as_str() {
                Some(body) => println!("  body: {body}"),
                None => println!("  body (base64): {}", s(&value["body_base64"])),
            }
        }
    }
    Ok(())
}

async fn dlq(args: &ClientArgs, command: DlqCommand) -> anyhow::Result<()> {
    let client = AdminClient::new(args)?;
    let (value, summary) = match command {
        DlqCommand::List {
            plugin,
            source,
            limit,
            cursor,
        } => {
            let mut q = form_urlencoded::Serializer::new(String::new());
            for (k, v) in [
                ("plugin", plugin),
                ("source", source),
                ("limit", limit.map(|l| l.to_string())),
                ("cursor", cursor),
            ] {
                if let Some(v) = v {
                    q.append_pair(k, &v);
                }
            }
            let value = client.get(&format!("/admin/v1/dlq?{}", q.finish())).await?;
            if !args.json {
                println!(
                    "{:<8} {:<16} {:<12} {:<26} {:<8} LAST ERROR",
                    "ID", "PLUGIN", "SOURCE", "EVENT ID", "ATTEMPTS"
                );
                for d in value["dead_letters"].as_array().into_iter().flatten() {
                    println!(
                        "{:<8} {:<16} {:<12} {:<26} {:<8} {}",
                        s(&d["id"]),
                        s(&d["plugin"]),
                        s(&d["source"]),
                        s(&d["event_id"]),
                        d["attempts"],
                        s(&d["last_error"])
                    );
                }
                if let Some(c) = value["next_cursor"].as_str() {
                    println!("more: --cursor {c}");
                }
            }
            (value, None)
        }
        DlqCommand::Replay { select } => {
            let value = client.post("/admin/v1/dlq/replay", &select.body()).await?;
            let n = value["replayed"].clone();
            (value, Some(format!("replayed {n} dead letters")))
        }
        DlqCommand::Purge { select } => {
            let value = client.post("/admin/v1/dlq/purge", &select.body()).await?;
            let n = value["purged"].clone();
            (value, Some(format!("purged {n} dead letters")))
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else if let Some(line) = summary {
        println!("{line}");
    }
    Ok(())
}

async fn plugins(args: &ClientArgs, command: PluginCommand) -> anyhow::Result<()> {
    use base64::Engine as _;
    let client = AdminClient::new(args)?;
    match command {
        PluginCommand::Deploy {
            name,
            wasm,
            manifest,
        } => {
            let component =
                std::fs::read(&wasm).with_context(|| format!("cannot read {}", wasm.display()))?;
            let text = std::fs::read_to_string(&manifest)
                .with_context(|| format!("cannot read {}", manifest.display()))?;
            let body = serde_json::json!({
                "manifest": text,
                "wasm_base64": base64::engine::general_purpose::STANDARD.encode(component),
            });
            let path = format!("/admin/v1/plugins/{}", urlencode(&name));
            let value = client.send(http::Method::PUT, &path, Some(&body)).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&value)?);
                return Ok(());
            }
            let version = s(&value["version"]);
            let short = |v: &str| v[..v.len().min(12)].to_string();
            match value["action"].as_str() {
                Some("replaced") => println!(
                    "plugin {name}: replaced {} with {}",
                    short(&s(&value["previous_version"])),
                    short(&version)
                ),
                Some("unchanged") => {
                    println!(
                        "plugin {name}: {} already loaded, unchanged",
                        short(&version)
                    )
                }
                _ => println!("plugin {name}: added {}", short(&version)),
            }
            for w in value["warnings"].as_array().into_iter().flatten() {
                println!("warning: {}", s(w));
            }
        }
        PluginCommand::Remove { name } => {
            let path = format!("/admin/v1/plugins/{}", urlencode(&name));
            let value = client.send(http::Method::DELETE, &path, None).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else {
                let version = s(&value["removed_version"]);
                println!(
                    "plugin {name}: removed {} (its pending deliveries are kept)",
                    &version[..version.len().min(12)]
                );
            }
        }
        PluginCommand::List => {
            let value = client.get("/admin/v1/plugins").await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&value)?);
                return Ok(());
            }
            println!(
                "{:<20} {:<14} {:<10} SUBSCRIBES",
                "NAME", "VERSION", "IN FLIGHT"
            );
            for p in value["plugins"].as_array().into_iter().flatten() {
                let subs: Vec<String> = p["subscribe"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|sub| match sub["types"].as_array() {
                        Some(t) => format!(
                            "{}:{}",
                            s(&sub["source"]),
                            t.iter().map(s).collect::<Vec<_>>().join("|")
                        ),
                        None => format!("{}:*", s(&sub["source"])),
                    })
                    .collect();
                let version = s(&p["version"]);
                println!(
                    "{:<20} {:<14} {:<10} {}",
                    s(&p["name"]),
                    &version[..version.len().min(12)],
                    p["in_flight"],
                    subs.join(" ")
                );
            }
            for r in value["refused"].as_array().into_iter().flatten() {
                println!(
                    "refused in plugins_dir: {}: {}",
                    s(&r["name"]),
                    s(&r["reason"])
                );
            }
        }
    }
    Ok(())
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
