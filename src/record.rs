//! How one `tracing` event becomes an OTLP `LogRecord`, encoded once, on the logging thread:
//! body, severity, typed attributes, code location, trace context — written as protobuf into a
//! per-thread scratch buffer and copied out into the thread's current chunk. A batch is then
//! framing plus concatenation (`otlp::protobuf`), and a record's size is known before it is
//! queued.

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt::{self, Write as _};

use bytes::{Bytes, BytesMut};
use opentelemetry::logs::AnyValue;
use opentelemetry_proto::tonic::logs::v1::LogRecord as ProtoRecord;
use prost::Message as _;
use tracing::field::{Field, Visit};
use tracing::{Level, Metadata};

use crate::wire::{self, tag};

/// The field `tracing` stores an event's message in.
const MESSAGE: &str = "message";

/// The scope name of a record without a target (the layer always sets one).
pub(crate) const DEFAULT_SCOPE: &str = "zenml-otel";

/// A scratch buffer grown past this (a huge message) is released after the event rather than
/// kept by the thread.
const KEEP_SCRATCH: usize = 64 * 1024;

/// An encoded OTLP `LogRecord` and its scope: the record's fields in field order, with the gap
/// at `split` where its context's attributes go (after its own attributes, before
/// `dropped_attributes_count`), so the encoder writes `head`, the context's bytes, `tail`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EncodedRecord {
    /// A slice of the thread's current chunk (`Scratch::chunk`), shared with its neighbours.
    bytes: Bytes,
    split: usize,
    scope: Cow<'static, str>,
}

impl EncodedRecord {
    /// The fields before the context's attributes.
    pub(crate) fn head(&self) -> &[u8] {
        &self.bytes[..self.split]
    }

    /// The fields after the context's attributes.
    pub(crate) fn tail(&self) -> &[u8] {
        &self.bytes[self.split..]
    }

    /// The record's encoded length, without its context's attributes.
    pub(crate) fn len(&self) -> usize {
        self.bytes.len()
    }

    /// The instrumentation scope's name: the event's target.
    pub(crate) fn scope(&self) -> &str {
        &self.scope
    }

    /// A record read back from a spool: `head` and `tail` around its context's attributes.
    /// The record's `time_unix_nano` (its first field, as `finish` writes it), 0 if absent.
    pub(crate) fn time(&self) -> u64 {
        // The field's key: its number, and the fixed64 wire type.
        const TIME_TAG: u8 = ((wire::tag::TIME_UNIX_NANO << 3) | 1) as u8;
        match self.head() {
            [TIME_TAG, time @ ..] if time.len() >= 8 => {
                u64::from_le_bytes(time[..8].try_into().unwrap_or_default())
            }
            _ => 0,
        }
    }

    pub(crate) fn from_parts(head: &[u8], tail: &[u8], scope: String) -> Self {
        Self {
            bytes: Bytes::from([head, tail].concat()),
            split: head.len(),
            scope: Cow::Owned(scope),
        }
    }

    /// The record as opentelemetry-proto's message (the slow path: truncation, tests).
    pub(crate) fn to_proto(&self) -> Result<ProtoRecord, prost::DecodeError> {
        let mut record = ProtoRecord::decode(self.head())?;
        record.merge(self.tail())?;
        Ok(record)
    }

    /// `record` (this one, edited) encoded again, under the same scope.
    pub(crate) fn rewritten(&self, record: &ProtoRecord) -> Self {
        Self::from_proto(record, self.scope.clone())
    }

    /// Encodes `record` with prost, cut at the same place as the layer's encoding.
    pub(crate) fn from_proto(record: &ProtoRecord, scope: Cow<'static, str>) -> Self {
        let head = ProtoRecord {
            time_unix_nano: record.time_unix_nano,
            severity_number: record.severity_number,
            severity_text: record.severity_text.clone(),
            body: record.body.clone(),
            attributes: record.attributes.clone(),
            ..ProtoRecord::default()
        };
        let tail = ProtoRecord {
            dropped_attributes_count: record.dropped_attributes_count,
            flags: record.flags,
            trace_id: record.trace_id.clone(),
            span_id: record.span_id.clone(),
            observed_time_unix_nano: record.observed_time_unix_nano,
            event_name: record.event_name.clone(),
            ..ProtoRecord::default()
        };
        let mut bytes = head.encode_to_vec();
        let split = bytes.len();
        tail.encode(&mut bytes).unwrap_or_default(); // a Vec always has room
        Self {
            bytes: Bytes::from(bytes),
            split,
            scope,
        }
    }
}

/// Nanoseconds since the Unix epoch (0 for a clock before it: proto3's "unset").
pub(crate) fn nanos(time: std::time::SystemTime) -> u64 {
    time.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Severity number and text of a `tracing` level.
pub(crate) fn severity(level: &Level) -> (i32, &'static str) {
    match *level {
        Level::TRACE => (1, "TRACE"),
        Level::DEBUG => (5, "DEBUG"),
        Level::INFO => (9, "INFO"),
        Level::WARN => (13, "WARN"),
        Level::ERROR => (17, "ERROR"),
    }
}

/// An unsigned integer as `Int` when it fits OTLP's i64, else as its decimal string, so no value
/// is silently wrapped.
pub(crate) fn u64_value(value: u64) -> AnyValue {
    i64::try_from(value).map_or_else(|_| AnyValue::from(value.to_string()), AnyValue::Int)
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

/// The OpenTelemetry attribute limits, applied to an event's own fields.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AttributeLimits {
    /// Longest string value, in characters; `None`: no limit (the spec's default).
    pub(crate) value_length: Option<usize>,
    /// Most fields kept as attributes (the spec's default: 128).
    pub(crate) count: usize,
}

impl AttributeLimits {
    /// No limits: fields the writer is given directly (span fields, tests).
    pub(crate) const NONE: Self = Self {
        value_length: None,
        count: usize::MAX,
    };
}

/// A thread's reusable buffers: an event is written here, then copied out once.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    /// The body's `AnyValue` message, when `has_body`.
    body: Vec<u8>,
    has_body: bool,
    /// The record's own `attributes` fields.
    attributes: Vec<u8>,
    /// Formatted text (`Debug`, `Display`) before it is measured and encoded.
    text: String,
    /// The keys of the event's own fields, for span fields that must not repeat them.
    keys: Vec<&'static str>,
    out: Vec<u8>,
    /// Where finished records go: one allocation for many records (a record is a refcounted
    /// slice of it), so the logging thread does not `malloc` per record nor the sender `free`
    /// per record across threads.
    chunk: BytesMut,
    /// What this thread's recent callsites always write (`CALLSITE_SLOTS`, direct-mapped).
    callsites: Vec<Option<Callsite>>,
}

/// Bytes of a fresh chunk; a larger record gets a chunk of its own size.
const CHUNK: usize = 64 * 1024;

/// Callsites a thread remembers; a busy program logs from a few dozen at a time.
const CALLSITE_SLOTS: usize = 64;

/// What a native callsite writes on every record: its event name and its code location,
/// encoded once (per thread) rather than per event.
#[derive(Debug)]
struct Callsite {
    /// The callsite's `Metadata` address: callsites are statics.
    key: usize,
    event_name: &'static str,
    location: Box<[u8]>,
}

impl Callsite {
    fn new(key: usize, meta: &'static Metadata<'static>, location: bool) -> Self {
        let mut bytes = Vec::new();
        if location {
            encode_location(meta.file(), meta.line(), meta.module_path(), &mut bytes);
        }
        Self {
            key,
            event_name: explicit_name(meta).unwrap_or_default(),
            location: bytes.into_boxed_slice(),
        }
    }

    /// `meta`'s entry in `cache`, made if it is not there. Whether the location is written is
    /// the callsite's own property (the panic hook's is not), so it is part of the entry.
    fn cached<'c>(
        cache: &'c mut Vec<Option<Callsite>>,
        meta: &'static Metadata<'static>,
        location: bool,
    ) -> &'c Callsite {
        if cache.is_empty() {
            cache.resize_with(CALLSITE_SLOTS, || None);
        }
        let key = std::ptr::from_ref(meta) as usize;
        // Fibonacci hashing: the top bits of the product spread nearby addresses.
        let index = (key.wrapping_mul(0x9E37_79B9_7F4A_7C15_u64 as usize) >> 58) % CALLSITE_SLOTS;
        let slot = &mut cache[index];
        if slot.as_ref().is_some_and(|site| site.key != key) {
            *slot = None;
        }
        slot.get_or_insert_with(|| Callsite::new(key, meta, location))
    }
}

/// Code location attributes of an event's callsite.
fn encode_location(file: Option<&str>, line: Option<u32>, module: Option<&str>, out: &mut Vec<u8>) {
    if let Some(file) = file {
        wire::encode_str_attribute("code.file.path", file, out);
    }
    if let Some(line) = line {
        wire::encode_attribute("code.line.number", &AnyValue::Int(line.into()), out);
    }
    if let Some(module) = module {
        wire::encode_str_attribute("code.namespace", module, out);
    }
}

impl Scratch {
    fn clear(&mut self) {
        for buffer in [&mut self.body, &mut self.attributes, &mut self.out] {
            buffer.clear();
            if buffer.capacity() > KEEP_SCRATCH {
                *buffer = Vec::new();
            }
        }
        self.text.clear();
        if self.text.capacity() > KEEP_SCRATCH {
            self.text = String::new();
        }
        self.has_body = false;
        self.keys.clear();
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Runs `write` with this thread's scratch buffers, or fresh ones when they are in use (a field's
/// `Debug` impl that logs while its event is written) or gone (thread teardown).
pub(crate) fn with_scratch<R>(mut write: impl FnMut(&mut Scratch) -> R) -> R {
    let result = SCRATCH.try_with(|cell| {
        let mut scratch = cell.try_borrow_mut().ok()?;
        scratch.clear();
        Some(write(&mut scratch))
    });
    match result {
        Ok(Some(result)) => result,
        _ => write(&mut Scratch::default()),
    }
}

/// `fmt::Write` straight into a byte buffer: leaner than `io::Write`'s adapter, which keeps
/// an `io::Error` around for every `write_str`.
struct Utf8Sink<'a>(&'a mut Vec<u8>);

impl fmt::Write for Utf8Sink<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        self.0.extend_from_slice(text.as_bytes());
        Ok(())
    }
}

/// `text` cut to at most `max` characters, on a char boundary.
fn cut(text: &str, max: Option<usize>) -> &str {
    match max.and_then(|max| text.char_indices().nth(max)) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

/// Writes one record: the fixed fields first, then fields and attributes as they are visited,
/// then [`finish`](Self::finish).
#[derive(Debug)]
pub(crate) struct RecordWriter<'s> {
    scratch: &'s mut Scratch,
    time: u64,
    observed: u64,
    severity: i32,
    severity_text: &'static str,
    event_name: &'static str,
    /// (flags, trace id, span id)
    trace: Option<(u32, [u8; 16], [u8; 8])>,
    scope: Cow<'static, str>,
    limits: AttributeLimits,
    /// Set for events bridged from the `log` crate, whose `log.*` fields only carry the
    /// metadata already taken from the normalized callsite.
    from_log: bool,
    /// Whether `has_field` will be asked (span fields are copied), so the keys are kept.
    track_keys: bool,
    /// The event's fields kept as attributes so far, and those the count limit left out.
    kept: usize,
    dropped: u32,
}

impl<'s> RecordWriter<'s> {
    pub(crate) fn new(scratch: &'s mut Scratch, time: u64, observed: u64) -> Self {
        Self {
            scratch,
            time,
            observed,
            severity: 0,
            severity_text: "",
            event_name: "",
            trace: None,
            scope: Cow::Borrowed(DEFAULT_SCOPE),
            limits: AttributeLimits::NONE,
            from_log: false,
            track_keys: false,
            kept: 0,
            dropped: 0,
        }
    }

    pub(crate) fn severity(&mut self, number: i32, text: &'static str) -> &mut Self {
        (self.severity, self.severity_text) = (number, text);
        self
    }

    /// Limits for the event's own fields (visited through [`Visit`]).
    pub(crate) fn limits(&mut self, limits: AttributeLimits, from_log: bool) -> &mut Self {
        (self.limits, self.from_log) = (limits, from_log);
        self
    }

    /// Keeps the event's field names for [`has_field`](Self::has_field).
    pub(crate) fn track_keys(&mut self, track: bool) -> &mut Self {
        self.track_keys = track;
        self
    }

    #[cfg(any(test, feature = "sdk"))]
    pub(crate) fn event_name(&mut self, name: &'static str) -> &mut Self {
        self.event_name = name;
        self
    }

    pub(crate) fn scope(&mut self, scope: Cow<'static, str>) -> &mut Self {
        self.scope = scope;
        self
    }

    pub(crate) fn trace(&mut self, flags: u8, trace_id: [u8; 16], span_id: [u8; 8]) -> &mut Self {
        self.trace = Some((u32::from(flags), trace_id, span_id));
        self
    }

    /// The body; a later one replaces it.
    #[cfg(any(test, feature = "sdk"))]
    pub(crate) fn body(&mut self, value: &AnyValue) {
        self.scratch.body.clear();
        wire::encode_any_value(value, &mut self.scratch.body);
        self.scratch.has_body = true;
    }

    /// The message, formatted straight into the body's `string_value` (its length prefix
    /// assumed one byte, and widened after for a message of 128 bytes or more).
    fn body_fmt(&mut self, message: fmt::Arguments<'_>) {
        let body = &mut self.scratch.body;
        body.clear();
        wire::encode_key(
            tag::STRING_VALUE,
            prost::encoding::WireType::LengthDelimited,
            body,
        );
        let start = body.len() + 1;
        body.push(0);
        let _ = fmt::write(&mut Utf8Sink(body), message);
        let len = body.len() - start;
        if len < 0x80 {
            body[start - 1] = len as u8;
        } else {
            let mut prefix = Vec::with_capacity(4);
            wire::encode_varint(len as u64, &mut prefix);
            body.splice(start - 1..start, prefix);
        }
        self.scratch.has_body = true;
    }

    fn body_str(&mut self, text: &str) {
        self.scratch.body.clear();
        wire::encode_bytes_field(tag::STRING_VALUE, text.as_bytes(), &mut self.scratch.body);
        self.scratch.has_body = true;
    }

    /// An attribute, outside the event's own fields' limits (code location, span fields).
    pub(crate) fn attribute(&mut self, key: &str, value: &AnyValue) {
        wire::encode_attribute(key, value, &mut self.scratch.attributes);
    }

    /// An attribute of a record made elsewhere (an SDK record's, for the `sdk` exporter), under
    /// the limits of an event's own fields.
    #[cfg(feature = "sdk")]
    pub(crate) fn limited_attribute(&mut self, key: &str, value: &AnyValue) {
        if self.kept >= self.limits.count {
            self.dropped += 1;
            return;
        }
        self.kept += 1;
        match value {
            AnyValue::String(text) => {
                let text = cut(text.as_str(), self.limits.value_length);
                wire::encode_str_attribute(key, text, &mut self.scratch.attributes);
            }
            value => wire::encode_attribute(key, value, &mut self.scratch.attributes),
        }
    }

    pub(crate) fn str_attribute(&mut self, key: &str, value: &str) {
        wire::encode_str_attribute(key, value, &mut self.scratch.attributes);
    }

    /// Whether the event has a field `key` of its own (with [`track_keys`](Self::track_keys)).
    pub(crate) fn has_field(&self, key: &str) -> bool {
        self.scratch.keys.contains(&key)
    }

    /// Name, target and (with `location`) code location of a native `tracing` event.
    pub(crate) fn callsite(&mut self, meta: &'static Metadata<'static>, location: bool) {
        let Scratch {
            callsites,
            attributes,
            ..
        } = &mut *self.scratch;
        let site = Callsite::cached(callsites, meta, location);
        attributes.extend_from_slice(&site.location);
        self.event_name = site.event_name;
        self.scope = Cow::Borrowed(meta.target());
    }

    /// Target and code location of an event bridged from `log`, from its normalized metadata.
    pub(crate) fn bridged_callsite(&mut self, meta: &Metadata<'_>) {
        self.scope(Cow::Owned(meta.target().to_owned()));
        encode_location(
            meta.file(),
            meta.line(),
            meta.module_path(),
            &mut self.scratch.attributes,
        );
    }

    /// The trace context of the current OpenTelemetry span (a `tracing-opentelemetry` span
    /// entered), if there is one.
    pub(crate) fn current_trace_context(&mut self) {
        use opentelemetry::trace::TraceContextExt as _;
        opentelemetry::Context::map_current(|cx| {
            let span = cx.span();
            let context = span.span_context();
            if context.is_valid() {
                self.trace(
                    context.trace_flags().to_u8(),
                    context.trace_id().to_bytes(),
                    context.span_id().to_bytes(),
                );
            }
        });
    }

    /// The record, copied into the thread's chunk; `dropped` is added to the fields the count
    /// limit left out.
    pub(crate) fn finish(self, dropped: u32) -> EncodedRecord {
        let Self { scratch, .. } = self;
        // The small fields before and after the body and attributes are written to `out`; the
        // record is then assembled once, in the chunk, without copying the body twice.
        let out = &mut scratch.out;
        wire::encode_fixed64(tag::TIME_UNIX_NANO, self.time, out);
        wire::encode_varint_field(tag::SEVERITY_NUMBER, self.severity as u64, out);
        wire::encode_string(tag::SEVERITY_TEXT, self.severity_text, out);
        if scratch.has_body {
            wire::encode_delimited_header(tag::BODY, scratch.body.len(), out);
        }
        let head = out.len();
        let dropped = u64::from(self.dropped.saturating_add(dropped));
        wire::encode_varint_field(tag::DROPPED_ATTRIBUTES_COUNT, dropped, out);
        if let Some((flags, trace_id, span_id)) = &self.trace {
            wire::encode_fixed32(tag::FLAGS, *flags, out);
            wire::encode_bytes_field(tag::TRACE_ID, trace_id, out);
            wire::encode_bytes_field(tag::SPAN_ID, span_id, out);
        }
        wire::encode_fixed64(tag::OBSERVED_TIME_UNIX_NANO, self.observed, out);
        wire::encode_string(tag::EVENT_NAME, self.event_name, out);
        let body: &[u8] = if scratch.has_body { &scratch.body } else { &[] };
        let split = head + body.len() + scratch.attributes.len();
        let len = split + (out.len() - head);
        let chunk = &mut scratch.chunk;
        if chunk.capacity() - chunk.len() < len {
            *chunk = BytesMut::with_capacity(CHUNK.max(len));
        }
        chunk.extend_from_slice(&out[..head]);
        chunk.extend_from_slice(body);
        chunk.extend_from_slice(&scratch.attributes);
        chunk.extend_from_slice(&out[head..]);
        EncodedRecord {
            bytes: chunk.split().freeze(),
            split,
            scope: self.scope,
        }
    }

    /// Whether the event's field `field` is kept as an attribute, under the count limit.
    fn keep(&mut self, field: &Field) -> bool {
        if self.from_log && field.name().starts_with("log.") {
            return false;
        }
        if self.kept >= self.limits.count {
            self.dropped += 1;
            return false;
        }
        self.kept += 1;
        if self.track_keys {
            self.scratch.keys.push(field.name());
        }
        true
    }

    /// A string field of the event, cut to the value length limit on a char boundary.
    fn field_str(&mut self, field: &Field, text: &str) {
        if field.name() == MESSAGE {
            return self.body_str(text);
        }
        if self.keep(field) {
            let text = cut(text, self.limits.value_length);
            wire::encode_str_attribute(field.name(), text, &mut self.scratch.attributes);
        }
    }

    /// A field whose value is formatted first (`Debug`, `Display`, a number too large for i64).
    fn field_fmt(&mut self, field: &Field, value: fmt::Arguments<'_>) {
        let mut text = std::mem::take(&mut self.scratch.text);
        text.clear();
        let _ = text.write_fmt(value);
        self.field_str(field, &text);
        self.scratch.text = text;
    }

    fn field_value(&mut self, field: &Field, value: &AnyValue) {
        if self.keep(field) {
            wire::encode_attribute(field.name(), value, &mut self.scratch.attributes);
        }
    }

    fn field_int(&mut self, field: &Field, value: i64) {
        if self.keep(field) {
            wire::encode_int_attribute(field.name(), value, &mut self.scratch.attributes);
        }
    }
}

impl Visit for RecordWriter<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.field_str(field, value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == MESSAGE {
            return self.body_fmt(format_args!("{value:?}"));
        }
        self.field_fmt(field, format_args!("{value:?}"));
    }

    fn record_error(&mut self, _field: &Field, value: &(dyn std::error::Error + 'static)) {
        // `&dyn Error` erases the concrete type, so `exception.type` cannot be known here.
        let mut text = std::mem::take(&mut self.scratch.text);
        text.clear();
        let _ = write!(text, "{value}");
        self.str_attribute("exception.message", &text);
        self.scratch.keys.push("exception.message");
        self.scratch.text = text;
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.field_int(field, value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        match i64::try_from(value) {
            Ok(value) => self.field_int(field, value),
            Err(_) => self.field_fmt(field, format_args!("{value}")),
        }
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        match i64::try_from(value) {
            Ok(value) => self.field_int(field, value),
            Err(_) => self.field_fmt(field, format_args!("{value}")),
        }
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        match i64::try_from(value) {
            Ok(value) => self.field_int(field, value),
            Err(_) => self.field_fmt(field, format_args!("{value}")),
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.field_value(field, &AnyValue::Double(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.field_value(field, &AnyValue::Boolean(value));
    }
}
