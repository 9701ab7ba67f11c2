"""Custom log-store flavors for test_relay_promise.py (copied into the test's ZenML project):
a store that raises in the middle of a relayed request once, and one slower than the
program's export timeout once. Both keep what they take as recording_store.py does, so the
step's logs are read back through the store's own `fetch`."""

import logging
import time
from typing import Any, Dict, List, Optional, Type

from zenml.log_stores.base_log_store import BaseLogStore, BaseLogStoreOrigin

from recording_store import RecordingLogStore, RecordingLogStoreFlavor

# The record the failing store refuses once: the second of the program's four.
FAIL_AT = "rust: fitted the model"
# Longer than the program's export timeout (the crate's default, 10 s: the relay's handover
# sets none), on the program's first record: the program gives up on its request and exits
# with its records in the spool while the relay is still storing them.
SLOW_SECONDS = 12.0
SLOW_AT = "rust: loading the features"
# What happened once already, all instances together (ZenML makes several).
DONE: List[str] = []


class FailingOnceLogStore(RecordingLogStore):
    def emit(self, origin: BaseLogStoreOrigin, record: logging.LogRecord,
             metadata: Optional[Dict[str, Any]] = None) -> None:
        if record.getMessage().startswith(FAIL_AT) and "failed" not in DONE:
            DONE.append("failed")
            raise OSError("the store's disk is full (once)")
        super().emit(origin, record, metadata)


class SlowOnceLogStore(RecordingLogStore):
    def emit(self, origin: BaseLogStoreOrigin, record: logging.LogRecord,
             metadata: Optional[Dict[str, Any]] = None) -> None:
        if record.getMessage().startswith(SLOW_AT) and "slow" not in DONE:
            DONE.append("slow")
            time.sleep(SLOW_SECONDS)
            super().emit(origin, record, metadata)
            DONE.append("slow stored")
            return
        super().emit(origin, record, metadata)


def settle(timeout: float = 30.0) -> None:
    """Waits for a slow emit to end: a copy it stores after the step's logs were read would
    otherwise go unseen."""
    deadline = time.monotonic() + timeout
    while "slow" in DONE and "slow stored" not in DONE and time.monotonic() < deadline:
        time.sleep(0.1)


class FailingOnceLogStoreFlavor(RecordingLogStoreFlavor):
    @property
    def name(self) -> str:
        return "failing_once"

    @property
    def implementation_class(self) -> Type[BaseLogStore]:
        return FailingOnceLogStore


class SlowOnceLogStoreFlavor(RecordingLogStoreFlavor):
    @property
    def name(self) -> str:
        return "slow_once"

    @property
    def implementation_class(self) -> Type[BaseLogStore]:
        return SlowOnceLogStore
