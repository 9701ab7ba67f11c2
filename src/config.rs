//! The log store's configuration, mirroring ZenML's `otel` log-store flavor, and its validation.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Uri};
use serde::{Deserialize, Deserializer};

use crate::Error;

/// The OTLP/HTTP path logs are posted to.
const LOGS_PATH: &str = "/v1/logs";
/// Where logs go when neither the config nor the environment names an endpoint.
const DEFAULT_ENDPOINT: &str = "http://localhost:4318";
/// Per-signal endpoint variable: used as is, like every OpenTelemetry SDK does.
const ENV_LOGS_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT";
/// Base endpoint variable: `/v1/logs` is appended.
const ENV_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// How long one export (including the exporter's retries) may take before it counts as failed.
pub(crate) const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Configuration of the OpenTelemetry log store, with the field names and defaults of ZenML's
/// `otel` log-store flavor.
///
/// Deserializes from the flavor's JSON (unknown keys are rejected); `headers` may be a map or a
/// string holding a JSON object, as ZenML's CLI passes it
/// (`--headers='{"Authorization":"Bearer token123"}'`).
///
/// ```
/// let cfg: zenml_otel::OtelLogStoreConfig = serde_json::from_str(
///     r#"{"endpoint": "http://otel-collector:4318", "headers": "{\"Authorization\": \"Bearer t\"}"}"#,
/// )?;
/// assert_eq!(cfg.headers["Authorization"], "Bearer t");
/// assert_eq!(cfg.max_queue_size, 2048);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OtelLogStoreConfig {
    /// `service.name` of every exported resource. Default `"zenml"`.
    pub service_name: String,
    /// `service.version` of every exported resource. Default `"1.0.0"`.
    pub service_version: String,
    /// `deployment.environment` of every exported resource. Default `"production"`.
    pub deployment_environment: String,
    /// OTLP/HTTP endpoint. A base URL such as `http://otel-collector:4318` gets `/v1/logs`
    /// appended; a URL ending in `/v1/logs` is used as is. `None` falls back to
    /// `OTEL_EXPORTER_OTLP_LOGS_ENDPOINT` (as is), `OTEL_EXPORTER_OTLP_ENDPOINT` (+ `/v1/logs`),
    /// then `http://localhost:4318/v1/logs`.
    pub endpoint: Option<String>,
    /// HTTP headers sent with every export request (e.g. `Authorization`). Never printed.
    #[serde(deserialize_with = "headers_from_map_or_json")]
    pub headers: HashMap<String, String>,
    /// Reserved for plaintext gRPC; it has no effect on OTLP/HTTP, where the endpoint's scheme
    /// decides, and it never turns off certificate verification of an `https://` endpoint.
    pub insecure: bool,
    /// Most records waiting for export, all runs together; beyond it records are dropped and
    /// counted. Default 2048.
    pub max_queue_size: usize,
    /// Longest a record waits before its batch is exported, in milliseconds. Default 1000.
    pub schedule_delay_millis: u64,
    /// Most records per export request. Default 512; at most `max_queue_size`.
    pub max_export_batch_size: usize,
}

impl Default for OtelLogStoreConfig {
    fn default() -> Self {
        Self {
            service_name: "zenml".to_owned(),
            service_version: "1.0.0".to_owned(),
            deployment_environment: "production".to_owned(),
            endpoint: None,
            headers: HashMap::new(),
            insecure: false,
            max_queue_size: 2048,
            schedule_delay_millis: 1000,
            max_export_batch_size: 512,
        }
    }
}

impl fmt::Debug for OtelLogStoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Header values are usually credentials: show the names only.
        let headers: HashMap<&str, &str> = self
            .headers
            .keys()
            .map(|name| (name.as_str(), "<redacted>"))
            .collect();
        f.debug_struct("OtelLogStoreConfig")
            .field("service_name", &self.service_name)
            .field("service_version", &self.service_version)
            .field("deployment_environment", &self.deployment_environment)
            .field("endpoint", &self.endpoint)
            .field("headers", &headers)
            .field("insecure", &self.insecure)
            .field("max_queue_size", &self.max_queue_size)
            .field("schedule_delay_millis", &self.schedule_delay_millis)
            .field("max_export_batch_size", &self.max_export_batch_size)
            .finish()
    }
}

fn headers_from_map_or_json<'de, D>(deserializer: D) -> Result<HashMap<String, String>, D::Error>
where
    D: Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum MapOrJson {
        Map(HashMap<String, String>),
        Json(String),
    }
    match MapOrJson::deserialize(deserializer)? {
        MapOrJson::Map(map) => Ok(map),
        MapOrJson::Json(text) => parse_headers_json(&text).map_err(serde::de::Error::custom),
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

    /// Checks every field and resolves the endpoint; what the pipeline is built from.
    pub(crate) fn validate(&self) -> Result<Settings, Error> {
        for (field, value) in [
            ("service_name", &self.service_name),
            ("service_version", &self.service_version),
            ("deployment_environment", &self.deployment_environment),
        ] {
            if value.trim().is_empty() {
                return Err(Error::config(field, "must not be empty"));
            }
        }
        if self.max_queue_size == 0 {
            return Err(Error::config("max_queue_size", "must be at least 1, got 0"));
        }
        if self.max_export_batch_size == 0 {
            return Err(Error::config(
                "max_export_batch_size",
                "must be at least 1, got 0",
            ));
        }
        if self.max_export_batch_size > self.max_queue_size {
            return Err(Error::config(
                "max_export_batch_size",
                format!(
                    "{} is larger than max_queue_size ({}); a batch can never fill",
                    self.max_export_batch_size, self.max_queue_size
                ),
            ));
        }
        if self.schedule_delay_millis == 0 {
            return Err(Error::config(
                "schedule_delay_millis",
                "must be at least 1, got 0",
            ));
        }
        for (name, value) in &self.headers {
            if HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(Error::config(
                    "headers",
                    format!("`{name}` is not a valid HTTP header name"),
                ));
            }
            // The value is not echoed: it is usually a credential.
            if HeaderValue::from_str(value).is_err() {
                return Err(Error::config(
                    "headers",
                    format!(
                        "the value of `{name}` is not a valid HTTP header value \
                         (control characters or non-ASCII)"
                    ),
                ));
            }
        }
        Ok(Settings {
            endpoint: resolve_endpoint(self.endpoint.as_deref(), |name| std::env::var(name).ok())?,
            schedule_delay: Duration::from_millis(self.schedule_delay_millis),
        })
    }
}

/// What validation derives from the config.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// The full OTLP/HTTP logs URL.
    pub(crate) endpoint: String,
    pub(crate) schedule_delay: Duration,
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

/// Resolves the logs URL from the config, then the environment, then the default.
fn resolve_endpoint(
    configured: Option<&str>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<String, Error> {
    let env = |name: &str| env(name).filter(|value| !value.trim().is_empty());
    if let Some(endpoint) = configured {
        return logs_url("endpoint", endpoint);
    }
    if let Some(endpoint) = env(ENV_LOGS_ENDPOINT) {
        check_url(ENV_LOGS_ENDPOINT, &endpoint)?;
        return Ok(endpoint);
    }
    if let Some(endpoint) = env(ENV_ENDPOINT) {
        return logs_url(ENV_ENDPOINT, &endpoint);
    }
    logs_url("endpoint", DEFAULT_ENDPOINT)
}

fn logs_url(field: &str, endpoint: &str) -> Result<String, Error> {
    let endpoint = endpoint.trim();
    check_url(field, endpoint)?;
    let base = endpoint.trim_end_matches('/');
    if base.ends_with(LOGS_PATH) {
        Ok(base.to_owned())
    } else {
        Ok(format!("{base}{LOGS_PATH}"))
    }
}

fn check_url(field: &str, endpoint: &str) -> Result<(), Error> {
    let uri: Uri = endpoint
        .parse()
        .map_err(|e| Error::config(field, format!("`{endpoint}` is not a URL: {e}")))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(other) => {
            return Err(Error::config(
                field,
                format!("`{endpoint}` has scheme `{other}`; OTLP/HTTP needs http:// or https://"),
            ))
        }
        None => {
            return Err(Error::config(
                field,
                format!("`{endpoint}` is not a URL: it has no scheme (http:// or https://)"),
            ))
        }
    }
    if uri.host().map_or(true, str::is_empty) {
        return Err(Error::config(
            field,
            format!("`{endpoint}` is not a URL: it has no host"),
        ));
    }
    if uri.query().is_some() {
        return Err(Error::config(
            field,
            format!("`{endpoint}` has a query string, which OTLP endpoints do not take"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn base_urls_get_the_logs_path_and_full_urls_are_kept() {
        let cases = [
            (
                "http://otel-collector:4318",
                "http://otel-collector:4318/v1/logs",
            ),
            (
                "http://otel-collector:4318/",
                "http://otel-collector:4318/v1/logs",
            ),
            ("https://h/prefix", "https://h/prefix/v1/logs"),
            ("http://h:1/v1/logs", "http://h:1/v1/logs"),
        ];
        for (given, expected) in cases {
            assert_eq!(resolve_endpoint(Some(given), no_env).unwrap(), expected);
        }
    }

    #[test]
    fn environment_is_the_fallback_in_spec_order() {
        let env = |name: &str| match name {
            ENV_LOGS_ENDPOINT => Some("http://logs:1/custom".to_owned()),
            ENV_ENDPOINT => Some("http://base:2".to_owned()),
            _ => None,
        };
        assert_eq!(resolve_endpoint(None, env).unwrap(), "http://logs:1/custom");
        let env = |name: &str| (name == ENV_ENDPOINT).then(|| "http://base:2".to_owned());
        assert_eq!(
            resolve_endpoint(None, env).unwrap(),
            "http://base:2/v1/logs"
        );
        assert_eq!(
            resolve_endpoint(None, no_env).unwrap(),
            "http://localhost:4318/v1/logs"
        );
        assert_eq!(
            resolve_endpoint(Some("http://explicit:3"), env).unwrap(),
            "http://explicit:3/v1/logs"
        );
    }

    #[test]
    fn a_bad_environment_endpoint_names_the_variable() {
        let env = |name: &str| (name == ENV_ENDPOINT).then(|| "not a url".to_owned());
        let error = resolve_endpoint(None, env).unwrap_err();
        assert_eq!(error.field(), Some(ENV_ENDPOINT));
    }
}
