//! The `sdk` module inside the official OpenTelemetry pipeline (`OpenTelemetryTracingBridge`,
//! `SdkLoggerProvider`, `BatchLogProcessor`, `tracing-opentelemetry` alongside), to the
//! `testing` receiver: ZenML's attributes from span fields (inheritance, values recorded later)
//! and from the handover (the outermost context), trace and span ids, and, with
//! `ZenmlLogExporter`, per-run resources under the configuration's `service.*`; with
//! opentelemetry-otlp's exporter the three run keys stay record attributes.
//!
//! Tests here change process environment variables (the handover), so they hold one lock.

mod common;
mod sdk_support;

use common::{by_body, WAIT};
use opentelemetry::trace::TraceContextExt as _;
use sdk_support::*;
use tracing::{info, info_span};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use zenml_otel::sdk::{ZenmlContextLayer, ZenmlLogExporter, ZenmlLogProcessor};
use zenml_otel::testing::OtlpReceiver;
use zenml_otel::{fields, handover, OtelLogStoreConfig};

/// Logs inside a run span and a step span (its log id recorded later), one event in a
/// nested span of the program's own, and returns the trace and span ids of that nested span.
fn log_in_spans() -> (Vec<u8>, Vec<u8>) {
    let run = info_span!("pipeline", zenml.pipeline_run_id = RUN);
    let _run = run.enter();
    let step = info_span!(
        "step",
        zenml.step_id = STEP,
        zenml.log.id = tracing::field::Empty
    );
    let _step = step.enter();
    info!("before the log id");
    step.record("zenml.log.id", LOG);
    let fit = info_span!("fit", model = "linear");
    let _fit = fit.enter();
    info!(rows = 3u64, "inside the step");
    let context = fit.context();
    let span = context.span();
    let ids = span.span_context();
    (
        ids.trace_id().to_bytes().to_vec(),
        ids.span_id().to_bytes().to_vec(),
    )
}

#[test]
fn span_fields_reach_the_records_through_our_exporter_under_per_run_resources() {
    let _env = env(&[]);
    let receiver = OtlpReceiver::start().unwrap();
    let official = Official::new(zenml_exporter(&receiver), provider_resource());
    let (trace_id, span_id) = official.run(log_in_spans);
    official.flush();
    let records = receiver.wait_for_records(2, WAIT);
    let record = by_body(&records, "inside the step");
    assert_zenml_record_ids(record, RUN, STEP, LOG);
    assert_eq!(record.attr_str("rows").as_deref(), Some("3"));
    // The per-run resource, as ZenmlOtelLayer's: the three keys moved there from the record.
    assert_eq!(
        record.resource_attr(fields::PIPELINE_RUN_ID).as_deref(),
        Some(RUN)
    );
    assert_eq!(record.resource_attr(fields::STEP_ID).as_deref(), Some(STEP));
    assert_eq!(
        record.resource_attr(fields::SOURCE).as_deref(),
        Some("step")
    );
    for key in [fields::PIPELINE_RUN_ID, fields::STEP_ID, fields::SOURCE] {
        assert_eq!(record.attr_str(key), None, "{key} is on the resource only");
    }
    // The configuration's service.* win over the provider's; the provider's own attributes stay.
    assert_eq!(
        record.resource_attr("service.name").as_deref(),
        Some("zenml-sdk-test")
    );
    assert_eq!(record.resource_attr("team").as_deref(), Some("data"));
    assert_eq!(record.scope_name, "sdk");
    assert_eq!(
        record.record.trace_id, trace_id,
        "tracing-opentelemetry's trace id"
    );
    assert_eq!(record.record.span_id, span_id);
    assert_eq!(record.record.severity_text, "INFO");
    // Before the late `record`, the step's record had no log id yet.
    let before = by_body(&records, "before the log id");
    assert_eq!(before.attr_str(fields::RECORD_LOG_ID), None);
    assert_eq!(
        before.attr_str(fields::RECORD_STEP_RUN_ID).as_deref(),
        Some(STEP)
    );
}

#[test]
fn with_opentelemetry_otlps_exporter_the_run_keys_stay_record_attributes() {
    let _env = env(&[]);
    let receiver = OtlpReceiver::start().unwrap();
    let official = Official::new(otlp_exporter(&receiver.logs_url()), provider_resource());
    let (trace_id, span_id) = official.run(log_in_spans);
    official.flush();
    let records = receiver.wait_for_records(2, WAIT);
    let record = by_body(&records, "inside the step");
    assert_zenml_record_ids(record, RUN, STEP, LOG);
    assert_eq!(
        record.attr_str(fields::PIPELINE_RUN_ID).as_deref(),
        Some(RUN)
    );
    assert_eq!(record.attr_str(fields::STEP_ID).as_deref(), Some(STEP));
    assert_eq!(record.attr_str(fields::SOURCE).as_deref(), Some("step"));
    // One provider, one resource: the provider's.
    assert_eq!(record.resource_attr(fields::PIPELINE_RUN_ID), None);
    assert_eq!(
        record.resource_attr("service.name").as_deref(),
        Some("provider-service")
    );
    assert_eq!(record.record.trace_id, trace_id);
    assert_eq!(record.record.span_id, span_id);
}

#[test]
fn the_handover_is_the_outermost_context_and_spans_override_it_per_field() {
    let _env = env(&step_handover());
    let receiver = OtlpReceiver::start().unwrap();
    let official = Official::new(zenml_exporter(&receiver), provider_resource());
    official.run(|| {
        info!("outside any span");
        info_span!("other", zenml.step_id = OTHER_STEP).in_scope(|| info!("in another step"));
    });
    official.flush();
    let records = receiver.wait_for_records(2, WAIT);
    let outside = by_body(&records, "outside any span");
    assert_zenml_record_ids(outside, RUN, STEP, LOG);
    assert_eq!(
        outside.attr_str("zenml.step.run.name").as_deref(),
        Some("trainer")
    );
    assert_eq!(
        outside.attr_str("zenml.pipeline.name").as_deref(),
        Some("training")
    );
    assert_eq!(
        outside.resource_attr(fields::STEP_ID).as_deref(),
        Some(STEP)
    );
    let other = by_body(&records, "in another step");
    // The step from the span, the run and the logs entry from the handover.
    assert_zenml_record_ids(other, RUN, OTHER_STEP, LOG);
    assert_eq!(
        other.resource_attr(fields::STEP_ID).as_deref(),
        Some(OTHER_STEP)
    );
    assert_eq!(
        other.resource_attr(fields::PIPELINE_RUN_ID).as_deref(),
        Some(RUN)
    );
}

#[test]
fn a_record_made_without_an_event_gets_the_handovers_context() {
    use opentelemetry::logs::{LogRecord as _, Logger as _, LoggerProvider as _};
    let _env = env(&step_handover());
    let receiver = OtlpReceiver::start().unwrap();
    let official = Official::new(otlp_exporter(&receiver.logs_url()), provider_resource());
    official.run(|| {
        info_span!("other", zenml.step_id = OTHER_STEP).in_scope(|| info!("in another step"));
    });
    // Straight through the logger API: no event, so no context left by the layer.
    let logger = official.logs.logger("direct");
    let mut record = logger.create_log_record();
    record.set_body("made by hand".into());
    logger.emit(record);
    official.flush();
    let records = receiver.wait_for_records(2, WAIT);
    assert_zenml_record_ids(by_body(&records, "in another step"), RUN, OTHER_STEP, LOG);
    assert_zenml_record_ids(by_body(&records, "made by hand"), RUN, STEP, LOG);
}

#[test]
fn runs_in_one_batch_go_under_their_own_resources() {
    let _env = env(&[]);
    let receiver = OtlpReceiver::start().unwrap();
    let official = Official::new(zenml_exporter(&receiver), provider_resource());
    official.run(|| {
        let run = info_span!("pipeline", zenml.pipeline_run_id = RUN);
        run.in_scope(|| {
            info!("orchestrating");
            info_span!("a", zenml.step_id = STEP).in_scope(|| info!("step a"));
            info_span!("b", zenml.step_id = OTHER_STEP).in_scope(|| info!("step b"));
        });
        info!("outside every run");
    });
    official.flush();
    let records = receiver.wait_for_records(4, WAIT);
    let request_resources = receiver
        .requests()
        .iter()
        .map(|r| r.body.resource_logs.len())
        .sum::<usize>();
    assert_eq!(
        request_resources, 4,
        "one ResourceLogs per run and the base"
    );
    let orchestrating = by_body(&records, "orchestrating");
    assert_eq!(
        orchestrating.resource_attr(fields::SOURCE).as_deref(),
        Some("orchestrator")
    );
    assert_eq!(orchestrating.resource_attr(fields::STEP_ID), None);
    let b = by_body(&records, "step b");
    assert_eq!(
        b.resource_attr(fields::STEP_ID).as_deref(),
        Some(OTHER_STEP)
    );
    let outside = by_body(&records, "outside every run");
    assert_eq!(outside.resource_attr(fields::PIPELINE_RUN_ID), None);
    assert_eq!(outside.attr_str(fields::RECORD_PIPELINE_RUN_ID), None);
    assert_eq!(
        outside.resource_attr("service.name").as_deref(),
        Some("zenml-sdk-test")
    );
}

#[test]
fn the_exporter_applies_the_configured_attribute_limits() {
    let _env = env(&[]);
    let receiver = OtlpReceiver::start().unwrap();
    let exporter = ZenmlLogExporter::new(OtelLogStoreConfig {
        endpoint: Some(receiver.endpoint()),
        attribute_value_length_limit: Some(4),
        attribute_count_limit: 2,
        ..OtelLogStoreConfig::default()
    })
    .unwrap();
    let official = Official::new(exporter, provider_resource());
    official.run(|| info!(a = "abcdefgh", b = 1, c = 2, "limited"));
    official.flush();
    let records = receiver.wait_for_records(1, WAIT);
    let record = by_body(&records, "limited");
    assert_eq!(record.attr_str("a").as_deref(), Some("abcd"));
    assert_eq!(record.attr_str("b").as_deref(), Some("1"));
    assert_eq!(record.attr_str("c"), None);
    assert_eq!(record.record.dropped_attributes_count, 1);
}

#[test]
fn the_export_paths_own_logs_are_not_exported() {
    let _env = env(&[]);
    let receiver = OtlpReceiver::start().unwrap();
    let exporter = zenml_exporter(&receiver);
    let handle = exporter.handle();
    let official = Official::new(exporter, provider_resource());
    official.run(|| {
        info!(target: "hyper::client", "a transport's own log");
        info!("the program's");
    });
    official.flush();
    let records = receiver.wait_for_records(1, WAIT);
    assert_eq!(records.len(), 1, "{records:#?}");
    assert_eq!(records[0].body().as_deref(), Some("the program's"));
    assert_eq!(handle.stats().exported, 1);
}

#[test]
fn a_malformed_handover_is_an_error_naming_the_variable() {
    let _env = env(&[(handover::PIPELINE_RUN_ID, "not-a-uuid")]);
    let processor = ZenmlLogProcessor::from_env().unwrap_err().to_string();
    assert!(processor.contains(handover::PIPELINE_RUN_ID), "{processor}");
    let layer = ZenmlContextLayer::from_env().unwrap_err().to_string();
    assert!(layer.contains(handover::PIPELINE_RUN_ID), "{layer}");
    let exporter = ZenmlLogExporter::from_env().unwrap_err().to_string();
    assert!(exporter.contains(handover::PIPELINE_RUN_ID), "{exporter}");
    // `Default` cannot fail: the layer goes on without the handover the processor refused.
    let _ = ZenmlContextLayer::default();
}

#[test]
fn a_bad_configuration_is_an_error_naming_the_field() {
    let _env = env(&[]);
    let error = ZenmlLogExporter::new(OtelLogStoreConfig {
        endpoint: Some("ftp://127.0.0.1:1".into()),
        ..OtelLogStoreConfig::default()
    })
    .unwrap_err()
    .to_string();
    assert!(error.contains("endpoint"), "{error}");
}
