//! One metrics request from one observation of the pipeline (`batch::Observation`): an
//! `ExportMetricsServiceRequest` of opentelemetry-proto's types under the process's resource,
//! every metric a cumulative `Sum` of integer points (names in `names.rs`), encoded by prost
//! (or, over OTLP/JSON, by opentelemetry-proto's serde).

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Metric, NumberDataPoint, ResourceMetrics,
    ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::names::{self, Instrument, MetricName};
use crate::batch::Observation;

/// What every request of one layer shares: its resource and the components' attributes.
#[derive(Debug, Clone)]
pub(crate) struct Encoder {
    /// The process's resource: `service.*`, `deployment.environment(.name)`, the SDK's and the
    /// configured attributes; no run's.
    pub(crate) resource: Vec<KeyValue>,
    /// `otel.component.type` and `.name` of the batching processor.
    pub(crate) processor: Vec<KeyValue>,
    /// Those of the exporter, with `server.address` and `server.port`.
    pub(crate) exporter: Vec<KeyValue>,
    /// When the layer started: every sum counts from there.
    pub(crate) start_nanos: u64,
}

impl Encoder {
    /// The request for `observed`, stamped `now_nanos`.
    pub(crate) fn request(
        &self,
        observed: &Observation,
        now_nanos: u64,
    ) -> ExportMetricsServiceRequest {
        let stats = &observed.stats;
        let point = |attributes: Vec<KeyValue>, value: u64| NumberDataPoint {
            attributes,
            start_time_unix_nano: self.start_nanos,
            time_unix_nano: now_nanos,
            value: Some(number_data_point::Value::AsInt(
                i64::try_from(value).unwrap_or(i64::MAX),
            )),
            ..NumberDataPoint::default()
        };
        let error = |value: &str, of: &[KeyValue]| {
            let mut attributes = vec![string(names::ERROR_TYPE, value)];
            attributes.extend_from_slice(of);
            attributes
        };
        let processed = std::iter::once(point(self.processor.clone(), observed.processed)).chain(
            observed
                .dropped
                .iter()
                .map(|&(reason, n)| point(error(names::drop_reason(reason), &self.processor), n)),
        );
        let exported = [
            point(self.exporter.clone(), stats.exported),
            point(error(names::REJECTED, &self.exporter), stats.rejected),
        ]
        .into_iter()
        .chain(
            observed
                .failed
                .iter()
                .map(|&(class, n)| point(error(&names::error_type(class), &self.exporter), n)),
        );
        let mut metrics = vec![
            sum(&names::LOG_CREATED, vec![point(Vec::new(), stats.emitted)]),
            sum(&names::PROCESSOR_PROCESSED, processed.collect()),
            sum(
                &names::PROCESSOR_QUEUE_SIZE,
                vec![point(self.processor.clone(), observed.queued)],
            ),
            sum(
                &names::PROCESSOR_QUEUE_CAPACITY,
                vec![point(self.processor.clone(), observed.capacity)],
            ),
            sum(
                &names::EXPORTER_INFLIGHT,
                vec![point(self.exporter.clone(), observed.exporting)],
            ),
            sum(&names::EXPORTER_EXPORTED, exported.collect()),
            sum(&names::TRUNCATED, vec![point(Vec::new(), stats.truncated)]),
            sum(&names::LIVE_RUNS, vec![point(Vec::new(), stats.live_runs)]),
            sum(
                &names::SPOOL_RECOVERED,
                vec![point(Vec::new(), stats.recovered)],
            ),
            sum(
                &names::SPOOL_SPOOLED,
                vec![point(Vec::new(), stats.spooled)],
            ),
            sum(
                &names::SPOOL_UNSPOOLED,
                vec![point(Vec::new(), stats.unspooled)],
            ),
            sum(
                &names::SPOOL_TORN,
                vec![point(Vec::new(), stats.spool_torn)],
            ),
        ];
        if let Some(bytes) = observed.spool_bytes {
            metrics.push(sum(&names::SPOOL_SIZE, vec![point(Vec::new(), bytes)]));
        }
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource {
                    attributes: self.resource.clone(),
                    ..Resource::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(InstrumentationScope {
                        name: names::SCOPE.to_owned(),
                        version: env!("CARGO_PKG_VERSION").to_owned(),
                        ..InstrumentationScope::default()
                    }),
                    metrics,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        }
    }
}

/// The request as bytes: protobuf, or OTLP/JSON when `json`.
pub(crate) fn to_bytes(
    request: &ExportMetricsServiceRequest,
    json: bool,
) -> Result<Vec<u8>, String> {
    if json {
        #[cfg(feature = "http-json")]
        return serde_json::to_vec(request)
            .map_err(|e| format!("cannot write the metrics as OTLP/JSON: {e}"));
        #[cfg(not(feature = "http-json"))]
        return Err(crate::config::missing_feature("http-json"));
    }
    Ok(prost::Message::encode_to_vec(request))
}

fn sum(name: &MetricName, data_points: Vec<NumberDataPoint>) -> Metric {
    Metric {
        name: name.name.to_owned(),
        description: name.description.to_owned(),
        unit: name.unit.to_owned(),
        data: Some(metric::Data::Sum(Sum {
            data_points,
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: name.instrument == Instrument::Counter,
        })),
        ..Metric::default()
    }
}

/// A string attribute.
pub(crate) fn string(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        }),
        ..KeyValue::default()
    }
}

/// An int attribute.
pub(crate) fn int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
        ..KeyValue::default()
    }
}
