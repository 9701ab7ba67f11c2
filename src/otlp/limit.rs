//! Requests within a size limit (`max_export_batch_bytes`): a batch is cut into requests by
//! encoded bytes as well as by records, and a record too large for any request is truncated
//! to fit — marked on the record and counted, never dropped.

use std::ops::Range;
use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord as ProtoRecord;

use super::protobuf::{group_overhead, record_size};
use crate::batch::QueuedRecord;

/// The attribute a truncated record carries: how many bytes of its strings were cut.
pub(crate) const TRUNCATED_BYTES: &str = "zenml_otel.truncated_bytes";

/// What the mark itself may add to a record, with room for longer length varints.
const MARK_ROOM: usize = 64;

/// Consecutive ranges of `records` (grouped by run) whose requests each stay within `max`
/// bytes; a range holds at least one record.
pub(crate) fn requests(records: &[QueuedRecord], max: usize) -> Vec<Range<usize>> {
    let mut ranges = Vec::new();
    let (mut start, mut size) = (0, 0);
    for (i, queued) in records.iter().enumerate() {
        let opens_group = |from: usize| {
            i == from
                || !Arc::ptr_eq(queued.run(), records[i - 1].run())
                || queued.record.scope() != records[i - 1].record.scope()
        };
        let cost = |from| {
            record_size(queued)
                + if opens_group(from) {
                    group_overhead(queued)
                } else {
                    0
                }
        };
        if i > start && size + cost(start) > max {
            ranges.push(start..i);
            (start, size) = (i, 0);
        }
        size += cost(start);
    }
    if start < records.len() {
        ranges.push(start..records.len());
    }
    ranges
}

/// Truncates each record that would not fit a request of `max` bytes on its own; returns how
/// many were.
pub(crate) fn fit_oversized(records: &mut [QueuedRecord], max: usize) -> u64 {
    let mut truncated = 0;
    for queued in records {
        let budget = max.saturating_sub(group_overhead(queued) + MARK_ROOM);
        if record_size(queued) > budget && truncate(queued, budget) {
            truncated += 1;
        }
    }
    truncated
}

/// Cuts the record's longest strings until it fits `budget` and marks it; `false` when it has
/// nothing to cut (or cannot be read back, which the layer's encoding rules out).
fn truncate(queued: &mut QueuedRecord, budget: usize) -> bool {
    let Ok(mut record) = queued.record.to_proto() else {
        return false;
    };
    let mut cut_total = 0;
    // A cut can shorten a length varint less than hoped: measure again, a few times.
    for _ in 0..4 {
        let size = record_size(queued);
        if size <= budget {
            break;
        }
        let cut = cut_strings(&mut record, size - budget);
        if cut == 0 {
            break;
        }
        cut_total += cut;
        queued.record = queued.record.rewritten(&record);
    }
    if cut_total == 0 {
        return false;
    }
    record.attributes.push(KeyValue {
        key: TRUNCATED_BYTES.to_owned(),
        value: Some(AnyValue {
            value: Some(Value::IntValue(cut_total as i64)),
        }),
        ..KeyValue::default()
    });
    queued.record = queued.record.rewritten(&record);
    true
}

/// Cuts `excess` bytes from the record's longest strings (body and string attributes), each on
/// a char boundary; returns how many bytes were cut.
fn cut_strings(record: &mut ProtoRecord, excess: usize) -> usize {
    let mut strings: Vec<&mut String> = record
        .body
        .iter_mut()
        .chain(
            record
                .attributes
                .iter_mut()
                .filter_map(|kv| kv.value.as_mut()),
        )
        .filter_map(|value| match &mut value.value {
            Some(Value::StringValue(s)) => Some(s),
            _ => None,
        })
        .collect();
    let mut cut = 0;
    while cut < excess {
        let Some(longest) = strings.iter_mut().max_by_key(|s| s.len()) else {
            break;
        };
        if longest.is_empty() {
            break;
        }
        let mut end = longest.len().saturating_sub(excess - cut);
        while !longest.is_char_boundary(end) {
            end -= 1;
        }
        cut += longest.len() - end;
        longest.truncate(end);
    }
    cut
}
