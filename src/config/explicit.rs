//! The program's explicit configuration: an `OtelLogStoreConfig` that remembers which fields
//! were set through a setter or a configuration file, so those win over a handover and the
//! environment even when they equal the default. A plain struct literal cannot say that (a
//! field equal to its default looks unset), and its public fields must stay as they are.

use std::ops::{Deref, DerefMut};

use super::model::{Given, Marks};
use super::sources::{self, Merged};
use super::OtelLogStoreConfig;
use crate::environ::Env;
use crate::Error;

/// An [`OtelLogStoreConfig`] with the fields given explicitly: each wins over a ZenML step's
/// handover and the environment, whatever its value. Made by the config's `with_*` setters
/// ([`OtelLogStoreConfig::with_compression`], …), by [`OtelLogStoreConfig::from_file`] (every
/// key the file holds), or from a config (its fields that differ from the default); in the
/// manner of the OpenTelemetry SDK's `BatchConfigBuilder`. It derefs to the config: a field
/// written through it follows the struct literal's rule (given when it differs from the
/// default).
///
/// ```
/// use zenml_otel::{Compression, OtelLogStoreConfig, ZenmlOtelLayer};
///
/// let config = OtelLogStoreConfig {
///     endpoint: Some("http://127.0.0.1:4318".into()),
///     ..OtelLogStoreConfig::default()
/// }
/// // `none` is the default: without the setter, OTEL_EXPORTER_OTLP_COMPRESSION could change it.
/// .with_compression(Compression::None)
/// .with_max_export_batch_size(512);
/// assert_eq!(config.compression, Compression::None);
/// let layer = ZenmlOtelLayer::new(config)?;
/// # layer.handle().shutdown()?;
/// # Ok::<(), zenml_otel::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExplicitConfig {
    pub(super) config: OtelLogStoreConfig,
    pub(super) set: Marks,
}

impl ExplicitConfig {
    /// Nothing given: everything from the handover, the environment and the defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// The configuration [`ZenmlOtelLayer::new`](crate::ZenmlOtelLayer::new) would use, with
    /// the handover and the environment applied (not yet validated).
    pub fn resolved(self) -> Result<OtelLogStoreConfig, Error> {
        self.merge(&crate::environ::process)
            .map(|merged| merged.config)
    }

    /// The values, forgetting which were given.
    pub fn into_config(self) -> OtelLogStoreConfig {
        self.config
    }

    /// A source's values as a program's explicit ones.
    pub(super) fn given(given: Given) -> Self {
        Self {
            set: given.marks(),
            config: given.or_defaults(),
        }
    }

    /// Every source merged.
    pub(crate) fn merge(self, env: Env<'_>) -> Result<Merged, Error> {
        sources::merge(Given::explicit(self.config, self.set), env)
    }
}

/// Fields that differ from the default are given, as in a struct literal.
impl From<OtelLogStoreConfig> for ExplicitConfig {
    fn from(config: OtelLogStoreConfig) -> Self {
        Self {
            config,
            set: Marks::default(),
        }
    }
}

impl Deref for ExplicitConfig {
    type Target = OtelLogStoreConfig;

    fn deref(&self) -> &OtelLogStoreConfig {
        &self.config
    }
}

impl DerefMut for ExplicitConfig {
    fn deref_mut(&mut self) -> &mut OtelLogStoreConfig {
        &mut self.config
    }
}
