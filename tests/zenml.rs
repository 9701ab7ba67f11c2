//! A Rust step inside a real ZenML pipeline (zenml[local,server]==0.98.0, installed by .ci/run or
//! `bash examples/zenml/run.sh`): its records carry the ids ZenML's own records of that step
//! carry, and ZenML's query (`zenml.log.id` + `service.name`) finds both languages' logs.

#[path = "../examples/zenml/harness.rs"]
mod harness;

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;
use zenml_otel::testing::{OtlpReceiver, ReceivedRecord};

const NEEDS_ZENML: &str = "needs ZenML";

fn project() -> harness::Project {
    let python = harness::python().expect(NEEDS_ZENML);
    harness::Project::init(python).expect("zenml init")
}

fn by_language<'a>(records: &[&'a ReceivedRecord], language: &str) -> Vec<&'a ReceivedRecord> {
    let mut of = records.to_vec();
    of.retain(|r| harness::language(r) == language);
    of
}

fn one_value<'a>(records: impl IntoIterator<Item = &'a ReceivedRecord>, key: &str) -> String {
    let values: BTreeSet<Option<String>> = records.into_iter().map(|r| r.attr_str(key)).collect();
    assert_eq!(values.len(), 1, "{key} differs: {values:?}");
    values
        .into_iter()
        .next()
        .flatten()
        .unwrap_or_else(|| panic!("no {key}"))
}

#[test]
#[ignore = "needs ZenML (zenml[local,server]==0.98.0 in a venv: .ci/run installs it)"]
fn rust_step_logs_land_next_to_the_python_steps() {
    let step = harness::example_binary("zenml-step").expect("cargo test builds the examples");
    let receiver = OtlpReceiver::start().unwrap();
    receiver.accept_proto_field_names(true);
    let project = project();
    project
        .use_otel_stack(&receiver.logs_url(), "zenml-otel-test")
        .unwrap();
    let pipeline = harness::repo().join("examples/zenml/pipeline.py");
    project
        .run_pipeline(&pipeline, &[("ZENML_OTEL_EXAMPLE_BIN", &step)])
        .unwrap();
    let records = harness::settled(&receiver);
    let all: Vec<&ReceivedRecord> = records.iter().collect();

    let rust = by_language(&all, "rust");
    assert!(
        rust.len() >= 4,
        "the Rust program's records: {}",
        rust.len()
    );
    let log_id = one_value(rust.iter().copied(), "zenml.log.id");
    let step_run_id = one_value(rust.iter().copied(), "zenml.step.run.id");
    let run_id = one_value(rust.iter().copied(), "zenml.pipeline.run.id");

    // The query ZenML's log stores run: zenml.log.id (and service.name).
    let found = harness::step_logs(&records, &log_id);
    let python = by_language(&found, "python");
    assert!(
        !python.is_empty(),
        "ZenML's own records of the step are found too"
    );
    assert_eq!(by_language(&found, "rust").len(), rust.len());
    for key in [
        "zenml.step.run.id",
        "zenml.pipeline.run.id",
        "zenml.step.run.name",
        "zenml.pipeline.name",
        "zenml.log.source",
        "zenml.log_store.id",
        "zenml.log_store.name",
        "zenml.project.id",
        "zenml.stack.id",
        "zenml.user.id",
    ] {
        let python_value = one_value(python.iter().copied(), key);
        let rust_value = one_value(rust.iter().copied(), key);
        assert_eq!(rust_value, python_value, "{key}");
    }
    assert_eq!(
        one_value(python.iter().copied(), "zenml.step.run.id"),
        step_run_id
    );
    assert_eq!(
        one_value(python.iter().copied(), "zenml.pipeline.run.id"),
        run_id
    );
    let service: BTreeSet<_> = found
        .iter()
        .map(|r| r.resource_attr("service.name"))
        .collect();
    assert_eq!(
        service,
        BTreeSet::from([Some("zenml-otel-test".to_owned())])
    );
    // The seed's resource attributes stay on the Rust side.
    assert_eq!(
        rust[0].resource_attr("zenml.pipeline_run_id"),
        Some(run_id.clone())
    );
    assert_eq!(
        rust[0].resource_attr("zenml.step_id"),
        Some(step_run_id.clone())
    );

    // The other step's records are the other step's: another log id, none under this one.
    let other_steps: BTreeSet<String> = records
        .iter()
        .filter(|r| r.attr_str("zenml.log.source").as_deref() == Some("step"))
        .filter_map(|r| r.attr_str("zenml.step.run.id"))
        .collect();
    assert!(other_steps.len() >= 2, "both steps logged: {other_steps:?}");
    assert!(found
        .iter()
        .all(|r| r.attr_str("zenml.step.run.id").as_deref() == Some(&step_run_id)));

    // Severities and bodies line up across the languages.
    let line = |r: &&ReceivedRecord| {
        (
            r.record.severity_number,
            r.record.severity_text.clone(),
            r.body().unwrap_or_default(),
        )
    };
    let rust_lines: Vec<_> = rust.iter().map(line).collect();
    assert!(rust_lines.contains(&(9, "INFO".into(), "rust: loading the features".into())));
    assert!(rust_lines.contains(&(13, "WARN".into(), "rust: score below threshold".into())));
    let python_lines: Vec<_> = python.iter().map(line).collect();
    assert!(
        python_lines.iter().any(|(n, t, _)| *n == 9 && t == "INFO"),
        "{python_lines:?}"
    );
    // Merged by time, the Python lines logged around the Rust program enclose its records.
    let order: Vec<String> = found.iter().map(|r| harness::language(r)).collect();
    let first_rust = order.iter().position(|l| l == "rust").unwrap();
    let last_rust = order.iter().rposition(|l| l == "rust").unwrap();
    assert!(
        order[..first_rust].contains(&"python".to_owned()),
        "{order:?}"
    );
    assert!(
        order[last_rust..].contains(&"python".to_owned()),
        "{order:?}"
    );
}

fn helper_outcome(project: &harness::Project) -> Value {
    let out = project.dir().join("outcome.json");
    let pipeline = harness::repo().join("tests/zenml/helper_pipeline.py");
    let dump_env = harness::repo().join("tests/zenml/dump_env.py");
    project
        .run_pipeline(
            &pipeline,
            &[
                ("ZENML_OTEL_TEST_OUT", &out),
                ("ZENML_OTEL_DUMP_ENV", &dump_env),
                // A stale handover, as if this process were itself started from a step.
                ("ZENML_OTEL_PIPELINE_NAME", Path::new("stale")),
            ],
        )
        .unwrap();
    serde_json::from_slice(&std::fs::read(&out).expect("the step wrote its outcome")).unwrap()
}

#[test]
#[ignore = "needs ZenML (zenml[local,server]==0.98.0 in a venv: .ci/run installs it)"]
fn without_an_otel_store_the_ids_are_still_handed_over() {
    let project = project();
    project.use_plain_stack().unwrap();
    let outcome = helper_outcome(&project);
    let env = &outcome["received"];
    let seen = &outcome["context"];
    assert_eq!(
        env["ZENML_OTEL_PIPELINE_RUN_ID"], seen["pipeline_run_id"],
        "{outcome}"
    );
    assert_eq!(
        env["ZENML_OTEL_STEP_RUN_ID"], seen["step_run_id"],
        "{outcome}"
    );
    assert_eq!(env["ZENML_OTEL_LOG_ID"], seen["log_id"], "{outcome}");
    assert!(env["ZENML_OTEL_LOG_ID"].is_string(), "{outcome}");
    assert_eq!(env["ZENML_OTEL_LOG_SOURCE"], "step", "{outcome}");
    assert!(
        env.get("ZENML_OTEL_LOG_STORE_CONFIG").is_none(),
        "{outcome}"
    );
    // A stale handover in the step's own environment never reaches the child.
    assert_ne!(env["ZENML_OTEL_PIPELINE_NAME"], "stale", "{outcome}");
    assert_eq!(outcome["called_process_error"], 3, "{outcome}");
    // With `logs="auto"` the same stack relays: the same ids, plus the relay's endpoint on
    // loopback behind a per-call secret, and a file for the program's final counters.
    let auto = &outcome["received_auto"];
    assert_eq!(
        auto["ZENML_OTEL_STEP_RUN_ID"],
        env["ZENML_OTEL_STEP_RUN_ID"]
    );
    assert_eq!(auto["ZENML_OTEL_LOG_ID"], env["ZENML_OTEL_LOG_ID"]);
    // The configuration holds the relay's secret: in a private file, never in the environment.
    assert!(auto.get("ZENML_OTEL_LOG_STORE_CONFIG").is_none(), "{auto}");
    let config: Value = serde_json::from_str(
        auto["config_file"]
            .as_str()
            .expect("the relay's configuration file"),
    )
    .unwrap();
    let endpoint = config["endpoint"].as_str().unwrap_or_default();
    assert!(endpoint.starts_with("http://127.0.0.1:"), "{config}");
    let secret = config["headers"]["authorization"]
        .as_str()
        .unwrap_or_default();
    assert!(
        secret.starts_with("Bearer ") && secret.len() > 30,
        "{config}"
    );
    assert!(auto["ZENML_OTEL_STATS_FILE"].is_string(), "{outcome}");
}

#[test]
#[ignore = "needs ZenML (zenml[local,server]==0.98.0 in a venv: .ci/run installs it)"]
fn outside_a_step_the_helper_raises() {
    let python = harness::python().expect(NEEDS_ZENML);
    let project = harness::Project::init(python.clone()).unwrap();
    let output = project
        .command(&python)
        .args([
            "-c",
            "import zenml_otel; zenml_otel.run_rust_step(['true'])",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("RuntimeError"), "{stderr}");
    assert!(stderr.contains("inside a ZenML step"), "{stderr}");
}

#[test]
fn the_pipeline_files_exist() {
    // The ignored tests above name these files; a rename must fail plain `cargo test` too.
    for file in [
        "examples/zenml/pipeline.py",
        "examples/zenml/run.sh",
        "python/src/zenml_otel/__init__.py",
        "tests/zenml/helper_pipeline.py",
        "tests/zenml/dump_env.py",
    ] {
        assert!(harness::repo().join(file).is_file(), "{file}");
    }
}
