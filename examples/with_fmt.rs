//! Console output next to the export: `EnvFilter`, `fmt::layer()` and `ZenmlOtelLayer` in one
//! subscriber.
//!
//! `cargo run --example with_fmt` prints the events on stdout and exports the same events to an
//! in-process OTLP receiver, then checks what it received.
//!
//! The `EnvFilter` sits in the stack as a global filter, so it decides for both layers: the
//! `debug!` below reaches neither the console nor the collector. That is what most programs want
//! (one `RUST_LOG` for everything). To treat them differently, give a layer its own filter
//! instead, e.g. `fmt::layer().with_filter(EnvFilter::new("debug"))` next to
//! `ZenmlOtelLayer::new(cfg)?.with_filter(LevelFilter::INFO)`; keep the `zenml.*` spans enabled
//! for the export layer, since the run and step ids come from them.

use tracing::{debug, info, info_span, warn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter};
use zenml_otel::testing::OtlpReceiver;
use zenml_otel::{OtelLogStoreConfig, ZenmlOtelLayer};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let receiver = OtlpReceiver::start()?; // stands in for the collector
    let layer = ZenmlOtelLayer::new(OtelLogStoreConfig {
        endpoint: Some(receiver.endpoint()),
        ..OtelLogStoreConfig::default()
    })?;
    let handle = layer.handle();
    // A real program would read RUST_LOG (`EnvFilter::try_from_default_env()`); fixed here so
    // the checks hold. `opentelemetry_sdk=warn` keeps the SDK's shutdown notes off the console.
    tracing_subscriber::registry()
        .with(EnvFilter::new("info,opentelemetry_sdk=warn"))
        .with(fmt::layer())
        .with(layer)
        .init();

    {
        let step = info_span!(
            "step",
            zenml.pipeline_run_id = "run-1",
            zenml.step_id = "train"
        );
        let _step = step.enter();
        info!(epochs = 3u64, "training");
        debug!("filtered out of both layers");
        warn!(accuracy = 0.82, "accuracy below threshold");
    }
    handle.shutdown()?; // exports what is queued

    let records = receiver.records();
    let bodies: Vec<_> = records.iter().filter_map(|r| r.body()).collect();
    assert_eq!(bodies, ["training", "accuracy below threshold"]);
    assert!(records
        .iter()
        .all(|r| r.resource_attr("zenml.step_id").as_deref() == Some("train")));
    assert_eq!(records[0].attr_str("epochs").as_deref(), Some("3"));
    assert_eq!(records[0].scope_name, "with_fmt");
    println!(
        "with_fmt: {} records exported under step `train`, the debug event in neither output",
        records.len()
    );
    Ok(())
}
