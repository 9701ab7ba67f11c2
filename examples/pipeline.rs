//! A two-step pipeline with an orchestrator, logging through `ZenmlOtelLayer`.
//!
//! `cargo run --example pipeline` starts the crate's embedded OTLP receiver, exports to it and
//! prints what arrived, grouped by run / step / source. With `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_LOGS_ENDPOINT`) set, logs go to that collector instead.
//!
//! The protocol follows `OTEL_EXPORTER_OTLP_PROTOCOL`:
//! `OTEL_EXPORTER_OTLP_PROTOCOL=grpc cargo run --example pipeline` sends over OTLP/gRPC
//! (`http/json` and the default `http/protobuf` work the same way).

use std::collections::BTreeMap;
use std::time::Duration;

use tracing::{info, info_span, instrument, warn, Span};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use zenml_otel::fields::STEP_ID;
use zenml_otel::testing::OtlpReceiver;
use zenml_otel::{OtelLogStoreConfig, Protocol, ZenmlOtelLayer};

#[instrument(fields(zenml.step_id = tracing::field::Empty))]
fn load_data(step_id: &str) -> Vec<f64> {
    // The step id is often known only once the step starts: record it late.
    Span::current().record(STEP_ID, step_id);
    info!(rows = 3u64, "loaded the training data");
    vec![0.25, 0.5, 0.75]
}

#[instrument(skip(data), fields(zenml.step_id = %step_id, zenml.log.id = %step_id))]
fn train(step_id: &str, data: &[f64]) -> f64 {
    let mean = data.iter().sum::<f64>() / data.len() as f64;
    info!(epochs = 2u64, mean, "trained the model");
    if mean < 0.9 {
        warn!(threshold = 0.9, "accuracy below threshold");
    }
    mean
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let external = [
        "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ]
    .iter()
    .any(|name| std::env::var(name).is_ok_and(|v| !v.is_empty()));
    let receiver = if external {
        None
    } else {
        Some(OtlpReceiver::start()?)
    };

    let config = OtelLogStoreConfig::from_env()?;
    let endpoint = receiver.as_ref().map(|r| match config.protocol {
        Protocol::Grpc => r.grpc_endpoint(),
        _ => r.endpoint(),
    });
    let protocol = config.protocol;
    let layer = ZenmlOtelLayer::new(OtelLogStoreConfig {
        endpoint,
        service_name: "zenml-example".into(),
        ..config
    })?;
    println!(
        "exporting over {} to {}",
        protocol.as_str(),
        layer.endpoint()
    );
    let handle = layer.handle();
    let guard = layer.guard();
    tracing_subscriber::registry().with(layer).init();

    let run_id = uuid::Uuid::new_v4().to_string();
    {
        let run = info_span!("pipeline", zenml.pipeline_run_id = %run_id);
        let _run = run.enter();
        info!(pipeline = "training", "starting the run");
        let data = load_data("step-load-data");
        let accuracy = train("step-train", &data);
        info!(accuracy, "run finished");
    }
    info!("outside any run");

    drop(guard); // shut down: everything queued is exported first
    let stats = handle.stats();
    println!(
        "emitted {}, exported {}, dropped {}, failed {}",
        stats.emitted, stats.exported, stats.dropped, stats.failed
    );

    if let Some(receiver) = receiver {
        let records = receiver.wait_for_records(stats.exported as usize, Duration::from_secs(5));
        let mut grouped: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for record in &records {
            let attr = |key| record.resource_attr(key).unwrap_or_else(|| "-".into());
            let group = format!(
                "run {} / step {} / source {}",
                attr("zenml.pipeline_run_id"),
                attr("zenml.step_id"),
                attr("zenml.source")
            );
            let line = format!(
                "{:5} {} [{}]",
                record.record.severity_text,
                record.body().unwrap_or_default(),
                record.scope_name
            );
            grouped.entry(group).or_default().push(line);
        }
        for (group, lines) in grouped {
            println!("\n{group}");
            for line in lines {
                println!("  {line}");
            }
        }
    }
    Ok(())
}
