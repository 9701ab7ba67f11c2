//! The environment layer of the configuration: standard OpenTelemetry variables and ZenML's own.
//! A field left at its default takes the first variable set (non-empty) from its list; a
//! malformed value is an error naming the variable.

use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;

use super::OtelLogStoreConfig;
use crate::Error;

use crate::environ::Env;

/// Variables for each field, first match wins. The endpoint variables are read by the endpoint
/// rules, which depend on the protocol.
pub(super) const SERVICE_NAME: &[&str] = &["OTEL_SERVICE_NAME"];
pub(super) const RESOURCE_ATTRIBUTES: &[&str] = &["OTEL_RESOURCE_ATTRIBUTES"];
pub(crate) const HEADERS: &[&str] = &[
    "OTEL_EXPORTER_OTLP_LOGS_HEADERS",
    "OTEL_EXPORTER_OTLP_HEADERS",
];
pub(super) const PROTOCOL: &[&str] = &[
    "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
];
pub(super) const COMPRESSION: &[&str] = &[
    "OTEL_EXPORTER_OTLP_LOGS_COMPRESSION",
    "OTEL_EXPORTER_OTLP_COMPRESSION",
];
pub(super) const INSECURE: &[&str] = &[
    "OTEL_EXPORTER_OTLP_LOGS_INSECURE",
    "OTEL_EXPORTER_OTLP_INSECURE",
];
pub(super) const CERTIFICATE: &[&str] = &[
    "OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_CERTIFICATE",
];
pub(super) const CLIENT_KEY: &[&str] = &[
    "OTEL_EXPORTER_OTLP_LOGS_CLIENT_KEY",
    "OTEL_EXPORTER_OTLP_CLIENT_KEY",
];
pub(super) const CLIENT_CERTIFICATE: &[&str] = &[
    "OTEL_EXPORTER_OTLP_LOGS_CLIENT_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
];
pub(super) const MAX_QUEUE_SIZE: &[&str] =
    &["ZENML_LOGS_OTEL_MAX_QUEUE_SIZE", "OTEL_BLRP_MAX_QUEUE_SIZE"];
pub(super) const SCHEDULE_DELAY: &[&str] = &[
    "ZENML_LOGS_OTEL_SCHEDULE_DELAY_MILLIS",
    "OTEL_BLRP_SCHEDULE_DELAY",
];
pub(super) const MAX_EXPORT_BATCH_SIZE: &[&str] = &[
    "ZENML_LOGS_OTEL_MAX_EXPORT_BATCH_SIZE",
    "OTEL_BLRP_MAX_EXPORT_BATCH_SIZE",
];
pub(super) const MAX_EXPORT_BATCH_BYTES: &[&str] = &["ZENML_OTEL_MAX_EXPORT_BATCH_BYTES"];
pub(super) const MAX_RETRY_ELAPSED: &[&str] = &["ZENML_OTEL_MAX_RETRY_ELAPSED_MILLIS"];
pub(super) const SPAN_FIELDS: &[&str] = &["ZENML_OTEL_SPAN_FIELDS"];
pub(super) const ATTRIBUTE_VALUE_LENGTH_LIMIT: &[&str] = &[
    "OTEL_LOGRECORD_ATTRIBUTE_VALUE_LENGTH_LIMIT",
    "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT",
];
pub(super) const ATTRIBUTE_COUNT_LIMIT: &[&str] = &[
    "OTEL_LOGRECORD_ATTRIBUTE_COUNT_LIMIT",
    "OTEL_ATTRIBUTE_COUNT_LIMIT",
];
pub(super) const MAX_QUEUE_BYTES: &[&str] = &["ZENML_OTEL_MAX_QUEUE_BYTES"];
pub(super) const SPOOL_DIR: &[&str] = &["ZENML_OTEL_SPOOL_DIR"];
pub(super) const MAX_SPOOL_BYTES: &[&str] = &["ZENML_OTEL_MAX_SPOOL_BYTES"];
pub(super) const SPOOL_SYNC: &[&str] = &["ZENML_OTEL_SPOOL_SYNC_MILLIS"];
pub(super) const EXPORT_TIMEOUT: &[&str] = &[
    "ZENML_LOGS_OTEL_EXPORT_TIMEOUT_MILLIS",
    "OTEL_BLRP_EXPORT_TIMEOUT",
    "OTEL_EXPORTER_OTLP_LOGS_TIMEOUT",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
];

/// Overrides every field still at its default with the environment's value.
pub(super) fn overlay(cfg: OtelLogStoreConfig, env: Env<'_>) -> Result<OtelLogStoreConfig, Error> {
    let mut cfg = service_and_headers(cfg, env)?;
    let default = OtelLogStoreConfig::default();
    // Each field: the variables it is read from, and how a value is parsed.
    macro_rules! from_env {
        ($($field:ident: $names:expr => $parse:expr),* $(,)?) => {
            $(set_parsed(&mut cfg.$field, default.$field, env, $names, $parse)?;)*
        };
    }
    from_env! {
        protocol: PROTOCOL => |v| v.parse(),
        compression: COMPRESSION => |v| v.parse(),
        insecure: INSECURE => parse_bool,
        export_timeout_millis: EXPORT_TIMEOUT => at_most(super::MAX_MILLIS),
        max_queue_size: MAX_QUEUE_SIZE => at_most(super::MAX_QUEUE_SIZE),
        schedule_delay_millis: SCHEDULE_DELAY => at_most(super::MAX_MILLIS),
        max_export_batch_size: MAX_EXPORT_BATCH_SIZE => at_most(super::MAX_QUEUE_SIZE),
        max_export_batch_bytes: MAX_EXPORT_BATCH_BYTES => parse_number,
        max_retry_elapsed_millis: MAX_RETRY_ELAPSED => at_most(super::MAX_MILLIS),
        attribute_value_length_limit: ATTRIBUTE_VALUE_LENGTH_LIMIT => |v| parse_number(v).map(Some),
        attribute_count_limit: ATTRIBUTE_COUNT_LIMIT => parse_number,
        span_fields: SPAN_FIELDS => parse_names,
        max_queue_bytes: MAX_QUEUE_BYTES => parse_number,
        max_spool_bytes: MAX_SPOOL_BYTES => parse_number,
        spool_sync_millis: SPOOL_SYNC => at_most(super::MAX_MILLIS),
        spool_dir: SPOOL_DIR => |v| Ok(Some(PathBuf::from(v))),
    }
    // A smaller queue from the environment shrinks the default batch with it, as the SDKs do,
    // rather than failing on a batch size nobody chose.
    if cfg.max_export_batch_size == default.max_export_batch_size {
        cfg.max_export_batch_size = cfg.max_export_batch_size.min(cfg.max_queue_size.max(1));
    }
    for (field, names) in [
        (&mut cfg.certificate_file, CERTIFICATE),
        (&mut cfg.client_key_file, CLIENT_KEY),
        (&mut cfg.client_certificate_file, CLIENT_CERTIFICATE),
    ] {
        if field.is_none() {
            *field = first(env, names)?.map(|(_, value)| PathBuf::from(value));
        }
    }
    Ok(cfg)
}

/// The resource attributes, the service name (also from `service.name` among them, as the
/// spec says) and the headers.
fn service_and_headers(
    mut cfg: OtelLogStoreConfig,
    env: Env<'_>,
) -> Result<OtelLogStoreConfig, Error> {
    if cfg.resource_attributes.is_empty() {
        if let Some((name, value)) = first(env, RESOURCE_ATTRIBUTES)? {
            cfg.resource_attributes = parse_pairs(name, &value, "key=value,key=value")?;
        }
    }
    if cfg.service_name == OtelLogStoreConfig::default().service_name {
        if let Some((_, value)) = first(env, SERVICE_NAME)? {
            cfg.service_name = value;
        } else if let Some(name) = cfg.resource_attributes.get("service.name") {
            cfg.service_name = name.clone();
        }
    }
    if cfg.headers.is_empty() {
        if let Some((name, value)) = first(env, HEADERS)? {
            cfg.headers = parse_pairs(name, &value, "name=value,name=value")?;
        }
    }
    Ok(cfg)
}

/// The first variable of `names` that is set and not blank.
fn first(env: Env<'_>, names: &[&'static str]) -> Result<Option<(&'static str, String)>, Error> {
    for &name in names {
        if let Some(value) = env(name)?.filter(|value| !value.trim().is_empty()) {
            return Ok(Some((name, value)));
        }
    }
    Ok(None)
}

fn set_parsed<T: PartialEq>(
    field: &mut T,
    default: T,
    env: Env<'_>,
    names: &[&'static str],
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<(), Error> {
    if *field != default {
        return Ok(());
    }
    if let Some((name, value)) = first(env, names)? {
        *field = parse(value.trim()).map_err(|problem| Error::config(name, problem))?;
    }
    Ok(())
}

/// `a,b,c`: span field names, blanks between commas skipped.
fn parse_names(text: &str) -> Result<Vec<String>, String> {
    let names = text
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty());
    names
        .map(|name| match super::span_field_problem(name) {
            Some(problem) => Err(problem),
            None => Ok(name.to_owned()),
        })
        .collect()
}

fn parse_bool(text: &str) -> Result<bool, String> {
    match text.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!(
            "`{text}` is not a boolean; expected `true` or `false`"
        )),
    }
}

/// A whole number no larger than `max`: beyond it the variable is refused by name, before a
/// queue is allocated or a clock overflows.
fn at_most<T: FromStr + PartialOrd + std::fmt::Display + Copy>(
    max: T,
) -> impl Fn(&str) -> Result<T, String> {
    move |text| match parse_number(text)? {
        value if value > max => Err(format!("`{text}` is above the largest allowed, {max}")),
        value => Ok(value),
    }
}

fn parse_number<T: FromStr>(text: &str) -> Result<T, String> {
    text.parse()
        .map_err(|_| format!("`{text}` is not a whole number of the expected range"))
}

/// `k=v,k2=v2` with percent-encoded values, as the OpenTelemetry spec writes headers and
/// resource attributes. Values are never echoed in errors (headers carry credentials).
fn parse_pairs(name: &str, text: &str, shape: &str) -> Result<HashMap<String, String>, Error> {
    let mut pairs = HashMap::new();
    for (index, entry) in text.split(',').enumerate() {
        if entry.trim().is_empty() {
            continue;
        }
        let Some((key, value)) = entry.split_once('=') else {
            return Err(Error::config(
                name,
                format!("entry {} has no `=`; expected {shape}", index + 1),
            ));
        };
        let key = percent_decode(key.trim())
            .filter(|key| !key.is_empty())
            .ok_or_else(|| {
                Error::config(
                    name,
                    format!("entry {} has an empty or badly encoded key", index + 1),
                )
            })?;
        let value = percent_decode(value.trim()).ok_or_else(|| {
            Error::config(
                name,
                format!("the value of `{key}` is badly percent-encoded"),
            )
        })?;
        pairs.insert(key, value);
    }
    Ok(pairs)
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::environ::fixed as with;

    #[test]
    fn pairs_are_percent_decoded() {
        let pairs = parse_pairs("X", "a=b%20c, d=e%3Df,,", "").unwrap();
        assert_eq!(pairs["a"], "b c");
        assert_eq!(pairs["d"], "e=f");
        let error = parse_pairs("X", "Authorization=Bearer%ZZsecret", "").unwrap_err();
        assert!(!error.to_string().contains("secret"), "{error}");
        assert!(parse_pairs("X", "novalue", "").is_err());
    }

    #[test]
    fn explicit_fields_win_over_the_environment() {
        let env = with(&[
            ("OTEL_SERVICE_NAME", "from-env"),
            ("OTEL_BLRP_MAX_QUEUE_SIZE", "99"),
        ]);
        let explicit = OtelLogStoreConfig {
            service_name: "explicit".into(),
            ..Default::default()
        };
        let cfg = overlay(explicit, &env).unwrap();
        assert_eq!(cfg.service_name, "explicit");
        assert_eq!(cfg.max_queue_size, 99);
    }

    #[test]
    fn zenml_variables_win_over_otel_ones() {
        let env = with(&[
            ("OTEL_BLRP_SCHEDULE_DELAY", "5"),
            ("ZENML_LOGS_OTEL_SCHEDULE_DELAY_MILLIS", "7"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "3"),
            ("OTEL_EXPORTER_OTLP_LOGS_TIMEOUT", "4"),
        ]);
        let cfg = overlay(OtelLogStoreConfig::default(), &env).unwrap();
        assert_eq!(cfg.schedule_delay_millis, 7);
        assert_eq!(cfg.export_timeout_millis, 4);
    }
}
