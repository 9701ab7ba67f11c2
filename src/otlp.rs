//! OTLP on the wire: the [`Export`] the senders use. A batch's records too large for any
//! request are truncated (`limit.rs`), the batch is cut into requests by bytes
//! (`max_export_batch_bytes`), each framed as one `ExportLogsServiceRequest` (`protobuf.rs`,
//! or `json.rs`) and sent until delivered or final (`send_until_final`) by the configured
//! protocol's transport (`http.rs`, `grpc.rs`, each behind its cargo feature), which sends one
//! attempt.

#[cfg(not(any(feature = "http-proto", feature = "grpc")))]
compile_error!(
    "zenml-otel needs a transport: enable the `http-proto` (default) or the `grpc` feature"
);

#[cfg(feature = "http-proto")]
mod compress;
#[cfg(feature = "grpc")]
mod grpc;
#[cfg(feature = "http-proto")]
mod http;
#[cfg(feature = "http-json")]
pub(crate) mod json;
mod limit;
pub(crate) mod protobuf;
#[cfg(feature = "http-proto")]
mod proxy;
#[cfg(all(feature = "grpc", target_os = "linux"))]
mod quickack;

use std::sync::Arc;

use crate::batch::retry::{ErrorType, Failure, Retry};
use crate::batch::{Export, Exporters, QueuedRecord, Settle};
use crate::config::{missing_feature, Protocol, Settings};
use crate::Error;

/// How one attempt at a request ended.
pub(super) enum Sent {
    Done(Result<u64, Failure>),
    /// Larger than the limit, or refused by the collector as too large: to be split.
    TooLarge,
}

/// What a protocol does with one request: frame it and send it once.
pub(super) trait Transport {
    /// Sends `records` as one request, once it is this batch's turn (`attempts.wait_turn()`).
    fn send(&mut self, records: &mut [QueuedRecord], attempts: &Retry<'_>) -> Sent;

    /// `max_export_batch_bytes`, for the error of a record no request can hold.
    fn max_request_bytes(&self) -> usize;
}

/// `partial_success.rejected_log_records` of an OTLP protobuf response, if any.
fn rejected_in(response: &[u8]) -> u64 {
    use prost::Message as _;
    opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse::decode(response)
        .ok()
        .and_then(|r| r.partial_success)
        .map_or(0, |p| p.rejected_log_records.max(0) as u64)
}

/// One request, sent until it is delivered or its failure is final; halved when it came out
/// larger than the limit or the collector refused it as too large (HTTP 413, gRPC OUT_OF_RANGE
/// or RESOURCE_EXHAUSTED without `RetryInfo`), down to single records. A panic anywhere on the
/// way (the transport's libraries, the retries' bookkeeping) ends the request as a retryable
/// failure, counted (or kept in the spool): never a sender thread lost with its records.
fn send_until_final<'r, T: Transport>(
    transport: &mut T,
    records: &mut [QueuedRecord],
    settle: &mut Settle<'_>,
    retry: &dyn Fn() -> Retry<'r>,
) {
    let attempts = std::panic::AssertUnwindSafe(|| attempt_until_final(transport, records, retry));
    match std::panic::catch_unwind(attempts).unwrap_or_else(|panic| Err(panicked(&*panic))) {
        Ok(Final::Split) => {
            let (first, second) = records.split_at_mut(records.len() / 2);
            send_until_final(transport, first, settle, retry);
            send_until_final(transport, second, settle, retry);
        }
        Ok(Final::Settled(result)) => settle(records, result),
        Err(failure) => settle(records, Err(failure)),
    }
}

/// How a request's attempts ended.
enum Final {
    Settled(Result<u64, Failure>),
    /// Too large: to be sent as two halves.
    Split,
}

fn attempt_until_final<'r, T: Transport>(
    transport: &mut T,
    records: &mut [QueuedRecord],
    retry: &dyn Fn() -> Retry<'r>,
) -> Result<Final, Failure> {
    let mut attempts = retry();
    loop {
        match send_once(transport, records, &attempts) {
            Sent::TooLarge if records.len() > 1 => return Ok(Final::Split),
            Sent::TooLarge => {
                return Err(Failure {
                    message: format!(
                        "one record's request is larger than max_export_batch_bytes ({}) or \
                         than the collector takes",
                        transport.max_request_bytes()
                    ),
                    error_type: ErrorType::TooLarge,
                    retryable: false,
                    retry_after: None,
                })
            }
            Sent::Done(Err(failure)) if attempts.again(&failure) => continue,
            Sent::Done(result) => return Ok(Final::Settled(result)),
        }
    }
}

/// One attempt. A panic in the transport's libraries (ureq panics when the OS refuses it a
/// thread for a host lookup) is a failed attempt like any other: retried, then counted.
fn send_once<T: Transport>(
    transport: &mut T,
    records: &mut [QueuedRecord],
    attempts: &Retry<'_>,
) -> Sent {
    let attempt = std::panic::AssertUnwindSafe(|| transport.send(records, attempts));
    std::panic::catch_unwind(attempt).unwrap_or_else(|panic| Sent::Done(Err(panicked(&*panic))))
}

/// A panic on a sender's path, as a retryable failure: the crate's fault, not the collector's
/// refusal.
fn panicked(panic: &(dyn std::any::Any + Send)) -> Failure {
    let what = crate::sync::panic_message(panic, "no message");
    Failure {
        message: format!("the exporter panicked: {what}"),
        error_type: ErrorType::Panic,
        retryable: true,
        retry_after: None,
    }
}

/// One exporter: each sender thread of the pipeline owns one; they share one HTTP client (one
/// connection pool) or one gRPC runtime.
#[derive(Debug)]
pub(crate) struct Exporter {
    kind: Kind,
    max_request_bytes: usize,
}

#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // one per sender thread, built once
enum Kind {
    #[cfg(feature = "http-proto")]
    Http(http::HttpTransport),
    #[cfg(feature = "grpc")]
    Grpc(grpc::GrpcTransport),
}

/// The configured protocol's exporters, for `batch::start`.
pub(crate) fn exporters() -> Exporters {
    Box::new(|settings, lanes| {
        let exporters = Exporter::build(settings, lanes)?;
        Ok(exporters
            .into_iter()
            .map(|exporter| Box::new(exporter) as Box<dyn Export>)
            .collect())
    })
}

impl Exporter {
    /// Builds `lanes` transports that can export concurrently.
    pub(crate) fn build(settings: &Settings, lanes: usize) -> Result<Vec<Self>, Error> {
        let kinds: Vec<Kind> = match settings.protocol {
            #[cfg(feature = "grpc")]
            Protocol::Grpc => grpc::GrpcTransport::build(settings, lanes)?
                .into_iter()
                .map(Kind::Grpc)
                .collect(),
            #[cfg(feature = "http-proto")]
            Protocol::HttpProtobuf | Protocol::HttpJson => {
                http::HttpTransport::build(settings, lanes)?
                    .into_iter()
                    .map(Kind::Http)
                    .collect()
            }
            // The config's validation refuses a protocol whose feature is off.
            #[allow(unreachable_patterns)]
            other => {
                let feature = crate::config::feature_of(other);
                return Err(Error::config("protocol", missing_feature(feature)));
            }
        };
        Ok(kinds
            .into_iter()
            .map(|kind| Self {
                kind,
                max_request_bytes: settings.max_request_bytes,
            })
            .collect())
    }
}

/// An exporter of another signal's requests (the layer's metrics, `src/metrics`): the logs'
/// transport code (client, TLS, proxy, headers as metadata, compression) built for that
/// signal's endpoint and headers, with connections of its own, so the logs never wait on it
/// nor it on them. No retries: each request is complete in itself.
#[derive(Debug)]
pub(crate) struct SignalExporter {
    kind: Kind,
}

impl SignalExporter {
    /// An exporter to `settings.endpoint` with `settings.headers`, calling `grpc_path` over
    /// gRPC.
    pub(crate) fn build(settings: &Settings, grpc_path: &'static str) -> Result<Self, Error> {
        let _ = grpc_path; // read by gRPC only
        let kind = match settings.protocol {
            #[cfg(feature = "grpc")]
            Protocol::Grpc => {
                let mut transports = grpc::GrpcTransport::build(settings, 1)?;
                Kind::Grpc(transports.remove(0).with_path(grpc_path))
            }
            #[cfg(feature = "http-proto")]
            Protocol::HttpProtobuf | Protocol::HttpJson => {
                let mut transports = http::HttpTransport::build(settings, 1)?;
                Kind::Http(transports.remove(0))
            }
            #[allow(unreachable_patterns)]
            other => {
                let feature = crate::config::feature_of(other);
                return Err(Error::config("protocol", missing_feature(feature)));
            }
        };
        Ok(Self { kind })
    }

    /// Whether a request goes as OTLP/JSON (else protobuf).
    pub(crate) fn json(&self) -> bool {
        match &self.kind {
            #[cfg(feature = "http-proto")]
            Kind::Http(http) => http.json(),
            #[cfg(feature = "grpc")]
            Kind::Grpc(_) => false,
        }
    }

    /// Sends one encoded request once, within `timeout`: `Ok` with how many items the
    /// collector rejected in a partial success.
    pub(crate) fn send(
        &mut self,
        body: Vec<u8>,
        timeout: std::time::Duration,
    ) -> Result<u64, Failure> {
        let send = std::panic::AssertUnwindSafe(|| match &mut self.kind {
            #[cfg(feature = "http-proto")]
            Kind::Http(http) => http.send_encoded(body, timeout),
            #[cfg(feature = "grpc")]
            Kind::Grpc(grpc) => grpc.send_encoded(body, timeout),
        });
        std::panic::catch_unwind(send).unwrap_or_else(|panic| Err(panicked(&*panic)))
    }
}

impl Export for Exporter {
    /// Truncates what no request can hold, cuts the batch into requests of at most
    /// `max_request_bytes` (encoded), and sends each until delivered or final.
    fn export<'r>(
        &mut self,
        records: &mut [QueuedRecord],
        settle: &mut Settle<'_>,
        retry: &dyn Fn() -> Retry<'r>,
    ) -> u64 {
        let truncated = limit::fit_oversized(records, self.max_request_bytes);
        // Stable: each run's records keep their order.
        records.sort_by_key(|queued| Arc::as_ptr(queued.run()) as usize);
        for range in limit::requests(records, self.max_request_bytes) {
            let request = &mut records[range];
            match &mut self.kind {
                #[cfg(feature = "http-proto")]
                Kind::Http(http) => send_until_final(http, request, settle, retry),
                #[cfg(feature = "grpc")]
                Kind::Grpc(grpc) => send_until_final(grpc, request, settle, retry),
            }
        }
        truncated
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::batch::retry::{Outage, Stop};

    /// Panics on its first `panics` attempts, then delivers.
    struct Panicky {
        panics: usize,
        attempts: usize,
    }

    impl Transport for Panicky {
        fn send(&mut self, _: &mut [QueuedRecord], _: &Retry<'_>) -> Sent {
            self.attempts += 1;
            if self.attempts <= self.panics {
                panic!("no thread for the lookup");
            }
            Sent::Done(Ok(0))
        }

        fn max_request_bytes(&self) -> usize {
            usize::MAX
        }
    }

    fn outcome(panics: usize, window: Duration) -> (usize, Vec<Result<u64, String>>) {
        let (outage, stop) = (Outage::default(), Stop::default());
        let mut transport = Panicky {
            panics,
            attempts: 0,
        };
        let mut settled = Vec::new();
        send_until_final(
            &mut transport,
            &mut [],
            &mut |_, result| settled.push(result.map_err(|f| f.message)),
            &|| Retry::new(&outage, 0, &stop, window),
        );
        (transport.attempts, settled)
    }

    #[test]
    fn a_panic_in_the_retries_bookkeeping_settles_the_request_as_retryable() {
        let mut transport = Panicky {
            panics: 0,
            attempts: 0,
        };
        let mut settled = Vec::new();
        send_until_final(
            &mut transport,
            &mut [],
            &mut |_, result| settled.push(result.map_err(|f| (f.retryable, f.message))),
            &|| panic!("a clock overflowed"),
        );
        match &settled[..] {
            [Err((true, message))] => assert!(message.contains("a clock overflowed"), "{message}"),
            other => panic!("one retryable failure expected: {other:?}"),
        }
    }

    #[test]
    fn a_panicking_transport_is_a_retried_failure_not_a_lost_sender() {
        let (attempts, settled) = outcome(1, Duration::from_secs(5));
        assert_eq!(
            (attempts, settled),
            (2, vec![Ok(0)]),
            "retried, then delivered"
        );
        let (_, settled) = outcome(usize::MAX, Duration::from_millis(300));
        match &settled[..] {
            [Err(message)] => assert!(message.contains("no thread for the lookup"), "{message}"),
            other => panic!("one final failure expected: {other:?}"),
        }
    }
}
