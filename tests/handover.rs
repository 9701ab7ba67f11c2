//! The handover from a ZenML step (`zenml_otel::handover`): the ids become the process's base
//! context, spans override them per field, ZenML's record attributes follow the resolved ids,
//! and the log store's configuration can be handed over as JSON or a file.
//!
//! Tests here change process environment variables, so they hold one lock for their duration.

mod common;

use common::env::Env;
use common::{by_body, Harness};
use tracing::{info, info_span};
use zenml_otel::testing::OtlpReceiver;
use zenml_otel::{handover, OtelLogStoreConfig, ZenmlOtelLayer};

const RUN: &str = "e44082a8-5006-4788-86e3-0c99ecfb36fe";
const STEP: &str = "3fa122bd-b946-4ce8-af22-67421f1fc97a";
const LOG: &str = "c56b45f8-66d7-41ca-a18f-d191fe71cc6b";
const STORE: &str = "da5eb578-9c83-4aaa-97a1-d4bea6b8ec76";

/// Variables besides the handover's that tests here set.
const OTHERS: &[&str] = &["OTEL_SERVICE_NAME"];

/// The environment lock with exactly `vars` set among the handover's and [`OTHERS`].
fn env(vars: &[(&str, &str)]) -> Env {
    Env::with(handover::ALL.iter().chain(OTHERS).copied(), vars)
}

fn step_handover() -> Vec<(&'static str, &'static str)> {
    vec![
        (handover::PIPELINE_RUN_ID, RUN),
        (handover::STEP_RUN_ID, STEP),
        (handover::LOG_ID, LOG),
        (handover::LOG_SOURCE, "step"),
        (handover::STEP_RUN_NAME, "trainer"),
        (handover::LOG_STORE_ID, STORE),
        (handover::LOG_STORE_NAME, "otel_logs"),
    ]
}

#[test]
fn records_outside_any_span_belong_to_the_handed_over_step() {
    let _env = env(&step_handover());
    let harness = Harness::new();
    harness.run(|| {
        info!("outside any span");
        info_span!("fit", model = "linear").in_scope(|| info!("in a span of the program's own"));
    });
    let records = harness.flushed();
    for body in ["outside any span", "in a span of the program's own"] {
        let record = by_body(&records, body);
        assert_eq!(
            record.resource_attr("zenml.pipeline_run_id").as_deref(),
            Some(RUN)
        );
        assert_eq!(record.resource_attr("zenml.step_id").as_deref(), Some(STEP));
        assert_eq!(
            record.resource_attr("zenml.source").as_deref(),
            Some("step")
        );
        for (key, value) in [
            ("zenml.pipeline.run.id", RUN),
            ("zenml.step.run.id", STEP),
            ("zenml.log.source", "step"),
            ("zenml.log.id", LOG),
            ("zenml.step.run.name", "trainer"),
            ("zenml.log_store.id", STORE),
            ("zenml.log_store.name", "otel_logs"),
        ] {
            assert_eq!(
                record.attr_str(key).as_deref(),
                Some(value),
                "{body}: {key}"
            );
        }
    }
}

#[test]
fn spans_override_the_handover_per_field() {
    let _env = env(&step_handover());
    let harness = Harness::new();
    let other_step = "0f8e8a4e-1b6b-4d5c-9f59-5f1a4a4f3b11";
    harness.run(|| {
        info_span!("sub", zenml.step_id = other_step, zenml.log.id = "own-log")
            .in_scope(|| info!("in a sub-step"));
        info_span!("orchestrate", zenml.source = "orchestrator")
            .in_scope(|| info!("as orchestrator"));
    });
    let records = harness.flushed();
    let sub = by_body(&records, "in a sub-step");
    assert_eq!(
        sub.resource_attr("zenml.step_id").as_deref(),
        Some(other_step)
    );
    assert_eq!(
        sub.resource_attr("zenml.pipeline_run_id").as_deref(),
        Some(RUN)
    );
    assert_eq!(
        sub.attr_str("zenml.step.run.id").as_deref(),
        Some(other_step)
    );
    assert_eq!(sub.attr_str("zenml.log.id").as_deref(), Some("own-log"));
    // Fields the span does not set still come from the handover.
    assert_eq!(
        sub.attr_str("zenml.step.run.name").as_deref(),
        Some("trainer")
    );
    let orchestrator = by_body(&records, "as orchestrator");
    assert_eq!(
        orchestrator.resource_attr("zenml.source").as_deref(),
        Some("orchestrator")
    );
    assert_eq!(
        orchestrator.attr_str("zenml.log.source").as_deref(),
        Some("orchestrator")
    );
    assert_eq!(
        orchestrator.attr_str("zenml.step.run.id").as_deref(),
        Some(STEP)
    );
}

#[test]
fn without_a_handover_runs_still_carry_zenmls_record_ids() {
    let _env = env(&[]);
    let harness = Harness::new();
    harness.run(|| {
        info!("outside");
        info_span!(
            "step",
            zenml.pipeline_run_id = "run-1",
            zenml.step_id = "s-1"
        )
        .in_scope(|| info!("inside"));
    });
    let records = harness.flushed();
    let outside = by_body(&records, "outside");
    assert!(outside
        .record
        .attributes
        .iter()
        .all(|kv| !kv.key.starts_with("zenml.")));
    assert_eq!(outside.resource_attr("zenml.source"), None);
    let inside = by_body(&records, "inside");
    assert_eq!(
        inside.attr_str("zenml.pipeline.run.id").as_deref(),
        Some("run-1")
    );
    assert_eq!(inside.attr_str("zenml.step.run.id").as_deref(), Some("s-1"));
    assert_eq!(inside.attr_str("zenml.log.source").as_deref(), Some("step"));
    assert_eq!(inside.attr_str("zenml.log.id"), None);
}

#[test]
fn a_malformed_handover_fails_construction_naming_the_variable() {
    for (name, value) in [
        (handover::PIPELINE_RUN_ID, "run-1"),
        (handover::LOG_ID, ""),
        (handover::LOG_SOURCE, "a step"),
        (handover::STEP_RUN_NAME, " "),
        (handover::LOG_STORE_CONFIG, "{not json"),
        (handover::LOG_STORE_CONFIG, r#"{"endpoint": 7}"#),
        (handover::LOG_STORE_CONFIG, r#"{"no_such_key": 1}"#),
        (handover::LOG_STORE_CONFIG, r#"{"compression": "deflate"}"#),
        (handover::LOG_STORE_CONFIG_FILE, "/no/such/file.json"),
        (handover::STATS_FILE, " "),
        (handover::STATS_FILE, "/no/such/dir/stats.json"),
        (handover::STATS_FILE, "/tmp"),
    ] {
        let _env = env(&[(name, value)]);
        let error = ZenmlOtelLayer::new(OtelLogStoreConfig::default())
            .expect_err(&format!("{name}={value:?} is refused"));
        assert_eq!(error.field(), Some(name), "{name}={value:?}: {error}");
    }
}

/// The JSON `run_rust_step` hands over: the `otel` component's configuration as ZenML dumps it.
fn component_json(endpoint: &str) -> String {
    serde_json::json!({
        "service_name": "zenml-pipelines",
        "service_version": "0.98.0",
        "max_queue_size": 100000,
        "schedule_delay_millis": 5000,
        "max_export_batch_size": 5000,
        "export_timeout_millis": 15000,
        "endpoint": endpoint,
        "headers": {"x-team": "ml"},
        "certificate_file": null,
        "client_key_file": null,
        "client_certificate_file": null,
        "compression": "gzip"
    })
    .to_string()
}

fn export_one_with_handed_over_config(vars: &[(&str, &str)]) {
    let _env = env(vars);
    let layer = ZenmlOtelLayer::new(OtelLogStoreConfig::default()).unwrap();
    let handle = layer.handle();
    tracing::subscriber::with_default(
        tracing_subscriber::layer::SubscriberExt::with(tracing_subscriber::registry(), layer),
        || info!("configured by the step"),
    );
    handle.shutdown().unwrap();
}

#[test]
fn the_log_store_configuration_is_handed_over_as_json_or_a_file() {
    let receiver = OtlpReceiver::start().unwrap();
    let json = component_json(&receiver.logs_url());
    let file = std::env::temp_dir().join(format!("zenml-otel-store-{}.json", std::process::id()));
    std::fs::write(&file, &json).unwrap();
    export_one_with_handed_over_config(&[(handover::LOG_STORE_CONFIG, &json)]);
    export_one_with_handed_over_config(&[(
        handover::LOG_STORE_CONFIG_FILE,
        file.to_str().unwrap(),
    )]);
    std::fs::remove_file(&file).unwrap();

    let requests = receiver.requests();
    assert_eq!(requests.len(), 2);
    for request in &requests {
        assert_eq!(request.header("x-team"), Some("ml"));
        assert_eq!(request.header("content-encoding"), Some("gzip"));
    }
    let records = receiver.records();
    for record in &records {
        assert_eq!(
            record.resource_attr("service.name").as_deref(),
            Some("zenml-pipelines")
        );
        assert_eq!(
            record.resource_attr("service.version").as_deref(),
            Some("0.98.0")
        );
    }
}

#[test]
fn explicit_config_wins_over_the_handed_over_one_which_wins_over_otel_variables() {
    let _env = env(&[
        (
            handover::LOG_STORE_CONFIG,
            &component_json("http://127.0.0.1:9/v1/logs"),
        ),
        ("OTEL_SERVICE_NAME", "from-otel-env"),
    ]);
    let config = OtelLogStoreConfig::from_env().unwrap();
    assert_eq!(config.service_name, "zenml-pipelines");
    assert_eq!(config.max_queue_size, 100_000);
    let explicit = ZenmlOtelLayer::new(OtelLogStoreConfig {
        endpoint: Some("http://127.0.0.1:4318".into()),
        ..OtelLogStoreConfig::default()
    })
    .unwrap();
    assert_eq!(explicit.endpoint(), "http://127.0.0.1:4318/v1/logs");
    explicit.handle().shutdown().unwrap();
}

#[test]
fn shutdown_writes_the_final_counters_where_the_step_asked() {
    let receiver = OtlpReceiver::start().unwrap();
    let dir = std::env::temp_dir().join(format!("zenml-otel-stats-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("stats.json");
    let _env = env(&[(handover::STATS_FILE, path.to_str().unwrap())]);
    let layer = ZenmlOtelLayer::new(OtelLogStoreConfig {
        endpoint: Some(receiver.endpoint()),
        max_queue_size: 2,
        max_export_batch_size: 2,
        schedule_delay_millis: 600_000,
        ..OtelLogStoreConfig::default()
    })
    .unwrap();
    let guard = layer.guard();
    tracing::subscriber::with_default(
        tracing_subscriber::layer::SubscriberExt::with(tracing_subscriber::registry(), layer),
        || {
            for n in 0..5 {
                info!(n, "counted");
            }
        },
    );
    assert!(!path.exists(), "written at shutdown, not before");
    let stats = guard.handle().stats();
    drop(guard);
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("the guard's drop wrote it")).unwrap();
    assert_eq!(written["emitted"], 5);
    assert_eq!(
        written["exported"].as_u64().unwrap() + written["dropped"].as_u64().unwrap(),
        5,
        "{written}"
    );
    assert!(
        stats.dropped >= 1,
        "the 2-record queue overflowed: {stats:?}"
    );
    assert_eq!(written["dropped"], stats.dropped, "{written}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A named pipe in a fresh directory, and a thread reading it to its end (the writer's close).
fn console_fifo(name: &str) -> (std::path::PathBuf, std::thread::JoinHandle<Vec<u8>>) {
    let dir = std::env::temp_dir().join(format!("zenml-otel-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("console");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let path = fifo.clone();
    let reader = std::thread::spawn(move || std::fs::read(&path).unwrap());
    (fifo, reader)
}

fn log_to_console(fifo: &std::path::Path, receiver: &OtlpReceiver) {
    let _env = env(&[(handover::CONSOLE_FIFO, fifo.to_str().unwrap())]);
    let layer = ZenmlOtelLayer::new(OtelLogStoreConfig {
        endpoint: Some(receiver.endpoint()),
        ..OtelLogStoreConfig::default()
    })
    .unwrap();
    let handle = layer.handle();
    tracing::subscriber::with_default(
        tracing_subscriber::layer::SubscriberExt::with(tracing_subscriber::registry(), layer),
        || {
            tracing::info!(target: "app::load", rows = 3, "loaded");
            tracing::warn!(target: "app::train", "slow epoch");
            tracing::info!(target: "app::load", "done");
        },
    );
    handle.shutdown().unwrap();
}

#[test]
fn every_record_is_written_to_the_handed_over_console_pipe_once_in_order() {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use prost::Message as _;
    let receiver = OtlpReceiver::start().unwrap();
    let (fifo, reader) = console_fifo("console");
    log_to_console(&fifo, &receiver);
    let bytes = common::watchdog("the console pipe's end", move || reader.join().unwrap());
    let mut rest = bytes.as_slice();
    let mut shown = Vec::new();
    while !rest.is_empty() {
        let scope_logs =
            opentelemetry_proto::tonic::logs::v1::ScopeLogs::decode_length_delimited(&mut rest)
                .unwrap();
        let [record] = scope_logs.log_records.as_slice() else {
            panic!("one record a frame: {scope_logs:?}")
        };
        let Some(Value::StringValue(body)) = record.body.as_ref().and_then(|b| b.value.clone())
        else {
            panic!("a text body: {record:?}")
        };
        shown.push((
            scope_logs.scope.unwrap().name,
            body,
            record.severity_text.clone(),
        ));
    }
    let expected = [
        ("app::load", "loaded", "INFO"),
        ("app::train", "slow epoch", "WARN"),
        ("app::load", "done", "INFO"),
    ]
    .map(|(scope, body, level)| (scope.to_owned(), body.to_owned(), level.to_owned()));
    assert_eq!(shown, expected);
    assert_eq!(receiver.records().len(), 3, "exported as ever");
    std::fs::remove_dir_all(fifo.parent().unwrap()).unwrap();
}

#[test]
fn a_console_path_that_is_not_a_named_pipe_is_left_alone() {
    let receiver = OtlpReceiver::start().unwrap();
    let dir = std::env::temp_dir().join(format!("zenml-otel-console-file-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let planted = dir.join("console");
    std::fs::write(&planted, b"precious").unwrap();
    log_to_console(&planted, &receiver);
    assert_eq!(std::fs::read(&planted).unwrap(), b"precious");
    assert_eq!(receiver.records().len(), 3);
    std::fs::remove_dir_all(&dir).unwrap();
}
