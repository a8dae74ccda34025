//! Scenario `ingest`: durable ingest (verify + group commit + ack, no plugins) at
//! several concurrencies, against the same host committing once per event
//! (`store.max_batch = 1`), in one run. The ratio is what the group commit buys.

use std::time::Duration;

use crate::load::{self, LoadResult};

/// A host on loopback with a temp data dir, serving one `bench` source and no plugins.
pub struct BenchHost {
    pub ingress: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl BenchHost {
    /// `extra` is appended to the config (e.g. a `[store]` table).
    pub async fn start(
        extra: &str,
        plugins_dir: Option<&std::path::Path>,
    ) -> anyhow::Result<BenchHost> {
        let dir = tempfile::tempdir()?;
        let plugins = match plugins_dir {
            Some(p) => p.to_path_buf(),
            None => {
                let p = dir.path().join("plugins.d");
                std::fs::create_dir_all(&p)?;
                p
            }
        };
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\nplugins_dir = \"{}\"\nadmin_token = \"bench\"\n\n[sources.bench]\nscheme = \"standard-webhooks\"\nsecrets = [\"{}\"]\n\n{extra}\n",
            dir.path().join("data").display(),
            plugins.display(),
            load::SECRET,
        );
        let config = agenthook::config::Config::parse(&text, std::path::Path::new("bench"), false)?;
        let ingress = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = ingress.local_addr()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let host = agenthook::Host::prepare(config).await?;
        let task = tokio::spawn(async move {
            let listeners = agenthook::Listeners { ingress, admin };
            if let Err(e) = host
                .serve(listeners, async move {
                    let _ = rx.await;
                })
                .await
            {
                eprintln!("bench host stopped with an error: {e}");
            }
        });
        Ok(BenchHost {
            ingress: addr,
            stop: Some(tx),
            task,
            _dir: dir,
        })
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let _ = self.task.await;
    }
}

/// One row of the ingest table.
#[derive(Debug, Clone)]
pub struct IngestRow {
    pub concurrency: usize,
    pub group: LoadResult,
    pub single: LoadResult,
}

/// Measure both modes at each concurrency; each point runs `duration` on a fresh host.
pub async fn run(
    concurrencies: &[usize],
    duration: Duration,
    body_size: usize,
) -> anyhow::Result<Vec<IngestRow>> {
    let mut rows = Vec::new();
    for &c in concurrencies {
        let mut results = Vec::new();
        for extra in ["", "[store]\nmax_batch = 1\n"] {
            let host = BenchHost::start(extra, None).await?;
            // A short warm-up so connection setup and file growth don't skew the point.
            load::closed_loop(
                host.ingress,
                "/hooks/bench",
                c,
                Duration::from_millis(300),
                body_size,
                "bench.event",
                "warm",
            )
            .await;
            let r = load::closed_loop(
                host.ingress,
                "/hooks/bench",
                c,
                duration,
                body_size,
                "bench.event",
                "run",
            )
            .await;
            host.stop().await;
            results.push(r);
        }
        let single = results.pop().expect("two results");
        let group = results.pop().expect("two results");
        rows.push(IngestRow {
            concurrency: c,
            group,
            single,
        });
    }
    Ok(rows)
}

/// `ingest [--quick] [--seconds N] [--size BYTES]`: prints the table.
pub fn main(args: &[String]) -> anyhow::Result<()> {
    let mut seconds = 5.0;
    let mut size = 1024;
    let mut concurrencies = vec![1, 16, 64, 256];
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => {
                seconds = 1.0;
                concurrencies = vec![1, 64];
            }
            "--seconds" => {
                seconds = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| anyhow::anyhow!("--seconds takes a number"))?
            }
            "--size" => {
                size = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| anyhow::anyhow!("--size takes bytes"))?
            }
            other => anyhow::bail!("unknown option {other}"),
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let rows = rt.block_on(run(&concurrencies, Duration::from_secs_f64(seconds), size))?;
    println!(
        "ingest: durable ack (verify + fsync'd commit), {size}-byte events, {seconds} s per point"
    );
    println!(
        "| concurrency | group commit ev/s | p50 ms | p99 ms | one commit per event ev/s | p50 ms | p99 ms | ratio |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {:.0} | {:.2} | {:.2} | {:.0} | {:.2} | {:.2} | {:.1}× |",
            r.concurrency,
            r.group.rate(),
            r.group.ms(0.5),
            r.group.ms(0.99),
            r.single.rate(),
            r.single.ms(0.5),
            r.single.ms(0.99),
            r.group.rate() / r.single.rate().max(1e-9)
        );
        if r.group.errors + r.single.errors > 0 {
            println!(
                "  ({} / {} failed requests)",
                r.group.errors, r.single.errors
            );
        }
    }
    Ok(())
}
