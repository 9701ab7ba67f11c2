//! The sources of a configuration and their merge: the program's explicit configuration, a
//! ZenML step's handed-over one (JSON, or a JSON file), the environment, the defaults; first
//! match wins, field by field. A JSON key that is present wins whatever its value (`null` is
//! unset); a handed-over configuration is the one source of the transport (`transport` in
//! `model.rs`): what it leaves out is the default, never an `OTEL_EXPORTER_OTLP_*` variable,
//! so headers meant for another collector never reach the handed-over endpoint.

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Deserializer};

use super::model::Given;
use super::{ExplicitConfig, OtelLogStoreConfig, Settings};
use crate::environ::Env;
use crate::handover::{self, ConfigText};
use crate::Error;

/// Every source merged: what the pipeline is built from.
#[derive(Debug)]
pub(crate) struct Merged {
    pub(crate) config: OtelLogStoreConfig,
    /// A handover gave the configuration, so the transport reads no environment.
    handed_over: bool,
}

impl Merged {
    /// Checks every field and resolves the endpoint (from the environment only when no
    /// handover closed the transport).
    pub(crate) fn validate(&self, env: Env<'_>) -> Result<Settings, Error> {
        let unset = |_: &str| Ok(None);
        self.config
            .validate_in(if self.handed_over { &unset } else { env })
    }
}

/// `explicit`, then the handover, then the environment, then the defaults.
pub(super) fn merge(explicit: Given, env: Env<'_>) -> Result<Merged, Error> {
    let handover = handed_over(env)?;
    let handed_over = handover.is_some();
    let mut given = match handover {
        Some(handover) => explicit.or(handover),
        None => explicit,
    };
    given.overlay_env(env, handed_over)?;
    // The spec: `service.name` among the resource attributes names the service too.
    if given.service_name.is_none() {
        given.service_name = given
            .resource_attributes
            .as_ref()
            .and_then(|attributes| attributes.get("service.name"))
            .cloned();
    }
    let batch_given = given.max_export_batch_size.is_some();
    let mut config = given.or_defaults();
    // A smaller queue shrinks the default batch with it, as the SDKs do, rather than failing
    // on a batch size nobody chose.
    if !batch_given {
        config.max_export_batch_size = config
            .max_export_batch_size
            .min(config.max_queue_size.max(1));
    }
    Ok(Merged {
        config,
        handed_over,
    })
}

/// The configuration a ZenML step handed over, if any; errors name its variable.
fn handed_over(env: Env<'_>) -> Result<Option<Given>, Error> {
    match handover::config_source(env)? {
        None => Ok(None),
        Some((variable, ConfigText::Json(json))) => from_json(&json, variable.to_owned()).map(Some),
        Some((variable, ConfigText::File(path))) => {
            let text = std::fs::read_to_string(&path).map_err(|e| {
                Error::config(variable, format!("cannot read `{path}`")).caused_by(e)
            })?;
            from_json(&text, variable.to_owned()).map(Some)
        }
    }
}

/// Parses a component's configuration; errors name `field` and the key at fault.
fn from_json(text: &str, field: String) -> Result<Given, Error> {
    // The path names the key at fault, which serde_json's own errors do not for bad values.
    let deserializer = &mut serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let key = e.path().to_string();
        let problem = e.into_inner();
        match key.as_str() {
            "." => Error::config(field, problem.to_string()),
            _ => Error::config(field, format!("`{key}`: {problem}")),
        }
    })
}

/// `headers` in JSON: a map, or a string holding a JSON object as ZenML's CLI passes it;
/// `null` is unset, as ZenML writes an unset optional field.
pub(super) fn headers_json<'de, D>(
    deserializer: D,
) -> Result<Option<HashMap<String, String>>, D::Error>
where
    D: Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum MapOrJson {
        Map(HashMap<String, String>),
        Json(String),
        Null(()),
    }
    match MapOrJson::deserialize(deserializer)? {
        MapOrJson::Map(map) => Ok(Some(map)),
        MapOrJson::Json(text) => parse_headers_json(&text)
            .map(Some)
            .map_err(serde::de::Error::custom),
        MapOrJson::Null(()) => Ok(None),
    }
}

fn parse_headers_json(text: &str) -> Result<HashMap<String, String>, String> {
    // Values are not echoed in errors: they are usually credentials.
    serde_json::from_str(text).map_err(|error| {
        format!(
            "expected a JSON object of string values, such as {{\"Authorization\": \"Bearer …\"}} \
             (line {}, column {})",
            error.line(),
            error.column()
        )
    })
}

/// The flavor's JSON over the defaults. Which keys were present is lost here (see
/// [`OtelLogStoreConfig::from_file`] for a configuration that keeps it).
impl<'de> Deserialize<'de> for OtelLogStoreConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Given::deserialize(deserializer).map(Given::or_defaults)
    }
}

impl OtelLogStoreConfig {
    /// Parses `headers` given as a JSON object string, as ZenML's CLI passes it.
    ///
    /// ```
    /// let headers = zenml_otel::OtelLogStoreConfig::headers_from_json(r#"{"x-api-key": "k"}"#)?;
    /// assert_eq!(headers["x-api-key"], "k");
    /// # Ok::<(), zenml_otel::Error>(())
    /// ```
    pub fn headers_from_json(text: &str) -> Result<HashMap<String, String>, Error> {
        parse_headers_json(text).map_err(|problem| Error::config("headers", problem))
    }

    /// The defaults under a ZenML step's handover and the environment (see "Where values
    /// come from" in docs/configuration.md): what `ZenmlOtelLayer::new(OtelLogStoreConfig::default())`
    /// uses. A malformed variable is an error naming it.
    pub fn from_env() -> Result<Self, Error> {
        ExplicitConfig::default().resolved()
    }

    /// Reads a ZenML `otel` log-store component's configuration from a JSON file: the Python
    /// flavor's keys (`service_name`, `endpoint`, `headers`, `compression`,
    /// `certificate_file`, …) and this crate's own. An unknown key is an error naming it.
    ///
    /// Every key the file holds is explicit, so it wins over a handover and the environment
    /// even when it equals the default; keys it leaves out (or sets to `null`) still follow
    /// them. The result reads and writes like an `OtelLogStoreConfig` (it derefs to one).
    pub fn from_file(path: impl AsRef<Path>) -> Result<ExplicitConfig, Error> {
        let path = path.as_ref();
        let field = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::config(field.clone(), "cannot read the file").caused_by(e))?;
        let given = from_json(&text, field)?;
        Ok(ExplicitConfig::given(given))
    }
}
