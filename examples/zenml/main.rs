//! A real ZenML pipeline with a Python step and a step that runs a Rust program, both logging
//! to ZenML's `otel` log store; then the Rust step's logs as a backend shows them when filtered
//! by the step's `zenml.log.id`, both languages merged by time.
//!
//! Run it with `bash examples/zenml/run.sh`: that makes the ZenML venv (once), builds this and
//! `zenml-step` (the Rust program, examples/zenml/step.rs) and runs this. This starts a local
//! OTLP receiver, a throw-away ZenML project whose `otel` log store points at it, and
//! examples/zenml/pipeline.py, whose Rust step calls `run_rust_step` from python/zenml_otel.py.

#[path = "harness.rs"]
mod harness;

use zenml_otel::testing::OtlpReceiver;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let python = harness::python()?;
    let step = harness::example_binary("zenml-step")?;
    let receiver = OtlpReceiver::start()?;
    // ZenML's Python exporter sends proto field names (`resource_logs`), not spec OTLP/JSON.
    receiver.accept_proto_field_names(true);
    let project = harness::Project::init(python)?;
    project.use_otel_stack(&receiver.logs_url(), "zenml-demo")?;
    let pipeline = harness::repo().join("examples/zenml/pipeline.py");
    project.run_pipeline(&pipeline, &[("ZENML_OTEL_EXAMPLE_BIN", &step)])?;

    let records = harness::settled(&receiver);
    let rust = records
        .iter()
        .find(|r| harness::language(r) == "rust")
        .ok_or("no record of the Rust program arrived")?;
    let log_id = rust.attr_str("zenml.log.id").ok_or("no zenml.log.id")?;
    let step_name = rust.attr_str("zenml.step.run.name").unwrap_or_default();
    println!(
        "{} records arrived; step `{step_name}`, filtered by zenml.log.id = {log_id}:\n",
        records.len()
    );
    harness::print_logs(&harness::step_logs(&records, &log_id));
    Ok(())
}
