//! Span fields beyond `zenml.*`, opt-in by name (`span_fields`): copied onto every record
//! logged inside the span, values recorded later included. A key is on a record once: an
//! event's own field wins over the innermost span that has it, which wins over outer spans.

use opentelemetry::logs::AnyValue;
use tracing::field::{Field, Visit};

use crate::record::{self, RecordWriter};

/// The allowlist: field names to copy, as configured.
#[derive(Debug, Clone, Default)]
pub(crate) struct Allowlist(Box<[String]>);

impl Allowlist {
    pub(crate) fn new(names: &[String]) -> Self {
        Self(names.into())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn allows(&self, name: &str) -> bool {
        self.0.iter().any(|allowed| allowed == name)
    }

    /// The allowed fields among a span's values (`|v| attrs.record(v)`), for its extensions.
    pub(crate) fn capture(&self, record: impl FnOnce(&mut dyn Visit)) -> SpanValues {
        let mut copied = CopiedFields {
            allowlist: self,
            fields: Vec::new(),
        };
        record(&mut copied);
        SpanValues(copied.fields)
    }
}

/// A span's values of allowed fields, while they are visited.
struct CopiedFields<'a> {
    allowlist: &'a Allowlist,
    fields: Vec<(&'static str, AnyValue)>,
}

impl CopiedFields<'_> {
    fn put(&mut self, field: &Field, value: AnyValue) {
        if self.allowlist.allows(field.name()) {
            put(&mut self.fields, field.name(), value);
        }
    }
}

fn put(fields: &mut Vec<(&'static str, AnyValue)>, name: &'static str, value: AnyValue) {
    match fields.iter_mut().find(|(key, _)| *key == name) {
        Some(slot) => slot.1 = value,
        None => fields.push((name, value)),
    }
}

impl Visit for CopiedFields<'_> {
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, AnyValue::Int(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, record::u64_value(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, AnyValue::Double(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, AnyValue::Boolean(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if self.allowlist.allows(field.name()) {
            self.put(field, AnyValue::from(value.to_owned()));
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if self.allowlist.allows(field.name()) {
            self.put(field, AnyValue::from(format!("{value:?}")));
        }
    }
}

/// The allowed fields' values of one span, kept in its extensions.
#[derive(Debug, Default)]
pub(crate) struct SpanValues(Vec<(&'static str, AnyValue)>);

impl SpanValues {
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Values recorded later replace the earlier ones.
    pub(crate) fn update(&mut self, recorded: SpanValues) {
        for (name, value) in recorded.0 {
            put(&mut self.0, name, value);
        }
    }

    /// Adds to `record` each value whose key neither the event nor a span in `copied` (the
    /// inner ones, which win) has; call innermost span first.
    pub(crate) fn copy_onto(&self, record: &mut RecordWriter<'_>, copied: &mut Vec<&'static str>) {
        for (name, value) in &self.0 {
            if !record.has_field(name) && !copied.contains(name) {
                record.attribute(name, value);
                copied.push(name);
            }
        }
    }
}
