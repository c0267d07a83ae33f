"""The runtime: a background event loop that owns the kernel pool.

Kernel I/O is written once, async, and runs on a private loop thread; callers (a
magic in the notebook's kernel, the CLI, a pytest process using ``Runner``) submit
coroutines and wait in their own thread, where the events the coroutine emits
(task output, progress) are handled, so output reaches the caller's cell.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import os
import queue
import threading
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from .kernels import KernelPool
from .launch import Launched

#: Kernels started before the runtime (``launch.prelaunch``): their folder and processes.
Prelaunch = tuple[Any, list[Launched]]

T = TypeVar("T")
Observer = Callable[[str, dict[str, Any]], None]


async def _cancel_pending() -> None:
    pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


def _shutdown(loop: asyncio.AbstractEventLoop, pool: KernelPool, thread: threading.Thread) -> None:
    if loop.is_closed() or not thread.is_alive():
        return
    try:
        asyncio.run_coroutine_threadsafe(pool.shutdown(), loop).result(timeout=10)
    except Exception:
        pass
    try:  # a kernel still starting: cancel it, or asyncio prints "Task was destroyed but it is pending!"
        asyncio.run_coroutine_threadsafe(_cancel_pending(), loop).result(timeout=5)
    except Exception:
        pass
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=5)


class Runtime:
    """A kernel pool on a background loop, shared by every run and spin of a process."""

    def __init__(self, pool_size: int = 2, cwd: str | None = None, warm: bool = True,
                 prelaunched: Prelaunch | None = None) -> None:
        """``prelaunched`` adopts kernels started early with :func:`prelaunch`."""
        self.cwd = cwd or os.getcwd()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="flowcell-runtime", daemon=True)
        self._thread.start()
        workdir, launched = prelaunched if prelaunched else (None, [])
        self.pool: KernelPool = self._call(lambda: KernelPool(size=pool_size, cwd=self.cwd, workdir=workdir))
        if launched:
            self.loop.call_soon_threadsafe(self.pool.adopt, launched)
        self._finalizer = weakref.finalize(self, _shutdown, self.loop, self.pool, self._thread)
        atexit.register(self._finalizer)
        if warm:
            self.warm()

    def _call(self, fn: Callable[[], T]) -> T:
        """Run a plain function on the loop thread (objects bound to the loop are made there)."""
        async def wrapper() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(wrapper(), self.loop).result()

    def warm(self, count: int | None = None) -> None:
        """Start kernels in the background; returns at once."""
        self.loop.call_soon_threadsafe(self.pool.warm, count)

    def resize(self, size: int) -> None:
        self.pool.size = max(self.pool.size, size)

    def run(self, make: Callable[[Observer], Coroutine[Any, Any, T]], observer: Observer | None = None) -> T:
        """Run ``make(emit)`` on the loop; deliver its events to ``observer`` in this thread.

        ``emit`` is thread-safe.  Ctrl-C here cancels the coroutine (which stops its
        tasks and records the failure) and re-raises once it has cleaned up.
        """
        events: queue.SimpleQueue[list[tuple[str, dict[str, Any]]]] = queue.SimpleQueue()
        finished = threading.Event()
        holder: dict[str, asyncio.Task[T]] = {}
        # Events emitted on the loop in one iteration cross to this thread as one batch: every
        # hand-over wakes this thread and costs a GIL switch (reused tasks finish by the dozen).
        batch: list[tuple[str, dict[str, Any]]] = []

        def flush() -> None:
            if batch:
                events.put(batch[:])
                batch.clear()

        def emit(kind: str, payload: dict[str, Any]) -> None:
            if threading.current_thread() is not self._thread:
                events.put([(kind, payload)])
                return
            if not batch:
                self.loop.call_soon(flush)
            batch.append((kind, payload))

        done_marker: list[tuple[str, dict[str, Any]]] = []

        async def wrapper() -> T:
            task = holder["task"] = asyncio.ensure_future(make(emit))
            try:
                return await task
            finally:
                flush()
                finished.set()
                # Wake the waiting thread now, after the last event (else it notices only at its next poll).
                events.put(done_marker)

        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(wrapper(), self.loop)
        interrupted: KeyboardInterrupt | None = None
        pending: list[tuple[str, dict[str, Any]]] = []
        while True:
            try:
                if not pending:
                    try:
                        received = events.get(timeout=0.02)
                    except queue.Empty:
                        if finished.is_set() and events.empty():
                            break
                        continue
                    if received is done_marker:
                        break
                    pending = received
                kind, payload = pending.pop(0)
                if observer is not None:
                    observer(kind, payload)
            except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM/SIGHUP (runtime.signals)
                if interrupted:
                    raise
                interrupted = exc
                self.loop.call_soon_threadsafe(lambda: holder["task"].cancel() if "task" in holder else None)
        if interrupted:
            try:
                future.result()
            except BaseException:
                pass
            raise interrupted
        return future.result()

    def close(self) -> None:
        self._finalizer()
