//! The span context's parts without a subscriber: a run's source derived unless given, one run
//! per key released when unused, the innermost field winning and a recorded one replacing it.

use super::*;

fn fields(run: Option<&str>, step: Option<&str>, source: Option<&str>) -> SpanFields {
    SpanFields {
        pipeline_run_id: run.map(Arc::from),
        step_id: step.map(Arc::from),
        source: source.map(Arc::from),
        attributes: Vec::new(),
    }
}

fn resource_value(run: &Run, key: &str) -> Option<String> {
    run.resource
        .get(&Key::from(key.to_owned()))
        .map(|v| v.to_string())
}

#[test]
fn source_is_derived_unless_given() {
    let runs = Runs::new(
        Resource::builder_empty().build(),
        Arc::default(),
        SpanFields::default(),
    );
    let step = runs.resolve(fields(Some("r"), Some("s"), None));
    assert_eq!(
        resource_value(&step.run, fields::SOURCE).as_deref(),
        Some("step")
    );
    let orchestrator = runs.resolve(fields(Some("r"), None, None));
    assert_eq!(
        resource_value(&orchestrator.run, fields::SOURCE).as_deref(),
        Some("orchestrator")
    );
    let explicit = runs.resolve(fields(Some("r"), Some("s"), Some("orchestrator")));
    assert_eq!(
        resource_value(&explicit.run, fields::SOURCE).as_deref(),
        Some("orchestrator")
    );
    assert_eq!(resource_value(&orchestrator.run, fields::STEP_ID), None);
}

#[test]
fn one_run_per_key_released_when_unused() {
    let runs = Runs::new(
        Resource::builder_empty().build(),
        Arc::default(),
        SpanFields::default(),
    );
    let a = runs.resolve(fields(Some("r"), Some("s"), None));
    let b = runs.resolve(fields(Some("r"), Some("s"), None));
    assert!(Arc::ptr_eq(&a.run, &b.run));
    assert_eq!(runs.live_runs(), 1);
    drop((a, b));
    assert_eq!(runs.live_runs(), 0);
}

#[test]
fn innermost_wins_and_recording_replaces() {
    let mut inner = fields(None, Some("inner-step"), None);
    inner.inherit(&fields(Some("run"), Some("outer-step"), None));
    assert_eq!(inner.step_id.as_deref(), Some("inner-step"));
    assert_eq!(inner.pipeline_run_id.as_deref(), Some("run"));
    inner.update(fields(None, Some("again"), None));
    assert_eq!(inner.step_id.as_deref(), Some("again"));
}
