//! What ZenML's record attributes cost on the wire, per record, protobuf and gzip.
//!
//! `cargo run -p zenml-otel-bench --release --bin zenml-bytes` logs 10,000 records (the benchmark's event: two
//! fields and a message) in one step, twice: with the step's ids on a span only, then with a
//! full ZenML handover (`zenml_otel::handover`, as `run_rust_step` sets it). For each request
//! the receiver got, it re-encodes the same request without ZenML's record attributes
//! (`zenml.log.id`, `zenml.pipeline.run.id`, … — the seed's resource attributes stay), with
//! opentelemetry-proto's prost types (our encoder is byte-for-byte equal to them: see the
//! encoder's property test), and compares sizes; gzip at the exporter's level (6).

use std::io::Write as _;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use prost::Message as _;
use tracing::{info, info_span};
use tracing_subscriber::layer::SubscriberExt;
use zenml_otel::testing::OtlpReceiver;
use zenml_otel::{handover, OtelLogStoreConfig, ZenmlOtelLayer};

const N: u64 = 10_000;
const RUN: &str = "3f2b8c1e-5d4a-4e7b-9c1f-0a2b3c4d5e6f";
const STEP: &str = "8e7d6c5b-4a39-4281-b7c6-d5e4f3a2b1c0";
const ID: &str = "c56b45f8-66d7-41ca-a18f-d191fe71cc6b";

/// What a ZenML step hands over: ids as UUIDs and names as ZenML writes them.
const HANDOVER: &[(&str, &str)] = &[
    (handover::PIPELINE_RUN_ID, RUN),
    (
        handover::PIPELINE_RUN_NAME,
        "training-2026_12_01-21_19_00_635912",
    ),
    (handover::STEP_RUN_ID, STEP),
    (handover::STEP_RUN_NAME, "trainer"),
    (handover::LOG_ID, ID),
    (handover::LOG_SOURCE, "step"),
    (handover::PIPELINE_ID, ID),
    (handover::PIPELINE_NAME, "training"),
    (handover::PROJECT_ID, ID),
    (handover::PROJECT_NAME, "default"),
    (handover::STACK_ID, ID),
    (handover::STACK_NAME, "otel_stack"),
    (handover::USER_ID, ID),
    (handover::USER_NAME, "default"),
    (handover::LOG_STORE_ID, ID),
    (handover::LOG_STORE_NAME, "otel_logs"),
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for name in handover::ALL {
        std::env::remove_var(name);
    }
    let spans_only = measure(false)?;
    for (name, value) in HANDOVER {
        std::env::set_var(name, value);
    }
    let handed_over = measure(true)?;
    for (case, (with, without)) in [
        ("ids on spans (3 attributes)", spans_only),
        ("full handover (16 attributes)", handed_over),
    ] {
        println!(
            "{case}: protobuf {:.1} B/record ({:.1} without, +{:.1}); gzip {:.2} B/record \
             ({:.2} without, +{:.2})",
            with.0,
            without.0,
            with.0 - without.0,
            with.1,
            without.1,
            with.1 - without.1
        );
    }
    Ok(())
}

/// (protobuf, gzip) bytes per record.
type PerRecord = (f64, f64);

/// Bytes per record as sent, and as they would be without ZenML's attributes.
fn measure(handed_over: bool) -> Result<(PerRecord, PerRecord), Box<dyn std::error::Error>> {
    let receiver = OtlpReceiver::start()?;
    let layer = ZenmlOtelLayer::new(OtelLogStoreConfig {
        endpoint: Some(receiver.endpoint()),
        max_queue_size: N as usize,
        ..OtelLogStoreConfig::default()
    })?;
    let handle = layer.handle();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        let span = if handed_over {
            tracing::Span::none()
        } else {
            info_span!("step", zenml.pipeline_run_id = RUN, zenml.step_id = STEP)
        };
        span.in_scope(|| {
            for i in 0..N {
                info!(i, rows = 42u64, "step progress");
            }
        });
    });
    handle.shutdown()?;
    assert_eq!(receiver.record_count() as u64, N, "every record arrived");
    let (mut with, mut without) = ((0, 0), (0, 0));
    for request in receiver.requests() {
        let mut stripped = request.body.clone();
        strip_zenml_record_attributes(&mut stripped);
        let stripped = stripped.encode_to_vec();
        with = add(with, &request.raw)?;
        without = add(without, &stripped)?;
    }
    let per_record = |(raw, gz): (usize, usize)| (raw as f64 / N as f64, gz as f64 / N as f64);
    Ok((per_record(with), per_record(without)))
}

fn add(total: (usize, usize), body: &[u8]) -> std::io::Result<(usize, usize)> {
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gzip.write_all(body)?;
    Ok((total.0 + body.len(), total.1 + gzip.finish()?.len()))
}

fn strip_zenml_record_attributes(request: &mut ExportLogsServiceRequest) {
    let records = request
        .resource_logs
        .iter_mut()
        .flat_map(|r| &mut r.scope_logs)
        .flat_map(|s| &mut s.log_records);
    for record in records {
        record.attributes.retain(|kv| !kv.key.starts_with("zenml."));
    }
}
