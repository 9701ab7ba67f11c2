//! Code that logs through the `log` crate, exported like `tracing` events.
//!
//! `cargo run --example with_log`: `tracing_log::LogTracer` turns `log::info!` records into
//! `tracing` events, so they pick up the enclosing zenml span and are exported with their real
//! target (the instrumentation scope) and code location, not the bridge's `log` target.

use tracing::info_span;
use tracing_subscriber::layer::SubscriberExt;
use zenml_otel::testing::OtlpReceiver;
use zenml_otel::{OtelLogStoreConfig, ZenmlOtelLayer};

/// Stands in for a dependency that only knows the `log` crate.
mod legacy {
    pub fn load(rows: usize) {
        log::info!("loaded {rows} rows");
        log::warn!(target: "legacy::io", "slow disk");
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let receiver = OtlpReceiver::start()?; // stands in for the collector
    let layer = ZenmlOtelLayer::new(OtelLogStoreConfig {
        endpoint: Some(receiver.endpoint()),
        ..OtelLogStoreConfig::default()
    })?;
    let handle = layer.handle();
    // Install the bridge once, before any `log` call. `.init()` from SubscriberInitExt also
    // installs it when tracing-subscriber's `tracing-log` feature is on (then a second
    // `LogTracer::init()` fails); setting the subscriber directly works with or without it.
    tracing_log::LogTracer::init()?;
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))?;

    {
        let step = info_span!(
            "step",
            zenml.pipeline_run_id = "run-3",
            zenml.step_id = "load"
        );
        let _step = step.enter();
        legacy::load(42);
    }
    handle.shutdown()?;

    let records = receiver.records();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].body().as_deref(), Some("loaded 42 rows"));
    assert_eq!(records[0].scope_name, "with_log::legacy");
    assert_eq!(records[1].body().as_deref(), Some("slow disk"));
    assert_eq!(records[1].scope_name, "legacy::io");
    assert_eq!(records[1].record.severity_text, "WARN");
    for r in &records {
        assert_eq!(r.resource_attr("zenml.step_id").as_deref(), Some("load"));
        assert!(r
            .attr_str("code.file.path")
            .is_some_and(|f| f.ends_with("with_log.rs")));
    }
    let scopes: Vec<_> = records.iter().map(|r| r.scope_name.as_str()).collect();
    println!(
        "with_log: {} `log` records exported under step `load`, targets {scopes:?}",
        records.len()
    );
    Ok(())
}
