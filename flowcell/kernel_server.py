"""The warm kernel server: one per store, so later shell commands skip kernel start-up.

``python -m flowcell.kernel_server STORE --parent PID`` is started in its own
session by the first ``flowcell run|spin|resume`` of a store (see :mod:`flowcell.warm`).
It waits for that command to finish, warms a kernel pool, and listens on a private
Unix socket (its folder is 0700; no TCP).  Each connection carries one command as a
JSON line; the server runs the CLI's own ``main`` on its warm runtime in a worker
thread whose stdout and stderr are streamed back, then sends the exit code.  One
command runs at a time: a second one is told "busy" and runs in its own process.
A client that sends ``interrupt`` (Ctrl-C) or hangs up stops its command's tasks.

The server exits after ``FLOWCELL_SERVER_IDLE`` seconds without a command (default
600), when the installed flowcell changes, on ``flowcell server stop``, and when its
store is deleted.
"""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import io
import json
import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from . import warm

DEFAULT_IDLE = 600.0
#: How often the accept loop wakes to check idleness, the store and the installed flowcell.
TICK = 1.0


class _Routed(io.TextIOBase):
    """``sys.stdout``/``sys.stderr`` of the server: each command thread writes to its own client."""

    def __init__(self, name: str, fallback: Any) -> None:
        self.name, self.fallback = name, fallback
        self.local = threading.local()

    def _target(self) -> Any:
        return getattr(self.local, "send", None)

    def write(self, text: str) -> int:
        send = self._target()
        if send is None:
            return int(self.fallback.write(text))
        if text:
            send({"name": self.name, "text": text})
        return len(text)

    def flush(self) -> None:
        if self._target() is None:
            self.fallback.flush()

    def isatty(self) -> bool:
        send = self._target()
        return bool(getattr(self.local, "tty", False)) if send is not None else bool(self.fallback.isatty())

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"


def _interrupt(thread: threading.Thread) -> None:
    """Raise KeyboardInterrupt in ``thread``, as Ctrl-C would in a command's own process."""
    if thread.ident is not None:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(KeyboardInterrupt))


class KernelServer:
    """Accepts commands for one store and runs them on one warm runtime."""

    def __init__(self, store: Path, idle: float) -> None:
        self.store = store
        self.idle = idle
        self.fingerprint = warm.fingerprint()
        self.env = warm.task_environment()
        self.started = time.time()
        self.last_used = time.time()
        self.commands = 0
        self.busy = threading.Lock()
        self.stopping = threading.Event()
        self.runtime: Any = None
        self.stdout = _Routed("stdout", sys.stdout)
        self.stderr = _Routed("stderr", sys.stderr)

    # -- lifetime --------------------------------------------------------------

    def warm_up(self) -> None:
        """Start the pool and load what commands import, so the first command is warm too."""
        import tqdm  # noqa: F401  (everything a run or spin loads, imported to be warm)

        from . import cli, describe, lint, options, progress, results, runner  # noqa: F401
        from .runtime import runs, scheduler, spin, spin_inputs, task  # noqa: F401
        from .store import blobs, metadata, serialize  # noqa: F401
        from .runtime.engine import Runtime

        self.runtime = Runtime(pool_size=2, cwd=str(self.store.parent))
        warm._served["runtime"] = self.runtime
        sys.stdout, sys.stderr = self.stdout, self.stderr

    def should_exit(self) -> str | None:
        if self.stopping.is_set():
            return "stopped"
        if not self.busy.locked() and time.time() - self.last_used > self.idle:
            return "idle"
        if not self.store.is_dir():
            return "store removed"
        if not self.busy.locked() and warm.fingerprint() != self.fingerprint:
            return "flowcell changed"
        return None

    def serve(self, listener: socket.socket) -> str:
        listener.settimeout(TICK)
        while True:
            reason = self.should_exit()
            if reason:
                return reason
            try:
                conn, _ = listener.accept()
            except socket.timeout:
                continue
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()

    # -- one connection ----------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "store": str(self.store), "socket": str(warm.socket_path(self.store)),
                "uptime": round(time.time() - self.started, 1), "idle": round(time.time() - self.last_used, 1),
                "idle_exit": self.idle, "busy": self.busy.locked(), "commands": self.commands,
                "idle_kernels": self.runtime.pool.idle_count if self.runtime else 0,
                "version": self.fingerprint.split("|")[0]}

    def handle(self, conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        lock = threading.Lock()

        def send(message: dict[str, Any]) -> None:
            with lock:
                conn.sendall(json.dumps(message).encode() + b"\n")

        try:
            conn.settimeout(warm.CONNECT_TIMEOUT)
            message = json.loads(reader.readline() or b"{}")
            conn.settimeout(None)
            if message.get("status"):
                send(self.status())
            elif message.get("stop"):
                self.stopping.set()
                send({"stopped": True, "pid": os.getpid()})
            elif "argv" in message:
                self.command(message, send, reader)
        except (OSError, ValueError):
            pass  # a client that went away or spoke nonsense: nothing to answer
        finally:
            conn.close()

    def command(self, message: dict[str, Any], send: Any, reader: Any) -> None:
        if message.get("fingerprint") != self.fingerprint:
            self.stopping.set()
            send({"declined": "version"})
            return
        if message.get("env") != self.env:
            env = message.get("env") or {}
            differ = sorted(k for k in set(env) | set(self.env) if env.get(k) != self.env.get(k))
            print(f"declined a command: its environment differs in {', '.join(differ[:5])}", file=sys.__stderr__)
            send({"declined": "environment"})
            return
        if not self.busy.acquire(blocking=False):
            send({"declined": "busy"})
            return
        started = time.time()
        try:
            self.commands += 1
            send({"accepted": True})
            result: dict[str, int] = {}
            worker = threading.Thread(target=self._run, args=(message, send, result), daemon=True)
            worker.start()
            self._watch(reader, worker)
            worker.join()
            send({"exit": result.get("exit", 2)})
            print(f"served `flowcell {' '.join(message['argv'][:1])}`: exit {result.get('exit', 2)} in "
                  f"{time.time() - started:.3f}s", file=sys.__stderr__, flush=True)
        finally:
            self.last_used = time.time()
            self.busy.release()

    def _watch(self, reader: Any, worker: threading.Thread) -> None:
        """Until the command ends: an ``interrupt`` line or a hang-up stops it like Ctrl-C."""
        def listen() -> None:
            try:
                line = reader.readline()
            except (OSError, ValueError):
                line = b""
            if worker.is_alive() and (not line or json.loads(line).get("interrupt")):
                _interrupt(worker)

        threading.Thread(target=listen, daemon=True).start()

    def _run(self, message: dict[str, Any], send: Any, result: dict[str, int]) -> None:
        from .cli import main

        tty = message.get("tty") or [False, False]
        self.stdout.local.send, self.stdout.local.tty = send, tty[0]
        self.stderr.local.send, self.stderr.local.tty = send, tty[1]
        try:
            os.chdir(message["cwd"])  # one command at a time, so the process's cwd is the command's
            result["exit"] = main(list(message["argv"]))
        except SystemExit as exc:  # argparse's usage errors
            result["exit"] = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
        except KeyboardInterrupt:
            print("flowcell: interrupted; the run was stopped and marked failed.", file=sys.stderr)
            result["exit"] = 130
        except BaseException as exc:  # never let a command take the server down
            print(f"flowcell: internal error in the kernel server: {type(exc).__name__}: {exc}", file=sys.stderr)
            result["exit"] = 2
        finally:
            sys.stdout.flush()
            self.stdout.local.send = self.stderr.local.send = None


def _wait_for(pid: int | None, limit: float = 600.0) -> None:
    """Let the command that started us finish first: its kernels and ours would compete."""
    deadline = time.time() + limit
    while pid and time.time() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        except PermissionError:
            return
        time.sleep(0.05)


def _listen(path: Path) -> socket.socket:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path.parent, 0o700)
    if path.exists() or path.is_symlink():
        path.unlink()  # a socket left by a server that crashed (we hold the lock, so no one is on it)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        listener.bind(str(path))
    finally:
        os.umask(old)
    listener.listen(8)
    return listener


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flowcell.kernel_server")
    parser.add_argument("store")
    parser.add_argument("--parent", type=int, help="start kernels once this process has exited")
    args = parser.parse_args(argv)
    store = Path(args.store).resolve()
    folder = warm.server_dir(store)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    lock = os.open(folder / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return 0  # another server owns this store
    idle = float(os.environ.get("FLOWCELL_SERVER_IDLE") or DEFAULT_IDLE)
    _wait_for(args.parent)
    server = KernelServer(store, idle)
    server.warm_up()
    path = warm.socket_path(store)
    listener = _listen(path)
    (folder / "pid").write_text(str(os.getpid()))
    reason = "?"
    try:
        reason = server.serve(listener)
    finally:
        listener.close()
        for leftover in (path, folder / "pid"):
            try:
                leftover.unlink()
            except OSError:
                pass
        print(f"flowcell kernel server {os.getpid()} exiting: {reason}", file=sys.__stderr__)
        server.runtime.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
