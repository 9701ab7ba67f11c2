//! The layer's own metrics (`metrics_interval_millis`): the pipeline's exact counters
//! (`stats()`) and queue, exported as OTLP metrics to the logs' collector in OpenTelemetry's
//! own terms, every interval and once more at shutdown. One job per file: `names.rs` the fixed
//! names and `error.type` values, `encode.rs` a request from one observation, `export.rs` the
//! thread that sends them. Here: building it from the settings (where to, under which
//! resource and component names) and starting it; the logs' per-event path is untouched (it
//! reads counters the pipeline keeps anyway, `batch::Observer`).

mod encode;
mod export;
mod names;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Instant, SystemTime};

use opentelemetry_sdk::Resource;

use self::encode::Encoder;
use self::export::{Command, MetricsThread};
use crate::batch::AtShutdown;
use crate::config::{Protocol, Settings};
use crate::otlp::SignalExporter;
use crate::{Error, LogStoreHandle};

/// The one method of OTLP's metrics service.
const GRPC_PATH: &str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";

/// Instances of each component type started in this process: `otel.component.name` is
/// `<type>/<n>`, as the conventions suggest (and opentelemetry_sdk does).
static PROCESSORS: AtomicUsize = AtomicUsize::new(0);
static HTTP_EXPORTERS: AtomicUsize = AtomicUsize::new(0);
static HTTP_JSON_EXPORTERS: AtomicUsize = AtomicUsize::new(0);
static GRPC_EXPORTERS: AtomicUsize = AtomicUsize::new(0);

/// A metrics export built, not yet started.
#[derive(Debug)]
pub(crate) struct Metrics {
    exporter: SignalExporter,
    encoder: Encoder,
    interval: std::time::Duration,
    timeout: std::time::Duration,
}

impl Metrics {
    /// The metrics export `settings` ask for, under `resource` (the process's); `None` when
    /// off, or when the logs' endpoint gives no metrics URL (said once, on stderr). An
    /// exporter that cannot be built is an error, as the logs' is.
    pub(crate) fn build(settings: &Settings, resource: &Resource) -> Result<Option<Self>, Error> {
        let Some(metrics) = &settings.metrics else {
            return Ok(None);
        };
        let endpoint = match &metrics.endpoint {
            Ok(endpoint) => endpoint.clone(),
            Err(why) => {
                eprintln!("zenml-otel: metrics are off (metrics_interval_millis is set): {why}");
                return Ok(None);
            }
        };
        let signal = Settings {
            endpoint,
            headers: metrics.headers.clone(),
            metrics: None,
            ..settings.clone()
        };
        let exporter = SignalExporter::build(&signal, GRPC_PATH)?;
        let attributes =
            opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema::from(
                resource,
            );
        let processor = component(
            names::PROCESSOR_TYPE,
            PROCESSORS.fetch_add(1, Ordering::Relaxed),
        );
        let exporter_type = names::exporter_type(settings.protocol);
        let counter = match settings.protocol {
            Protocol::HttpProtobuf => &HTTP_EXPORTERS,
            Protocol::HttpJson => &HTTP_JSON_EXPORTERS,
            Protocol::Grpc => &GRPC_EXPORTERS,
        };
        let mut exporter_attributes =
            component(exporter_type, counter.fetch_add(1, Ordering::Relaxed));
        exporter_attributes.extend(server(&settings.endpoint));
        Ok(Some(Self {
            exporter,
            encoder: Encoder {
                resource: attributes.attributes.0,
                processor,
                exporter: exporter_attributes,
                start_nanos: export::nanos(SystemTime::now()),
            },
            interval: metrics.interval,
            timeout: settings.timeout,
        }))
    }

    /// Starts the metrics thread on `handle`'s pipeline, and has its `shutdown()` send the
    /// final counts. A thread that cannot be started leaves metrics off, said on stderr: the
    /// logs go on.
    pub(crate) fn start(self, handle: &LogStoreHandle) {
        let (commands, received) = crossbeam_channel::bounded::<Command>(1);
        let thread = MetricsThread {
            exporter: self.exporter,
            encoder: self.encoder,
            observer: handle.observer(),
            interval: self.interval,
            timeout: self.timeout,
            last_warning: None,
        };
        let spawned = std::thread::Builder::new()
            .name("zenml-otel-metrics".to_owned())
            .spawn(move || thread.run(received));
        if let Err(e) = spawned {
            eprintln!("zenml-otel: metrics are off: cannot start their thread: {e}");
            return;
        }
        // Taken by the first shutdown; the thread ends after the final export (or when the
        // pipeline, and with it this sender, is gone).
        let commands = Mutex::new(Some(commands));
        handle.at_shutdown(AtShutdown(Box::new(move |deadline: Instant| {
            let Some(commands) = crate::sync::lock(&commands).take() else {
                return;
            };
            let (done, finished) = crossbeam_channel::bounded(1);
            if commands.send(Command::Final { deadline, done }).is_ok() {
                let _ = finished.recv_deadline(deadline);
            }
        })));
    }
}

/// `otel.component.type` and `otel.component.name` of the `n`th component of `kind`.
fn component(kind: &str, n: usize) -> Vec<opentelemetry_proto::tonic::common::v1::KeyValue> {
    vec![
        encode::string(names::COMPONENT_TYPE, kind),
        encode::string(names::COMPONENT_NAME, &format!("{kind}/{n}")),
    ]
}

/// `server.address` and `server.port` of the logs' collector (the port from the scheme when
/// the URL has none).
fn server(endpoint: &str) -> Vec<opentelemetry_proto::tonic::common::v1::KeyValue> {
    let Ok(uri) = endpoint.parse::<http::Uri>() else {
        return Vec::new();
    };
    let Some(host) = uri.host() else {
        return Vec::new();
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().or(match uri.scheme_str() {
        Some("https") => Some(443),
        Some("http") => Some(80),
        _ => None,
    });
    let mut attributes = vec![encode::string(names::SERVER_ADDRESS, host)];
    attributes.extend(port.map(|port| encode::int(names::SERVER_PORT, i64::from(port))));
    attributes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_collector_is_named_by_host_and_port() {
        let shown = |endpoint| {
            server(endpoint)
                .into_iter()
                .map(|kv| format!("{}={:?}", kv.key, kv.value.and_then(|v| v.value)))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            shown("http://collector:4318/v1/logs"),
            [
                r#"server.address=Some(StringValue("collector"))"#,
                "server.port=Some(IntValue(4318))"
            ]
        );
        assert_eq!(
            shown("https://[::1]/v1/logs")[0],
            r#"server.address=Some(StringValue("::1"))"#
        );
        assert_eq!(
            shown("https://h/v1/logs")[1],
            "server.port=Some(IntValue(443))"
        );
    }
}
