//! The batching against mock exporters (the [`Export`] seam): the ledger, retries,
//! and shutdown's bound, with no socket involved.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_sdk::Resource;

use super::retry::{Failure, Retry};
use super::{start, Emitter, Export, LogStoreHandle, QueuedRecord, Settle};
use crate::record::{with_scratch, RecordWriter};
use crate::span_context::{Resolved, Run};
use crate::OtelLogStoreConfig;

/// How a mock answers its `n`th request (counted over every lane).
type Answer = dyn Fn(usize) -> Result<(), Failure> + Send + Sync;

/// Records the bodies of every request it answers `Ok`; answers as `answer` says; holds each
/// request while `hold` is set.
struct Mock {
    answer: Arc<Answer>,
    requests: Arc<AtomicUsize>,
    delivered: Arc<Mutex<Vec<String>>>,
    hold: Arc<(Mutex<bool>, Condvar)>,
}

impl Export for Mock {
    fn export<'r>(
        &mut self,
        records: &mut [QueuedRecord],
        settle: &mut Settle<'_>,
        retry: &dyn Fn() -> Retry<'r>,
    ) -> u64 {
        let mut attempts = retry();
        let result = loop {
            let (held, released) = &*self.hold;
            let mut held = crate::sync::lock(held);
            while *held {
                held = crate::sync::wait(released, held);
            }
            drop(held);
            if let Err(failure) = attempts.wait_turn() {
                break Err(failure);
            }
            match (self.answer)(self.requests.fetch_add(1, Ordering::SeqCst)) {
                Ok(()) => {
                    let mut delivered = crate::sync::lock(&self.delivered);
                    delivered.extend(records.iter().map(body));
                    break Ok(0);
                }
                Err(failure) if attempts.again(&failure) => continue,
                Err(failure) => break Err(failure),
            }
        };
        settle(records, result);
        0
    }
}

fn body(queued: &QueuedRecord) -> String {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    let record = queued.record.to_proto().expect("our encoding reads back");
    match record.body.and_then(|body| body.value) {
        Some(Value::StringValue(text)) => text,
        other => format!("{other:?}"),
    }
}

struct Pipeline {
    emitter: Emitter,
    handle: LogStoreHandle,
    requests: Arc<AtomicUsize>,
    delivered: Arc<Mutex<Vec<String>>>,
    hold: Arc<(Mutex<bool>, Condvar)>,
    context: Arc<Resolved>,
}

impl Pipeline {
    fn new(
        config: OtelLogStoreConfig,
        answer: impl Fn(usize) -> Result<(), Failure> + Send + Sync + 'static,
    ) -> Self {
        let config = OtelLogStoreConfig {
            endpoint: Some("http://127.0.0.1:9".into()),
            ..config
        };
        let settings = config.validate().unwrap();
        let answer: Arc<Answer> = Arc::new(answer);
        let requests = Arc::new(AtomicUsize::new(0));
        let delivered = Arc::new(Mutex::new(Vec::new()));
        let hold = Arc::new((Mutex::new(false), Condvar::new()));
        let mocks = {
            let (answer, requests, delivered, hold) = (
                answer.clone(),
                requests.clone(),
                delivered.clone(),
                hold.clone(),
            );
            move |lanes: usize| -> Vec<Box<dyn Export>> {
                (0..lanes)
                    .map(|_| {
                        Box::new(Mock {
                            answer: answer.clone(),
                            requests: requests.clone(),
                            delivered: delivered.clone(),
                            hold: hold.clone(),
                        }) as Box<dyn Export>
                    })
                    .collect()
            }
        };
        let (emitter, handle) = start(
            &config,
            &settings,
            Box::new(move |_, lanes| Ok(mocks(lanes))),
        )
        .unwrap();
        let run = Arc::new(Run::new(Resource::builder_empty().build(), None));
        Self {
            emitter,
            handle,
            requests,
            delivered,
            hold,
            context: Arc::new(Resolved::with_attributes(run, Vec::new())),
        }
    }

    fn emit(&self, bodies: impl IntoIterator<Item = usize>) {
        for i in bodies {
            let record = with_scratch(|scratch| {
                let mut record = RecordWriter::new(scratch, 1, 1);
                record.body(&i.to_string().into());
                record.finish(0)
            });
            self.emitter
                .emit(QueuedRecord::new(Arc::clone(&self.context), record));
        }
    }

    fn hold(&self, on: bool) {
        let (held, released) = &*self.hold;
        *crate::sync::lock(held) = on;
        released.notify_all();
    }

    fn delivered(&self) -> Vec<String> {
        crate::sync::lock(&self.delivered).clone()
    }
}

fn failure(retryable: bool) -> Failure {
    Failure {
        message: format!("mock failure (retryable: {retryable})"),
        error_type: super::retry::ErrorType::Connection,
        retryable,
        retry_after: None,
    }
}

fn bodies(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| i.to_string()).collect()
}

#[test]
fn every_record_is_exported_or_failed_and_the_ledger_says_which() {
    // Every third request fails for good: its records are failed, the rest exported, in order.
    let pipeline = Pipeline::new(
        OtelLogStoreConfig {
            max_export_batch_size: 10,
            ..OtelLogStoreConfig::default()
        },
        |n| {
            if n % 3 == 2 {
                Err(failure(false))
            } else {
                Ok(())
            }
        },
    );
    pipeline.emit(0..500);
    let flushed = pipeline.handle.force_flush();
    assert!(flushed.is_err(), "a failure is reported by the flush");
    let stats = pipeline.handle.stats();
    let delivered = pipeline.delivered();
    assert_eq!(stats.emitted, 500);
    assert_eq!(stats.exported + stats.failed, 500, "{stats:?}");
    assert_eq!(stats.exported as usize, delivered.len(), "{stats:?}");
    assert!(stats.failed > 0, "{stats:?}");
    let mut seen = delivered.clone();
    seen.sort_by_key(|b| b.parse::<usize>().unwrap());
    seen.dedup();
    assert_eq!(seen.len(), delivered.len(), "nothing delivered twice");
    let order: Vec<usize> = delivered.iter().map(|b| b.parse().unwrap()).collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "one run, in order: {order:?}"
    );
    assert!(pipeline.handle.force_flush().is_ok(), "reported once");
}

#[test]
fn a_retryable_failure_is_sent_again_and_nothing_is_lost_or_duplicated() {
    let pipeline = Pipeline::new(
        OtelLogStoreConfig {
            max_export_batch_size: 10,
            ..OtelLogStoreConfig::default()
        },
        |n| if n < 2 { Err(failure(true)) } else { Ok(()) },
    );
    pipeline.emit(0..30);
    pipeline.handle.force_flush().unwrap();
    let stats = pipeline.handle.stats();
    assert_eq!(
        (stats.exported, stats.failed, stats.dropped),
        (30, 0, 0),
        "{stats:?}"
    );
    assert_eq!(pipeline.delivered(), bodies(0..30));
    assert!(
        pipeline.requests.load(Ordering::SeqCst) >= 3 + 2,
        "two attempts were retried"
    );
}

#[test]
fn shutdown_is_bounded_while_the_exporter_hangs_and_counts_what_it_held() {
    let pipeline = Pipeline::new(
        OtelLogStoreConfig {
            export_timeout_millis: 300,
            ..OtelLogStoreConfig::default()
        },
        |_| Ok(()),
    );
    pipeline.hold(true);
    pipeline.emit(0..20);
    let started = Instant::now();
    let result = pipeline.handle.shutdown();
    let waited = started.elapsed();
    pipeline.hold(false);
    assert!(result.is_err_and(|e| e.is_timeout()), "{waited:?}");
    // The documented bound: the export timeout plus 200 ms (generous here for slow machines).
    assert!(waited < Duration::from_secs(3), "{waited:?}");
    let stats = pipeline.handle.stats();
    assert_eq!(stats.emitted, 20);
    assert_eq!(
        stats.exported + stats.dropped + stats.failed,
        20,
        "{stats:?}"
    );
    // Emitted after shutdown: counted as dropped at once.
    pipeline.emit(20..21);
    let after = pipeline.handle.stats();
    assert_eq!(
        (after.emitted, after.dropped),
        (21, stats.dropped + 1),
        "{after:?}"
    );
}
