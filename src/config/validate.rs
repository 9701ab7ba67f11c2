//! Validation: every field checked (errors name the field, never a credential), the endpoint
//! resolved, TLS files read, into the `Settings` the exporter is built from.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use http::{HeaderName, HeaderValue};

use super::endpoint;
use super::kinds::{Compression, OnFull, Protocol};
use super::OtelLogStoreConfig;
use crate::environ::Env;
use crate::Error;

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

impl OtelLogStoreConfig {
    /// [`validate_in`](Self::validate_in) with the endpoint variables of the process.
    #[cfg(test)]
    pub(crate) fn validate(&self) -> Result<Settings, Error> {
        self.validate_in(&crate::environ::process)
    }

    /// Checks every field and resolves the endpoint, `endpoint_env` giving its variables;
    /// what the pipeline is built from.
    pub(crate) fn validate_in(&self, endpoint_env: Env<'_>) -> Result<Settings, Error> {
        self.check_features()?;
        self.check_names()?;
        self.check_sizes()?;
        let headers = checked_headers("headers", &self.headers)?;
        if self
            .resource_attributes
            .keys()
            .any(|key| key.trim().is_empty())
        {
            return Err(Error::config("resource_attributes", "a key is empty"));
        }
        check_span_fields(&self.span_fields)?;
        let tls = self.read_tls()?;
        let endpoint = self.checked_endpoint(&tls, endpoint_env)?;
        let metrics = self.checked_metrics(&endpoint, &headers, &tls, endpoint_env)?;
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
            metrics,
        })
    }

    /// With `metrics_interval_millis`: where metrics go and with which headers. A logs
    /// endpoint that gives no metrics URL is no error: metrics are then off, and the layer
    /// says so once.
    fn checked_metrics(
        &self,
        logs_endpoint: &str,
        logs_headers: &Headers,
        tls: &Tls,
        env: Env<'_>,
    ) -> Result<Option<MetricsSettings>, Error> {
        if self.metrics_interval_millis == 0 {
            return Ok(None);
        }
        let headers = if self.metrics_headers.is_empty() {
            logs_headers.clone()
        } else {
            checked_headers("metrics_headers", &self.metrics_headers)?
        };
        let endpoint = endpoint::metrics(
            self.protocol,
            self.metrics_endpoint.as_deref(),
            logs_endpoint,
            self.insecure,
            env,
        )?;
        if let Ok(url) = &endpoint {
            let shown = crate::redact::url(url);
            if tls.is_custom() && !url.starts_with("https://") {
                return Err(Error::config(
                    "metrics_endpoint",
                    format!(
                        "`{shown}` is not https://, but TLS files are set: metrics go with the \
                         logs' TLS"
                    ),
                ));
            }
            if url.starts_with("https://")
                && self.protocol != Protocol::Grpc
                && !cfg!(feature = "tls")
            {
                return Err(Error::config(
                    "metrics_endpoint",
                    format!("`{shown}` is https://, which {}", missing_feature("tls")),
                ));
            }
        }
        Ok(Some(MetricsSettings {
            interval: Duration::from_millis(self.metrics_interval_millis),
            endpoint,
            headers,
        }))
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
            ("metrics_interval_millis", self.metrics_interval_millis),
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
    fn checked_endpoint(&self, tls: &Tls, env: Env<'_>) -> Result<String, Error> {
        let endpoint =
            endpoint::resolve(self.protocol, self.endpoint.as_deref(), self.insecure, env)?;
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

/// `headers` as HTTP takes them; a bad one is named (with `field`), its value never echoed.
fn checked_headers(
    field: &str,
    headers: &std::collections::HashMap<String, String>,
) -> Result<Headers, Error> {
    let mut checked = Vec::with_capacity(headers.len());
    for (name, value) in headers {
        let header_name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            Error::config(field, format!("`{name}` is not a valid HTTP header name"))
        })?;
        // The value is not echoed: it is usually a credential.
        let mut header_value = HeaderValue::from_str(value).map_err(|_| {
            Error::config(
                field,
                format!(
                    "the value of `{name}` is not a valid HTTP header value \
                     (control characters or non-ASCII)"
                ),
            )
        })?;
        // h2's and the clients' own debug output then print `Sensitive`.
        header_value.set_sensitive(true);
        checked.push((header_name, header_value));
    }
    Ok(Headers(checked))
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
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    /// The full URL requests go to.
    pub(crate) endpoint: String,
    pub(crate) protocol: Protocol,
    pub(crate) compression: Compression,
    pub(crate) timeout: Duration,
    pub(crate) headers: Headers,
    /// Read by the transports with TLS only (`tls`, `grpc`).
    #[cfg_attr(not(any(feature = "tls", feature = "grpc")), allow(dead_code))]
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
    /// With `metrics_interval_millis`: the metrics' export (`src/metrics`).
    pub(crate) metrics: Option<MetricsSettings>,
}

/// Where and how often the layer's own metrics go.
#[derive(Clone, Debug)]
pub(crate) struct MetricsSettings {
    pub(crate) interval: Duration,
    /// The metrics URL (OTLP/HTTP) or gRPC endpoint; `Err` says why the logs' endpoint gives
    /// none (metrics are then off, said once).
    pub(crate) endpoint: Result<String, String>,
    /// `metrics_headers`, else the logs' `headers`.
    pub(crate) headers: Headers,
}

/// Headers (gRPC metadata) as HTTP takes them, each value marked sensitive; printed by name
/// only, values are usually credentials.
#[derive(Clone, Default)]
pub(crate) struct Headers(Vec<(HeaderName, HeaderValue)>);

impl Headers {
    pub(crate) fn iter(&self) -> std::slice::Iter<'_, (HeaderName, HeaderValue)> {
        self.0.iter()
    }
}

impl<'a> IntoIterator for &'a Headers {
    type Item = &'a (HeaderName, HeaderValue);
    type IntoIter = std::slice::Iter<'a, (HeaderName, HeaderValue)>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(name, _)| name))
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
