//! Endpoint rules per protocol.
//!
//! - OTLP/HTTP: a base URL gets `/v1/logs` appended, a URL ending in `/v1/logs` is kept;
//!   `OTEL_EXPORTER_OTLP_LOGS_ENDPOINT` is used as is, `OTEL_EXPORTER_OTLP_ENDPOINT` as a base;
//!   default `http://localhost:4318/v1/logs`.
//! - gRPC: a URL without a path; a scheme-less `host[:port]` gets `http://` when `insecure`,
//!   `https://` otherwise, and port 4317 when it has none; the same for both variables;
//!   default `http://localhost:4317`.
//! - Metrics (`metrics_interval_millis`): `metrics_endpoint` (`OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`)
//!   as is (gRPC: by the gRPC rules); else for OTLP/HTTP the logs URL with its `/v1/logs`
//!   replaced by `/v1/metrics`, or, when the logs URL ends otherwise (an
//!   `OTEL_EXPORTER_OTLP_LOGS_ENDPOINT` used as is), `OTEL_EXPORTER_OTLP_ENDPOINT` +
//!   `/v1/metrics`; else none (metrics off). For gRPC the logs' endpoint (the metrics service
//!   is another method on it).

use http::Uri;

use super::model::vars;
use super::Protocol;
use crate::environ::Env;
use crate::Error;

const LOGS_PATH: &str = "/v1/logs";
const METRICS_PATH: &str = "/v1/metrics";
/// The endpoint's variables (`model.rs`): the signal's own, used as is, then the generic base.
const ENV_LOGS_ENDPOINT: &str = vars::endpoint[0];
const ENV_ENDPOINT: &str = vars::endpoint[1];

/// The URL requests go to: the configured endpoint, else the environment, else the default.
pub(super) fn resolve(
    protocol: Protocol,
    configured: Option<&str>,
    insecure: bool,
    env: Env<'_>,
) -> Result<String, Error> {
    let env = |name: &str| Ok::<_, Error>(env(name)?.filter(|value| !value.trim().is_empty()));
    if protocol == Protocol::Grpc {
        let (field, endpoint) = match configured {
            Some(endpoint) => ("endpoint", endpoint.to_owned()),
            None => match env(ENV_LOGS_ENDPOINT)? {
                Some(endpoint) => (ENV_LOGS_ENDPOINT, endpoint),
                None => match env(ENV_ENDPOINT)? {
                    Some(endpoint) => (ENV_ENDPOINT, endpoint),
                    None => return Ok("http://localhost:4317".to_owned()),
                },
            },
        };
        return grpc_url(field, &endpoint, insecure);
    }
    if let Some(endpoint) = configured {
        return logs_url("endpoint", endpoint);
    }
    if let Some(endpoint) = env(ENV_LOGS_ENDPOINT)? {
        check_url(ENV_LOGS_ENDPOINT, endpoint.trim())?;
        return Ok(endpoint.trim().to_owned());
    }
    if let Some(endpoint) = env(ENV_ENDPOINT)? {
        return logs_url(ENV_ENDPOINT, &endpoint);
    }
    logs_url("endpoint", "http://localhost:4318")
}

/// Where the layer's metrics go: `Ok(Err(why))` when the logs' endpoint gives no metrics URL.
pub(super) fn metrics(
    protocol: Protocol,
    configured: Option<&str>,
    logs_endpoint: &str,
    insecure: bool,
    env: Env<'_>,
) -> Result<Result<String, String>, Error> {
    const FIELD: &str = "metrics_endpoint";
    let configured = configured.filter(|endpoint| !endpoint.trim().is_empty());
    if protocol == Protocol::Grpc {
        return match configured {
            Some(endpoint) => grpc_url(FIELD, endpoint, insecure).map(Ok),
            None => Ok(Ok(logs_endpoint.to_owned())),
        };
    }
    if let Some(endpoint) = configured {
        check_url(FIELD, endpoint.trim())?;
        return Ok(Ok(endpoint.trim().to_owned()));
    }
    if let Some(base) = logs_endpoint.strip_suffix(LOGS_PATH) {
        return Ok(Ok(format!("{base}{METRICS_PATH}")));
    }
    if let Some(base) = env(ENV_ENDPOINT)?.filter(|value| !value.trim().is_empty()) {
        check_url(ENV_ENDPOINT, base.trim())?;
        return Ok(Ok(format!(
            "{}{METRICS_PATH}",
            base.trim().trim_end_matches('/')
        )));
    }
    Ok(Err(format!(
        "the logs' endpoint `{}` does not end in {LOGS_PATH}, so it gives no metrics URL; set \
         metrics_endpoint (OTEL_EXPORTER_OTLP_METRICS_ENDPOINT) or OTEL_EXPORTER_OTLP_ENDPOINT",
        crate::redact::url(logs_endpoint)
    )))
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

fn grpc_url(field: &str, endpoint: &str, insecure: bool) -> Result<String, Error> {
    let endpoint = endpoint.trim();
    let url = if endpoint.contains("://") {
        endpoint.to_owned()
    } else {
        let scheme = if insecure { "http" } else { "https" };
        let with_scheme = format!("{scheme}://{endpoint}");
        let has_port = with_scheme
            .parse::<Uri>()
            .ok()
            .is_some_and(|uri| uri.port().is_some());
        if has_port {
            with_scheme
        } else {
            format!("{}:4317", with_scheme.trim_end_matches('/'))
        }
    };
    let uri = check_url(field, &url)?;
    if !matches!(uri.path(), "" | "/") {
        let shown = crate::redact::url(endpoint);
        return Err(Error::config(
            field,
            format!("`{shown}` has a path; an OTLP/gRPC endpoint is scheme://host:port only"),
        ));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

/// Errors show the endpoint without userinfo or query string (`redact::url`): they carry keys.
fn check_url(field: &str, endpoint: &str) -> Result<Uri, Error> {
    let shown = crate::redact::url(endpoint);
    let uri: Uri = endpoint
        .parse()
        .map_err(|e| Error::config(field, format!("`{shown}` is not a URL")).caused_by(e))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(other) => {
            return Err(Error::config(
                field,
                format!("`{shown}` has scheme `{other}`; OTLP needs http:// or https://"),
            ))
        }
        None => {
            return Err(Error::config(
                field,
                format!("`{shown}` is not a URL: it has no scheme (http:// or https://)"),
            ))
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(Error::config(
            field,
            format!("`{shown}` is not a URL: it has no host"),
        ));
    }
    if uri.query().is_some() {
        return Err(Error::config(
            field,
            format!("`{shown}` has a query string, which OTLP endpoints do not take"),
        ));
    }
    Ok(uri)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn http(
        configured: Option<&str>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<String, Error> {
        resolve(Protocol::HttpProtobuf, configured, false, &|name| {
            Ok(env(name))
        })
    }

    #[test]
    fn http_base_urls_get_the_logs_path_and_full_urls_are_kept() {
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
            assert_eq!(http(Some(given), &no_env).unwrap(), expected);
        }
    }

    #[test]
    fn http_environment_is_the_fallback_in_spec_order() {
        let both = |name: &str| match name {
            ENV_LOGS_ENDPOINT => Some("http://logs:1/custom".to_owned()),
            ENV_ENDPOINT => Some("http://base:2".to_owned()),
            _ => None,
        };
        assert_eq!(http(None, &both).unwrap(), "http://logs:1/custom");
        let base = |name: &str| (name == ENV_ENDPOINT).then(|| "http://base:2".to_owned());
        assert_eq!(http(None, &base).unwrap(), "http://base:2/v1/logs");
        assert_eq!(
            http(None, &no_env).unwrap(),
            "http://localhost:4318/v1/logs"
        );
        assert_eq!(
            http(Some("http://explicit:3"), &base).unwrap(),
            "http://explicit:3/v1/logs"
        );
    }

    #[test]
    fn a_bad_environment_endpoint_names_the_variable() {
        let env = |name: &str| (name == ENV_ENDPOINT).then(|| "not a url".to_owned());
        assert_eq!(http(None, &env).unwrap_err().field(), Some(ENV_ENDPOINT));
    }

    fn metrics_http(
        configured: Option<&str>,
        logs: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<String, String> {
        metrics(Protocol::HttpProtobuf, configured, logs, false, &|name| {
            Ok(env(name))
        })
        .unwrap()
    }

    #[test]
    fn metrics_urls_follow_the_logs_unless_given() {
        let logs = "http://c:4318/prefix/v1/logs";
        assert_eq!(
            metrics_http(None, logs, &no_env).unwrap(),
            "http://c:4318/prefix/v1/metrics",
            "the logs' /v1/logs is replaced"
        );
        assert_eq!(
            metrics_http(Some("http://m:1/custom"), logs, &no_env).unwrap(),
            "http://m:1/custom",
            "metrics_endpoint is used as is"
        );
        let base = |name: &str| (name == ENV_ENDPOINT).then(|| "http://base:2/".to_owned());
        assert_eq!(
            metrics_http(None, "http://logs:1/custom", &base).unwrap(),
            "http://base:2/v1/metrics",
            "a custom logs URL: the base variable + /v1/metrics"
        );
        let why = metrics_http(None, "http://logs:1/custom", &no_env).unwrap_err();
        assert!(why.contains("gives no metrics URL"), "{why}");
        let error = metrics(
            Protocol::HttpProtobuf,
            Some("ftp://m"),
            logs,
            false,
            &|_| Ok(None),
        )
        .unwrap_err();
        assert_eq!(error.field(), Some("metrics_endpoint"));
        let grpc = |configured| {
            metrics(Protocol::Grpc, configured, "http://c:4317", true, &|_| {
                Ok(None)
            })
            .unwrap()
        };
        assert_eq!(
            grpc(None).unwrap(),
            "http://c:4317",
            "gRPC: the same endpoint"
        );
        assert_eq!(grpc(Some("m:9")).unwrap(), "http://m:9", "gRPC rules apply");
    }

    #[test]
    fn grpc_rules() {
        let grpc =
            |configured, insecure| resolve(Protocol::Grpc, configured, insecure, &|_| Ok(None));
        assert_eq!(grpc(None, false).unwrap(), "http://localhost:4317");
        assert_eq!(
            grpc(Some("collector:4317"), true).unwrap(),
            "http://collector:4317"
        );
        assert_eq!(
            grpc(Some("collector:4317"), false).unwrap(),
            "https://collector:4317"
        );
        assert_eq!(
            grpc(Some("collector"), true).unwrap(),
            "http://collector:4317"
        );
        // insecure never downgrades an explicit https:// endpoint.
        assert_eq!(
            grpc(Some("https://c:4317"), true).unwrap(),
            "https://c:4317"
        );
        assert_eq!(
            grpc(Some("http://c:4317/"), false).unwrap(),
            "http://c:4317"
        );
        let error = grpc(Some("http://c:4317/v1/logs"), false).unwrap_err();
        assert!(error.to_string().contains("has a path"), "{error}");
        let env = |name: &str| (name == ENV_ENDPOINT).then(|| "http://base:4317".to_owned());
        assert_eq!(
            resolve(Protocol::Grpc, None, false, &|name| Ok(env(name))).unwrap(),
            "http://base:4317",
            "gRPC takes the base variable as is"
        );
    }
}
