"""The one log line per lifecycle event of a version, from the EventBus.

Logger `servingd.lifecycle`, level INFO (WARNING for a failure). The message is TF Serving's
wording for the event, so what TF Serving users grep for still matches:

  discovered  Starting to manage servable version {name: m version: 1}
  loading     Loading servable version {name: m version: 1}
  available   Successfully loaded servable version {name: m version: 1} in 64 ms
  unloading   Unloading servable version {name: m version: 1}
  unloaded    Done unloading servable version {name: m version: 1}
  failed      Encountered an error for servable version {name: m version: 1}: NOT_FOUND: ...
  cancelled   Encountered an error for servable version {name: m version: 1}: CANCELLED: ...

A version dropped before it started loading ends with "Stopped managing servable version
{...} before loading it" (event unloaded): TF logs nothing then. Every line carries, as
`extra` fields that `--log_format=json` prints as keys: `event` (the names above), `model`,
`version`, `state` (the ManagerState), and by event `load_ms` (available: LOADING to
AVAILABLE) or `error_code` and `error` (failed, cancelled).
"""

from __future__ import annotations

import logging
import threading
import time

from servingd.core.event_bus import EventBus, Subscription
from servingd.core.servable_id import ServableId
from servingd.core.servable_state import ManagerState, ServableState
from servingd.core.status import Cancelled

logger = logging.getLogger("servingd.lifecycle")

# ManagerState -> (event, TF Serving's message before the ServableId).
_EVENTS = {
    ManagerState.START: ("discovered", "Starting to manage servable version"),
    ManagerState.LOADING: ("loading", "Loading servable version"),
    ManagerState.AVAILABLE: ("available", "Successfully loaded servable version"),
    # TF 2.x says "Unloading just-loaded servable version" for every unload; its older
    # wording fits every case.
    ManagerState.UNLOADING: ("unloading", "Unloading servable version"),
    ManagerState.END: ("unloaded", "Done unloading servable version"),
}
_ERROR = "Encountered an error for servable version"
_DROPPED = "Stopped managing servable version"


class LifecycleLog:
    """Subscribes to `bus` for its lifetime. The callback runs under the manager's lock, so
    it only formats one record and remembers each version's last state and load start."""

    def __init__(self, bus: EventBus[ServableState]) -> None:
        self._lock = threading.Lock()
        # Both guarded by _lock; a version's entries go at its END.
        self._last_state: dict[ServableId, ManagerState] = {}
        self._loading_since: dict[ServableId, float] = {}
        self._subscription: Subscription = bus.subscribe(self._on_event)

    def close(self) -> None:
        self._subscription.cancel()

    def _on_event(self, event: ServableState) -> None:
        sid, state = event.id, event.manager_state
        now = time.monotonic()
        with self._lock:
            if state is ManagerState.END:
                previous = self._last_state.pop(sid, None)
            else:
                previous = self._last_state.get(sid)
                self._last_state[sid] = state
            if state is ManagerState.LOADING:
                self._loading_since[sid] = now
                started = None
            else:
                started = self._loading_since.pop(sid, None)
        name, wording = _EVENTS[state]
        fields: dict[str, object] = {
            "event": name,
            "model": sid.name,
            "version": sid.version,
            "state": state.name,
        }
        if event.health is not None:
            error = event.health
            cancelled = isinstance(error, Cancelled)
            fields["event"] = "cancelled" if cancelled else "failed"
            fields["error_code"] = error.code.name
            fields["error"] = error.message
            message = f"{_ERROR} {sid}: {error.code.name}: {error.message}"
            logger.log(logging.INFO if cancelled else logging.WARNING, message, extra=fields)
            return
        message = f"{wording} {sid}"
        if state is ManagerState.END and previous is ManagerState.START:
            message = f"{_DROPPED} {sid} before loading it"
        elif state is ManagerState.AVAILABLE and started is not None:
            fields["load_ms"] = round((now - started) * 1000, 3)
            message += f" in {fields['load_ms']:.0f} ms"
        logger.info(message, extra=fields)
