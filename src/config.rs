//! The log store's configuration, mirroring ZenML's `otel` log-store flavor: its fields and
//! defaults, where values come from (explicit > environment > defaults), and validation.

mod endpoint;
mod env;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use serde::{Deserialize, Deserializer};

use crate::handover::{self, ConfigText};
use crate::Error;

/// Default `max_export_batch_bytes`: under the Collector's 4 MiB gRPC message limit, with room.
const DEFAULT_MAX_EXPORT_BATCH_BYTES: usize = 4_000_000;
/// Two spool segments (`spool.rs`).
const MIN_MAX_SPOOL_BYTES: u64 = 8 * 1024 * 1024;
/// Least `max_export_batch_bytes`: room for a resource, a scope and a record of some size.
const MIN_MAX_EXPORT_BATCH_BYTES: usize = 16 * 1024;
/// Longest of every `*_millis` setting: a day. Longer ones are refused rather than let a
/// clock overflow (`Instant + Duration` panics).
pub(super) const MAX_MILLIS: u64 = 86_400_000;
/// Largest `max_queue_size`: the queue's slots are allocated up front (tens of bytes each), so
/// a larger one would take hundreds of MiB or abort on allocation.
pub(super) const MAX_QUEUE_SIZE: usize = 1 << 22;

/// The OTLP transport and encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Protocol {
    /// `http/protobuf`: OTLP/HTTP with protobuf bodies (the default).
    #[default]
    HttpProtobuf,
    /// `http/json`: OTLP/HTTP with the spec's JSON encoding (lowerCamelCase keys, hex ids).
    HttpJson,
    /// `grpc`: OTLP/gRPC (tonic), on a runtime the crate owns.
    Grpc,
}

impl Protocol {
    /// The name used in configuration and `OTEL_EXPORTER_OTLP_PROTOCOL`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HttpProtobuf => "http/protobuf",
            Self::HttpJson => "http/json",
            Self::Grpc => "grpc",
        }
    }
}

impl FromStr for Protocol {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "http/protobuf" => Ok(Self::HttpProtobuf),
            "http/json" => Ok(Self::HttpJson),
            "grpc" => Ok(Self::Grpc),
            _ => Err(format!(
                "`{text}` is not an OTLP protocol; expected `http/protobuf`, `http/json` or `grpc`"
            )),
        }
    }
}

/// Compression of export request bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Compression {
    /// No compression (the default).
    #[default]
    None,
    /// gzip.
    Gzip,
    /// zstd.
    Zstd,
}

impl Compression {
    /// The name used in configuration and `OTEL_EXPORTER_OTLP_COMPRESSION`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Gzip => "gzip",
            Self::Zstd => "zstd",
        }
    }
}

impl FromStr for Compression {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "none" | "" => Ok(Self::None),
            "gzip" => Ok(Self::Gzip),
            "zstd" => Ok(Self::Zstd),
            "deflate" => Err(
                "`deflate` (offered by ZenML's Python store) is not an OTLP compression the Rust \
                 exporter supports; use `gzip` or `zstd`"
                    .to_owned(),
            ),
            _ => Err(format!(
                "`{text}` is not a compression; expected `none`, `gzip` or `zstd`"
            )),
        }
    }
}

/// What an emitting thread does when the export queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OnFull {
    /// Drop the new record and count it in `stats().dropped` (the default): logging never
    /// waits.
    #[default]
    Drop,
    /// Wait for room, at most `max_block_millis`, then drop and count: lossless while the
    /// collector keeps up, at the cost of slowing the logging thread when it does not.
    Block,
}

impl FromStr for OnFull {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "drop" => Ok(Self::Drop),
            "block" => Ok(Self::Block),
            _ => Err(format!(
                "`{text}` is not a policy; expected `drop` or `block`"
            )),
        }
    }
}

/// Deserializes through `FromStr`, so file and environment values share one error message.
macro_rules! deserialize_from_str {
    ($type:ty) => {
        impl<'de> Deserialize<'de> for $type {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
deserialize_from_str!(Protocol);
deserialize_from_str!(Compression);
deserialize_from_str!(OnFull);

/// Configuration of the OpenTelemetry log store, with the field names and defaults of ZenML's
/// `otel` log-store flavor.
///
/// Deserializes from the flavor's JSON (unknown keys are rejected); `headers` may be a map or a
/// string holding a JSON object, as ZenML's CLI passes it
/// (`--headers='{"Authorization":"Bearer token123"}'`).
///
/// Where values come from, first match wins: a field set to something other than its default;
/// then the configuration a ZenML step handed over ([`handover::LOG_STORE_CONFIG`]); then the
/// standard `OTEL_*` and ZenML `ZENML_LOGS_OTEL_*` environment variables; then the default. [`ZenmlOtelLayer::new`](crate::ZenmlOtelLayer::new) applies the environment itself;
/// [`from_env`](Self::from_env) shows the result.
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
    /// The collector's endpoint; see the README's endpoint rules per protocol. `None`: the
    /// `OTEL_EXPORTER_OTLP_[LOGS_]ENDPOINT` variables, then `http://localhost:4318/v1/logs`
    /// (HTTP) or `http://localhost:4317` (gRPC).
    pub endpoint: Option<String>,
    /// Headers (gRPC metadata) sent with every export request. Never printed.
    #[serde(deserialize_with = "headers_from_map_or_json")]
    pub headers: HashMap<String, String>,
    /// gRPC only: a scheme-less endpoint (`collector:4317`) is reached in plaintext when `true`,
    /// over TLS when `false` (as `OTEL_EXPORTER_OTLP_INSECURE`). An explicit `https://` is
    /// always TLS with certificate verification, and for OTLP/HTTP the URL's scheme alone
    /// decides: this flag never turns verification off.
    pub insecure: bool,
    /// Most records waiting for export, all runs together; beyond it records are dropped and
    /// counted. Default 2048.
    pub max_queue_size: usize,
    /// Longest a record waits before its batch is exported, in milliseconds. Default 1000.
    pub schedule_delay_millis: u64,
    /// Most records per export request. Default 512; at most `max_queue_size`.
    pub max_export_batch_size: usize,
    /// Most bytes per export request (the encoded request, before compression). Default
    /// 4,000,000: within the OpenTelemetry Collector's default limits (4 MiB per gRPC message,
    /// 20 MiB per HTTP body). A record too large for any request is truncated to fit and
    /// counted in `stats().truncated`. At least 16384.
    pub max_export_batch_bytes: usize,
    /// About the most bytes the queued records may hold, all runs together (their strings plus
    /// a fixed overhead each), counted until they are sent or counted, so records in flight
    /// are inside the bound; beyond it records are handled as when the queue is full
    /// (`on_full`). One record may always fill an empty queue. Default 67108864 (64 MiB); at
    /// least `max_export_batch_bytes`.
    pub max_queue_bytes: usize,
    /// Longest string attribute value of an event's fields, in characters; longer ones are cut
    /// (`OTEL_LOGRECORD_ATTRIBUTE_VALUE_LENGTH_LIMIT`). Default `None`: no limit, as the spec.
    pub attribute_value_length_limit: Option<usize>,
    /// Most of an event's fields kept as attributes; the rest are left out and counted in the
    /// record's `dropped_attributes_count` (`OTEL_LOGRECORD_ATTRIBUTE_COUNT_LIMIT`). Default 128,
    /// as the spec. Code location and run attributes are not counted.
    pub attribute_count_limit: usize,
    /// How long a request that failed with a retryable error (no connection, timeouts, HTTP
    /// 429/502/503/504, gRPC UNAVAILABLE and friends) is sent again, with backoff from 1 s to
    /// 30 s, before it counts as failed; meanwhile newer records wait in the queue. Default
    /// 300000 (5 minutes, as the Collector's `retry_on_failure`); 1 to 86400000.
    pub max_retry_elapsed_millis: u64,
    /// Transport and encoding. Default `http/protobuf`.
    pub protocol: Protocol,
    /// Request body compression. Default `none`.
    pub compression: Compression,
    /// Bound on one export including the exporter's retries, and on `shutdown()`, in
    /// milliseconds. Default 10000 (the OTLP exporter default).
    pub export_timeout_millis: u64,
    /// PEM file of the CA certificate(s) that verify the collector, instead of the default
    /// roots (the system's; over gRPC the system's and webpki's).
    pub certificate_file: Option<PathBuf>,
    /// PEM file of the client certificate (chain) for mutual TLS; needs `client_key_file`.
    pub client_certificate_file: Option<PathBuf>,
    /// PEM file of the client's private key for mutual TLS; needs `client_certificate_file`.
    pub client_key_file: Option<PathBuf>,
    /// Extra resource attributes (as `OTEL_RESOURCE_ATTRIBUTES`). The service attributes from
    /// the fields above and a run's `zenml.*` attributes take precedence over these.
    pub resource_attributes: HashMap<String, String>,
    /// Span fields, beyond the `zenml.*` ones, copied onto every record logged inside the span
    /// as attributes (values recorded later included; an event's own field wins over the
    /// innermost span, which wins over outer spans). Default empty: nothing copied, at no cost.
    pub span_fields: Vec<String>,
    /// What logging does when the queue is full: `"drop"` (default) or `"block"`.
    pub on_full: OnFull,
    /// With `on_full = "block"`, the longest an emitting thread waits for room before the
    /// record is dropped and counted. Default 5000.
    pub max_block_millis: u64,
    /// A directory for the crash-safe spool (`ZENML_OTEL_SPOOL_DIR`): every record is written
    /// there before the `tracing` call returns, kept until a collector acknowledged it, and
    /// sent by the next layer started on the directory if this process dies first. Created if
    /// missing; one live process (and layer) per directory. Default `None`: no spool.
    pub spool_dir: Option<PathBuf>,
    /// Most bytes the spool's files take (`ZENML_OTEL_MAX_SPOOL_BYTES`); beyond it records are
    /// dropped and counted, as on a full queue. Default 268435456 (256 MiB); at least 8 MiB.
    pub max_spool_bytes: u64,
    /// How often the spool's new records are written through to the disk (`fdatasync`), so
    /// that a machine crash or power loss loses at most this long's records
    /// (`ZENML_OTEL_SPOOL_SYNC_MILLIS`). Default 0: never; the kernel's page cache then keeps
    /// what a killed process wrote, not what a crashed machine did.
    pub spool_sync_millis: u64,
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
            max_export_batch_bytes: DEFAULT_MAX_EXPORT_BATCH_BYTES,
            max_retry_elapsed_millis: 300_000,
            max_queue_bytes: 64 * 1024 * 1024,
            attribute_value_length_limit: None,
            attribute_count_limit: 128,
            protocol: Protocol::HttpProtobuf,
            compression: Compression::None,
            export_timeout_millis: 10_000,
            certificate_file: None,
            client_certificate_file: None,
            client_key_file: None,
            resource_attributes: HashMap::new(),
            span_fields: Vec::new(),
            on_full: OnFull::Drop,
            max_block_millis: 5000,
            spool_dir: None,
            max_spool_bytes: 256 * 1024 * 1024,
            spool_sync_millis: 0,
        }
    }
}

impl fmt::Debug for OtelLogStoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtelLogStoreConfig")
            .field("service_name", &self.service_name)
            .field("service_version", &self.service_version)
            .field("deployment_environment", &self.deployment_environment)
            .field("endpoint", &self.endpoint)
            .field("headers", &Redacted(&self.headers))
            .field("insecure", &self.insecure)
            .field("max_queue_size", &self.max_queue_size)
            .field("schedule_delay_millis", &self.schedule_delay_millis)
            .field("max_export_batch_size", &self.max_export_batch_size)
            .field("max_export_batch_bytes", &self.max_export_batch_bytes)
            .field("max_retry_elapsed_millis", &self.max_retry_elapsed_millis)
            .field("max_queue_bytes", &self.max_queue_bytes)
            .field(
                "attribute_value_length_limit",
                &self.attribute_value_length_limit,
            )
            .field("attribute_count_limit", &self.attribute_count_limit)
            .field("protocol", &self.protocol)
            .field("compression", &self.compression)
            .field("export_timeout_millis", &self.export_timeout_millis)
            .field("certificate_file", &self.certificate_file)
            .field("client_certificate_file", &self.client_certificate_file)
            .field("client_key_file", &self.client_key_file)
            .field("resource_attributes", &self.resource_attributes)
            .field("span_fields", &self.span_fields)
            .field("on_full", &self.on_full)
            .field("max_block_millis", &self.max_block_millis)
            .field("spool_dir", &self.spool_dir)
            .field("max_spool_bytes", &self.max_spool_bytes)
            .field("spool_sync_millis", &self.spool_sync_millis)
            .finish()
    }
}

/// Header names with their values hidden: values are usually credentials.
pub(crate) struct Redacted<'a, K>(pub(crate) &'a HashMap<K, String>);

impl<K: fmt::Debug> fmt::Debug for Redacted<'_, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.keys().map(|name| (name, "<redacted>")))
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
        Null(()),
    }
    match MapOrJson::deserialize(deserializer)? {
        MapOrJson::Map(map) => Ok(map),
        MapOrJson::Json(text) => parse_headers_json(&text).map_err(serde::de::Error::custom),
        // ZenML writes `"headers": null` for an unset optional field.
        MapOrJson::Null(()) => Ok(HashMap::new()),
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

    /// The defaults overridden by the environment (see the README's precedence table).
    /// A malformed variable is an error naming it.
    pub fn from_env() -> Result<Self, Error> {
        Self::default().with_env()
    }

    /// Reads a ZenML `otel` log-store component's configuration from a JSON file: the Python
    /// flavor's keys (`service_name`, `endpoint`, `headers`, `compression`,
    /// `certificate_file`, …). An unknown key is an error naming it. Fields the file leaves out
    /// keep their defaults (and so still follow the environment).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let field = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::config(field.clone(), "cannot read the file").caused_by(e))?;
        Self::from_json(&text, field)
    }

    /// Parses a component's configuration; errors name `field` and the key at fault.
    fn from_json(text: &str, field: String) -> Result<Self, Error> {
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

    /// Fields still at their default take their value from a configuration handed over by a
    /// ZenML step (see [`handover`](crate::handover)), then from the environment.
    pub(crate) fn with_env(self) -> Result<Self, Error> {
        let env = crate::environ::process;
        let config = match handover::config_source(&env)? {
            None => self,
            Some((variable, ConfigText::Json(json))) => {
                self.or(Self::from_json(&json, variable.to_owned())?)
            }
            Some((variable, ConfigText::File(path))) => {
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    Error::config(variable, format!("cannot read `{path}`")).caused_by(e)
                })?;
                self.or(Self::from_json(&text, variable.to_owned())?)
            }
        };
        env::overlay(config, &env)
    }

    /// Every field of `self` still at its default takes `fallback`'s value.
    fn or(mut self, fallback: Self) -> Self {
        let default = Self::default();
        macro_rules! fill {
            ($($field:ident),* $(,)?) => {
                $(if self.$field == default.$field {
                    self.$field = fallback.$field;
                })*
            };
        }
        fill!(
            service_name,
            service_version,
            deployment_environment,
            endpoint,
            headers,
            insecure,
            max_queue_size,
            schedule_delay_millis,
            max_export_batch_size,
            max_export_batch_bytes,
            max_retry_elapsed_millis,
            max_queue_bytes,
            attribute_value_length_limit,
            attribute_count_limit,
            protocol,
            compression,
            export_timeout_millis,
            certificate_file,
            client_certificate_file,
            client_key_file,
            resource_attributes,
            span_fields,
            on_full,
            max_block_millis,
            spool_dir,
            max_spool_bytes,
            spool_sync_millis,
        );
        self
    }

    /// Checks every field and resolves the endpoint; what the pipeline is built from.
    pub(crate) fn validate(&self) -> Result<Settings, Error> {
        self.check_features()?;
        self.check_names()?;
        self.check_sizes()?;
        let headers = self.checked_headers()?;
        if self
            .resource_attributes
            .keys()
            .any(|key| key.trim().is_empty())
        {
            return Err(Error::config("resource_attributes", "a key is empty"));
        }
        check_span_fields(&self.span_fields)?;
        let tls = self.read_tls()?;
        let endpoint = self.checked_endpoint(&tls)?;
        Ok(Settings {
            endpoint,
            protocol: self.protocol,
            compression: self.compression,
            timeout: Duration::from_millis(self.export_timeout_millis),
            headers,
            tls,
            schedule_delay: Duration::from_millis(self.schedule_delay_millis),
            max_request_bytes: self.max_export_batch_bytes,
            retry_window: Duration::from_millis(self.max_retry_elapsed_millis),
            block: match self.on_full {
                OnFull::Drop => None,
                OnFull::Block => Some(Duration::from_millis(self.max_block_millis)),
            },
            spool_sync: (self.spool_sync_millis > 0)
                .then(|| Duration::from_millis(self.spool_sync_millis)),
        })
    }

    /// The service fields are not blank.
    fn check_names(&self) -> Result<(), Error> {
        for (field, value) in [
            ("service_name", &self.service_name),
            ("service_version", &self.service_version),
            ("deployment_environment", &self.deployment_environment),
        ] {
            if value.trim().is_empty() {
                return Err(Error::config(field, "must not be empty"));
            }
        }
        Ok(())
    }

    /// Sizes, delays and bounds are positive and fit each other.
    fn check_sizes(&self) -> Result<(), Error> {
        for (field, value) in [
            ("max_queue_size", self.max_queue_size as u64),
            ("max_export_batch_size", self.max_export_batch_size as u64),
            ("schedule_delay_millis", self.schedule_delay_millis),
            ("export_timeout_millis", self.export_timeout_millis),
        ] {
            if value == 0 {
                return Err(Error::config(field, "must be at least 1, got 0"));
            }
        }
        for (field, value) in [
            ("max_retry_elapsed_millis", self.max_retry_elapsed_millis),
            ("schedule_delay_millis", self.schedule_delay_millis),
            ("export_timeout_millis", self.export_timeout_millis),
            ("spool_sync_millis", self.spool_sync_millis),
        ] {
            if value > MAX_MILLIS || (value == 0 && field == "max_retry_elapsed_millis") {
                return Err(Error::config(
                    field,
                    format!("{value} is not between 1 and {MAX_MILLIS} (a day)"),
                ));
            }
        }
        if self.max_queue_size > MAX_QUEUE_SIZE {
            return Err(Error::config(
                "max_queue_size",
                format!(
                    "{} is above {MAX_QUEUE_SIZE}: the queue's slots are allocated up front",
                    self.max_queue_size
                ),
            ));
        }
        if self.max_export_batch_bytes < MIN_MAX_EXPORT_BATCH_BYTES {
            return Err(Error::config(
                "max_export_batch_bytes",
                format!(
                    "{} is below {MIN_MAX_EXPORT_BATCH_BYTES}: a request must hold at least one \
                     record with its resource",
                    self.max_export_batch_bytes
                ),
            ));
        }
        if self.max_queue_bytes < self.max_export_batch_bytes {
            return Err(Error::config(
                "max_queue_bytes",
                format!(
                    "{} is below max_export_batch_bytes ({}): a full request could never queue",
                    self.max_queue_bytes, self.max_export_batch_bytes
                ),
            ));
        }
        if self.max_spool_bytes < MIN_MAX_SPOOL_BYTES {
            return Err(Error::config(
                "max_spool_bytes",
                format!(
                    "{} is below {MIN_MAX_SPOOL_BYTES}: the spool needs room for two segments",
                    self.max_spool_bytes
                ),
            ));
        }
        if self.spool_sync_millis > 0 && self.spool_dir.is_none() {
            return Err(Error::config(
                "spool_sync_millis",
                "syncs the spool, but no spool_dir is set",
            ));
        }
        if self
            .spool_dir
            .as_ref()
            .is_some_and(|dir| dir.as_os_str().is_empty())
        {
            return Err(Error::config(
                "spool_dir",
                "is empty; give a directory or None",
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
        Ok(())
    }

    /// The headers as HTTP takes them; a bad one is named, its value never echoed.
    fn checked_headers(&self) -> Result<Vec<(HeaderName, HeaderValue)>, Error> {
        let mut headers = Vec::with_capacity(self.headers.len());
        for (name, value) in &self.headers {
            let header_name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                Error::config(
                    "headers",
                    format!("`{name}` is not a valid HTTP header name"),
                )
            })?;
            // The value is not echoed: it is usually a credential.
            let mut header_value = HeaderValue::from_str(value).map_err(|_| {
                Error::config(
                    "headers",
                    format!(
                        "the value of `{name}` is not a valid HTTP header value \
                         (control characters or non-ASCII)"
                    ),
                )
            })?;
            // h2's and the clients' own debug output then print `Sensitive`.
            header_value.set_sensitive(true);
            headers.push((header_name, header_value));
        }
        Ok(headers)
    }

    /// The custom CA and the client identity, read from their files.
    fn read_tls(&self) -> Result<Tls, Error> {
        Ok(Tls {
            ca: read_pem("certificate_file", self.certificate_file.as_deref())?,
            identity: match (&self.client_certificate_file, &self.client_key_file) {
                (None, None) => None,
                (Some(cert), Some(key)) => Some((
                    read_pem("client_certificate_file", Some(cert))?.unwrap_or_default(),
                    read_pem("client_key_file", Some(key))?.unwrap_or_default(),
                )),
                (Some(_), None) => {
                    return Err(Error::config(
                        "client_key_file",
                        "missing: client_certificate_file is set, and mutual TLS needs both",
                    ))
                }
                (None, Some(_)) => {
                    return Err(Error::config(
                        "client_certificate_file",
                        "missing: client_key_file is set, and mutual TLS needs both",
                    ))
                }
            },
        })
    }

    /// The resolved endpoint, refused where TLS settings or the build do not fit it.
    fn checked_endpoint(&self, tls: &Tls) -> Result<String, Error> {
        let endpoint = endpoint::resolve(
            self.protocol,
            self.endpoint.as_deref(),
            self.insecure,
            &crate::environ::process,
        )?;
        let shown = crate::redact::url(&endpoint);
        if tls.is_custom() && !endpoint.starts_with("https://") {
            let field = if tls.ca.is_some() {
                "certificate_file"
            } else {
                "client_certificate_file"
            };
            return Err(Error::config(
                field,
                format!(
                    "is set, but the endpoint `{shown}` is not https://, so it would be ignored"
                ),
            ));
        }
        // gRPC brings its own TLS; OTLP/HTTP's is the `tls` feature.
        if endpoint.starts_with("https://")
            && self.protocol != Protocol::Grpc
            && !cfg!(feature = "tls")
        {
            return Err(Error::config(
                "endpoint",
                format!("`{shown}` is https://, which {}", missing_feature("tls")),
            ));
        }
        Ok(endpoint)
    }
}

fn read_pem(field: &str, path: Option<&Path>) -> Result<Option<Vec<u8>>, Error> {
    let Some(path) = path else { return Ok(None) };
    let bytes = std::fs::read(path).map_err(|e| {
        Error::config(field, format!("cannot read `{}`", path.display())).caused_by(e)
    })?;
    // Key material is never echoed, only whether it looks like PEM.
    if !bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        return Err(Error::config(
            field,
            format!(
                "`{}` is not a PEM file (no -----BEGIN line)",
                path.display()
            ),
        ));
    }
    Ok(Some(bytes))
}

/// What validation derives from the config: everything the exporter is built from.
#[derive(Clone)]
pub(crate) struct Settings {
    /// The full URL requests go to.
    pub(crate) endpoint: String,
    pub(crate) protocol: Protocol,
    pub(crate) compression: Compression,
    pub(crate) timeout: Duration,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    pub(crate) tls: Tls,
    pub(crate) schedule_delay: Duration,
    /// Most bytes of one encoded request.
    pub(crate) max_request_bytes: usize,
    /// How long a retryable failure is retried.
    pub(crate) retry_window: Duration,
    /// `Some(max wait)` when emitters block on a full queue.
    pub(crate) block: Option<Duration>,
    /// How often the spool is synced to the disk, if at all.
    pub(crate) spool_sync: Option<Duration>,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("endpoint", &self.endpoint)
            .field("protocol", &self.protocol)
            .field("compression", &self.compression)
            .field("timeout", &self.timeout)
            .field(
                "headers",
                &self
                    .headers
                    .iter()
                    .map(|(name, _)| name)
                    .collect::<Vec<_>>(),
            )
            .field("tls", &self.tls)
            .field("schedule_delay", &self.schedule_delay)
            .field("max_request_bytes", &self.max_request_bytes)
            .field("retry_window", &self.retry_window)
            .field("block", &self.block)
            .field("spool_sync", &self.spool_sync)
            .finish()
    }
}

/// PEM material for TLS; never printed.
#[derive(Clone, Default)]
pub(crate) struct Tls {
    pub(crate) ca: Option<Vec<u8>>,
    /// (certificate chain, private key)
    pub(crate) identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl Tls {
    pub(crate) fn is_custom(&self) -> bool {
        self.ca.is_some() || self.identity.is_some()
    }
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("custom_ca", &self.ca.is_some())
            .field("client_identity", &self.identity.is_some())
            .finish()
    }
}

/// The cargo feature `protocol` needs.
pub(crate) fn feature_of(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::HttpProtobuf => "http-proto",
        Protocol::HttpJson => "http-json",
        Protocol::Grpc => "grpc",
    }
}

/// What a config asking for `feature` while it is off is told.
pub(crate) fn missing_feature(feature: &str) -> String {
    format!(
        "needs the crate feature `{feature}`, which this build does not have \
         (zenml-otel = {{ version = \"…\", features = [\"{feature}\"] }})"
    )
}

impl OtelLogStoreConfig {
    /// A protocol or compression whose cargo feature this build lacks is refused here, at
    /// construction, naming the feature.
    fn check_features(&self) -> Result<(), Error> {
        let enabled = match self.protocol {
            Protocol::HttpProtobuf => cfg!(feature = "http-proto"),
            Protocol::HttpJson => cfg!(feature = "http-json"),
            Protocol::Grpc => cfg!(feature = "grpc"),
        };
        if !enabled {
            let problem = missing_feature(feature_of(self.protocol));
            return Err(Error::config(
                "protocol",
                format!("`{}` {problem}", self.protocol.as_str()),
            ));
        }
        if self.compression == Compression::Zstd && !cfg!(feature = "zstd") {
            let problem = missing_feature("zstd");
            return Err(Error::config("compression", format!("`zstd` {problem}")));
        }
        Ok(())
    }
}

/// What is wrong with a span field name to copy, if anything: blank, or `zenml.*`, which are
/// resource or record attributes already.
pub(super) fn span_field_problem(name: &str) -> Option<String> {
    if name.trim().is_empty() || name.trim() != name {
        return Some(format!(
            "`{name}` is not a field name (blank, or space around it)"
        ));
    }
    name.starts_with(crate::fields::PREFIX)
        .then(|| format!("`{name}`: `zenml.*` span fields are exported already"))
}

fn check_span_fields(names: &[String]) -> Result<(), Error> {
    match names.iter().find_map(|name| span_field_problem(name)) {
        Some(problem) => Err(Error::config("span_fields", problem)),
        None => Ok(()),
    }
}
