//! OTLP/gRPC: opentelemetry-otlp's tonic client and its own encoding, one request per run in a
//! batch, on a tokio runtime the crate owns (tonic needs one; users may have none).

use std::sync::Arc;

use opentelemetry::logs::LogRecord as _;
use opentelemetry::InstrumentationScope;
use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
use opentelemetry_sdk::logs::{LogBatch, LogExporter as _};

use http::{HeaderName, HeaderValue};

use crate::config::{Compression, Settings, HEADER_VARIABLES};
use crate::pipeline::encode::DEFAULT_SCOPE;
use crate::pipeline::retry::{self, Failure, Retry};
use crate::pipeline::{same_run, QueuedRecord};
use crate::Error;

/// One sender's OTLP/gRPC exporter.
#[derive(Debug)]
pub(super) struct GrpcLane {
    exporter: opentelemetry_otlp::LogExporter,
    /// A one-worker runtime the crate owns, shared by the senders (tonic's connections are
    /// driven there; each sender `block_on`s its own export).
    runtime: Arc<tokio::runtime::Runtime>,
    /// The scope records without a target are exported under (the layer always sets one).
    scope: InstrumentationScope,
}

impl GrpcLane {
    /// `lanes` exporters on one runtime.
    pub(super) fn build(settings: &Settings, lanes: usize) -> Result<Vec<Self>, Error> {
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
                    exporter: grpc_exporter(settings)?,
                    runtime: Arc::clone(&runtime),
                    scope: InstrumentationScope::builder(DEFAULT_SCOPE).build(),
                })
            })
            .collect()
    }

    /// opentelemetry-otlp encodes these records itself: give them their context's attributes
    /// (once: it retries internally, on the same batch).
    pub(super) fn add_context_attributes(records: &mut [QueuedRecord]) {
        for queued in records.iter_mut() {
            for (key, value) in queued.context.attributes() {
                queued.record.add_attribute(key.clone(), value.clone());
            }
        }
    }

    /// One request's records, a request per run (the client carries one resource).
    pub(super) fn export<'r>(
        &mut self,
        request: &[QueuedRecord],
        settle: &mut dyn FnMut(usize, Result<u64, String>),
        retry: &dyn Fn() -> Retry<'r>,
    ) {
        let mut rest = request;
        while !rest.is_empty() {
            let (group, tail) = rest.split_at(same_run(rest));
            self.export_group(group, settle, retry);
            rest = tail;
        }
    }

    /// One run's records as one OTLP/gRPC request, sent until delivered or its failure is final;
    /// halved when the server refuses it as too large (OUT_OF_RANGE, or RESOURCE_EXHAUSTED
    /// without `RetryInfo`), down to single records.
    fn export_group<'r>(
        &mut self,
        group: &[QueuedRecord],
        settle: &mut dyn FnMut(usize, Result<u64, String>),
        retry: &dyn Fn() -> Retry<'r>,
    ) {
        let mut attempts = retry();
        let result = loop {
            match self.send(group, &attempts) {
                Err(failure)
                    if group.len() > 1 && retry::too_large_grpc_error(&failure.message) =>
                {
                    drop(attempts);
                    let (first, second) = group.split_at(group.len() / 2);
                    self.export_group(first, settle, retry);
                    return self.export_group(second, settle, retry);
                }
                Err(failure) if attempts.again(&failure) => continue,
                result => break result,
            }
        };
        settle(group.len(), result.map_err(|f| f.message));
    }

    /// Sends one run's records as one OTLP/gRPC request (opentelemetry-otlp's own encoding),
    /// once it is this batch's turn.
    fn send(&mut self, group: &[QueuedRecord], attempts: &Retry<'_>) -> Result<u64, Failure> {
        let batch: Vec<_> = group
            .iter()
            .map(|queued| (&queued.record, &self.scope))
            .collect();
        attempts.wait_turn()?;
        self.exporter.set_resource(&group[0].run().resource);
        let result = self
            .runtime
            .block_on(self.exporter.export(LogBatch::new(&batch)));
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

    pub(super) fn shutdown(&mut self) {
        let _ = self.exporter.shutdown();
    }
}

fn grpc_exporter(settings: &Settings) -> Result<opentelemetry_otlp::LogExporter, Error> {
    use opentelemetry_otlp::tonic_types::transport::{Certificate, ClientTlsConfig, Identity};

    let precedence = HeaderPrecedence::new(settings);
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

fn compression(compression: Compression) -> Option<opentelemetry_otlp::Compression> {
    match compression {
        Compression::None => None,
        Compression::Gzip => Some(opentelemetry_otlp::Compression::Gzip),
        Compression::Zstd => Some(opentelemetry_otlp::Compression::Zstd),
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
