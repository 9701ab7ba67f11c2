//! The delivery promise on a misbehaving network path: whatever a collector, proxy or load
//! balancer answers (a delay no clock can hold, a redirect, hostile text), no thread panics,
//! the pipeline goes on exporting, no header leaves for another host, and no record counts as
//! exported that was not. Proxies apply as curl and reqwest apply them, and never to loopback.
//!
//! Tests that set proxy variables hold one lock for their duration; every endpoint here is on
//! loopback, or a `.invalid` name only a proxy on loopback ever sees.

mod common;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::scripted::Scripted;
use common::{built, watchdog, Harness, WAIT};
use tracing::info;
use zenml_otel::testing::Fault;
use zenml_otel::{ExportStats, OtelLogStoreConfig, Protocol, ZenmlOtelLayer};

fn emit(to: &impl Logs, n: usize, what: &str) {
    tracing::dispatcher::with_default(to.dispatch(), || {
        for i in 0..n {
            info!(i, "{what}");
        }
    });
}

/// What records are logged through.
trait Logs {
    fn dispatch(&self) -> &tracing::Dispatch;
}

impl Logs for Harness {
    fn dispatch(&self) -> &tracing::Dispatch {
        &self.dispatch
    }
}

/// A layer exporting to an endpoint of the test's choosing (not a receiver).
struct Pipeline {
    handle: zenml_otel::LogStoreHandle,
    dispatch: tracing::Dispatch,
}

impl Logs for Pipeline {
    fn dispatch(&self) -> &tracing::Dispatch {
        &self.dispatch
    }
}

fn balanced(stats: &ExportStats) -> bool {
    stats.emitted + stats.recovered
        == stats.exported + stats.dropped + stats.failed + stats.rejected + stats.spooled
}

fn quick(protocol: Protocol) -> OtelLogStoreConfig {
    OtelLogStoreConfig {
        protocol,
        export_timeout_millis: 2_000,
        max_retry_elapsed_millis: 2_000,
        schedule_delay_millis: 600_000,
        ..OtelLogStoreConfig::default()
    }
}

/// A `Retry-After` (gRPC: `RetryInfo`) of 2^64-1 seconds once, then a healthy collector.
fn a_delay_no_clock_can_hold(protocol: Protocol) {
    let harness = Harness::with(quick(protocol));
    let forever = Fault::Status {
        code: 503,
        retry_after: Some(u64::MAX),
    };
    harness.receiver.fail_next(1, forever);
    emit(&harness, 10, "throttled for ever");
    let error = harness
        .handle
        .force_flush()
        .expect_err("the first batch cannot wait that long");
    assert!(
        !error.is_timeout(),
        "{protocol:?}: the flush wedged: {error}"
    );
    // The pipeline goes on: the next records are exported as usual.
    emit(&harness, 10, "after the bad answer");
    harness
        .handle
        .force_flush()
        .expect("a healthy collector takes the next batch");
    assert_eq!(harness.receiver.record_count(), 10, "{protocol:?}");
    let stats = harness.handle.stats();
    assert_eq!(
        (stats.exported, stats.failed, stats.dropped),
        (10, 10, 0),
        "{protocol:?}"
    );
    assert!(balanced(&stats), "{stats:?}");
    harness.handle.shutdown().expect("shutdown in time");
}

#[test]
fn a_retry_after_no_clock_can_hold_fails_one_batch_and_the_pipeline_goes_on() {
    for protocol in built([Protocol::HttpProtobuf, Protocol::Grpc]) {
        watchdog("u64::MAX delay", move || {
            a_delay_no_clock_can_hold(protocol)
        });
    }
}

/// With a spool, a delay longer than the retry window parks the records and holds them back
/// for the (clamped) delay, instead of sending the whole backlog again at every tick.
fn a_long_delay_holds_parked_records_back(protocol: Protocol) {
    let dir = std::env::temp_dir().join(format!(
        "zenml-otel-network-path-{}-{protocol:?}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let harness = Harness::with(OtelLogStoreConfig {
        spool_dir: Some(dir.clone()),
        max_retry_elapsed_millis: 1_500,
        schedule_delay_millis: 50,
        ..quick(protocol)
    });
    harness.receiver.set_fault(Some(Fault::Status {
        code: 429,
        retry_after: Some(3_600),
    }));
    emit(&harness, 10, "throttled");
    let started = Instant::now();
    std::thread::sleep(Duration::from_millis(2_500));
    let attempts = harness.receiver.attempts();
    // One at once, one after the delay clamped to the 1.5 s window (and one more if the
    // machine was slow): at every 50 ms tick it would be about fifty.
    assert!(
        (1..=3).contains(&attempts),
        "{protocol:?}: {attempts} attempts in {:?}",
        started.elapsed()
    );
    assert_eq!(
        harness.handle.stats().spooled,
        10,
        "{protocol:?}: parked, not lost"
    );
    harness.receiver.set_fault(None);
    harness.receiver.wait_for_records(10, WAIT);
    let deadline = Instant::now() + WAIT;
    while harness.handle.stats().exported < 10 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let stats = harness.handle.stats();
    assert_eq!(
        (stats.exported, stats.spooled, stats.failed),
        (10, 0, 0),
        "{protocol:?}"
    );
    assert!(balanced(&stats), "{stats:?}");
    harness.handle.shutdown().expect("shutdown");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_retry_after_longer_than_the_window_holds_parked_records_back() {
    for protocol in built([Protocol::HttpProtobuf, Protocol::Grpc]) {
        watchdog("long delay, spool", move || {
            a_long_delay_holds_parked_records_back(protocol)
        });
    }
}

fn layer_to(endpoint: String, config: OtelLogStoreConfig) -> Pipeline {
    use tracing_subscriber::layer::SubscriberExt as _;
    let layer = ZenmlOtelLayer::new(OtelLogStoreConfig {
        endpoint: Some(endpoint),
        ..config
    })
    .expect("valid config");
    Pipeline {
        handle: layer.handle(),
        dispatch: tracing::Dispatch::new(tracing_subscriber::registry().with(layer)),
    }
}

#[test]
fn a_redirect_is_a_final_failure_naming_its_location_and_no_header_leaves() {
    let elsewhere = Scripted::answering("200 OK");
    let location = elsewhere.url("/ok?api_key=SECRET-IN-LOCATION");
    let redirector = Scripted::start(vec![(
        format!("HTTP/1.1 302 Found\r\nlocation: {location}\r\n"),
        Vec::new(),
    )]);
    let harness = layer_to(
        redirector.url("/v1/logs"),
        OtelLogStoreConfig {
            headers: HashMap::from([("x-api-key".to_owned(), "KEY-FOR-THE-COLLECTOR".to_owned())]),
            ..quick(Protocol::HttpProtobuf)
        },
    );
    emit(&harness, 10, "redirected");
    let error = harness
        .handle
        .force_flush()
        .expect_err("a redirect is no delivery");
    let message = error.to_string();
    assert!(message.contains("302"), "{message}");
    assert!(
        message.contains(&elsewhere.url("/ok")),
        "names the Location: {message}"
    );
    assert!(!message.contains("SECRET-IN-LOCATION"), "{message}");
    assert!(
        elsewhere.seen().is_empty(),
        "followed: {:?}",
        elsewhere.seen()
    );
    assert_eq!(redirector.seen().len(), 1, "final: not retried");
    let stats = harness.handle.stats();
    assert_eq!((stats.exported, stats.failed), (0, 10));
}

#[test]
fn a_2xx_that_is_no_otlp_response_counts_as_exported() {
    let collector = Scripted::start(vec![(
        "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\n".to_owned(),
        b"<html>a load balancer's page</html>".to_vec(),
    )]);
    let harness = layer_to(collector.url("/v1/logs"), quick(Protocol::HttpProtobuf));
    emit(&harness, 10, "answered by a page");
    harness
        .handle
        .force_flush()
        .expect("2xx is success, as the spec says");
    let stats = harness.handle.stats();
    assert_eq!((stats.exported, stats.rejected, stats.failed), (10, 0, 0));
}

#[test]
fn a_collector_s_text_and_the_endpoint_s_credentials_are_never_printed_raw() {
    let collector = Scripted::start(vec![(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\n".to_owned(),
        format!(
            "\x1b[2J\nzenml-otel: all records exported\n{}",
            "x".repeat(5000)
        )
        .into_bytes(),
    )]);
    let endpoint = collector
        .url("/v1/logs")
        .replace("http://", "http://user:PASSWORD@");
    let harness = layer_to(endpoint, quick(Protocol::HttpProtobuf));
    emit(&harness, 3, "refused");
    let message = harness.handle.force_flush().unwrap_err().to_string();
    assert!(
        !message.contains('\x1b') && !message.contains('\n'),
        "{message:?}"
    );
    assert!(
        message.contains("\\u{1b}[2J\\nzenml-otel"),
        "escaped: {message:?}"
    );
    assert!(!message.contains("PASSWORD"), "{message}");
    assert!(message.len() < 2_000, "bounded: {} bytes", message.len());
    // At construction too: the query string of a refused endpoint is not echoed.
    let error = ZenmlOtelLayer::new(OtelLogStoreConfig {
        endpoint: Some("https://h/v1/logs?api_key=SECRET123".into()),
        ..OtelLogStoreConfig::default()
    })
    .unwrap_err();
    assert!(!error.to_string().contains("SECRET123"), "{error}");
}

// ---------------------------------------------------------------------------------------------
// Proxies

const PROXY_VARS: &[&str] = &[
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
    "REQUEST_METHOD",
];

/// Runs `f` with exactly `vars` set among the proxy variables, under one lock.
fn with_proxy_env<T>(vars: &[(&str, String)], f: impl FnOnce() -> T) -> T {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let clear = || {
        PROXY_VARS
            .iter()
            .for_each(|name| std::env::remove_var(name))
    };
    clear();
    for (name, value) in vars {
        std::env::set_var(name, value);
    }
    let result = f();
    clear();
    result
}

#[test]
fn a_loopback_endpoint_never_goes_through_a_proxy() {
    let proxy = Scripted::answering("502 Bad Gateway");
    let every =
        ["HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "http_proxy"].map(|name| (name, proxy.url("")));
    let harness = with_proxy_env(&every, || Harness::with(quick(Protocol::HttpProtobuf)));
    emit(&harness, 10, "to the relay");
    harness.handle.force_flush().expect("exported directly");
    assert_eq!(harness.receiver.record_count(), 10);
    assert!(proxy.seen().is_empty(), "proxied: {:?}", proxy.seen());
}

/// Logs three records to `endpoint` with `vars` set; returns the counts.
fn through(endpoint: &str, vars: &[(&str, String)]) -> ExportStats {
    let harness = with_proxy_env(vars, || {
        layer_to(
            endpoint.to_owned(),
            OtelLogStoreConfig {
                max_retry_elapsed_millis: 300,
                export_timeout_millis: 1_000,
                ..quick(Protocol::HttpProtobuf)
            },
        )
    });
    emit(&harness, 3, "proxied");
    let _ = harness.handle.force_flush();
    harness.handle.stats()
}

/// `endpoint` with one refusing proxy in `HTTPS_PROXY` and another in `HTTP_PROXY`: both
/// proxies (to see which was asked) and the layer's counts.
fn through_both_proxies(endpoint: &str) -> (Scripted, Scripted, zenml_otel::ExportStats) {
    let (for_https, for_http) = (
        Scripted::answering("502 Bad Gateway"),
        Scripted::answering("502 Bad Gateway"),
    );
    let vars = [
        ("HTTPS_PROXY", for_https.url("")),
        ("HTTP_PROXY", for_http.url("")),
    ];
    let stats = through(endpoint, &vars);
    (for_https, for_http, stats)
}

#[test]
fn each_scheme_goes_through_its_own_proxy_variable() {
    let (for_https, for_http, stats) =
        through_both_proxies("http://collector.invalid:4318/v1/logs");
    assert!(
        for_https.seen().is_empty(),
        "http went to HTTPS_PROXY: {:?}",
        for_https.seen()
    );
    let seen = for_http.seen();
    assert!(
        !seen.is_empty()
            && seen
                .iter()
                .all(|s| s.line.contains("collector.invalid:4318")),
        "{seen:?}"
    );
    assert_eq!(
        (stats.exported, stats.failed),
        (0, 3),
        "the proxy's 502 is no delivery"
    );

    // ALL_PROXY is the fallback (NO_PROXY's rules are unit tests of src/otlp/proxy.rs: a
    // bypassed `.invalid` name would be looked up in the DNS).
    let fallback = Scripted::answering("502 Bad Gateway");
    through(
        "http://collector.invalid:4318/v1/logs",
        &[("ALL_PROXY", fallback.url(""))],
    );
    assert!(!fallback.seen().is_empty(), "ALL_PROXY is the fallback");
}

/// An https endpoint tunnels through `HTTPS_PROXY` (and never `HTTP_PROXY`); https needs the
/// feature `tls` (in the default features).
#[cfg(feature = "tls")]
#[test]
fn an_https_endpoint_tunnels_through_https_proxy() {
    let (for_https, for_http, stats) =
        through_both_proxies("https://collector.invalid:4318/v1/logs");
    assert!(
        for_https
            .seen()
            .iter()
            .any(|s| s.line.starts_with("CONNECT collector.invalid:4318")),
        "{:?}",
        for_https.seen()
    );
    assert!(for_http.seen().is_empty(), "https went to HTTP_PROXY");
    assert_eq!((stats.exported, stats.failed), (0, 3));
}
