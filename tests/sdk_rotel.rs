//! The `sdk` module through a real OTLP collector (rotel, forwarding to the `testing`
//! receiver): with `ZenmlLogExporter` (per-run resources, over HTTP and gRPC where built) and
//! with opentelemetry-otlp's exporter (the run keys on the records), ZenML's attributes from
//! span fields and from the handover arrive intact. Ignored in plain `cargo test`: it needs the
//! rotel-agent binary (`scripts/test.sh` runs it with `ROTEL_AGENT` set).

mod common;
mod sdk_support;

use common::rotel::Rotel;
use common::{by_body, WAIT};
use sdk_support::*;
use tracing::{info, info_span};
use zenml_otel::sdk::ZenmlLogExporter;
use zenml_otel::testing::{OtlpReceiver, ReceivedRecord};
use zenml_otel::{fields, OtelLogStoreConfig, Protocol};

fn log_a_step_and_the_handover() {
    info!("from the handover");
    let run = info_span!("pipeline", zenml.pipeline_run_id = RUN);
    run.in_scope(|| {
        info_span!("step", zenml.step_id = OTHER_STEP).in_scope(|| info!("from span fields"));
    });
}

fn assert_found_by_zenml(records: &[ReceivedRecord], rotel: &Rotel) {
    assert_eq!(records.len(), 2, "rotel log:\n{}", rotel.log());
    for (body, step) in [
        ("from the handover", STEP),
        ("from span fields", OTHER_STEP),
    ] {
        assert_zenml_record_ids(by_body(records, body), RUN, step, LOG);
    }
}

#[test]
#[ignore = "needs rotel"]
fn our_exporter_through_a_real_collector() {
    for protocol in common::built([Protocol::HttpProtobuf, Protocol::Grpc]) {
        let _env = env(&step_handover());
        let receiver = OtlpReceiver::start().unwrap();
        let rotel = Rotel::start_forwarding_to(&receiver.endpoint()).expect("start rotel-agent");
        let exporter = ZenmlLogExporter::new(OtelLogStoreConfig {
            endpoint: Some(rotel.endpoint(protocol)),
            protocol,
            ..OtelLogStoreConfig::default()
        })
        .unwrap();
        let official = Official::new(exporter, provider_resource());
        official.run(log_a_step_and_the_handover);
        official.flush();
        let records = receiver.wait_for_records(2, WAIT);
        assert_found_by_zenml(&records, &rotel);
        let spans = by_body(&records, "from span fields");
        assert_eq!(
            spans.resource_attr(fields::STEP_ID).as_deref(),
            Some(OTHER_STEP)
        );
        assert_eq!(
            spans.attr_str(fields::STEP_ID),
            None,
            "{protocol:?}: on the resource"
        );
        let handed = by_body(&records, "from the handover");
        assert_eq!(handed.resource_attr(fields::STEP_ID).as_deref(), Some(STEP));
        assert_eq!(
            handed.resource_attr("service.name").as_deref(),
            Some("zenml")
        );
    }
}

#[test]
#[ignore = "needs rotel"]
fn opentelemetry_otlps_exporter_through_a_real_collector() {
    let _env = env(&step_handover());
    let receiver = OtlpReceiver::start().unwrap();
    let rotel = Rotel::start_forwarding_to(&receiver.endpoint()).expect("start rotel-agent");
    let url = format!("{}/v1/logs", rotel.http_endpoint);
    let official = Official::new(otlp_exporter(&url), provider_resource());
    official.run(log_a_step_and_the_handover);
    official.flush();
    let records = receiver.wait_for_records(2, WAIT);
    assert_found_by_zenml(&records, &rotel);
    let spans = by_body(&records, "from span fields");
    assert_eq!(spans.attr_str(fields::STEP_ID).as_deref(), Some(OTHER_STEP));
    assert_eq!(
        spans.resource_attr("service.name").as_deref(),
        Some("provider-service")
    );
}
