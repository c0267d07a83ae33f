"""SIGTERM and SIGHUP handled like Ctrl-C while a command runs.

``timeout``, ``docker stop`` and systemd send SIGTERM; closing a terminal sends
SIGHUP.  Either used to kill ``flowcell run`` on the spot, leaving its run recorded
as running and its kernels behind.  Turned into :class:`Terminated` (a
``KeyboardInterrupt``), they take the interrupt's path instead: tasks stopped, the
run marked failed, kernels shut down.  Standard library only (imported by the CLI
before anything else).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

#: The signals that stop a command the way Ctrl-C does.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class Terminated(KeyboardInterrupt):
    """The process was asked to stop by a signal other than SIGINT."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        """The shell's convention: 128 + the signal's number."""
        return 128 + self.signum


@contextmanager
def signals_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise :class:`Terminated` in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Terminated(signum)

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
