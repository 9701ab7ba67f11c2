//! The `sdk` module's costs (issue 29), each side by side with the official pipeline alone.
//!
//! - `sdk_processor_per_event`: a `tracing` event inside a run span through the official
//!   pipeline (registry + `OpenTelemetryTracingBridge` → `SdkLoggerProvider` →
//!   `BatchLogProcessor` with an exporter that exports nothing, so only the logging thread's
//!   work is timed): `official_bare`, and `official_with_zenml` with `ZenmlContextLayer` before
//!   the bridge and `ZenmlLogProcessor` before the batch processor. The difference is what ZenML's
//!   context costs per event. Events are logged in chunks of half the queue with an untimed flush
//!   between them, so none is dropped (a dropped event is cheaper and would flatter a side).
//! - `sdk_exporter_per_batch`: the process's CPU time (every thread's: the export threads, and
//!   the same local sink for both) to export one batch of [`BATCH`] records made
//!   by the SDK and carrying ZenML's attributes, by `ZenmlLogExporter` and by
//!   opentelemetry-otlp's HTTP/protobuf exporter, both to the same local sink that answers
//!   `200`. Throughput is per record.
//!
//! Run: `cargo bench --bench sdk` (the dev-dependency turns the `sdk` feature on; Linux only,
//! for `/proc`).

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge;
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{
    BatchConfigBuilder, BatchLogProcessor, LogBatch, LogExporter, SdkLogRecord, SdkLoggerProvider,
};
use opentelemetry_sdk::Resource;
use tracing::{info, info_span};
use tracing_subscriber::layer::SubscriberExt as _;
use zenml_otel::sdk::{ZenmlContextLayer, ZenmlLogExporter, ZenmlLogProcessor};
use zenml_otel::OtelLogStoreConfig;

const QUEUE: usize = 2048;
const CHUNK: u64 = (QUEUE / 2) as u64;
const BATCH: usize = 512;
const RUN_ID: &str = "3f2b8c1e-5d4a-4e7b-9c1f-0a2b3c4d5e6f";
const STEP_ID: &str = "8e7d6c5b-4a39-4281-b7c6-d5e4f3a2b1c0";
const LOG_ID: &str = "c56b45f8-66d7-41ca-a18f-d191fe71cc6b";

#[derive(Debug)]
struct NoopExporter;

impl LogExporter for NoopExporter {
    async fn export(&self, _batch: LogBatch<'_>) -> OTelSdkResult {
        Ok(())
    }
}

fn provider(zenml: bool) -> SdkLoggerProvider {
    let batch = BatchLogProcessor::builder(NoopExporter)
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_max_queue_size(QUEUE)
                .build(),
        )
        .build();
    let builder = SdkLoggerProvider::builder();
    let builder = if zenml {
        builder.with_log_processor(ZenmlLogProcessor::from_env().expect("no handover"))
    } else {
        builder
    };
    builder.with_log_processor(batch).build()
}

fn bench_processor(c: &mut Criterion) {
    let mut group = c.benchmark_group("sdk_processor_per_event");
    for (name, zenml) in [("official_bare", false), ("official_with_zenml", true)] {
        let provider = provider(zenml);
        let bridge = OpenTelemetryTracingBridge::new(&provider);
        let registry = tracing_subscriber::registry().with(bridge);
        let dispatch = if zenml {
            tracing::Dispatch::new(registry.with(ZenmlContextLayer::default()))
        } else {
            tracing::Dispatch::new(registry)
        };
        tracing::dispatcher::with_default(&dispatch, || {
            let span = info_span!(
                "step",
                zenml.pipeline_run_id = RUN_ID,
                zenml.step_id = STEP_ID
            );
            let _entered = span.enter();
            group.bench_function(name, |b| {
                b.iter_custom(|iters| chunked(iters, || provider.force_flush().expect("flush")))
            });
        });
        provider.shutdown().expect("shutdown");
    }
    group.finish();
}

/// Times `iters` events, flushing (untimed) every [`CHUNK`].
fn chunked(iters: u64, flush: impl Fn()) -> Duration {
    let mut measured = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(CHUNK);
        let start = Instant::now();
        for _ in 0..n {
            info!(rows = 42u64, model = "resnet", "step progress");
        }
        measured += start.elapsed();
        flush();
        left -= n;
    }
    measured
}

/// The batch both exporters get: SDK records with the event's fields and ZenML's attributes,
/// as `ZenmlLogProcessor` leaves them.
fn records() -> Vec<SdkLogRecord> {
    let provider = SdkLoggerProvider::builder().build();
    let logger = provider.logger("bench");
    (0..BATCH)
        .map(|i| {
            let mut record = logger.create_log_record();
            record.set_timestamp(std::time::SystemTime::now());
            // The SDK's logger stamps it on emit; opentelemetry-proto's conversion requires it.
            record.set_observed_timestamp(std::time::SystemTime::now());
            record.set_severity_number(Severity::Info);
            record.set_severity_text("INFO");
            record.set_target("bench");
            record.set_body(AnyValue::from(format!("step progress {i}")));
            record.add_attribute("rows", 42);
            record.add_attribute("model", "resnet");
            for (key, value) in [
                ("zenml.log.id", LOG_ID),
                ("zenml.pipeline.run.id", RUN_ID),
                ("zenml.step.run.id", STEP_ID),
                ("zenml.log.source", "step"),
                ("zenml.pipeline_run_id", RUN_ID),
                ("zenml.step_id", STEP_ID),
                ("zenml.source", "step"),
            ] {
                record.add_attribute(key, value);
            }
            record
        })
        .collect()
}

/// The futures of both exporters finish in their first poll (they block inside).
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        std::thread::yield_now();
    }
}

/// CPU time of every live thread of the process so far (`/proc/self/task/*/schedstat`, in
/// nanoseconds; the exporters' and the sink's threads live as long as the bench).
fn process_cpu() -> Duration {
    let tasks = std::fs::read_dir("/proc/self/task").expect("/proc/self/task");
    let nanos = tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|stat| stat.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    Duration::from_nanos(nanos)
}

fn bench_exporter(c: &mut Criterion) {
    let sink = Sink::start();
    let resource = Resource::builder_empty()
        .with_attribute(KeyValue::new("service.name", "zenml"))
        .build();
    let records = records();
    let scope = InstrumentationScope::builder("bench").build();
    let batch: Vec<(&SdkLogRecord, &InstrumentationScope)> =
        records.iter().map(|r| (r, &scope)).collect();
    let mut ours = ZenmlLogExporter::new(OtelLogStoreConfig {
        endpoint: Some(sink.endpoint()),
        ..OtelLogStoreConfig::default()
    })
    .expect("a valid config");
    let mut otlp = opentelemetry_otlp::LogExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(format!("{}/v1/logs", sink.endpoint()))
        .build()
        .expect("an OTLP exporter");
    ours.set_resource(&resource);
    otlp.set_resource(&resource);
    let mut group = c.benchmark_group("sdk_exporter_per_batch");
    group.throughput(Throughput::Elements(BATCH as u64));
    let mut export = |name: &str, exporter: &dyn Fn(LogBatch<'_>) -> OTelSdkResult| {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let start = process_cpu();
                for _ in 0..iters {
                    exporter(LogBatch::new(&batch)).expect("exported");
                }
                process_cpu() - start
            })
        });
    };
    export("zenml_log_exporter", &|batch| block_on(ours.export(batch)));
    export("opentelemetry_otlp", &|batch| block_on(otlp.export(batch)));
    group.finish();
    let stats = ours.handle().stats();
    ours.shutdown().expect("shutdown");
    assert_eq!((stats.failed, stats.dropped), (0, 0), "{stats:?}");
}

/// An OTLP/HTTP endpoint that answers every request with an empty `200` and keeps nothing.
struct Sink {
    addr: std::net::SocketAddr,
    server: Arc<tiny_http::Server>,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Sink {
    fn start() -> Self {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind the sink"));
        let addr = server.server_addr().to_ip().expect("an IP address");
        let stopping = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let (server, stopping) = (server.clone(), stopping.clone());
            move || loop {
                match server.recv() {
                    Ok(mut request) => {
                        let _ = io::copy(request.as_reader(), &mut io::sink());
                        let header =
                            tiny_http::Header::from_bytes("Content-Type", "application/x-protobuf")
                                .expect("static header");
                        let _ =
                            request.respond(tiny_http::Response::empty(200).with_header(header));
                    }
                    Err(_) if stopping.load(Ordering::Acquire) => return,
                    Err(_) => continue,
                }
            }
        });
        Self {
            addr,
            server,
            stopping,
            thread: Some(thread),
        }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::Release);
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

criterion_group!(benches, bench_processor, bench_exporter);
criterion_main!(benches);
