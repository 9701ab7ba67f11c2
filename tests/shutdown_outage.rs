//! A short-lived program ends while its collector is briefly away (a restart, a sidecar that
//! starts late): `shutdown()` and `force_flush()` keep retrying until their own bounds, so a
//! collector that comes back in time gets every record, and one that never does leaves every
//! record counted and an error naming the cause.
//!
//! The collector is a real rotel, stopped before the program logs and started again on the
//! same ports a while after the program began to shut down.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::rotel::Rotel;
use common::{built, WAIT};
use tracing::info;
use tracing_subscriber::layer::SubscriberExt;
use zenml_otel::testing::OtlpReceiver;
use zenml_otel::{ExportStats, LogStoreHandle, OtelLogStoreConfig, Protocol, ZenmlOtelLayer};

const RECORDS: u64 = 17;

struct Program {
    receiver: OtlpReceiver,
    rotel: Rotel,
    handle: LogStoreHandle,
    export_timeout: Duration,
}

/// A layer whose collector (rotel) is down by the time it has logged `RECORDS` records, which
/// are still queued: the tick is far away, so shutdown (or a flush) is what sends them.
fn program_with_its_collector_down(protocol: Protocol, export_timeout_millis: u64) -> Program {
    let receiver = OtlpReceiver::start().expect("start the OTLP receiver");
    let mut rotel = Rotel::start_forwarding_to(&receiver.endpoint()).expect("start rotel-agent");
    let layer = ZenmlOtelLayer::new(OtelLogStoreConfig {
        endpoint: Some(rotel.endpoint(protocol)),
        protocol,
        export_timeout_millis,
        schedule_delay_millis: 600_000,
        ..OtelLogStoreConfig::default()
    })
    .expect("valid config");
    let handle = layer.handle();
    rotel.terminate();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        for seq in 0..RECORDS {
            info!(seq, "logged while the collector is away");
        }
    });
    Program {
        receiver,
        rotel,
        handle,
        export_timeout: Duration::from_millis(export_timeout_millis),
    }
}

/// Runs `finish` (a shutdown or a flush) while rotel comes back `after` it started; returns
/// its result, how long it took, and how long after rotel was back it returned.
fn finish_while_the_collector_returns(
    program: &mut Program,
    after: Duration,
    finish: impl FnOnce(&LogStoreHandle) -> Result<(), zenml_otel::Error>,
) -> (Result<(), zenml_otel::Error>, Duration, Duration) {
    let started = Instant::now();
    let (result, back) = std::thread::scope(|scope| {
        let rotel = &mut program.rotel;
        let restart = scope.spawn(move || {
            std::thread::sleep(after);
            rotel
                .restart()
                .expect("rotel starts again on the same ports");
            Instant::now()
        });
        let result = finish(&program.handle);
        (result, restart.join().expect("the restarting thread"))
    });
    let took = started.elapsed();
    (
        result,
        took,
        took.saturating_sub(back.duration_since(started)),
    )
}

fn delivered(program: &Program) -> BTreeSet<u64> {
    program
        .receiver
        .wait_for_records(RECORDS as usize, WAIT)
        .iter()
        .filter_map(|r| r.attr_str("seq")?.parse().ok())
        .collect()
}

fn exported_all(stats: ExportStats) -> bool {
    (stats.emitted, stats.exported, stats.dropped, stats.failed) == (RECORDS, RECORDS, 0, 0)
}

fn shutdown_delivers_once_the_collector_is_back(protocol: Protocol, after: Duration) {
    let mut program = program_with_its_collector_down(protocol, 10_000);
    let (result, took, after_back) =
        finish_while_the_collector_returns(&mut program, after, LogStoreHandle::shutdown);
    let stats = program.handle.stats();
    eprintln!("{protocol:?}, back after {after:?}: shutdown took {took:?} ({after_back:?} after)");
    result.unwrap_or_else(|e| panic!("{protocol:?}: shutdown failed: {e}; {stats:?}"));
    assert!(exported_all(stats), "{protocol:?}: {stats:?}");
    assert_eq!(delivered(&program), (0..RECORDS).collect::<BTreeSet<_>>());
    // Within shutdown's bound, and with the first attempts after the collector is back: the
    // backoff (1 s, 2 s, 4 s) had not grown past 4 s by then.
    assert!(
        took < program.export_timeout + Duration::from_millis(200),
        "{took:?}"
    );
    assert!(after_back < Duration::from_secs(5), "{after_back:?}");
}

#[test]
#[ignore = "needs rotel-agent; scripts/test.sh runs it with --include-ignored"]
fn shutdown_delivers_when_the_collector_is_back_1_s_later() {
    for protocol in built([Protocol::HttpProtobuf, Protocol::Grpc]) {
        shutdown_delivers_once_the_collector_is_back(protocol, Duration::from_secs(1));
    }
}

#[test]
#[ignore = "needs rotel-agent; scripts/test.sh runs it with --include-ignored"]
fn shutdown_delivers_when_the_collector_is_back_3_s_later() {
    for protocol in built([Protocol::HttpProtobuf, Protocol::Grpc]) {
        shutdown_delivers_once_the_collector_is_back(protocol, Duration::from_secs(3));
    }
}

#[test]
#[ignore = "needs rotel-agent; scripts/test.sh runs it with --include-ignored"]
fn shutdown_counts_everything_and_names_the_cause_when_the_collector_never_returns() {
    for protocol in built([Protocol::HttpProtobuf, Protocol::Grpc]) {
        let program = program_with_its_collector_down(protocol, 3000);
        let started = Instant::now();
        let error = program
            .handle
            .shutdown()
            .expect_err("nothing was delivered");
        let took = started.elapsed();
        let stats = program.handle.stats();
        eprintln!("{protocol:?}: shutdown took {took:?}: {error}; {stats:?}");
        assert!(
            took < program.export_timeout + Duration::from_millis(200),
            "{took:?}"
        );
        // Retried, not given up at once: the attempts at 0 s and 1 s, and a last one cut short
        // to fit before the deadline.
        assert!(took > Duration::from_secs(2), "{took:?}");
        assert_eq!(stats.emitted, RECORDS);
        assert_eq!(stats.exported, 0, "{stats:?}");
        assert_eq!(stats.failed + stats.dropped, RECORDS, "{stats:?}");
        let message = error.to_string().to_ascii_lowercase();
        assert!(
            message.contains("refused") || message.contains("unavailable"),
            "{protocol:?}: the error names the cause: {error}"
        );
    }
}

#[test]
#[ignore = "needs rotel-agent; scripts/test.sh runs it with --include-ignored"]
fn force_flush_delivers_when_the_collector_is_back_within_its_bound() {
    for protocol in built([Protocol::HttpProtobuf, Protocol::Grpc]) {
        let mut program = program_with_its_collector_down(protocol, 10_000);
        let (result, took, _) = finish_while_the_collector_returns(
            &mut program,
            Duration::from_secs(1),
            LogStoreHandle::force_flush,
        );
        let stats = program.handle.stats();
        result.unwrap_or_else(|e| panic!("{protocol:?}: flush failed after {took:?}: {e}"));
        assert!(exported_all(stats), "{protocol:?}: {stats:?}");
        assert_eq!(delivered(&program), (0..RECORDS).collect::<BTreeSet<_>>());
        program.handle.shutdown().expect("nothing left to send");
    }
}
