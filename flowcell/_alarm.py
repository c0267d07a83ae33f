"""A time limit on code running in a task's kernel, by ``SIGALRM`` (as Metaflow's ``@timeout``).

The step (or a card's render) gets an exception raised inside it when time is up, so
``@catch`` catches it and what the step set before it was stopped is kept.  Signals
reach only the main thread, where a kernel runs its cells; elsewhere there is no limit
here and the parent's own deadline still ends the task.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def time_limit(seconds: float | None, expired: Callable[[], BaseException]) -> Iterator[None]:
    """Raise ``expired()`` in the block after ``seconds`` (no limit for None or <= 0)."""
    if not seconds or seconds <= 0 or threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise expired()

    before = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, before)
