"""BasicManager: loads, serves and unloads the versions it is told to manage."""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from servingd.core.event_bus import EventBus
from servingd.core.executor import InlineExecutor, create_executor
from servingd.core.loader import Loader
from servingd.core.loader_harness import LoaderHarness, LoaderHarnessOptions, State
from servingd.core.manager import ServableRequest
from servingd.core.resource_tracker import ResourceTracker
from servingd.core.servable_data import ServableData
from servingd.core.servable_handle import ServableHandle
from servingd.core.servable_id import ServableId
from servingd.core.servable_state import ManagerState, ServableState
from servingd.core.serving_map import ServingEntry, ServingMap
from servingd.core.status import (
    FailedPrecondition,
    Internal,
    NotFound,
    ResourceExhausted,
    ServingError,
)

logger = logging.getLogger(__name__)

DoneCallback = Callable[[ServingError | None], None]
"""Called once when a load/unload request finished: None on success, else the error."""

# States whose version's estimated RAM counts as used (TF's
# GetLoadersCurrentlyUsingResources): reserved from approval until fully unloaded.
_USES_RESOURCES = frozenset(
    {
        State.LOAD_APPROVED,
        State.LOADING,
        State.READY,
        State.UNLOAD_REQUESTED,
        State.QUIESCING,
        State.QUIESCED,
        State.UNLOADING,
    }
)


# States in which a version that has a serving entry stays in the serving map.
_SERVING = frozenset({State.READY, State.UNLOAD_REQUESTED, State.QUIESCING})


@dataclass(frozen=True)
class BasicManagerOptions:
    num_load_threads: int = 0  # 0: loads run inline in the caller (TF's default)
    num_unload_threads: int = 0
    max_num_load_retries: int = 5
    load_retry_interval_micros: int = 60_000_000
    resource_tracker: ResourceTracker | None = None  # None: an unlimited tracker
    event_bus: EventBus[ServableState] | None = None  # None: events are not published


@dataclass(frozen=True, slots=True)
class ServableStateSnapshot:
    id: ServableId
    state: State
    additional_state: object | None


class _Kind(enum.Enum):
    LOAD = "load"
    UNLOAD = "unload"


class BasicManager:
    """Manages versions one by one: each is explicitly managed, loaded, unloaded, dropped.

    Its caller (AspiredVersionsManager, or a test) decides *what* to do; BasicManager does
    it safely. `manage_servable`, `load_servable`, `unload_servable` and
    `stop_managing_servable` may be called from any thread. Loads and unloads run on their
    executors; a request is checked synchronously (so a duplicate fails at once), then its
    decision phase (resource reservation) runs serialized with every other request's, then
    it executes in parallel with others. `done` callbacks run on the executor thread.

    Events: START when managed; LOADING, then AVAILABLE after the version entered the
    serving map; UNLOADING before it leaves the map, then END; END with the error as
    health for any failure. They are published under `_lock`, so subscribers see each
    version's events in order; subscribers must be tiny (see EventBus).

    Lookups (`get_servable_handle`, `list_available_servable_ids`) read the current
    ServingMap without a lock. An unload waits until every handle on the version is
    released before calling Loader.unload(), on the unload thread.
    """

    def __init__(self, options: BasicManagerOptions | None = None) -> None:
        opts = options or BasicManagerOptions()
        self._harness_options = LoaderHarnessOptions(
            opts.max_num_load_retries, opts.load_retry_interval_micros
        )
        self._bus = opts.event_bus
        self._resource_tracker = opts.resource_tracker or ResourceTracker()
        self._lock = threading.Lock()
        # Notified under _lock whenever an execution ends: a load waiting for RAM retries.
        self._execution_done = threading.Condition(self._lock)
        self._harnesses: dict[str, dict[int, LoaderHarness]] = {}  # guarded by _lock
        # The entry of every version from Ready until its unload removes it; guarded by _lock.
        self._serving_entries: dict[ServableId, ServingEntry] = {}
        self._num_ongoing_executions = 0  # guarded by _lock
        # Replaced (never mutated) under _lock; read by lookups without any lock.
        self._serving_map = ServingMap()
        # Serializes decision phases: one request at a time reserves resources, so two
        # loads cannot both count the same free RAM.
        self._decision_lock = threading.Lock()
        self._load_executor = create_executor(opts.num_load_threads, "BasicManager_Load")
        self._unload_executor = create_executor(opts.num_unload_threads, "BasicManager_Unload")

    @property
    def resource_tracker(self) -> ResourceTracker:
        return self._resource_tracker

    # ----- lookups (lock-free) ---------------------------------------------------------------

    def get_servable_handle(self, request: ServableRequest) -> ServableHandle:
        while True:
            entry = self._serving_map.find(request)
            if entry is None:
                raise NotFound(f"Servable not found for request: {request}")
            handle = entry.try_acquire()
            if handle is not None:
                return handle
            # The entry closed after we read the map, so a newer map is already in place.

    @property
    def serving_map(self) -> ServingMap:
        """The current snapshot, for lock-free readers that cache what they found in it:
        a reader holding the same object knows nothing was loaded or unloaded since."""
        return self._serving_map

    def list_available_servable_ids(self) -> list[ServableId]:
        return self._serving_map.ids()

    def get_available_servable_handles(self) -> dict[ServableId, ServableHandle]:
        handles = {}
        for entry in self._serving_map.entries():
            handle = entry.try_acquire()
            if handle is not None:
                handles[entry.id] = handle
        return handles

    # ----- managing ---------------------------------------------------------------------------

    def manage_servable(
        self, servable: ServableData[Loader], additional_state: object | None = None
    ) -> None:
        """Starts tracking a version (state New, or Error if `servable` carries an error)."""
        sid = servable.id
        with self._lock:
            versions = self._harnesses.setdefault(sid.name, {})
            if sid.version in versions:
                raise FailedPrecondition(f"This servable is already being managed: {sid}")
            harness = LoaderHarness(sid, servable.data, self._harness_options, additional_state)
            versions[sid.version] = harness
            if servable.error is not None:
                harness.error(servable.error)
                self._publish_end(sid, servable.error)
            else:
                self._publish(ServableState(sid, ManagerState.START))

    def stop_managing_servable(self, servable_id: ServableId) -> None:
        """Forgets a version that is New, Disabled or Error."""
        with self._lock:
            harness = self._find(servable_id)
            if harness is None:
                raise FailedPrecondition(f"This servable is not being managed: {servable_id}")
            state = harness.state
            if state not in (State.NEW, State.ERROR, State.DISABLED):
                raise FailedPrecondition(
                    "This servable is not in a new or end state and we cannot stop managing"
                    f" it: {servable_id} {state.value}"
                )
            versions = self._harnesses[servable_id.name]
            del versions[servable_id.version]
            if not versions:
                del self._harnesses[servable_id.name]
            if state is State.NEW:
                # Never loaded; END tells status and shutdown waiters it is gone for good.
                self._publish(ServableState(servable_id, ManagerState.END))

    def get_managed_servable_names(self) -> list[str]:
        with self._lock:
            return sorted(self._harnesses)

    def get_managed_servable_state_snapshots(self, name: str) -> list[ServableStateSnapshot]:
        """Every managed version of `name`, by ascending version."""
        with self._lock:
            versions = self._harnesses.get(name, {})
            return [
                ServableStateSnapshot(h.id, h.state, h.additional_state)
                for _, h in sorted(versions.items())
            ]

    def get_managed_servable_state_snapshot(
        self, servable_id: ServableId
    ) -> ServableStateSnapshot | None:
        with self._lock:
            h = self._find(servable_id)
            return None if h is None else ServableStateSnapshot(h.id, h.state, h.additional_state)

    def cancel_load_servable_retry(self, servable_id: ServableId) -> None:
        """Stops pending load retries of a version (it is no longer wanted)."""
        with self._lock:
            harness = self._find(servable_id)
            if harness is not None and harness.status is None:
                harness.cancel_load_retry()

    # ----- loading and unloading --------------------------------------------------------------

    def load_servable(self, servable_id: ServableId, done: DoneCallback | None = None) -> None:
        self._request(_Kind.LOAD, servable_id, done)

    def unload_servable(self, servable_id: ServableId, done: DoneCallback | None = None) -> None:
        self._request(_Kind.UNLOAD, servable_id, done)

    def _request(self, kind: _Kind, servable_id: ServableId, done: DoneCallback | None) -> None:
        try:
            with self._lock:
                harness = self._healthy_harness(servable_id)
                if kind is _Kind.LOAD:
                    harness.load_requested()
                else:
                    harness.unload_requested()
        except ServingError as error:
            _call_done(done, error)
            return
        executor = self._load_executor if kind is _Kind.LOAD else self._unload_executor
        executor.schedule(lambda: self._handle_request(kind, servable_id, done))

    def _handle_request(
        self, kind: _Kind, servable_id: ServableId, done: DoneCallback | None
    ) -> None:
        try:
            with self._decision_lock:
                harness = self._approve(kind, servable_id)
        except ServingError as error:
            _call_done(done, error)
            return
        result: ServingError | None = None
        try:
            if kind is _Kind.LOAD:
                self._execute_load(harness)
            else:
                self._execute_unload(harness)
        except ServingError as error:
            result = error
        finally:
            with self._lock:
                self._num_ongoing_executions -= 1
                self._execution_done.notify_all()
        _call_done(done, result)

    def _approve(self, kind: _Kind, servable_id: ServableId) -> LoaderHarness:
        with self._lock:
            harness = self._healthy_harness(servable_id)
            if kind is _Kind.LOAD:
                try:
                    self._reserve_resources(harness)
                except ServingError as error:
                    harness.error(error)
                    self._publish_end(servable_id, error)
                    raise
                harness.load_approved()
            else:
                # Quiescing inside the decision phase keeps a second unload from executing.
                harness.start_quiescing()
            self._num_ongoing_executions += 1
            return harness

    def _reserve_resources(self, harness: LoaderHarness) -> None:
        """Holding _lock (and the decision lock): reserves the version's RAM or raises."""
        assert harness.loader is not None  # a healthy harness always has one
        while True:
            try:
                self._resource_tracker.recompute_used_resources(self._loaders_using_resources())
                reserved = self._resource_tracker.reserve_resources(harness.loader)
            except Exception as exc:
                raise Internal(
                    "Error while attempting to reserve resources to load servable"
                    f" {harness.id}: {exc}"
                ) from exc
            if reserved:
                return
            if self._num_ongoing_executions == 0:
                raise ResourceExhausted(f"Insufficient resources to load servable {harness.id}")
            # An ongoing load may fail or an unload finish and free RAM: decide again then.
            self._execution_done.wait()

    def _execute_load(self, harness: LoaderHarness) -> None:
        sid = harness.id
        with self._lock:
            self._publish(ServableState(sid, ManagerState.LOADING))
        try:
            harness.load()
        except ServingError as error:
            with self._lock:
                self._publish_end(sid, error)
            raise
        with self._lock:
            if harness.state is not State.READY:
                # Unload requested between load() returning and this lock: never announce
                # it; the unload publishes UNLOADING and END.
                return
            self._update_serving_map()
            self._publish(ServableState(sid, ManagerState.AVAILABLE))

    def _execute_unload(self, harness: LoaderHarness) -> None:
        sid = harness.id
        with self._lock:
            self._publish(ServableState(sid, ManagerState.UNLOADING))
            entry = self._serving_entries.pop(sid, None)
            self._update_serving_map()
        try:
            if entry is not None:
                entry.close_and_wait()  # requests holding a handle finish first
            harness.done_quiescing()
            harness.unload()
        except ServingError as error:
            with self._lock:
                self._publish_end(sid, error)
            raise
        with self._lock:
            self._publish(ServableState(sid, ManagerState.END))

    def close(self) -> None:
        """Finishes queued loads and unloads, then unloads every remaining ready version.

        Call once, last; the manager is inert afterwards. Blocks while handles are held.
        """
        self._load_executor.shutdown()
        self._unload_executor.shutdown()
        self._load_executor = self._unload_executor = InlineExecutor()
        with self._lock:
            ready = [
                h.id
                for versions in self._harnesses.values()
                for h in versions.values()
                if h.state is State.READY
            ]
        for servable_id in ready:
            self.unload_servable(servable_id)

    # ----- helpers (callers hold _lock) --------------------------------------------------------

    def _find(self, servable_id: ServableId) -> LoaderHarness | None:
        return self._harnesses.get(servable_id.name, {}).get(servable_id.version)

    def _update_serving_map(self) -> None:
        """Publishes a new map of the serving versions, judged by harness state (as TF).

        Ready versions get in even if another thread's rebuild (the old version's unload)
        runs before their own load thread gets here, so Latest never finds nothing during
        a swap. A version whose unload was requested stays in until its own unload path
        removes its entry, so UNLOADING is always published before it leaves.
        """
        entries = []
        for versions in self._harnesses.values():
            for harness in versions.values():
                entry = self._serving_entries.get(harness.id)
                if harness.state is State.READY and entry is None and harness.loader is not None:
                    entry = ServingEntry(harness.id, harness.loader.servable())
                    self._serving_entries[harness.id] = entry
                if entry is not None and harness.state in _SERVING:
                    entries.append(entry)
        self._serving_map = ServingMap(entries)

    def _healthy_harness(self, servable_id: ServableId) -> LoaderHarness:
        harness = self._find(servable_id)
        if harness is None:
            raise NotFound(f"This servable is not being managed by the manager: {servable_id}")
        status = harness.status
        if status is not None:
            raise status
        return harness

    def _loaders_using_resources(self) -> list[Loader]:
        return [
            h.loader
            for versions in self._harnesses.values()
            for h in versions.values()
            if h.loader is not None and h.state in _USES_RESOURCES
        ]

    def _publish(self, state: ServableState) -> None:
        # No log line here: monitoring/lifecycle_log.py writes the one line per event.
        if self._bus is not None:
            self._bus.publish(state)

    def _publish_end(self, servable_id: ServableId, error: ServingError) -> None:
        self._publish(ServableState(servable_id, ManagerState.END, error))


def _call_done(done: DoneCallback | None, error: ServingError | None) -> None:
    if done is None:
        return
    try:
        done(error)
    except Exception:
        logger.exception("Load/unload done callback failed")
