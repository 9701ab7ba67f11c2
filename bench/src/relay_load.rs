//! The Rust program of the relay benchmark (bench/python/relay_throughput.py): logs `--n N`
//! records as a ZenML step's program would — `ZenmlOtelLayer::new(OtelLogStoreConfig::default())`
//! with the handover `run_rust_step` gives it, a queue that holds all N — then shuts down.
//!
//! ```text
//! cargo build --release -p zenml-otel-bench --bin relay_load
//! PYTHONPATH=python/src "$(bash scripts/zenml-venv.sh)" bench/python/relay_throughput.py \
//!     --program target/release/relay_load
//! ```

use tracing::info;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use zenml_otel::{OtelLogStoreConfig, ZenmlOtelLayer};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: usize = match (args.next().as_deref(), args.next()) {
        (Some("--n"), Some(n)) => n.parse()?,
        _ => return Err("usage: relay_load --n N".into()),
    };
    let layer = ZenmlOtelLayer::new(OtelLogStoreConfig {
        max_queue_size: n.max(2048),
        ..OtelLogStoreConfig::default()
    })?;
    let _guard = layer.guard();
    tracing_subscriber::registry().with(layer).init();
    for i in 0..n as u64 {
        info!(i, rows = 42u64, "step progress");
    }
    Ok(())
}
