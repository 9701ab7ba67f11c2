//! OTLP/JSON (the `http-json` feature): the protobuf request again, through opentelemetry-proto's
//! serde — a slow path, off by default.

/// OTLP/JSON for an encoded request: the same request, written by opentelemetry-proto's serde.
///
/// A double that is NaN or infinite has no JSON number; serde writes `null`, which is lossy
/// and makes rotel reject the whole request (HTTP 400), as it does proto3 JSON's `"NaN"`. Such
/// doubles go out as the strings `"NaN"`, `"Infinity"`, `"-Infinity"` instead: every collector
/// takes a string value, and the value survives. (Over protobuf they stay doubles.)
pub(crate) fn to_json(protobuf: &[u8]) -> Result<Vec<u8>, String> {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use prost::Message as _;

    let mut request = ExportLogsServiceRequest::decode(protobuf)
        .map_err(|e| format!("cannot re-read the encoded request: {e}"))?;
    for resource_logs in &mut request.resource_logs {
        for scope_logs in &mut resource_logs.scope_logs {
            for record in &mut scope_logs.log_records {
                record.body.iter_mut().for_each(finite_for_json);
                for attribute in &mut record.attributes {
                    attribute.value.iter_mut().for_each(finite_for_json);
                }
            }
        }
    }
    serde_json::to_vec(&request).map_err(|e| format!("cannot write the request as OTLP/JSON: {e}"))
}

fn finite_for_json(value: &mut opentelemetry_proto::tonic::common::v1::AnyValue) {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    match &mut value.value {
        Some(Value::DoubleValue(d)) if !d.is_finite() => {
            let text = if d.is_nan() {
                "NaN"
            } else if *d > 0.0 {
                "Infinity"
            } else {
                "-Infinity"
            };
            value.value = Some(Value::StringValue(text.to_owned()));
        }
        Some(Value::ArrayValue(array)) => array.values.iter_mut().for_each(finite_for_json),
        Some(Value::KvlistValue(list)) => list
            .values
            .iter_mut()
            .for_each(|kv| kv.value.iter_mut().for_each(finite_for_json)),
        _ => {}
    }
}
