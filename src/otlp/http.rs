//! OTLP/HTTP, ours end to end: a batch is encoded as one request (a `ResourceLogs` per run,
//! `protobuf.rs`), compressed here and posted with the blocking reqwest client, whose
//! pool the lanes share. Retries, `Retry-After`, splitting on 413 and the order of a run's
//! requests are the batching's (`batch::retry`, `batch::order`); the client's timeout
//! is `export_timeout_millis`.

use http::header::{CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderName, HeaderValue, StatusCode};

use super::protobuf::Encoder;
use crate::batch::retry::{self, Failure, Retry};
use crate::batch::QueuedRecord;
use crate::config::{Compression, Protocol, Settings};

use super::{Sent, Transport};
use crate::Error;

/// One sender's OTLP/HTTP exporter; the lanes share one HTTP client (one connection pool).
#[derive(Debug)]
pub(super) struct HttpTransport {
    client: reqwest::blocking::Client,
    url: String,
    /// The configured headers (explicit over environment, resolved by the config).
    headers: Vec<(HeaderName, HeaderValue)>,
    encoder: Encoder,
    json: bool,
    compression: Compression,
    max_request_bytes: usize,
}

impl HttpTransport {
    /// `lanes` exporters sharing one client.
    pub(super) fn build(settings: &Settings, lanes: usize) -> Result<Vec<Self>, Error> {
        let client = http_client(settings)?;
        Ok((0..lanes)
            .map(|_| Self {
                client: client.clone(),
                url: settings.endpoint.clone(),
                headers: settings.headers.clone(),
                encoder: Encoder::default(),
                json: settings.protocol == Protocol::HttpJson,
                compression: settings.compression,
                max_request_bytes: settings.max_request_bytes,
            })
            .collect())
    }

    fn post(&self, body: PreparedBody) -> reqwest::Result<reqwest::blocking::Response> {
        let content_type = if self.json {
            "application/json"
        } else {
            "application/x-protobuf"
        };
        let mut request = self
            .client
            .post(&self.url)
            .header(CONTENT_TYPE, content_type);
        if let Some(encoding) = body.encoding {
            request = request.header(CONTENT_ENCODING, encoding);
        }
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        request.body(body.bytes).send()
    }

    /// What the collector's answer means: delivered (with the records it rejected), too large,
    /// or a failure that may pass later (429, 502, 503, 504, with `Retry-After`) or not.
    fn answered(&self, response: reqwest::blocking::Response) -> Sent {
        let status = response.status();
        let json = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok()?.trim().parse().ok())
            .map(std::time::Duration::from_secs);
        let body = response.bytes().unwrap_or_default();
        if status.is_success() {
            return Sent::Done(Ok(rejected_records(json, &body)));
        }
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            return Sent::TooLarge;
        }
        let text = String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned();
        Sent::Done(Err(Failure {
            message: format!("the collector answered {status} to {}: {text}", self.url),
            retryable: retry::retryable_status(status.as_u16()),
            retry_after,
        }))
    }
}

impl Transport for HttpTransport {
    fn send(&mut self, records: &mut [QueuedRecord], attempts: &Retry<'_>) -> Sent {
        let body = match prepare_body(
            &mut self.encoder,
            records,
            self.json,
            self.compression,
            self.max_request_bytes,
        ) {
            Ok(Some(body)) => body,
            Ok(None) => return Sent::TooLarge,
            Err(message) => return Sent::Done(Err(final_failure(message))),
        };
        if let Err(failure) = attempts.wait_turn() {
            return Sent::Done(Err(failure));
        }
        match self.post(body) {
            Ok(response) => self.answered(response),
            Err(error) => Sent::Done(Err(transport_failure(&error))),
        }
    }

    fn max_request_bytes(&self) -> usize {
        self.max_request_bytes
    }
}

/// No connection or no answer in time may pass later; a certificate TLS refuses will not. The
/// message carries the whole source chain: reqwest's own says only "error sending request",
/// which leaves a TLS misconfiguration a mystery.
fn transport_failure(error: &reqwest::Error) -> Failure {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        message.push_str(": ");
        message.push_str(&inner.to_string());
        source = inner.source();
    }
    let retryable =
        !message.to_ascii_lowercase().contains("certificate") || retry::is_timeout(&message);
    Failure {
        message,
        retryable,
        retry_after: None,
    }
}

fn final_failure(message: String) -> Failure {
    Failure {
        message,
        retryable: false,
        retry_after: None,
    }
}

/// gzip's fastest level: on our request bodies it costs an eighth of the default level's CPU
/// (0.28 vs 2.2 µs per record) for 13 % more bytes (14.2 vs 12.6 per record) —
/// `throughput -- compress`, BENCHMARKS.md.
const GZIP_LEVEL: u32 = 1;

/// zstd's first fast level: 0.77× the default level's CPU for 4 % more bytes (same run).
#[cfg(feature = "zstd")]
const ZSTD_LEVEL: i32 = -1;

/// A request body, encoded and compressed once; every retry of the request sends it again.
#[derive(Debug, Clone)]
struct PreparedBody {
    bytes: Vec<u8>,
    /// The `Content-Encoding` of `bytes`.
    encoding: Option<&'static str>,
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
            body = super::json::to_json(&body)?;
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
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(GZIP_LEVEL));
            gzip.write_all(&body)
                .and_then(|()| gzip.finish())
                .map(|bytes| (bytes, Some("gzip")))
                .map_err(|e| format!("gzip compression failed: {e}"))?
        }
        #[cfg(feature = "zstd")]
        Compression::Zstd => zstd::bulk::compress(&body, ZSTD_LEVEL)
            .map(|bytes| (bytes, Some("zstd")))
            .map_err(|e| format!("zstd compression failed: {e}"))?,
        #[cfg(not(feature = "zstd"))]
        Compression::Zstd => return Err(crate::config::missing_feature("zstd")),
    };
    Ok(Some(PreparedBody { bytes, encoding }))
}

/// `partial_success.rejected_log_records` of an OTLP/HTTP response body, if any.
fn rejected_records(json: bool, body: &[u8]) -> u64 {
    if body.is_empty() {
        return 0;
    }
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
        super::rejected_in(body)
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
