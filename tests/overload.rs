//! Overload: the default policy drops the newest record and counts it; the opt-in `block`
//! policy loses nothing to a collector that keeps up.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tracing::info;
use tracing_subscriber::layer::SubscriberExt;
use zenml_otel::{OnFull, OtelLogStoreConfig, ZenmlOtelLayer};

/// A collector that acknowledges every request at once and only counts bytes.
struct CountingSink {
    endpoint: String,
    requests: Arc<AtomicU64>,
    _server: Arc<tiny_http::Server>,
}

impl CountingSink {
    fn start() -> Self {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let endpoint = format!("http://{}", server.server_addr().to_ip().unwrap());
        let requests = Arc::new(AtomicU64::new(0));
        let (s, r) = (Arc::clone(&server), Arc::clone(&requests));
        std::thread::spawn(move || {
            while let Ok(mut request) = s.recv() {
                let _ = std::io::copy(request.as_reader(), &mut std::io::sink());
                r.fetch_add(1, Ordering::Relaxed);
                let _ = request.respond(tiny_http::Response::empty(200));
            }
        });
        Self {
            endpoint,
            requests,
            _server: server,
        }
    }
}

#[test]
fn block_policy_loses_nothing_from_eight_threads() {
    const THREADS: u64 = 8;
    const PER_THREAD: u64 = 125_000;
    let sink = CountingSink::start();
    let layer = ZenmlOtelLayer::new(OtelLogStoreConfig {
        endpoint: Some(sink.endpoint.clone()),
        on_full: OnFull::Block,
        ..OtelLogStoreConfig::default()
    })
    .unwrap();
    let handle = layer.handle();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let dispatch = &dispatch;
            s.spawn(move || {
                tracing::dispatcher::with_default(dispatch, || {
                    let run = tracing::info_span!("run", zenml.pipeline_run_id = t);
                    let _r = run.enter();
                    for i in 0..PER_THREAD {
                        info!(i, "blocking policy");
                    }
                })
            });
        }
    });
    handle.shutdown().unwrap();
    let stats = handle.stats();
    assert_eq!(stats.emitted, THREADS * PER_THREAD);
    assert_eq!(stats.dropped, 0, "{stats:?}");
    assert_eq!(stats.exported, THREADS * PER_THREAD, "{stats:?}");
    assert!(sink.requests.load(Ordering::Relaxed) > 0);
}

#[test]
fn block_policy_gives_up_after_its_maximum_wait_and_counts() {
    // Nothing listens: exports fail slowly (retries until the export timeout), the queue
    // stays full, and blocked emitters give up after max_block_millis.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let layer = ZenmlOtelLayer::new(OtelLogStoreConfig {
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        on_full: OnFull::Block,
        max_block_millis: 50,
        max_queue_size: 4,
        max_export_batch_size: 4,
        export_timeout_millis: 2000,
        ..OtelLogStoreConfig::default()
    })
    .unwrap();
    let handle = layer.handle();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        for i in 0..40 {
            info!(i, "nowhere");
        }
    });
    let _ = handle.shutdown();
    std::thread::sleep(Duration::from_millis(100));
    let stats = handle.stats();
    assert_eq!(stats.emitted, 40);
    assert!(stats.dropped > 0, "{stats:?}");
    assert_eq!(
        stats.exported + stats.dropped + stats.failed,
        40,
        "{stats:?}"
    );
}
