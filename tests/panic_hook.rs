//! `LogStoreHandle::install_panic_hook`: a panic becomes an ERROR record under the panicking
//! thread's run and step, exported before the process dies. Each case panics in a child
//! process (this test binary run again), which exports to a receiver the parent owns.

use std::process::Command;
use std::time::Duration;

use tracing::info_span;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use zenml_otel::testing::OtlpReceiver;
use zenml_otel::{OtelLogStoreConfig, ZenmlOtelLayer};

const CHILD: &str = "ZENML_OTEL_TEST_PANIC_CHILD";
const ENDPOINT: &str = "ZENML_OTEL_TEST_PANIC_ENDPOINT";

/// Runs test `name` of this binary again as a child that panics; returns the records received.
fn run_child(name: &str) -> Vec<zenml_otel::testing::ReceivedRecord> {
    let receiver = OtlpReceiver::start().unwrap();
    let output = Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .env(ENDPOINT, receiver.endpoint())
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    // The previous hook still ran after ours.
    assert!(stderr.contains("boom 42"), "{stderr}");
    assert_eq!(output.status.code(), Some(101), "{stderr}");
    receiver.wait_for_records(1, Duration::from_secs(10))
}

/// In the child: the layer with the hook, as the global subscriber. The hook before ours prints
/// the panic and ends the process at once, as `panic = "abort"` would: no unwinding closes the
/// step span, so only the hook's own flush can have sent the record.
fn child_setup() {
    std::panic::set_hook(Box::new(|info| {
        eprintln!("{info}");
        std::process::exit(101);
    }));
    let layer = ZenmlOtelLayer::new(OtelLogStoreConfig {
        endpoint: Some(std::env::var(ENDPOINT).unwrap()),
        // Nothing but the hook's flush sends the record before the process dies.
        schedule_delay_millis: 600_000,
        ..OtelLogStoreConfig::default()
    })
    .unwrap();
    layer.handle().install_panic_hook();
    tracing_subscriber::registry().with(layer).init();
}

#[test]
fn a_panic_is_an_error_record_under_its_step_exported_before_the_process_dies() {
    if std::env::var_os(CHILD).is_some() {
        child_setup();
        let step = info_span!(
            "step",
            zenml.pipeline_run_id = "run-1",
            zenml.step_id = "step-7"
        );
        let _step = step.enter();
        panic!("boom {}", 42);
    }
    let records =
        run_child("a_panic_is_an_error_record_under_its_step_exported_before_the_process_dies");
    let record = records
        .iter()
        .find(|r| r.attr_str("exception.message").as_deref() == Some("boom 42"))
        .unwrap_or_else(|| panic!("no panic record in {records:?}"));
    assert_eq!(record.record.severity_text, "ERROR");
    assert_eq!(record.record.severity_number, 17);
    assert_eq!(
        record.resource_attr("zenml.step_id").as_deref(),
        Some("step-7")
    );
    assert_eq!(
        record.resource_attr("zenml.pipeline_run_id").as_deref(),
        Some("run-1")
    );
    assert_eq!(record.attr_str("code.file.path").as_deref(), Some(file!()));
    // The panic's line: the one in this file that panics.
    let line: usize = record
        .attr_str("code.line.number")
        .unwrap()
        .parse()
        .unwrap();
    let source = include_str!("panic_hook.rs").lines().nth(line - 1).unwrap();
    assert!(
        source.contains("panic!(\"boom {}\", 42)"),
        "line {line}: {source}"
    );
    let body = record.body().unwrap();
    assert!(
        body.starts_with(&format!("panicked at {}:{line}:", file!())),
        "{body}"
    );
    assert!(body.ends_with(": boom 42"), "{body}");
    let stack = record
        .attr_str("exception.stacktrace")
        .expect("RUST_BACKTRACE=1 captures one");
    assert!(stack.contains("panic_hook"), "{stack}");
    // One location: the panic's, not the hook's.
    let paths = record
        .record
        .attributes
        .iter()
        .filter(|kv| kv.key == "code.file.path");
    assert_eq!(paths.count(), 1);
    assert_eq!(record.scope_name, "zenml_otel::panic");
}

#[test]
fn a_panic_on_another_thread_is_logged_under_that_threads_step() {
    if std::env::var_os(CHILD).is_some() {
        child_setup();
        let run = info_span!("run", zenml.pipeline_run_id = "run-1");
        let _run = run.enter();
        let worker = std::thread::Builder::new()
            .name("trainer".into())
            .spawn(|| {
                let step = info_span!(
                    "step",
                    zenml.pipeline_run_id = "run-2",
                    zenml.step_id = "s-2"
                );
                let _step = step.enter();
                panic!("boom {}", 42);
            });
        let _ = worker.unwrap().join();
        unreachable!("the panic hook ended the process");
    }
    let records = run_child("a_panic_on_another_thread_is_logged_under_that_threads_step");
    let record = records
        .iter()
        .find(|r| r.attr_str("exception.message").as_deref() == Some("boom 42"))
        .unwrap_or_else(|| panic!("no panic record in {records:?}"));
    assert_eq!(
        record.resource_attr("zenml.step_id").as_deref(),
        Some("s-2")
    );
    assert_eq!(
        record.resource_attr("zenml.pipeline_run_id").as_deref(),
        Some("run-2")
    );
    assert_eq!(record.attr_str("thread.name").as_deref(), Some("trainer"));
}
