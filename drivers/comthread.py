"""One thread that owns a COM apartment: every call runs on it, and it pumps COM events while idle.

GamryCOM delivers its data-acquisition events only to the thread that created the objects, and
only while that thread pumps messages; COM objects must not be shared between threads.  So the
Gamry driver hands every call to this thread and waits for the answer; a call that does not come
back within its timeout marks the thread as hung (the driver then abandons it and reconnects).

Ctrl+C while the thread pumps (comtypes' ``PumpEvents`` raises KeyboardInterrupt in the pumping
thread, not the main one) runs ``on_interrupt`` on the thread itself (the Gamry driver switches
the cell off there), ends the thread cleanly, fails every call still waiting, and forwards the
Ctrl+C to the main thread, where the daemon stops as on SIGINT.
"""

from __future__ import annotations

import _thread
import concurrent.futures
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any, Protocol

log = logging.getLogger(__name__)

#: How long the idle thread pumps events before looking for new calls, s.
PUMP_INTERVAL_S = 0.02

from echemd.daemon.errors import EchemdError


def forward_interrupt() -> None:
    """Deliver a Ctrl+C caught on the COM thread to the main thread (as SIGINT)."""
    _thread.interrupt_main()


class ComBackend(Protocol):
    """What the thread needs of COM: comtypes on Windows, or the simulated GamryCOM."""

    def initialize(self) -> None: ...
    def uninitialize(self) -> None: ...
    def pump_events(self, timeout_s: float) -> None: ...
    def wake(self) -> None:
        """Called from any thread when a call is queued: end a pump early if the backend can."""


class ComHung(EchemdError, TimeoutError):
    """A COM call did not return in time; the thread is given up."""


class ComThreadEnded(EchemdError):
    """The COM thread ended (Ctrl+C while it pumped): no call can run on it any more."""


class ComThread:
    def __init__(self, backend: ComBackend, name: str, call_timeout_s: float, on_interrupt: Callable[[], None] | None = None) -> None:
        """``on_interrupt``: run on the thread when Ctrl+C reaches it (make the instrument safe)."""
        self.backend = backend
        self.call_timeout_s = call_timeout_s
        self.on_interrupt = on_interrupt
        self.hung = False
        self.ended = False
        self._tasks: queue.SimpleQueue = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def call(self, function: Callable[..., Any], *args: Any) -> Any:
        """Run ``function(*args)`` on the COM thread and return its result (or raise its exception)."""
        if self.hung:
            raise ComHung("the COM thread is hung")
        if self.ended:
            raise ComThreadEnded("the COM thread ended (Ctrl+C)")
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._tasks.put((function, args, future))
        if self.ended:  # it ended while this call was queued: nobody will run it
            self._fail_waiting()
        self.backend.wake()
        try:
            return future.result(timeout=self.call_timeout_s)
        except concurrent.futures.TimeoutError:
            self.hung = True
            name = getattr(function, "__name__", repr(function))
            raise ComHung(f"{name} did not return within {self.call_timeout_s:g} s: the COM server looks hung") from None

    @property
    def usable(self) -> bool:
        return not (self.hung or self.ended)

    def stop(self, release: Callable[[], None] | None = None) -> None:
        """End the thread; ``release`` runs on it last (drop the COM objects in its apartment)."""
        if release is not None and self.usable:
            try:
                self.call(release)
            except Exception as exc:
                log.warning("releasing COM objects failed: %s", exc)
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
                    try:
                        self.backend.pump_events(PUMP_INTERVAL_S)
                    except KeyboardInterrupt:
                        self._interrupted()
                        return
                    continue
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(function(*args))
                    except BaseException as exc:  # handed to the caller, without the COM side's frames: they
                        future.set_exception(exc.with_traceback(None))  # hold COM objects, to be released here only
        finally:
            self.backend.uninitialize()

    def _interrupted(self) -> None:
        """Ctrl+C reached this thread: make safe, end, fail the waiting calls, tell the main thread."""
        log.warning("Ctrl+C on the COM thread: switching the instrument safe and ending the thread")
        try:
            if self.on_interrupt is not None:
                self.on_interrupt()
        except Exception:
            log.exception("making the instrument safe after Ctrl+C failed")
        self.ended = True
        self._fail_waiting()
        forward_interrupt()

    def _fail_waiting(self) -> None:
        while True:
            try:
                _, _, future = self._tasks.get_nowait()
            except queue.Empty:
                return
            if future.set_running_or_notify_cancel():
                future.set_exception(ComThreadEnded("the COM thread ended (Ctrl+C)"))
