//! Names of the span fields that place logs in a ZenML run.
//!
//! Set them on any span, at creation or later with [`tracing::Span::record`]; every event inside
//! the span (or its descendants) is exported under a resource carrying them. Per field, the
//! innermost span that sets it wins.
//!
//! | constant | field | meaning |
//! |---|---|---|
//! | [`PIPELINE_RUN_ID`] | `zenml.pipeline_run_id` | the pipeline run |
//! | [`STEP_ID`] | `zenml.step_id` | the step run, when inside a step |
//! | [`SOURCE`] | `zenml.source` | `"step"` or `"orchestrator"`; derived when not given |
//!
//! Any other span field whose name starts with [`PREFIX`] (for example `zenml.log.id`, which
//! ZenML reads logs back by) becomes a *record* attribute of every event inside that span.
//!
//! Every record in a run also carries ZenML's own record attributes for the same ids, so the
//! queries that find a Python step's logs find the Rust ones: [`RECORD_PIPELINE_RUN_ID`],
//! [`RECORD_STEP_RUN_ID`] and [`RECORD_LOG_SOURCE`], taken from the three fields above.

/// `zenml.pipeline_run_id`: the id of the pipeline run (exported exactly as given).
pub const PIPELINE_RUN_ID: &str = "zenml.pipeline_run_id";
/// `zenml.step_id`: the id of the step run (exported exactly as given).
pub const STEP_ID: &str = "zenml.step_id";
/// `zenml.source`: `"step"` or `"orchestrator"`. When no span sets it, it is `"step"` when a step
/// id is in scope and `"orchestrator"` otherwise.
pub const SOURCE: &str = "zenml.source";
/// The prefix of span fields that are copied onto every record inside the span.
pub const PREFIX: &str = "zenml.";

/// `zenml.source` value for logs emitted inside a step.
pub const SOURCE_STEP: &str = "step";
/// `zenml.source` value for logs emitted outside any step of a run.
pub const SOURCE_ORCHESTRATOR: &str = "orchestrator";

/// `zenml.pipeline.run.id`: ZenML's record attribute for the run; the value of
/// [`PIPELINE_RUN_ID`] on every record of a run.
pub const RECORD_PIPELINE_RUN_ID: &str = "zenml.pipeline.run.id";
/// `zenml.step.run.id`: ZenML's record attribute for the step run; the value of [`STEP_ID`].
pub const RECORD_STEP_RUN_ID: &str = "zenml.step.run.id";
/// `zenml.log.source`: ZenML's record attribute for the source; the value of [`SOURCE`].
pub const RECORD_LOG_SOURCE: &str = "zenml.log.source";
/// `zenml.log.id`: the id of a step's logs entry, by which ZenML's log stores find its logs.
pub const RECORD_LOG_ID: &str = "zenml.log.id";
