//! The spool keeps its promise ("whatever is still there at shutdown stays for the next
//! start") where it matters most: a collector that hangs while the program shuts down, a spool
//! directory on a host shared with other users, a spool that cannot take a record.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::watchdog;
use tracing::info;
use tracing_subscriber::layer::SubscriberExt;
use zenml_otel::testing::{Fault, OtlpReceiver};
use zenml_otel::{ExportStats, OtelLogStoreConfig, ZenmlOtelLayer};

fn spool_dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("zenml-otel-promise-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn config(receiver: &OtlpReceiver, dir: &Path) -> OtelLogStoreConfig {
    OtelLogStoreConfig {
        endpoint: Some(receiver.endpoint()),
        spool_dir: Some(dir.to_owned()),
        max_spool_bytes: 8 * 1024 * 1024,
        export_timeout_millis: 2_000,
        max_export_batch_size: 512,
        max_queue_size: 10_000,
        schedule_delay_millis: 100,
        ..OtelLogStoreConfig::default()
    }
}

/// Logs `n` numbered records (`seq` from `first`) through a fresh layer, shuts it down and
/// returns its counts.
fn log_and_shut_down(config: OtelLogStoreConfig, first: u64, n: u64) -> ExportStats {
    let layer = ZenmlOtelLayer::new(config).expect("valid config");
    let handle = layer.handle();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        for seq in first..first + n {
            info!(seq, "spooled");
        }
    });
    let _ = handle.shutdown();
    handle.stats()
}

fn seqs(receiver: &OtlpReceiver) -> std::collections::BTreeSet<u64> {
    receiver
        .records()
        .iter()
        .filter_map(|record| record.attr_str("seq")?.parse().ok())
        .collect()
}

/// Six rounds: a collector that takes connections and never answers while 1,536 records (three
/// batches) are shut down, then a restart on the same spool against a healthy one. The batches
/// that wait their turn behind the hung request meet shutdown's deadline at different points
/// from round to round.
#[test]
fn shutdown_against_a_hung_collector_keeps_every_record_for_the_next_start() {
    watchdog("hung collector rounds", || {
        for round in 0..6u64 {
            let dir = spool_dir(&format!("hung-{round}"));
            let hung = OtlpReceiver::start().unwrap();
            hung.set_fault(Some(Fault::Blackhole));
            let started = Instant::now();
            let stats = log_and_shut_down(config(&hung, &dir), 0, 1_536);
            assert!(
                started.elapsed() < Duration::from_millis(2_000 + 1_500),
                "round {round}: shutdown took {:?}",
                started.elapsed()
            );
            assert_eq!(
                (stats.exported, stats.failed, stats.dropped, stats.spooled),
                (0, 0, 0, 1_536),
                "round {round}: kept, not lost: {stats:?}"
            );
            drop(hung);
            let healthy = OtlpReceiver::start().unwrap();
            let after = log_and_shut_down(config(&healthy, &dir), 1_000_000, 0);
            assert_eq!(after.recovered, 1_536, "round {round}: {after:?}");
            assert_eq!(
                seqs(&healthy),
                (0..1_536).collect(),
                "round {round}: every record arrives after the restart"
            );
            std::fs::remove_dir_all(&dir).unwrap();
        }
    });
}

/// A spool that cannot take a record (here: full, while the collector is down) leaves it in
/// memory, counted, instead of losing it; the collector gets it once it is back.
#[test]
fn a_record_the_spool_refuses_goes_on_in_memory() {
    watchdog("full spool", || {
        let dir = spool_dir("full");
        let receiver = OtlpReceiver::start().unwrap();
        receiver.set_fault(Some(Fault::Refuse));
        let layer = ZenmlOtelLayer::new(OtelLogStoreConfig {
            max_queue_bytes: 64 * 1024 * 1024,
            max_retry_elapsed_millis: 60_000,
            ..config(&receiver, &dir)
        })
        .unwrap();
        let handle = layer.handle();
        let big = "x".repeat(200_000);
        let n = 80; // 16 MB of records: twice the 8 MiB spool
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
            for seq in 0..n {
                info!(seq, big = %big, "large");
            }
        });
        let stats = handle.stats();
        assert!(stats.unspooled > 0, "the spool filled up: {stats:?}");
        assert_eq!(stats.dropped, 0, "{stats:?}");
        receiver.set_fault(None);
        handle
            .force_flush()
            .expect("delivered once the collector is back");
        assert_eq!(seqs(&receiver), (0..n).collect());
        let stats = handle.stats();
        assert_eq!(
            (stats.exported, stats.dropped, stats.failed),
            (n, 0, 0),
            "{stats:?}"
        );
        handle.shutdown().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    });
}

// ---------------------------------------------------------------------------------------------
// A spool directory on a host shared with other users

fn refused(dir: &Path) -> zenml_otel::Error {
    let receiver = OtlpReceiver::start().unwrap();
    ZenmlOtelLayer::new(config(&receiver, dir)).expect_err("should be refused")
}

#[test]
fn the_spool_directory_and_its_files_are_the_users_alone() {
    let dir = spool_dir("private");
    let receiver = OtlpReceiver::start().unwrap();
    log_and_shut_down(
        OtelLogStoreConfig {
            // Shut down while the collector is away: the segment stays on disk to be checked.
            endpoint: Some(common::refused_endpoint()),
            export_timeout_millis: 300,
            ..config(&receiver, &dir)
        },
        0,
        10,
    );
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700, "the directory");
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(files.len() >= 2, "the lock and a segment: {files:?}");
    for file in files {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_directory_others_can_write_is_refused_naming_spool_dir() {
    let dir = spool_dir("shared");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let error = refused(&dir);
    assert_eq!(error.field(), Some("spool_dir"), "{error}");
    assert!(error.to_string().contains("writable by others"), "{error}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_planted_lock_link_truncates_nothing() {
    let dir = spool_dir("lock-link");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let sentinel = dir.with_extension("sentinel");
    std::fs::write(&sentinel, "keep").unwrap();
    std::os::unix::fs::symlink(&sentinel, dir.join("lock")).unwrap();
    let error = refused(&dir);
    assert_eq!(error.field(), Some("spool_dir"), "{error}");
    assert_eq!(std::fs::read_to_string(&sentinel).unwrap(), "keep");
    std::fs::remove_file(&sentinel).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A FIFO, a link to an endless device, a directory and a file of another user, all named as
/// segments: skipped and counted in `spool_torn`, never a hang, never read until memory runs
/// out, never replayed.
#[test]
fn what_is_not_a_regular_file_of_ours_is_skipped_and_counted() {
    watchdog("planted segments", || {
        let dir = spool_dir("planted");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let fifo =
            std::ffi::CString::new(dir.join("0000000000000000.spool").to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        std::os::unix::fs::symlink("/dev/zero", dir.join("0000000000000001.spool")).unwrap();
        std::fs::create_dir(dir.join("0000000000000002.spool")).unwrap();
        let foreign = dir.join("0000000000000003.spool");
        std::fs::write(&foreign, b"ZOSP").unwrap();
        // Only root can give a file away: as another user, the case is the user's own file.
        let nobody = 65_534;
        let given_away = std::os::unix::fs::chown(&foreign, Some(nobody), Some(nobody)).is_ok();
        if !given_away {
            std::fs::remove_file(&foreign).unwrap();
        }
        let receiver = OtlpReceiver::start().unwrap();
        let stats = log_and_shut_down(config(&receiver, &dir), 0, 3);
        assert_eq!(stats.spool_torn, 3 + u64::from(given_away), "{stats:?}");
        assert_eq!(stats.recovered, 0, "{stats:?}");
        assert_eq!(
            seqs(&receiver),
            (0..3).collect(),
            "the spool works as usual"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    });
}

// ---------------------------------------------------------------------------------------------
// Recovery: bounded by the queue's memory, answering meanwhile, in the order records were logged

const RECORDS: u64 = 20_000;

/// Four threads log `RECORDS` numbered records in turn (one lock around each, so the numbers
/// are the order they were logged in), each thread in its own spool lane.
fn log_from_four_threads(config: OtelLogStoreConfig) -> ExportStats {
    use std::sync::{Arc, Mutex};
    let layer = ZenmlOtelLayer::new(config).expect("valid config");
    let handle = layer.handle();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    let next = Arc::new(Mutex::new(0u64));
    let pad = "p".repeat(400);
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (dispatch, next, pad) = (dispatch.clone(), Arc::clone(&next), pad.clone());
            std::thread::spawn(move || {
                tracing::dispatcher::with_default(&dispatch, || loop {
                    let mut next = next.lock().unwrap();
                    if *next == RECORDS {
                        return;
                    }
                    info!(seq = *next, pad = %pad, "logged");
                    *next += 1;
                })
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    let _ = handle.shutdown();
    handle.stats()
}

#[test]
fn recovery_stays_within_the_queue_s_memory_answers_and_keeps_the_order() {
    watchdog("bounded recovery", || {
        let dir = spool_dir("recovery");
        let down = OtlpReceiver::start().unwrap();
        down.set_fault(Some(Fault::Refuse));
        // A process whose collector never answered: 20,000 records (about 10 MB) stay spooled.
        let left = log_from_four_threads(OtelLogStoreConfig {
            export_timeout_millis: 300,
            max_retry_elapsed_millis: 300,
            max_queue_size: 100_000,
            max_spool_bytes: 64 * 1024 * 1024,
            ..config(&down, &dir)
        });
        assert_eq!((left.spooled, left.dropped), (RECORDS, 0), "{left:?}");

        // The next start, with the collector still down and a 1 MiB queue: records are read
        // back a queue's worth at a time, and shutdown is answered (its export error, in
        // time), not timed out behind a coordinator waiting for a sender.
        let layer = ZenmlOtelLayer::new(OtelLogStoreConfig {
            max_queue_bytes: 1024 * 1024,
            max_export_batch_bytes: 16 * 1024,
            export_timeout_millis: 1_000,
            max_retry_elapsed_millis: 60_000,
            max_spool_bytes: 64 * 1024 * 1024,
            ..config(&down, &dir)
        })
        .unwrap();
        let handle = layer.handle();
        std::thread::sleep(Duration::from_millis(1_000));
        let reading = handle.stats();
        // 1 MiB holds about 1,900 of these records; a batch per sender more may be in flight.
        assert!(reading.recovered <= 4_000, "read back at once: {reading:?}");
        let started = Instant::now();
        let error = handle.shutdown().expect_err("the collector is down");
        assert!(
            !error.is_timeout(),
            "the coordinator did not answer: {error}"
        );
        assert!(
            started.elapsed() < Duration::from_millis(1_500),
            "{:?}",
            started.elapsed()
        );
        drop(layer);
        drop(down);

        // Then a healthy collector gets every record, in the order they were logged.
        let up = OtlpReceiver::start().unwrap();
        let after = log_and_shut_down(
            OtelLogStoreConfig {
                max_spool_bytes: 64 * 1024 * 1024,
                ..config(&up, &dir)
            },
            0,
            0,
        );
        assert_eq!(after.exported, RECORDS, "{after:?}");
        let order: Vec<u64> = up
            .records()
            .iter()
            .filter_map(|record| record.attr_str("seq")?.parse().ok())
            .collect();
        assert_eq!(order.len() as u64, RECORDS, "every record once");
        let first_out = order
            .iter()
            .enumerate()
            .position(|(i, &seq)| seq != i as u64);
        assert_eq!(
            first_out,
            None,
            "out of the order logged from there: {:?}",
            first_out.map(|i| &order[i..(i + 10).min(order.len())])
        );
        std::fs::remove_dir_all(&dir).unwrap();
    });
}

/// Records parked in an outage go out before records logged after it: the order a run's
/// records were logged in holds across the spool.
#[test]
fn parked_records_go_before_newer_ones() {
    watchdog("parked order", || {
        let dir = spool_dir("parked-order");
        let receiver = OtlpReceiver::start().unwrap();
        receiver.set_fault(Some(Fault::Refuse));
        // A window that fits one retry (1 s): the first request after the outage may meet a
        // connection the outage closed.
        let layer = ZenmlOtelLayer::new(OtelLogStoreConfig {
            max_retry_elapsed_millis: 1_500,
            export_timeout_millis: 500,
            schedule_delay_millis: 20,
            max_export_batch_size: 1_000,
            ..config(&receiver, &dir)
        })
        .unwrap();
        let handle = layer.handle();
        let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
        let log = |range: std::ops::Range<u64>| {
            tracing::dispatcher::with_default(&dispatch, || {
                for seq in range {
                    info!(seq, "ordered");
                }
            })
        };
        log(0..2_000);
        let deadline = Instant::now() + Duration::from_secs(10);
        while handle.stats().spooled < 2_000 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(handle.stats().spooled, 2_000, "parked in the outage");
        receiver.set_fault(None);
        log(2_000..4_000);
        handle.force_flush().expect("all delivered");
        let order: Vec<u64> = receiver
            .records()
            .iter()
            .filter_map(|record| record.attr_str("seq")?.parse().ok())
            .collect();
        let first_out = order
            .iter()
            .enumerate()
            .position(|(i, &seq)| seq != i as u64);
        assert_eq!(
            (order.len(), first_out),
            (4_000, None),
            "from there: {:?}",
            first_out.map(|i| &order[i.saturating_sub(2)..(i + 8).min(order.len())])
        );
        handle.shutdown().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    });
}
