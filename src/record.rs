//! How one `tracing` event becomes an OpenTelemetry log record: body, severity, typed
//! attributes and code location.

use std::fmt;

use opentelemetry::logs::{AnyValue, LogRecord, Severity};
use opentelemetry::{Key, StringValue};
use opentelemetry_sdk::logs::SdkLogRecord;
use tracing::field::{Field, Visit};
use tracing::{Level, Metadata};

/// The field `tracing` stores an event's message in.
const MESSAGE: &str = "message";

/// Severity number and text of a `tracing` level.
pub(crate) fn severity(level: &Level) -> (Severity, &'static str) {
    match *level {
        Level::TRACE => (Severity::Trace, "TRACE"),
        Level::DEBUG => (Severity::Debug, "DEBUG"),
        Level::INFO => (Severity::Info, "INFO"),
        Level::WARN => (Severity::Warn, "WARN"),
        Level::ERROR => (Severity::Error, "ERROR"),
    }
}

/// An unsigned integer as `Int` when it fits OTLP's i64, else as its decimal string, so no value
/// is silently wrapped.
pub(crate) fn u64_value(value: u64) -> AnyValue {
    i64::try_from(value).map_or_else(|_| string(value.to_string()), AnyValue::Int)
}

fn string(text: String) -> AnyValue {
    AnyValue::String(StringValue::from(text))
}

/// The name given to the event macro (`info!(name: "model.trained", …)`), the OTLP record's
/// `event_name`; `None` for `tracing`'s default name, `"event {file}:{line}"`, which only
/// repeats the code location (as `code.*` attributes already carry it).
pub(crate) fn explicit_name(meta: &'static Metadata<'static>) -> Option<&'static str> {
    let name = meta.name();
    let default = name
        .strip_prefix("event ")
        .and_then(|rest| rest.strip_prefix(meta.file()?))
        .and_then(|rest| rest.strip_prefix(':'))
        .is_some_and(|line| line.parse::<u32>().ok() == meta.line());
    (!default).then_some(name)
}

/// Name, target and (with `location`) code location of a native `tracing` event.
pub(crate) fn set_callsite(
    record: &mut SdkLogRecord,
    meta: &'static Metadata<'static>,
    location: bool,
) {
    if let Some(name) = explicit_name(meta) {
        record.set_event_name(name);
    }
    record.set_target(meta.target());
    if location {
        add_location(record, meta.file(), meta.line(), meta.module_path());
    }
}

/// Target and code location of an event bridged from `log`, from its normalized metadata.
pub(crate) fn set_bridged_callsite(record: &mut SdkLogRecord, meta: &Metadata<'_>) {
    record.set_target(meta.target().to_owned());
    add_location(
        record,
        meta.file().map(str::to_owned),
        meta.line(),
        meta.module_path().map(str::to_owned),
    );
}

/// The trace context of the current OpenTelemetry span (a `tracing-opentelemetry` span
/// entered), if there is one.
pub(crate) fn add_trace_context(record: &mut SdkLogRecord) {
    use opentelemetry::trace::TraceContextExt as _;
    opentelemetry::Context::map_current(|cx| {
        let span = cx.span();
        let span_context = span.span_context();
        if span_context.is_valid() {
            record.set_trace_context(
                span_context.trace_id(),
                span_context.span_id(),
                Some(span_context.trace_flags()),
            );
        }
    });
}

/// Code location attributes of the event's callsite. `Into<StringValue>` keeps the common
/// `'static` case free of allocation; events bridged from `log` pass owned strings.
pub(crate) fn add_location<S: Into<StringValue>>(
    record: &mut SdkLogRecord,
    file: Option<S>,
    line: Option<u32>,
    module: Option<S>,
) {
    if let Some(file) = file {
        record.add_attribute(
            Key::from_static_str("code.file.path"),
            AnyValue::String(file.into()),
        );
    }
    if let Some(line) = line {
        record.add_attribute(
            Key::from_static_str("code.line.number"),
            AnyValue::Int(line.into()),
        );
    }
    if let Some(module) = module {
        record.add_attribute(
            Key::from_static_str("code.namespace"),
            AnyValue::String(module.into()),
        );
    }
}

/// Writes an event's fields straight into the record: `message` becomes the body, the rest
/// typed attributes.
#[derive(Debug)]
pub(crate) struct EventVisitor<'a> {
    pub(crate) record: &'a mut SdkLogRecord,
    /// Set for events bridged from the `log` crate, whose `log.*` fields only carry the metadata
    /// already taken from the normalized callsite.
    pub(crate) from_log: bool,
    pub(crate) limits: AttributeLimits,
    /// The event's fields kept as attributes so far.
    pub(crate) kept: usize,
    /// The event's fields left out by the count limit (`dropped_attributes_count`).
    pub(crate) dropped: u32,
    /// Bytes of the strings written so far (body and attribute values): most of a record's
    /// size, for the queue's byte bound.
    pub(crate) string_bytes: usize,
}

/// The OpenTelemetry attribute limits, applied to an event's own fields.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AttributeLimits {
    /// Longest string value, in characters; `None`: no limit (the spec's default).
    pub(crate) value_length: Option<usize>,
    /// Most fields kept as attributes (the spec's default: 128).
    pub(crate) count: usize,
}

impl EventVisitor<'_> {
    fn attribute(&mut self, field: &Field, value: AnyValue) {
        if self.from_log && field.name().starts_with("log.") {
            return;
        }
        if self.kept >= self.limits.count {
            self.dropped += 1;
            return;
        }
        self.kept += 1;
        let value = match (value, self.limits.value_length) {
            (AnyValue::String(text), Some(max)) if text.as_str().len() > max => {
                let end = text.as_str().char_indices().nth(max).map(|(i, _)| i);
                match end {
                    Some(end) => string(text.as_str()[..end].to_owned()),
                    None => AnyValue::String(text),
                }
            }
            (value, _) => value,
        };
        self.record
            .add_attribute(Key::from_static_str(field.name()), value);
    }
}

impl Visit for EventVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.string_bytes += value.len();
        let value = string(value.to_owned());
        if field.name() == MESSAGE {
            self.record.set_body(value);
        } else {
            self.attribute(field, value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        self.string_bytes += text.len();
        let value = string(text);
        if field.name() == MESSAGE {
            self.record.set_body(value);
        } else {
            self.attribute(field, value);
        }
    }

    fn record_error(&mut self, _field: &Field, value: &(dyn std::error::Error + 'static)) {
        // `&dyn Error` erases the concrete type, so `exception.type` cannot be known here.
        self.record.add_attribute(
            Key::from_static_str("exception.message"),
            string(value.to_string()),
        );
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.attribute(field, AnyValue::Int(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.attribute(field, u64_value(value));
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        let value = i64::try_from(value).map_or_else(|_| string(value.to_string()), AnyValue::Int);
        self.attribute(field, value);
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        let value = i64::try_from(value).map_or_else(|_| string(value.to_string()), AnyValue::Int);
        self.attribute(field, value);
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.attribute(field, AnyValue::Double(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.attribute(field, AnyValue::Boolean(value));
    }
}
