//! The Rust half of a ZenML step: a program that `run_rust_step` (the `zenml_otel` package,
//! python/src) starts.
//!
//! It needs no ids or endpoint of its own: the step hands them over in the environment, and
//! `ZenmlOtelLayer::new(OtelLogStoreConfig::default())` picks them up, so every record below
//! belongs to the step that started it and is exported to that step's `otel` log store.
//! `bash examples/zenml/run.sh` runs it inside a real ZenML pipeline.
//! With `ZENML_OTEL_EXAMPLE_ABORT` set it then logs an error and aborts (no flush, no shutdown).
//! With `ZENML_OTEL_EXAMPLE_CHILDREN=N` it first starts N copies of itself, which inherit the
//! handover and make layers of their own while it holds its spool (and fails if one fails).

use tracing::{error, info, info_span, warn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use zenml_otel::{OtelLogStoreConfig, ZenmlOtelLayer};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let layer = ZenmlOtelLayer::new(OtelLogStoreConfig::default())?;
    // Dropped at the end of main: exports what is still queued before the process exits.
    let _guard = layer.guard();
    tracing_subscriber::registry().with(layer).init();
    children()?;

    info!(threads = 2u64, "rust: loading the features");
    let features: Vec<f64> = (1..=1000).map(|i| f64::from(i) / 1000.0).collect();
    // A span of the program's own, without zenml.* fields: its records stay in the step.
    let span = info_span!("fit", model = "linear");
    let score = span.in_scope(|| {
        let mean = features.iter().sum::<f64>() / features.len() as f64;
        info!(mean, "rust: fitted the model");
        mean
    });
    if score < 0.9 {
        warn!(score, threshold = 0.9, "rust: score below threshold");
    }
    info!("rust: done");
    if std::env::var_os("ZENML_OTEL_EXAMPLE_ABORT").is_some() {
        // As `panic = "abort"` or an OOM kill would end it: the guard is never dropped, nothing
        // queued is exported. Only the spool (`ZENML_OTEL_SPOOL_DIR`) still has the records.
        error!("rust: aborting");
        std::process::abort();
    }
    Ok(())
}

/// Runs `ZENML_OTEL_EXAMPLE_CHILDREN` copies of this program at once and waits for them.
fn children() -> Result<(), Box<dyn std::error::Error>> {
    const VARIABLE: &str = "ZENML_OTEL_EXAMPLE_CHILDREN";
    let count: usize = std::env::var(VARIABLE).map_or(Ok(0), |n| n.parse())?;
    let exe = std::env::current_exe()?;
    let started: Vec<_> = (0..count)
        .map(|_| {
            std::process::Command::new(&exe)
                .env_remove(VARIABLE)
                .spawn()
        })
        .collect::<Result<_, _>>()?;
    for mut child in started {
        let status = child.wait()?;
        if !status.success() {
            return Err(format!("a child {status}").into());
        }
    }
    Ok(())
}
