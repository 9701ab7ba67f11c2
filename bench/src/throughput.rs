//! End-to-end throughput, burst, memory, many-runs and bytes-on-the-wire measurements of
//! [`ZenmlOtelLayer`], against the official `opentelemetry-appender-tracing` bridge over the
//! SDK's `BatchLogProcessor` and `opentelemetry_otlp` HTTP exporter.
//!
//! ```text
//! cargo run -p zenml-otel-bench --release -- <scenario> [--n N] [--reps R] [--runs 1,8,1000]
//!                                              [--impl ours|bridge]
//! ```
//!
//! `scripts/bench.sh` runs every scenario, criterion and the Python reference, and summarises;
//! `BENCHMARKS.md` has the current figures, `BENCHMARKS-history.md` every run before.
//!
//! Scenarios (each prints one `RESULT {json}` line and one `# human` line per case):
//!
//! - `throughput` (P2): records/s from the first emit to the last record acknowledged by rotel
//!   (`--exporter blackhole`) over OTLP/HTTP protobuf on loopback. Queue ≥ N so nothing is lost,
//!   batch 512, delay 1000 ms on both sides. Ours: `handle.force_flush()` (Ok only when every
//!   export succeeded) and `stats()`; the bridge: `SdkLoggerProvider::force_flush()`, counting what
//!   its exporter got acknowledged. `--reps` alternating repetitions; medians and their ratio.
//!   `--protocol grpc`: the same over OTLP/gRPC (the bridge with opentelemetry-otlp's tonic
//!   exporter on a one-worker tokio runtime, as ours).
//! - `burst` (P3): 20,000 records as fast as possible at the seed defaults (queue 2048, delay
//!   1000 ms, batch 512) to rotel, which forwards (`--exporter otlp`, gzip) to a counting sink:
//!   delivered / dropped for ours with `on_full = "drop"` (the default) and `"block"` (`stats()`,
//!   checking `emitted == exported + dropped + failed + rejected`), and for the bridge
//!   (acknowledged by rotel, and arrived at the sink; the SDK does not count its drops).
//! - `memory` (P4): 10 million records at full speed through our layer with the default queue, to
//!   rotel (blackhole) or, without rotel, to the counting sink: peak RSS growth (VmHWM after
//!   minus VmRSS before, the peak being reset through `/proc/self/clear_refs` first) and threads.
//! - `runs` (P4): 1,000 concurrent runs × 2 steps (3,000 spans open at once), `--n` (default 5)
//!   records in each run and step, interleaved, default queue, to the counting sink (a child
//!   process, so it adds no thread or memory to ours): threads, RSS and `stats().live_runs`
//!   before / during / after, over `--reps` (default 3) waves, plus the requests it took (ours
//!   sends one request per batch over HTTP, with a `ResourceLogs` per run/step in it).
//!   `--runs N` changes the number of runs.
//! - `bytes` (P5): request bytes per record, protobuf and gzip, ours vs the official exporter, for
//!   the same records, with `--runs` runs interleaved (default 1, 8 and 1000), into the counting
//!   sink: wire (Content-Length) bytes, decompressed bytes and header bytes.
//! - `encode`: what opentelemetry-otlp's encoding costs (proto conversion and grouping, prost
//!   encoding, drop, gzip), timed on one thread without I/O, on records shaped like our layer's:
//!   the official bridge pays it for every record, and so do we over gRPC. Over HTTP we encode
//!   ourselves (src/otlp/protobuf.rs); its cost shows in `throughput`'s CPU column for the
//!   sender threads.
//! - `compress`: CPU µs and bytes per record of gzip (flate2, levels 1, 3, 6, 9) and zstd
//!   (levels -5, -1, 1, 3), on one thread, on the request bodies our layer really sends (`--n` records of
//!   one step, default 20,000, batches of 512, into the in-process receiver), each body
//!   compressed `--reps` times (default 5); the level our exporter uses is chosen from this.
//!
//! The record every case logs, inside a span carrying `zenml.pipeline_run_id`, `zenml.step_id`
//! and `zenml.source`: `info!(i, rows = 42u64, "step progress")`.
//!
//! rotel is `$ROTEL_AGENT`, else `rotel-agent` on `PATH`, started by the tests' launcher
//! (`tests/common/rotel.rs`); without it, `throughput` and `burst` say they cannot run and print
//! a `"skipped"` result. The counting sink is this same binary
//! started as a child with the hidden `sink` scenario.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use opentelemetry::KeyValue;
use opentelemetry_appender_tracing::layer::{OpenTelemetryTracingBridge, TracingSpanAttributes};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{
    BatchConfigBuilder, BatchLogProcessor, LogBatch, LogExporter, SdkLoggerProvider,
};
use opentelemetry_sdk::Resource;
use serde_json::{json, Value};
use tracing::{info, info_span, Span};
use tracing_subscriber::layer::SubscriberExt as _;
use zenml_otel::{Compression, ExportStats, OnFull, OtelLogStoreConfig, ZenmlOtelLayer};

/// The tests' rotel launcher, the repository's one.
#[allow(dead_code)]
#[path = "../../tests/common/rotel.rs"]
mod rotel;
use rotel::Rotel;

/// The seed defaults (our config's and the SDK's): queue, delay, batch.
const DEFAULT_QUEUE: usize = 2048;
const DEFAULT_DELAY_MS: u64 = 1000;
const DEFAULT_BATCH: usize = 512;
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

const RUN_ID: &str = "3f2b8c1e-5d4a-4e7b-9c1f-0a2b3c4d5e6f";
const STEP_ID: &str = "8e7d6c5b-4a39-4281-b7c6-d5e4f3a2b1c0";

/// The record every case logs: two fields and a message, one callsite for all cases.
#[inline(always)]
fn event(i: u64) {
    info!(i, rows = 42u64, "step progress");
}

fn step_span(run: &str, step: &str) -> Span {
    info_span!(
        "step",
        zenml.pipeline_run_id = run,
        zenml.step_id = step,
        zenml.source = "step"
    )
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let scenario = args.first().map(String::as_str).unwrap_or("");
    if scenario == "sink" {
        sink::serve();
    }
    // Explicit config > environment > defaults: a stray OTEL_* / ZENML_LOGS_OTEL_* variable would
    // change the seed defaults under test (and the SDK exporter's endpoint and headers).
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if key.starts_with("OTEL_") || key.starts_with("ZENML_LOGS_OTEL_") {
            eprintln!("note: ignoring {key} for the measurement");
            std::env::remove_var(&key);
        }
    }
    let opts = Opts::parse(&args[1.min(args.len())..]);
    match scenario {
        "throughput" => throughput(&opts),
        "burst" => burst(&opts),
        "memory" => memory(&opts),
        "runs" => runs(&opts),
        "bytes" => bytes(&opts),
        "encode" => encode(&opts),
        "compress" => compress(&opts),
        _ => {
            eprintln!(
                "usage: cargo run -p zenml-otel-bench --release -- \
                 <throughput|burst|memory|runs|bytes|encode|compress> [--n N] [--reps R] [--runs 1,8,1000]"
            );
            std::process::exit(2);
        }
    }
}

#[derive(Debug)]
struct Opts {
    /// `--impl ours|bridge`: only one side (for profiling).
    implementation: Option<String>,
    n: Option<u64>,
    reps: Option<usize>,
    runs: Option<Vec<usize>>,
    /// `--protocol grpc`: `throughput` over OTLP/gRPC on both sides (default OTLP/HTTP).
    grpc: bool,
}

impl Opts {
    fn parse(args: &[String]) -> Self {
        let mut opts = Opts {
            implementation: None,
            n: None,
            reps: None,
            runs: None,
            grpc: false,
        };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = || it.next().cloned().unwrap_or_default();
            match arg.as_str() {
                "--n" => opts.n = Some(value().replace('_', "").parse().expect("--n N")),
                "--impl" => opts.implementation = Some(value()),
                "--reps" => opts.reps = Some(value().parse().expect("--reps R")),
                "--protocol" => opts.grpc = value() == "grpc",
                "--runs" => {
                    opts.runs = Some(
                        value()
                            .split(',')
                            .map(|r| r.trim().parse().expect("--runs 1,8,1000"))
                            .collect(),
                    )
                }
                other => panic!("unknown option {other}"),
            }
        }
        opts
    }
}

/// Prints the machine-readable line and the human one.
fn report(result: Value, human: String) {
    println!("RESULT {result}");
    println!("# {human}");
}

fn skipped(scenario: &str, why: &str) {
    eprintln!("cannot run the `{scenario}` scenario: {why}");
    report(
        json!({"scenario": scenario, "skipped": why}),
        format!("{scenario}: SKIPPED ({why})"),
    );
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if v.is_empty() {
        return f64::NAN;
    }
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

// ---------------------------------------------------------------------------------------------
// Our layer and the official bridge, set up the same way.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
struct Batching {
    queue: usize,
    delay_ms: u64,
    batch: usize,
}

const SEED: Batching = Batching {
    queue: DEFAULT_QUEUE,
    delay_ms: DEFAULT_DELAY_MS,
    batch: DEFAULT_BATCH,
};

fn our_config(endpoint: &str, b: Batching, compression: Compression) -> OtelLogStoreConfig {
    OtelLogStoreConfig {
        endpoint: Some(endpoint.to_owned()),
        max_queue_size: b.queue,
        // The bridge's queue counts records only: ours must hold as many, whatever their bytes.
        max_queue_bytes: (b.queue * 4096).max(OtelLogStoreConfig::default().max_queue_bytes),
        schedule_delay_millis: b.delay_ms,
        max_export_batch_size: b.batch,
        export_timeout_millis: EXPORT_TIMEOUT.as_millis() as u64,
        compression,
        ..OtelLogStoreConfig::default()
    }
}

fn our_layer(endpoint: &str, b: Batching, compression: Compression) -> ZenmlOtelLayer {
    ZenmlOtelLayer::new(our_config(endpoint, b, compression)).expect("a valid config")
}

/// `emitted == exported + dropped + failed + rejected`: every record accounted for.
fn accounted(s: &ExportStats) -> bool {
    s.emitted == s.exported + s.dropped + s.failed + s.rejected
}

/// Counts the records its inner exporter got acknowledged.
#[derive(Debug)]
struct Counted<E> {
    inner: E,
    exported: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
}

impl<E: LogExporter> LogExporter for Counted<E> {
    async fn export(&self, batch: LogBatch<'_>) -> OTelSdkResult {
        let n = batch.iter().count() as u64;
        let result = self.inner.export(batch).await;
        match &result {
            Ok(()) => self.exported.fetch_add(n, Ordering::Relaxed),
            Err(_) => self.failed.fetch_add(n, Ordering::Relaxed),
        };
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The official pipeline: bridge (span attributes copied onto records) → SDK provider →
/// `BatchLogProcessor` → `opentelemetry_otlp` HTTP/protobuf exporter (its default blocking
/// reqwest client), with the service attributes our layer puts on its resources.
struct Bridge {
    provider: SdkLoggerProvider,
    exported: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
}

impl Bridge {
    fn new(endpoint: &str, b: Batching, gzip: bool) -> Self {
        let mut builder = opentelemetry_otlp::LogExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(format!("{endpoint}/v1/logs"))
            .with_timeout(EXPORT_TIMEOUT);
        if gzip {
            builder = builder.with_compression(opentelemetry_otlp::Compression::Gzip);
        }
        Self::with_exporter(builder.build().expect("an OTLP exporter"), b)
    }

    /// The same over OTLP/gRPC (opentelemetry-otlp's tonic client, which needs a tokio runtime:
    /// `runtime`'s, entered while the exporter is built).
    fn grpc(endpoint: &str, b: Batching, runtime: &tokio::runtime::Runtime) -> Self {
        let _entered = runtime.enter();
        let exporter = opentelemetry_otlp::LogExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .expect("an OTLP/gRPC exporter");
        Self::with_exporter(exporter, b)
    }

    fn with_exporter(exporter: opentelemetry_otlp::LogExporter, b: Batching) -> Self {
        let exported = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let processor = BatchLogProcessor::builder(Counted {
            inner: exporter,
            exported: exported.clone(),
            failed: failed.clone(),
        })
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_max_queue_size(b.queue)
                .with_scheduled_delay(Duration::from_millis(b.delay_ms))
                .with_max_export_batch_size(b.batch)
                .build(),
        )
        .build();
        let resource = Resource::builder()
            .with_attributes([
                KeyValue::new("service.name", "zenml"),
                KeyValue::new("service.version", "1.0.0"),
                KeyValue::new("service.instance.id", uuid::Uuid::new_v4().to_string()),
                KeyValue::new("deployment.environment", "production"),
            ])
            .build();
        let provider = SdkLoggerProvider::builder()
            .with_resource(resource)
            .with_log_processor(processor)
            .build();
        Self {
            provider,
            exported,
            failed,
        }
    }

    fn layer(
        &self,
    ) -> OpenTelemetryTracingBridge<SdkLoggerProvider, opentelemetry_sdk::logs::SdkLogger> {
        OpenTelemetryTracingBridge::builder(&self.provider)
            .with_tracing_span_attributes(TracingSpanAttributes::all())
            .build()
    }

    fn exported(&self) -> u64 {
        self.exported.load(Ordering::Relaxed)
    }

    fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }
}

/// What one emitting case measured.
#[derive(Debug, Clone)]
struct Timed {
    emit: Duration,
    total: Duration,
    /// CPU seconds by role from the first emit to the end of the flush.
    cpu: std::collections::BTreeMap<&'static str, f64>,
}

/// Logs `n` records inside one step span with `subscriber`, then `flush`es; times both, and
/// takes the CPU each thread (and rotel) spent meanwhile, before anything is shut down.
fn timed_run<S>(
    subscriber: S,
    n: u64,
    rotel_pid: Option<u32>,
    flush: impl FnOnce() -> Result<(), String>,
) -> (Timed, Result<(), String>)
where
    S: tracing::Subscriber + Send + Sync + 'static,
{
    tracing::subscriber::with_default(subscriber, || {
        let span = step_span(RUN_ID, STEP_ID);
        let _entered = span.enter();
        let before = cpu::snapshot(rotel_pid);
        let start = Instant::now();
        for i in 0..n {
            event(i);
        }
        let emit = start.elapsed();
        let flushed = flush();
        let total = start.elapsed();
        let after = cpu::snapshot(rotel_pid);
        (
            Timed {
                emit,
                total,
                cpu: cpu::delta(&before, &after),
            },
            flushed,
        )
    })
}

/// Our layer: logs `n` records inside one step span, then `force_flush`.
fn run_ours(
    layer: ZenmlOtelLayer,
    n: u64,
    rotel_pid: Option<u32>,
) -> (Timed, ExportStats, Result<(), String>) {
    let handle = layer.handle();
    let subscriber = tracing_subscriber::registry().with(layer);
    let (timed, flushed) = timed_run(subscriber, n, rotel_pid, || {
        handle.force_flush().map_err(|e| e.to_string())
    });
    let stats = handle.stats();
    let _ = handle.shutdown();
    (timed, stats, flushed)
}

/// The bridge: the same records, then `SdkLoggerProvider::force_flush`.
fn run_bridge(bridge: &Bridge, n: u64, rotel_pid: Option<u32>) -> (Timed, Result<(), String>) {
    let subscriber = tracing_subscriber::registry().with(bridge.layer());
    let result = timed_run(subscriber, n, rotel_pid, || {
        bridge.provider.force_flush().map_err(|e| e.to_string())
    });
    let _ = bridge.provider.shutdown();
    result
}

/// CPU microseconds per record by role.
fn cpu_per_record(timed: &Timed, n: u64) -> Value {
    let mut map = serde_json::Map::new();
    for (role, secs) in &timed.cpu {
        map.insert((*role).to_owned(), json!(secs * 1e6 / n as f64));
    }
    Value::Object(map)
}

fn cpu_line(timed: &Timed, n: u64) -> String {
    timed
        .cpu
        .iter()
        .map(|(role, secs)| format!("{role} {:.2}", secs * 1e6 / n as f64))
        .collect::<Vec<_>>()
        .join(", ")
}

// ---------------------------------------------------------------------------------------------
// P2: delivered throughput.
// ---------------------------------------------------------------------------------------------

fn throughput(opts: &Opts) {
    let n = opts.n.unwrap_or(300_000);
    let reps = opts.reps.unwrap_or(3);
    let mut rotel = match Rotel::start_blackhole() {
        Ok(rotel) => rotel,
        Err(why) => return skipped("throughput", &why),
    };
    let pid = Some(rotel.pid());
    let (endpoint, protocol) = if opts.grpc {
        (&rotel.grpc_endpoint, "otlp/grpc")
    } else {
        (&rotel.http_endpoint, "otlp/http protobuf")
    };
    // The bridge's gRPC exporter runs on tokio; one worker, as our crate's own runtime.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let batching = Batching {
        queue: n as usize,
        ..SEED
    };
    let (run_ours_side, run_bridge_side) = match opts.implementation.as_deref() {
        Some("ours") => (true, false),
        Some("bridge") => (false, true),
        _ => (true, true),
    };
    let (mut ours, mut bridge) = (Vec::new(), Vec::new());
    let (mut ours_emit, mut bridge_emit) = (Vec::new(), Vec::new());
    let (mut ours_cpu, mut bridge_cpu) = (Vec::new(), Vec::new());
    for rep in 0..reps {
        if run_ours_side {
            let layer = ZenmlOtelLayer::new(OtelLogStoreConfig {
                protocol: if opts.grpc {
                    zenml_otel::Protocol::Grpc
                } else {
                    zenml_otel::Protocol::HttpProtobuf
                },
                ..our_config(endpoint, batching, Compression::None)
            })
            .expect("a valid config");
            let (timed, stats, flushed) = run_ours(layer, n, pid);
            flushed.expect("our force_flush to rotel");
            assert_eq!(
                (stats.emitted, stats.exported, stats.dropped, stats.failed),
                (n, n, 0, 0),
                "ours must deliver every record"
            );
            let rate = n as f64 / timed.total.as_secs_f64();
            ours.push(rate);
            ours_emit.push(n as f64 / timed.emit.as_secs_f64());
            eprintln!(
                "rep {rep} ours:   {rate:>10.0} records/s delivered (emit {:?}, total {:?}); \
                 CPU us/record: {}",
                timed.emit,
                timed.total,
                cpu_line(&timed, n)
            );
            ours_cpu.push(cpu_per_record(&timed, n));
        }
        if run_bridge_side {
            let b = if opts.grpc {
                Bridge::grpc(endpoint, batching, &runtime)
            } else {
                Bridge::new(endpoint, batching, false)
            };
            let (timed, flushed) = run_bridge(&b, n, pid);
            flushed.expect("the bridge's force_flush to rotel");
            assert_eq!(
                (b.exported(), b.failed()),
                (n, 0),
                "the bridge must deliver every record"
            );
            let rate = n as f64 / timed.total.as_secs_f64();
            bridge.push(rate);
            bridge_emit.push(n as f64 / timed.emit.as_secs_f64());
            eprintln!(
                "rep {rep} bridge: {rate:>10.0} records/s delivered (emit {:?}, total {:?}); \
                 CPU us/record: {}",
                timed.emit,
                timed.total,
                cpu_line(&timed, n)
            );
            bridge_cpu.push(cpu_per_record(&timed, n));
        }
    }
    check_alive(&mut rotel);
    let (o, b) = (median(&ours), median(&bridge));
    report(
        json!({
            "scenario": "throughput",
            "n": n,
            "reps": reps,
            "transport": format!("{protocol} -> rotel blackhole (loopback)"),
            "batching": {"queue": batching.queue, "delay_ms": batching.delay_ms, "batch": batching.batch},
            "ours_records_per_s": o,
            "bridge_records_per_s": b,
            "ratio_ours_over_bridge": o / b,
            "ours_samples": ours,
            "bridge_samples": bridge,
            "ours_emit_records_per_s": median(&ours_emit),
            "bridge_emit_records_per_s": median(&bridge_emit),
            "ours_cpu_us_per_record": ours_cpu,
            "bridge_cpu_us_per_record": bridge_cpu,
        }),
        format!(
            "throughput (P2, {protocol}, {n} records, median of {reps}): ours {o:.0}/s, official \
             bridge {b:.0}/s => {:.2}x (emit only: ours {:.0}/s, bridge {:.0}/s)",
            o / b,
            median(&ours_emit),
            median(&bridge_emit)
        ),
    );
}

// ---------------------------------------------------------------------------------------------
// P3: burst at the seed defaults.
// ---------------------------------------------------------------------------------------------

fn burst(opts: &Opts) {
    let n = opts.n.unwrap_or(20_000);
    let reps = opts.reps.unwrap_or(3);
    if let Err(why) = rotel::find_binary() {
        return skipped("burst", &why);
    }
    let batching = json!({"queue": SEED.queue, "delay_ms": SEED.delay_ms, "batch": SEED.batch});
    for rep in 0..reps {
        // Ours, with the default `on_full = "drop"`, then with `on_full = "block"`.
        for (name, on_full) in [("ours", OnFull::Drop), ("ours_block", OnFull::Block)] {
            let sink = sink::Sink::start();
            let rotel = Rotel::start_forwarding_to(&sink.endpoint()).expect("rotel");
            let layer = ZenmlOtelLayer::new(OtelLogStoreConfig {
                on_full,
                ..our_config(&rotel.http_endpoint, SEED, Compression::None)
            })
            .expect("a valid config");
            let (timed, stats, flushed) = run_ours(layer, n, None);
            let arrived = sink.settle(stats.exported, Duration::from_secs(10)).records;
            let exact = accounted(&stats);
            report(
                json!({
                    "scenario": "burst", "impl": name, "rep": rep, "n": n, "batching": batching,
                    "on_full": format!("{on_full:?}").to_lowercase(),
                    "emitted": stats.emitted, "delivered": stats.exported, "dropped": stats.dropped,
                    "failed": stats.failed, "rejected": stats.rejected, "arrived_at_sink": arrived,
                    "accounting_exact": exact, "flush": flushed.clone().err(),
                    "emit_ms": timed.emit.as_secs_f64() * 1e3,
                    "total_ms": timed.total.as_secs_f64() * 1e3,
                }),
                format!(
                    "burst (P3) {name}: {n} emitted in {:.1} ms -> delivered {} ({:.1}%), \
                     dropped {}, failed {}, rejected {}; emitted == exported+dropped+failed+rejected: \
                     {exact}; arrived via rotel: {arrived}",
                    timed.emit.as_secs_f64() * 1e3,
                    stats.exported,
                    100.0 * stats.exported as f64 / n as f64,
                    stats.dropped,
                    stats.failed,
                    stats.rejected,
                ),
            );
        }

        // The official pipeline.
        let sink = sink::Sink::start();
        let rotel = Rotel::start_forwarding_to(&sink.endpoint()).expect("rotel");
        let b = Bridge::new(&rotel.http_endpoint, SEED, false);
        let (timed, flushed) = run_bridge(&b, n, None);
        let acked = b.exported();
        let arrived = sink.settle(acked, Duration::from_secs(10)).records;
        report(
            json!({
                "scenario": "burst", "impl": "bridge", "rep": rep, "n": n, "batching": batching,
                "emitted": n, "delivered": acked, "dropped": n - acked - b.failed(),
                "failed": b.failed(), "arrived_at_sink": arrived, "flush": flushed.err(),
                "emit_ms": timed.emit.as_secs_f64() * 1e3,
                "total_ms": timed.total.as_secs_f64() * 1e3,
            }),
            format!(
                "burst (P3) official bridge: {n} emitted in {:.1} ms -> delivered {acked} ({:.1}%), \
                 dropped {} (not counted by the SDK: n - acknowledged); arrived via rotel: {arrived}",
                timed.emit.as_secs_f64() * 1e3,
                100.0 * acked as f64 / n as f64,
                n - acked - b.failed(),
            ),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// P4: memory under 10M records, and many concurrent runs.
// ---------------------------------------------------------------------------------------------

/// CPU time per thread (this process) and per process (rotel), from `/proc`.
mod cpu {
    use std::collections::{BTreeMap, HashMap};

    /// utime + stime of a `/proc/.../stat` line, in clock ticks, and the thread's name.
    /// (name, user + kernel ticks, kernel ticks) of a `stat` file.
    fn parse(stat: &str) -> Option<(String, u64, u64)> {
        let open = stat.find('(')?;
        let close = stat.rfind(')')?;
        let comm = stat[open + 1..close].to_owned();
        let rest: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        // Fields after the name start at field 3 (state); utime is field 14, stime 15.
        let utime: u64 = rest.get(11)?.parse().ok()?;
        let stime: u64 = rest.get(12)?.parse().ok()?;
        Some((comm, utime + stime, stime))
    }

    fn ticks_per_second() -> f64 {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    }

    /// Every live thread of this process: tid -> (name, ticks, of which in the kernel).
    #[derive(Debug, Clone, Default)]
    pub(crate) struct Snapshot {
        threads: HashMap<String, (String, u64, u64)>,
        rotel: u64,
    }

    pub(crate) fn snapshot(rotel_pid: Option<u32>) -> Snapshot {
        let mut threads = HashMap::new();
        if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
            for entry in dir.flatten() {
                let tid = entry.file_name().to_string_lossy().into_owned();
                if let Some(parsed) = std::fs::read_to_string(entry.path().join("stat"))
                    .ok()
                    .as_deref()
                    .and_then(parse)
                {
                    threads.insert(tid, parsed);
                }
            }
        }
        let rotel = rotel_pid
            .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
            .as_deref()
            .and_then(parse)
            .map_or(0, |(_, ticks, _)| ticks);
        Snapshot { threads, rotel }
    }

    /// CPU seconds spent between two snapshots, by role: the emitting (main) thread, the export
    /// thread, the HTTP client's runtime thread, our senders (and the part of theirs spent in
    /// the kernel: on loopback a sender also runs the collector's TCP receive path), anything
    /// else here, and rotel.
    pub(crate) fn delta(before: &Snapshot, after: &Snapshot) -> BTreeMap<&'static str, f64> {
        let tps = ticks_per_second();
        let mut out = BTreeMap::new();
        for (tid, (comm, ticks, kernel)) in &after.threads {
            let (start, kernel_start) =
                before.threads.get(tid).map_or((0, 0), |(_, t, k)| (*t, *k));
            let role = match comm.as_str() {
                "throughput" => "emitting_thread",
                "zenml-otel-expo" | "OpenTelemetry.L" => "export_thread",
                c if c.starts_with("reqwest") => "http_client_thread",
                c if c.starts_with("zenml-otel-send") => "sender_threads",
                _ => "other_threads",
            };
            *out.entry(role).or_insert(0.0) += ticks.saturating_sub(start) as f64 / tps;
            if role == "sender_threads" {
                *out.entry("sender_threads_kernel").or_insert(0.0) +=
                    kernel.saturating_sub(kernel_start) as f64 / tps;
            }
        }
        out.insert(
            "rotel",
            after.rotel.saturating_sub(before.rotel) as f64 / tps,
        );
        out
    }
}

mod proc_self {
    /// A `kB` field of `/proc/self/status`, in bytes.
    pub(crate) fn status_bytes(field: &str) -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        status
            .lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map_or(0, |kb| kb * 1024)
    }

    pub(crate) fn rss() -> u64 {
        status_bytes("VmRSS")
    }

    pub(crate) fn hwm() -> u64 {
        status_bytes("VmHWM")
    }

    /// Resets VmHWM to the current RSS (Linux ≥ 4.0); `false` if that is not possible.
    pub(crate) fn reset_hwm() -> bool {
        std::fs::write("/proc/self/clear_refs", "5").is_ok()
    }

    pub(crate) fn threads() -> usize {
        std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
    }
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn memory(opts: &Opts) {
    let n = opts.n.unwrap_or(10_000_000);
    // To rotel if there is one, else to the counting sink (both out of process).
    let (mut rotel, sink, target);
    match Rotel::start_blackhole() {
        Ok(r) => {
            target = format!("rotel blackhole ({})", r.http_endpoint);
            rotel = Some(r);
            sink = None;
        }
        Err(why) => {
            eprintln!("memory: {why}; using the local counting sink instead");
            let s = sink::Sink::start();
            target = format!("local counting sink ({})", s.endpoint());
            sink = Some(s);
            rotel = None;
        }
    }
    let endpoint = rotel
        .as_ref()
        .map(|r| r.http_endpoint.clone())
        .or_else(|| sink.as_ref().map(|s| s.endpoint()))
        .unwrap();
    let layer = our_layer(&endpoint, SEED, Compression::None);
    let handle = layer.handle();
    let subscriber = tracing_subscriber::registry().with(layer);
    let result = tracing::subscriber::with_default(subscriber, || {
        let span = step_span(RUN_ID, STEP_ID);
        let _entered = span.enter();
        // Warm up: the connection, the HTTP client's threads, the allocator's arenas.
        for i in 0..DEFAULT_QUEUE as u64 {
            event(i);
        }
        handle.force_flush().expect("warm-up flush");
        let warm = handle.stats();
        let threads_before = proc_self::threads();
        let hwm_reset = proc_self::reset_hwm();
        let (rss_before, hwm_before) = (proc_self::rss(), proc_self::hwm());
        let start = Instant::now();
        let mut threads_max = threads_before;
        for i in 0..n {
            event(i);
            if i % 1_000_000 == 0 {
                threads_max = threads_max.max(proc_self::threads());
            }
        }
        let emit = start.elapsed();
        let flushed = handle.force_flush().map_err(|e| e.to_string());
        let total = start.elapsed();
        let (rss_after, hwm_after) = (proc_self::rss(), proc_self::hwm());
        let threads_after = proc_self::threads();
        (
            warm,
            hwm_reset,
            rss_before,
            hwm_before,
            rss_after,
            hwm_after,
            threads_before,
            threads_max,
            threads_after,
            emit,
            total,
            flushed,
        )
    });
    let (
        warm,
        hwm_reset,
        rss_before,
        hwm_before,
        rss_after,
        hwm_after,
        tb,
        tmax,
        ta,
        emit,
        total,
        flushed,
    ) = result;
    let s = handle.stats();
    let _ = handle.shutdown();
    let growth = hwm_after.saturating_sub(rss_before);
    let (emitted, exported, dropped, failed) = (
        s.emitted - warm.emitted,
        s.exported - warm.exported,
        s.dropped - warm.dropped,
        s.failed - warm.failed,
    );
    let consistent = accounted(&s);
    report(
        json!({
            "scenario": "memory", "n": n, "target": target,
            "batching": {"queue": SEED.queue, "delay_ms": SEED.delay_ms, "batch": SEED.batch},
            "rss_before_mb": mb(rss_before), "hwm_before_mb": mb(hwm_before), "hwm_reset": hwm_reset,
            "rss_after_mb": mb(rss_after), "hwm_after_mb": mb(hwm_after),
            "peak_rss_growth_mb": mb(growth), "limit_mb": 50, "ok": mb(growth) < 50.0,
            "threads_before": tb, "threads_max_during": tmax, "threads_after": ta,
            "emitted": emitted, "exported": exported, "dropped": dropped, "failed": failed,
            "accounting_exact": consistent, "flush": flushed.err(),
            "emit_s": emit.as_secs_f64(), "total_s": total.as_secs_f64(),
            "emit_records_per_s": n as f64 / emit.as_secs_f64(),
        }),
        format!(
            "memory (P4, {n} records at full speed, default queue, to {target}): peak RSS growth \
             {:.1} MB (RSS {:.1} -> peak {:.1} -> {:.1} MB; limit 50 MB: {}); threads {tb} -> max \
             {tmax} -> {ta}; exported {exported}, dropped {dropped}, failed {failed} \
             (accounting exact: {consistent}); emit {:.2} s ({:.0}/s)",
            mb(growth),
            mb(rss_before),
            mb(hwm_after),
            mb(rss_after),
            if mb(growth) < 50.0 { "ok" } else { "EXCEEDED" },
            emit.as_secs_f64(),
            n as f64 / emit.as_secs_f64(),
        ),
    );
    if let Some(rotel) = &mut rotel {
        check_alive(rotel);
    }
}

/// One wave of the `runs` scenario.
struct Wave {
    records: u64,
    elapsed: Duration,
    threads_during: usize,
    rss_during: u64,
    live_runs_during: u64,
    threads_after: usize,
    rss_after: u64,
    live_runs_after: u64,
}

fn runs(opts: &Opts) {
    let n_runs = opts
        .runs
        .as_ref()
        .and_then(|r| r.first().copied())
        .unwrap_or(1000);
    let rounds = opts.n.unwrap_or(5);
    let waves = opts.reps.unwrap_or(3);
    let sink = sink::Sink::start();
    let layer = our_layer(&sink.endpoint(), SEED, Compression::None);
    let handle = layer.handle();
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || {
        // Warm up with one record (connection, HTTP client threads).
        step_span("warm-up", "warm-up").in_scope(|| event(0));
        handle.force_flush().expect("warm-up flush");
        let threads_before = proc_self::threads();
        let rss_before = proc_self::rss();
        let sink_before = sink.stats();
        let stats_before = handle.stats();
        let mut rows = Vec::new();
        for wave in 0..waves {
            let start = Instant::now();
            // Every run and both its steps open at the same time.
            let mut spans: Vec<(Span, Span, Span)> = Vec::with_capacity(n_runs);
            for r in 0..n_runs {
                let run_id = format!("run-{wave}-{r:04}-{}", uuid::Uuid::new_v4());
                let run = info_span!("pipeline", zenml.pipeline_run_id = run_id.as_str());
                let s1 = format!("{run_id}-s1");
                let s2 = format!("{run_id}-s2");
                let s1 = info_span!(parent: &run, "step", zenml.step_id = s1.as_str());
                let s2 = info_span!(parent: &run, "step", zenml.step_id = s2.as_str());
                spans.push((run, s1, s2));
            }
            // Records in each run (orchestrator) and step, interleaved.
            let mut i = 0u64;
            for _ in 0..rounds {
                for (run, s1, s2) in &spans {
                    for span in [run, s1, s2] {
                        span.in_scope(|| event(i));
                        i += 1;
                        // Flush well before the default queue (2048) fills: nothing is dropped.
                        if i.is_multiple_of(1000) {
                            handle.force_flush().expect("flush");
                        }
                    }
                }
            }
            handle.force_flush().expect("flush");
            let elapsed = start.elapsed();
            let (threads_during, rss_during) = (proc_self::threads(), proc_self::rss());
            let live_runs_during = handle.stats().live_runs;
            drop(spans);
            handle.force_flush().expect("flush after close");
            rows.push(Wave {
                records: i,
                elapsed,
                threads_during,
                rss_during,
                live_runs_during,
                threads_after: proc_self::threads(),
                rss_after: proc_self::rss(),
                live_runs_after: handle.stats().live_runs,
            });
        }
        let s = handle.stats();
        let exported = s.exported - stats_before.exported;
        let sink_after = sink.settle(sink_before.records + exported, Duration::from_secs(5));
        let records = s.emitted - stats_before.emitted;
        let requests = sink_after.requests - sink_before.requests;
        let consistent = accounted(&s);
        let waves_json: Vec<Value> = rows
            .iter()
            .enumerate()
            .map(|(w, r)| {
                json!({"wave": w, "records": r.records, "elapsed_s": r.elapsed.as_secs_f64(),
                       "records_per_s": r.records as f64 / r.elapsed.as_secs_f64(),
                       "threads_during": r.threads_during, "rss_during_mb": mb(r.rss_during),
                       "live_runs_during": r.live_runs_during,
                       "threads_after": r.threads_after, "rss_after_mb": mb(r.rss_after),
                       "live_runs_after": r.live_runs_after})
            })
            .collect();
        let max_threads = rows
            .iter()
            .map(|r| r.threads_during.max(r.threads_after))
            .max()
            .unwrap_or(0);
        let (first, last) = (rows.first().unwrap(), rows.last().unwrap());
        let rate = median(
            &rows
                .iter()
                .map(|r| r.records as f64 / r.elapsed.as_secs_f64())
                .collect::<Vec<_>>(),
        );
        report(
            json!({
                "scenario": "runs", "runs": n_runs, "steps_per_run": 2, "records_per_span": rounds,
                "spans_open": n_runs * 3, "waves": waves_json,
                "threads_before": threads_before, "rss_before_mb": mb(rss_before),
                "extra_threads": max_threads as i64 - threads_before as i64,
                "rss_growth_during_first_wave_mb": mb(first.rss_during) - mb(rss_before),
                "rss_after_last_minus_after_first_wave_mb": mb(last.rss_after) - mb(first.rss_after),
                "records": records, "exported": exported,
                "dropped": s.dropped - stats_before.dropped, "failed": s.failed - stats_before.failed,
                "rejected": s.rejected - stats_before.rejected,
                "requests": requests, "records_per_request": records as f64 / requests.max(1) as f64,
                "records_per_s": rate, "accounting_exact": consistent,
            }),
            format!(
                "runs (P4, {n_runs} runs x 2 steps open at once, {rounds} records per span, {waves} \
                 waves): threads {threads_before} -> during {} -> after {} (extra: {}); RSS {:.1} MB \
                 -> during wave 1 {:.1} -> after wave 1 {:.1} -> after wave {waves} {:.1} MB; live runs \
                 during {} -> after {}; {records} records in {requests} requests ({:.2} \
                 records/request), {rate:.0} records/s; dropped {}, failed {}",
                first.threads_during,
                last.threads_after,
                max_threads as i64 - threads_before as i64,
                mb(rss_before),
                mb(first.rss_during),
                mb(first.rss_after),
                mb(last.rss_after),
                first.live_runs_during,
                last.live_runs_after,
                records as f64 / requests.max(1) as f64,
                s.dropped - stats_before.dropped,
                s.failed - stats_before.failed,
            ),
        );
    });
    let _ = handle.shutdown();
}

// ---------------------------------------------------------------------------------------------
// P5: bytes on the wire.
// ---------------------------------------------------------------------------------------------

fn bytes(opts: &Opts) {
    let n = opts.n.unwrap_or(10_000);
    let run_counts = opts.runs.clone().unwrap_or_else(|| vec![1, 8, 1000]);
    let batching = Batching {
        queue: n as usize,
        ..SEED
    };
    let mut table: BTreeMap<(usize, &str), (f64, f64)> = BTreeMap::new();
    for &n_runs in &run_counts {
        for gzip in [false, true] {
            let compression = if gzip { "gzip" } else { "none" };
            for implementation in ["ours", "bridge"] {
                let sink = sink::Sink::start();
                let emit_all = |spans: &[Span]| {
                    for i in 0..n {
                        spans[i as usize % spans.len()].in_scope(|| event(i));
                    }
                };
                let make_spans = || -> Vec<Span> {
                    (0..n_runs)
                        .map(|r| {
                            step_span(&format!("{RUN_ID}-{r:04}"), &format!("{STEP_ID}-{r:04}"))
                        })
                        .collect()
                };
                let delivered = if implementation == "ours" {
                    let layer = our_layer(
                        &sink.endpoint(),
                        batching,
                        if gzip {
                            Compression::Gzip
                        } else {
                            Compression::None
                        },
                    );
                    let handle = layer.handle();
                    let subscriber = tracing_subscriber::registry().with(layer);
                    tracing::subscriber::with_default(subscriber, || {
                        let spans = make_spans();
                        emit_all(&spans);
                        handle.force_flush().expect("flush");
                        drop(spans);
                    });
                    let s = handle.stats();
                    let _ = handle.shutdown();
                    assert_eq!((s.exported, s.dropped, s.failed), (n, 0, 0));
                    s.exported
                } else {
                    let b = Bridge::new(&sink.endpoint(), batching, gzip);
                    let subscriber = tracing_subscriber::registry().with(b.layer());
                    tracing::subscriber::with_default(subscriber, || {
                        let spans = make_spans();
                        emit_all(&spans);
                        b.provider.force_flush().expect("flush");
                        drop(spans);
                    });
                    let _ = b.provider.shutdown();
                    assert_eq!((b.exported(), b.failed()), (n, 0));
                    b.exported()
                };
                let st = sink.settle(delivered, Duration::from_secs(5));
                assert_eq!(st.records, n, "the sink must have decoded every record");
                let wire = st.wire_bytes as f64 / n as f64;
                let raw = st.raw_bytes as f64 / n as f64;
                let headers = st.header_bytes as f64 / n as f64;
                table.insert((n_runs, if gzip { "gzip" } else { "none" }), {
                    let e = table
                        .get(&(n_runs, if gzip { "gzip" } else { "none" }))
                        .copied()
                        .unwrap_or((0.0, 0.0));
                    if implementation == "ours" {
                        (wire, e.1)
                    } else {
                        (e.0, wire)
                    }
                });
                report(
                    json!({
                        "scenario": "bytes", "impl": implementation, "runs": n_runs,
                        "compression": compression, "records": n, "requests": st.requests,
                        "resource_logs": st.resource_logs,
                        "wire_bytes": st.wire_bytes, "raw_bytes": st.raw_bytes,
                        "header_bytes": st.header_bytes,
                        "wire_bytes_per_record": wire, "raw_bytes_per_record": raw,
                        "header_bytes_per_record": headers,
                    }),
                    format!(
                        "bytes (P5) {implementation:6} runs={n_runs:<4} {compression:4}: \
                         {wire:7.1} B/record on the wire (protobuf {raw:7.1} B/record, HTTP headers \
                         {headers:6.1} B/record), {} requests, {} ResourceLogs",
                        st.requests, st.resource_logs
                    ),
                );
            }
        }
    }
    for ((n_runs, compression), (ours, bridge)) in table {
        report(
            json!({"scenario": "bytes_ratio", "runs": n_runs, "compression": compression,
                   "ours_wire_bytes_per_record": ours, "bridge_wire_bytes_per_record": bridge,
                   "ratio_ours_over_bridge": ours / bridge}),
            format!(
                "bytes (P5) runs={n_runs:<4} {compression:4}: ours {ours:.1} B/record vs bridge \
                 {bridge:.1} B/record => {:.2}x",
                ours / bridge
            ),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Where the export thread's time goes: opentelemetry-otlp's encoding path, without I/O.
// ---------------------------------------------------------------------------------------------

/// Times, on this thread and without any I/O, the steps opentelemetry-otlp's HTTP exporter takes
/// for each request our worker sends, on records shaped like our layer's: the resource conversion
/// (`set_resource`, once per request), `group_logs_by_resource_and_scope` (the SdkLogRecord ->
/// protobuf struct conversion, with an InstrumentationScope rebuilt and hashed per record),
/// prost encoding, dropping the request, and gzip.
fn encode(opts: &Opts) {
    use opentelemetry::logs::{
        AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity,
    };
    use opentelemetry::{InstrumentationScope, Key};
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
    use opentelemetry_proto::transform::logs::tonic::group_logs_by_resource_and_scope;
    use prost::Message as _;

    let n = opts.n.unwrap_or(200_000) as usize;
    let batch = DEFAULT_BATCH;
    let logger = SdkLoggerProvider::builder()
        .build()
        .logger_with_scope(InstrumentationScope::builder("zenml-otel").build());
    let scope = InstrumentationScope::builder("zenml-otel")
        .with_version("0.1.0")
        .build();
    let resource = Resource::builder_empty()
        .with_attributes([
            KeyValue::new("service.name", "zenml"),
            KeyValue::new("service.version", "1.0.0"),
            KeyValue::new("service.instance.id", uuid::Uuid::new_v4().to_string()),
            KeyValue::new("deployment.environment", "production"),
            KeyValue::new("telemetry.sdk.name", "opentelemetry"),
            KeyValue::new("telemetry.sdk.language", "rust"),
            KeyValue::new("telemetry.sdk.version", "0.33.1"),
            KeyValue::new("zenml.pipeline_run_id", RUN_ID),
            KeyValue::new("zenml.step_id", STEP_ID),
            KeyValue::new("zenml.source", "step"),
        ])
        .build();
    let make = |i: usize| {
        let now = std::time::SystemTime::now();
        let mut r = logger.create_log_record();
        r.set_severity_number(Severity::Info);
        r.set_severity_text("INFO");
        r.set_timestamp(now);
        r.set_observed_timestamp(now);
        r.set_body(AnyValue::String(
            format!("{:?}", format_args!("step progress")).into(),
        ));
        r.add_attribute(Key::from_static_str("i"), AnyValue::Int(i as i64));
        r.add_attribute(Key::from_static_str("rows"), AnyValue::Int(42));
        r.set_target("throughput");
        r.add_attribute(
            Key::from_static_str("code.file.path"),
            AnyValue::String("bench/src/throughput.rs".into()),
        );
        r.add_attribute(Key::from_static_str("code.line.number"), AnyValue::Int(72));
        r.add_attribute(
            Key::from_static_str("code.namespace"),
            AnyValue::String("throughput".into()),
        );
        r
    };
    // A queue's worth of records (as the worker sees them: recent, mostly in cache), encoded over
    // and over until `n` records went through.
    let records: Vec<_> = (0..DEFAULT_QUEUE).map(make).collect();
    let (mut t_resource, mut t_group, mut t_encode, mut t_drop, mut t_gzip) = (
        Duration::ZERO,
        Duration::ZERO,
        Duration::ZERO,
        Duration::ZERO,
        Duration::ZERO,
    );
    let mut bytes = 0usize;
    let mut done = 0;
    for chunk in records.chunks(batch).cycle() {
        if done >= n {
            break;
        }
        done += chunk.len();
        let pairs: Vec<_> = chunk.iter().map(|r| (r, &scope)).collect();
        let t = Instant::now();
        let with_schema = ResourceAttributesWithSchema::from(&resource);
        t_resource += t.elapsed();
        let t = Instant::now();
        let resource_logs = group_logs_by_resource_and_scope(&LogBatch::new(&pairs), &with_schema);
        t_group += t.elapsed();
        let request = ExportLogsServiceRequest { resource_logs };
        let t = Instant::now();
        let body = request.encode_to_vec();
        t_encode += t.elapsed();
        let t = Instant::now();
        drop(request);
        drop(with_schema);
        t_drop += t.elapsed();
        bytes += body.len();
        let t = Instant::now();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&body).expect("gzip");
        let _ = gz.finish().expect("gzip");
        t_gzip += t.elapsed();
    }
    let n = done;
    let per = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
    let total = per(t_resource) + per(t_group) + per(t_encode) + per(t_drop);
    report(
        json!({
            "scenario": "encode", "records": n, "batch": batch,
            "us_per_record": {
                "resource_conversion_per_request": per(t_resource),
                "group_and_convert_to_proto": per(t_group),
                "prost_encode": per(t_encode),
                "drop_request": per(t_drop),
                "total_without_gzip": total,
                "gzip": per(t_gzip),
            },
            "protobuf_bytes_per_record": bytes as f64 / n as f64,
            "size_of_sdk_log_record": std::mem::size_of::<opentelemetry_sdk::logs::SdkLogRecord>(),
        }),
        format!(
            "encode (opentelemetry-otlp's path, no I/O, batches of {batch}): {total:.2} us/record = \
             group+convert {:.2} + prost encode {:.2} + drop {:.2} + resource {:.3}; gzip would add \
             {:.2}; size_of::<SdkLogRecord>() = {} B",
            per(t_group),
            per(t_encode),
            per(t_drop),
            per(t_resource),
            per(t_gzip),
            std::mem::size_of::<opentelemetry_sdk::logs::SdkLogRecord>(),
        ),
    );
}

// ---------------------------------------------------------------------------------------------
// What compression costs, per level, on our real request bodies.
// ---------------------------------------------------------------------------------------------

fn compress(opts: &Opts) {
    let n = opts.n.unwrap_or(20_000) as usize;
    let reps = opts.reps.unwrap_or(5);
    let bodies = request_bodies(n);
    let raw: usize = bodies.iter().map(Vec::len).sum();
    let records = n as f64;
    let mut cases = Vec::new();
    let mut time = |name: String, compress: &dyn Fn(&[u8]) -> Vec<u8>| {
        let mut bytes = 0;
        // One thread, no I/O, nothing waits: wall time is its CPU time.
        let started = Instant::now();
        for _ in 0..reps {
            bytes = bodies
                .iter()
                .map(|body| compress(body).len())
                .sum::<usize>();
        }
        let us = started.elapsed().as_secs_f64() * 1e6 / (records * reps as f64);
        let per_record = bytes as f64 / records;
        println!("# {name}: {us:.3} CPU-us/record, {per_record:.2} B/record");
        cases.push(json!({"codec": name, "cpu_us_per_record": us, "bytes_per_record": per_record}));
    };
    for level in [1, 3, 6, 9] {
        time(format!("gzip-{level}"), &|body| {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
            gz.write_all(body).expect("gzip");
            gz.finish().expect("gzip")
        });
    }
    for level in [-5, -1, 1, 3] {
        time(format!("zstd-{level}"), &|body| {
            zstd::bulk::compress(body, level).expect("zstd")
        });
    }
    // The same codecs with their state kept from one request to the next (as a sender could).
    for level in [1, 6] {
        let deflate = std::cell::RefCell::new(flate2::Compress::new(
            flate2::Compression::new(level),
            false,
        ));
        time(format!("gzip-{level}-reused"), &|body| {
            let mut deflate = deflate.borrow_mut();
            deflate.reset();
            let mut out = Vec::with_capacity(body.len() / 4 + 64);
            out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]);
            loop {
                let done = deflate.total_in() as usize;
                out.reserve(4096);
                let status = deflate
                    .compress_vec(&body[done..], &mut out, flate2::FlushCompress::Finish)
                    .expect("deflate");
                if status == flate2::Status::StreamEnd {
                    break;
                }
            }
            let mut crc = flate2::Crc::new();
            crc.update(body);
            out.extend_from_slice(&crc.sum().to_le_bytes());
            out.extend_from_slice(&(body.len() as u32).to_le_bytes());
            out
        });
    }
    for level in [-1, 3] {
        let zstd = std::cell::RefCell::new(zstd::bulk::Compressor::new(level).expect("zstd"));
        time(format!("zstd-{level}-reused"), &|body| {
            zstd.borrow_mut().compress(body).expect("zstd")
        });
    }
    report(
        json!({
            "scenario": "compress", "records": n, "requests": bodies.len(),
            "protobuf_bytes_per_record": raw as f64 / records, "cases": cases,
        }),
        format!(
            "compress: {} requests, {:.1} protobuf B/record (see the lines above)",
            bodies.len(),
            raw as f64 / records
        ),
    );
}

/// The uncompressed protobuf bodies our layer sends for `n` records of one step.
fn request_bodies(n: usize) -> Vec<Vec<u8>> {
    let receiver = zenml_otel::testing::OtlpReceiver::start().expect("receiver");
    let layer = ZenmlOtelLayer::new(OtelLogStoreConfig {
        endpoint: Some(receiver.endpoint()),
        max_queue_size: n,
        max_queue_bytes: usize::MAX / 2,
        ..OtelLogStoreConfig::default()
    })
    .expect("layer");
    let handle = layer.handle();
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || {
        let span = step_span(RUN_ID, STEP_ID);
        let _entered = span.enter();
        for i in 0..n {
            info!(i, rows = 42u64, "step progress");
        }
    });
    handle.force_flush().expect("exported");
    receiver.requests().into_iter().map(|r| r.raw).collect()
}

/// Panics with rotel's log if it died during the measurement.
fn check_alive(rotel: &mut Rotel) {
    if !rotel.is_running() {
        panic!("rotel exited during the measurement: {}", rotel.log());
    }
}

// ---------------------------------------------------------------------------------------------
// The counting sink: an OTLP/HTTP black hole in a child process.
// ---------------------------------------------------------------------------------------------

mod sink {
    use super::*;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use prost::Message as _;

    #[derive(Debug, Default, Clone, Copy)]
    pub(crate) struct Stats {
        pub(crate) requests: u64,
        /// Request bodies as sent (compressed when the client compressed).
        pub(crate) wire_bytes: u64,
        /// Request bodies after content decoding: the protobuf bytes.
        pub(crate) raw_bytes: u64,
        /// Request line and headers.
        pub(crate) header_bytes: u64,
        pub(crate) records: u64,
        pub(crate) resource_logs: u64,
    }

    /// A running sink child process: every OTLP/HTTP request gets `200` and an empty
    /// `ExportLogsServiceResponse`; `GET /stats` returns the counters.
    pub(crate) struct Sink {
        child: Child,
        addr: SocketAddr,
    }

    impl Sink {
        pub(crate) fn start() -> Sink {
            let exe = std::env::current_exe().expect("current_exe");
            let mut child = Command::new(exe)
                .arg("sink")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("spawn the sink");
            let mut line = String::new();
            BufReader::new(child.stdout.take().unwrap())
                .read_line(&mut line)
                .expect("the sink's address");
            let addr = line
                .trim()
                .strip_prefix("LISTENING ")
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| panic!("unexpected sink output {line:?}"));
            Sink { child, addr }
        }

        pub(crate) fn endpoint(&self) -> String {
            format!("http://{}", self.addr)
        }

        pub(crate) fn stats(&self) -> Stats {
            let mut stream = TcpStream::connect(self.addr).expect("connect to the sink");
            stream
                .write_all(b"GET /stats HTTP/1.1\r\nHost: sink\r\nConnection: close\r\n\r\n")
                .expect("ask the sink");
            let mut response = String::new();
            stream
                .read_to_string(&mut response)
                .expect("the sink's stats");
            let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
            let v: Value = serde_json::from_str(body).expect("stats JSON");
            let get = |k: &str| v[k].as_u64().unwrap_or(0);
            Stats {
                requests: get("requests"),
                wire_bytes: get("wire_bytes"),
                raw_bytes: get("raw_bytes"),
                header_bytes: get("header_bytes"),
                records: get("records"),
                resource_logs: get("resource_logs"),
            }
        }

        /// Waits until at least `expected` records arrived and the count stopped moving (rotel
        /// batches and forwards with some delay), at most `timeout`.
        pub(crate) fn settle(&self, expected: u64, timeout: Duration) -> Stats {
            let deadline = Instant::now() + timeout;
            let mut last = self.stats();
            let mut stable_since = Instant::now();
            loop {
                std::thread::sleep(Duration::from_millis(50));
                let now = self.stats();
                if now.records != last.records {
                    stable_since = Instant::now();
                }
                last = now;
                let quiet = stable_since.elapsed() >= Duration::from_millis(300);
                if (last.records >= expected && quiet) || Instant::now() >= deadline {
                    return last;
                }
            }
        }
    }

    impl Drop for Sink {
        fn drop(&mut self) {
            // Closing its stdin tells it to exit.
            drop(self.child.stdin.take());
            let deadline = Instant::now() + Duration::from_secs(2);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    #[derive(Default)]
    struct Counters {
        requests: AtomicU64,
        wire_bytes: AtomicU64,
        raw_bytes: AtomicU64,
        header_bytes: AtomicU64,
        records: AtomicU64,
        resource_logs: AtomicU64,
    }

    /// The child's side: serve until stdin closes.
    pub(crate) fn serve() -> ! {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the sink");
        println!("LISTENING {}", listener.local_addr().unwrap());
        io::stdout().flush().unwrap();
        std::thread::spawn(|| {
            let _ = io::copy(&mut io::stdin(), &mut io::sink());
            std::process::exit(0);
        });
        let counters = Arc::new(Counters::default());
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let counters = counters.clone();
            std::thread::spawn(move || {
                let _ = connection(stream, &counters);
            });
        }
        std::process::exit(0)
    }

    fn connection(stream: TcpStream, counters: &Counters) -> io::Result<()> {
        stream.set_nodelay(true)?;
        let mut writer = stream.try_clone()?;
        let mut reader = BufReader::new(stream);
        loop {
            let mut header_bytes = 0u64;
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            header_bytes += line.len() as u64;
            let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
            let (mut length, mut chunked, mut encoding, mut close) = (0usize, false, None, false);
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header)? == 0 {
                    return Ok(());
                }
                header_bytes += header.len() as u64;
                let header = header.trim_end();
                if header.is_empty() {
                    break;
                }
                let Some((name, value)) = header.split_once(':') else {
                    continue;
                };
                let value = value.trim();
                match name.trim().to_ascii_lowercase().as_str() {
                    "content-length" => length = value.parse().unwrap_or(0),
                    "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
                    "content-encoding" => encoding = Some(value.to_ascii_lowercase()),
                    "connection" => close = value.eq_ignore_ascii_case("close"),
                    _ => {}
                }
            }
            let body = if chunked {
                let mut body = Vec::new();
                loop {
                    let mut size = String::new();
                    reader.read_line(&mut size)?;
                    let size =
                        usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                            .unwrap_or(0);
                    let mut chunk = vec![0; size + 2];
                    reader.read_exact(&mut chunk)?;
                    if size == 0 {
                        break;
                    }
                    body.extend_from_slice(&chunk[..size]);
                }
                body
            } else {
                let mut body = vec![0; length];
                reader.read_exact(&mut body)?;
                body
            };
            if path == "/stats" {
                let c = counters;
                let json = json!({
                    "requests": c.requests.load(Ordering::SeqCst),
                    "wire_bytes": c.wire_bytes.load(Ordering::SeqCst),
                    "raw_bytes": c.raw_bytes.load(Ordering::SeqCst),
                    "header_bytes": c.header_bytes.load(Ordering::SeqCst),
                    "records": c.records.load(Ordering::SeqCst),
                    "resource_logs": c.resource_logs.load(Ordering::SeqCst),
                })
                .to_string();
                write!(
                    writer,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
                    json.len()
                )?;
                return Ok(());
            }
            let raw = match encoding.as_deref() {
                Some("gzip") => {
                    let mut out = Vec::new();
                    flate2::read::GzDecoder::new(&body[..]).read_to_end(&mut out)?;
                    out
                }
                _ => body.clone(),
            };
            let (records, resources) = match ExportLogsServiceRequest::decode(&raw[..]) {
                Ok(request) => (
                    request
                        .resource_logs
                        .iter()
                        .flat_map(|r| &r.scope_logs)
                        .map(|s| s.log_records.len() as u64)
                        .sum(),
                    request.resource_logs.len() as u64,
                ),
                Err(_) => (0, 0),
            };
            // `ZENML_OTEL_BENCH_SINK_DUMP=dir`: keep the first decoded bodies for inspection.
            if let Some(dir) = std::env::var_os("ZENML_OTEL_BENCH_SINK_DUMP") {
                let seq = counters.requests.load(Ordering::SeqCst);
                if seq < 4 {
                    let _ =
                        std::fs::write(PathBuf::from(dir).join(format!("request-{seq}.pb")), &raw);
                }
            }
            counters.requests.fetch_add(1, Ordering::SeqCst);
            counters
                .wire_bytes
                .fetch_add(body.len() as u64, Ordering::SeqCst);
            counters
                .raw_bytes
                .fetch_add(raw.len() as u64, Ordering::SeqCst);
            counters
                .header_bytes
                .fetch_add(header_bytes, Ordering::SeqCst);
            counters.records.fetch_add(records, Ordering::SeqCst);
            counters
                .resource_logs
                .fetch_add(resources, Ordering::SeqCst);
            writer.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n",
            )?;
            if close {
                return Ok(());
            }
        }
    }
}
