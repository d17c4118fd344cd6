"""ServableHandle: a request's claim on one loaded version."""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any

from servingd.core.servable_id import ServableId
from servingd.core.status import FailedPrecondition


class ServableHandle:
    """Keeps one version loaded while a request uses it (TF Serving's ServableHandle<T>).

    Obtained from `Manager.get_servable_handle()`. The version cannot finish unloading until
    every handle on it is released, so hold a handle for one request only, scoped with
    `with`. `release()` is idempotent; `servable` raises FailedPrecondition after it. A
    handle is meant for one thread at a time.
    """

    __slots__ = ("_id", "_on_release", "_released", "_servable")

    def __init__(
        self,
        servable_id: ServableId,
        servable: Any,
        on_release: Callable[[ServableHandle], None] | None = None,
    ) -> None:
        self._id = servable_id
        self._servable = servable
        self._on_release = on_release
        self._released = False

    @property
    def id(self) -> ServableId:
        return self._id

    @property
    def servable(self) -> Any:
        if self._released:
            raise FailedPrecondition(f"ServableHandle for {self._id} used after release")
        return self._servable

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        self._servable = None
        # Dropped too: a released handle someone still holds must not keep its entry alive.
        on_release, self._on_release = self._on_release, None
        if on_release is not None:
            on_release(self)

    def __enter__(self) -> ServableHandle:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"ServableHandle({self._id}{', released' if self._released else ''})"
