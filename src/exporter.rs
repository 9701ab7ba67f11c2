//! The transports a sender exports batches with, one module per protocol (each behind its
//! cargo feature), and what they share: header precedence and opentelemetry-otlp's retry
//! policy. Requests are cut here by bytes (`max_export_batch_bytes`); each transport sends
//! them until delivered or final.

#[cfg(not(any(feature = "http-proto", feature = "grpc")))]
compile_error!(
    "zenml-otel needs a transport: enable the `http-proto` (default) or the `grpc` feature"
);

#[cfg(feature = "grpc")]
mod grpc;
#[cfg(feature = "http-proto")]
mod http;

use std::sync::Arc;

use ::http::{HeaderName, HeaderValue};

use crate::config::{missing_feature, Protocol, Settings, HEADER_VARIABLES};
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
            Kind::Http(lane) => lane.shutdown(),
            #[cfg(feature = "grpc")]
            Kind::Grpc(lane) => lane.shutdown(),
        }
    }
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

    #[cfg(feature = "http-proto")]
    fn as_strings(&self) -> std::collections::HashMap<String, String> {
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

/// Retries bounded by the export timeout alone: the default policy stops after three retries
/// (about a second), which would fail a batch during a short collector restart although the
/// user allowed `export_timeout_millis` for it.
fn retry_policy() -> opentelemetry_otlp::RetryPolicy {
    opentelemetry_otlp::RetryPolicy::recommended().with_max_retries(usize::MAX)
}
