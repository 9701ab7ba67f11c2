//! OTLP/gRPC, ours end to end as OTLP/HTTP is: a batch is encoded once as one request (a
//! `ResourceLogs` per run, `protobuf.rs`) and sent as it is through tonic's client with a
//! pass-through codec, on a tokio runtime the crate owns (tonic needs one; users may have
//! none). Retries, `RetryInfo`, splitting and the order of a run's requests are the batching's,
//! as over HTTP; tonic compresses.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf as _, BufMut as _};
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use super::protobuf::Encoder as RequestEncoder;
use super::{Sent, Transport};
use crate::batch::retry::{ErrorType, Failure, Retry};
use crate::batch::QueuedRecord;
use crate::config::{Compression, Settings};
use crate::Error;

/// The one method of OTLP's logs service.
const EXPORT_PATH: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";

/// One sender's OTLP/gRPC exporter; the lanes share one channel (one HTTP/2 connection) and
/// one runtime.
#[derive(Debug)]
pub(super) struct GrpcTransport {
    client: tonic::client::Grpc<Channel>,
    /// A one-worker runtime the crate owns: tonic's connection is driven there; each sender
    /// `block_on`s its own request.
    runtime: Arc<tokio::runtime::Runtime>,
    /// The configured headers, as gRPC metadata.
    metadata: MetadataMap,
    encoder: RequestEncoder,
    timeout: Duration,
    endpoint: String,
    max_request_bytes: usize,
    /// The method called: `LogsService/Export`, or another signal's (`with_path`).
    path: &'static str,
}

impl GrpcTransport {
    /// `lanes` exporters on one runtime and channel.
    pub(super) fn build(settings: &Settings, lanes: usize) -> Result<Vec<Self>, Error> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .thread_name("zenml-otel-grpc")
            .build()
            .map_err(|e| Error::export("cannot start the gRPC runtime").caused_by(e))?;
        let runtime = Arc::new(runtime);
        // A lazy channel registers with the runtime it is created in.
        let channel = {
            let _entered = runtime.enter();
            let endpoint = endpoint(settings)?;
            #[cfg(target_os = "linux")]
            let channel = endpoint.connect_with_connector_lazy(super::quickack::connector());
            #[cfg(not(target_os = "linux"))]
            let channel = endpoint.connect_lazy();
            channel
        };
        let mut client = tonic::client::Grpc::new(channel);
        match settings.compression {
            Compression::None => {}
            Compression::Gzip => client = client.send_compressed(CompressionEncoding::Gzip),
            #[cfg(feature = "zstd")]
            Compression::Zstd => client = client.send_compressed(CompressionEncoding::Zstd),
            #[cfg(not(feature = "zstd"))]
            Compression::Zstd => {
                return Err(Error::config(
                    "compression",
                    crate::config::missing_feature("zstd"),
                ))
            }
        }
        let metadata = metadata(settings)?;
        Ok((0..lanes)
            .map(|_| Self {
                client: client.clone(),
                runtime: Arc::clone(&runtime),
                metadata: metadata.clone(),
                encoder: RequestEncoder::default(),
                timeout: settings.timeout,
                endpoint: settings.endpoint.clone(),
                max_request_bytes: settings.max_request_bytes,
                path: EXPORT_PATH,
            })
            .collect())
    }

    /// This transport calling another signal's `Export` (the layer's metrics).
    pub(super) fn with_path(mut self, path: &'static str) -> Self {
        self.path = path;
        self
    }

    /// One call with a request of another signal, already encoded, within `timeout`: `Ok`
    /// with how many items the collector rejected.
    pub(super) fn send_encoded(
        &mut self,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<u64, Failure> {
        match self.call(body, timeout) {
            Ok(response) => Ok(super::rejected_in(&response)),
            Err(status) => match self.failed(&status) {
                Sent::Done(Err(failure)) => Err(failure),
                _ => Err(Failure {
                    message: format!(
                        "the collector answered {:?} to {}: the request is too large",
                        status.code(),
                        crate::redact::url(&self.endpoint)
                    ),
                    error_type: ErrorType::Grpc(status.code() as i32),
                    retryable: false,
                    retry_after: None,
                }),
            },
        }
    }

    /// One call of `LogsService/Export` with an encoded request, within `timeout`; the
    /// response's bytes.
    fn call(&mut self, body: Vec<u8>, timeout: Duration) -> Result<Vec<u8>, Status> {
        let mut request = tonic::Request::new(body);
        *request.metadata_mut() = self.metadata.clone();
        request.set_timeout(timeout);
        let client = &mut self.client;
        let path = self.path;
        self.runtime
            .block_on(async move {
                // The channel's own timeout covers the request; this also bounds connecting.
                tokio::time::timeout(timeout, async {
                    client
                        .ready()
                        .await
                        .map_err(|e| Status::unavailable(format!("{e}: {}", sources(&e))))?;
                    let path = http::uri::PathAndQuery::from_static(path);
                    client.unary(request, path, PassThrough).await
                })
                .await
                .unwrap_or_else(|_| Err(Status::deadline_exceeded("the export timed out")))
            })
            .map(tonic::Response::into_inner)
    }

    /// What a gRPC status means for the request: too large (split it), retryable (with the
    /// server's `RetryInfo` delay) or final. The OTLP spec's retryable codes; RESOURCE_EXHAUSTED
    /// only with `RetryInfo` — without it, like OUT_OF_RANGE (a message over the server's size
    /// limit), the same bytes cannot pass, their halves may.
    fn failed(&self, status: &Status) -> Sent {
        let retry_after = crate::rpc_status::retry_delay(status.details());
        let too_large = matches!(status.code(), Code::OutOfRange)
            || (status.code() == Code::ResourceExhausted && retry_after.is_none());
        if too_large {
            return Sent::TooLarge;
        }
        // The server's words, escaped and bounded; the endpoint without userinfo.
        let message = format!(
            "the collector answered {:?} to {}: {}",
            status.code(),
            crate::redact::url(&self.endpoint),
            crate::redact::untrusted(&format!("{}{}", status.message(), sources(status)))
        );
        // A certificate TLS refuses stays refused, whatever code the transport gave it.
        let retryable = (retryable_code(status.code(), retry_after.is_some())
            || connection_lost(status))
            && !message.to_ascii_lowercase().contains("certificate");
        Sent::Done(Err(Failure {
            message,
            error_type: ErrorType::Grpc(status.code() as i32),
            retryable,
            retry_after,
        }))
    }
}

impl Transport for GrpcTransport {
    fn send(&mut self, records: &mut [QueuedRecord], attempts: &Retry<'_>) -> Sent {
        let mut body = Vec::with_capacity(records.len() * 256);
        self.encoder.encode(records, &mut body);
        if body.len() > self.max_request_bytes {
            return Sent::TooLarge;
        }
        if let Err(failure) = attempts.wait_turn() {
            return Sent::Done(Err(failure));
        }
        match self.call(body, attempts.attempt_timeout(self.timeout)) {
            Ok(response) => Sent::Done(Ok(super::rejected_in(&response))),
            Err(status) => self.failed(&status),
        }
    }

    fn max_request_bytes(&self) -> usize {
        self.max_request_bytes
    }
}

/// The OTLP spec's retryable gRPC codes.
fn retryable_code(code: Code, retry_info: bool) -> bool {
    match code {
        Code::Unavailable
        | Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::DataLoss => true,
        Code::ResourceExhausted => retry_info,
        _ => false,
    }
}

/// Whether the connection, not the collector, ended the call: the collector closed it
/// gracefully (HTTP/2 GOAWAY with NO_ERROR, as one shutting down for a restart does), or the
/// connection failed while the call was open (reset, or closed: h2 reports the EOF as a broken
/// pipe). tonic reports those as INTERNAL and UNKNOWN, gRPC's own clients (grpc-go) as
/// UNAVAILABLE, which OTLP retries — and OTLP/HTTP retries a connection lost mid-request too.
/// A collector that took the request and died before answering gets it again: at least once,
/// as over HTTP.
fn connection_lost(status: &Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(error) = source {
        if let Some(h2) = error.downcast_ref::<h2::Error>() {
            return h2.is_io() || (h2.is_go_away() && h2.reason() == Some(h2::Reason::NO_ERROR));
        }
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::{
                BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof,
            };
            return matches!(
                io.kind(),
                BrokenPipe | ConnectionAborted | ConnectionReset | UnexpectedEof
            );
        }
        source = error.source();
    }
    false
}

/// The causes behind an error, `": "`-separated: tonic's own message ("transport error") leaves
/// a refused certificate a mystery.
fn sources(error: &dyn std::error::Error) -> String {
    let mut text = String::new();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// The channel's endpoint: the URL, timeouts, and TLS for `https://`.
fn endpoint(settings: &Settings) -> Result<Endpoint, Error> {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity};

    let invalid = |e| Error::config("endpoint", "not a gRPC endpoint").caused_by(e);
    let endpoint = Endpoint::from_shared(settings.endpoint.clone())
        .map_err(invalid)?
        .timeout(settings.timeout)
        .connect_timeout(settings.timeout);
    if !settings.endpoint.starts_with("https://") {
        return Ok(endpoint);
    }
    let tls = match &settings.tls.ca {
        // A custom CA replaces the default roots.
        Some(ca) => ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)),
        None => ClientTlsConfig::new().with_enabled_roots(),
    };
    let tls = match &settings.tls.identity {
        Some((cert, key)) => tls.identity(Identity::from_pem(cert, key)),
        None => tls,
    };
    endpoint.tls_config(tls).map_err(invalid)
}

/// The configured headers as gRPC metadata (names are lowercase, values ASCII there).
fn metadata(settings: &Settings) -> Result<MetadataMap, Error> {
    let mut metadata = MetadataMap::new();
    for (name, value) in &settings.headers {
        let key = MetadataKey::from_bytes(name.as_str().as_bytes());
        let value = MetadataValue::try_from(value.as_bytes());
        match (key, value) {
            (Ok(key), Ok(mut value)) => {
                value.set_sensitive(true);
                metadata.insert(key, value);
            }
            _ => {
                return Err(Error::config(
                    "headers",
                    format!("`{name}` cannot be sent as gRPC metadata"),
                ))
            }
        }
    }
    Ok(metadata)
}

/// A codec that sends the request's bytes as they are and returns the response's: the request
/// is already OTLP protobuf (`protobuf.rs`).
#[derive(Debug, Clone, Copy, Default)]
struct PassThrough;

impl Codec for PassThrough {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = PassThrough;
    type Decoder = PassThrough;

    fn encoder(&mut self) -> Self::Encoder {
        PassThrough
    }

    fn decoder(&mut self) -> Self::Decoder {
        PassThrough
    }
}

impl Encoder for PassThrough {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for PassThrough {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let mut bytes = vec![0; src.remaining()];
        src.copy_to_slice(&mut bytes);
        Ok(Some(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_codes_are_classified_as_the_spec_says() {
        for code in [
            Code::Unavailable,
            Code::DeadlineExceeded,
            Code::Cancelled,
            Code::Aborted,
            Code::DataLoss,
        ] {
            assert!(retryable_code(code, false), "{code:?}");
        }
        assert!(retryable_code(Code::ResourceExhausted, true));
        for code in [
            Code::ResourceExhausted,
            Code::InvalidArgument,
            Code::Unauthenticated,
            Code::PermissionDenied,
            Code::Unknown,
            Code::Internal,
        ] {
            assert!(!retryable_code(code, false), "{code:?}");
        }
    }
}
