"""Prints a step's logs as ZenML returns them: `python step_logs.py <run id> <step name>`.

The step's logs entry is the one with source "step" in its `log_collection`; its entries come
from the log store that stored them, read as ZenML's server reads them for the dashboard
(`zenml.utils.logging_utils.fetch_logs`, which runs only inside the server): the entry's log
store if it names one, else the artifact log store over the entry's artifact store. One page,
as the dashboard's first request gets it (the artifact log store serves all in one). Run it in
the project the pipeline ran in (`examples/zenml/run.sh` does).
"""

import sys

from zenml.client import Client
from zenml.utils.logging_utils import search_logs_by_source


def log_store_of(logs):
    store = Client().zen_store
    if logs.log_store_id:
        from zenml.stack import StackComponent

        return StackComponent.from_model(store.get_stack_component(logs.log_store_id))
    from zenml.artifacts.utils import instantiate_artifact_store
    from zenml.log_stores.artifact.artifact_log_store import ArtifactLogStore

    artifact_store = instantiate_artifact_store(store.get_stack_component(logs.artifact_store_id))
    return ArtifactLogStore.from_artifact_store(artifact_store=artifact_store)


def entries(logs):
    """The first page, oldest first, as the dashboard's first request gets it."""
    return log_store_of(logs).fetch(logs_model=logs).items


def main(run_id, step_name):
    step = Client().get_pipeline_run(run_id).steps[step_name]
    logs = search_logs_by_source(step.log_collection, "step")
    if logs is None:
        sys.exit(f"step {step_name} has no logs entry with source 'step'")
    for entry in entries(logs):
        time = entry.timestamp.strftime("%H:%M:%S.%f")[:-3] if entry.timestamp else "?"
        level = entry.level.name if entry.level else "?"
        where = f"  ({entry.filename}:{entry.lineno})" if entry.filename else ""
        print(f"{time}  {level:<7}  {entry.message}{where}")


if __name__ == "__main__":
    main(*sys.argv[1:])
