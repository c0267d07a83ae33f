"""Which process owns a run, a kernel folder or a scratch store, and whether it still lives.

An owner is a process identified by its pid, its host and its start time: a pid
alone is reused by the system, the start time tells a new process with the same pid
from the one that owned the thing.  Standard library only (the command line calls
this before anything else is imported); on Linux the start time comes from
``/proc``, elsewhere from ``psutil`` (a dependency of ipykernel).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from functools import lru_cache

#: Start times are compared with this slack (``/proc`` gives clock ticks; stored values are rounded).
START_SLACK = 1.0


@dataclass(frozen=True)
class Owner:
    """A process: pid, host name and start time (seconds since the epoch)."""

    pid: int
    host: str
    started: float

    def alive(self) -> bool | None:
        """True or False on this host; None when the owner runs on another host (unknowable)."""
        if self.host != hostname():
            return None
        started = process_start_time(self.pid)
        return started is not None and abs(started - self.started) <= START_SLACK


@lru_cache(maxsize=1)
def hostname() -> str:
    return socket.gethostname()


@lru_cache(maxsize=1)
def _boot_time() -> float:
    with open("/proc/stat", "rb") as fh:
        for line in fh:
            if line.startswith(b"btime "):
                return float(line.split()[1])
    raise OSError("no btime in /proc/stat")


def process_start_time(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch), or None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except FileNotFoundError:
        return None
    except OSError:
        return _psutil_start_time(pid)
    # The command name (field 2) may contain spaces and parentheses: split after its last ')'.
    fields = stat[stat.rindex(b")") + 2:].split()
    if fields[0] == b"Z":  # a zombie has finished; it only waits to be reaped
        return None
    ticks = int(fields[19])
    return _boot_time() + ticks / os.sysconf("SC_CLK_TCK")


def _psutil_start_time(pid: int) -> float | None:
    import psutil  # type: ignore[import-untyped]  # only off Linux; an ipykernel dependency

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return float(proc.create_time())
    except psutil.Error:
        return None


@lru_cache(maxsize=1)
def current() -> Owner:
    """This process as an owner."""
    pid = os.getpid()
    started = process_start_time(pid)
    return Owner(pid, hostname(), round(started if started is not None else 0.0, 2))


def current_tag() -> str:
    """This process as a file-name fragment: ``<pid>-<start time in centiseconds>``."""
    me = current()
    return f"{me.pid}-{int(me.started * 100)}"


def owner_from_tag(tag: str) -> Owner | None:
    """The owner a :func:`current_tag` fragment names (on this host), or None if it names none."""
    pid, _, started = tag.partition("-")
    if not (pid.isdigit() and started.isdigit()):
        return None
    return Owner(int(pid), hostname(), int(started) / 100)
