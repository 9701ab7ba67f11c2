//! Runtimes and lifecycles: emit, flush, shutdown and guard drop with no runtime, inside tokio
//! runtimes, from a span's close, during a panic unwind and from many threads at once — each
//! under a watchdog, so a deadlock fails the test instead of hanging CI.

mod common;

use common::{watchdog, Harness};
use tracing::span::Id;
use tracing::{info, info_span, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;
use zenml_otel::testing::OtlpReceiver;
use zenml_otel::{LogStoreHandle, OtelLogStoreConfig, ZenmlOtelLayer};

fn layer(receiver: &OtlpReceiver) -> ZenmlOtelLayer {
    ZenmlOtelLayer::new(OtelLogStoreConfig {
        endpoint: Some(receiver.endpoint()),
        ..OtelLogStoreConfig::default()
    })
    .unwrap()
}

fn log_and_finish(receiver: &OtlpReceiver, finish: impl FnOnce(&LogStoreHandle)) -> LogStoreHandle {
    let layer = layer(receiver);
    let handle = layer.handle();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        let run = info_span!("run", zenml.pipeline_run_id = "r");
        let _r = run.enter();
        for i in 0..10 {
            info!(i, "line");
        }
        handle.force_flush().expect("flush");
    });
    finish(&handle);
    handle
}

#[test]
fn no_runtime_and_both_tokio_runtimes() {
    watchdog("lifecycle in every runtime", || {
        let receiver = OtlpReceiver::start().unwrap();
        log_and_finish(&receiver, |h| h.shutdown().unwrap());
        for flavor in ["multi_thread", "current_thread"] {
            let runtime = match flavor {
                "multi_thread" => tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .build(),
                _ => tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build(),
            }
            .unwrap();
            runtime.block_on(async {
                log_and_finish(&receiver, |h| h.shutdown().unwrap());
                log_and_finish(&receiver, |h| drop(h.guard()));
            });
        }
        assert_eq!(receiver.record_count(), 50);
    });
}

/// Calls flush then shutdown from inside `on_close` of the span named `closing`.
struct FinishOnClose(LogStoreHandle);

impl<S: Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>> Layer<S>
    for FinishOnClose
{
    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        if ctx.span(&id).is_some_and(|span| span.name() == "closing") {
            self.0.force_flush().expect("flush from on_close");
            self.0.shutdown().expect("shutdown from on_close");
        }
    }
}

#[test]
fn flush_and_shutdown_from_inside_a_span_close() {
    watchdog("flush/shutdown in on_close", || {
        let receiver = OtlpReceiver::start().unwrap();
        let layer = layer(&receiver);
        let handle = layer.handle();
        let subscriber = tracing_subscriber::registry()
            .with(layer)
            .with(FinishOnClose(handle.clone()));
        tracing::subscriber::with_default(subscriber, || {
            let span = info_span!("closing", zenml.step_id = "s");
            span.in_scope(|| info!("inside"));
        });
        assert_eq!(receiver.record_count(), 1);
        assert_eq!(handle.stats().exported, 1);
    });
}

#[test]
fn logging_and_flushing_during_a_panic_unwind() {
    struct LogsOnDrop(LogStoreHandle);
    impl Drop for LogsOnDrop {
        fn drop(&mut self) {
            info!(
                panicking = std::thread::panicking(),
                "dropped while unwinding"
            );
            self.0.force_flush().expect("flush while unwinding");
        }
    }
    watchdog("panic unwind", || {
        let receiver = OtlpReceiver::start().unwrap();
        let layer = layer(&receiver);
        let handle = layer.handle();
        let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            tracing::dispatcher::with_default(&dispatch, || {
                let step = info_span!("step", zenml.step_id = "s");
                let _s = step.enter();
                let _guard = LogsOnDrop(handle.clone());
                panic!("the step failed");
            })
        }));
        assert!(unwound.is_err());
        handle.force_flush().unwrap();
        let records = receiver.records();
        assert_eq!(records.len(), 1);
        assert_eq!(
            records[0].resource_attr("zenml.step_id").as_deref(),
            Some("s")
        );
    });
}

#[test]
fn many_threads_emit_flush_and_shut_down_at_once() {
    watchdog("concurrent flush/shutdown", || {
        let harness = Harness::new();
        std::thread::scope(|s| {
            for t in 0..8 {
                let harness = &harness;
                s.spawn(move || {
                    harness.run(|| {
                        for i in 0..200 {
                            info!(t, i, "concurrent");
                            if i % 50 == 0 {
                                let _ = harness.handle.force_flush();
                            }
                        }
                    });
                    if t % 2 == 0 {
                        let _ = harness.handle.shutdown();
                    }
                });
            }
        });
        harness.handle.shutdown().unwrap();
        let stats = harness.handle.stats();
        assert_eq!(stats.emitted, 1600);
        assert_eq!(
            stats.exported + stats.dropped + stats.failed,
            1600,
            "{stats:?}"
        );
        assert_eq!(harness.receiver.record_count() as u64, stats.exported);
    });
}

#[test]
fn emitting_after_shutdown_is_counted_without_looping() {
    watchdog("emit after shutdown", || {
        let harness = Harness::new();
        harness.handle.shutdown().unwrap();
        harness.run(|| {
            for i in 0..10_000 {
                info!(i, "after shutdown");
            }
        });
        let stats = harness.handle.stats();
        assert_eq!(
            (stats.emitted, stats.dropped, stats.exported),
            (10_000, 10_000, 0)
        );
        assert!(harness.receiver.requests().is_empty());
    });
}
