//! Builds the opentelemetry-otlp exporter for the configured protocol — TLS, compression,
//! timeout, header precedence — and runs its futures: on the calling thread for HTTP (blocking
//! reqwest), on a tokio runtime the crate owns for gRPC (tonic needs one; users may have none).
//!
//! Over HTTP the request body is ours: a batch is encoded as one request with a `ResourceLogs`
//! per run (`pipeline::encode`), and opentelemetry-otlp delivers it — retries, `Retry-After`,
//! timeout, status handling — through the [`HttpClient`] it is given, which swaps the body in.
//! Its tonic client offers no such seam, so over gRPC it still encodes, one request per run.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use http::{HeaderName, HeaderValue};
use opentelemetry::InstrumentationScope;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::logs::{LogBatch, LogExporter as _};

use crate::config::{Compression, Protocol, Settings, HEADER_VARIABLES};
use crate::pipeline::encode::{Encoder, DEFAULT_SCOPE};
use crate::pipeline::retry::{self, Failure, Retry};
use crate::pipeline::{limit, same_run, QueuedRecord};
use crate::Error;
use opentelemetry::logs::LogRecord as _;

/// One exporter and what its futures run on. Each sender thread of the pipeline owns one; they
/// share one HTTP client (one connection pool) or one gRPC runtime.
#[derive(Debug)]
pub(crate) struct Transport {
    exporter: opentelemetry_otlp::LogExporter,
    kind: Kind,
    max_request_bytes: usize,
}

#[derive(Debug)]
enum Kind {
    /// Our encoding, one request per batch, sent by opentelemetry-otlp through this lane's
    /// [`HttpTransport`]; the futures run on the sender thread (blocking reqwest).
    Http {
        /// The body the HTTP client sends in place of opentelemetry-otlp's.
        body: Arc<Mutex<Option<PreparedBody>>>,
        /// What the HTTP client saw of the last request that opentelemetry-otlp does not pass
        /// on.
        outcome: Arc<Mutex<HttpOutcome>>,
        encoder: Encoder,
        json: bool,
        compression: Compression,
    },
    /// opentelemetry-otlp's own encoding, one request per run in a batch.
    Grpc {
        /// A one-worker runtime the crate owns, shared by the senders (tonic's connections are
        /// driven there; each sender `block_on`s its own export).
        runtime: Arc<tokio::runtime::Runtime>,
        /// The scope records without a target are exported under (the layer always sets one).
        scope: InstrumentationScope,
    },
}

impl Transport {
    /// Builds `lanes` transports that can export concurrently.
    pub(crate) fn build(settings: &Settings, lanes: usize) -> Result<Vec<Self>, Error> {
        match settings.protocol {
            Protocol::Grpc => {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .thread_name("zenml-otel-grpc")
                    .build()
                    .map_err(|e| Error::export("cannot start the gRPC runtime").caused_by(e))?;
                let runtime = Arc::new(runtime);
                // tonic's lazy channel registers with the runtime it is created in.
                let _entered = runtime.enter();
                (0..lanes)
                    .map(|_| {
                        Ok(Self {
                            max_request_bytes: settings.max_request_bytes,
                            exporter: grpc_exporter(settings)?,
                            kind: Kind::Grpc {
                                runtime: Arc::clone(&runtime),
                                scope: InstrumentationScope::builder(DEFAULT_SCOPE).build(),
                            },
                        })
                    })
                    .collect()
            }
            Protocol::HttpProtobuf | Protocol::HttpJson => {
                let client = http_client(settings)?;
                (0..lanes)
                    .map(|_| {
                        let body = Arc::default();
                        let outcome = Arc::default();
                        let exporter = http_exporter(
                            settings,
                            HttpTransport {
                                client: client.clone(),
                                headers: HeaderPrecedence::new(settings),
                                outcome: Arc::clone(&outcome),
                                body: Arc::clone(&body),
                            },
                        )?;
                        Ok(Self {
                            exporter,
                            max_request_bytes: settings.max_request_bytes,
                            kind: Kind::Http {
                                body,
                                outcome,
                                encoder: Encoder::default(),
                                json: settings.protocol == Protocol::HttpJson,
                                compression: settings.compression,
                            },
                        })
                    })
                    .collect()
            }
        }
    }

    /// Exports a batch of records of any runs and reports each request's fate to `settle`: how
    /// many records it held, and `Ok` with how many the collector rejected in a partial success
    /// or the error, with its underlying cause where one is known. No request's encoding is
    /// larger than `max_request_bytes`; a request that fails with a retryable error is sent
    /// again as long as a `retry()` allows.
    pub(crate) fn export<'r>(
        &mut self,
        records: &mut [QueuedRecord],
        settle: &mut dyn FnMut(usize, Result<u64, String>),
        retry: &dyn Fn() -> Retry<'r>,
    ) {
        // Stable: each run's records keep their order.
        records.sort_by_key(|queued| Arc::as_ptr(queued.run()) as usize);
        if let Kind::Grpc { .. } = self.kind {
            // opentelemetry-otlp encodes these records itself: give them their context's
            // attributes (once: it retries internally, on the same batch).
            for queued in records.iter_mut() {
                for (key, value) in queued.context.attributes() {
                    queued.record.add_attribute(key.clone(), value.clone());
                }
            }
        }
        for range in limit::requests(records, self.max_request_bytes) {
            let request = &mut records[range];
            match &self.kind {
                Kind::Http { .. } => self.export_http(request, settle, retry),
                Kind::Grpc { .. } => {
                    let mut rest = &*request;
                    while !rest.is_empty() {
                        let (group, tail) = rest.split_at(same_run(rest));
                        self.export_grpc(group, settle, retry);
                        rest = tail;
                    }
                }
            }
        }
    }

    /// One request, sent until it is delivered or its failure is final; halved when its body
    /// came out larger than the limit (OTLP/JSON is larger than the protobuf the requests were
    /// cut by) or the collector refused it as too large (HTTP 413), down to single records.
    fn export_http<'r>(
        &mut self,
        records: &mut [QueuedRecord],
        settle: &mut dyn FnMut(usize, Result<u64, String>),
        retry: &dyn Fn() -> Retry<'r>,
    ) {
        let mut attempts = retry();
        let result = loop {
            match self.send_http(records, &attempts) {
                Sent::TooLarge if records.len() > 1 => {
                    drop(attempts);
                    let (first, second) = records.split_at_mut(records.len() / 2);
                    self.export_http(first, settle, retry);
                    return self.export_http(second, settle, retry);
                }
                Sent::TooLarge => {
                    break Err(format!(
                        "one record's request is larger than max_export_batch_bytes ({}) or \
                         than the collector takes",
                        self.max_request_bytes
                    ))
                }
                Sent::Done(Err(failure)) if attempts.again(&failure) => continue,
                Sent::Done(result) => break result.map_err(|f| f.message),
            }
        };
        settle(records.len(), result);
    }

    /// Sends `records` as one OTLP/HTTP request, once it is this batch's turn.
    fn send_http(&mut self, records: &mut [QueuedRecord], attempts: &Retry<'_>) -> Sent {
        let Kind::Http {
            body,
            outcome,
            encoder,
            json,
            compression,
        } = &mut self.kind
        else {
            unreachable!("send_http on a gRPC transport")
        };
        let prepared = match prepare_body(
            encoder,
            records,
            *json,
            *compression,
            self.max_request_bytes,
        ) {
            Ok(Some(prepared)) => prepared,
            Ok(None) => return Sent::TooLarge,
            Err(message) => {
                return Sent::Done(Err(Failure {
                    message,
                    retryable: false,
                    retry_after: None,
                }))
            }
        };
        if let Err(failure) = attempts.wait_turn() {
            return Sent::Done(Err(failure));
        }
        *lock(body) = Some(prepared);
        let result = futures_executor::block_on(self.exporter.export(LogBatch::new(&[])));
        *lock(body) = None;
        let outcome = std::mem::take(&mut *lock(outcome));
        match result {
            Ok(()) => Sent::Done(Ok(outcome.rejected)),
            Err(_) if outcome.too_large => Sent::TooLarge,
            Err(error) => {
                let message = match outcome.failure {
                    Some(cause) => format!("{error}: {cause}"),
                    None => error.to_string(),
                };
                let retryable = outcome.retryable || retry::is_timeout(&message);
                Sent::Done(Err(Failure {
                    message,
                    retryable,
                    retry_after: outcome.retry_after,
                }))
            }
        }
    }

    /// One run's records as one OTLP/gRPC request, sent until delivered or its failure is final;
    /// halved when the server refuses it as too large (OUT_OF_RANGE, or RESOURCE_EXHAUSTED
    /// without `RetryInfo`), down to single records.
    fn export_grpc<'r>(
        &mut self,
        group: &[QueuedRecord],
        settle: &mut dyn FnMut(usize, Result<u64, String>),
        retry: &dyn Fn() -> Retry<'r>,
    ) {
        let mut attempts = retry();
        let result = loop {
            match self.send_grpc(group, &attempts) {
                Err(failure)
                    if group.len() > 1 && retry::too_large_grpc_error(&failure.message) =>
                {
                    drop(attempts);
                    let (first, second) = group.split_at(group.len() / 2);
                    self.export_grpc(first, settle, retry);
                    return self.export_grpc(second, settle, retry);
                }
                Err(failure) if attempts.again(&failure) => continue,
                result => break result,
            }
        };
        settle(group.len(), result.map_err(|f| f.message));
    }

    /// Sends one run's records as one OTLP/gRPC request (opentelemetry-otlp's own encoding),
    /// once it is this batch's turn.
    fn send_grpc(&mut self, group: &[QueuedRecord], attempts: &Retry<'_>) -> Result<u64, Failure> {
        let Kind::Grpc { runtime, scope } = &self.kind else {
            unreachable!("send_grpc on an HTTP transport")
        };
        let batch: Vec<_> = group
            .iter()
            .map(|queued| (&queued.record, &*scope))
            .collect();
        attempts.wait_turn()?;
        self.exporter.set_resource(&group[0].run().resource);
        let result = runtime.block_on(self.exporter.export(LogBatch::new(&batch)));
        result.map(|()| 0).map_err(|error| {
            let message = error.to_string();
            let retryable = retry::retryable_grpc_error(&message);
            // opentelemetry-otlp honours RetryInfo itself and does not pass it on.
            Failure {
                message,
                retryable,
                retry_after: None,
            }
        })
    }

    pub(crate) fn shutdown(&mut self) {
        let _ = self.exporter.shutdown();
    }
}

/// The HTTP request body for `records`: OTLP protobuf (or JSON), compressed as configured;
/// `None` if it would be larger than `max` bytes before compression.
fn prepare_body(
    encoder: &mut Encoder,
    records: &mut [QueuedRecord],
    json: bool,
    compression: Compression,
    max: usize,
) -> Result<Option<PreparedBody>, String> {
    let mut body = Vec::with_capacity(records.len() * 256);
    encoder.encode(records, &mut body);
    if json {
        body = crate::pipeline::encode::to_json(&body)?;
    }
    if body.len() > max {
        return Ok(None);
    }
    let (bytes, encoding) = match compression {
        Compression::None => (body, None),
        Compression::Gzip => {
            use std::io::Write as _;
            let mut gzip =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            gzip.write_all(&body)
                .and_then(|()| gzip.finish())
                .map(|bytes| (bytes, Some("gzip")))
                .map_err(|e| format!("gzip compression failed: {e}"))?
        }
        Compression::Zstd => zstd::bulk::compress(&body, 0)
            .map(|bytes| (bytes, Some("zstd")))
            .map_err(|e| format!("zstd compression failed: {e}"))?,
    };
    Ok(Some(PreparedBody {
        bytes: Bytes::from(bytes),
        encoding,
    }))
}

fn build_error(field: &str) -> impl Fn(opentelemetry_otlp::ExporterBuildError) -> Error + '_ {
    move |e| Error::config(field, "the exporter cannot be built with it").caused_by(e)
}

/// opentelemetry-otlp also reads `OTEL_EXPORTER_OTLP_[LOGS_]HEADERS` and lets them override
/// what it was given. Our precedence is explicit > environment, resolved in the config, so
/// every request gets exactly the resolved headers: names that only the environment set are
/// removed, ours are (re)inserted.
#[derive(Clone)]
struct HeaderPrecedence {
    headers: Arc<Vec<(HeaderName, HeaderValue)>>,
    suppressed: Arc<Vec<HeaderName>>,
}

impl HeaderPrecedence {
    fn new(settings: &Settings) -> Self {
        let ours: Vec<&HeaderName> = settings.headers.iter().map(|(name, _)| name).collect();
        let suppressed = HEADER_VARIABLES
            .iter()
            .filter_map(|name| std::env::var(name).ok())
            .flat_map(|value| {
                value
                    .split(',')
                    .filter_map(|entry| Some(entry.split_once('=')?.0.to_owned()))
                    .collect::<Vec<_>>()
            })
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
            .filter(|name| !ours.contains(&name))
            .collect();
        Self {
            headers: Arc::new(settings.headers.clone()),
            suppressed: Arc::new(suppressed),
        }
    }

    fn as_strings(&self) -> HashMap<String, String> {
        self.headers
            .iter()
            .filter_map(|(name, value)| Some((name.to_string(), value.to_str().ok()?.to_owned())))
            .collect()
    }
}

impl std::fmt::Debug for HeaderPrecedence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: values are credentials.
        f.debug_struct("HeaderPrecedence")
            .field(
                "headers",
                &self.headers.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("suppressed", &self.suppressed)
            .finish()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The blocking reqwest client, with the configured TLS, behind [`HeaderPrecedence`].
#[derive(Debug)]
struct HttpTransport {
    client: reqwest::blocking::Client,
    headers: HeaderPrecedence,
    outcome: Arc<Mutex<HttpOutcome>>,
    body: Arc<Mutex<Option<PreparedBody>>>,
}

/// A request body encoded by us, sent instead of the (empty) one opentelemetry-otlp built; it
/// is reused as is by every retry of the request.
#[derive(Debug, Clone)]
struct PreparedBody {
    bytes: Bytes,
    /// The `Content-Encoding` of `bytes`.
    encoding: Option<&'static str>,
}

/// Facts about the last request that opentelemetry-otlp's result does not carry.
#[derive(Debug, Default)]
struct HttpOutcome {
    /// Why it failed, with the whole source chain: opentelemetry-otlp's own error says only
    /// "network error", which leaves a TLS misconfiguration a mystery.
    failure: Option<String>,
    /// Records the collector rejected in a partial success (opentelemetry-otlp only logs them).
    rejected: u64,
    /// The collector answered 413: the request is too large for it.
    too_large: bool,
    /// The last attempt failed in a way that may pass later: no connection or answer, or HTTP
    /// 429, 502, 503, 504.
    retryable: bool,
    /// The last answer's `Retry-After`, in seconds (the HTTP-date form is not used by OTLP
    /// collectors).
    retry_after: Option<std::time::Duration>,
}

/// How one OTLP/HTTP request ended.
enum Sent {
    Done(Result<u64, Failure>),
    /// Larger than the limit, or refused by the collector as too large: to be split.
    TooLarge,
}

/// `partial_success.rejected_log_records` of an OTLP/HTTP response body, if any.
fn rejected_records(response: &Response<Bytes>) -> u64 {
    use prost::Message as _;
    let body = response.body();
    if body.is_empty() {
        return 0;
    }
    let json = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if json {
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
            return 0;
        };
        // The OTLP/JSON int64 may be a string or a number.
        match &value["partialSuccess"]["rejectedLogRecords"] {
            serde_json::Value::String(text) => text.parse().unwrap_or(0),
            other => other.as_u64().unwrap_or(0),
        }
    } else {
        opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse::decode(
            body.as_ref(),
        )
        .ok()
        .and_then(|r| r.partial_success)
        .map_or(0, |p| p.rejected_log_records.max(0) as u64)
    }
}

#[async_trait::async_trait]
impl HttpClient for HttpTransport {
    async fn send_bytes(&self, mut request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        // Never let opentelemetry-otlp's placeholder out: it holds no records, and a collector
        // acknowledging it would have records counted as exported that were never sent.
        let body = lock(&self.body)
            .clone()
            .ok_or("zenml-otel: no request body was prepared for this export")?;
        *request.body_mut() = body.bytes;
        if let Some(encoding) = body.encoding {
            request.headers_mut().insert(
                http::header::CONTENT_ENCODING,
                HeaderValue::from_static(encoding),
            );
        }
        let map = request.headers_mut();
        for name in self.headers.suppressed.iter() {
            map.remove(name);
        }
        for (name, value) in self.headers.headers.iter() {
            map.insert(name.clone(), value.clone());
        }
        let result = self.client.send_bytes(request).await;
        let mut outcome = lock(&self.outcome);
        match &result {
            Ok(response) if response.status().is_success() => {
                outcome.rejected = rejected_records(response);
            }
            Ok(response) => {
                outcome.too_large = response.status() == http::StatusCode::PAYLOAD_TOO_LARGE;
                outcome.retryable = retry::retryable_status(response.status().as_u16());
                outcome.retry_after = response
                    .headers()
                    .get(http::header::RETRY_AFTER)
                    .and_then(|value| value.to_str().ok()?.trim().parse().ok())
                    .map(std::time::Duration::from_secs);
            }
            Err(error) => {
                let mut cause = error.to_string();
                let mut source = error.source();
                while let Some(inner) = source {
                    cause.push_str(": ");
                    cause.push_str(&inner.to_string());
                    source = inner.source();
                }
                // No connection or answer may pass later; a certificate the TLS handshake
                // refuses will not.
                outcome.retryable = !cause.to_ascii_lowercase().contains("certificate");
                outcome.failure = Some(cause);
            }
        }
        drop(outcome);
        result
    }
}

/// The blocking reqwest client with the configured timeout and TLS; clones share its pool.
fn http_client(settings: &Settings) -> Result<reqwest::blocking::Client, Error> {
    let mut client = reqwest::blocking::Client::builder().timeout(settings.timeout);
    if let Some(ca) = &settings.tls.ca {
        let roots = reqwest::Certificate::from_pem_bundle(ca).map_err(|e| {
            Error::config("certificate_file", "no usable PEM certificate").caused_by(e)
        })?;
        // A custom CA replaces the default roots, as the OTLP exporter spec and ZenML mean it.
        client = client.tls_certs_only(roots);
    }
    if let Some((cert, key)) = &settings.tls.identity {
        let mut pem = cert.clone();
        pem.push(b'\n');
        pem.extend_from_slice(key);
        let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
            Error::config(
                "client_certificate_file",
                "the client certificate and key do not form a TLS identity",
            )
            .caused_by(e)
        })?;
        client = client.identity(identity);
    }
    client
        .build()
        .map_err(|e| Error::export("cannot build the HTTP client").caused_by(e))
}

/// Compression is left to [`prepare_body`]: what opentelemetry-otlp encodes here is
/// only the empty placeholder the client replaces.
fn http_exporter(
    settings: &Settings,
    client: HttpTransport,
) -> Result<opentelemetry_otlp::LogExporter, Error> {
    let protocol = match settings.protocol {
        Protocol::HttpJson => opentelemetry_otlp::Protocol::HttpJson,
        _ => opentelemetry_otlp::Protocol::HttpBinary,
    };
    opentelemetry_otlp::LogExporter::builder()
        .with_http()
        .with_protocol(protocol)
        .with_endpoint(settings.endpoint.clone())
        .with_timeout(settings.timeout)
        .with_retry_policy(retry_policy())
        .with_headers(client.headers.as_strings())
        .with_http_client(client)
        .build()
        .map_err(build_error("endpoint"))
}

fn grpc_exporter(settings: &Settings) -> Result<opentelemetry_otlp::LogExporter, Error> {
    use opentelemetry_otlp::tonic_types::transport::{Certificate, ClientTlsConfig, Identity};

    let headers = HeaderPrecedence::new(settings);
    let precedence = headers.clone();
    let interceptor = move |mut request: tonic::Request<()>| {
        let metadata = request.metadata_mut();
        for name in precedence.suppressed.iter() {
            metadata.remove(name.as_str());
        }
        for (name, value) in precedence.headers.iter() {
            let key = tonic::metadata::MetadataKey::from_bytes(name.as_str().as_bytes());
            let value = tonic::metadata::MetadataValue::try_from(value.as_bytes());
            if let (Ok(key), Ok(value)) = (key, value) {
                metadata.insert(key, value);
            }
        }
        Ok(request)
    };
    let mut builder = opentelemetry_otlp::LogExporter::builder()
        .with_tonic()
        .with_protocol(opentelemetry_otlp::Protocol::Grpc)
        .with_endpoint(settings.endpoint.clone())
        .with_timeout(settings.timeout)
        .with_retry_policy(retry_policy())
        .with_interceptor(interceptor);
    if settings.endpoint.starts_with("https://") {
        let tls = match &settings.tls.ca {
            // A custom CA replaces the default roots.
            Some(ca) => ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)),
            None => ClientTlsConfig::new().with_enabled_roots(),
        };
        let tls = match &settings.tls.identity {
            Some((cert, key)) => tls.identity(Identity::from_pem(cert, key)),
            None => tls,
        };
        builder = builder.with_tls_config(tls);
    }
    if let Some(compression) = compression(settings.compression) {
        builder = builder.with_compression(compression);
    }
    builder.build().map_err(build_error("endpoint"))
}

/// Retries bounded by the export timeout alone: the default policy stops after three retries
/// (about a second), which would fail a batch during a short collector restart although the
/// user allowed `export_timeout_millis` for it.
fn retry_policy() -> opentelemetry_otlp::RetryPolicy {
    opentelemetry_otlp::RetryPolicy::recommended().with_max_retries(usize::MAX)
}

fn compression(compression: Compression) -> Option<opentelemetry_otlp::Compression> {
    match compression {
        Compression::None => None,
        Compression::Gzip => Some(opentelemetry_otlp::Compression::Gzip),
        Compression::Zstd => Some(opentelemetry_otlp::Compression::Zstd),
    }
}
