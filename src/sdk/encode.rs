//! An SDK record as this crate's encoded OTLP `LogRecord` (`record.rs`'s writer; its own
//! attributes under the configured limits, ZenML's whole), without the attributes that moved
//! to its run's resource.

use std::borrow::Cow;

use opentelemetry::logs::AnyValue;
use opentelemetry::{InstrumentationScope, Key};
use opentelemetry_sdk::logs::SdkLogRecord;

use crate::fields;
use crate::record::{self, AttributeLimits, EncodedRecord, RecordWriter};

/// The keys that select a record's run: exported as resource attributes, not on the record.
pub(super) const RUN_KEYS: [&str; 3] = [fields::PIPELINE_RUN_ID, fields::STEP_ID, fields::SOURCE];

/// Which of [`RUN_KEYS`] `key` is, when its value is text (anything else stays on the record).
pub(super) fn run_key(key: &Key, value: &AnyValue) -> Option<usize> {
    if !matches!(value, AnyValue::String(_)) {
        return None;
    }
    RUN_KEYS.iter().position(|k| *k == key.as_str())
}

/// The record's scope: its target, as the bridge sets it, else the logger's scope.
pub(super) fn scope_name<'r>(record: &'r SdkLogRecord, scope: &'r InstrumentationScope) -> &'r str {
    record
        .target()
        .map_or(scope.name(), |target| target.as_ref())
}

pub(super) fn record(
    record: &SdkLogRecord,
    scope: &InstrumentationScope,
    limits: AttributeLimits,
) -> EncodedRecord {
    let time = record.timestamp().map_or(0, record::nanos);
    let observed = record.observed_timestamp().map_or(time, record::nanos);
    record::with_scratch(|scratch| {
        let mut writer = RecordWriter::new(scratch, time, observed);
        writer
            .severity(
                record.severity_number().map_or(0, |s| s as i32),
                record.severity_text().unwrap_or_default(),
            )
            .limits(limits, false)
            .scope(match record.target() {
                Some(target) => target.clone(),
                None => Cow::Owned(scope.name().to_owned()),
            });
        if let Some(name) = record.event_name() {
            writer.event_name(name);
        }
        if let Some(context) = record.trace_context() {
            let flags = context.trace_flags.map_or(0, |flags| flags.to_u8());
            writer.trace(
                flags,
                context.trace_id.to_bytes(),
                context.span_id.to_bytes(),
            );
        }
        if let Some(body) = record.body() {
            writer.body(body);
        }
        for (key, value) in record.attributes_iter() {
            if key.as_str().starts_with(fields::PREFIX) {
                // ZenML's context is never cut: ZenML finds the record by it.
                if run_key(key, value).is_none() {
                    writer.attribute(key.as_str(), value);
                }
            } else {
                writer.limited_attribute(key.as_str(), value);
            }
        }
        writer.finish(0)
    })
}
