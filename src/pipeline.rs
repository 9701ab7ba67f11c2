//! What every exporting front end starts from ([`ZenmlOtelLayer`](crate::ZenmlOtelLayer), the
//! `sdk` module's exporter): the configuration merged with the environment and a step's
//! handover and validated, the base resource, and the running batch pipeline with its receipt,
//! console and metrics.

use opentelemetry::{Key, KeyValue, Value};
use opentelemetry_sdk::resource::{ResourceDetector as _, TelemetryResourceDetector};
use opentelemetry_sdk::Resource;

use crate::batch::{self, Emitter};
use crate::handover::Handover;
use crate::record::AttributeLimits;
use crate::{Error, ExplicitConfig, LogStoreHandle, OtelLogStoreConfig};

/// A started pipeline and what its front end needs of the configuration.
#[derive(Debug)]
pub(crate) struct Started {
    pub(crate) config: OtelLogStoreConfig,
    pub(crate) handover: Handover,
    pub(crate) emitter: Emitter,
    pub(crate) handle: LogStoreHandle,
    /// The `service.instance.id` of its resources.
    pub(crate) instance_id: String,
    /// The URL logs are sent to.
    pub(crate) endpoint: String,
}

impl Started {
    pub(crate) fn limits(&self) -> AttributeLimits {
        AttributeLimits {
            value_length: self.config.attribute_value_length_limit,
            count: self.config.attribute_count_limit,
        }
    }

    /// The base resource: `under` (the SDK's telemetry attributes, or an SDK provider's
    /// resource), then the configuration's extra attributes, then its `service.*` and
    /// `deployment.*`, each winning over the ones before on equal keys.
    pub(crate) fn resource(&self, under: impl IntoIterator<Item = (Key, Value)>) -> Resource {
        base_resource(&self.config, &self.instance_id, under)
    }
}

/// Applies the handover and the environment to `config`, validates it, and starts the export
/// threads (see [`ZenmlOtelLayer::new`](crate::ZenmlOtelLayer::new) for the errors).
pub(crate) fn start(config: ExplicitConfig) -> Result<Started, Error> {
    let merged = config.merge(&crate::environ::process)?;
    let settings = merged.validate(&crate::environ::process)?;
    let config = merged.config;
    let handover = Handover::read(&crate::environ::process)?;
    let instance_id = uuid::Uuid::new_v4().to_string();
    let base = base_resource(&config, &instance_id, telemetry_attributes());
    let metrics = crate::metrics::Metrics::build(&settings, &base)?;
    let (emitter, handle) = batch::start(&config, &settings, crate::otlp::exporters())?;
    if let Some(metrics) = metrics {
        metrics.start(&handle);
    }
    if let Some(path) = handover.stats_file.clone() {
        handle.report_stats_to(path);
    }
    if let Some(fifo) = handover.console_fifo.clone() {
        handle.show_on_console(fifo);
    }
    Ok(Started {
        config,
        handover,
        emitter,
        handle,
        instance_id,
        endpoint: settings.endpoint,
    })
}

/// The SDK's `telemetry.sdk.*` attributes.
pub(crate) fn telemetry_attributes() -> Vec<(Key, Value)> {
    TelemetryResourceDetector
        .detect()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn base_resource(
    config: &OtelLogStoreConfig,
    instance_id: &str,
    under: impl IntoIterator<Item = (Key, Value)>,
) -> Resource {
    Resource::builder_empty()
        .with_attributes(under.into_iter().map(|(k, v)| KeyValue::new(k, v)))
        // Ours are added after the user's extra attributes, so they win on equal keys.
        .with_attributes(
            config
                .resource_attributes
                .iter()
                .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
        )
        .with_attributes([
            KeyValue::new("service.name", config.service_name.clone()),
            KeyValue::new("service.version", config.service_version.clone()),
            KeyValue::new("service.instance.id", instance_id.to_owned()),
            // `deployment.environment.name` is the current key; the semantic conventions'
            // registry marks `deployment.environment` deprecated ("Replaced by
            // `deployment.environment.name`", docs/registry/attributes/deployment.md of
            // open-telemetry/semantic-conventions). Both, for backends of either age.
            KeyValue::new(
                "deployment.environment",
                config.deployment_environment.clone(),
            ),
            KeyValue::new(
                "deployment.environment.name",
                config.deployment_environment.clone(),
            ),
        ])
        .build()
}
