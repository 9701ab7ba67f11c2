//! OTLP/HTTP: our encoding, one request per batch (a `ResourceLogs` per run), delivered by
//! opentelemetry-otlp — retries, `Retry-After`, timeout, status handling — through the
//! [`HttpClient`] it is given, which swaps the body in. The futures run on the sender thread
//! (blocking reqwest).

use std::sync::{Arc, Mutex};

use http::HeaderValue;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::logs::{LogBatch, LogExporter as _};

use super::HeaderPrecedence;
use crate::config::{Compression, Protocol, Settings};
use crate::pipeline::encode::Encoder;
use crate::pipeline::retry::{self, Failure, Retry};
use crate::pipeline::QueuedRecord;
use crate::sync::lock;
use crate::Error;

/// One sender's OTLP/HTTP exporter; the lanes share one HTTP client (one connection pool).
#[derive(Debug)]
pub(super) struct HttpLane {
    exporter: opentelemetry_otlp::LogExporter,
    /// The body the HTTP client sends in place of opentelemetry-otlp's.
    body: Arc<Mutex<Option<PreparedBody>>>,
    /// What the HTTP client saw of the last request that opentelemetry-otlp does not pass on.
    outcome: Arc<Mutex<HttpOutcome>>,
    encoder: Encoder,
    json: bool,
    compression: Compression,
    max_request_bytes: usize,
}

impl HttpLane {
    /// `lanes` exporters sharing one client.
    pub(super) fn build(settings: &Settings, lanes: usize) -> Result<Vec<Self>, Error> {
        let client = http_client(settings)?;
        (0..lanes)
            .map(|_| {
                let body = Arc::default();
                let outcome = Arc::default();
                let transport = HttpTransport {
                    client: client.clone(),
                    headers: HeaderPrecedence::new(settings),
                    outcome: Arc::clone(&outcome),
                    body: Arc::clone(&body),
                };
                Ok(Self {
                    exporter: http_exporter(settings, transport)?,
                    body,
                    outcome,
                    encoder: Encoder::default(),
                    json: settings.protocol == Protocol::HttpJson,
                    compression: settings.compression,
                    max_request_bytes: settings.max_request_bytes,
                })
            })
            .collect()
    }

    /// One request, sent until it is delivered or its failure is final; halved when its body
    /// came out larger than the limit (OTLP/JSON is larger than the protobuf the requests were
    /// cut by) or the collector refused it as too large (HTTP 413), down to single records.
    pub(super) fn export<'r>(
        &mut self,
        records: &mut [QueuedRecord],
        settle: &mut dyn FnMut(usize, Result<u64, String>),
        retry: &dyn Fn() -> Retry<'r>,
    ) {
        let mut attempts = retry();
        let result = loop {
            match self.send(records, &attempts) {
                Sent::TooLarge if records.len() > 1 => {
                    drop(attempts);
                    let (first, second) = records.split_at_mut(records.len() / 2);
                    self.export(first, settle, retry);
                    return self.export(second, settle, retry);
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
    fn send(&mut self, records: &mut [QueuedRecord], attempts: &Retry<'_>) -> Sent {
        let prepared = match prepare_body(
            &mut self.encoder,
            records,
            self.json,
            self.compression,
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
        *lock(&self.body) = Some(prepared);
        let result = futures_executor::block_on(self.exporter.export(LogBatch::new(&[])));
        *lock(&self.body) = None;
        let outcome = std::mem::take(&mut *lock(&self.outcome));
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

    pub(super) fn shutdown(&mut self) {
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
        #[cfg(feature = "http-json")]
        {
            body = crate::pipeline::encode::to_json(&body)?;
        }
        #[cfg(not(feature = "http-json"))]
        return Err(crate::config::missing_feature("http-json"));
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
        #[cfg(feature = "zstd")]
        Compression::Zstd => zstd::bulk::compress(&body, 0)
            .map(|bytes| (bytes, Some("zstd")))
            .map_err(|e| format!("zstd compression failed: {e}"))?,
        #[cfg(not(feature = "zstd"))]
        Compression::Zstd => return Err(crate::config::missing_feature("zstd")),
    };
    Ok(Some(PreparedBody {
        bytes: Bytes::from(bytes),
        encoding,
    }))
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
    let client = reqwest::blocking::Client::builder().timeout(settings.timeout);
    #[cfg(feature = "tls")]
    let client = with_tls(client, settings)?;
    client
        .build()
        .map_err(|e| Error::export("cannot build the HTTP client").caused_by(e))
}

/// The custom CA and client identity, if any (validation allows them with https:// only).
#[cfg(feature = "tls")]
fn with_tls(
    mut client: reqwest::blocking::ClientBuilder,
    settings: &Settings,
) -> Result<reqwest::blocking::ClientBuilder, Error> {
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
    Ok(client)
}

/// Compression is left to [`prepare_body`]: what opentelemetry-otlp encodes here is
/// only the empty placeholder the client replaces.
fn http_exporter(
    settings: &Settings,
    client: HttpTransport,
) -> Result<opentelemetry_otlp::LogExporter, Error> {
    let protocol = match settings.protocol {
        #[cfg(feature = "http-json")]
        Protocol::HttpJson => opentelemetry_otlp::Protocol::HttpJson,
        _ => opentelemetry_otlp::Protocol::HttpBinary,
    };
    opentelemetry_otlp::LogExporter::builder()
        .with_http()
        .with_protocol(protocol)
        .with_endpoint(settings.endpoint.clone())
        .with_timeout(settings.timeout)
        .with_retry_policy(super::retry_policy())
        .with_headers(client.headers.as_strings())
        .with_http_client(client)
        .build()
        .map_err(super::build_error("endpoint"))
}
