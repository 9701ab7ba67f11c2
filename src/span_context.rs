//! Which run, step and source a span belongs to: the `zenml.*` fields recorded on spans, their
//! inheritance down the span tree, and one shared [`Run`] (with its OTLP resource) per distinct
//! run/step/source.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use opentelemetry::logs::AnyValue;
use opentelemetry::{Key, KeyValue, StringValue, Value};
use opentelemetry_sdk::Resource;
use tracing::field::{Field, Visit};

use crate::fields;
use crate::handover::Handover;
use crate::wire::{self, tag};

/// The `zenml.*` fields one span sets (or, once resolved, that a span sees from its scope).
#[derive(Debug, Default, Clone)]
pub(crate) struct SpanFields {
    pipeline_run_id: Option<Arc<str>>,
    step_id: Option<Arc<str>>,
    source: Option<Arc<str>>,
    /// Every other `zenml.*` field: copied onto records, never into the resource.
    attributes: Vec<(Key, AnyValue)>,
}

impl SpanFields {
    pub(crate) fn is_empty(&self) -> bool {
        self.pipeline_run_id.is_none()
            && self.step_id.is_none()
            && self.source.is_none()
            && self.attributes.is_empty()
    }

    pub(crate) fn sets_step(&self) -> bool {
        self.step_id.is_some()
    }

    /// Applies fields recorded later on the same span: a value recorded again replaces the old.
    pub(crate) fn update(&mut self, recorded: SpanFields) {
        let SpanFields {
            pipeline_run_id,
            step_id,
            source,
            attributes,
        } = recorded;
        if pipeline_run_id.is_some() {
            self.pipeline_run_id = pipeline_run_id;
        }
        if step_id.is_some() {
            self.step_id = step_id;
        }
        if source.is_some() {
            self.source = source;
        }
        for (key, value) in attributes {
            self.set_attribute(key, value);
        }
    }

    /// Sets an extra attribute, replacing an earlier value of the same key.
    fn set_attribute(&mut self, key: Key, value: AnyValue) {
        match self.attributes.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.attributes.push((key, value)),
        }
    }

    /// Takes from an enclosing span whatever an inner one has not set: the innermost value wins.
    fn inherit(&mut self, outer: &SpanFields) {
        fill(&mut self.pipeline_run_id, &outer.pipeline_run_id);
        fill(&mut self.step_id, &outer.step_id);
        fill(&mut self.source, &outer.source);
        for (key, value) in &outer.attributes {
            if !self.attributes.iter().any(|(k, _)| k == key) {
                self.attributes.push((key.clone(), value.clone()));
            }
        }
    }

    /// Whether any of the three fields that select a run (and its resource) is set.
    fn names_run(&self) -> bool {
        self.pipeline_run_id.is_some() || self.step_id.is_some() || self.source.is_some()
    }

    /// ZenML's own record attributes for the run's ids, so ZenML's queries find these records.
    /// They follow the resolved ids, whatever a span set under the same keys.
    fn add_zenml_record_ids(&mut self, source: &Arc<str>) {
        let ids = [
            (fields::RECORD_PIPELINE_RUN_ID, self.pipeline_run_id.clone()),
            (fields::RECORD_STEP_RUN_ID, self.step_id.clone()),
            (fields::RECORD_LOG_SOURCE, Some(source.clone())),
        ];
        for (key, value) in ids {
            if let Some(value) = value {
                let value = AnyValue::String(StringValue::from(value));
                self.set_attribute(Key::from_static_str(key), value);
            }
        }
    }

    fn set(
        &mut self,
        field: &Field,
        text: impl FnOnce() -> String,
        value: impl FnOnce() -> AnyValue,
    ) {
        match field.name() {
            fields::PIPELINE_RUN_ID => self.pipeline_run_id = Some(text().into()),
            fields::STEP_ID => self.step_id = Some(text().into()),
            fields::SOURCE => self.source = Some(text().into()),
            name if name.starts_with(fields::PREFIX) => {
                self.set_attribute(Key::from_static_str(name), value());
            }
            _ => {}
        }
    }
}

impl From<Handover> for SpanFields {
    fn from(handover: Handover) -> Self {
        Self {
            pipeline_run_id: handover.pipeline_run_id,
            step_id: handover.step_id,
            source: handover.source,
            attributes: handover.attributes,
        }
    }
}

fn fill(inner: &mut Option<Arc<str>>, outer: &Option<Arc<str>>) {
    if inner.is_none() {
        inner.clone_from(outer);
    }
}

fn shared_string(text: String) -> AnyValue {
    AnyValue::String(StringValue::from(Arc::<str>::from(text)))
}

/// Collects a span's `zenml.*` fields into a local [`SpanFields`], so that no span extension is
/// locked while user `Debug` impls run (they may enter tracing themselves).
impl Visit for SpanFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name().starts_with(fields::PREFIX) {
            self.set(
                field,
                || value.to_owned(),
                || shared_string(value.to_owned()),
            );
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name().starts_with(fields::PREFIX) {
            let text = format!("{value:?}");
            self.set(field, || text.clone(), || shared_string(text.clone()));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if field.name().starts_with(fields::PREFIX) {
            self.set(field, || value.to_string(), || AnyValue::Int(value));
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name().starts_with(fields::PREFIX) {
            self.set(
                field,
                || value.to_string(),
                || crate::record::u64_value(value),
            );
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if field.name().starts_with(fields::PREFIX) {
            self.set(field, || value.to_string(), || AnyValue::Double(value));
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if field.name().starts_with(fields::PREFIX) {
            self.set(field, || value.to_string(), || AnyValue::Boolean(value));
        }
    }
}

/// What the layer keeps in each span's extensions.
#[derive(Debug)]
pub(crate) struct SpanState {
    pub(crate) own: SpanFields,
    /// The resolved context, with the layer that resolved it and the generation it is valid for.
    cached: Option<(usize, u64, Arc<Resolved>)>,
}

impl SpanState {
    pub(crate) fn new(own: SpanFields) -> Self {
        Self { own, cached: None }
    }
}

/// Everything an event inside a span needs: its run (resource) and the extra record attributes
/// (the spans' other `zenml.*` fields, ZenML's ids). Queued records point here rather than
/// copying those attributes: the logging thread never touches them, and the encoder appends
/// their bytes, written once per resolution.
#[derive(Debug)]
pub(crate) struct Resolved {
    fields: SpanFields,
    pub(crate) run: Arc<Run>,
    /// `fields.attributes` as the `attributes` fields of an OTLP `LogRecord`.
    encoded: Box<[u8]>,
    /// Unique in the process: the spool names a record's context by it.
    pub(crate) id: u64,
}

impl Resolved {
    pub(crate) fn new(fields: SpanFields, run: Arc<Run>) -> Self {
        let encoded =
            wire::record_attributes(fields.attributes.iter().map(|(k, v)| (k.as_str(), v)));
        Self::encoded(fields, run, encoded)
    }

    /// A context read back from a dead process's spool: its attributes as they were encoded.
    pub(crate) fn recovered(run: Arc<Run>, encoded: Box<[u8]>) -> Self {
        Self::encoded(SpanFields::default(), run, encoded)
    }

    fn encoded(fields: SpanFields, run: Arc<Run>, encoded: Box<[u8]>) -> Self {
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        Self {
            fields,
            run,
            encoded,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// A context of `run` whose records carry `attributes` after their own.
    #[cfg(test)]
    pub(crate) fn with_attributes(run: Arc<Run>, attributes: Vec<(Key, AnyValue)>) -> Self {
        let fields = SpanFields {
            attributes,
            ..SpanFields::default()
        };
        Self::new(fields, run)
    }

    /// The record attributes every record in this context carries, after its own.
    #[cfg(any(test, feature = "sdk"))]
    pub(crate) fn attributes(&self) -> &[(Key, AnyValue)] {
        &self.fields.attributes
    }

    /// [`attributes`](Self::attributes), encoded.
    pub(crate) fn encoded_attributes(&self) -> &[u8] {
        &self.encoded
    }
}

/// One distinct pipeline run / step / source, with the OTLP resource its records are exported
/// under. Shared by every record of that run; released when the last span and record go.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) resource: Resource,
    /// The resource as it goes on the wire, encoded by the first batch the run is in.
    encoded: OnceLock<EncodedResource>,
    /// The pipeline's count of live runs; `None` for the base run outside any.
    gauge: Option<Arc<AtomicU64>>,
}

impl Run {
    pub(crate) fn new(resource: Resource, gauge: Option<Arc<AtomicU64>>) -> Self {
        Self {
            resource,
            encoded: OnceLock::new(),
            gauge,
        }
    }

    /// A run read back from a dead process's spool: its resource as it was encoded.
    pub(crate) fn recovered(encoded: EncodedResource) -> Self {
        Self {
            resource: Resource::builder_empty().build(),
            encoded: OnceLock::from(encoded),
            gauge: None,
        }
    }
}

impl Run {
    /// Whether a batch has encoded the resource yet.
    #[cfg(test)]
    pub(crate) fn is_encoded(&self) -> bool {
        self.encoded.get().is_some()
    }

    /// The run's `resource` and `schema_url` fields of a `ResourceLogs`, encoded once.
    pub(crate) fn encoded(&self) -> &EncodedResource {
        self.encoded.get_or_init(|| {
            let attributes =
                opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema::from(
                    &self.resource,
                );
            let resource = opentelemetry_proto::tonic::resource::v1::Resource {
                attributes: attributes.attributes.0,
                ..Default::default()
            };
            let mut encoded = Vec::new();
            prost::encoding::message::encode(tag::RESOURCE_LOGS_RESOURCE, &resource, &mut encoded);
            let mut schema_url = Vec::new();
            wire::encode_string(
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

/// A run's encoded `resource` field and `schema_url` field: the same for every batch the run
/// appears in, so encoded once (by its first batch) and kept with the run.
#[derive(Debug)]
pub(crate) struct EncodedResource {
    pub(crate) resource: Box<[u8]>,
    pub(crate) schema_url: Box<[u8]>,
}

impl Drop for Run {
    fn drop(&mut self) {
        if let Some(gauge) = &self.gauge {
            gauge.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct RunKey {
    pipeline_run_id: Option<Arc<str>>,
    step_id: Option<Arc<str>>,
    source: Arc<str>,
}

/// Resolves spans to runs and interns one [`Run`] per distinct key, for one layer instance.
#[derive(Debug)]
pub(crate) struct Runs {
    /// Distinguishes layer instances sharing one registry (and so one `SpanState` per span).
    id: usize,
    base_attributes: Vec<KeyValue>,
    /// The process's own context (a ZenML step's handover): outermost, under every span.
    base_fields: SpanFields,
    /// The resource of records outside any run.
    base_run: Arc<Run>,
    /// What events outside every `zenml.*` span resolve to: `base_fields`.
    outside: Arc<Resolved>,
    live: Mutex<Interned>,
    gauge: Arc<AtomicU64>,
    /// Bumped whenever a span records a `zenml.*` field, which may change what its descendants
    /// resolve to; cached resolutions of an older generation are recomputed.
    generation: AtomicU64,
    /// Bumped whenever a span closes: its id may then name another span.
    closes: AtomicU64,
}

/// See [`Runs::stamp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    runs: usize,
    generation: u64,
    closes: u64,
}

#[derive(Debug, Default)]
struct Interned {
    runs: HashMap<RunKey, Weak<Run>>,
    prune_at: usize,
}

impl Runs {
    pub(crate) fn new(base: Resource, gauge: Arc<AtomicU64>, base_fields: SpanFields) -> Self {
        // A run's own zenml.* keys win over any the base got from OTEL_RESOURCE_ATTRIBUTES, even
        // where the run has none (an orchestrator has no step id).
        let base_attributes: Vec<KeyValue> = base
            .iter()
            .filter(|(k, _)| {
                ![fields::PIPELINE_RUN_ID, fields::STEP_ID, fields::SOURCE].contains(&k.as_str())
            })
            .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
            .collect();
        let base_run = Arc::new(Run::new(base, None));
        let outside = Arc::new(Resolved::new(SpanFields::default(), base_run.clone()));
        static NEXT_ID: AtomicUsize = AtomicUsize::new(0);
        let mut runs = Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            base_attributes,
            base_fields: SpanFields::default(),
            base_run,
            outside,
            live: Mutex::new(Interned {
                runs: HashMap::new(),
                prune_at: 64,
            }),
            generation: AtomicU64::new(0),
            closes: AtomicU64::new(0),
            gauge,
        };
        runs.outside = runs.resolve(base_fields.clone());
        runs.base_fields = base_fields;
        runs
    }

    /// The context of events outside any span that sets a `zenml.*` field.
    pub(crate) fn outside(&self) -> &Arc<Resolved> {
        &self.outside
    }

    pub(crate) fn fields_changed(&self) {
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// The span's cached resolution, if this layer made it and it is still current.
    pub(crate) fn cached<'a>(&self, state: &'a SpanState) -> Option<&'a Arc<Resolved>> {
        let generation = self.generation.load(Ordering::Acquire);
        match &state.cached {
            Some((owner, at, resolved)) if *owner == self.id && *at == generation => Some(resolved),
            _ => None,
        }
    }

    /// Caches a resolution computed when the generation was `generation`; if fields changed
    /// meanwhile, the stamp is already stale and the next event recomputes.
    pub(crate) fn cache(&self, state: &mut SpanState, generation: u64, resolved: Arc<Resolved>) {
        state.cached = Some((self.id, generation, resolved));
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub(crate) fn span_closed(&self) {
        self.closes.fetch_add(1, Ordering::Release);
    }

    /// What a resolution keyed by span id is valid for: this layer, its generation of
    /// `zenml.*` fields, and no span closed since (which could free the id for another span).
    pub(crate) fn stamp(&self) -> Stamp {
        Stamp {
            runs: self.id,
            generation: self.generation(),
            closes: self.closes.load(Ordering::Acquire),
        }
    }

    /// Builds the context from fields gathered innermost-first by [`Resolver`].
    fn resolve(&self, mut fields: SpanFields) -> Arc<Resolved> {
        if fields.is_empty() {
            return self.outside.clone();
        }
        fields.inherit(&self.base_fields);
        let run = if !fields.names_run() {
            self.base_run.clone()
        } else {
            let source = fields
                .source
                .clone()
                .unwrap_or_else(|| derived_source(fields.step_id.is_some()));
            fields.add_zenml_record_ids(&source);
            self.run(RunKey {
                pipeline_run_id: fields.pipeline_run_id.clone(),
                step_id: fields.step_id.clone(),
                source,
            })
        };
        Arc::new(Resolved::new(fields, run))
    }

    /// The run of a record that carries its context as attributes (the `sdk` exporter's): the
    /// three ids that select it, the source derived as for spans when only the ids are given.
    #[cfg(feature = "sdk")]
    pub(crate) fn run_of(
        &self,
        pipeline_run_id: Option<Arc<str>>,
        step_id: Option<Arc<str>>,
        source: Option<Arc<str>>,
    ) -> Arc<Run> {
        if pipeline_run_id.is_none() && step_id.is_none() && source.is_none() {
            return self.base_run.clone();
        }
        let source = source.unwrap_or_else(|| derived_source(step_id.is_some()));
        self.run(RunKey {
            pipeline_run_id,
            step_id,
            source,
        })
    }

    fn run(&self, key: RunKey) -> Arc<Run> {
        let mut live = crate::sync::lock(&self.live);
        if let Some(run) = live.runs.get(&key).and_then(Weak::upgrade) {
            return run;
        }
        if live.runs.len() >= live.prune_at {
            live.runs.retain(|_, run| run.strong_count() > 0);
            live.prune_at = (live.runs.len() * 2).max(64);
        }
        let zenml = [
            key.pipeline_run_id
                .as_ref()
                .map(|id| KeyValue::new(fields::PIPELINE_RUN_ID, Value::String(id.clone().into()))),
            key.step_id
                .as_ref()
                .map(|id| KeyValue::new(fields::STEP_ID, Value::String(id.clone().into()))),
            Some(KeyValue::new(
                fields::SOURCE,
                Value::String(key.source.clone().into()),
            )),
        ];
        let resource = Resource::builder_empty()
            .with_attributes(
                self.base_attributes
                    .iter()
                    .cloned()
                    .chain(zenml.into_iter().flatten()),
            )
            .build();
        self.gauge.fetch_add(1, Ordering::Relaxed);
        let run = Arc::new(Run::new(resource, Some(Arc::clone(&self.gauge))));
        live.runs.insert(key, Arc::downgrade(&run));
        run
    }

    #[cfg(test)]
    fn live_runs(&self) -> usize {
        let live = self.live.lock().unwrap();
        live.runs.values().filter(|r| r.strong_count() > 0).count()
    }
}

/// `zenml.source` when no span sets it: `"step"` inside a step, else `"orchestrator"`.
fn derived_source(in_step: bool) -> Arc<str> {
    Arc::from(if in_step {
        fields::SOURCE_STEP
    } else {
        fields::SOURCE_ORCHESTRATOR
    })
}

/// Gathers fields from a span scope, innermost first, stopping at the first span whose cached
/// resolution is still valid (it already holds everything above it).
#[derive(Debug, Default)]
pub(crate) struct Resolver {
    fields: SpanFields,
}

impl Resolver {
    /// Adds one span of the scope; returns `false` once nothing further out can matter.
    pub(crate) fn visit(&mut self, runs: &Runs, state: &SpanState) -> bool {
        match runs.cached(state) {
            Some(resolved) => {
                self.fields.inherit(&resolved.fields);
                false
            }
            None => {
                self.fields.inherit(&state.own);
                true
            }
        }
    }

    pub(crate) fn finish(self, runs: &Runs) -> Arc<Resolved> {
        runs.resolve(self.fields)
    }
}

#[cfg(test)]
mod tests;
