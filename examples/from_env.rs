//! A layer configured by environment variables alone: `OtelLogStoreConfig::default()`.
//!
//! `cargo run --example from_env`: fields left at their defaults take the standard `OTEL_*`
//! variables (docs/configuration.md, "Where values come from"). Here the endpoint, `service.name`, extra
//! resource attributes and compression come from the environment; records go to an
//! in-process OTLP receiver, which checks them.

use std::env;

use tracing::{info, info_span};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use zenml_otel::testing::OtlpReceiver;
use zenml_otel::{OtelLogStoreConfig, ZenmlOtelLayer};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Stands in for the collector.
    let receiver = OtlpReceiver::start()?;
    // A real program gets these from its environment (a shell, a container spec, a ZenML
    // step); the example sets them for itself. `set_var` must run before other threads start
    // or read the environment: only the receiver's thread is running here, and it reads none.
    env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint()); // `/v1/logs` is appended
    env::set_var("OTEL_SERVICE_NAME", "feature-store");
    env::set_var("OTEL_RESOURCE_ATTRIBUTES", "team=ml,region=eu%2Dwest");
    env::set_var("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip");
    // Variables that would win over those if the caller's environment had them.
    for name in [
        "LOGS_ENDPOINT",
        "LOGS_COMPRESSION",
        "LOGS_PROTOCOL",
        "PROTOCOL",
    ] {
        env::remove_var(format!("OTEL_EXPORTER_OTLP_{name}"));
    }

    let layer = ZenmlOtelLayer::new(OtelLogStoreConfig::default())?;
    println!("from_env: exporting to {}", layer.endpoint());
    let handle = layer.handle();
    tracing_subscriber::registry().with(layer).init();

    let step = info_span!(
        "step",
        zenml.pipeline_run_id = "run-5",
        zenml.step_id = "save"
    );
    step.in_scope(|| info!(features = 12u64, "features written"));
    drop(step);
    handle.shutdown()?;

    let records = receiver.records();
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(r.body().as_deref(), Some("features written"));
    let resource = |key| r.resource_attr(key).unwrap_or_default();
    assert_eq!(resource("service.name"), "feature-store");
    assert_eq!(
        (resource("team"), resource("region")),
        ("ml".into(), "eu-west".into())
    );
    assert_eq!(resource("zenml.step_id"), "save");
    let request = &receiver.requests()[0];
    assert_eq!(request.path, "/v1/logs");
    assert_eq!(request.header("content-encoding"), Some("gzip"));
    println!(
        "from_env: 1 record as service `feature-store`, gzip, to {}",
        request.path
    );
    Ok(())
}
