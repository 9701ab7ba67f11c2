//! The environment source: how each field's variables (declared in `model.rs`) are parsed,
//! and which one is read. A malformed value is an error naming the variable; values are never
//! echoed for headers (they carry credentials).

use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;

use crate::environ::Env;
use crate::Error;

/// The first variable of `names` that is set and not blank.
pub(super) fn first(
    env: Env<'_>,
    names: &[&'static str],
) -> Result<Option<(&'static str, String)>, Error> {
    for &name in names {
        if let Some(value) = env(name)?.filter(|value| !value.trim().is_empty()) {
            return Ok(Some((name, value)));
        }
    }
    Ok(None)
}

/// Any text, as given.
pub(super) fn text(text: &str) -> Result<String, String> {
    Ok(text.to_owned())
}

/// Any text, for a field where `None` means not given.
pub(super) fn some_text(text: &str) -> Result<Option<String>, String> {
    Ok(Some(text.to_owned()))
}

/// A value of one of the configuration's enums, by its name.
pub(super) fn parsed<T: FromStr<Err = String>>(text: &str) -> Result<T, String> {
    text.parse()
}

/// A path.
pub(super) fn path(text: &str) -> Result<Option<PathBuf>, String> {
    Ok(Some(PathBuf::from(text)))
}

/// `name=value,name=value`, percent-encoded.
pub(super) fn headers(text: &str) -> Result<HashMap<String, String>, String> {
    parse_pairs(text, "name=value,name=value")
}

/// `key=value,key=value`, percent-encoded.
pub(super) fn attributes(text: &str) -> Result<HashMap<String, String>, String> {
    parse_pairs(text, "key=value,key=value")
}

/// `a,b,c`: span field names, blanks between commas skipped.
pub(super) fn names(text: &str) -> Result<Vec<String>, String> {
    let names = text
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty());
    names
        .map(|name| match super::validate::span_field_problem(name) {
            Some(problem) => Err(problem),
            None => Ok(name.to_owned()),
        })
        .collect()
}

pub(super) fn boolean(text: &str) -> Result<bool, String> {
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
pub(super) fn at_most<T: FromStr + PartialOrd + std::fmt::Display + Copy>(
    max: T,
) -> impl Fn(&str) -> Result<T, String> {
    move |text| match number(text)? {
        value if value > max => Err(format!("`{text}` is above the largest allowed, {max}")),
        value => Ok(value),
    }
}

pub(super) fn number<T: FromStr>(text: &str) -> Result<T, String> {
    text.parse()
        .map_err(|_| format!("`{text}` is not a whole number of the expected range"))
}

/// A whole number, for a field where `None` means no limit.
pub(super) fn some_number<T: FromStr>(text: &str) -> Result<Option<T>, String> {
    number(text).map(Some)
}

/// `k=v,k2=v2` with percent-encoded values, as the OpenTelemetry spec writes headers and
/// resource attributes. Values are never echoed in errors (headers carry credentials).
fn parse_pairs(text: &str, shape: &str) -> Result<HashMap<String, String>, String> {
    let mut pairs = HashMap::new();
    for (index, entry) in text.split(',').enumerate() {
        if entry.trim().is_empty() {
            continue;
        }
        let Some((key, value)) = entry.split_once('=') else {
            return Err(format!("entry {} has no `=`; expected {shape}", index + 1));
        };
        let key = percent_decode(key.trim())
            .filter(|key| !key.is_empty())
            .ok_or_else(|| format!("entry {} has an empty or badly encoded key", index + 1))?;
        let value = percent_decode(value.trim())
            .ok_or_else(|| format!("the value of `{key}` is badly percent-encoded"))?;
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
    use crate::{ExplicitConfig, OtelLogStoreConfig};

    /// `explicit` under the environment `env` alone.
    fn merged(explicit: impl Into<ExplicitConfig>, env: &[(&str, &str)]) -> OtelLogStoreConfig {
        explicit.into().merge(&with(env)).unwrap().config
    }

    #[test]
    fn pairs_are_percent_decoded() {
        let pairs = parse_pairs("a=b%20c, d=e%3Df,,", "").unwrap();
        assert_eq!(pairs["a"], "b c");
        assert_eq!(pairs["d"], "e=f");
        let error = parse_pairs("Authorization=Bearer%ZZsecret", "").unwrap_err();
        assert!(!error.contains("secret"), "{error}");
        assert!(parse_pairs("novalue", "").is_err());
    }

    #[test]
    fn explicit_fields_win_over_the_environment() {
        let env = [
            ("OTEL_SERVICE_NAME", "from-env"),
            ("OTEL_BLRP_MAX_QUEUE_SIZE", "99"),
        ];
        let explicit = OtelLogStoreConfig {
            service_name: "explicit".into(),
            ..Default::default()
        };
        let cfg = merged(explicit, &env);
        assert_eq!(cfg.service_name, "explicit");
        assert_eq!(cfg.max_queue_size, 99);
    }

    #[test]
    fn zenml_variables_win_over_otel_ones() {
        let env = [
            ("OTEL_BLRP_SCHEDULE_DELAY", "5"),
            ("ZENML_LOGS_OTEL_SCHEDULE_DELAY_MILLIS", "7"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "3"),
            ("OTEL_EXPORTER_OTLP_LOGS_TIMEOUT", "4"),
        ];
        let cfg = merged(OtelLogStoreConfig::default(), &env);
        assert_eq!(cfg.schedule_delay_millis, 7);
        assert_eq!(cfg.export_timeout_millis, 4);
    }
}
