"""The shell's side of the warm kernel server: hand a command to it, or start one.

``flowcell run|spin|resume`` call :func:`try_server` first.  When a server for the
store is listening, accepts the command and stays connected, the command runs there
on warm kernels and its stdout, stderr and exit code are replayed here; in every
other case (no server, a different flowcell or environment, busy, broken, or
``FLOWCELL_SERVER=off``) this returns ``None`` within a short timeout and the
command runs in this process as it always did.  The first command in a store also
starts a server in the background, which waits for that command to finish before
it starts kernels, so the first command is not slowed down.

This module is imported on every such command, so it imports only the standard
library (and nothing of flowcell's runtime).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

#: Environment variables that differ between shells without changing what a task sees.
VOLATILE_ENV = frozenset({"PWD", "OLDPWD", "SHLVL", "_", "COLUMNS", "LINES", "FLOWCELL_SERVER",
                          "FLOWCELL_SERVER_IDLE", "TERM_SESSION_ID", "WINDOWID",
                          "PYTEST_CURRENT_TEST"})
#: Seconds to wait for a server to connect and answer before running locally.
CONNECT_TIMEOUT = 1.0
#: Unix socket paths longer than this do not fit in ``sockaddr_un``.
MAX_SOCKET_PATH = 100
#: The served process's runtime, set only inside a server (see :func:`served_runtime`).
_served: dict[str, Any] = {}
#: Whether this process already asked (the entry point asks before the CLI loads; once is enough).
_asked: list[bool] = []


def store_for(near: str | None) -> Path:
    """The store a command about the notebook ``near`` (default: this directory) uses."""
    from .config import find_store_root

    return find_store_root(near)


def _notebook_of(argv: list[str]) -> str | None:
    """The NOTEBOOK of ``run|spin|resume NOTEBOOK ...``: the first word that is not an option."""
    return next((word for word in argv[1:] if not word.startswith("-")), None)


def server_dir(store: Path) -> Path:
    return store / "server"


def socket_path(store: Path) -> Path:
    """The server's socket: in the store, or (when that path is too long) a private folder in /tmp."""
    inside = server_dir(store) / "sock"
    if len(str(inside)) <= MAX_SOCKET_PATH:
        return inside
    digest = hashlib.sha256(str(store).encode()).hexdigest()[:20]
    return Path(f"/tmp/flowcell-{os.getuid()}") / f"{digest}.sock"


def fingerprint() -> str:
    """Which flowcell this is: its version, interpreter and the newest change to its source files.

    A server only takes commands from an identical flowcell, and exits when the
    installed one changes (an upgrade, or an edit to an editable install).
    """
    from ._version import __version__

    package = Path(__file__).resolve().parent
    files = [*package.glob("*.py"), *package.glob("*/*.py")]
    newest = max((p.stat().st_mtime_ns for p in files), default=0)
    return f"{__version__}|{sys.executable}|{newest}"


def task_environment(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment that matters to tasks (a server only runs commands from an equal one)."""
    return {k: v for k, v in (os.environ if env is None else env).items() if k not in VOLATILE_ENV}


def served_runtime() -> Any:
    """Inside a kernel server, its warm runtime; elsewhere ``None`` (the command makes its own)."""
    return _served.get("runtime")


def enabled() -> bool:
    return os.environ.get("FLOWCELL_SERVER", "on").lower() not in ("off", "0", "no", "false") \
        and "runtime" not in _served


def _connect(store: Path) -> socket.socket | None:
    path = socket_path(store)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(CONNECT_TIMEOUT)
    try:
        sock.connect(str(path))
    except OSError:
        sock.close()
        return None
    return sock


def request(store: Path, message: dict[str, Any], timeout: float = CONNECT_TIMEOUT) -> dict[str, Any] | None:
    """One request and its one-line answer (``status``, ``stop``); ``None`` when no server answers."""
    sock = _connect(store)
    if sock is None:
        return None
    try:
        sock.settimeout(timeout)
        sock.sendall(json.dumps(message).encode() + b"\n")
        line = sock.makefile("rb").readline()
        return json.loads(line) if line else None
    except (OSError, ValueError):
        return None
    finally:
        sock.close()


def spawn_server(store: Path) -> None:
    """Start a server for ``store`` in its own session; it starts kernels once this process exits."""
    import subprocess

    folder = server_dir(store)
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Private even in a store shared with a group (docs/store.md): the server runs code
        # as this user.  The store's own mode is left alone, or sharing it would stop.
        os.chmod(folder, 0o700)
        log = open(folder / "log", "ab")
    except OSError:
        return  # a read-only store: no server, commands run as before
    with log:
        subprocess.Popen([sys.executable, "-m", "flowcell.kernel_server", str(store), "--parent", str(os.getpid())],
                         start_new_session=True, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                         close_fds=True, cwd=str(folder))


def _starting(store: Path) -> bool:
    """A server holds its lock from start to exit; a held lock with no socket means it is warming up."""
    import fcntl

    try:
        fd = os.open(server_dir(store) / "lock", os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def try_server(argv: list[str]) -> int | None:
    """Run ``flowcell ARGV`` on the store's warm server; the exit code, or ``None`` to run it here."""
    if not enabled() or _asked:
        return None
    _asked.append(True)
    store = store_for(_notebook_of(argv))
    sock = _connect(store)
    if sock is None:
        if not _starting(store):
            import atexit

            # Started as this command exits, so its start-up never competes with the command.
            atexit.register(spawn_server, store)
        return None
    try:
        return _hand_over(sock, store, argv)
    finally:
        sock.close()


def _hand_over(sock: socket.socket, store: Path, argv: list[str]) -> int | None:
    message = {"argv": argv, "cwd": os.getcwd(), "env": task_environment(), "fingerprint": fingerprint(),
               "tty": [sys.stdout.isatty(), sys.stderr.isatty()]}
    reader = sock.makefile("rb")
    try:
        sock.sendall(json.dumps(message).encode() + b"\n")
        answer = json.loads(reader.readline() or b"{}")
    except (OSError, ValueError):
        return None
    if not answer.get("accepted"):
        if answer.get("declined") == "version":
            spawn_server(store)  # the old server is exiting; a current one takes over
        return None
    sock.settimeout(None)  # the command may run for hours
    streamed = False
    interrupted = False
    while True:
        try:
            line = reader.readline()
            if not line:
                if not streamed:
                    return None
                print("flowcell: the kernel server stopped during the command; run it again.", file=sys.stderr)
                return 2
            event = json.loads(line)
            if "exit" in event:
                return int(event["exit"])
            stream = sys.stdout if event.get("name") == "stdout" else sys.stderr
            stream.write(event.get("text", ""))
            stream.flush()
            streamed = True
        except KeyboardInterrupt:
            if interrupted:
                raise
            interrupted = True
            try:
                sock.sendall(b'{"interrupt": true}\n')
            except OSError:
                return 130


def server_command(action: str, near: str | None = None) -> tuple[dict[str, Any], str]:
    """``flowcell server status|stop [NOTEBOOK]``: (JSON result, one line)."""
    store = store_for(near)
    if action == "status":
        answer = request(store, {"status": True})
        if answer is None:
            state = "starting" if _starting(store) else "stopped"
            return {"running": False, "state": state, "store": str(store)}, \
                f"no kernel server is running for {store}" + (" (one is starting)" if state == "starting" else "")
        answer = {"running": True, **answer}
        return answer, (f"kernel server {answer['pid']} for {store}: {'busy' if answer['busy'] else 'idle'}, "
                        f"{answer['commands']} commands, up {answer['uptime']:.0f}s, exits after "
                        f"{answer['idle_exit']:.0f}s idle")
    answer = request(store, {"stop": True})
    if answer is None:
        return {"stopped": False, "store": str(store)}, f"no kernel server is running for {store}"
    return {"stopped": True, "pid": answer["pid"], "store": str(store)}, \
        f"stopped kernel server {answer['pid']} for {store}"
