//! `agenthook plugin deploy|list|remove`: plugins in a running host, through
//! `/admin/v1/plugins`; `plugin build|new` (authoring, offline) are in `plugin_build`
//! and `plugin_new`. Deploy reads the component and manifest from disk and sends
//! them; the host validates them. Versions are shown shortened to 12 characters.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;

use crate::client::{AdminClient, ClientArgs, urlencode};
use crate::print::{self, field};
use crate::{plugin_build, plugin_new};

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
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
    /// Build a plugin project (Rust: Cargo.toml; Python: app.py) to a component,
    /// written to DIR/dist/NAME.wasm unless --out says otherwise.
    Build {
        /// The project directory.
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Where to write the component.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Create a plugin project NAME/ (manifest, handler, test) that builds and deploys
    /// as is.
    New {
        name: String,
        #[arg(long, value_enum, default_value_t = NewLang::Rust)]
        lang: NewLang,
        /// The directory to create it in.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Rust: the agenthook-sdk crate to depend on (default: the sdk/ of the tree
        /// this binary was built from).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
}

/// The languages `plugin new` scaffolds.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum NewLang {
    Rust,
    Python,
}

pub async fn run(args: &ClientArgs, command: PluginCommand) -> anyhow::Result<()> {
    use base64::Engine as _;
    // The authoring commands work offline: no admin API.
    let command = match command {
        PluginCommand::Build { dir, out } => {
            let out = tokio::task::spawn_blocking(move || plugin_build::build(&dir, out)).await??;
            println!("{}", out.display());
            return Ok(());
        }
        PluginCommand::New {
            name,
            lang,
            dir,
            sdk,
        } => {
            let lang = match lang {
                NewLang::Rust => plugin_build::Lang::Rust,
                NewLang::Python => plugin_build::Lang::Python,
            };
            plugin_new::create(&name, lang, &dir, sdk)?;
            print!("{}", plugin_new::next_steps(&name, lang));
            return Ok(());
        }
        other => other,
    };
    let client = AdminClient::new(args)?;
    match command {
        PluginCommand::Build { .. } | PluginCommand::New { .. } => unreachable!("handled above"),
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
                return print::json(&value);
            }
            let version = field(&value["version"]);
            match value["action"].as_str() {
                Some("replaced") => println!(
                    "plugin {name}: replaced {} with {}",
                    short(&field(&value["previous_version"])),
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
                println!("warning: {}", field(w));
            }
        }
        PluginCommand::Remove { name } => {
            let path = format!("/admin/v1/plugins/{}", urlencode(&name));
            let value = client.send(http::Method::DELETE, &path, None).await?;
            if args.json {
                return print::json(&value);
            }
            println!(
                "plugin {name}: removed {} (its pending deliveries are kept)",
                short(&field(&value["removed_version"]))
            );
        }
        PluginCommand::List => {
            let value = client.get("/admin/v1/plugins").await?;
            if args.json {
                return print::json(&value);
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
                            field(&sub["source"]),
                            t.iter().map(field).collect::<Vec<_>>().join("|")
                        ),
                        None => format!("{}:*", field(&sub["source"])),
                    })
                    .collect();
                println!(
                    "{:<20} {:<14} {:<10} {}",
                    field(&p["name"]),
                    short(&field(&p["version"])),
                    p["in_flight"],
                    subs.join(" ")
                );
                // On a deployment of several hosts: the version each host runs.
                if let Some(hosts) = p["hosts"].as_object() {
                    let running: Vec<String> = hosts
                        .iter()
                        .map(|(h, v)| match v.as_str() {
                            Some(v) => format!("{h}={}", short(v)),
                            None => format!("{h}=(not loaded)"),
                        })
                        .collect();
                    println!("{:<20} hosts: {}", "", running.join(" "));
                }
            }
            for r in value["refused"].as_array().into_iter().flatten() {
                println!(
                    "refused in plugins_dir: {}: {}",
                    field(&r["name"]),
                    field(&r["reason"])
                );
            }
        }
    }
    Ok(())
}

/// A plugin version (a content hash) as shown: its first 12 characters.
fn short(version: &str) -> &str {
    version.get(..12).unwrap_or(version)
}
