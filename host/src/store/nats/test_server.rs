//! A real `nats-server` with JetStream for the store's tests: started once per test
//! process on a free loopback port, its store in a temp dir, and killed when the
//! process exits (a shell holds it and kills it when our end of its stdin closes).

use std::io::{BufRead, BufReader};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::config::NatsConfig;

struct Server {
    url: String,
    /// Held open for the life of the process; closing it stops the server.
    _stdin: ChildStdin,
    /// The shell; it exits with the server when the process ends.
    _shell: std::process::Child,
    _dir: tempfile::TempDir,
}

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let script = format!(
            "nats-server -js -sd '{}' -a 127.0.0.1 -p {port} >'{}/log' 2>&1 & p=$!; echo started; cat >/dev/null; kill -9 $p",
            dir.path().display(),
            dir.path().display()
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
            .expect("read");
        let url = format!("nats://127.0.0.1:{port}");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "nats-server did not start (is it installed? apt-get install nats-server); log: {}",
                std::fs::read_to_string(dir.path().join("log")).unwrap_or_default()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Server {
            url,
            _stdin: child.stdin.take().expect("stdin"),
            _shell: child,
            _dir: dir,
        }
    })
}

/// A config on the test server under a prefix no other test uses.
pub(in crate::store) fn config() -> NatsConfig {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NatsConfig {
        servers: vec![server().url.clone()],
        prefix: format!(
            "t{}x{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ),
        host: Some("test-host".into()),
        ..NatsConfig::default()
    }
}
