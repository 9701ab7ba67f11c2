"""A Rust program on the official OpenTelemetry SDK pipeline with the crate's `sdk` module
(examples/sdk_step.rs: ZenmlContextLayer, ZenmlLogProcessor, ZenmlLogExporter) in real ZenML
pipelines through `run_rust_step`: ZenML finds its records as it finds the step's Python
records, on the default stack (the step's logs as ZenML returns them, through the relay) and
with an `otel` log store (at its collector, by the Python records' `zenml.log.id`, with their
`service.name`), and the receipt counts them."""

import json
import os
from typing import Any, Dict, Iterator, List, Tuple

import pytest

from conftest import REPO
from test_pipelines import index, messages, project, receipt, step_logs, wait_for_receipt  # noqa: F401

BINARY = REPO / "target" / "debug" / "examples" / "sdk_step"
RECORDS = ["sdk: loading the features", "sdk: fitting", "sdk: score below threshold"]


@pytest.fixture(scope="module")
def sdk_step():
    if not BINARY.exists():
        assert os.environ.get("CI") != "true", f"CI builds {BINARY}: it is missing"
        pytest.skip(f"{BINARY} is not built (cargo build --all-features --example sdk_step)")
    return str(BINARY)


def test_on_the_default_stack_the_steps_logs_hold_the_records_and_the_receipt(project, sdk_step):  # noqa: F811
    run = project.program_pipeline(cmd=[sdk_step])
    entries = step_logs(run)
    text = messages(entries)
    before, after = index(entries, "python: before"), index(entries, "python: after")
    found = [i for i, m in enumerate(text) if m.startswith("sdk: ")]
    assert [text[i].split(" score=")[0].split(" threads=")[0] for i in found] == RECORDS, text
    assert before < min(found) and max(found) < after, text
    assert entries[index(entries, "sdk: score below threshold")].level.name in ("WARN", "WARNING")
    line = receipt(entries).message
    assert line == (
        "zenml-otel: sdk_step exited 0: 3 records emitted, 3 exported, 0 dropped, 0 failed "
        "(relay received 3)"
    ), line


def zenml_json_records(collector: Any) -> Iterator[Tuple[Dict[str, Any], Dict[str, Any], str]]:
    """(resource attributes, record attributes, body) of each record ZenML's own exporter sent
    (snake_case OTLP/JSON)."""

    def flat(attributes: List[Dict[str, Any]]) -> Dict[str, Any]:
        return {a["key"]: next(iter((a.get("value") or {None: None}).values())) for a in attributes or []}

    for body in collector.bodies("application/json"):
        for resource in json.loads(body).get("resource_logs", []):
            resource_attrs = flat(resource.get("resource", {}).get("attributes", []))
            for scope in resource.get("scope_logs", []):
                for record in scope.get("log_records", []):
                    text = (record.get("body") or {}).get("string_value", "")
                    yield resource_attrs, flat(record.get("attributes", [])), text


def test_with_an_otel_store_the_collector_has_them_by_the_steps_log_id(project, sdk_step):  # noqa: F811
    from zenml.client import Client
    from zenml.enums import StackComponentType as T

    from otlp_testing import Collector

    client = Client()
    with Collector() as collector:
        client.create_stack_component(name="otel_sdk", flavor="otel", component_type=T.LOG_STORE,
                                      configuration={"endpoint": collector.endpoint})
        client.create_stack(name="otel_sdk_stack", components={
            T.ORCHESTRATOR: "default", T.ARTIFACT_STORE: "default", T.LOG_STORE: "otel_sdk"})
        client.activate_stack("otel_sdk_stack")
        try:
            project.program_pipeline(cmd=[sdk_step])
        finally:
            client.activate_stack("default")
        line = wait_for_receipt(collector)
        python = [(res, attrs) for res, attrs, text in zenml_json_records(collector)
                  if text.startswith("python: before")]
        rust = [
            (resource["resource"], record)
            for request in collector.decoded()
            for resource in request
            for scope in resource["scopes"]
            for record in scope["records"]
        ]
    [(python_resource, python_attrs)] = python
    log_id = python_attrs["zenml.log.id"]
    ours = [(res, r) for res, r in rust if r["attributes"].get("zenml.log.id") == log_id]
    assert sorted(r["body"] for _, r in ours) == sorted(RECORDS), rust
    for resource, record in ours:
        assert resource["service.name"] == python_resource["service.name"], (resource, python_resource)
        for key in ("zenml.pipeline.run.id", "zenml.step.run.id"):
            assert record["attributes"][key] == python_attrs[key], (key, record, python_attrs)
        assert record["attributes"]["zenml.log.source"] == "step"
        assert resource["zenml.step_id"] == python_attrs["zenml.step.run.id"]
    assert line.endswith("exited 0: 3 records emitted, 3 exported, 0 dropped, 0 failed"), line
