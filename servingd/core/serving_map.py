"""ServingMap: the immutable snapshot of ready versions that every lookup reads.

The Python form of TF Serving's FastReadDynamicPtr<HandlesMap>: BasicManager builds a new
ServingMap whenever a version becomes ready or starts unloading and assigns it to one
attribute. Readers load that attribute once and use the snapshot they got; assignment of
a reference is atomic, so lookups never take a lock.

Each ready version has one ServingEntry that outlives the maps referring to it and counts
the handles given out on it. Unloading a version first removes it from the map, then
`close_and_wait()`s on its entry until the last handle is released.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

from servingd.core.manager import AutoVersionPolicy, ServableRequest
from servingd.core.servable_handle import ServableHandle
from servingd.core.servable_id import ServableId

logger = logging.getLogger(__name__)

_DRAIN_WARNING_SECONDS = 10.0


class ServingEntry:
    """One ready version and the handles currently held on it.

    Lock-free by design, relying on the GIL making set.add/discard and attribute stores
    atomic and sequentially consistent. The acquire/close protocol is Dekker-style:
    `try_acquire` adds its handle and *then* reads `_closed`; `close_and_wait` sets
    `_closed` and *then* reads the handle set. Whichever runs second sees the other, so a
    handle is either counted by the closer or backed out by the acquirer; never handed out
    on a version that is about to unload.
    """

    # __weakref__: request-path caches (apis/predict_plan.py) must not keep a version alive.
    __slots__ = ("__weakref__", "_closed", "_drained", "_handles", "id", "servable")

    def __init__(self, servable_id: ServableId, servable: Any) -> None:
        self.id = servable_id
        self.servable = servable
        self._handles: set[object] = set()  # ServableHandles and try_hold's tokens
        self._closed = False
        self._drained = threading.Event()

    def try_acquire(self) -> ServableHandle | None:
        """A new handle, or None if the entry was closed (the caller re-reads the map)."""
        handle = ServableHandle(self.id, self.servable, self.release_hold)
        return handle if self._counted(handle) else None

    def try_hold(self) -> object | None:
        """A bare token that counts as a handle, for a caller that releases it itself with
        `release_hold` (in a `finally`) and reads `servable` meanwhile; None if the entry
        closed. The request fast path's lighter ServableHandle (apis/predict_plan.py)."""
        token = object()
        return token if self._counted(token) else None

    def _counted(self, token: object) -> bool:
        """Counts `token` as a handle unless the entry closed (the protocol above)."""
        if self._closed:
            # Not required for safety, but without it a stream of late lookups keeps the
            # set from ever being seen empty and the unload waits on them.
            return False
        self._handles.add(token)
        if self._closed:
            self.release_hold(token)
            return False
        return True

    def release_hold(self, token: object) -> None:
        """Ends a handle's or a `try_hold` token's claim."""
        self._handles.discard(token)
        if self._closed and not self._handles:
            self._drained.set()

    @property
    def num_handles(self) -> int:
        return len(self._handles)

    def close_and_wait(self) -> None:
        """Refuses new handles and blocks until every outstanding one is released.

        Called by the unloading thread after the entry left the current map.
        """
        self._closed = True
        if not self._handles:
            self._drained.set()
        while not self._drained.wait(_DRAIN_WARNING_SECONDS):
            logger.warning(
                "Unload of servable version %s is waiting for %d handle(s) to be released",
                self.id,
                len(self._handles),
            )


class ServingMap:
    """An immutable index of ready versions: by id, and per name sorted by version."""

    __slots__ = ("__weakref__", "_by_id", "_by_name")

    def __init__(self, entries: Iterable[ServingEntry] = ()) -> None:
        by_id = {entry.id: entry for entry in entries}
        by_name: dict[str, list[ServingEntry]] = {}
        for entry in sorted(by_id.values(), key=lambda e: e.id):
            by_name.setdefault(entry.id.name, []).append(entry)
        self._by_id: dict[ServableId, ServingEntry] = by_id
        self._by_name: dict[str, tuple[ServingEntry, ...]] = {
            name: tuple(versions) for name, versions in by_name.items()
        }

    def find(self, request: ServableRequest) -> ServingEntry | None:
        if request.version is not None:
            return self._by_id.get(ServableId(request.name, request.version))
        versions = self._by_name.get(request.name)
        if not versions:
            return None
        if request.auto_version_policy is AutoVersionPolicy.EARLIEST:
            return versions[0]
        return versions[-1]

    def ids(self) -> list[ServableId]:
        """Every version in the map, sorted by (name, version)."""
        return sorted(self._by_id)

    def entries(self) -> list[ServingEntry]:
        return [self._by_id[servable_id] for servable_id in self.ids()]

    def __len__(self) -> int:
        return len(self._by_id)
