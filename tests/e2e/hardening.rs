//! Hardening (issue 12): the host against a hostile environment. A data dir whose file
//! system fills up under load: ingress refuses with 503 before the disk is full, every
//! acknowledged event survives (also a `kill -9` and a restart), and the host takes
//! events again, without a restart, once space returns. Each test mounts its own
//! size-limited tmpfs as the data dir (root only) and unmounts it however it ends.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{self, TestEnv, TestHost, manifest, plugins};

const MIB: u64 = 1 << 20;
/// Body padding of each flood event: big, so the disk fills in a second or two.
const PAD_BYTES: usize = 16 << 10;

/// A size-limited tmpfs mounted for one test; unmounted on drop, panicking or not.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mount a tmpfs of `size_mib` on `path`. Panics, with what to do, where mounting is
    /// not permitted: the test must not pass without having filled a disk.
    fn mount(path: &Path, size_mib: u64) -> Tmpfs {
        std::fs::create_dir_all(path).expect("create the mount point");
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m"), "tmpfs"])
            .arg(path)
            .output()
            .unwrap_or_else(|e| panic!("cannot run mount(8): {e}"));
        assert!(
            out.status.success(),
            "this test needs to mount a size-limited tmpfs as the host's data dir, which \
             takes root (CAP_SYS_ADMIN); `mount -t tmpfs` on {} failed: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Tmpfs {
            path: path.to_path_buf(),
        }
    }

    /// Bytes an unprivileged writer can still use (what the host's check reads).
    fn free_bytes(&self) -> u64 {
        let stat = rustix::fs::statvfs(&self.path).expect("statvfs on the tmpfs");
        stat.f_bavail * stat.f_frsize
    }

    /// Write a filler file that leaves `leave` bytes free; returns its path.
    fn fill_leaving(&self, name: &str, leave: u64) -> PathBuf {
        use std::io::Write as _;
        let path = self.path.join(name);
        let mut file = std::fs::File::create(&path).expect("create the filler file");
        let chunk = vec![0x5a_u8; MIB as usize];
        let mut left = self.free_bytes().saturating_sub(leave);
        while left > 0 {
            let n = left.min(MIB) as usize;
            file.write_all(&chunk[..n]).expect("write the filler file");
            left -= n as u64;
        }
        file.sync_all().expect("sync the filler file");
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let umount = |lazy: bool| {
            let mut cmd = std::process::Command::new("umount");
            if lazy {
                // A killed host may still hold the redb file for a moment.
                cmd.arg("--lazy");
            }
            cmd.arg(&self.path)
                .output()
                .is_ok_and(|out| out.status.success())
        };
        if !umount(false) && !umount(true) {
            eprintln!(
                "could not unmount the test tmpfs at {}",
                self.path.display()
            );
        }
    }
}

/// What a flood of events got back.
#[derive(Debug, Default)]
struct Flood {
    /// Sender ids answered 2xx: each must be stored.
    acked: Vec<String>,
    /// 503 `disk_full` answers that carried Retry-After.
    disk_full: usize,
    /// Every other answer, as (status, reason): a 503 `store_unavailable` means a write
    /// reached the store and failed there (the disk filled before ingress refused).
    other: Vec<(u16, String)>,
    /// Free bytes on the data dir's file system when the first `disk_full` came back.
    free_at_first_refusal: Option<u64>,
}

/// POST signed events `{prefix}-{n}` (16 KiB each, type `fill.event`) from 16 senders
/// until `done` holds, `max_events` were sent or `within` passed.
async fn flood(
    host: &Arc<TestHost>,
    fs: &Arc<Tmpfs>,
    prefix: &str,
    max_events: u64,
    within: Duration,
    done: fn(&Flood) -> bool,
) -> Flood {
    let result = Arc::new(Mutex::new(Flood::default()));
    let (next, stop) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let deadline = Instant::now() + within;
    let mut senders = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (host, fs, result, next, stop) = (
            host.clone(),
            fs.clone(),
            result.clone(),
            next.clone(),
            stop.clone(),
        );
        let prefix = prefix.to_string();
        senders.spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= max_events || Instant::now() >= deadline || stop.load(Ordering::Relaxed) {
                    return;
                }
                let id = format!("{prefix}-{n}");
                let body = json!({"type": "fill.event", "n": n, "pad": "x".repeat(PAD_BYTES)});
                let r = host.post_signed(&id, &body).await;
                let reason = r.json["reason"].as_str().unwrap_or("").to_string();
                let mut f = result.lock().expect("flood lock");
                match (r.status, reason.as_str()) {
                    (200, _) => f.acked.push(id),
                    (503, "disk_full") if r.headers.contains_key("retry-after") => {
                        f.disk_full += 1;
                        if f.free_at_first_refusal.is_none() {
                            f.free_at_first_refusal = Some(fs.free_bytes());
                        }
                    }
                    (503, "disk_full") => f.other.push((503, "disk_full, no Retry-After".into())),
                    (status, _) => f.other.push((status, reason)),
                }
                if done(&f) {
                    stop.store(true, Ordering::Relaxed);
                }
            }
        });
    }
    while let Some(joined) = senders.join_next().await {
        joined.expect("sender task");
    }
    Arc::try_unwrap(result)
        .expect("senders are done")
        .into_inner()
        .expect("flood lock")
}

/// Assert that every sender id in `acked` is stored, through the admin API.
async fn assert_all_stored(host: &TestHost, acked: &[String], when: &str) {
    let stored: HashSet<String> = host
        .all_events()
        .await
        .iter()
        .filter_map(|e| e["event_id"].as_str().map(str::to_string))
        .collect();
    let lost: Vec<&String> = acked.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(
        lost.is_empty(),
        "{when}: {} of {} acknowledged events are not stored, e.g. {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(5)]
    );
}

/// Post one event; Some(()) once it is stored (for `wait_until`).
async fn stored(host: &TestHost, id: &str) -> Option<()> {
    let r = host.post_signed(id, &json!({"type": "fill.event"})).await;
    (r.status == 200).then_some(())
}

/// The disk fills under load: a 64 MiB tmpfs with `store.min_free_disk_mb = 16`, most of
/// it taken by a filler file, then 16 senders of 16 KiB events (and a plugin subscribed
/// to them, so deliveries are written too) until ingress has refused 200 of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn disk_full_refuses_before_the_disk_is_full_keeps_every_ack_and_resumes() {
    const MIN_FREE_MIB: u64 = 16;
    let started = Instant::now();
    let mut env = TestEnv::new();
    env.extra_config = format!("[store]\nmin_free_disk_mb = {MIN_FREE_MIB}\n");
    env.install_plugin("noop", plugins::TEST_NOOP, &manifest("fill.*", ""));
    let fs = Arc::new(Tmpfs::mount(&env.data_dir(), 64));
    let host = Arc::new(env.start_binary().await);

    // 12 MiB above the threshold: the redb file grows into it with the events.
    let filler = fs.fill_leaving("filler", (MIN_FREE_MIB + 12) * MIB);
    let flood_1 = flood(&host, &fs, "fill", 20_000, Duration::from_secs(20), |f| {
        f.disk_full >= 200
    })
    .await;
    let free_after = fs.free_bytes();
    println!(
        "flood: {} acked, {} refused disk_full, other {:?}; free at the first refusal {:?} \
         MiB, after the flood {} MiB",
        flood_1.acked.len(),
        flood_1.disk_full,
        flood_1.other,
        flood_1.free_at_first_refusal.map(|b| b / MIB),
        free_after / MIB
    );
    assert!(
        flood_1.other.is_empty(),
        "every answer is 200 or 503 disk_full with Retry-After; a 503 store_unavailable \
         means a write reached a full disk: {:?}",
        flood_1.other
    );
    assert!(
        flood_1.disk_full >= 200,
        "ingress never refused 200 events with disk_full"
    );
    assert!(
        !flood_1.acked.is_empty(),
        "no event was acknowledged before the disk filled"
    );
    // Refused before the disk was full, and nothing ate into the reserve after that.
    assert!(
        free_after >= MIN_FREE_MIB * MIB / 2,
        "ingress let the disk fill to {} KiB free (threshold {MIN_FREE_MIB} MiB)",
        free_after >> 10
    );
    let (_, _, metrics) = host.get_text(host.admin, "/metrics").await;
    assert!(
        metrics
            .lines()
            .any(|l| l.contains("disk_full") && !l.starts_with('#')),
        "/metrics counts the disk_full refusals"
    );
    assert_all_stored(&host, &flood_1.acked, "while the disk is full").await;

    // Space returns: the host takes events again without a restart.
    std::fs::remove_file(&filler).expect("remove the filler file");
    harness::wait_until(
        "ingress takes events again once space returned",
        Duration::from_secs(10),
        || stored(&host, "after-space-returned"),
    )
    .await;
    let flood_2 = flood(&host, &fs, "more", 100, Duration::from_secs(10), |_| false).await;
    assert_eq!(
        (flood_2.acked.len(), flood_2.disk_full, flood_2.other.len()),
        (100, 0, 0),
        "with space back every event is taken: {flood_2:?}"
    );
    let mut acked = flood_1.acked;
    acked.extend(flood_2.acked);
    acked.push("after-space-returned".into());
    harness::wait_until(
        "every acknowledged event is delivered",
        Duration::from_secs(30),
        || async {
            let done = host
                .all_events()
                .await
                .iter()
                .filter(|e| e["status"] == "done")
                .count();
            (done >= acked.len()).then_some(())
        },
    )
    .await;

    // Ack means durable: kill -9, restart on the same data dir, every ack is there.
    let host = Arc::try_unwrap(host).ok().expect("flood senders are done");
    host.kill9().await;
    let host = env.start_binary().await;
    assert_all_stored(&host, &acked, "after kill -9 and a restart").await;
    host.stop().await;
    println!("disk-full test took {:?}", started.elapsed());
}

/// A write that does reach a full disk (here: no reserve, `store.min_free_disk_mb = 0`;
/// in production, another process filling the disk, or writes ingress does not gate —
/// outcomes, leases, kv — eating the reserve) fails alone: its senders get 503, earlier
/// acks stay, and once space returns the store takes writes again without a restart.
/// redb refuses every operation after a failed write until the file is reopened, which
/// the store's writer does.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_that_hits_a_full_disk_fails_alone_and_the_store_recovers() {
    let started = Instant::now();
    let mut env = TestEnv::new();
    env.extra_config = "[store]\nmin_free_disk_mb = 0\n".into();
    let fs = Arc::new(Tmpfs::mount(&env.data_dir(), 64));
    let host = Arc::new(env.start_binary().await);

    let filler = fs.fill_leaving("filler", 8 * MIB);
    let full = flood(&host, &fs, "fill", 20_000, Duration::from_secs(20), |f| {
        f.other.len() >= 50
    })
    .await;
    println!(
        "flood: {} acked, {} failed, free after {} KiB",
        full.acked.len(),
        full.other.len(),
        fs.free_bytes() >> 10
    );
    assert!(!full.acked.is_empty(), "no event was acknowledged");
    assert!(
        full.other.len() >= 50,
        "the disk never filled: {} acked",
        full.acked.len()
    );
    assert!(
        full.other
            .iter()
            .all(|(status, reason)| (*status, reason.as_str()) == (503, "store_unavailable")),
        "a write that failed on a full disk is answered 503 store_unavailable: {:?}",
        full.other
    );

    std::fs::remove_file(&filler).expect("remove the filler file");
    harness::wait_until(
        "the store takes writes again once space returned",
        Duration::from_secs(10),
        || stored(&host, "after-space-returned"),
    )
    .await;
    let more = flood(&host, &fs, "more", 100, Duration::from_secs(10), |_| false).await;
    assert_eq!(
        (more.acked.len(), more.other.len()),
        (100, 0),
        "with space back every event is taken: {more:?}"
    );
    let mut acked = full.acked;
    acked.extend(more.acked);
    acked.push("after-space-returned".into());
    assert_all_stored(&host, &acked, "after space returned").await;
    let ready = host.readyz().await.json;
    let store_check = ready["checks"]
        .as_array()
        .and_then(|checks| checks.iter().find(|c| c["name"] == "store"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        store_check["ok"], true,
        "/readyz finds the store writable again: {ready}"
    );

    let host = Arc::try_unwrap(host).ok().expect("flood senders are done");
    host.kill9().await;
    let host = env.start_binary().await;
    assert_all_stored(&host, &acked, "after kill -9 and a restart").await;
    host.stop().await;
    println!("full-disk write test took {:?}", started.elapsed());
}
