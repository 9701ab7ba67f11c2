# mypy: disallow-untyped-defs=False, disallow-incomplete-defs=False, disallow-untyped-calls=False
"""The relay keeps the delivery promise inside real ZenML pipelines (issue 25): a request's
records are stored in the order they were logged, and each once, when the store fails
mid-request or is slower than the program's export timeout (custom flavors, promise_stores.py)."""

from test_pipelines import fake, messages, project, receipt, step_logs  # noqa: F401


def test_a_requests_records_are_stored_in_the_order_logged(project):  # noqa: F811
    """The crate groups a request's records by scope (app::load's, then app::train's); ZenML's
    artifact log store stamps entries when it exports them, so its order is the relay's."""
    run = project.program_pipeline(cmd=fake("interleaved"))
    entries = step_logs(run)
    steps = [m for m in messages(entries) if m.startswith("fake: step ")]
    assert steps == [f"fake: step {i:02}" for i in range(12)]
    assert "(relay received 12)" in receipt(entries).message
