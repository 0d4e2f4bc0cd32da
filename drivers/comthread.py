"""One thread that owns a COM apartment: every call runs on it, and it pumps COM events while idle.

GamryCOM delivers its data-acquisition events only to the thread that created the objects, and
only while that thread pumps messages; COM objects must not be shared between threads.  So the
Gamry driver hands every call to this thread and waits for the answer; a call that does not come
back within its timeout marks the thread as hung (the driver then abandons it and reconnects).
"""

from __future__ import annotations

import concurrent.futures
import queue
import threading
from collections.abc import Callable
from typing import Any, Protocol

#: How long the idle thread pumps events before looking for new calls, s.
PUMP_INTERVAL_S = 0.02


class ComBackend(Protocol):
    """What the thread needs of COM: comtypes on Windows, or the simulated GamryCOM."""

    def initialize(self) -> None: ...
    def uninitialize(self) -> None: ...
    def pump_events(self, timeout_s: float) -> None: ...
    def wake(self) -> None:
        """Called from any thread when a call is queued: end a pump early if the backend can."""


class ComHung(TimeoutError):
    """A COM call did not return in time; the thread is given up."""


class ComThread:
    def __init__(self, backend: ComBackend, name: str, call_timeout_s: float) -> None:
        self.backend = backend
        self.call_timeout_s = call_timeout_s
        self.hung = False
        self._tasks: queue.SimpleQueue = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def call(self, function: Callable[..., Any], *args: Any) -> Any:
        """Run ``function(*args)`` on the COM thread and return its result (or raise its exception)."""
        if self.hung:
            raise ComHung("the COM thread is hung")
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._tasks.put((function, args, future))
        self.backend.wake()
        try:
            return future.result(timeout=self.call_timeout_s)
        except concurrent.futures.TimeoutError:
            self.hung = True
            name = getattr(function, "__name__", repr(function))
            raise ComHung(f"{name} did not return within {self.call_timeout_s:g} s: the COM server looks hung") from None

    def stop(self) -> None:
        self._stop.set()
        if not self.hung:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        self.backend.initialize()
        try:
            while not self._stop.is_set():
                try:
                    function, args, future = self._tasks.get_nowait()
                except queue.Empty:
                    self.backend.pump_events(PUMP_INTERVAL_S)
                    continue
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(function(*args))
                    except BaseException as exc:  # handed to the caller
                        future.set_exception(exc)
        finally:
            self.backend.uninitialize()
