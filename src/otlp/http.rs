//! OTLP/HTTP, ours end to end: a batch is encoded as one request (a `ResourceLogs` per run,
//! `protobuf.rs`), compressed (`compress.rs`) and posted with ureq, a blocking HTTP/1.1 client
//! that runs on the sender's own thread (no async runtime, no URL/IDNA stack); the lanes share
//! its connection pool. Retries, `Retry-After`, splitting on 413 and the order of a run's
//! requests are the batching's (`batch::retry`, `batch::order`); the client's timeout
//! is `export_timeout_millis`.

use http::header::{CONTENT_ENCODING, CONTENT_TYPE, LOCATION, RETRY_AFTER};
use http::StatusCode;
use std::time::Duration;

use super::compress::Compressor;
use super::protobuf::Encoder;
use crate::batch::retry::{self, ErrorType, Failure, Retry};
use crate::batch::QueuedRecord;
use crate::config::{Protocol, Settings};
use crate::redact;

use super::{Sent, Transport};
use crate::Error;

/// One sender's OTLP/HTTP exporter; the lanes share one HTTP client (one connection pool).
#[derive(Debug)]
pub(super) struct HttpTransport {
    client: ureq::Agent,
    url: String,
    /// The configured headers (explicit over environment, resolved by the config).
    headers: crate::config::Headers,
    encoder: Encoder,
    json: bool,
    compressor: Compressor,
    max_request_bytes: usize,
    /// `export_timeout_millis`: one attempt's bound, shorter near shutdown's deadline.
    timeout: Duration,
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
                compressor: Compressor::new(settings.compression),
                max_request_bytes: settings.max_request_bytes,
                timeout: settings.timeout,
            })
            .collect())
    }

    fn post(
        &self,
        body: PreparedBody,
        timeout: Duration,
    ) -> Result<http::Response<ureq::Body>, ureq::Error> {
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
        request
            .config()
            .timeout_global(Some(timeout))
            .build()
            .send(&body.bytes[..])
    }

    /// What the collector's answer means: delivered (with the records it rejected), too large,
    /// or a failure that may pass later (429, 502, 503, 504, with `Retry-After`) or not.
    fn answered(&self, mut response: http::Response<ureq::Body>) -> Sent {
        let status = response.status();
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let json = content_type.starts_with("application/json");
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok()?.trim().parse().ok())
            .map(std::time::Duration::from_secs);
        // An answer is a partial-success message or an error text: small, whatever a broken
        // collector sends.
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE_BYTES)
            .read_to_vec()
            .unwrap_or_default();
        if status.is_success() {
            return Sent::Done(Ok(rejected_records(json, &body)));
        }
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            return Sent::TooLarge;
        }
        let url = redact::url(&self.url);
        if status.is_redirection() {
            // Never followed: the export would go elsewhere, as a GET without its body and
            // with the configured headers (keys) on it.
            let location = response
                .headers()
                .get(LOCATION)
                .map(|value| redact::url(&String::from_utf8_lossy(value.as_bytes())));
            return Sent::Done(Err(Failure {
                message: format!(
                    "the collector answered {status} to {url} with a redirect to `{}`; \
                     redirects are not followed: configure the endpoint it names",
                    location.as_deref().unwrap_or("nowhere")
                ),
                error_type: ErrorType::Http(status.as_u16()),
                retryable: false,
                retry_after: None,
            }));
        }
        let text = redact::untrusted(&error_text(&content_type, &body));
        Sent::Done(Err(Failure {
            message: format!("the collector answered {status} to {url}: {text}"),
            error_type: ErrorType::Http(status.as_u16()),
            retryable: retry::retryable_status(status.as_u16()),
            retry_after,
        }))
    }
}

impl HttpTransport {
    /// Posts one request of another signal (the layer's metrics), already encoded in this
    /// transport's encoding (`json`), once, within `timeout`: `Ok` with how many items the
    /// collector rejected.
    pub(super) fn send_encoded(
        &mut self,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<u64, Failure> {
        let (bytes, encoding) = self.compressor.compress(body).map_err(final_failure)?;
        match self.post(PreparedBody { bytes, encoding }, timeout) {
            Ok(response) => match self.answered(response) {
                Sent::Done(result) => result,
                Sent::TooLarge => Err(Failure {
                    message: format!(
                        "the collector answered 413 to {}: the request is too large",
                        redact::url(&self.url)
                    ),
                    error_type: ErrorType::Http(413),
                    retryable: false,
                    retry_after: None,
                }),
            },
            Err(error) => Err(transport_failure(&error)),
        }
    }

    /// Whether requests go as OTLP/JSON.
    pub(super) fn json(&self) -> bool {
        self.json
    }
}

impl Transport for HttpTransport {
    fn send(&mut self, records: &mut [QueuedRecord], attempts: &Retry<'_>) -> Sent {
        let body = match prepare_body(
            &mut self.encoder,
            records,
            self.json,
            &mut self.compressor,
            self.max_request_bytes,
        ) {
            Ok(Some(body)) => body,
            Ok(None) => return Sent::TooLarge,
            Err(message) => return Sent::Done(Err(final_failure(message))),
        };
        if let Err(failure) = attempts.wait_turn() {
            return Sent::Done(Err(failure));
        }
        match self.post(body, attempts.attempt_timeout(self.timeout)) {
            Ok(response) => self.answered(response),
            Err(error) => Sent::Done(Err(transport_failure(&error))),
        }
    }

    fn max_request_bytes(&self) -> usize {
        self.max_request_bytes
    }
}

/// The most of a response body we read.
const MAX_RESPONSE_BYTES: u64 = 1 << 20;

/// No connection or no answer in time may pass later; a certificate TLS refuses will not. The
/// message carries the whole source chain, so a TLS misconfiguration names its cause.
fn transport_failure(error: &ureq::Error) -> Failure {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        message.push_str(": ");
        message.push_str(&inner.to_string());
        source = inner.source();
    }
    let timeout = retry::is_timeout(&message);
    let certificate = message.to_ascii_lowercase().contains("certificate");
    let error_type = if timeout {
        ErrorType::Timeout
    } else if certificate {
        ErrorType::Tls
    } else {
        ErrorType::Connection
    };
    Failure {
        message: redact::untrusted(&message),
        error_type,
        retryable: !certificate || timeout,
        retry_after: None,
    }
}

fn final_failure(message: String) -> Failure {
    Failure {
        message,
        error_type: ErrorType::Encoding,
        retryable: false,
        retry_after: None,
    }
}

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
    compressor: &mut Compressor,
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
    let (bytes, encoding) = compressor.compress(body)?;
    Ok(Some(PreparedBody { bytes, encoding }))
}

/// What an error answer says: the message of its `google.rpc.Status` (protobuf or JSON, as
/// the OTLP/HTTP spec has collectors answer), else the body as text.
fn error_text(content_type: &str, body: &[u8]) -> String {
    use prost::Message as _;
    let message = if content_type.starts_with("application/json") {
        serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|status| status["message"].as_str().map(str::to_owned))
    } else if content_type.starts_with("application/x-protobuf") {
        crate::rpc_status::RpcStatus::decode(body)
            .ok()
            .map(|status| status.message)
    } else {
        None
    };
    message
        .filter(|message| !message.is_empty())
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned())
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
        // The OTLP/JSON int64 may be a string or a number; a metrics answer counts points.
        let partial = &value["partialSuccess"];
        let rejected = match &partial["rejectedLogRecords"] {
            serde_json::Value::Null => &partial["rejectedDataPoints"],
            rejected => rejected,
        };
        match rejected {
            serde_json::Value::String(text) => text.parse().unwrap_or(0),
            other => other.as_u64().unwrap_or(0),
        }
    } else {
        super::rejected_in(body)
    }
}

/// The HTTP client with the configured timeout, TLS and proxy (`proxy.rs`, not ureq's own
/// choice); clones share its pool. Non-2xx answers are answers (`answered` reads them), not
/// errors, and redirects are answers too: never followed.
fn http_client(settings: &Settings) -> Result<ureq::Agent, Error> {
    let proxy = super::proxy::for_endpoint(&settings.endpoint, &crate::environ::process)?;
    let config = ureq::Agent::config_builder()
        .timeout_global(Some(settings.timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .proxy(proxy.map(|(_, proxy)| proxy))
        .user_agent(concat!("zenml-otel/", env!("CARGO_PKG_VERSION")));
    #[cfg(feature = "tls")]
    let config = config.tls_config(tls_config(&settings.tls)?);
    Ok(config.build().new_agent())
}

/// The system's roots (rustls-platform-verifier), or only the custom CA when one is set; the
/// client identity, if any. Checked here, at construction: validation allows them with
/// https:// only, and ureq would panic on an identity rustls refuses.
#[cfg(feature = "tls")]
fn tls_config(tls: &crate::config::Tls) -> Result<ureq::tls::TlsConfig, Error> {
    use ureq::tls::{ClientCert, PrivateKey, RootCerts, TlsConfig};
    let mut config = TlsConfig::builder().root_certs(RootCerts::PlatformVerifier);
    if let Some(ca) = &tls.ca {
        let roots = certificates(ca).map_err(|e| {
            Error::config("certificate_file", "no usable PEM certificate").caused_by(e)
        })?;
        // A custom CA replaces the default roots, as the OTLP exporter spec and ZenML mean it.
        config = config.root_certs(RootCerts::new_with_certs(&roots));
    }
    if let Some((cert, key)) = &tls.identity {
        let not_identity = |e: String| {
            Error::config(
                "client_certificate_file",
                "the client certificate and key do not form a TLS identity",
            )
            .caused_by(e)
        };
        check_identity(cert, key).map_err(not_identity)?;
        let chain = certificates(cert).map_err(not_identity)?;
        let key = PrivateKey::from_pem(key).map_err(|e| not_identity(e.to_string()))?;
        config = config.client_cert(Some(ClientCert::new_with_certs(&chain, key)));
    }
    Ok(config.build())
}

/// Every certificate in a PEM bundle; an error if there is none.
#[cfg(feature = "tls")]
fn certificates(pem: &[u8]) -> Result<Vec<ureq::tls::Certificate<'static>>, String> {
    let mut certificates = Vec::new();
    for item in ureq::tls::parse_pem(pem) {
        if let ureq::tls::PemItem::Certificate(certificate) = item.map_err(|e| e.to_string())? {
            certificates.push(certificate);
        }
    }
    if certificates.is_empty() {
        return Err("no PEM CERTIFICATE block".into());
    }
    Ok(certificates)
}

/// What ureq does with the identity when it first connects (and `expect`s to work): rustls,
/// with ureq's ring provider, accepting the key for the chain.
#[cfg(feature = "tls")]
fn check_identity(cert: &[u8], key: &[u8]) -> Result<(), String> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| e.to_string())?;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_client_auth_cert(chain, key)
        .map(drop)
        .map_err(|e| e.to_string())
}
