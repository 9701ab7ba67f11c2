//! OTLP protobuf on the wire: the field numbers this crate writes and prost's primitives around
//! them (lengths before bytes, proto3's omission of defaults). No dependency on the rest of the
//! crate: records, contexts and requests are all written with these.

use opentelemetry::logs::AnyValue;
use opentelemetry_proto::tonic::common::v1 as proto;
use prost::encoding::{encoded_len_varint, key_len, WireType};
use prost::Message as _;

/// Field numbers of the OTLP messages (opentelemetry-proto's `.proto` files).
pub(crate) mod tag {
    pub(crate) const REQUEST_RESOURCE_LOGS: u32 = 1;
    pub(crate) const RESOURCE_LOGS_RESOURCE: u32 = 1;
    pub(crate) const RESOURCE_LOGS_SCOPE_LOGS: u32 = 2;
    pub(crate) const RESOURCE_LOGS_SCHEMA_URL: u32 = 3;
    pub(crate) const SCOPE_LOGS_SCOPE: u32 = 1;
    pub(crate) const SCOPE_LOGS_LOG_RECORDS: u32 = 2;
    pub(crate) const SCOPE_NAME: u32 = 1;
    pub(crate) const TIME_UNIX_NANO: u32 = 1;
    pub(crate) const SEVERITY_NUMBER: u32 = 2;
    pub(crate) const SEVERITY_TEXT: u32 = 3;
    pub(crate) const BODY: u32 = 5;
    pub(crate) const ATTRIBUTES: u32 = 6;
    pub(crate) const DROPPED_ATTRIBUTES_COUNT: u32 = 7;
    pub(crate) const FLAGS: u32 = 8;
    pub(crate) const TRACE_ID: u32 = 9;
    pub(crate) const SPAN_ID: u32 = 10;
    pub(crate) const OBSERVED_TIME_UNIX_NANO: u32 = 11;
    pub(crate) const EVENT_NAME: u32 = 12;
    pub(crate) const KEY_VALUE_KEY: u32 = 1;
    pub(crate) const KEY_VALUE_VALUE: u32 = 2;
    pub(crate) const STRING_VALUE: u32 = 1;
    pub(crate) const BOOL_VALUE: u32 = 2;
    pub(crate) const INT_VALUE: u32 = 3;
    pub(crate) const DOUBLE_VALUE: u32 = 4;
}

/// A varint, written straight into the `Vec`: prost's generic `BufMut` version was the largest
/// single cost of writing a record on the logging thread (11 % in `perf`), one capacity check
/// per byte. The same bytes (the encoder's property test holds them to prost's).
pub(crate) fn encode_varint(mut value: u64, out: &mut Vec<u8>) {
    // Keys and most lengths take one byte.
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A field's key: its number and wire type.
pub(crate) fn encode_key(tag: u32, wire_type: WireType, out: &mut Vec<u8>) {
    encode_varint(u64::from(tag << 3 | wire_type as u32), out);
}

/// Length of a field with a length-delimited payload of `len` bytes, header included.
pub(crate) fn delimited_len(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

pub(crate) fn encode_delimited_header(tag: u32, len: usize, out: &mut Vec<u8>) {
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint(len as u64, out);
}

/// proto3 leaves empty strings off the wire.
pub(crate) fn string_len(tag: u32, value: &str) -> usize {
    if value.is_empty() {
        0
    } else {
        delimited_len(tag, value.len())
    }
}

pub(crate) fn encode_string(tag: u32, value: &str, out: &mut Vec<u8>) {
    if !value.is_empty() {
        encode_bytes_field(tag, value.as_bytes(), out);
    }
}

pub(crate) fn encode_bytes_field(tag: u32, value: &[u8], out: &mut Vec<u8>) {
    encode_delimited_header(tag, value.len(), out);
    out.extend_from_slice(value);
}

/// A `fixed64` field, left out when zero.
pub(crate) fn encode_fixed64(tag: u32, value: u64, out: &mut Vec<u8>) {
    if value != 0 {
        encode_key(tag, WireType::SixtyFourBit, out);
        out.extend_from_slice(&value.to_le_bytes());
    }
}

/// A `fixed32` field, left out when zero.
pub(crate) fn encode_fixed32(tag: u32, value: u32, out: &mut Vec<u8>) {
    if value != 0 {
        encode_key(tag, WireType::ThirtyTwoBit, out);
        out.extend_from_slice(&value.to_le_bytes());
    }
}

/// A varint field, left out when zero.
pub(crate) fn encode_varint_field(tag: u32, value: u64, out: &mut Vec<u8>) {
    if value != 0 {
        encode_key(tag, WireType::Varint, out);
        encode_varint(value, out);
    }
}

/// One `attributes` field (a `KeyValue`) of a `LogRecord`.
pub(crate) fn encode_attribute(key: &str, value: &AnyValue, out: &mut Vec<u8>) {
    encode_delimited_header(tag::ATTRIBUTES, key_value_len(key, value), out);
    encode_string(tag::KEY_VALUE_KEY, key, out);
    encode_delimited_header(tag::KEY_VALUE_VALUE, any_value_len(value), out);
    encode_any_value(value, out);
}

/// One string `attributes` field, without building an `AnyValue`.
pub(crate) fn encode_str_attribute(key: &str, value: &str, out: &mut Vec<u8>) {
    let value_len = delimited_len(tag::STRING_VALUE, value.len());
    let len = string_len(tag::KEY_VALUE_KEY, key) + delimited_len(tag::KEY_VALUE_VALUE, value_len);
    encode_delimited_header(tag::ATTRIBUTES, len, out);
    encode_string(tag::KEY_VALUE_KEY, key, out);
    encode_delimited_header(tag::KEY_VALUE_VALUE, value_len, out);
    encode_bytes_field(tag::STRING_VALUE, value.as_bytes(), out);
}

/// One integer `attributes` field, without building an `AnyValue` (most event fields).
pub(crate) fn encode_int_attribute(key: &str, value: i64, out: &mut Vec<u8>) {
    let value_len = key_len(tag::INT_VALUE) + encoded_len_varint(value as u64);
    let len = string_len(tag::KEY_VALUE_KEY, key) + delimited_len(tag::KEY_VALUE_VALUE, value_len);
    encode_delimited_header(tag::ATTRIBUTES, len, out);
    encode_string(tag::KEY_VALUE_KEY, key, out);
    encode_delimited_header(tag::KEY_VALUE_VALUE, value_len, out);
    encode_key(tag::INT_VALUE, WireType::Varint, out);
    encode_varint(value as u64, out);
}

/// `attributes` as the `attributes` fields of a `LogRecord`, to follow a record's own.
pub(crate) fn record_attributes<'a>(
    attributes: impl IntoIterator<Item = (&'a str, &'a AnyValue)>,
) -> Box<[u8]> {
    let mut out = Vec::new();
    for (key, value) in attributes {
        encode_attribute(key, value, &mut out);
    }
    out.into_boxed_slice()
}

fn key_value_len(key: &str, value: &AnyValue) -> usize {
    string_len(tag::KEY_VALUE_KEY, key) + delimited_len(tag::KEY_VALUE_VALUE, any_value_len(value))
}

/// Length of an `AnyValue` message. A oneof member is on the wire even when it holds its
/// default value.
pub(crate) fn any_value_len(value: &AnyValue) -> usize {
    match value {
        AnyValue::String(s) => delimited_len(tag::STRING_VALUE, s.as_str().len()),
        AnyValue::Boolean(_) => key_len(tag::BOOL_VALUE) + 1,
        AnyValue::Int(i) => key_len(tag::INT_VALUE) + encoded_len_varint(*i as u64),
        AnyValue::Double(_) => key_len(tag::DOUBLE_VALUE) + 8,
        other => nested(other).encoded_len(),
    }
}

pub(crate) fn encode_any_value(value: &AnyValue, out: &mut Vec<u8>) {
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

/// Bytes, lists and maps, which no `tracing` field produces, go through opentelemetry-proto's
/// conversion.
fn nested(value: &AnyValue) -> proto::AnyValue {
    value.clone().into()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn varints_are_prosts(value in prop_oneof![any::<u64>(), 0..300u64, Just(u64::MAX)]) {
            let (mut ours, mut prosts) = (Vec::new(), Vec::new());
            super::encode_varint(value, &mut ours);
            prost::encoding::encode_varint(value, &mut prosts);
            prop_assert_eq!(ours, prosts);
        }

        #[test]
        fn the_typed_attribute_writers_write_what_the_general_one_does(
            key in ".{0,20}",
            int in any::<i64>(),
            text in ".{0,300}",
        ) {
            use opentelemetry::logs::AnyValue;
            let (mut typed, mut general) = (Vec::new(), Vec::new());
            super::encode_int_attribute(&key, int, &mut typed);
            super::encode_attribute(&key, &AnyValue::Int(int), &mut general);
            prop_assert_eq!(&typed, &general);
            let (mut typed, mut general) = (Vec::new(), Vec::new());
            super::encode_str_attribute(&key, &text, &mut typed);
            super::encode_attribute(&key, &AnyValue::from(text.clone()), &mut general);
            prop_assert_eq!(typed, general);
        }
    }
}
