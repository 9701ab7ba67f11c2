//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod certs;
pub mod env;
pub mod rotel;
pub mod scripted;

use std::time::Duration;

use tracing::Dispatch;
use tracing_subscriber::layer::SubscriberExt;
use zenml_otel::testing::{OtlpReceiver, ReceivedRecord};
use zenml_otel::{LogStoreHandle, OtelLogStoreConfig, ZenmlOtelLayer};

/// The protocols of `protocols` this build has the cargo feature for (`grpc`, `http-json`):
/// a test run over several protocols covers those; `--all-features` (CI) has them all.
#[allow(clippy::match_like_matches_macro)] // `cfg!` makes some arms constants
pub fn built<const N: usize>(protocols: [zenml_otel::Protocol; N]) -> Vec<zenml_otel::Protocol> {
    use zenml_otel::Protocol;
    protocols
        .into_iter()
        .filter(|protocol| match protocol {
            Protocol::Grpc => cfg!(feature = "grpc"),
            Protocol::HttpJson => cfg!(feature = "http-json"),
            _ => cfg!(feature = "http-proto"),
        })
        .collect()
}

/// Generous bound for anything crossing the loopback wire; tests wait on conditions, not clocks.
pub const WAIT: Duration = Duration::from_secs(10);

/// A receiver, and a subscriber whose only layer exports to it.
pub struct Harness {
    pub receiver: OtlpReceiver,
    pub handle: LogStoreHandle,
    pub dispatch: Dispatch,
    pub instance_id: String,
}

impl Harness {
    pub fn new() -> Self {
        Self::with(OtelLogStoreConfig::default())
    }

    /// `config` with its endpoint pointed at a fresh receiver.
    pub fn with(config: OtelLogStoreConfig) -> Self {
        let receiver = OtlpReceiver::start().expect("start the OTLP receiver");
        let layer = ZenmlOtelLayer::new(OtelLogStoreConfig {
            endpoint: Some(receiver.endpoint()),
            ..config
        })
        .expect("valid config");
        let handle = layer.handle();
        let instance_id = layer.service_instance_id().to_owned();
        let dispatch = Dispatch::new(tracing_subscriber::registry().with(layer));
        Self {
            receiver,
            handle,
            dispatch,
            instance_id,
        }
    }

    /// Runs `f` with this harness's subscriber as the thread's default.
    pub fn run<R>(&self, f: impl FnOnce() -> R) -> R {
        tracing::dispatcher::with_default(&self.dispatch, f)
    }

    /// Flushes and returns everything received.
    pub fn flushed(&self) -> Vec<ReceivedRecord> {
        self.handle.force_flush().expect("flush");
        self.receiver.records()
    }
}

/// The one record whose body is `body`.
pub fn by_body<'a>(records: &'a [ReceivedRecord], body: &str) -> &'a ReceivedRecord {
    let found: Vec<_> = records
        .iter()
        .filter(|r| r.body().as_deref() == Some(body))
        .collect();
    assert_eq!(found.len(), 1, "records with body {body:?}: {found:#?}");
    found[0]
}

/// Runs `f` on its own thread and fails if it does not finish in time; a panic inside is
/// passed on as it is.
pub fn watchdog<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, result) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let _ = done.send(f());
    });
    match result.recv_timeout(WAIT + std::time::Duration::from_secs(5)) {
        Ok(value) => value,
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => match thread.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the thread sends before it ends"),
        },
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what}: no answer in time (deadlock?)")
        }
    }
}

/// The URL of a loopback port nothing listens on (bound, read and released): every request to it
/// is refused.
pub fn refused_endpoint() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port();
    format!("http://127.0.0.1:{port}")
}

/// Logs numbered records (`seq`) from another thread in bursts of ten, `pause` apart, until
/// `stop`; publishes how many in `sent` after each burst and returns the total.
pub fn stream(
    dispatch: Dispatch,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    sent: std::sync::Arc<std::sync::atomic::AtomicU64>,
    pause: Duration,
) -> std::thread::JoinHandle<u64> {
    use std::sync::atomic::Ordering;
    std::thread::spawn(move || {
        tracing::dispatcher::with_default(&dispatch, || {
            let mut seq = 0u64;
            while !stop.load(Ordering::Acquire) {
                for _ in 0..10 {
                    tracing::info!(seq, "streamed");
                    seq += 1;
                }
                sent.store(seq, Ordering::Release);
                std::thread::sleep(pause);
            }
            seq
        })
    })
}
