//! The transports a sender exports batches with, one module per protocol (each behind its
//! cargo feature). Requests are cut here by bytes (`max_export_batch_bytes`) and sent until
//! delivered or final (`send_until_final`); a transport encodes and sends one attempt.

#[cfg(not(any(feature = "http-proto", feature = "grpc")))]
compile_error!(
    "zenml-otel needs a transport: enable the `http-proto` (default) or the `grpc` feature"
);

#[cfg(feature = "grpc")]
mod grpc;
#[cfg(feature = "http-proto")]
mod http;

use std::sync::Arc;

use crate::config::{missing_feature, Protocol, Settings};
use crate::pipeline::retry::{Failure, Retry};
use crate::pipeline::{limit, Export, Exporters, QueuedRecord};
use crate::Error;

/// How one attempt at a request ended.
pub(super) enum Sent {
    Done(Result<u64, Failure>),
    /// Larger than the limit, or refused by the collector as too large: to be split.
    TooLarge,
}

/// What a transport does with one request: encode it and send it once.
pub(super) trait Lane {
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
/// or RESOURCE_EXHAUSTED without `RetryInfo`), down to single records.
fn send_until_final<'r, L: Lane>(
    lane: &mut L,
    records: &mut [QueuedRecord],
    settle: &mut dyn FnMut(usize, Result<u64, String>),
    retry: &dyn Fn() -> Retry<'r>,
) {
    let mut attempts = retry();
    let result = loop {
        match lane.send(records, &attempts) {
            Sent::TooLarge if records.len() > 1 => {
                drop(attempts);
                let (first, second) = records.split_at_mut(records.len() / 2);
                send_until_final(lane, first, settle, retry);
                return send_until_final(lane, second, settle, retry);
            }
            Sent::TooLarge => {
                break Err(format!(
                    "one record's request is larger than max_export_batch_bytes ({}) or than \
                     the collector takes",
                    lane.max_request_bytes()
                ))
            }
            Sent::Done(Err(failure)) if attempts.again(&failure) => continue,
            Sent::Done(result) => break result.map_err(|f| f.message),
        }
    };
    settle(records.len(), result);
}

/// One exporter: each sender thread of the pipeline owns one; they share one HTTP client (one
/// connection pool) or one gRPC runtime.
#[derive(Debug)]
pub(crate) struct Transport {
    kind: Kind,
    max_request_bytes: usize,
}

#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // one per sender thread, built once
enum Kind {
    #[cfg(feature = "http-proto")]
    Http(http::HttpLane),
    #[cfg(feature = "grpc")]
    Grpc(grpc::GrpcLane),
}

/// The configured protocol's exporters, for `pipeline::start`.
pub(crate) fn exporters() -> Exporters {
    Box::new(|settings, lanes| {
        let transports = Transport::build(settings, lanes)?;
        Ok(transports
            .into_iter()
            .map(|transport| Box::new(transport) as Box<dyn Export>)
            .collect())
    })
}

impl Export for Transport {
    fn export<'r>(
        &mut self,
        records: &mut [QueuedRecord],
        settle: &mut dyn FnMut(usize, Result<u64, String>),
        retry: &dyn Fn() -> Retry<'r>,
    ) {
        Transport::export(self, records, settle, retry);
    }

    fn shutdown(&mut self) {
        Transport::shutdown(self);
    }
}

impl Transport {
    /// Builds `lanes` transports that can export concurrently.
    pub(crate) fn build(settings: &Settings, lanes: usize) -> Result<Vec<Self>, Error> {
        let kinds: Vec<Kind> = match settings.protocol {
            #[cfg(feature = "grpc")]
            Protocol::Grpc => grpc::GrpcLane::build(settings, lanes)?
                .into_iter()
                .map(Kind::Grpc)
                .collect(),
            #[cfg(feature = "http-proto")]
            Protocol::HttpProtobuf | Protocol::HttpJson => http::HttpLane::build(settings, lanes)?
                .into_iter()
                .map(Kind::Http)
                .collect(),
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
        for range in limit::requests(records, self.max_request_bytes) {
            let request = &mut records[range];
            match &mut self.kind {
                #[cfg(feature = "http-proto")]
                Kind::Http(lane) => send_until_final(lane, request, settle, retry),
                #[cfg(feature = "grpc")]
                Kind::Grpc(lane) => send_until_final(lane, request, settle, retry),
            }
        }
    }

    /// Nothing to do: reqwest's pool and tonic's channel close when dropped.
    pub(crate) fn shutdown(&mut self) {}
}
