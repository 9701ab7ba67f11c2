//! [`ZenmlLogProcessor`]: stamps each SDK record with the ZenML context of the event it was
//! made of, and counts it for the receipt.

use std::sync::Arc;

use opentelemetry::logs::{AnyValue, LogRecord as _};
use opentelemetry::{InstrumentationScope, Value};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{LogProcessor, SdkLogRecord};
use opentelemetry_sdk::Resource;

use crate::fields;
use crate::handover::Handover;
use crate::span_context::{Resolved, Runs};
use crate::Error;

/// An [`opentelemetry_sdk::logs::LogProcessor`] that adds ZenML's record attributes to every
/// record: those of the context [`ZenmlContextLayer`](super::ZenmlContextLayer) resolved for
/// the event (else, for a record made another way, the process's handover), that is
/// `zenml.log.id`, `zenml.pipeline.run.id`, `zenml.step.run.id`, `zenml.log.source`, the
/// handover's names and ids, the spans' other `zenml.*` fields, and `zenml.pipeline_run_id`,
/// `zenml.step_id`, `zenml.source`.
///
/// Add it to the provider before the processor that exports: processors see a record in the
/// order they were added. It exports nothing; it counts every record it stamps, which a
/// [`ZenmlLogExporter`](super::ZenmlLogExporter)'s receipt takes as emitted.
#[derive(Debug)]
pub struct ZenmlLogProcessor {
    /// The handover's context, for records no layer left one for.
    outside: Arc<Resolved>,
}

impl ZenmlLogProcessor {
    /// Reads a ZenML step's handover, if any. A blank or malformed handover variable is an
    /// error naming it.
    pub fn from_env() -> Result<Self, Error> {
        let handover = Handover::read(&crate::environ::process)?;
        let runs = Runs::new(
            Resource::builder_empty().build(),
            Default::default(),
            handover.into(),
        );
        Ok(Self {
            outside: runs.outside().clone(),
        })
    }
}

/// The record attributes of `resolved`: its own, then the three ids of its run (its runs'
/// resources hold nothing else: `ZenmlContextLayer`'s are built on an empty one).
fn stamp(record: &mut SdkLogRecord, resolved: &Resolved) {
    for (key, value) in resolved.attributes() {
        record.add_attribute(key.clone(), value.clone());
    }
    for (key, value) in resolved.run.resource.iter() {
        if [fields::PIPELINE_RUN_ID, fields::STEP_ID, fields::SOURCE].contains(&key.as_str()) {
            record.add_attribute(key.clone(), any_value(value));
        }
    }
}

fn any_value(value: &Value) -> AnyValue {
    match value {
        Value::String(text) => AnyValue::String(text.clone()),
        other => AnyValue::from(other.to_string()),
    }
}

impl LogProcessor for ZenmlLogProcessor {
    fn emit(&self, record: &mut SdkLogRecord, _scope: &InstrumentationScope) {
        match super::handoff::take(record) {
            Some(resolved) => stamp(record, &resolved),
            None => stamp(record, &self.outside),
        }
        // The exporter leaves these out (the export path's own logs), so the receipt does too.
        let target = record.target().map_or("", |t| t.as_ref());
        if !crate::layer::is_exporter_target(target) {
            super::tally::count_emitted();
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }
}
