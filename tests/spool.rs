//! The crash-safe spool (`spool_dir`): a program really killed with SIGKILL while it logs
//! loses none of the records whose `info!` returned — the next process started on the same
//! spool sends them first, under their original resources — and the spool's bounds and
//! misuse are errors or counted losses.
//!
//! The killed program is this test binary run again as a child (`child_logs_until_killed`,
//! which does nothing unless `ZENML_OTEL_SPOOL_CHILD` is set). It prints each record's sequence
//! number once its `info!` returned, so the parent knows exactly which records must arrive.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::WAIT;
use tracing::info;
use tracing_subscriber::layer::SubscriberExt;
use zenml_otel::testing::OtlpReceiver;
use zenml_otel::{ExportStats, OtelLogStoreConfig, ZenmlOtelLayer};

const CHILD: &str = "ZENML_OTEL_SPOOL_CHILD";
/// Sequence numbers of the `n`th child start at `n * BASE`.
const BASE: u64 = 1_000_000;
const RUN: &str = "b2d5ba44-6a6c-4c3b-9a53-3c45bdc77e10";

fn spool_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("zenml-otel-spool-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn config(endpoint: String, dir: &Path) -> OtelLogStoreConfig {
    OtelLogStoreConfig {
        endpoint: Some(endpoint),
        spool_dir: Some(dir.to_owned()),
        // The smallest spool: 256 KiB segments, so a child fills and reuses dozens of them.
        max_spool_bytes: 8 * 1024 * 1024,
        // Synced to the disk as it goes, so that path is killed mid-way too.
        spool_sync_millis: 100,
        schedule_delay_millis: 200,
        max_queue_size: 100_000,
        max_export_batch_size: 512,
        ..OtelLogStoreConfig::default()
    }
}

/// In the child: logs about 20,000 records/s inside a run span (from
/// `ZENML_OTEL_SPOOL_CHILD_THREADS` threads, 1 by default, each its share), printing each
/// sequence number after its `info!` returned, until killed (or `ZENML_OTEL_SPOOL_CHILD_COUNT`
/// records, then shuts down and prints its stats).
#[test]
fn child_logs_until_killed() {
    let Ok(setup) = std::env::var(CHILD) else {
        return; // not a child: nothing to do
    };
    let (endpoint, dir, first) = match setup.split('|').collect::<Vec<_>>()[..] {
        [endpoint, dir, first] => (endpoint, dir, first.parse::<u64>().unwrap()),
        _ => panic!("{CHILD}={setup}"),
    };
    let count: u64 =
        std::env::var("ZENML_OTEL_SPOOL_CHILD_COUNT").map_or(u64::MAX, |n| n.parse().unwrap());
    let threads: u64 =
        std::env::var("ZENML_OTEL_SPOOL_CHILD_THREADS").map_or(1, |n| n.parse().unwrap());
    let layer = ZenmlOtelLayer::new(config(endpoint.into(), Path::new(dir))).unwrap();
    let handle = layer.handle();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    let loggers: Vec<_> = (0..threads)
        .map(|thread| {
            let dispatch = dispatch.clone();
            std::thread::spawn(move || {
                tracing::dispatcher::with_default(&dispatch, || {
                    log_share(first, count, thread, threads)
                })
            })
        })
        .collect();
    loggers.into_iter().for_each(|t| t.join().unwrap());
    let _ = handle.shutdown();
    let stats = handle.stats();
    writeln!(
        std::io::stdout().lock(),
        "stats {} {}",
        stats.recovered,
        stats.spool_torn
    )
    .unwrap();
}

/// One logging thread's share of the child's records: every `threads`th from `first + thread`,
/// each printed once its `info!` returned, 20 records a millisecond in all.
fn log_share(first: u64, count: u64, thread: u64, threads: u64) {
    let stdout = std::io::stdout();
    let run = tracing::info_span!("run", zenml.pipeline_run_id = RUN);
    let _run = run.enter();
    let started = Instant::now();
    let seqs = (first..first.saturating_add(count)).skip(thread as usize);
    for (n, seq) in seqs.step_by(threads as usize).enumerate() {
        info!(seq, "spooled");
        writeln!(stdout.lock(), "{seq}").unwrap();
        let due = started + Duration::from_micros(50 * threads * n as u64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
}

struct Started {
    child: Child,
    /// The sequence numbers whose `info!` returned, as the child printed them.
    returned: Arc<std::sync::Mutex<Vec<u64>>>,
    stats: Arc<std::sync::Mutex<Option<(u64, u64)>>>,
    reader: std::thread::JoinHandle<()>,
}

fn start_child(
    endpoint: &str,
    dir: &Path,
    first: u64,
    count: Option<u64>,
    threads: u64,
) -> Started {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "--exact",
            "child_logs_until_killed",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, format!("{endpoint}|{}|{first}", dir.display()))
        .env("ZENML_OTEL_SPOOL_CHILD_THREADS", threads.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(count) = count {
        command.env("ZENML_OTEL_SPOOL_CHILD_COUNT", count.to_string());
    }
    let mut child = command.spawn().unwrap();
    let returned: Arc<std::sync::Mutex<Vec<u64>>> = Arc::default();
    let stats: Arc<std::sync::Mutex<Option<(u64, u64)>>> = Arc::default();
    let lines = BufReader::new(child.stdout.take().unwrap());
    let reader = {
        let (returned, stats) = (Arc::clone(&returned), Arc::clone(&stats));
        std::thread::spawn(move || {
            for line in lines.lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("stats ") {
                    let mut numbers = rest.split(' ').map(|n| n.parse().unwrap());
                    *stats.lock().unwrap() =
                        Some((numbers.next().unwrap(), numbers.next().unwrap()));
                } else if let Ok(seq) = line.trim().parse::<u64>() {
                    returned.lock().unwrap().push(seq);
                }
            }
        })
    };
    Started {
        child,
        returned,
        stats,
        reader,
    }
}

fn distinct(receiver: &OtlpReceiver) -> BTreeSet<u64> {
    seqs(receiver).into_iter().collect()
}

fn seqs(receiver: &OtlpReceiver) -> Vec<u64> {
    receiver
        .records()
        .iter()
        .filter_map(|r| r.attr_str("seq")?.parse().ok())
        .collect()
}

/// When round `round` is killed: before the first batch (200 ms), around it, and well after;
/// from the fifth on, at pseudo-random instants up to 1.5 s.
fn kill_after(round: u64) -> Duration {
    let millis = match round {
        0..=3 => [90, 230, 700, 1300][round as usize],
        _ => 50 + round.wrapping_mul(2_654_435_761) % 1450,
    };
    Duration::from_millis(millis)
}

/// Kills a logging child `kills` times at instants spread over its first second, restarting it
/// on the same spool each time; a last child recovers and exits. Returns the receiver, every
/// sequence number whose `info!` returned, and the last child's `(recovered, spool_torn)`.
fn kill_and_restart(
    kills: u64,
    threads: u64,
    name: &str,
) -> (OtlpReceiver, BTreeSet<u64>, (u64, u64)) {
    let receiver = OtlpReceiver::start().unwrap();
    let dir = spool_dir(name);
    let mut must_arrive = BTreeSet::new();
    for round in 0..kills {
        let first = round * BASE;
        let mut started = start_child(&receiver.endpoint(), &dir, first, None, threads);
        // Timed from its first record: starting the process takes longer on a loaded machine.
        let logging = Instant::now();
        while started.returned.lock().unwrap().is_empty() && logging.elapsed() < WAIT {
            std::thread::sleep(Duration::from_millis(1));
        }
        let after = kill_after(round);
        std::thread::sleep(after);
        started.child.kill().unwrap();
        started.child.wait().unwrap();
        started.reader.join().unwrap();
        let returned = std::mem::take(&mut *started.returned.lock().unwrap());
        assert!(
            !returned.is_empty(),
            "round {round}: the child logged nothing in {after:?}"
        );
        must_arrive.extend(returned);
    }
    // The last one logs a few of its own and shuts down normally.
    let last = start_child(&receiver.endpoint(), &dir, kills * BASE, Some(10), 1);
    let mut child = last.child;
    assert!(child.wait().unwrap().success());
    last.reader.join().unwrap();
    must_arrive.extend(kills * BASE..kills * BASE + 10);
    let stats = last
        .stats
        .lock()
        .unwrap()
        .expect("the last child printed its stats");
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline && !distinct(&receiver).is_superset(&must_arrive) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let leftover: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(leftover, ["lock"], "every segment acknowledged and removed");
    std::fs::remove_dir_all(&dir).unwrap();
    (receiver, must_arrive, stats)
}

/// Four kills of one logging thread; `ZENML_OTEL_SPOOL_KILLS=20` measures more (BENCHMARKS.md).
#[test]
fn records_of_a_killed_process_arrive_after_the_restart() {
    let kills = std::env::var("ZENML_OTEL_SPOOL_KILLS").map_or(4, |n| n.parse().unwrap());
    killed_and_restarted(kills, 1, "kill");
}

/// The same with eight logging threads, each in its own lane.
#[test]
fn records_of_a_killed_process_with_eight_threads_arrive_after_the_restart() {
    let kills = std::env::var("ZENML_OTEL_SPOOL_KILLS").map_or(4, |n| n.parse().unwrap());
    killed_and_restarted(kills, 8, "kill-8");
}

/// Duplicates a kill can leave: the requests in flight when it came (the collector has them,
/// the child never saw the answer), at most the pipeline's three of `max_export_batch_size`.
const DUPLICATES_PER_KILL: usize = 3 * 512;

fn killed_and_restarted(kills: u64, threads: u64, name: &str) {
    let (receiver, must_arrive, (recovered, torn)) = kill_and_restart(kills, threads, name);
    let arrived = seqs(&receiver);
    let distinct: BTreeSet<u64> = arrived.iter().copied().collect();
    let lost: Vec<_> = must_arrive.difference(&distinct).take(10).collect();
    let duplicates = arrived.len() - distinct.len();
    eprintln!(
        "{kills} kills of {threads} threads: {} records whose info! returned, {} arrived, {duplicates} duplicates, \
         {recovered} recovered by the last start, {torn} torn segments",
        must_arrive.len(),
        distinct.len(),
    );
    assert!(lost.is_empty(), "lost (first 10): {lost:?}");
    assert!(
        duplicates <= kills as usize * DUPLICATES_PER_KILL,
        "{duplicates} duplicates in {kills} kills"
    );
    // Only records of the children: nothing invented.
    assert!(distinct.iter().all(|s| s % BASE < BASE / 2));
    // Each restart replays what its predecessor left: some rounds leave records behind.
    let resource: BTreeSet<_> = receiver
        .records()
        .iter()
        .map(|r| r.resource_attr("zenml.pipeline_run_id"))
        .collect();
    assert_eq!(
        resource,
        BTreeSet::from([Some(RUN.to_owned())]),
        "original resources"
    );
}

#[test]
fn a_spool_has_one_live_owner_and_bad_directories_are_refused() {
    let dir = spool_dir("owner");
    let receiver = OtlpReceiver::start().unwrap();
    let first = ZenmlOtelLayer::new(config(receiver.endpoint(), &dir)).unwrap();
    let error = ZenmlOtelLayer::new(config(receiver.endpoint(), &dir)).unwrap_err();
    assert_eq!(error.field(), Some("spool_dir"), "{error}");
    assert!(
        error.to_string().contains("another live process"),
        "{error}"
    );
    drop(first);
    // A file where the directory should be.
    let file = dir.join("lock");
    let error = ZenmlOtelLayer::new(config(receiver.endpoint(), &file.join("spool"))).unwrap_err();
    assert_eq!(error.field(), Some("spool_dir"), "{error}");
    let small = OtelLogStoreConfig {
        max_spool_bytes: 1024,
        ..config(receiver.endpoint(), &dir)
    };
    let error = ZenmlOtelLayer::new(small).unwrap_err();
    assert_eq!(error.field(), Some("max_spool_bytes"), "{error}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Records a full spool cannot take go on in memory (`unspooled`), as without a spool: here
/// nothing listens, so they fail, counted; what the spool took stays there.
#[test]
fn a_full_spool_keeps_what_it_holds_and_counts_the_rest() {
    let dir = spool_dir("full");
    let refused = common::refused_endpoint();
    let layer = ZenmlOtelLayer::new(OtelLogStoreConfig {
        max_spool_bytes: 8 * 1024 * 1024,
        max_retry_elapsed_millis: 1,
        export_timeout_millis: 1000,
        ..config(refused, &dir)
    })
    .unwrap();
    let handle = layer.handle();
    let big = "x".repeat(64 * 1024);
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        for seq in 0..200u64 {
            info!(seq, big = big.as_str(), "big");
        }
    });
    let _ = handle.shutdown();
    let stats: ExportStats = handle.stats();
    assert_eq!(stats.emitted, 200);
    assert!(stats.unspooled > 0, "8 MiB cannot hold 12.8 MB: {stats:?}");
    // What the spool took could not be sent (nothing listens): it stays there, counted; the
    // rest failed in memory.
    assert!(stats.spooled > 0, "{stats:?}");
    assert_eq!((stats.exported, stats.dropped), (0, 0), "{stats:?}");
    assert_eq!(stats.failed, stats.unspooled, "{stats:?}");
    assert_eq!(stats.failed + stats.spooled, 200, "{stats:?}");
    let left = stats.spooled;
    // What it held stays for the next start, which sends it, and then logs as usual: the
    // recovered records leave the queue's byte bound as they found it.
    let receiver = OtlpReceiver::start().unwrap();
    let layer = ZenmlOtelLayer::new(OtelLogStoreConfig {
        max_queue_bytes: 16 * 1024 * 1024,
        ..config(receiver.endpoint(), &dir)
    })
    .unwrap();
    let handle = layer.handle();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        handle.force_flush().unwrap();
        for seq in 0..1000u64 {
            info!(seq, small = &big[..1024], "after the recovery");
        }
    });
    handle.shutdown().unwrap();
    let stats = handle.stats();
    assert_eq!(stats.recovered, left, "{stats:?}");
    assert_eq!((stats.emitted, stats.dropped), (1000, 0), "{stats:?}");
    assert_eq!(stats.exported, stats.recovered + 1000, "{stats:?}");
    let all = stats.exported as usize;
    assert_eq!(receiver.wait_for_records(all, WAIT).len(), all);
    std::fs::remove_dir_all(&dir).unwrap();
}
