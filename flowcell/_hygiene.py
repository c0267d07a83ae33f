"""Kernel hygiene: what a task may leave behind, and ending the processes it started.

Kernels are reused between tasks for speed, so a task that damages its kernel must
not harm the next one.  Inside the kernel, :class:`KernelCheck` compares the kernel
after a task with the kernel before it: threads the task left running, standard
streams it closed or replaced, functions of modules the runtime relies on that it
replaced (``json.loads``, ...), an event loop it stopped.  The driver reports the
damage and the parent retires the kernel.  :func:`end_descendants` ends the
processes a task started when the task ends.

Standard library only, and no flowcell imports: the parent uses the process helpers
too (``runtime/launch.py``) before the rest of flowcell is loaded.
"""

from __future__ import annotations

import operator
import os
import signal
import sys
import threading
import time
from typing import Any

#: ``prctl(PR_SET_CHILD_SUBREAPER)``: orphaned descendants are re-parented to us, not to init.
PR_SET_CHILD_SUBREAPER = 36

#: Modules (and classes) whose functions the kernel's request handling and the task driver use.
WATCHED_MODULES = (
    "builtins", "json", "json.decoder", "json.encoder", "pickle", "os", "io", "threading", "signal",
    "time", "asyncio", "asyncio.events", "zmq", "jupyter_client.session", "jupyter_client.jsonutil",
    "ipykernel.kernelbase", "ipykernel.ipkernel", "ipykernel.iostream", "cloudpickle",
    "flowcell._child", "flowcell._hygiene", "flowcell.store.serialize", "flowcell.store.blobs",
)
WATCHED_CLASSES = (
    ("jupyter_client.session", "Session"), ("ipykernel.kernelbase", "Kernel"),
    ("ipykernel.ipkernel", "IPythonKernel"), ("ipykernel.iostream", "OutStream"),
    ("ipykernel.iostream", "IOPubThread"), ("zmq", "Socket"),
)
#: Names rebound all the time: the last displayed value; `input`, which ipykernel sets per request.
_VOLATILE = {"_", "__", "___", "input"}
#: How long threads a task started get to finish after it returns, before they count as left running.
THREAD_GRACE = 0.05


def become_subreaper() -> bool:
    """Make this process adopt its orphaned descendants (Linux); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (Linux ``/proc``); empty elsewhere."""
    found: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as fh:
                found.extend(int(p) for p in fh.read().split())
        except OSError:
            pass
    return found


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid``, parents before children."""
    out: list[int] = []
    stack = children(pid)
    while stack:
        child = stack.pop()
        out.append(child)
        stack.extend(children(child))
    return out


def processes_with_env(key: str, value: str) -> list[int]:
    """Processes of this user whose environment has ``key=value`` (Linux; empty elsewhere)."""
    needle = f"{key}={value}".encode() + b"\0"
    me = os.getpid()
    found = []
    try:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return []
    for pid in pids:
        if pid == me:
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as fh:
                if needle in fh.read() + b"\0":
                    found.append(pid)
        except OSError:  # gone, or another user's
            pass
    return found


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
        return stat[stat.rindex(b")") + 2:][:1] != b"Z"
    except OSError:
        return False


def end_processes(pids: list[int], grace: float = 0.5) -> list[int]:
    """SIGTERM ``pids``, SIGKILL those still running after ``grace`` seconds; return those signalled."""
    signalled = []
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
            signalled.append(pid)
        except OSError:
            pass
    deadline = time.monotonic() + grace
    while True:
        reap()
        left = [p for p in signalled if _running(p)]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    reap()
    return signalled


def reap() -> None:
    """Collect exited children (a subreaper inherits orphans that nobody else waits for)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def end_descendants() -> list[str]:
    """End the processes this process's tasks left running; describe them (``pid command``)."""
    pids = descendants(os.getpid())
    if not pids:
        return []
    described = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                command = fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            command = "?"
        described.append(f"{pid} {command[:80]}")
    end_processes(pids)
    return described


class _Watched:
    """The pristine functions of one module or class, compared by identity in one C-level pass."""

    def __init__(self, holder: Any, namespace: Any, label: str, attrs: list[str]) -> None:
        self.holder, self.namespace, self.label, self.attrs = holder, namespace, label, attrs
        self.get = operator.itemgetter(*attrs)
        self.values = tuple(namespace[a] for a in attrs)

    def replaced(self) -> list[str]:
        """Names replaced (or deleted) since; each is put back."""
        try:
            now = self.get(self.namespace)
            if len(self.attrs) == 1:
                now = (now,)
            if all(map(operator.is_, now, self.values)):
                return []
        except KeyError:
            pass
        names = []
        for attr, value in zip(self.attrs, self.values):
            if self.namespace.get(attr) is not value:
                names.append(f"{self.label}.{attr}")
                setattr(self.holder, attr, value)  # put it back, so this task's result can still be sent
        return names


def _watched() -> list[_Watched]:
    """The functions (and class attributes) of the watched modules and classes, as they are now."""
    found: list[_Watched] = []
    for name in WATCHED_MODULES:
        module = sys.modules.get(name)
        if module is not None:
            attrs = [a for a, v in vars(module).items() if callable(v) and a not in _VOLATILE]
            if attrs:
                found.append(_Watched(module, vars(module), name, attrs))
    for name, cls_name in WATCHED_CLASSES:
        cls = getattr(sys.modules.get(name), cls_name, None)
        if isinstance(cls, type):
            attrs = [a for a in cls.__dict__ if not a.startswith("__")]
            if attrs:  # cls.__dict__ is a live view of the class's attributes
                found.append(_Watched(cls, cls.__dict__, f"{name}.{cls_name}", attrs))
    return found


class KernelCheck:
    """The parts of a kernel a task can damage, recorded before the task, compared after it."""

    _pristine: list[_Watched] | None = None

    def __init__(self) -> None:
        if KernelCheck._pristine is None:
            # The first task's kernel is as the runtime left it: that is the reference.
            KernelCheck._pristine = _watched()
        self.threads = set(threading.enumerate())
        self.streams = (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)

    def damage(self) -> list[str]:
        """What the task broke, one phrase each; repairs what it can so the result still gets out."""
        found: list[str] = []
        left = [t for t in threading.enumerate() if t not in self.threads and t.is_alive() and not _runtime_thread(t)]
        deadline = time.monotonic() + THREAD_GRACE
        for thread in left:
            thread.join(max(0.0, deadline - time.monotonic()))
        left = [t for t in left if t.is_alive()]
        if left:
            names = ", ".join(_describe(t) for t in left[:3]) + (", ..." if len(left) > 3 else "")
            found.append(f"left {len(left)} thread{'s' if len(left) > 1 else ''} running ({names})")
        stream_names = ("sys.stdout", "sys.stderr", "sys.__stdout__", "sys.__stderr__")
        now = (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)
        for name, before, after in zip(stream_names, self.streams, now):
            if after is not before:
                found.append(f"replaced {name}")
                setattr(sys, name.split(".")[1], before)
            elif getattr(before, "closed", False):
                found.append(f"closed {name}")
        for fd in (1, 2):
            try:
                os.fstat(fd)
            except OSError:
                found.append(f"closed file descriptor {fd}")
        replaced = [name for watched in KernelCheck._pristine or [] for name in watched.replaced()]
        if replaced:
            shown = ", ".join(replaced[:3]) + (", ..." if len(replaced) > 3 else "")
            found.append(f"replaced {shown}")
        if _loop_stopped():
            found.append("stopped the kernel's event loop")
        return found


#: Packages whose own threads start on demand and serve the kernel itself (e.g. zmq's
#: garbage collector for zero-copy sends, started by the first large output).
#: tqdm's idle monitor thread (one per process, started by the first progress bar) is
#: harmless too, and common enough in steps that retiring a kernel for it would cost.
RUNTIME_THREAD_MODULES = ("zmq.", "ipykernel.", "jupyter_client.", "IPython.", "tornado.", "tqdm.")


def _runtime_thread(thread: threading.Thread) -> bool:
    return type(thread).__module__.startswith(RUNTIME_THREAD_MODULES)


def _describe(thread: threading.Thread) -> str:
    """A thread's name, with its class when that is not plain ``threading.Thread`` (what started it)."""
    cls = type(thread)
    return thread.name if cls is threading.Thread else f"{thread.name}: {cls.__module__}.{cls.__qualname__}"


def _loop_stopped() -> bool:
    """Whether ``loop.stop()`` was called on the loop serving the kernel (it would exit after this task)."""
    import asyncio

    try:
        loop = asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:
        return False
    return bool(getattr(loop, "_stopping", False)) or loop.is_closed()
