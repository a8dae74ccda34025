//! Scenario 10, `cluster`: agenthook on NATS JetStream (`[store] backend = "nats"`).
//!
//! - Ingest: one host on redb vs one host on a 3-node NATS cluster (replicas 3), the
//!   same closed loop (c=64, no plugins); the ratio is what the replicated store costs.
//! - Shared work: one host vs three hosts on the same NATS deployment, each with the
//!   no-op plugin; the load is split over the hosts' ingress ports (c=64 in all). Rows:
//!   ingest rate and latency, events done per second (first request → last delivery
//!   done), and each host's share of the deliveries (its `agenthook_attempts_total`).
//!   On one machine the hosts and the three NATS servers share its cores, so the total
//!   cannot grow much here; the per-host share shows the work spreading.
//!
//! - Dedup: what each of JetStream's two dedup mechanisms costs per event, measured with
//!   the client directly at c=64: a publish with `Nats-Msg-Id` (the server keeps every
//!   id of the window in memory) vs the same publish plus a dedup-bucket read and a
//!   create-if-absent (ids kept on disk, as long as the bucket's max age). The host uses
//!   both: the bucket for the long window, the message id for copies racing each other.
//!
//! The NATS servers are real `nats-server` processes on loopback (Debian's package).

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;

use crate::load::{self, LoadResult};
use crate::report::{Section, f, ratio};
use crate::server::{HostSpec, Server};
use crate::suite::Suite;

const CONCURRENCY: usize = 64;
const DRAIN_TIMEOUT: Duration = Duration::from_secs(300);

/// A 3-node JetStream cluster of `nats-server` processes, stopped when dropped.
struct Nats {
    urls: Vec<String>,
    nodes: Vec<(Child, ChildStdin)>,
    _dir: tempfile::TempDir,
}

impl Drop for Nats {
    fn drop(&mut self) {
        // Closing each shell's stdin makes it kill its server.
        for (mut child, stdin) in self.nodes.drain(..) {
            drop(stdin);
            let _ = child.wait();
        }
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Nats {
    fn start() -> anyhow::Result<Nats> {
        let dir = crate::server::scratch()?;
        let client: Vec<u16> = (0..3).map(|_| free_port()).collect::<Result<_, _>>()?;
        let cluster: Vec<u16> = (0..3).map(|_| free_port()).collect::<Result<_, _>>()?;
        let routes = cluster
            .iter()
            .map(|p| format!("nats-route://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut nodes = Vec::new();
        for i in 0..3 {
            let script = format!(
                "nats-server -js -sd '{dir}/n{i}' -a 127.0.0.1 -p {} -n n{i} --cluster_name bench --cluster nats://127.0.0.1:{} --routes {routes} >'{dir}/n{i}.log' 2>&1 & p=$!; echo $p; cat >/dev/null; kill $p; wait $p",
                client[i],
                cluster[i],
                dir = dir.path().display()
            );
            let mut child = Command::new("sh")
                .args(["-c", &script])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .context("cannot start nats-server (apt-get install nats-server)")?;
            let mut line = String::new();
            BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
            let stdin = child.stdin.take().context("stdin")?;
            nodes.push((child, stdin));
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let formed = (0..3).any(|i| {
                std::fs::read_to_string(dir.path().join(format!("n{i}.log")))
                    .is_ok_and(|l| l.contains("JetStream cluster new metadata leader"))
            });
            if formed {
                break;
            }
            if Instant::now() > deadline {
                bail!("the NATS cluster did not form within 30 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Nats {
            urls: client
                .iter()
                .map(|p| format!("nats://127.0.0.1:{p}"))
                .collect(),
            nodes,
            _dir: dir,
        })
    }

    fn store_config(&self, prefix: &str, host: &str) -> String {
        let servers = self
            .urls
            .iter()
            .map(|u| format!("\"{u}\""))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "[store]\nbackend = \"nats\"\n\n[store.nats]\nservers = [{servers}]\nreplicas = 3\nprefix = \"{prefix}\"\nhost = \"{host}\"\n"
        )
    }
}

/// Closed loops against every host at once (c=64 split over them), merged.
async fn load_all(hosts: &[Server], duration: Duration, size: usize, run: &str) -> LoadResult {
    let per = CONCURRENCY / hosts.len();
    let runs = hosts.iter().enumerate().map(|(i, h)| {
        let run = format!("{run}-{i}");
        let addr = h.ingress;
        async move {
            load::closed_loop(
                addr,
                "/hooks/bench",
                per,
                duration,
                size,
                "bench.event",
                &run,
            )
            .await
        }
    });
    let results = futures_util::future::join_all(runs).await;
    let mut merged = results[0].clone();
    for r in &results[1..] {
        merged.requests += r.requests;
        merged.errors += r.errors;
        merged.elapsed = merged.elapsed.max(r.elapsed);
        let _ = merged.latency.add(&r.latency);
    }
    merged
}

/// `agenthook_attempts_total{plugin="noop",outcome="done"}` of one host.
async fn done(host: &Server) -> anyhow::Result<u64> {
    let addr = host.admin.context("no admin")?;
    let text = crate::server::metrics_text(addr).await?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with("agenthook_attempts_total{"))
        .filter(|l| l.contains("plugin=\"noop\"") && l.contains("outcome=\"done\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64)
}

/// One shared-work run: `n` hosts on one deployment, load, drain.
async fn shared_work(
    suite: &Suite,
    nats: &Nats,
    n: usize,
    wasm: &[u8],
) -> anyhow::Result<(LoadResult, f64, Vec<u64>)> {
    let prefix = format!("bench{n}x{}", agenthook::clock::now_ms());
    let manifest = format!(
        "[[subscribe]]\nsource = \"bench\"\n\n[limits]\nmax_concurrency = {}\n",
        suite.opts.plugin_concurrency
    );
    let mut hosts = Vec::new();
    for i in 0..n {
        let spec = HostSpec {
            extra_config: nats.store_config(&prefix, &format!("h{i}")),
            plugins: vec![("noop".into(), wasm.to_vec(), manifest.clone())],
            ..HostSpec::default()
        };
        hosts.push(suite.host(&spec).await?);
    }
    let started = Instant::now();
    let result = load_all(&hosts, suite.opts.duration(), suite.opts.size, "shared").await;
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    let shares = loop {
        let mut shares = Vec::new();
        for h in &hosts {
            shares.push(done(h).await?);
        }
        if shares.iter().sum::<u64>() >= result.requests {
            break shares;
        }
        if Instant::now() > deadline {
            bail!("{n} hosts did not finish {} events", result.requests);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let done_rate = result.requests as f64 / started.elapsed().as_secs_f64();
    for h in hosts {
        h.stop().await?;
    }
    Ok((result, done_rate, shares))
}

/// Events/s and p50/p99 (ms) of `c` workers publishing unique events for `duration`,
/// with the dedup bucket (read + create) or with the message id alone.
async fn dedup_point(
    nats: &Nats,
    with_bucket: bool,
    duration: Duration,
    size: usize,
) -> anyhow::Result<(f64, f64, f64, u64)> {
    use async_nats::jetstream::{self, kv, stream};
    let addrs = nats
        .urls
        .iter()
        .map(|u| u.parse::<async_nats::ServerAddr>())
        .collect::<Result<Vec<_>, _>>()?;
    let client = async_nats::connect(addrs).await?;
    let js = jetstream::new(client);
    let tag = format!("dd{}{}", with_bucket as u8, agenthook::clock::now_ms());
    js.create_stream(stream::Config {
        name: format!("{tag}_events"),
        subjects: vec![format!("{tag}.events")],
        num_replicas: 3,
        ..Default::default()
    })
    .await?;
    let bucket = format!("{tag}_dedup");
    js.create_stream(stream::Config {
        name: format!("KV_{bucket}"),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        allow_rollup: true,
        deny_delete: true,
        num_replicas: 3,
        discard: stream::DiscardPolicy::New,
        max_age: Duration::from_secs(7 * 86_400),
        ..Default::default()
    })
    .await?;
    let dedup: kv::Store = js.get_key_value(&bucket).await?;
    let body = bytes::Bytes::from(vec![b'x'; size]);
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..CONCURRENCY {
        let (js, dedup, body, tag) = (js.clone(), dedup.clone(), body.clone(), tag.clone());
        tasks.spawn(async move {
            let mut lat = Vec::new();
            let mut n = 0u64;
            while Instant::now() < deadline {
                n += 1;
                let id = format!("{w:02}{n:012}");
                let t = Instant::now();
                if with_bucket && dedup.get(&id).await?.is_some() {
                    continue;
                }
                let msg = jetstream::message::PublishMessage::build()
                    .payload(body.clone())
                    .message_id(&id);
                js.send_publish(format!("{tag}.events"), msg).await?.await?;
                if with_bucket {
                    dedup.update(&id, "1".into(), 0).await?;
                }
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            anyhow::Ok(lat)
        });
    }
    let mut all = Vec::new();
    while let Some(r) = tasks.join_next().await {
        all.extend(r??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_by(f64::total_cmp);
    let q = |q: f64| {
        all.get(((all.len() as f64 * q) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    };
    Ok((
        all.len() as f64 / elapsed,
        q(0.5),
        q(0.99),
        all.len() as u64,
    ))
}

pub async fn run(suite: &mut Suite) -> anyhow::Result<()> {
    let nats = Nats::start()?;
    let (duration, size) = (suite.opts.duration(), suite.opts.size);

    // Ingest: redb vs NATS, one host each, no plugins.
    let redb = crate::ingest::point(
        suite.host(&HostSpec::default()).await?,
        CONCURRENCY,
        duration,
        size,
    )
    .await?;
    let on_nats = crate::ingest::point(
        suite
            .host(&HostSpec {
                extra_config: nats
                    .store_config(&format!("ingest{}", agenthook::clock::now_ms()), "h0"),
                ..HostSpec::default()
            })
            .await?,
        CONCURRENCY,
        duration,
        size,
    )
    .await?;
    let (r, n) = (&redb.load, &on_nats.load);
    suite.report.add(Section {
        key: "cluster_ingest",
        title: format!("11a. Ingest on NATS JetStream (3 nodes, replicas 3) vs redb, one host, closed loop c={CONCURRENCY}"),
        notes: vec![
            "Same host binary and load; only `[store] backend` differs. NATS: an event is acknowledged after a dedup-bucket read, the stream publish (acked by 2 of 3 servers) and the dedup-key create.".into(),
        ],
        header: vec!["", "redb", "NATS", "NATS / redb"],
        rows: vec![
            vec!["events/s".into(), f(r.rate(), 0), f(n.rate(), 0), ratio(n.rate(), r.rate())],
            vec!["p50 ms".into(), f(r.ms(0.5), 2), f(n.ms(0.5), 2), ratio(n.ms(0.5), r.ms(0.5))],
            vec!["p99 ms".into(), f(r.ms(0.99), 2), f(n.ms(0.99), 2), ratio(n.ms(0.99), r.ms(0.99))],
            vec!["errors".into(), r.errors.to_string(), n.errors.to_string(), String::new()],
        ],
        json: json!({ "redb": r.json(), "nats": n.json() }),
    });

    // Dedup: message id alone vs message id + bucket.
    let msg_id = dedup_point(&nats, false, duration, size).await?;
    let bucket = dedup_point(&nats, true, duration, size).await?;
    suite.report.add(Section {
        key: "cluster_dedup",
        title: format!("11c. JetStream dedup per event, client direct, c={CONCURRENCY}, 3 nodes, replicas 3"),
        notes: vec![
            "`Nats-Msg-Id` only: the server remembers each id for the stream's duplicate window, in memory. + bucket: a read and a create-if-absent in a KV bucket whose max age is the dedup window (7 days by default), on disk.".into(),
        ],
        header: vec!["", "Nats-Msg-Id only", "+ dedup bucket", "bucket / msg-id"],
        rows: vec![
            vec!["events/s".into(), f(msg_id.0, 0), f(bucket.0, 0), ratio(bucket.0, msg_id.0)],
            vec!["p50 ms".into(), f(msg_id.1, 2), f(bucket.1, 2), ratio(bucket.1, msg_id.1)],
            vec!["p99 ms".into(), f(msg_id.2, 2), f(bucket.2, 2), ratio(bucket.2, msg_id.2)],
        ],
        json: json!({
            "msg_id": { "rate_per_s": msg_id.0, "p50_ms": msg_id.1, "p99_ms": msg_id.2, "events": msg_id.3 },
            "bucket": { "rate_per_s": bucket.0, "p50_ms": bucket.1, "p99_ms": bucket.2, "events": bucket.3 },
        }),
    });

    // Shared work: 1 vs 3 hosts on one deployment.
    let wasm = suite.noop()?;
    let (one, one_done, one_shares) = shared_work(suite, &nats, 1, &wasm).await?;
    let (three, three_done, three_shares) = shared_work(suite, &nats, 3, &wasm).await?;
    let share = |s: &[u64]| {
        let total: u64 = s.iter().sum();
        s.iter()
            .map(|v| format!("{:.0}%", *v as f64 * 100.0 / total.max(1) as f64))
            .collect::<Vec<_>>()
            .join(" / ")
    };
    suite.report.add(Section {
        key: "cluster_hosts",
        title: "11b. One vs three hosts on one NATS deployment, no-op plugin, closed loop c=64 split over the hosts".into(),
        notes: vec![
            "Done/s: events acknowledged / (load start → every delivery done). Share: each host's `done` attempts. Hosts, NATS servers and the load generator share this machine's cores.".into(),
        ],
        header: vec!["", "1 host", "3 hosts", "3 / 1"],
        rows: vec![
            vec!["ingest events/s".into(), f(one.rate(), 0), f(three.rate(), 0), ratio(three.rate(), one.rate())],
            vec!["ingest p50 ms".into(), f(one.ms(0.5), 2), f(three.ms(0.5), 2), ratio(three.ms(0.5), one.ms(0.5))],
            vec!["ingest p99 ms".into(), f(one.ms(0.99), 2), f(three.ms(0.99), 2), ratio(three.ms(0.99), one.ms(0.99))],
            vec!["done/s".into(), f(one_done, 0), f(three_done, 0), ratio(three_done, one_done)],
            vec!["share of deliveries per host".into(), share(&one_shares), share(&three_shares), String::new()],
        ],
        json: json!({
            "one": { "ingest": one.json(), "done_per_s": one_done, "shares": one_shares },
            "three": { "ingest": three.json(), "done_per_s": three_done, "shares": three_shares },
        }),
    });
    Ok(())
}
