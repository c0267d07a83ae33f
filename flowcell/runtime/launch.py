"""Starting a child kernel process, with nothing but the standard library.

Kept free of jupyter_client (whose import costs ~0.1 s) so that a command-line run
or spin can start its kernels first thing, and read the notebook and import the
rest of flowcell while the kernels boot.  The connection file and IPC sockets live
in a private 0700 directory; the kernel's own stdout/stderr go to a log file there.
"""

from __future__ import annotations

import itertools
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path

from .. import owner
from .._hygiene import end_processes, processes_with_env

_counter = itertools.count(1)

#: No history database (many kernels at once would contend on ~/.ipython's SQLite).
KERNEL_FLAGS = ["--HistoryManager.enabled=False", "--IPKernelApp.quiet=True"]


@dataclass
class Launched:
    """A started kernel process and how to connect to it."""

    process: subprocess.Popen[bytes]
    connection: dict[str, object]
    connection_file: Path
    log_path: Path

    def cleanup(self) -> None:
        """Remove the connection file and any IPC socket files left behind."""
        base = str(self.connection["ip"])
        for path in [self.connection_file, Path(f"{base}-pipe")] + [Path(f"{base}-{p}") for p in range(1, 6)]:
            try:
                path.unlink()
            except OSError:
                pass


#: Prefixes of the per-process folders flowcell makes in the temporary directory.
KERNELS_PREFIX = "flowcell-kernels-"
SPIN_PREFIX = "flowcell-spin-"
#: Every process a kernel starts inherits this variable, naming the kernel folder.
KERNEL_DIR_ENV = "FLOWCELL_KERNEL_DIR"
KERNEL_ID_ENV = "FLOWCELL_KERNEL_ID"


def owned_tempdir(prefix: str) -> Path:
    """A new private (0700) folder in the temporary directory, named after this process.

    The name carries the owner (pid and start time), so :func:`clean_dead_owners`
    can tell, from a later process, that its owner has gone.
    """
    path = Path(tempfile.mkdtemp(prefix=f"{prefix}{owner.current_tag()}-", dir=_temp_roots()[0]))
    os.chmod(path, 0o700)
    return path


class OwnedDir:
    """A private temporary folder, removed when the last object holding it is dropped (or at exit).

    A spin's scratch store is one: the spinner and every spin result that may still
    read it hold it; a process killed before it could remove it leaves a folder that
    :func:`clean_dead_owners` removes later.
    """

    def __init__(self, prefix: str) -> None:
        self.path = owned_tempdir(prefix)
        self._finalizer = weakref.finalize(self, shutil.rmtree, str(self.path), True)

    def remove(self) -> None:
        """Remove the folder now."""
        self._finalizer()


#: Unix socket paths are limited to ~107 bytes; a kernel's sockets need this many below the temp folder.
MAX_TEMP_ROOT = 50


def _temp_roots() -> list[str]:
    """Where the per-process folders go: the temp folder, or /tmp when its path is too long for sockets."""
    roots = [tempfile.gettempdir()]
    if len(roots[0]) > MAX_TEMP_ROOT and os.path.isdir("/tmp"):
        roots.insert(0, "/tmp")
    return roots


def make_workdir() -> Path:
    """The kernel folder of this process (sockets, connection files, logs); cleans up dead ones first."""
    clean_dead_owners()
    return owned_tempdir(KERNELS_PREFIX)


def clean_dead_owners(tmp: str | None = None) -> list[Path]:
    """Remove kernel folders and spin scratch stores whose owning process is gone.

    A process killed with SIGKILL cannot clean up after itself; the next flowcell
    process does, for folders of this user only.  Processes the dead owner's tasks
    left behind (recognised by :data:`KERNEL_DIR_ENV`) are ended first.
    """
    removed: list[Path] = []
    uid = os.getuid()
    entries: list[os.DirEntry[str]] = []
    for root in [tmp] if tmp else _temp_roots():
        try:
            entries.extend(os.scandir(root))
        except OSError:
            pass
    for entry in entries:
        for prefix in (KERNELS_PREFIX, SPIN_PREFIX):
            if entry.name.startswith(prefix):
                break
        else:
            continue
        tag = "-".join(entry.name[len(prefix):].split("-")[:2])
        who = owner.owner_from_tag(tag)
        try:
            if who is None or who.alive() is not False or entry.stat(follow_symlinks=False).st_uid != uid:
                continue
        except OSError:
            continue
        if prefix == KERNELS_PREFIX:
            end_processes(processes_with_env(KERNEL_DIR_ENV, entry.path))
        shutil.rmtree(entry.path, ignore_errors=True)
        removed.append(Path(entry.path))
    return removed


def kernel_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a child kernel: the caller's, made safe for a task."""
    env = dict(os.environ if base is None else base)
    # Inline plots become display data that reaches the cell.
    env.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
    env["FLOWCELL_CHILD"] = "1"
    # The kernel exits by itself if this process dies (ipykernel's parent poller).
    env["JPY_PARENT_PID"] = str(os.getpid())
    return env


def spawn(workdir: Path, cwd: str, env: dict[str, str]) -> Launched:
    """Start one kernel process over IPC transport (no TCP port) and return at once."""
    n = next(_counter)
    ip = str(workdir / f"k{os.getpid()}-{n}")
    # Inherited by every process the kernel's tasks start: how leftovers are found later.
    env = {**env, KERNEL_DIR_ENV: str(workdir), KERNEL_ID_ENV: ip}
    connection: dict[str, object] = {
        "transport": "ipc", "ip": ip,
        "shell_port": 1, "iopub_port": 2, "stdin_port": 3, "control_port": 4, "hb_port": 5,
        "key": secrets.token_hex(32), "signature_scheme": "hmac-sha256", "kernel_name": "flowcell",
    }
    connection_file = workdir / f"k{os.getpid()}-{n}.json"
    fd = os.open(connection_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(connection, fh)
    log_path = workdir / f"k{os.getpid()}-{n}.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "flowcell._kernel", "-f", str(connection_file), *KERNEL_FLAGS],
            cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            # Ctrl-C in a terminal reaches flowcell, which stops the tasks it runs itself.
            start_new_session=True,
        )
    return Launched(process, connection, connection_file, log_path)


def prelaunch(count: int) -> tuple[Path, list[Launched]]:
    """Start ``count`` kernels now, for a :class:`~flowcell.runtime.engine.Runtime` to adopt.

    The command line calls this before importing the rest of flowcell, so the
    kernels' ~0.6 s start-up overlaps reading the notebook and the store.
    """
    workdir = make_workdir()
    env = kernel_env()
    return workdir, [spawn(workdir, os.getcwd(), env) for _ in range(count)]
