"""The emulator's storage: objects, the global resourceVersion counter and the bounded event history.

Stored objects are never mutated in place: every write stores a fresh dict, so
the same dict can sit in the history that watch streams replay.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import dataclasses
from typing import Any

JsonDict = dict[str, Any]
TypeKey = tuple[str, str]  # (group, plural): versions of one type share storage
ObjectKey = tuple[str, str, str, str]  # (group, plural, namespace or "", name)


@dataclasses.dataclass(frozen=True)
class WatchEvent:
    """One change, as streamed to watchers."""

    resource_version: int
    type_key: TypeKey
    event_type: str  # ADDED, MODIFIED, DELETED
    obj: JsonDict


class ObjectStore:
    """Objects by key plus the change history that watch requests resume from."""

    def __init__(self, history_limit: int = 2000) -> None:
        self.history_limit = history_limit
        self.objects: dict[ObjectKey, JsonDict] = {}
        self.revision = 1
        self.history: list[WatchEvent] = []
        self.compacted_revision = 0  # events at or below this revision are no longer replayable
        self._changed = asyncio.Event()

    def next_revision(self) -> str:
        """Take the next value of the global resourceVersion counter."""
        self.revision += 1
        return str(self.revision)

    def get(self, key: ObjectKey) -> JsonDict | None:
        """The stored object, or None."""
        return self.objects.get(key)

    def objects_of(self, type_key: TypeKey, namespace: str | None) -> list[JsonDict]:
        """Objects of a type in a namespace (None: all namespaces), ordered by namespace and name."""
        found = [obj for (group, plural, obj_namespace, _), obj in self.objects.items()
                 if (group, plural) == type_key and (namespace is None or obj_namespace == namespace)]
        return sorted(found, key=lambda obj: (obj["metadata"].get("namespace", ""), obj["metadata"]["name"]))

    def put(self, key: ObjectKey, obj: JsonDict, event_type: str) -> None:
        """Store a fresh object (its resourceVersion already set) and record the change."""
        self.objects[key] = obj
        self._record(WatchEvent(int(obj["metadata"]["resourceVersion"]), key[:2], event_type, obj))

    def remove(self, key: ObjectKey, last_state: JsonDict) -> None:
        """Forget an object; ``last_state`` (with a new resourceVersion) goes to watchers as DELETED."""
        self.objects.pop(key, None)
        self._record(WatchEvent(int(last_state["metadata"]["resourceVersion"]), key[:2], "DELETED", last_state))

    def _record(self, event: WatchEvent) -> None:
        self.history.append(event)
        if len(self.history) > self.history_limit:
            dropped = self.history[: len(self.history) - self.history_limit]
            self.compacted_revision = dropped[-1].resource_version
            self.history = self.history[len(dropped):]
        self.wake_watchers()

    def wake_watchers(self) -> None:
        """Wake every sleeping watch stream (e.g. so that they notice a shutdown)."""
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def is_compacted(self, since: int) -> bool:
        """Whether events after ``since`` may be missing from the history (a watch must answer 410)."""
        return since < self.compacted_revision

    def events_after(self, since: int) -> list[WatchEvent]:
        """All recorded events with a resourceVersion greater than ``since``."""
        start = bisect.bisect_right(self.history, since, key=lambda event: event.resource_version)
        return self.history[start:]

    async def wait_for_change(self, timeout: float) -> None:
        """Sleep until the next change is recorded or the timeout passes."""
        changed = self._changed
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), timeout=timeout)
