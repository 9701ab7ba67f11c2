//! Strict OTLP/JSON decoding.
//!
//! `opentelemetry-proto`'s serde impls read lowerCamelCase keys, hex ids and
//! 64-bit integers as strings or numbers, but every message is
//! `#[serde(default)]` and unknown keys are skipped: a snake_case payload
//! (`{"resource_logs": [...]}`) decodes to an *empty* request instead of
//! failing. A real collector refuses such payloads, and so does this receiver:
//! before handing the body to serde it checks the shape the
//! [OTLP/JSON encoding] requires.
//!
//! [OTLP/JSON encoding]: https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use serde_json::Value;

/// Decodes an OTLP/JSON `ExportLogsServiceRequest`, or explains why it is not one.
///
/// With `proto_field_names`, keys may also be spelled as the proto fields (`resource_logs`,
/// `string_value`) and optional fields may be `null`, as protobuf JSON parsers accept and as
/// ZenML's Python `otel` log store sends: such a body is first rewritten to the spec's shape.
pub(super) fn decode(
    body: &[u8],
    proto_field_names: bool,
) -> Result<ExportLogsServiceRequest, String> {
    let mut value: Value =
        serde_json::from_slice(body).map_err(|e| format!("invalid OTLP/JSON body: {e}"))?;
    if proto_field_names {
        value = to_json_names(value);
    }
    check_shape(&value)?;
    serde_json::from_value(value)
        .map_err(|e| format!("invalid OTLP/JSON ExportLogsServiceRequest: {e}"))
}

/// Renames every object key to its lowerCamelCase JSON name and drops `null` members. Only
/// keys are touched: attribute names are values (`{"key": "zenml.log_store.id"}`).
fn to_json_names(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, child)| !child.is_null())
                .map(|(key, child)| (lower_camel_case(&key), to_json_names(child)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(to_json_names).collect()),
        other => other,
    }
}

/// The checks serde does not do: a top-level `resourceLogs`, lowerCamelCase keys
/// everywhere, and trace/span ids as hex strings of the right length.
fn check_shape(value: &Value) -> Result<(), String> {
    let Value::Object(top) = value else {
        return Err("OTLP/JSON ExportLogsServiceRequest must be a JSON object".into());
    };
    let mut problem = None;
    walk(value, &mut String::new(), &mut problem);
    if !top.contains_key("resourceLogs") {
        // rotel's wording, plus the reason when it is a snake_case spelling.
        return Err(match problem {
            Some(Problem::SnakeCase { key, .. }) if key == "resource_logs" => {
                "missing field `resourceLogs` (found `resource_logs`: OTLP/JSON keys are lowerCamelCase)"
                    .to_owned()
            }
            _ => "missing field `resourceLogs`".to_owned(),
        });
    }
    match problem {
        None => Ok(()),
        Some(problem) => Err(problem.to_string()),
    }
}

#[derive(Debug)]
enum Problem {
    /// A key with an underscore: the proto field name instead of its lowerCamelCase JSON name.
    SnakeCase { key: String, at: String },
    /// A `traceId`/`spanId` that is not a hex string of the expected length.
    BadId {
        key: &'static str,
        at: String,
        found: String,
    },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::SnakeCase { key, at } => write!(
                f,
                "unknown field `{key}` at {at}: OTLP/JSON keys are lowerCamelCase (`{}`)",
                lower_camel_case(key)
            ),
            Problem::BadId { key, at, found } => {
                let digits = if *key == "traceId" { 32 } else { 16 };
                write!(
                    f,
                    "invalid `{key}` at {at}: OTLP/JSON ids are hex strings of {digits} digits \
                     (or empty), found {found}"
                )
            }
        }
    }
}

/// Records the first problem found in document order; `at` is a JSONPath-like location.
fn walk(value: &Value, at: &mut String, problem: &mut Option<Problem>) {
    if problem.is_some() {
        return;
    }
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let outer = at.len();
                at.push('.');
                at.push_str(key);
                if key.contains('_') {
                    *problem = Some(Problem::SnakeCase {
                        key: key.clone(),
                        at: location(at, outer),
                    });
                    return;
                }
                let id = match key.as_str() {
                    "traceId" => Some(("traceId", 32)),
                    "spanId" => Some(("spanId", 16)),
                    _ => None,
                };
                if let Some((key, digits)) = id {
                    if !is_hex_id(child, digits) {
                        *problem = Some(Problem::BadId {
                            key,
                            at: location(at, at.len()),
                            found: child.to_string(),
                        });
                        return;
                    }
                }
                walk(child, at, problem);
                at.truncate(outer);
                if problem.is_some() {
                    return;
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let outer = at.len();
                at.push_str(&format!("[{i}]"));
                walk(item, at, problem);
                at.truncate(outer);
                if problem.is_some() {
                    return;
                }
            }
        }
        _ => {}
    }
}

/// `$` followed by the path up to `end` (the enclosing object for a bad key).
fn location(at: &str, end: usize) -> String {
    format!("${}", &at[..end])
}

fn is_hex_id(value: &Value, digits: usize) -> bool {
    match value {
        Value::String(s) => {
            s.is_empty() || (s.len() == digits && s.bytes().all(|b| b.is_ascii_hexdigit()))
        }
        _ => false,
    }
}

fn lower_camel_case(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = !out.is_empty();
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;

    const SPEC: &str = r#"{
      "resourceLogs": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "svc"}}]},
        "scopeLogs": [{
          "scope": {"name": "zenml-otel"},
          "logRecords": [{
            "timeUnixNano": "1700000000000000001",
            "observedTimeUnixNano": 1700000000000000002,
            "severityNumber": 9,
            "severityText": "INFO",
            "traceId": "5b8efff798038103d269b633813fc60c",
            "spanId": "eee19b7ec3c1b174",
            "body": {"stringValue": "hello"},
            "attributes": [
              {"key": "as_string", "value": {"intValue": "42"}},
              {"key": "as_number", "value": {"intValue": 43}},
              {"key": "bytes", "value": {"bytesValue": "AAE="}}
            ]
          }]
        }]
      }]
    }"#;

    #[test]
    fn decodes_spec_json() {
        let request = decode(SPEC.as_bytes(), false).unwrap();
        let record = &request.resource_logs[0].scope_logs[0].log_records[0];
        assert_eq!(record.time_unix_nano, 1_700_000_000_000_000_001);
        assert_eq!(record.observed_time_unix_nano, 1_700_000_000_000_000_002);
        assert_eq!(record.severity_number, 9);
        assert_eq!(record.trace_id.len(), 16);
        assert_eq!(record.trace_id[0], 0x5b);
        assert_eq!(
            record.span_id,
            [0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x74]
        );
        let values: Vec<_> = record
            .attributes
            .iter()
            .map(|kv| kv.value.as_ref().unwrap().value.clone().unwrap())
            .collect();
        assert_eq!(values[0], AnyValue::IntValue(42));
        assert_eq!(values[1], AnyValue::IntValue(43));
        assert_eq!(values[2], AnyValue::BytesValue(vec![0, 1]));
    }

    #[test]
    fn serde_alone_accepts_snake_case_as_empty() {
        // The reason for the shape check: serde silently drops unknown keys.
        let lenient: ExportLogsServiceRequest =
            serde_json::from_str(r#"{"resource_logs": [{"scope_logs": []}]}"#).unwrap();
        assert!(lenient.resource_logs.is_empty());
    }

    #[test]
    fn rejects_snake_case_keys() {
        let top = decode(br#"{"resource_logs": []}"#, false).unwrap_err();
        assert!(top.starts_with("missing field `resourceLogs`"), "{top}");
        assert!(top.contains("lowerCamelCase"), "{top}");

        assert_eq!(
            decode(b"{}", false).unwrap_err(),
            "missing field `resourceLogs`"
        );

        let nested = SPEC.replace("\"logRecords\"", "\"log_records\"");
        let error = decode(nested.as_bytes(), false).unwrap_err();
        assert_eq!(
            error,
            "unknown field `log_records` at $.resourceLogs[0].scopeLogs[0]: \
             OTLP/JSON keys are lowerCamelCase (`logRecords`)"
        );

        let value = SPEC.replace("\"stringValue\": \"hello\"", "\"string_value\": \"hello\"");
        assert!(decode(value.as_bytes(), false)
            .unwrap_err()
            .contains("`string_value`"));
    }

    #[test]
    fn rejects_bad_ids() {
        // base64 (the generic protobuf JSON mapping), not hex.
        let base64 = SPEC.replace(
            "5b8efff798038103d269b633813fc60c",
            "W47/95gDgQPSabYzgT/GDA==",
        );
        let error = decode(base64.as_bytes(), false).unwrap_err();
        assert!(
            error.starts_with(
                "invalid `traceId` at $.resourceLogs[0].scopeLogs[0].logRecords[0].traceId"
            ),
            "{error}"
        );
        let short = SPEC.replace("eee19b7ec3c1b174", "eee19b7e");
        assert!(decode(short.as_bytes(), false)
            .unwrap_err()
            .contains("`spanId`"));
        let prefixed = SPEC.replace("eee19b7ec3c1b174", "0xeee19b7ec3c1b1");
        assert!(decode(prefixed.as_bytes(), false).is_err());
        let empty = SPEC.replace("eee19b7ec3c1b174", "");
        assert!(
            decode(empty.as_bytes(), false).unwrap().resource_logs[0].scope_logs[0].log_records[0]
                .span_id
                .is_empty()
        );
    }

    #[test]
    fn rejects_non_objects_and_bad_types() {
        assert!(decode(b"[]", false)
            .unwrap_err()
            .contains("must be a JSON object"));
        assert!(decode(b"not json", false)
            .unwrap_err()
            .starts_with("invalid OTLP/JSON body"));
        let named_enum = SPEC.replace(
            "\"severityNumber\": 9",
            "\"severityNumber\": \"SEVERITY_NUMBER_INFO\"",
        );
        assert!(decode(named_enum.as_bytes(), false)
            .unwrap_err()
            .starts_with("invalid OTLP/JSON ExportLogsServiceRequest"));
    }

    #[test]
    fn camel_cases_keys() {
        assert_eq!(lower_camel_case("resource_logs"), "resourceLogs");
        assert_eq!(
            lower_camel_case("observed_time_unix_nano"),
            "observedTimeUnixNano"
        );
        assert_eq!(lower_camel_case("_x"), "x");
    }

    /// What ZenML 0.98's Python `otel` log store posts (trimmed from a captured request).
    const ZENML: &str = r#"{"resource_logs": [{
      "resource": {"attributes": [{"key": "service.name", "value": {"string_value": "zenml-pipelines"}}],
                   "dropped_attributes_count": 0},
      "scope_logs": [{
        "scope": {"name": "c56b45f8-66d7-41ca-a18f-d191fe71cc6b", "version": null, "schema_url": "", "attributes": null},
        "log_records": [{
          "time_unix_nano": 1795493419047869440, "observed_time_unix_nano": 1795493420416524977,
          "flags": 0, "body": {"string_value": "loading rows"}, "severity_text": "INFO",
          "attributes": [{"key": "zenml.log_store.id", "value": {"string_value": "da5eb578"}}],
          "dropped_attributes_count": 0, "severity_number": 9
        }],
        "schema_url": ""
      }],
      "schema_url": ""
    }]}"#;

    #[test]
    fn proto_field_names_only_when_asked() {
        let strict = decode(ZENML.as_bytes(), false).unwrap_err();
        assert!(strict.contains("resource_logs"), "{strict}");
        let request = decode(ZENML.as_bytes(), true).unwrap();
        let logs = &request.resource_logs[0].scope_logs[0];
        assert_eq!(
            logs.scope.as_ref().unwrap().name,
            "c56b45f8-66d7-41ca-a18f-d191fe71cc6b"
        );
        let record = &logs.log_records[0];
        assert_eq!(record.time_unix_nano, 1_795_493_419_047_869_440);
        assert_eq!(record.severity_number, 9);
        assert_eq!(record.severity_text, "INFO");
        let body = record.body.as_ref().and_then(|b| b.value.clone());
        assert_eq!(body, Some(AnyValue::StringValue("loading rows".into())));
        // Attribute names are values, not keys: their underscores stay.
        assert_eq!(record.attributes[0].key, "zenml.log_store.id");
        // Spec JSON still decodes in the lenient mode.
        assert!(decode(SPEC.as_bytes(), true).is_ok());
    }
}
