//! `agenthook dlq list|replay|purge`: dead letters through `/admin/v1/dlq`. Replay and
//! purge take the same selector — event ids, filters, or `--all` — and print how many
//! dead letters they touched; `--json` passes the API's answer through.

use clap::{Args, Subcommand};
use serde_json::Value;

use crate::client::{AdminClient, ClientArgs};
use crate::print::{self, field};

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
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
pub struct DlqSelect {
    /// Event ids (the host's `id`).
    ids: Vec<String>,
    #[arg(long)]
    plugin: Option<String>,
    #[arg(long)]
    source: Option<String>,
    /// Every dead letter.
    #[arg(long, conflicts_with_all = ["ids", "plugin", "source"])]
    all: bool,
    /// (replay) Keep each delivery's journal: effects recorded by earlier attempts are
    /// not made again.
    #[arg(long)]
    keep_journal: bool,
}

impl DlqSelect {
    /// The selector as the admin API takes it.
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
        if self.keep_journal {
            body.insert("keep_journal".into(), serde_json::json!(true));
        }
        Value::Object(body)
    }
}

pub async fn run(args: &ClientArgs, command: DlqCommand) -> anyhow::Result<()> {
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
                        field(&d["id"]),
                        field(&d["plugin"]),
                        field(&d["source"]),
                        field(&d["event_id"]),
                        d["attempts"],
                        field(&d["last_error"])
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
        print::json(&value)?;
    } else if let Some(line) = summary {
        println!("{line}");
    }
    Ok(())
}
