//! An in-process OTLP log receiver for tests.
//!
//! [`OtlpReceiver`] listens on a free loopback port and keeps every log
//! export it receives, so a test can assert on exactly what went over the
//! wire: resource attributes, log attributes, bodies, request headers and the
//! raw payload. One port serves all OTLP transports:
//!
//! * OTLP/HTTP protobuf (`content-type: application/x-protobuf`) and
//!   OTLP/HTTP JSON (`content-type: application/json`) on any path ending in
//!   `/v1/logs`, over HTTP/1.1 or HTTP/2, with `content-encoding` `gzip`,
//!   `zstd` or none;
//! * OTLP/gRPC (`content-type: application/grpc`), the
//!   `opentelemetry.proto.collector.logs.v1.LogsService/Export` call, with
//!   `grpc-encoding` `gzip`, `zstd` or none.
//!
//! It takes OTLP metrics too, on the same port, stored apart from the logs: `POST` on any
//! path ending in `/v1/metrics` (protobuf or JSON, compressed or not) and the gRPC
//! `opentelemetry.proto.collector.metrics.v1.MetricsService/Export` call. See
//! [`OtlpReceiver::metrics`], [`OtlpReceiver::wait_for_metrics`] and
//! [`OtlpReceiver::set_metrics_fault`] (the logs' faults never apply to metrics, nor theirs to
//! logs).
//!
//! [`OtlpReceiver::start_tls`] serves the same over TLS (optionally mutual
//! TLS). The receiver owns its async runtime, on its own thread, so tests need
//! none.
//!
//! The receiver is as strict as a real collector about what it accepts: it
//! answers malformed requests with an HTTP 4xx and keeps nothing from them.
//! OTLP/JSON must follow the [OTLP/JSON encoding] exactly: lowerCamelCase
//! keys (`resourceLogs`, not `resource_logs`), hex trace and span ids, and a
//! top-level `resourceLogs` field.
//!
//! Point an exporter at [`OtlpReceiver::endpoint`] if it appends
//! `/v1/logs` itself (OTLP/HTTP exporters do this for a base endpoint), at
//! [`OtlpReceiver::logs_url`] if it expects the full URL, and at
//! [`OtlpReceiver::grpc_endpoint`] for OTLP/gRPC.
//!
//! ```rust,no_run
//! use std::time::Duration;
//! use zenml_otel::testing::OtlpReceiver;
//!
//! let receiver = OtlpReceiver::start()?;
//! // Configure the exporter with `receiver.endpoint()`, then run the code under test.
//! let records = receiver.wait_for_records(1, Duration::from_secs(5));
//! assert_eq!(records[0].body().as_deref(), Some("step finished"));
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # Fault injection
//!
//! To test how an exporter copes with an unhealthy collector, the receiver can
//! misbehave on purpose: refuse connections, answer late, answer an error
//! status (with `Retry-After`), answer a partial success, or never answer. See
//! [`Fault`], [`OtlpReceiver::set_fault`] (every later request),
//! [`OtlpReceiver::fail_next`] (the next `n` requests) and
//! [`OtlpReceiver::attempts`] (every request that arrived, faulted or not).
//!
//! ```rust,no_run
//! use zenml_otel::testing::{Fault, OtlpReceiver};
//!
//! let receiver = OtlpReceiver::start()?;
//! // The first request is throttled, the exporter retries after a second.
//! receiver.fail_next(1, Fault::Status { code: 429, retry_after: Some(1) });
//! // ... export ...
//! assert!(receiver.attempts() >= 2);
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! [OTLP/JSON encoding]: https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, KeyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use tokio::sync::watch;

pub use fault::Fault;
pub use metrics::{MetricPoint, ReceivedMetrics};

mod fault;
mod grpc;
mod json;
mod metrics;
mod otlp_http;
mod server;
mod tls;

/// Largest request body accepted, compressed or decompressed (HTTP 413 above it).
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// A running OTLP receiver on `127.0.0.1`, serving OTLP/HTTP and OTLP/gRPC on one port.
///
/// Dropping it stops the server: the port is closed and open connections are cut.
pub struct OtlpReceiver {
    addr: SocketAddr,
    tls: bool,
    shared: Arc<Shared>,
    // Dropped (and so stopped and joined) with the receiver.
    _server: server::Server,
}

/// How an export request was encoded on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// OTLP/HTTP with a binary protobuf body (`application/x-protobuf`).
    Protobuf,
    /// OTLP/HTTP with an OTLP/JSON body (`application/json`).
    Json,
    /// OTLP/gRPC (`application/grpc`).
    Grpc,
}

/// Server certificate, key and (for mutual TLS) client CA for [`OtlpReceiver::start_tls`].
///
/// All fields are PEM text. The receiver binds `127.0.0.1` but advertises
/// `https://localhost:PORT`, so issue the server certificate for `localhost`.
#[derive(Clone)]
pub struct TlsOptions {
    /// The server certificate chain, leaf first (`CERTIFICATE` blocks).
    pub cert_chain_pem: Vec<u8>,
    /// The server certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub key_pem: Vec<u8>,
    /// CA certificates that client certificates must chain to. `Some` makes
    /// the receiver require and verify a client certificate (mutual TLS);
    /// `None` accepts any client.
    pub client_ca_pem: Option<Vec<u8>>,
}

struct Shared {
    state: Mutex<State>,
    arrived: Condvar,
    tls_failures: AtomicUsize,
    /// Requests that reached the handlers, faulted or not.
    attempts: AtomicUsize,
    /// OTLP/JSON may use proto field names (`resource_logs`): see `accept_proto_field_names`.
    proto_field_names: AtomicBool,
    /// Largest request accepted, decoded; 0: [`MAX_BODY_BYTES`]. See `set_max_request_bytes`.
    max_request_bytes: AtomicUsize,
    faults: Mutex<fault::Faults>,
    /// Watched by the accept loop (refuse or listen) and by black-holed requests.
    control: watch::Sender<fault::Control>,
    /// The accept loop's acknowledgement of `control`, which `set_fault` waits for.
    applied: Mutex<fault::Applied>,
    applied_changed: Condvar,
    /// The fault of every metrics request (`set_metrics_fault`), and how many arrived.
    metrics_fault: Mutex<Option<Fault>>,
    metrics_attempts: AtomicUsize,
}

#[derive(Default)]
struct State {
    requests: Vec<ReceivedRequest>,
    records: Vec<ReceivedRecord>,
    metrics: Vec<ReceivedMetrics>,
}

/// One decoded export request, as received.
#[derive(Debug, Clone)]
pub struct ReceivedRequest {
    /// Request path, without any query string. For gRPC this is the method
    /// path, `/opentelemetry.proto.collector.logs.v1.LogsService/Export`.
    pub path: String,
    /// Request headers (for gRPC: the request metadata), names lowercased,
    /// in arrival order except that repeated names are grouped together.
    pub headers: Vec<(String, String)>,
    /// How the request was encoded.
    pub encoding: Encoding,
    /// The request body after content decoding (gzip/zstd removed): protobuf
    /// bytes for [`Encoding::Protobuf`], JSON text for [`Encoding::Json`].
    /// For [`Encoding::Grpc`] it is the message re-encoded as protobuf, since
    /// the gRPC layer hands over the decoded message only.
    pub raw: Vec<u8>,
    /// The decoded request body.
    pub body: ExportLogsServiceRequest,
}

/// One log record, with the resource and scope it was sent under.
#[derive(Debug, Clone)]
pub struct ReceivedRecord {
    /// Attributes of the record's resource.
    pub resource: Vec<KeyValue>,
    /// Name of the record's instrumentation scope (empty if none was sent).
    pub scope_name: String,
    /// The record itself.
    pub record: LogRecord,
}

impl OtlpReceiver {
    /// Binds `127.0.0.1:0` and starts serving plain-text HTTP and gRPC on a background thread.
    pub fn start() -> io::Result<OtlpReceiver> {
        OtlpReceiver::launch(None)
    }

    /// Binds `127.0.0.1:0` and starts serving HTTPS and gRPC over TLS on a background thread.
    ///
    /// ALPN offers `h2` and `http/1.1`. With [`TlsOptions::client_ca_pem`]
    /// set, clients must present a certificate issued by that CA. Failed
    /// handshakes close that connection only; [`OtlpReceiver::tls_failures`]
    /// counts them. Fails with [`io::ErrorKind::InvalidInput`] if the PEM
    /// data cannot be used.
    pub fn start_tls(tls: TlsOptions) -> io::Result<OtlpReceiver> {
        let acceptor = tls::acceptor(&tls)?;
        OtlpReceiver::launch(Some(acceptor))
    }

    fn launch(tls: Option<tokio_rustls::TlsAcceptor>) -> io::Result<OtlpReceiver> {
        let listener = TcpListener::bind(("127.0.0.1", 0))?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new());
        let is_tls = tls.is_some();
        let server = server::Server::spawn(listener, tls, Arc::clone(&shared))?;
        Ok(OtlpReceiver {
            addr,
            tls: is_tls,
            shared,
            _server: server,
        })
    }

    /// Base URL with no path: `http://127.0.0.1:PORT`, or
    /// `https://localhost:PORT` for a receiver started with [`OtlpReceiver::start_tls`].
    pub fn endpoint(&self) -> String {
        if self.tls {
            format!("https://localhost:{}", self.addr.port())
        } else {
            format!("http://{}", self.addr)
        }
    }

    /// Full OTLP/HTTP logs URL, e.g. `http://127.0.0.1:4318/v1/logs`.
    pub fn logs_url(&self) -> String {
        format!("{}/v1/logs", self.endpoint())
    }

    /// OTLP/gRPC endpoint. gRPC is served on the same port as HTTP, so this is
    /// the same URL as [`OtlpReceiver::endpoint`].
    pub fn grpc_endpoint(&self) -> String {
        self.endpoint()
    }

    /// The socket address the receiver listens on (always on `127.0.0.1`).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every successfully decoded request so far, in arrival order.
    pub fn requests(&self) -> Vec<ReceivedRequest> {
        self.shared.lock().requests.clone()
    }

    /// Every log record so far, flattened across requests, resources and scopes.
    pub fn records(&self) -> Vec<ReceivedRecord> {
        self.shared.lock().records.clone()
    }

    /// Number of log records received so far.
    pub fn record_count(&self) -> usize {
        self.shared.lock().records.len()
    }

    /// Blocks until at least `n` records have arrived or `timeout` passes,
    /// then returns all records so far either way.
    pub fn wait_for_records(&self, n: usize, timeout: Duration) -> Vec<ReceivedRecord> {
        let (state, _) = self
            .shared
            .arrived
            .wait_timeout_while(self.shared.lock(), timeout, |s| s.records.len() < n)
            .unwrap_or_else(|e| e.into_inner());
        state.records.clone()
    }

    /// Number of connections whose TLS handshake failed or timed out (no
    /// client certificate, an untrusted one, plain text on the TLS port...).
    /// Always 0 for a receiver started with [`OtlpReceiver::start`].
    ///
    /// With TLS 1.3 a client may see its handshake succeed and its request
    /// fail before the receiver has counted the failure, so poll briefly.
    pub fn tls_failures(&self) -> usize {
        self.shared.tls_failures.load(Ordering::Acquire)
    }

    /// Makes every later request fail with `fault`, or with `None` serves normally again.
    ///
    /// Replaces the fault set before and drops whatever [`fail_next`](Self::fail_next)
    /// queued. Requests held by [`Fault::Blackhole`] are released (their connections closed
    /// without an answer) by any call.
    ///
    /// [`Fault::Refuse`] takes effect before this returns: the port is no longer listening
    /// and open connections are being closed. Clearing it returns once the port listens
    /// again.
    ///
    /// # Panics
    ///
    /// If the receiver cannot listen on its port again after a [`Fault::Refuse`] (the port
    /// was taken meanwhile), or its server thread does not respond within 10 s.
    pub fn set_fault(&self, fault: Option<Fault>) {
        let refuse = matches!(fault, Some(Fault::Refuse));
        let generation = {
            let mut faults = self.shared.faults();
            faults.set(fault);
            let mut generation = 0;
            // Under the faults lock, so that a request sees its fault and the generation
            // that goes with it.
            self.shared.control.send_modify(|control| {
                control.generation += 1;
                control.refuse = refuse;
                generation = control.generation;
            });
            generation
        };
        let (applied, _) = self
            .shared
            .applied_changed
            .wait_timeout_while(self.shared.applied(), fault::APPLY_TIMEOUT, |applied| {
                applied.generation < generation
            })
            .unwrap_or_else(|e| e.into_inner());
        assert!(
            applied.generation >= generation,
            "the OTLP receiver on {} did not apply the fault within {:?}",
            self.addr,
            fault::APPLY_TIMEOUT
        );
        if let Some(error) = &applied.error {
            panic!(
                "the OTLP receiver cannot listen on {} again: {error}",
                self.addr
            );
        }
    }

    /// Makes the next `n` requests fail with `fault`; the ones after are served as before
    /// (normally, or with the fault of [`set_fault`](Self::set_fault)).
    ///
    /// Calls queue up: `fail_next(1, a)` then `fail_next(2, b)` faults the next request with
    /// `a` and the two after it with `b`. [`Fault::Refuse`] here closes each of those
    /// requests' connections without an answer; the port stays open.
    pub fn fail_next(&self, n: usize, fault: Fault) {
        self.shared.faults().push(n, fault);
    }

    /// Accepts OTLP/JSON whose keys are the proto field names (`resource_logs`,
    /// `string_value`) and whose unset fields are `null`, as protobuf JSON parsers do and as
    /// ZenML's Python `otel` log store sends. Off by default: the OTLP spec says senders must
    /// use the lowerCamelCase names, and collectors such as rotel refuse anything else.
    pub fn accept_proto_field_names(&self, accept: bool) {
        self.shared
            .proto_field_names
            .store(accept, Ordering::Release);
    }

    /// Refuses requests larger than `max` bytes (the decoded protobuf or JSON, after content
    /// decoding) as real collectors do: OTLP/HTTP with 413 Payload Too Large (the
    /// OpenTelemetry Collector's default is 20 MiB), OTLP/gRPC with OUT_OF_RANGE, tonic's
    /// answer to a message over its limit (the Collector's default is 4 MiB). `None` restores
    /// the default of 64 MiB. Nothing from a refused request is kept.
    pub fn set_max_request_bytes(&self, max: Option<usize>) {
        let max = max.unwrap_or(0).min(MAX_BODY_BYTES);
        self.shared.max_request_bytes.store(max, Ordering::Release);
    }

    /// The OTLP/HTTP metrics URL, e.g. `http://127.0.0.1:4318/v1/metrics`.
    pub fn metrics_url(&self) -> String {
        format!("{}/v1/metrics", self.endpoint())
    }

    /// Every metrics request decoded so far, in arrival order (faulted ones are not kept,
    /// except under [`Fault::PartialSuccess`] and [`Fault::Delay`]).
    pub fn metrics(&self) -> Vec<ReceivedMetrics> {
        self.shared.lock().metrics.clone()
    }

    /// Blocks until at least `n` metrics requests have been stored or `timeout` passes, then
    /// returns all so far either way.
    pub fn wait_for_metrics(&self, n: usize, timeout: Duration) -> Vec<ReceivedMetrics> {
        let (state, _) = self
            .shared
            .arrived
            .wait_timeout_while(self.shared.lock(), timeout, |s| s.metrics.len() < n)
            .unwrap_or_else(|e| e.into_inner());
        state.metrics.clone()
    }

    /// Makes every later metrics request fail with `fault` (`None`: served normally), as
    /// [`set_fault`](Self::set_fault) does for logs; the two never mix. [`Fault::Refuse`]
    /// closes each metrics request's connection without an answer (the port stays open), and
    /// [`Fault::Blackhole`] holds it until [`set_fault`](Self::set_fault) is called or the
    /// receiver is dropped.
    pub fn set_metrics_fault(&self, fault: Option<Fault>) {
        *crate::sync::lock(&self.shared.metrics_fault) = fault;
    }

    /// Every metrics request that reached the receiver, faulted or not. Not counted by
    /// [`attempts`](Self::attempts).
    pub fn metrics_attempts(&self) -> usize {
        self.shared.metrics_attempts.load(Ordering::Acquire)
    }

    /// Every logs request that reached the receiver so far, faulted or not, malformed ones
    /// included (metrics requests: [`metrics_attempts`](Self::metrics_attempts)). Connections
    /// refused under [`Fault::Refuse`] never reach it and are not counted.
    pub fn attempts(&self) -> usize {
        self.shared.attempts.load(Ordering::Acquire)
    }
}

impl fmt::Debug for OtlpReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (fault, fail_next) = {
            let faults = self.shared.faults();
            (faults.standing().cloned(), faults.pending())
        };
        f.debug_struct("OtlpReceiver")
            .field("endpoint", &self.endpoint())
            .field("record_count", &self.record_count())
            .field("tls_failures", &self.tls_failures())
            .field("attempts", &self.attempts())
            .field("fault", &fault)
            .field("fail_next", &fail_next)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the private key.
        f.debug_struct("TlsOptions")
            .field(
                "cert_chain_pem",
                &format_args!("<{} bytes>", self.cert_chain_pem.len()),
            )
            .field("key_pem", &format_args!("<redacted>"))
            .field(
                "client_ca_pem",
                &self
                    .client_ca_pem
                    .as_ref()
                    .map(|pem| format!("<{} bytes>", pem.len())),
            )
            .finish()
    }
}

impl ReceivedRequest {
    /// First value of header `name`, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl ReceivedRecord {
    /// String form of resource attribute `key`; see [`ReceivedRecord::attr_str`].
    pub fn resource_attr(&self, key: &str) -> Option<String> {
        find_attr(&self.resource, key).and_then(value_string)
    }

    /// Raw value of log record attribute `key`.
    pub fn attr(&self, key: &str) -> Option<&Value> {
        find_attr(&self.record.attributes, key)
    }

    /// String form of log record attribute `key`: strings as they are,
    /// ints, bools and doubles via `to_string`, `None` for other kinds.
    pub fn attr_str(&self, key: &str) -> Option<String> {
        self.attr(key).and_then(value_string)
    }

    /// The record body, if it is a string.
    pub fn body(&self) -> Option<String> {
        match self.record.body.as_ref()?.value.as_ref()? {
            Value::StringValue(s) => Some(s.clone()),
            _ => None,
        }
    }
}

impl Shared {
    fn new() -> Shared {
        Shared {
            state: Mutex::default(),
            arrived: Condvar::new(),
            tls_failures: AtomicUsize::new(0),
            attempts: AtomicUsize::new(0),
            proto_field_names: AtomicBool::new(false),
            max_request_bytes: AtomicUsize::new(0),
            faults: Mutex::default(),
            control: watch::Sender::new(fault::Control::default()),
            applied: Mutex::default(),
            applied_changed: Condvar::new(),
            metrics_fault: Mutex::default(),
            metrics_attempts: AtomicUsize::new(0),
        }
    }

    /// Counts a metrics request and picks its fault.
    fn next_metrics_fault(&self) -> fault::Plan {
        self.metrics_attempts.fetch_add(1, Ordering::AcqRel);
        fault::Plan {
            fault: crate::sync::lock(&self.metrics_fault).clone(),
            generation: self.control.borrow().generation,
        }
    }

    /// Stores a decoded metrics request and wakes waiters, before the answer goes out.
    fn store_metrics(&self, metrics: ReceivedMetrics) {
        self.lock().metrics.push(metrics);
        self.arrived.notify_all();
    }

    fn faults(&self) -> MutexGuard<'_, fault::Faults> {
        crate::sync::lock(&self.faults)
    }

    fn applied(&self) -> MutexGuard<'_, fault::Applied> {
        crate::sync::lock(&self.applied)
    }

    /// Counts a request that reached a handler and picks its fault.
    fn next_fault(&self) -> fault::Plan {
        self.attempts.fetch_add(1, Ordering::AcqRel);
        let mut faults = self.faults();
        fault::Plan {
            fault: faults.take(),
            generation: self.control.borrow().generation,
        }
    }

    /// The accept loop applied `generation` of `control`.
    fn acknowledge(&self, generation: u64, error: Option<String>) {
        let mut applied = self.applied();
        applied.generation = applied.generation.max(generation);
        applied.error = error;
        drop(applied);
        self.applied_changed.notify_all();
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not hide what was received from the others.
        crate::sync::lock(&self.state)
    }

    /// Stores a decoded request and wakes waiters. Called before the response
    /// goes out, so a client that saw success also sees the records.
    fn store(&self, request: ReceivedRequest) {
        self.lock().push(request);
        self.arrived.notify_all();
    }

    /// The largest decoded request accepted now.
    fn request_limit(&self) -> usize {
        match self.max_request_bytes.load(Ordering::Acquire) {
            0 => MAX_BODY_BYTES,
            max => max,
        }
    }

    fn tls_failed(&self) {
        self.tls_failures.fetch_add(1, Ordering::AcqRel);
    }
}

impl State {
    fn push(&mut self, request: ReceivedRequest) {
        for resource_logs in &request.body.resource_logs {
            let resource = resource_logs
                .resource
                .as_ref()
                .map(|r| r.attributes.clone())
                .unwrap_or_default();
            for scope_logs in &resource_logs.scope_logs {
                let scope_name = scope_logs
                    .scope
                    .as_ref()
                    .map(|s| s.name.clone())
                    .unwrap_or_default();
                self.records
                    .extend(scope_logs.log_records.iter().map(|record| ReceivedRecord {
                        resource: resource.clone(),
                        scope_name: scope_name.clone(),
                        record: record.clone(),
                    }));
            }
        }
        self.requests.push(request);
    }
}

fn find_attr<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)?
        .value
        .as_ref()?
        .value
        .as_ref()
}

fn value_string(value: &Value) -> Option<String> {
    match value {
        Value::StringValue(s) => Some(s.clone()),
        Value::BoolValue(b) => Some(b.to_string()),
        Value::IntValue(i) => Some(i.to_string()),
        Value::DoubleValue(d) => Some(d.to_string()),
        _ => None,
    }
}

/// Headers as `(lowercase name, value)` pairs; non-UTF-8 bytes are replaced.
fn header_pairs(headers: &http::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests;
