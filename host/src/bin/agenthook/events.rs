//! `agenthook events list|show|replay`: stored events and their deliveries, read and
//! replayed through `/admin/v1/events`. Human output is a table or an indented report
//! with RFC 3339 UTC times; `--json` passes the API's answer through (Unix ms).

use clap::Subcommand;

use crate::client::{AdminClient, ClientArgs, urlencode};
use crate::print::{self, field};

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
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
    /// subscribes to it now, or to one plugin. Effects recorded in a delivery's journal
    /// are made again unless --keep-journal.
    Replay {
        id: String,
        #[arg(long)]
        plugin: Option<String>,
        /// Keep the journal: calls recorded by earlier attempts return their recorded
        /// results instead of being made again.
        #[arg(long)]
        keep_journal: bool,
    },
}

pub async fn run(args: &ClientArgs, command: EventsCommand) -> anyhow::Result<()> {
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
                return print::json(&value);
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
                    .map(|d| {
                        format!(
                            "{}={}/{}",
                            field(&d["plugin"]),
                            field(&d["status"]),
                            d["attempts"]
                        )
                    })
                    .collect();
                println!(
                    "{:<8} {:<12} {:<26} {:<30} {:<14} {}",
                    field(&e["id"]),
                    field(&e["source"]),
                    field(&e["event_id"]),
                    field(&e["type"]),
                    field(&e["status"]),
                    deliveries.join(" ")
                );
            }
            if let Some(c) = value["next_cursor"].as_str() {
                println!("more: --cursor {c}");
            }
        }
        EventsCommand::Replay {
            id,
            plugin,
            keep_journal,
        } => {
            let mut body = serde_json::json!({ "keep_journal": keep_journal });
            if let Some(p) = plugin {
                body["plugin"] = serde_json::json!(p);
            }
            let value = client
                .post(
                    &format!("/admin/v1/events/{}/replay", urlencode(&id)),
                    &body,
                )
                .await?;
            if args.json {
                return print::json(&value);
            }
            let plugins: Vec<String> = value["replayed"]
                .as_array()
                .into_iter()
                .flatten()
                .map(field)
                .collect();
            if plugins.is_empty() {
                println!(
                    "event {id}: nothing to replay (deliveries in flight right now are left alone)"
                );
            } else {
                println!("event {id}: replaying to {}", plugins.join(", "));
            }
        }
        EventsCommand::Show { id } => {
            let value = client
                .get(&format!("/admin/v1/events/{}", urlencode(&id)))
                .await?;
            if args.json {
                return print::json(&value);
            }
            println!(
                "event {} ({} on {})",
                field(&value["id"]),
                field(&value["event_id"]),
                field(&value["source"])
            );
            println!("  type:     {}", field(&value["type"]));
            println!("  received: {}", print::time(&value["received_at_ms"]));
            println!("  status:   {}", field(&value["status"]));
            for d in value["deliveries"].as_array().into_iter().flatten() {
                println!("  plugin {}: {}", field(&d["plugin"]), field(&d["status"]));
                for a in d["attempts"].as_array().into_iter().flatten() {
                    println!(
                        "    attempt {} at {}: {} in {} ms{}{}",
                        a["number"],
                        print::time(&a["started_at_ms"]),
                        field(&a["outcome"]),
                        a["duration_ms"],
                        a["error"]
                            .as_str()
                            .map(|e| format!(" — {e}"))
                            .unwrap_or_default(),
                        a["journal"]
                            .as_str()
                            .map(|j| format!(" (journal: {j})"))
                            .unwrap_or_default()
                    );
                    for line in a["logs"].as_array().into_iter().flatten() {
                        println!("      {}", field(line));
                    }
                }
                let journal = d["journal"].as_array().map_or(&[][..], Vec::as_slice);
                if !journal.is_empty() {
                    println!("    journal:");
                }
                for j in journal {
                    println!(
                        "      call {} ({}, attempt {}): {}",
                        j["seq"],
                        field(&j["tool"]),
                        j["attempt"],
                        field(&j["summary"])
                    );
                }
            }
            match value["body"].as_str() {
                Some(body) => println!("  body: {body}"),
                None => println!("  body (base64): {}", field(&value["body_base64"])),
            }
        }
    }
    Ok(())
}
