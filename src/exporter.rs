//! The transports a sender exports batches with, one module per protocol (each behind its
//! cargo feature). Requests are cut here by bytes (`max_export_batch_bytes`); each transport
//! sends them until delivered or final.

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
use crate::pipeline::retry::Retry;
use crate::pipeline::{limit, Export, Exporters, QueuedRecord};
use crate::Error;

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
        #[cfg(feature = "grpc")]
        #[allow(irrefutable_let_patterns)] // without `http-proto`
        if let Kind::Grpc(_) = self.kind {
            grpc::GrpcLane::add_context_attributes(records);
        }
        for range in limit::requests(records, self.max_request_bytes) {
            let request = &mut records[range];
            match &mut self.kind {
                #[cfg(feature = "http-proto")]
                Kind::Http(lane) => lane.export(request, settle, retry),
                #[cfg(feature = "grpc")]
                Kind::Grpc(lane) => lane.export(request, settle, retry),
            }
        }
    }

    pub(crate) fn shutdown(&mut self) {
        match &mut self.kind {
            #[cfg(feature = "http-proto")]
            Kind::Http(_) => {} // reqwest closes its pool when dropped
            #[cfg(feature = "grpc")]
            Kind::Grpc(lane) => lane.shutdown(),
        }
    }
}
