//! OTLP/protobuf encoding of a batch: one `ExportLogsServiceRequest` holding a `ResourceLogs`
//! per run, a `ScopeLogs` per target within it.
//!
//! opentelemetry-otlp encodes through opentelemetry-proto's structs: per record it builds and
//! hashes an owned `InstrumentationScope`, copies every key and string into a `KeyValue` tree,
//! then prost walks that tree twice (lengths, bytes) and it is freed — about 1.6 µs a record
//! here, most of the export threads' time — and it takes one resource per call, so a batch
//! that spans many runs costs a request per run. This writes the same bytes straight from the
//! records with prost's wire primitives: every length is computed once, nothing is copied but
//! into the output, a run's resource is encoded once for its lifetime. The tests hold it to
//! byte equality with opentelemetry-proto's own conversion, the reference. OTLP/JSON is that
//! request again, through opentelemetry-proto's serde (`to_json`, with the `http-json` feature).

// A build with gRPC alone sends through opentelemetry-otlp's encoding; the sizes still come
// from here.
#![cfg_attr(not(feature = "http-proto"), allow(dead_code))]

use opentelemetry::logs::AnyValue;
use opentelemetry::Key;
use opentelemetry_proto::tonic::common::v1 as proto;
use opentelemetry_sdk::logs::SdkLogRecord;
use prost::encoding::{encode_key, encode_varint, encoded_len_varint, WireType};
use prost::Message as _;

use super::QueuedRecord;
use crate::span_context::Run;

/// The scope name of a record without a target (our layer always sets one).
pub(crate) const DEFAULT_SCOPE: &str = "zenml-otel";

/// Field numbers of the OTLP messages written here (opentelemetry-proto's `.proto` files).
mod tag {
    pub(super) const REQUEST_RESOURCE_LOGS: u32 = 1;
    pub(super) const RESOURCE_LOGS_RESOURCE: u32 = 1;
    pub(super) const RESOURCE_LOGS_SCOPE_LOGS: u32 = 2;
    pub(super) const RESOURCE_LOGS_SCHEMA_URL: u32 = 3;
    pub(super) const SCOPE_LOGS_SCOPE: u32 = 1;
    pub(super) const SCOPE_LOGS_LOG_RECORDS: u32 = 2;
    pub(super) const SCOPE_NAME: u32 = 1;
    pub(super) const TIME_UNIX_NANO: u32 = 1;
    pub(super) const SEVERITY_NUMBER: u32 = 2;
    pub(super) const SEVERITY_TEXT: u32 = 3;
    pub(super) const BODY: u32 = 5;
    pub(super) const ATTRIBUTES: u32 = 6;
    pub(super) const DROPPED_ATTRIBUTES_COUNT: u32 = 7;
    pub(super) const FLAGS: u32 = 8;
    pub(super) const TRACE_ID: u32 = 9;
    pub(super) const SPAN_ID: u32 = 10;
    pub(super) const OBSERVED_TIME_UNIX_NANO: u32 = 11;
    pub(super) const EVENT_NAME: u32 = 12;
    pub(super) const KEY_VALUE_KEY: u32 = 1;
    pub(super) const KEY_VALUE_VALUE: u32 = 2;
    pub(super) const STRING_VALUE: u32 = 1;
    pub(super) const BOOL_VALUE: u32 = 2;
    pub(super) const INT_VALUE: u32 = 3;
    pub(super) const DOUBLE_VALUE: u32 = 4;
}

/// A run's encoded `resource` field and `schema_url` field: the same for every batch the run
/// appears in, so encoded once (by its first batch) and kept with the run.
#[derive(Debug)]
pub(crate) struct EncodedResource {
    resource: Box<[u8]>,
    schema_url: Box<[u8]>,
}

impl EncodedResource {
    fn of(run: &Run) -> &Self {
        run.encoded.get_or_init(|| {
            let attributes =
                opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema::from(
                    &run.resource,
                );
            let resource = opentelemetry_proto::tonic::resource::v1::Resource {
                attributes: attributes.attributes.0,
                ..Default::default()
            };
            let mut encoded = Vec::new();
            prost::encoding::message::encode(tag::RESOURCE_LOGS_RESOURCE, &resource, &mut encoded);
            let mut schema_url = Vec::new();
            encode_string(
                tag::RESOURCE_LOGS_SCHEMA_URL,
                attributes.schema_url.as_deref().unwrap_or_default(),
                &mut schema_url,
            );
            EncodedResource {
                resource: encoded.into_boxed_slice(),
                schema_url: schema_url.into_boxed_slice(),
            }
        })
    }
}

/// Reusable scratch space of one sender.
#[derive(Debug, Default)]
pub(crate) struct Encoder {
    /// Encoded length of each record of the run being written, by position.
    lengths: Vec<usize>,
    /// Where each scope's records start within that run.
    scopes: Vec<usize>,
}

impl Encoder {
    /// Encodes `records` as one request. Records must come grouped by run (any order of runs);
    /// each run's records are regrouped by scope in place, each scope's keeping their order.
    pub(crate) fn encode(&mut self, records: &mut [QueuedRecord], out: &mut Vec<u8>) {
        let mut rest = records;
        while !rest.is_empty() {
            let n = super::same_run(rest);
            let (run, tail) = std::mem::take(&mut rest).split_at_mut(n);
            self.encode_run(run, out);
            rest = tail;
        }
    }

    /// One `ResourceLogs`: every length is known before its bytes are written, so each record
    /// is measured once and written once, straight into `out`.
    fn encode_run(&mut self, records: &mut [QueuedRecord], out: &mut Vec<u8>) {
        group_by_scope(records);
        self.lengths.clear();
        self.lengths.extend(records.iter().map(queued_len));
        self.scopes.clear();
        self.scopes.extend((0..records.len()).filter(|&i| {
            i == 0 || scope_name(&records[i].record) != scope_name(&records[i - 1].record)
        }));
        let scope_lens: Vec<usize> = (0..self.scopes.len())
            .map(|s| {
                let (from, to) = self.scope_bounds(s);
                scope_logs_len(scope_name(&records[from].record), &self.lengths[from..to])
            })
            .collect();
        let resource = EncodedResource::of(records[0].run());
        let resource_logs_len = resource.resource.len()
            + resource.schema_url.len()
            + scope_lens
                .iter()
                .map(|&len| delimited_len(tag::RESOURCE_LOGS_SCOPE_LOGS, len))
                .sum::<usize>();
        encode_delimited_header(tag::REQUEST_RESOURCE_LOGS, resource_logs_len, out);
        out.extend_from_slice(&resource.resource);
        for (s, &len) in scope_lens.iter().enumerate() {
            let (from, to) = self.scope_bounds(s);
            encode_delimited_header(tag::RESOURCE_LOGS_SCOPE_LOGS, len, out);
            let name = scope_name(&records[from].record);
            encode_delimited_header(tag::SCOPE_LOGS_SCOPE, scope_len(name), out);
            encode_string(tag::SCOPE_NAME, name, out);
            for (queued, &len) in records[from..to].iter().zip(&self.lengths[from..to]) {
                encode_delimited_header(tag::SCOPE_LOGS_LOG_RECORDS, len, out);
                encode_record(queued, out);
            }
        }
        out.extend_from_slice(&resource.schema_url);
    }

    fn scope_bounds(&self, s: usize) -> (usize, usize) {
        let end = self.scopes.get(s + 1).copied();
        (self.scopes[s], end.unwrap_or(self.lengths.len()))
    }
}

/// Bytes `queued` takes in a request, its `log_records` field header included.
pub(crate) fn record_size(queued: &QueuedRecord) -> usize {
    delimited_len(tag::SCOPE_LOGS_LOG_RECORDS, queued_len(queued))
}

/// An upper bound of the bytes a request spends, besides its records, on a run and scope that
/// `queued` opens: the `ResourceLogs` and `ScopeLogs` headers, the resource, the scope.
pub(crate) fn group_overhead(queued: &QueuedRecord) -> usize {
    /// A field key and the longest length varint.
    const HEADER: usize = 1 + 10;
    let resource = EncodedResource::of(queued.run());
    let scope = delimited_len(tag::SCOPE_LOGS_SCOPE, scope_len(scope_name(&queued.record)));
    HEADER + resource.resource.len() + resource.schema_url.len() + HEADER + scope
}

/// Orders one run's records by scope, scopes in order of first appearance, each scope's records
/// in their order. Nearly always a single target, so nothing moves.
fn group_by_scope(records: &mut [QueuedRecord]) {
    let first = scope_name(&records[0].record);
    if records
        .iter()
        .all(|queued| scope_name(&queued.record) == first)
    {
        return;
    }
    let mut names: Vec<String> = Vec::new();
    for queued in records.iter() {
        let name = scope_name(&queued.record);
        if !names.iter().any(|n| n == name) {
            names.push(name.to_owned());
        }
    }
    // Stable: equal keys keep their order.
    records.sort_by_cached_key(|queued| {
        let name = scope_name(&queued.record);
        names.iter().position(|n| n == name)
    });
}

pub(crate) fn scope_name(record: &SdkLogRecord) -> &str {
    record
        .target()
        .map_or(DEFAULT_SCOPE, |target| target.as_ref())
}

fn scope_len(name: &str) -> usize {
    string_len(tag::SCOPE_NAME, name)
}

fn scope_logs_len(name: &str, record_lens: &[usize]) -> usize {
    delimited_len(tag::SCOPE_LOGS_SCOPE, scope_len(name))
        + record_lens
            .iter()
            .map(|&len| delimited_len(tag::SCOPE_LOGS_LOG_RECORDS, len))
            .sum::<usize>()
}

fn nanos(time: Option<std::time::SystemTime>) -> u64 {
    time.and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Length of a field with a length-delimited payload of `len` bytes, header included.
fn delimited_len(tag: u32, len: usize) -> usize {
    prost::encoding::key_len(tag) + encoded_len_varint(len as u64) + len
}

fn encode_delimited_header(tag: u32, len: usize, out: &mut Vec<u8>) {
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint(len as u64, out);
}

/// proto3 leaves empty strings off the wire.
fn string_len(tag: u32, value: &str) -> usize {
    if value.is_empty() {
        0
    } else {
        delimited_len(tag, value.len())
    }
}

fn encode_string(tag: u32, value: &str, out: &mut Vec<u8>) {
    if !value.is_empty() {
        encode_bytes_field(tag, value.as_bytes(), out);
    }
}

fn encode_bytes_field(tag: u32, value: &[u8], out: &mut Vec<u8>) {
    encode_delimited_header(tag, value.len(), out);
    out.extend_from_slice(value);
}

fn fixed64_len(tag: u32, value: u64) -> usize {
    if value == 0 {
        0
    } else {
        prost::encoding::key_len(tag) + 8
    }
}

fn encode_fixed64(tag: u32, value: u64, out: &mut Vec<u8>) {
    if value != 0 {
        encode_key(tag, WireType::SixtyFourBit, out);
        out.extend_from_slice(&value.to_le_bytes());
    }
}

fn varint_field_len(tag: u32, value: u64) -> usize {
    if value == 0 {
        0
    } else {
        prost::encoding::key_len(tag) + encoded_len_varint(value)
    }
}

fn encode_varint_field(tag: u32, value: u64, out: &mut Vec<u8>) {
    if value != 0 {
        encode_key(tag, WireType::Varint, out);
        encode_varint(value, out);
    }
}

/// The trace fields of a record: (flags, trace id, span id).
fn trace_fields(record: &SdkLogRecord) -> Option<(u32, [u8; 16], [u8; 8])> {
    record.trace_context().map(|ctx| {
        (
            ctx.trace_flags.map_or(0, |flags| u32::from(flags.to_u8())),
            ctx.trace_id.to_bytes(),
            ctx.span_id.to_bytes(),
        )
    })
}

fn record_len(record: &SdkLogRecord) -> usize {
    let mut len = fixed64_len(tag::TIME_UNIX_NANO, nanos(record.timestamp()))
        + varint_field_len(
            tag::SEVERITY_NUMBER,
            record.severity_number().map_or(0, |s| s as u64),
        )
        + string_len(
            tag::SEVERITY_TEXT,
            record.severity_text().unwrap_or_default(),
        )
        + record
            .body()
            .map_or(0, |body| delimited_len(tag::BODY, any_value_len(body)))
        + record
            .attributes_iter()
            .map(|(key, value)| delimited_len(tag::ATTRIBUTES, key_value_len(key.as_str(), value)))
            .sum::<usize>()
        + fixed64_len(
            tag::OBSERVED_TIME_UNIX_NANO,
            nanos(record.observed_timestamp()),
        )
        + string_len(tag::EVENT_NAME, record.event_name().unwrap_or_default());
    if let Some((flags, _, _)) = trace_fields(record) {
        len += if flags == 0 {
            0
        } else {
            prost::encoding::key_len(tag::FLAGS) + 4
        };
        len += delimited_len(tag::TRACE_ID, 16) + delimited_len(tag::SPAN_ID, 8);
    }
    len
}

/// Length of a queued record's `LogRecord`: the record, its context's attributes, the count of
/// attributes the limit dropped.
fn queued_len(queued: &QueuedRecord) -> usize {
    record_len(&queued.record)
        + queued.context.encoded_attributes().len()
        + varint_field_len(
            tag::DROPPED_ATTRIBUTES_COUNT,
            u64::from(queued.dropped_attributes),
        )
}

/// The record's fields, its context's attributes after its own, the dropped count.
fn encode_record(queued: &QueuedRecord, out: &mut Vec<u8>) {
    let record = &queued.record;
    encode_fixed64(tag::TIME_UNIX_NANO, nanos(record.timestamp()), out);
    encode_varint_field(
        tag::SEVERITY_NUMBER,
        record.severity_number().map_or(0, |s| s as u64),
        out,
    );
    encode_string(
        tag::SEVERITY_TEXT,
        record.severity_text().unwrap_or_default(),
        out,
    );
    if let Some(body) = record.body() {
        encode_delimited_header(tag::BODY, any_value_len(body), out);
        encode_any_value(body, out);
    }
    for (key, value) in record.attributes_iter() {
        encode_attribute(key, value, out);
    }
    out.extend_from_slice(queued.context.encoded_attributes());
    encode_varint_field(
        tag::DROPPED_ATTRIBUTES_COUNT,
        u64::from(queued.dropped_attributes),
        out,
    );
    let trace = trace_fields(record);
    if let Some((flags, trace_id, span_id)) = &trace {
        if *flags != 0 {
            encode_key(tag::FLAGS, WireType::ThirtyTwoBit, out);
            out.extend_from_slice(&flags.to_le_bytes());
        }
        encode_bytes_field(tag::TRACE_ID, trace_id, out);
        encode_bytes_field(tag::SPAN_ID, span_id, out);
    }
    encode_fixed64(
        tag::OBSERVED_TIME_UNIX_NANO,
        nanos(record.observed_timestamp()),
        out,
    );
    encode_string(
        tag::EVENT_NAME,
        record.event_name().unwrap_or_default(),
        out,
    );
}

/// `attributes` as the `attributes` fields of a `LogRecord`, to follow a record's own.
pub(crate) fn record_attributes(attributes: &[(Key, AnyValue)]) -> Box<[u8]> {
    let mut out = Vec::new();
    for (key, value) in attributes {
        encode_attribute(key, value, &mut out);
    }
    out.into_boxed_slice()
}

/// One `attributes` field of a `LogRecord`.
fn encode_attribute(key: &Key, value: &AnyValue, out: &mut Vec<u8>) {
    encode_delimited_header(tag::ATTRIBUTES, key_value_len(key.as_str(), value), out);
    encode_string(tag::KEY_VALUE_KEY, key.as_str(), out);
    encode_delimited_header(tag::KEY_VALUE_VALUE, any_value_len(value), out);
    encode_any_value(value, out);
}

fn key_value_len(key: &str, value: &AnyValue) -> usize {
    string_len(tag::KEY_VALUE_KEY, key) + delimited_len(tag::KEY_VALUE_VALUE, any_value_len(value))
}

/// Length of an `AnyValue` message. A oneof member is on the wire even when it holds its
/// default value.
fn any_value_len(value: &AnyValue) -> usize {
    match value {
        AnyValue::String(s) => delimited_len(tag::STRING_VALUE, s.as_str().len()),
        AnyValue::Boolean(_) => prost::encoding::key_len(tag::BOOL_VALUE) + 1,
        AnyValue::Int(i) => {
            prost::encoding::key_len(tag::INT_VALUE) + encoded_len_varint(*i as u64)
        }
        AnyValue::Double(_) => prost::encoding::key_len(tag::DOUBLE_VALUE) + 8,
        other => nested(other).encoded_len(),
    }
}

fn encode_any_value(value: &AnyValue, out: &mut Vec<u8>) {
    match value {
        AnyValue::String(s) => encode_bytes_field(tag::STRING_VALUE, s.as_str().as_bytes(), out),
        AnyValue::Boolean(b) => {
            encode_key(tag::BOOL_VALUE, WireType::Varint, out);
            encode_varint(u64::from(*b), out);
        }
        AnyValue::Int(i) => {
            encode_key(tag::INT_VALUE, WireType::Varint, out);
            encode_varint(*i as u64, out);
        }
        AnyValue::Double(d) => {
            encode_key(tag::DOUBLE_VALUE, WireType::SixtyFourBit, out);
            out.extend_from_slice(&d.to_le_bytes());
        }
        other => nested(other).encode_raw(out),
    }
}

/// OTLP/JSON for an encoded request: the same request, written by opentelemetry-proto's serde.
///
/// A double that is NaN or infinite has no JSON number; serde writes `null`, which is lossy
/// and makes rotel reject the whole request (HTTP 400), as it does proto3 JSON's `"NaN"`. Such
/// doubles go out as the strings `"NaN"`, `"Infinity"`, `"-Infinity"` instead: every collector
/// takes a string value, and the value survives. (Over protobuf they stay doubles.)
#[cfg(feature = "http-json")]
pub(crate) fn to_json(protobuf: &[u8]) -> Result<Vec<u8>, String> {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;

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

#[cfg(feature = "http-json")]
fn finite_for_json(value: &mut proto::AnyValue) {
    use proto::any_value::Value;
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

/// Bytes, lists and maps, which no `tracing` field produces, go through opentelemetry-proto's
/// conversion.
fn nested(value: &AnyValue) -> proto::AnyValue {
    value.clone().into()
}

#[cfg(test)]
mod tests;
