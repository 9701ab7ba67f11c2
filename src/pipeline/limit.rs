//! Requests within a size limit (`max_export_batch_bytes`): a batch is cut into requests by
//! encoded bytes as well as by records, and a record too large for any request is truncated
//! to fit — marked on the record and counted, never dropped.

use std::ops::Range;
use std::sync::Arc;

use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _};
use opentelemetry::{Key, StringValue};
use opentelemetry_sdk::logs::{SdkLogRecord, SdkLogger};

use super::encode::{group_overhead, record_size, scope_name};
use super::QueuedRecord;

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
                || scope_name(&queued.record) != scope_name(&records[i - 1].record)
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
pub(crate) fn fit_oversized(records: &mut [QueuedRecord], max: usize, logger: &SdkLogger) -> u64 {
    let mut truncated = 0;
    for queued in records {
        let budget = max.saturating_sub(group_overhead(queued) + MARK_ROOM);
        let mut cut_total = 0;
        // A cut can shorten a length varint less than hoped: measure again, a few times.
        for _ in 0..4 {
            let size = record_size(queued);
            if size <= budget {
                break;
            }
            let Some((record, cut)) = truncated_copy(&queued.record, size - budget, logger) else {
                break;
            };
            queued.record = record;
            cut_total += cut;
        }
        if cut_total > 0 {
            queued.record.add_attribute(
                Key::from_static_str(TRUNCATED_BYTES),
                AnyValue::Int(cut_total as i64),
            );
            truncated += 1;
        }
    }
    truncated
}

/// The record with `excess` bytes cut from its longest strings (body and string attributes),
/// each on a char boundary, and how many bytes were cut; `None` when it has nothing to cut.
fn truncated_copy(
    record: &SdkLogRecord,
    excess: usize,
    logger: &SdkLogger,
) -> Option<(SdkLogRecord, usize)> {
    let mut strings: Vec<String> = record
        .body()
        .into_iter()
        .chain(record.attributes_iter().map(|(_, value)| value))
        .filter_map(|value| match value {
            AnyValue::String(s) => Some(s.as_str().to_owned()),
            _ => None,
        })
        .collect();
    let mut cut = 0;
    while cut < excess {
        let longest = strings.iter_mut().max_by_key(|s| s.len())?;
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
    if cut == 0 {
        return None;
    }
    let mut strings = strings.into_iter();
    let mut next_string = |value: &AnyValue| match value {
        AnyValue::String(_) => strings
            .next()
            .map_or_else(|| value.clone(), |s| AnyValue::String(StringValue::from(s))),
        other => other.clone(),
    };
    let mut copy = logger.create_log_record();
    if let Some(time) = record.timestamp() {
        copy.set_timestamp(time);
    }
    if let Some(time) = record.observed_timestamp() {
        copy.set_observed_timestamp(time);
    }
    if let Some(severity) = record.severity_number() {
        copy.set_severity_number(severity);
    }
    if let Some(text) = record.severity_text() {
        copy.set_severity_text(text);
    }
    if let Some(target) = record.target() {
        copy.set_target(target.clone());
    }
    if let Some(name) = record.event_name() {
        copy.set_event_name(name);
    }
    if let Some(trace) = record.trace_context() {
        copy.set_trace_context(trace.trace_id, trace.span_id, trace.trace_flags);
    }
    if let Some(body) = record.body() {
        copy.set_body(next_string(body));
    }
    for (key, value) in record.attributes_iter() {
        copy.add_attribute(key.clone(), next_string(value));
    }
    Some((copy, cut))
}
