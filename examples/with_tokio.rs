//! A tokio service whose async steps run concurrently, each exported under its own step.
//!
//! `cargo run --example with_tokio`: two `#[instrument]`ed steps run with `tokio::join!` and a
//! third in a spawned task carrying its span with `.instrument(span)`; records go to an
//! in-process OTLP receiver, and each lands under the resource of the step that logged it.
//! The span follows the future across `.await`s and worker threads, so interleaving is fine.

use std::time::Duration;

use tracing::{info, info_span, instrument, Instrument};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use zenml_otel::testing::OtlpReceiver;
use zenml_otel::{OtelLogStoreConfig, ZenmlOtelLayer};

#[instrument(skip_all, fields(zenml.pipeline_run_id = %run, zenml.step_id = %step))]
async fn step(run: &str, step: &str, batches: u64) {
    for batch in 0..batches {
        tokio::time::sleep(Duration::from_millis(5)).await; // lets the other steps run
        info!(batch, "{step}: batch done");
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let receiver = OtlpReceiver::start()?; // stands in for the collector
    let layer = ZenmlOtelLayer::new(OtelLogStoreConfig {
        endpoint: Some(receiver.endpoint()),
        ..OtelLogStoreConfig::default()
    })?;
    let handle = layer.handle();
    tracing_subscriber::registry().with(layer).init();

    let run = "run-7";
    tokio::join!(step(run, "load", 3), step(run, "featurize", 3));
    let span = info_span!("step", zenml.pipeline_run_id = run, zenml.step_id = "train");
    tokio::spawn(async { info!("train: fitted") }.instrument(span)).await?;

    // shutdown() blocks (at most export_timeout_millis + 200 ms). It does not deadlock inside a
    // runtime, but spawn_blocking keeps it off the async worker threads. Dropping a guard
    // (`layer.guard()`) at the end of main would do the same shutdown, in place.
    tokio::task::spawn_blocking(move || handle.shutdown()).await??;

    let records = receiver.records();
    assert_eq!(records.len(), 7);
    for r in &records {
        let step = r
            .resource_attr("zenml.step_id")
            .expect("every record is in a step");
        assert!(r
            .body()
            .is_some_and(|b| b.starts_with(&format!("{step}: "))));
        assert_eq!(
            r.resource_attr("zenml.pipeline_run_id").as_deref(),
            Some(run)
        );
    }
    let steps: std::collections::BTreeSet<_> = records
        .iter()
        .filter_map(|r| r.resource_attr("zenml.step_id"))
        .collect();
    println!(
        "with_tokio: {} records, each under its own step {steps:?}",
        records.len()
    );
    Ok(())
}
