# mypy: disallow-untyped-defs=False, disallow-incomplete-defs=False, disallow-untyped-calls=False
"""The relay keeps the delivery promise inside real ZenML pipelines (issue 25): a request's
records are stored in the order they were logged, and each once, when the store fails
mid-request or is slower than the program's export timeout (custom flavors, promise_stores.py)."""

import shutil

import pytest

from conftest import PROJECT, TESTS
from test_pipelines import fake, messages, project, receipt, step_logs  # noqa: F401


def test_a_requests_records_are_stored_in_the_order_logged(project):  # noqa: F811
    """The crate groups a request's records by scope (app::load's, then app::train's); ZenML's
    artifact log store stamps entries when it exports them, so its order is the relay's."""
    run = project.program_pipeline(cmd=fake("interleaved"))
    entries = step_logs(run)
    steps = [m for m in messages(entries) if m.startswith("fake: step ")]
    assert steps == [f"fake: step {i:02}" for i in range(12)]
    assert "(relay received 12)" in receipt(entries).message


RUST = ["rust: loading the features threads=2", "rust: fitted the model mean=0.5005",
        "rust: score below threshold score=0.5005 threshold=0.9", "rust: done"]


def run_on_store(project, flavor, binary):  # noqa: F811
    """The real program in a step whose stack's log store is `flavor` of promise_stores.py;
    the run, and the step's logs as ZenML returns them (the store's own `fetch`)."""
    from zenml.client import Client
    from zenml.enums import StackComponentType as T

    shutil.copy(TESTS / "promise_stores.py", PROJECT / "promise_stores.py")
    client = Client()
    source = {"failing_once": "FailingOnceLogStoreFlavor", "slow_once": "SlowOnceLogStoreFlavor"}
    client.create_flavor(source=f"promise_stores.{source[flavor]}", component_type=T.LOG_STORE)
    client.create_stack_component(name=flavor, flavor=flavor, component_type=T.LOG_STORE,
                                  configuration={})
    client.create_stack(name=f"{flavor}_stack", components={
        T.ORCHESTRATOR: "default", T.ARTIFACT_STORE: "default", T.LOG_STORE: flavor})
    client.activate_stack(f"{flavor}_stack")
    try:
        run = project.program_pipeline(cmd=[str(binary)])
        import promise_stores

        promise_stores.settle()
        return run, step_logs(run)
    finally:
        client.activate_stack("default")


def rust_lines(entries):
    return [m for m in messages(entries) if m.startswith("rust: ")]


@pytest.mark.latest_zenml  # a custom flavor: 0.98's log-store API
def test_a_store_that_raises_mid_request_gets_each_record_once_in_order(project, rust_step_binary):  # noqa: F811
    """The store refuses the program's second record once: the relay answers 503, the crate
    sends the request again, and the record stored before the failure is not stored twice."""
    import promise_stores

    _, entries = run_on_store(project, "failing_once", rust_step_binary)
    assert "failed" in promise_stores.DONE
    assert rust_lines(entries) == RUST
    line = receipt(entries).message
    assert "1 failed requests" in line and "4 exported, 0 dropped, 0 failed" in line, line


@pytest.mark.latest_zenml  # a custom flavor: 0.98's log-store API
def test_a_store_slower_than_the_export_timeout_gets_each_record_once_in_order(project, rust_step_binary):  # noqa: F811
    """The store takes longer than the program's export timeout over its first record: the
    program gives up on the request and exits with its records in its spool; the spool's
    delivery waits for the records the relay is still storing instead of storing them again."""
    import promise_stores

    _, entries = run_on_store(project, "slow_once", rust_step_binary)
    assert "slow" in promise_stores.DONE
    assert rust_lines(entries) == RUST
    # The program's stderr is in the step's logs too (its shutdown timed out): its lines begin
    # with "zenml-otel: " as the receipt does.
    [line] = [m for m in messages(entries) if m.startswith("zenml-otel: zenml-step ")]
    assert "0 exported" in line and "4 left in its spool (relay received 4" in line, line
    assert line.endswith("delivered 0 records from its spool (4 already relayed)"), line
