//! The per-event cost on the logging thread, for an instruction count: 100,000 events in a run
//! span (the criterion bench's event), exported to the in-process testing receiver.
//!
//! ```text
//! cargo build --release -p zenml-otel-bench --bin event_loop
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out target/release/event_loop
//! callgrind_annotate --inclusive=yes /tmp/cg.out | grep -E 'dispatch|on_event'   # ÷ 100,000
//! ```

use tracing::{info, info_span};
use tracing_subscriber::layer::SubscriberExt as _;
use zenml_otel::testing::OtlpReceiver;
use zenml_otel::{OtelLogStoreConfig, ZenmlOtelLayer};

const EVENTS: u64 = 100_000;

fn main() {
    let receiver = OtlpReceiver::start().expect("the testing receiver");
    let layer = ZenmlOtelLayer::new(OtelLogStoreConfig {
        endpoint: Some(receiver.endpoint()),
        max_queue_size: EVENTS as usize,
        // Under valgrind everything runs ~50x slower: room for the final shutdown's export.
        export_timeout_millis: 600_000,
        ..OtelLogStoreConfig::default()
    })
    .expect("a valid config");
    let handle = layer.handle();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        let span = info_span!(
            "step",
            zenml.pipeline_run_id = "3f2b8c1e-5d4a-4e7b-9c1f-0a2b3c4d5e6f",
            zenml.step_id = "8e7d6c5b-4a39-4281-b7c6-d5e4f3a2b1c0",
            zenml.source = "step",
        );
        let _entered = span.enter();
        for _ in 0..EVENTS {
            info!(rows = 42u64, model = "resnet", "step progress");
        }
    });
    handle.shutdown().expect("every record exported");
    let stats = handle.stats();
    assert_eq!(stats.exported, EVENTS, "{stats:?}");
}
