"""A custom log-store flavor for the tests: keeps every record it gets, in this process."""

import logging
from typing import Any, Dict, List, Optional, Tuple, Type

from zenml.log_stores.base_log_store import (
    BaseLogStore,
    BaseLogStoreConfig,
    BaseLogStoreFlavor,
    BaseLogStoreOrigin,
)
from zenml.models import LogEntry, LogsEntriesResponse

# (logs entry id, record, metadata) of every emit, all instances together.
RECEIVED: List[Tuple[str, logging.LogRecord, Dict[str, Any]]] = []


class RecordingLogStore(BaseLogStore):
    def emit(self, origin: BaseLogStoreOrigin, record: logging.LogRecord,
             metadata: Optional[Dict[str, Any]] = None) -> None:
        RECEIVED.append((str(origin.log_model.id), record, dict(metadata or {})))

    def _release_origin(self, origin: BaseLogStoreOrigin) -> None:
        pass

    def flush(self, blocking: bool = True) -> None:
        pass

    def fetch(self, logs_model, start=None, limit=None, before=None, after=None, filter_=None):
        return LogsEntriesResponse(items=[
            LogEntry(message=r.getMessage(), name=r.name, level=r.levelno)
            for log_id, r, _ in RECEIVED if log_id == str(logs_model.id)
        ])


class RecordingLogStoreFlavor(BaseLogStoreFlavor):
    @property
    def name(self) -> str:
        return "recording"

    @property
    def config_class(self) -> Type[BaseLogStoreConfig]:
        return BaseLogStoreConfig

    @property
    def implementation_class(self) -> Type[BaseLogStore]:
        return RecordingLogStore
