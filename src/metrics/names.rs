//! The names the layer's metrics go by, fixed (dashboards and alerts rely on them): the
//! `otel.sdk.*` SDK self-observability metrics of the semantic conventions
//! (<https://github.com/open-telemetry/semantic-conventions/blob/main/docs/otel/sdk-metrics.md>,
//! development status), with the instruments, units, attributes and descriptions
//! opentelemetry_sdk 0.33 uses for the three it emits (`otel.sdk.log.created`,
//! `otel.sdk.processor.log.processed`, `otel.sdk.processor.log.queue.capacity`); the crate's
//! own `zenml_otel.*` for what the conventions do not cover (the spool, truncated records,
//! live runs); and the `error.type` values, documented in docs/metrics.md.

use std::borrow::Cow;

use crate::batch::retry::ErrorType;
use crate::batch::DropReason;
use crate::config::Protocol;

/// How a metric is aggregated on the wire: every one is a cumulative `Sum`, so a lost
/// request loses no information (the next one carries the totals).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Instrument {
    /// A monotonic sum (the conventions' Counter).
    Counter,
    /// A non-monotonic sum (the conventions' UpDownCounter).
    UpDownCounter,
}

/// A metric's fixed description.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MetricName {
    pub(crate) name: &'static str,
    pub(crate) instrument: Instrument,
    pub(crate) unit: &'static str,
    pub(crate) description: &'static str,
}

const fn metric(
    name: &'static str,
    instrument: Instrument,
    unit: &'static str,
    description: &'static str,
) -> MetricName {
    MetricName {
        name,
        instrument,
        unit,
        description,
    }
}

use Instrument::{Counter, UpDownCounter};

/// `stats().emitted`. No attributes, as opentelemetry_sdk's.
pub(crate) const LOG_CREATED: MetricName = metric(
    "otel.sdk.log.created",
    Counter,
    "{log_record}",
    "The number of log records submitted to the SDK.",
);
/// Records handed to an exporter (no `error.type`), and `stats().dropped` by reason (with
/// `error.type`).
pub(crate) const PROCESSOR_PROCESSED: MetricName = metric(
    "otel.sdk.processor.log.processed",
    Counter,
    "{log_record}",
    "The number of log records for which the processing has finished, either successful or \
     failed.",
);
pub(crate) const PROCESSOR_QUEUE_SIZE: MetricName = metric(
    "otel.sdk.processor.log.queue.size",
    UpDownCounter,
    "{log_record}",
    "The number of log records in the queue of a given instance of an SDK log processor.",
);
pub(crate) const PROCESSOR_QUEUE_CAPACITY: MetricName = metric(
    "otel.sdk.processor.log.queue.capacity",
    UpDownCounter,
    "{log_record}",
    "The maximum number of log records the queue of a given instance of an SDK log processor \
     can hold.",
);
pub(crate) const EXPORTER_INFLIGHT: MetricName = metric(
    "otel.sdk.exporter.log.inflight",
    UpDownCounter,
    "{log_record}",
    "The number of log records which were passed to the exporter, but that have not been \
     exported yet (neither successful, nor failed).",
);
/// `stats().exported` (no `error.type`), `stats().rejected` (`rejected`) and
/// `stats().failed` (by the class of the failure).
pub(crate) const EXPORTER_EXPORTED: MetricName = metric(
    "otel.sdk.exporter.log.exported",
    Counter,
    "{log_record}",
    "The number of log records for which the export has finished, either successful or failed.",
);
/// `stats().truncated`.
pub(crate) const TRUNCATED: MetricName = metric(
    "zenml_otel.log.truncated",
    Counter,
    "{log_record}",
    "Log records too large for any request, exported with their longest strings cut to fit \
     (also counted in their outcome).",
);
/// `stats().live_runs`.
pub(crate) const LIVE_RUNS: MetricName = metric(
    "zenml_otel.run.live",
    UpDownCounter,
    "{run}",
    "Distinct run/step/source contexts whose state is held now.",
);
/// `stats().recovered`.
pub(crate) const SPOOL_RECOVERED: MetricName = metric(
    "zenml_otel.spool.recovered",
    Counter,
    "{log_record}",
    "Log records a dead process left in the spool, sent by this one.",
);
/// `stats().spooled`.
pub(crate) const SPOOL_SPOOLED: MetricName = metric(
    "zenml_otel.spool.spooled",
    UpDownCounter,
    "{log_record}",
    "Log records only the spool holds now, to be sent again (or by the next start).",
);
/// `stats().unspooled`.
pub(crate) const SPOOL_UNSPOOLED: MetricName = metric(
    "zenml_otel.spool.unspooled",
    Counter,
    "{log_record}",
    "Log records the spool could not take (full, or the disk refused), kept in memory only.",
);
/// `stats().spool_torn`.
pub(crate) const SPOOL_TORN: MetricName = metric(
    "zenml_otel.spool.torn",
    Counter,
    "{segment}",
    "Segments of a dead process's spool that ended torn or corrupt, or could not be read.",
);
/// Bytes of the spool's files now (with a spool only).
pub(crate) const SPOOL_SIZE: MetricName = metric(
    "zenml_otel.spool.size",
    UpDownCounter,
    "By",
    "Bytes the spool's segment files take on disk.",
);

/// The scope every metric is under: the crate.
pub(crate) const SCOPE: &str = "zenml-otel";

pub(crate) const ERROR_TYPE: &str = "error.type";
pub(crate) const COMPONENT_TYPE: &str = "otel.component.type";
pub(crate) const COMPONENT_NAME: &str = "otel.component.name";
pub(crate) const SERVER_ADDRESS: &str = "server.address";
pub(crate) const SERVER_PORT: &str = "server.port";

/// The pipeline's `otel.component.type`: one bounded queue, batches cut by size and time.
pub(crate) const PROCESSOR_TYPE: &str = "batching_log_processor";

/// The exporter's `otel.component.type` for `protocol`.
pub(crate) fn exporter_type(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::HttpProtobuf => "otlp_http_log_exporter",
        Protocol::HttpJson => "otlp_http_json_log_exporter",
        Protocol::Grpc => "otlp_grpc_log_exporter",
    }
}

/// `error.type` of records the collector rejected in a partial success, as the conventions
/// name it when no reason is given.
pub(crate) const REJECTED: &str = "rejected";

/// `error.type` of `otel.sdk.processor.log.processed` for a drop: the conventions'
/// `queue_full` and `already_shutdown`, and the crate's own `shutdown_deadline`.
pub(crate) fn drop_reason(reason: DropReason) -> &'static str {
    match reason {
        DropReason::QueueFull => "queue_full",
        DropReason::AlreadyShutdown => "already_shutdown",
        DropReason::ShutdownDeadline => "shutdown_deadline",
    }
}

/// `error.type` of `otel.sdk.exporter.log.exported` for a failed export: the HTTP status
/// (`"503"`), the gRPC status code name (`"UNAVAILABLE"`), or the crate's own `timeout`,
/// `connection`, `tls`, `too_large`, `encoding`, `panic`, `shutdown_deadline`.
pub(crate) fn error_type(error: ErrorType) -> Cow<'static, str> {
    match error {
        ErrorType::Http(status) => Cow::Owned(status.to_string()),
        ErrorType::Grpc(code) => Cow::Borrowed(grpc_code(code)),
        ErrorType::Timeout => Cow::Borrowed("timeout"),
        ErrorType::Connection => Cow::Borrowed("connection"),
        ErrorType::Tls => Cow::Borrowed("tls"),
        ErrorType::TooLarge => Cow::Borrowed("too_large"),
        ErrorType::Encoding => Cow::Borrowed("encoding"),
        ErrorType::Panic => Cow::Borrowed("panic"),
        ErrorType::ShutdownDeadline => Cow::Borrowed("shutdown_deadline"),
    }
}

/// gRPC's own names of its status codes.
fn grpc_code(code: i32) -> &'static str {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    usize::try_from(code)
        .ok()
        .and_then(|i| NAMES.get(i))
        .copied()
        .unwrap_or("UNKNOWN")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_types_are_low_cardinality_names() {
        assert_eq!(error_type(ErrorType::Http(503)), "503");
        assert_eq!(error_type(ErrorType::Grpc(14)), "UNAVAILABLE");
        assert_eq!(error_type(ErrorType::Grpc(16)), "UNAUTHENTICATED");
        assert_eq!(error_type(ErrorType::Grpc(99)), "UNKNOWN");
        assert_eq!(drop_reason(DropReason::QueueFull), "queue_full");
        assert_eq!(drop_reason(DropReason::AlreadyShutdown), "already_shutdown");
    }
}
