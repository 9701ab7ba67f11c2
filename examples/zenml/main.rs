//! A real ZenML pipeline with a Python step and a step that runs a Rust program, run twice:
//!
//! 1. on a stack with ZenML's `otel` log store: both languages export to it (the Rust program
//!    directly, with the store's configuration handed over); printed is the Rust step's logs as
//!    a backend shows them when filtered by the step's `zenml.log.id`, merged by time;
//! 2. on ZenML's default stack (artifact log store, no `otel`): `run_rust_step` relays the Rust
//!    program's records into the step's logs; printed is the Rust step's logs as ZenML returns
//!    them (examples/zenml/step_logs.py: the step's logs entry, read from its log store as
//!    ZenML's server reads it for the dashboard).
//!
//! Run it with `bash examples/zenml/run.sh`: that makes the ZenML venv (once), builds this and
//! `zenml-step` (the Rust program, examples/zenml/step.rs) and runs this. This starts a local
//! OTLP receiver, a throw-away ZenML project whose `otel` log store points at it, and
//! examples/zenml/pipeline.py, whose Rust step calls `run_rust_step` from the `zenml_otel` package (python/src).

#[path = "harness.rs"]
mod harness;

use zenml_otel::testing::OtlpReceiver;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let python = harness::python()?;
    let step = harness::example_binary("zenml-step")?;
    let pipeline = harness::repo().join("examples/zenml/pipeline.py");
    let project = harness::Project::init(python)?;

    println!("== 1. `otel` log store: what the OTLP backend received\n");
    let receiver = OtlpReceiver::start()?;
    // ZenML's Python exporter sends proto field names (`resource_logs`), not spec OTLP/JSON.
    receiver.accept_proto_field_names(true);
    project.use_otel_stack(&receiver.logs_url(), "zenml-demo")?;
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

    println!("\n== 2. default stack (artifact log store): the step's logs as ZenML returns them\n");
    project.zenml(&["stack", "set", "default"])?;
    let output = project.run_pipeline(&pipeline, &[("ZENML_OTEL_EXAMPLE_BIN", &step)])?;
    let run_id = harness::run_id(&output)?;
    println!("run {run_id}, step `rust_step`, logs entry with source \"step\":\n");
    let logs = project.run_python(
        &harness::repo().join("examples/zenml/step_logs.py"),
        &[&run_id, "rust_step"],
        &[],
    )?;
    print!("{}", String::from_utf8_lossy(&logs.stdout));

    println!(
        "\n== 3. the same run's console (what `python pipeline.py` printed), its Rust step:\n"
    );
    print!("{}", harness::step_console(&output, "rust_step"));
    Ok(())
}
