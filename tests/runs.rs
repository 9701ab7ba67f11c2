//! Span context → resources: runs, steps and sources, inheritance, late recording.

mod common;

use std::collections::HashMap;

use common::{by_body, Harness};
use tracing::{info, info_span, Span};
use tracing_subscriber::layer::SubscriberExt;
use zenml_otel::fields::{PIPELINE_RUN_ID, SOURCE, STEP_ID};

#[test]
fn concurrent_runs_and_steps_each_land_under_their_own_resource() {
    let harness = Harness::new();
    const PER_CONTEXT: usize = 50;
    std::thread::scope(|threads| {
        for run in ["run-a", "run-b"] {
            let harness = &harness;
            threads.spawn(move || {
                harness.run(|| {
                    let orchestrator = info_span!("pipeline", zenml.pipeline_run_id = run);
                    let _o = orchestrator.enter();
                    for i in 0..PER_CONTEXT {
                        info!(i, "{run}/orchestrator/{i}");
                    }
                    std::thread::scope(|steps| {
                        for step in ["trainer", "evaluator"] {
                            let parent = orchestrator.clone();
                            steps.spawn(move || {
                                harness.run(|| {
                                    let span = info_span!(parent: &parent, "step", zenml.step_id = %format!("{run}-{step}"));
                                    let _s = span.enter();
                                    for i in 0..PER_CONTEXT {
                                        info!(i, "{run}/{step}/{i}");
                                    }
                                })
                            });
                        }
                    });
                })
            });
        }
    });
    let records = harness.flushed();
    assert_eq!(records.len(), 6 * PER_CONTEXT);
    let mut per_context: HashMap<String, usize> = HashMap::new();
    for record in &records {
        let body = record.body().unwrap();
        let mut parts = body.split('/');
        let (run, who) = (parts.next().unwrap(), parts.next().unwrap());
        assert_eq!(
            record.resource_attr(PIPELINE_RUN_ID).as_deref(),
            Some(run),
            "{body}"
        );
        if who == "orchestrator" {
            assert_eq!(record.resource_attr(STEP_ID), None, "{body}");
            assert_eq!(
                record.resource_attr(SOURCE).as_deref(),
                Some("orchestrator")
            );
        } else {
            let step_id = format!("{run}-{who}");
            assert_eq!(record.resource_attr(STEP_ID), Some(step_id), "{body}");
            assert_eq!(record.resource_attr(SOURCE).as_deref(), Some("step"));
        }
        for key in [
            "service.name",
            "service.version",
            "deployment.environment",
            "deployment.environment.name",
        ] {
            assert!(
                record.resource_attr(key).is_some(),
                "{key} missing on {body}"
            );
        }
        assert_eq!(
            record.resource_attr("service.instance.id").as_deref(),
            Some(harness.instance_id.as_str())
        );
        *per_context.entry(format!("{run}/{who}")).or_default() += 1;
    }
    assert_eq!(per_context.len(), 6);
    assert!(per_context.values().all(|&n| n == PER_CONTEXT));
    // A request carries each run's resource once, with all of that run's records under it.
    for request in harness.receiver.requests() {
        let resources: Vec<_> = request
            .body
            .resource_logs
            .iter()
            .map(|logs| format!("{:?}", logs.resource))
            .collect();
        let mut distinct = resources.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(
            distinct.len(),
            resources.len(),
            "a run repeated in one request"
        );
    }
}

#[test]
fn fields_recorded_later_replace_and_are_inherited() {
    let harness = Harness::new();
    harness.run(|| {
        let run = info_span!(
            "run",
            zenml.pipeline_run_id = tracing::field::Empty,
            zenml.log.id = "log-1"
        );
        let _r = run.enter();
        info!("before");
        Span::current().record(PIPELINE_RUN_ID, "late-run");
        info!("after");
        let step = info_span!("step", zenml.step_id = tracing::field::Empty);
        let _s = step.enter();
        info!("in step, id not yet known");
        step.record(STEP_ID, "first");
        step.record(STEP_ID, "second");
        info!("in step");
        let nested = info_span!(
            "nested",
            zenml.log.id = "log-2",
            zenml.pipeline.run.name = "demo"
        );
        let _n = nested.enter();
        info!("nested");
    });
    let records = harness.flushed();
    let before = by_body(&records, "before");
    assert_eq!(before.resource_attr(PIPELINE_RUN_ID), None);
    assert_eq!(before.resource_attr(SOURCE), None);
    assert_eq!(before.attr_str("zenml.log.id").as_deref(), Some("log-1"));

    let after = by_body(&records, "after");
    assert_eq!(
        after.resource_attr(PIPELINE_RUN_ID).as_deref(),
        Some("late-run")
    );
    assert_eq!(after.resource_attr(SOURCE).as_deref(), Some("orchestrator"));

    let unknown = by_body(&records, "in step, id not yet known");
    assert_eq!(unknown.resource_attr(STEP_ID), None);
    assert_eq!(
        unknown.resource_attr(PIPELINE_RUN_ID).as_deref(),
        Some("late-run")
    );

    let step = by_body(&records, "in step");
    assert_eq!(step.resource_attr(STEP_ID).as_deref(), Some("second"));
    assert_eq!(step.resource_attr(SOURCE).as_deref(), Some("step"));
    let step_ids = step.resource.iter().filter(|kv| kv.key == STEP_ID).count();
    assert_eq!(step_ids, 1, "recording again must replace, not duplicate");

    let nested = by_body(&records, "nested");
    assert_eq!(nested.resource_attr(STEP_ID).as_deref(), Some("second"));
    assert_eq!(nested.attr_str("zenml.log.id").as_deref(), Some("log-2"));
    assert_eq!(
        nested.attr_str("zenml.pipeline.run.name").as_deref(),
        Some("demo")
    );
    // zenml.* span fields are record attributes, never resource attributes.
    assert_eq!(nested.resource_attr("zenml.log.id"), None);
}

#[test]
fn innermost_span_wins_and_explicit_source_is_kept() {
    let harness = Harness::new();
    harness.run(|| {
        let outer = info_span!(
            "outer",
            zenml.pipeline_run_id = "outer-run",
            zenml.step_id = "outer-step"
        );
        let _o = outer.enter();
        let inner = info_span!(
            "inner",
            zenml.pipeline_run_id = "inner-run",
            zenml.source = "orchestrator"
        );
        let _i = inner.enter();
        info!("inner");
    });
    let records = harness.flushed();
    let record = by_body(&records, "inner");
    assert_eq!(
        record.resource_attr(PIPELINE_RUN_ID).as_deref(),
        Some("inner-run")
    );
    assert_eq!(record.resource_attr(STEP_ID).as_deref(), Some("outer-step"));
    assert_eq!(
        record.resource_attr(SOURCE).as_deref(),
        Some("orchestrator")
    );
}

#[test]
fn events_outside_runs_and_odd_ids_are_exported() {
    let harness = Harness::new();
    harness.run(|| {
        info!("outside");
        let weird = info_span!(
            "odd",
            zenml.pipeline_run_id = "not-a-uuid ✓",
            zenml.step_id = ""
        );
        let _w = weird.enter();
        info!("odd ids");
        let numeric = info_span!("numeric", zenml.pipeline_run_id = 42u64);
        let _n = numeric.enter();
        info!("numeric id");
    });
    let records = harness.flushed();
    let outside = by_body(&records, "outside");
    assert!(outside
        .resource
        .iter()
        .all(|kv| !kv.key.starts_with("zenml.")));
    assert_eq!(
        outside.resource_attr("service.name").as_deref(),
        Some("zenml")
    );
    let odd = by_body(&records, "odd ids");
    assert_eq!(
        odd.resource_attr(PIPELINE_RUN_ID).as_deref(),
        Some("not-a-uuid ✓")
    );
    assert_eq!(odd.resource_attr(STEP_ID).as_deref(), Some(""));
    let numeric = by_body(&records, "numeric id");
    assert_eq!(
        numeric.resource_attr(PIPELINE_RUN_ID).as_deref(),
        Some("42")
    );
}

#[test]
fn a_batch_of_many_runs_is_one_request_with_each_run_once() {
    let harness = Harness::new();
    harness.run(|| {
        // Interleaved, as concurrent steps log: run 0, 1, …, 99, 0, 1, …
        let spans: Vec<_> = (0..100)
            .map(|run| info_span!("run", zenml.pipeline_run_id = run, zenml.step_id = "s"))
            .collect();
        for line in 0..3 {
            for span in &spans {
                span.in_scope(|| info!(line, "step progress"));
            }
        }
    });
    let records = harness.flushed();
    assert_eq!(records.len(), 300);
    let requests = harness.receiver.requests();
    assert_eq!(requests.len(), 1, "300 records of 100 runs fit one batch");
    let resource_logs = &requests[0].body.resource_logs;
    assert_eq!(resource_logs.len(), 100);
    for record in &records {
        let run = record.resource_attr(PIPELINE_RUN_ID).expect("a run id");
        let mine: Vec<_> = records
            .iter()
            .filter(|r| r.resource_attr(PIPELINE_RUN_ID).as_deref() == Some(run.as_str()))
            .map(|r| r.attr_str("line"))
            .collect();
        // Each run's three records, under its one resource, in the order they were logged.
        assert_eq!(mine.len(), 3);
        assert_eq!(mine, ["0", "1", "2"].map(|i| Some(i.to_owned())));
    }
}

/// A slow answer to one request must not let the next request of the same run overtake it;
/// other runs do not wait for it.
fn a_runs_requests_arrive_in_order_while_other_runs_go_ahead(protocol: zenml_otel::Protocol) {
    use zenml_otel::testing::{Fault, OtlpReceiver};
    let receiver = OtlpReceiver::start().unwrap();
    let endpoint = match protocol {
        zenml_otel::Protocol::Grpc => receiver.grpc_endpoint(),
        _ => receiver.endpoint(),
    };
    let layer = zenml_otel::ZenmlOtelLayer::new(zenml_otel::OtelLogStoreConfig {
        endpoint: Some(endpoint),
        protocol,
        max_export_batch_size: 10,
        schedule_delay_millis: 600_000,
        ..Default::default()
    })
    .unwrap();
    let handle = layer.handle();
    receiver.fail_next(1, Fault::Delay(std::time::Duration::from_secs(1)));
    let sent = |n: usize| {
        let deadline = std::time::Instant::now() + common::WAIT;
        while receiver.attempts() < n {
            assert!(
                std::time::Instant::now() < deadline,
                "request {n} never came"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    };
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || {
        let a = info_span!("step", zenml.pipeline_run_id = "a");
        let b = info_span!("step", zenml.pipeline_run_id = "b");
        // A full batch of run a (its answer held back for a second), then one of b, then a's next.
        a.in_scope(|| (0..10).for_each(|i| info!(i, "a")));
        sent(1);
        b.in_scope(|| (0..10).for_each(|i| info!(i, "b")));
        sent(2);
        a.in_scope(|| (10..20).for_each(|i| info!(i, "a")));
    });
    handle.force_flush().unwrap();
    let arrived: Vec<(String, String)> = receiver
        .records()
        .iter()
        .map(|r| (r.body().unwrap(), r.attr_str("i").unwrap()))
        .collect();
    assert_eq!(arrived.len(), 30, "{arrived:?}");
    assert_eq!(
        arrived[0].0, "b",
        "run b did not wait for run a: {arrived:?}"
    );
    let a: Vec<u32> = arrived
        .iter()
        .filter(|(body, _)| body == "a")
        .map(|(_, i)| i.parse().unwrap())
        .collect();
    assert_eq!(a, (0..20).collect::<Vec<_>>(), "run a in the order logged");
}

#[test]
fn a_runs_requests_arrive_in_order_over_http() {
    a_runs_requests_arrive_in_order_while_other_runs_go_ahead(zenml_otel::Protocol::HttpProtobuf);
}

#[test]
#[cfg_attr(not(feature = "grpc"), ignore = "needs the `grpc` feature")]
fn a_runs_requests_arrive_in_order_over_grpc() {
    a_runs_requests_arrive_in_order_while_other_runs_go_ahead(zenml_otel::Protocol::Grpc);
}
