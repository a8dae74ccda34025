//! Real `nats-server` processes for the tests that run on the NATS backend: a 3-node
//! JetStream cluster on loopback (each node its own store dir and ports), the one
//! shared by every test of a process, or one of a test's own when it kills nodes.
//! Every node is held by a shell that kills it when this process's end of its stdin
//! closes, so no server outlives the test binary.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// One node: its client URL, its pid, and the pipe that keeps it alive.
pub struct Node {
    pub url: String,
    pub pid: u32,
    _stdin: ChildStdin,
    /// The shell holding the node; it exits with it.
    _shell: std::process::Child,
}

/// A JetStream cluster of real `nats-server` processes.
pub struct NatsCluster {
    pub nodes: Vec<Node>,
    pub dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

impl NatsCluster {
    /// Start `n` nodes (1 or 3) and wait until JetStream has a metadata leader.
    pub fn start(n: usize) -> NatsCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let client: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let cluster: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let routes = cluster
            .iter()
            .map(|p| format!("nats-route://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut nodes = Vec::new();
        for i in 0..n {
            let store = dir.path().join(format!("n{i}"));
            let log = dir.path().join(format!("n{i}.log"));
            let mut args = format!(
                "-js -sd '{}' -a 127.0.0.1 -p {} -n n{i}",
                store.display(),
                client[i]
            );
            if n > 1 {
                args += &format!(
                    " --cluster_name agenthook-test --cluster nats://127.0.0.1:{} --routes {routes}",
                    cluster[i]
                );
            }
            let script = format!(
                "nats-server {args} >'{}' 2>&1 & p=$!; echo $p; cat >/dev/null; kill -9 $p",
                log.display()
            );
            let mut child = Command::new("sh")
                .args(["-c", &script])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("sh");
            let mut line = String::new();
            BufReader::new(child.stdout.take().expect("stdout"))
                .read_line(&mut line)
                .expect("read pid");
            nodes.push(Node {
                url: format!("nats://127.0.0.1:{}", client[i]),
                pid: line.trim().parse().expect("pid"),
                _stdin: child.stdin.take().expect("stdin"),
                _shell: child,
            });
        }
        let ready = if n > 1 {
            "JetStream cluster new metadata leader"
        } else {
            "Server is ready"
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let logs: Vec<String> = (0..n)
                .map(|i| {
                    std::fs::read_to_string(dir.path().join(format!("n{i}.log")))
                        .unwrap_or_default()
                })
                .collect();
            if logs.iter().any(|l| l.contains(ready)) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the NATS cluster did not form within 30 s (is nats-server installed? apt-get install nats-server); logs:\n{}",
                logs.join("\n---\n")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        NatsCluster { nodes, dir }
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.url.clone()).collect()
    }

    /// `kill -9` node `i`.
    pub fn kill9(&self, i: usize) {
        let status = Command::new("kill")
            .args(["-9", &self.nodes[i].pid.to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// The `[store]` tables for a host on this cluster.
    pub fn store_config(
        &self,
        prefix: &str,
        host: &str,
        replicas: usize,
        store_keys: &str,
    ) -> String {
        let servers = self
            .urls()
            .iter()
            .map(|u| format!("\"{u}\""))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "[store]\nbackend = \"nats\"\n{store_keys}\n[store.nats]\nservers = [{servers}]\nprefix = \"{prefix}\"\nhost = \"{host}\"\nreplicas = {replicas}\n"
        )
    }
}

/// Whether the event-path tests run on NATS this time (`AGENTHOOK_TEST_STORE=nats`).
pub fn enabled() -> bool {
    std::env::var("AGENTHOOK_TEST_STORE").is_ok_and(|v| v == "nats")
}

/// The cluster every test of this process shares.
pub fn shared() -> &'static NatsCluster {
    static CLUSTER: OnceLock<NatsCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| NatsCluster::start(3))
}

/// A prefix no other test of this process uses.
pub fn fresh_prefix() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "e{}x{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
