//! OTLP metrics: `POST …/v1/metrics` (protobuf or JSON, gzip/zstd or none) and the gRPC
//! `MetricsService/Export` call, on the same port as the logs, stored apart from them and
//! faulted by their own setting ([`OtlpReceiver::set_metrics_fault`](super::OtlpReceiver::set_metrics_fault)),
//! so a test can refuse metrics while it takes logs.

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point, NumberDataPoint};
use prost::Message;
use tonic::codec::CompressionEncoding;
use tonic::codegen::Service;

use super::fault::{self, Conn, Fault};
use super::otlp_http::{self, Rejection};
use super::{find_attr, header_pairs, value_string, Encoding, MAX_BODY_BYTES};

/// The gRPC method of OTLP metrics.
pub(super) const GRPC_PATH: &str =
    "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";

/// One decoded metrics export request, as received.
#[derive(Debug, Clone)]
pub struct ReceivedMetrics {
    /// Request path (gRPC: the method path).
    pub path: String,
    /// Request headers (gRPC: metadata), names lowercased.
    pub headers: Vec<(String, String)>,
    /// How the request was encoded.
    pub encoding: Encoding,
    /// The decoded request.
    pub body: ExportMetricsServiceRequest,
}

/// One data point of a received metric, with the metric and resource it came under.
#[derive(Debug, Clone)]
pub struct MetricPoint {
    /// Attributes of the point's resource.
    pub resource: Vec<KeyValue>,
    /// Name of the instrumentation scope.
    pub scope_name: String,
    /// The metric's name.
    pub name: String,
    /// The metric's unit.
    pub unit: String,
    /// The metric's description.
    pub description: String,
    /// `Some(monotonic)` for a sum (with `cumulative` its temporality), `None` for a gauge.
    pub monotonic: Option<bool>,
    /// Whether a sum is cumulative (`false` for a gauge or a delta sum).
    pub cumulative: bool,
    /// The point's attributes.
    pub attributes: Vec<KeyValue>,
    /// The point's value: an int, or a double as given.
    pub value: f64,
    /// When the point's sum started counting.
    pub start_time_unix_nano: u64,
    /// The point's time.
    pub time_unix_nano: u64,
}

impl ReceivedMetrics {
    /// First value of header `name`, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every number data point (of sums and gauges) of the request, flattened.
    pub fn points(&self) -> Vec<MetricPoint> {
        let mut points = Vec::new();
        for resource_metrics in &self.body.resource_metrics {
            let resource = resource_metrics
                .resource
                .as_ref()
                .map(|r| r.attributes.clone())
                .unwrap_or_default();
            for scope_metrics in &resource_metrics.scope_metrics {
                let scope_name = scope_metrics
                    .scope
                    .as_ref()
                    .map(|s| s.name.clone())
                    .unwrap_or_default();
                for metric in &scope_metrics.metrics {
                    let (data_points, monotonic, cumulative): (&[NumberDataPoint], _, _) =
                        match &metric.data {
                            Some(metric::Data::Sum(sum)) => (
                                &sum.data_points,
                                Some(sum.is_monotonic),
                                sum.aggregation_temporality == 2,
                            ),
                            Some(metric::Data::Gauge(gauge)) => (&gauge.data_points, None, false),
                            _ => (&[], None, false),
                        };
                    points.extend(data_points.iter().map(|point| MetricPoint {
                        resource: resource.clone(),
                        scope_name: scope_name.clone(),
                        name: metric.name.clone(),
                        unit: metric.unit.clone(),
                        description: metric.description.clone(),
                        monotonic,
                        cumulative,
                        attributes: point.attributes.clone(),
                        value: match point.value {
                            Some(number_data_point::Value::AsInt(i)) => i as f64,
                            Some(number_data_point::Value::AsDouble(d)) => d,
                            None => f64::NAN,
                        },
                        start_time_unix_nano: point.start_time_unix_nano,
                        time_unix_nano: point.time_unix_nano,
                    }));
                }
            }
        }
        points
    }

    /// The sum of the values of `name`'s points whose attributes hold every `(key, value)` of
    /// `with` (string forms compared); `None` when the request has no such point.
    pub fn sum(&self, name: &str, with: &[(&str, &str)]) -> Option<f64> {
        let matching: Vec<f64> = self
            .points()
            .into_iter()
            .filter(|point| point.name == name && point.has(with))
            .map(|point| point.value)
            .collect();
        (!matching.is_empty()).then(|| matching.iter().sum())
    }
}

impl MetricPoint {
    /// String form of the point's attribute `key` (ints, bools and doubles via `to_string`).
    pub fn attr_str(&self, key: &str) -> Option<String> {
        find_attr(&self.attributes, key).and_then(value_string)
    }

    /// String form of resource attribute `key`.
    pub fn resource_attr(&self, key: &str) -> Option<String> {
        find_attr(&self.resource, key).and_then(value_string)
    }

    /// Whether the point's attributes hold every `(key, value)` of `with`.
    pub fn has(&self, with: &[(&str, &str)]) -> bool {
        with.iter()
            .all(|(key, value)| self.attr_str(key).as_deref() == Some(*value))
    }
}

/// Whether `request` is a metrics export (by its path), over HTTP or gRPC.
pub(super) fn is_metrics<B>(request: &Request<B>) -> bool {
    let path = request.uri().path();
    path.ends_with("/v1/metrics") || path == GRPC_PATH
}

/// Answers one metrics request (HTTP or gRPC, by `grpc`), under the metrics' own fault.
pub(super) async fn handle(
    request: Request<Incoming>,
    conn: Conn,
    grpc: bool,
) -> Response<tonic::body::Body> {
    let plan = conn.shared.next_metrics_fault();
    if plan.fault == Some(Fault::Refuse) {
        return conn.cut().await;
    }
    if grpc {
        let mut service = MetricsServiceServer::new(Sink {
            conn,
            fault: plan.fault,
            generation: plan.generation,
        })
        .accept_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Zstd)
        .max_decoding_message_size(MAX_BODY_BYTES);
        return match service.call(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
    }
    let (parts, body) = request.into_parts();
    let body = match otlp_http::read_body(body).await {
        Ok(body) => body,
        Err(rejection) => return otlp_http::refuse(rejection),
    };
    let mut rejected = None;
    match plan.fault {
        None | Some(Fault::Refuse) => {}
        Some(Fault::Delay(delay)) => tokio::time::sleep(delay).await,
        Some(Fault::Status { code, retry_after }) => {
            return otlp_http::fault_status(&parts.headers, code, retry_after)
        }
        Some(Fault::PartialSuccess {
            rejected: n,
            message,
        }) => rejected = Some((n, message)),
        Some(Fault::Blackhole) => return conn.blackhole(plan.generation).await,
    }
    match decode(&parts, &body) {
        Ok(received) => {
            let json = received.encoding == Encoding::Json;
            conn.shared.store_metrics(received);
            answer(json, rejected)
        }
        Err(rejection) => otlp_http::refuse(rejection),
    }
}

fn decode(parts: &http::request::Parts, compressed: &[u8]) -> Result<ReceivedMetrics, Rejection> {
    if parts.method != Method::POST {
        return Err(Rejection::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "OTLP metrics endpoint accepts POST only",
        ));
    }
    let encoding = otlp_http::content_type(&parts.headers)?;
    let raw = otlp_http::content_encoding(&parts.headers)?.decode(compressed)?;
    let bad = |message: String| Rejection::new(StatusCode::BAD_REQUEST, message);
    let body = match encoding {
        Encoding::Json => {
            let value: serde_json::Value = serde_json::from_slice(&raw)
                .map_err(|e| bad(format!("invalid OTLP/JSON body: {e}")))?;
            // serde's defaults would read a misspelt body as an empty request.
            if !value.is_object() || value.get("resourceMetrics").is_none() {
                return Err(bad(
                    "OTLP/JSON metrics need a top-level `resourceMetrics`".to_owned()
                ));
            }
            serde_json::from_value(value).map_err(|e| {
                bad(format!(
                    "invalid OTLP/JSON ExportMetricsServiceRequest: {e}"
                ))
            })?
        }
        Encoding::Protobuf | Encoding::Grpc => ExportMetricsServiceRequest::decode(raw.as_slice())
            .map_err(|e| bad(format!("invalid ExportMetricsServiceRequest: {e}")))?,
    };
    Ok(ReceivedMetrics {
        path: parts.uri.path().to_owned(),
        headers: header_pairs(&parts.headers),
        encoding,
        body,
    })
}

fn answer(json: bool, rejected: Option<(i64, String)>) -> Response<tonic::body::Body> {
    if json {
        let body = match rejected {
            None => "{}".to_owned(),
            Some((n, message)) => serde_json::json!({
                "partialSuccess": {"rejectedDataPoints": n.to_string(), "errorMessage": message}
            })
            .to_string(),
        };
        return otlp_http::respond(StatusCode::OK, "application/json", body.into_bytes());
    }
    let partial_success =
        rejected.map(
            |(rejected_data_points, error_message)| ExportMetricsPartialSuccess {
                rejected_data_points,
                error_message,
            },
        );
    otlp_http::respond(
        StatusCode::OK,
        "application/x-protobuf",
        ExportMetricsServiceResponse { partial_success }.encode_to_vec(),
    )
}

/// Stores gRPC metrics exports, unless the fault says otherwise.
struct Sink {
    conn: Conn,
    fault: Option<Fault>,
    generation: u64,
}

#[tonic::async_trait]
impl MetricsService for Sink {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let headers = header_pairs(&request.metadata().clone().into_headers());
        let body = request.into_inner();
        let mut partial_success = None;
        match self.fault.clone() {
            None | Some(Fault::Refuse) => {}
            Some(Fault::Delay(delay)) => tokio::time::sleep(delay).await,
            Some(Fault::Status { code, retry_after }) => {
                let status = fault::http_status(code);
                if status.is_success() {
                    return Ok(tonic::Response::new(ExportMetricsServiceResponse::default()));
                }
                return Err(fault::grpc_status(status, retry_after));
            }
            Some(Fault::PartialSuccess { rejected, message }) => {
                partial_success = Some(ExportMetricsPartialSuccess {
                    rejected_data_points: rejected,
                    error_message: message,
                });
            }
            Some(Fault::Blackhole) => return self.conn.blackhole(self.generation).await,
        }
        self.conn.shared.store_metrics(ReceivedMetrics {
            path: GRPC_PATH.to_owned(),
            headers,
            encoding: Encoding::Grpc,
            body,
        });
        Ok(tonic::Response::new(ExportMetricsServiceResponse {
            partial_success,
        }))
    }
}
