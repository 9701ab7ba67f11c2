//! Per-event cost of a `tracing` event inside a ZenML run span, with and without our layer.
//!
//! Every case logs the same event, `info!(rows = 42u64, model = "resnet", "step progress")`,
//! inside a span carrying `zenml.pipeline_run_id`, `zenml.step_id` and `zenml.source`, entered
//! once outside the timing loop. The cases share one criterion group (`event_in_run_span`):
//!
//! - `no_layer`: a bare `tracing_subscriber::registry()`, the floor.
//! - `zenml_otel`: registry + [`ZenmlOtelLayer`].
//! - `zenml_otel_metrics`: `zenml_otel` with the layer's own metrics on
//!   (`metrics_interval_millis` = 100, far more often than anyone would), exported to the same
//!   sink: next to `zenml_otel` (metrics off), what they cost the logging thread (issue 28: it
//!   should be nothing, the counters exist anyway).
//! - `zenml_otel_spool`: the same with the crash-safe spool on (`spool_dir` in a temporary
//!   directory): each event is also copied into a memory-mapped segment file.
//! - `zenml_otel_console`: `zenml_otel` with the step's console pipe handed over
//!   (`ZENML_OTEL_CONSOLE_FIFO`, as `run_rust_step` does), drained by a reader thread: next to
//!   `zenml_otel`, what the console costs the logging thread (issue 26: nothing by construction,
//!   the coordinator hands the batches' bytes to the console's own thread).
//! - `official_bridge`: registry + `opentelemetry_appender_tracing`'s `OpenTelemetryTracingBridge`
//!   (span attributes copied onto records) over an `SdkLoggerProvider` with the SDK
//!   `BatchLogProcessor` and the `opentelemetry_otlp` HTTP exporter.
//! - `official_bridge_noop_exporter`: the same bridge with a `LogExporter` that returns `Ok(())`,
//!   to show what the background HTTP export costs the logging thread.
//! - `filtered_out`: our layer installed behind a global `LevelFilter::INFO`, logging `debug!`.
//! - `noop_layer`: registry + a layer that does nothing.
//! - `filtered_out_per_layer`: a no-op layer plus our layer behind a per-layer `LevelFilter::INFO`,
//!   logging `debug!`: should cost about what `noop_layer` costs.
//! - `fmt_sink`: `tracing_subscriber::fmt` writing into `std::io::sink`.
//!
//! A third group, `event_in_run_span_threads`, has 2 and 8 threads log at once (each in its own
//! step span) through ours and through the bridge, so contention shows.
//!
//! A second group, `event_in_run_span_paced`, times `zenml_otel` and `official_bridge` one event
//! at a time with [`PACED_GAP`] of idle time before each event, instead of back to back. A tight
//! loop keeps an export thread busy; at real log rates it has gone to sleep by the next event,
//! and whatever it costs the logging thread to wake it shows up only here. Each timed event also
//! includes two `Instant::now()` calls (tens of ns; the same on both sides).
//!
//! # Why `zenml_otel` vs `official_bridge` is a fair comparison
//!
//! Same work on both sides:
//! - Same batching: queue 2048, delay 1000 ms, batch 512 (our config defaults; set explicitly on
//!   the SDK's `BatchConfig`).
//! - Same export path: our layer can only export over OTLP/HTTP, so the bridge gets the real
//!   `opentelemetry_otlp` HTTP/protobuf exporter too (the SDK's own, with the same 10 s timeout),
//!   and both post to the same local [`BlackHole`] sink. Giving the bridge a no-op exporter
//!   instead would leave ours alone paying for protobuf encoding and HTTP on the export thread,
//!   which on a 2-core machine competes with the logging thread; that variant is kept as a
//!   separate reference line, not as the comparison.
//! - Same record content: both records carry five attributes. Ours: the two event fields plus the
//!   code location (`code.file.path`, `code.line.number`, `code.namespace`), with the three
//!   `zenml.*` span fields exported once per request on the run's resource. The bridge: the two
//!   event fields plus the three span fields copied onto every record
//!   (`TracingSpanAttributes::all()`). The bridge's resource gets our layer's service attributes.
//! - Same hot path, never the drop path: a tight loop logs far faster than any exporter sends,
//!   so a bounded queue would fill within milliseconds and most events would then hit a failed
//!   `try_send` into a full channel, which is cheaper than a real enqueue and would flatter
//!   whichever side drops more. So both exporting cases log in chunks of [`CHUNK`] (half the
//!   queue) and flush, untimed, between chunks: each timed event is a successful enqueue, while
//!   the export thread still ships batches of 512 concurrently with the timed loop, as it would
//!   in a steady state where the exporter keeps up. After each case the bench checks that every
//!   event was exported and none was dropped, and panics otherwise.
//!
//! # Why a black-hole sink and not `zenml_otel::testing::OtlpReceiver`
//!
//! The receiver decodes every request and keeps every record (with a copy of its resource
//! attributes) forever: measured at about 3.2 KB per record (1M of these records took the process
//! to 3.2 GB RSS, and 10 s, the receiver being the bottleneck). This bench pushes about 4M records
//! through the sink, and the receiver's decoding would compete with the logging thread for the
//! second core. [`BlackHole`] reads each request body, answers `200` with an empty
//! `ExportLogsServiceResponse` and keeps nothing but byte and request counts.
//!
//! Run with `cargo bench --bench layer` (about 70 s on 2 cores). After each exporting case a line
//! on stderr gives the events issued and exported.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};
use opentelemetry::KeyValue;
use opentelemetry_appender_tracing::layer::{OpenTelemetryTracingBridge, TracingSpanAttributes};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{
    BatchConfigBuilder, BatchLogProcessor, LogBatch, LogExporter, SdkLoggerProvider,
};
use opentelemetry_sdk::Resource;
use tracing::{debug, info, info_span, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::Layer as _;
use zenml_otel::{OtelLogStoreConfig, ZenmlOtelLayer};

/// Batch settings of both exporting cases: our config's defaults.
const MAX_QUEUE_SIZE: usize = 2048;
const SCHEDULE_DELAY: Duration = Duration::from_millis(1000);
const MAX_EXPORT_BATCH_SIZE: usize = 512;
/// Events logged between two untimed flushes: half the queue, so no event is ever dropped.
const CHUNK: u64 = (MAX_QUEUE_SIZE / 2) as u64;
/// Idle time before each event of the `_paced` group: about 100k events/s, so the export
/// thread has gone idle again by the next event, as it has at any realistic log rate.
const PACED_GAP: Duration = Duration::from_micros(10);

const RUN_ID: &str = "3f2b8c1e-5d4a-4e7b-9c1f-0a2b3c4d5e6f";
const STEP_ID: &str = "8e7d6c5b-4a39-4281-b7c6-d5e4f3a2b1c0";

/// The event every case logs (one callsite, shared by all cases).
#[inline(always)]
fn event() {
    info!(rows = 42u64, model = "resnet", "step progress");
}

/// Runs `body` with `subscriber` as the thread's default, inside an entered run span.
fn in_run_span<S>(subscriber: S, body: impl FnOnce())
where
    S: Subscriber + Send + Sync + 'static,
{
    tracing::subscriber::with_default(subscriber, || {
        let span = info_span!(
            "step",
            zenml.pipeline_run_id = RUN_ID,
            zenml.step_id = STEP_ID,
            zenml.source = "step",
        );
        let _entered = span.enter();
        body();
    });
}

/// Times `iters` calls of `log` in chunks of [`CHUNK`], with an untimed `flush` after each chunk;
/// returns the measured time and adds `iters` to `issued`. A zero `gap` times each chunk as one
/// tight loop; otherwise every call is timed on its own after spinning (untimed) for `gap`.
fn chunked(
    iters: u64,
    issued: &mut u64,
    gap: Duration,
    log: impl Fn(),
    flush: impl Fn(),
) -> Duration {
    let mut measured = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(CHUNK);
        if gap.is_zero() {
            let start = Instant::now();
            for _ in 0..n {
                log();
            }
            measured += start.elapsed();
        } else {
            for _ in 0..n {
                let until = Instant::now() + gap;
                while Instant::now() < until {
                    std::hint::spin_loop();
                }
                let start = Instant::now();
                log();
                measured += start.elapsed();
            }
        }
        flush();
        left -= n;
    }
    *issued += iters;
    measured
}

/// An OTLP/HTTP endpoint that answers every request with an empty `200` and keeps nothing.
struct BlackHole {
    addr: SocketAddr,
    server: Arc<tiny_http::Server>,
    stopping: Arc<AtomicBool>,
    requests: Arc<AtomicU64>,
    bytes: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl BlackHole {
    fn start() -> Self {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind the sink"));
        let addr = server.server_addr().to_ip().expect("an IP address");
        let stopping = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicU64::new(0));
        let bytes = Arc::new(AtomicU64::new(0));
        let thread = std::thread::Builder::new()
            .name("black-hole".into())
            .spawn({
                let (server, stopping) = (server.clone(), stopping.clone());
                let (requests, bytes) = (requests.clone(), bytes.clone());
                move || loop {
                    match server.recv() {
                        Ok(mut request) => {
                            let n = io::copy(request.as_reader(), &mut io::sink()).unwrap_or(0);
                            bytes.fetch_add(n, Ordering::Relaxed);
                            requests.fetch_add(1, Ordering::Relaxed);
                            // An empty body is an empty ExportLogsServiceResponse.
                            let content_type = tiny_http::Header::from_bytes(
                                "Content-Type",
                                "application/x-protobuf",
                            )
                            .expect("static header");
                            let _ = request
                                .respond(tiny_http::Response::empty(200).with_header(content_type));
                        }
                        Err(_) if stopping.load(Ordering::Acquire) => return,
                        Err(_) => continue,
                    }
                }
            })
            .expect("spawn the sink thread");
        Self {
            addr,
            server,
            stopping,
            requests,
            bytes,
            thread: Some(thread),
        }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn counts(&self) -> (u64, u64) {
        (
            self.requests.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::Release);
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A log exporter that exports nothing.
#[derive(Debug)]
struct NoopExporter;

impl LogExporter for NoopExporter {
    async fn export(&self, _batch: LogBatch<'_>) -> OTelSdkResult {
        Ok(())
    }
}

/// Counts the records its inner exporter acknowledged.
#[derive(Debug)]
struct Counted<E> {
    inner: E,
    exported: Arc<AtomicU64>,
}

impl<E: LogExporter> LogExporter for Counted<E> {
    async fn export(&self, batch: LogBatch<'_>) -> OTelSdkResult {
        let n = batch.iter().count() as u64;
        let result = self.inner.export(batch).await;
        if result.is_ok() {
            self.exported.fetch_add(n, Ordering::Relaxed);
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

fn zenml_config(sink: &BlackHole) -> OtelLogStoreConfig {
    OtelLogStoreConfig {
        endpoint: Some(sink.endpoint()),
        max_queue_size: MAX_QUEUE_SIZE,
        schedule_delay_millis: SCHEDULE_DELAY.as_millis() as u64,
        max_export_batch_size: MAX_EXPORT_BATCH_SIZE,
        ..OtelLogStoreConfig::default()
    }
}

fn bench_zenml_otel(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    config: OtelLogStoreConfig,
    gap: Duration,
) {
    let layer = ZenmlOtelLayer::new(config).expect("a valid config");
    let handle = layer.handle();
    let mut issued = 0;
    in_run_span(tracing_subscriber::registry().with(layer), || {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                chunked(iters, &mut issued, gap, event, || {
                    handle.force_flush().expect("flush to the sink");
                })
            });
        });
    });
    assert_ours_exported_all(name, issued, &handle);
}

/// The official pipeline: bridge (span fields copied onto every record) → SDK provider with our
/// layer's service attributes → batch processor with our batch settings and a queue of
/// `queue` → `exporter`, counting what it exported.
fn bridge_pipeline<E: LogExporter + 'static>(
    exporter: E,
    queue: usize,
) -> (
    SdkLoggerProvider,
    OpenTelemetryTracingBridge<SdkLoggerProvider, opentelemetry_sdk::logs::SdkLogger>,
    Arc<AtomicU64>,
) {
    let exported = Arc::new(AtomicU64::new(0));
    let processor = BatchLogProcessor::builder(Counted {
        inner: exporter,
        exported: exported.clone(),
    })
    .with_batch_config(
        BatchConfigBuilder::default()
            .with_max_queue_size(queue)
            .with_scheduled_delay(SCHEDULE_DELAY)
            .with_max_export_batch_size(MAX_EXPORT_BATCH_SIZE)
            .build(),
    )
    .build();
    // The service attributes our layer puts on its resources.
    let resource = Resource::builder()
        .with_attributes([
            KeyValue::new("service.name", "zenml"),
            KeyValue::new("service.version", "1.0.0"),
            KeyValue::new("service.instance.id", "bench"),
            KeyValue::new("deployment.environment", "production"),
        ])
        .build();
    let provider = SdkLoggerProvider::builder()
        .with_resource(resource)
        .with_log_processor(processor)
        .build();
    let bridge = OpenTelemetryTracingBridge::builder(&provider)
        .with_tracing_span_attributes(TracingSpanAttributes::all())
        .build();
    (provider, bridge, exported)
}

/// Shuts our layer down; panics unless it exported every one of the `issued` events it was
/// timed on.
fn assert_ours_exported_all(name: &str, issued: u64, handle: &zenml_otel::LogStoreHandle) {
    handle.shutdown().expect("shutdown");
    let stats = handle.stats();
    eprintln!("{name}: {issued} events, {stats:?}");
    assert_eq!(
        (stats.emitted, stats.exported, stats.dropped, stats.failed),
        (issued, issued, 0, 0),
        "{name} must export every event it was timed on"
    );
}

/// Shuts the bridge's provider down; panics unless it exported every one of the `issued`
/// events it was timed on.
fn assert_bridge_exported_all(
    name: &str,
    issued: u64,
    provider: &SdkLoggerProvider,
    exported: &AtomicU64,
) {
    provider.shutdown().expect("shutdown");
    let exported = exported.load(Ordering::Relaxed);
    eprintln!("{name}: {issued} events, {exported} exported");
    assert_eq!(
        exported, issued,
        "{name} must export every event it was timed on"
    );
}

fn bench_bridge<E: LogExporter + 'static>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    exporter: E,
    gap: Duration,
) {
    let (provider, bridge, exported) = bridge_pipeline(exporter, MAX_QUEUE_SIZE);
    let mut issued = 0;
    in_run_span(tracing_subscriber::registry().with(bridge), || {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                chunked(iters, &mut issued, gap, event, || {
                    provider.force_flush().expect("flush to the sink");
                })
            });
        });
    });
    assert_bridge_exported_all(name, issued, &provider, &exported);
}

/// The SDK's own OTLP/HTTP exporter, configured like ours, posting to `sink`.
fn otlp_exporter(sink: &BlackHole) -> opentelemetry_otlp::LogExporter {
    opentelemetry_otlp::LogExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(format!("{}/v1/logs", sink.endpoint()))
        .with_timeout(Duration::from_secs(10))
        .build()
        .expect("an OTLP exporter")
}

fn bench_event(c: &mut Criterion) {
    let sink = BlackHole::start();

    let mut group = c.benchmark_group("event_in_run_span");
    in_run_span(tracing_subscriber::registry(), || {
        group.bench_function("no_layer", |b| b.iter(event));
    });
    bench_zenml_otel(
        &mut group,
        "zenml_otel",
        zenml_config(&sink),
        Duration::ZERO,
    );
    // The layer's own metrics on: a thread of theirs observes the counters every 100 ms.
    bench_zenml_otel(
        &mut group,
        "zenml_otel_metrics",
        OtelLogStoreConfig {
            metrics_interval_millis: 100,
            ..zenml_config(&sink)
        },
        Duration::ZERO,
    );
    // The lossless policy on its fast path (room in the queue): what it costs when the
    // collector keeps up. When it does not, emitters wait for the export thread instead.
    bench_zenml_otel(
        &mut group,
        "zenml_otel_block",
        OtelLogStoreConfig {
            on_full: zenml_otel::OnFull::Block,
            ..zenml_config(&sink)
        },
        Duration::ZERO,
    );
    let spool = BenchSpool::new("event");
    bench_zenml_otel(
        &mut group,
        "zenml_otel_spool",
        spool.config(zenml_config(&sink)),
        Duration::ZERO,
    );
    {
        let _console = BenchConsole::new("event");
        bench_zenml_otel(
            &mut group,
            "zenml_otel_console",
            zenml_config(&sink),
            Duration::ZERO,
        );
    }
    bench_bridge(
        &mut group,
        "official_bridge",
        otlp_exporter(&sink),
        Duration::ZERO,
    );
    bench_bridge(
        &mut group,
        "official_bridge_noop_exporter",
        NoopExporter,
        Duration::ZERO,
    );
    {
        let layer = ZenmlOtelLayer::new(zenml_config(&sink)).expect("a valid config");
        let handle = layer.handle();
        let subscriber = tracing_subscriber::registry()
            .with(LevelFilter::INFO)
            .with(layer);
        in_run_span(subscriber, || {
            group.bench_function("filtered_out", |b| {
                b.iter(|| debug!(rows = 42u64, model = "resnet", "step progress"));
            });
        });
        handle.shutdown().expect("shutdown");
        assert_eq!(handle.stats().emitted, 0, "debug! must be filtered out");
    }
    in_run_span(tracing_subscriber::registry().with(NoopLayer), || {
        group.bench_function("noop_layer", |b| b.iter(event));
    });
    {
        // Our layer behind its own (per-layer) filter, next to a layer that takes everything:
        // the event reaches the subscriber and only our filter turns it away.
        let layer = ZenmlOtelLayer::new(zenml_config(&sink)).expect("a valid config");
        let handle = layer.handle();
        let subscriber = tracing_subscriber::registry()
            .with(NoopLayer)
            .with(layer.with_filter(LevelFilter::INFO));
        in_run_span(subscriber, || {
            group.bench_function("filtered_out_per_layer", |b| {
                b.iter(|| debug!(rows = 42u64, model = "resnet", "step progress"));
            });
        });
        handle.shutdown().expect("shutdown");
        assert_eq!(handle.stats().emitted, 0, "debug! must be filtered out");
    }
    let fmt = tracing_subscriber::fmt::layer().with_writer(io::sink);
    in_run_span(tracing_subscriber::registry().with(fmt), || {
        group.bench_function("fmt_sink", |b| b.iter(event));
    });
    group.finish();

    let mut paced = c.benchmark_group("event_in_run_span_paced");
    paced
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(1));
    bench_zenml_otel(&mut paced, "zenml_otel", zenml_config(&sink), PACED_GAP);
    bench_bridge(
        &mut paced,
        "official_bridge",
        otlp_exporter(&sink),
        PACED_GAP,
    );
    paced.finish();

    let (requests, bytes) = sink.counts();
    eprintln!("black hole: {requests} requests, {bytes} bytes");
}

/// A layer that does nothing: the cost of having any layer at all.
struct NoopLayer;

impl<S: Subscriber> tracing_subscriber::Layer<S> for NoopLayer {}

/// Queue for the multi-threaded group: large enough that timed events never take the (cheaper)
/// drop path; flushed, untimed, after every sample.
const THREADED_QUEUE: usize = 1 << 20;

/// Wall time for `threads` threads, each in its own run span, to log `iters / threads` events
/// through `dispatch` at once; adds the events logged to `issued`.
fn threaded(dispatch: &tracing::Dispatch, threads: u64, iters: u64, issued: &mut u64) -> Duration {
    let per_thread = (iters / threads).max(1);
    *issued += per_thread * threads;
    let barrier = std::sync::Barrier::new(threads as usize + 1);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let barrier = &barrier;
                s.spawn(move || {
                    tracing::dispatcher::with_default(dispatch, || {
                        let span = info_span!(
                            "step",
                            zenml.pipeline_run_id = RUN_ID,
                            zenml.step_id = t,
                            zenml.source = "step",
                        );
                        let _entered = span.enter();
                        barrier.wait();
                        for _ in 0..per_thread {
                            event();
                        }
                    })
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        for worker in workers {
            worker.join().expect("emitting thread");
        }
        start.elapsed()
    })
}

/// A temporary spool directory for one case, removed afterwards.
struct BenchSpool(std::path::PathBuf);

impl BenchSpool {
    fn new(case: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("zenml-otel-bench-{case}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Self(dir)
    }

    fn config(&self, config: OtelLogStoreConfig) -> OtelLogStoreConfig {
        OtelLogStoreConfig {
            spool_dir: Some(self.0.clone()),
            max_spool_bytes: 4 * 1024 * 1024 * 1024,
            ..config
        }
    }
}

impl Drop for BenchSpool {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A named pipe handed over as the step's console (in the environment, as `run_rust_step`
/// does) until dropped, drained to its end by a thread as the helper's reader would.
struct BenchConsole {
    dir: std::path::PathBuf,
    reader: Option<JoinHandle<u64>>,
}

impl BenchConsole {
    fn new(case: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "zenml-otel-bench-console-{case}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let fifo = dir.join("console");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo");
        assert!(made.success(), "mkfifo {}", fifo.display());
        std::env::set_var(zenml_otel::handover::CONSOLE_FIFO, &fifo);
        let path = fifo.clone();
        let reader = std::thread::spawn(move || {
            let mut pipe = std::fs::File::open(&path).expect("the console pipe");
            io::copy(&mut pipe, &mut io::sink()).expect("drain the console pipe")
        });
        Self {
            dir,
            reader: Some(reader),
        }
    }
}

impl Drop for BenchConsole {
    fn drop(&mut self) {
        std::env::remove_var(zenml_otel::handover::CONSOLE_FIFO);
        // The layer's shutdown closed the writing end; the reader has seen everything.
        if let Some(reader) = self.reader.take() {
            let bytes = reader.join().expect("the console reader");
            assert!(bytes > 0, "nothing reached the console pipe");
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn bench_ours_threaded(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    threads: u64,
    config: OtelLogStoreConfig,
) {
    let layer = ZenmlOtelLayer::new(OtelLogStoreConfig {
        max_queue_size: THREADED_QUEUE,
        // The bridge's queue counts records only: ours must hold as many, whatever their
        // bytes (the default 64 MiB holds about 250,000 of these).
        max_queue_bytes: THREADED_QUEUE * 1024,
        ..config
    })
    .expect("a valid config");
    let handle = layer.handle();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    let mut issued = 0;
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let elapsed = threaded(&dispatch, threads, iters, &mut issued);
            handle.force_flush().expect("flush to the sink");
            elapsed
        });
    });
    assert_ours_exported_all(name, issued, &handle);
}

fn bench_threads(c: &mut Criterion) {
    let sink = BlackHole::start();
    let mut group = c.benchmark_group("event_in_run_span_threads");
    for threads in [2u64, 8] {
        let name = format!("zenml_otel/{threads}");
        bench_ours_threaded(&mut group, &name, threads, zenml_config(&sink));
        let spool = BenchSpool::new(&format!("threads-{threads}"));
        let name = format!("zenml_otel_spool/{threads}");
        bench_ours_threaded(
            &mut group,
            &name,
            threads,
            spool.config(zenml_config(&sink)),
        );

        let name = format!("official_bridge/{threads}");
        let (provider, bridge, exported) = bridge_pipeline(otlp_exporter(&sink), THREADED_QUEUE);
        let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(bridge));
        let mut issued = 0;
        group.bench_function(&name, |b| {
            b.iter_custom(|iters| {
                let elapsed = threaded(&dispatch, threads, iters, &mut issued);
                provider.force_flush().expect("flush to the sink");
                elapsed
            });
        });
        assert_bridge_exported_all(&name, issued, &provider, &exported);
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench_event, bench_threads
}
criterion_main!(benches);
