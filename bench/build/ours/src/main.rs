//! Registry + this crate's layer, exporting one record over OTLP/HTTP.
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use zenml_otel::{OtelLogStoreConfig, ZenmlOtelLayer};

fn main() -> Result<(), zenml_otel::Error> {
    let layer = ZenmlOtelLayer::new(OtelLogStoreConfig {
        endpoint: Some("http://127.0.0.1:4318".into()),
        ..OtelLogStoreConfig::default()
    })?;
    let guard = layer.guard();
    tracing_subscriber::registry().with(layer).init();
    tracing::info!(step = "trainer", "hello");
    drop(guard);
    Ok(())
}
