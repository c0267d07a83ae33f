"""The store's folders and files on disk: who may read them, and temporary files.

A store is created private: folders 0700, files 0600 (blobs, which never change,
0400), whatever the umask.  A store is shared with a group the way a git
repository is: give its root folder to the group with group read, write and
execute (and the setgid bit, so new files keep the group) and flowcell creates
everything inside it group-readable and group-writable (docs/store.md).

Temporary files carry their owner (host and process id) in their name, so the
next process to open the store can delete the ones whose owner died mid-write.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import socket
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import StoreError, StoreFullError

#: A temporary file whose name does not say who owns it is removed once it is this old.
STALE_UNOWNED_SECONDS = 24 * 3600


@dataclass(frozen=True)
class Modes:
    """Permission bits for what flowcell creates in one store."""

    folder: int
    file: int
    blob: int
    shared: bool

    @classmethod
    def of(cls, root: Path) -> Modes:
        """Private, unless the root folder was given to its group (rwx for the group)."""
        try:
            mode = root.stat().st_mode
        except OSError:
            mode = 0
        if mode & stat.S_IRWXG == stat.S_IRWXG:
            return cls(folder=0o2770, file=0o660, blob=0o440, shared=True)
        return cls(folder=0o700, file=0o600, blob=0o400, shared=False)


def is_writable(folder: Path) -> bool:
    """Whether this process can create files in ``folder`` (false on a read-only mount)."""
    return os.access(folder, os.W_OK | os.X_OK)


def open_root(root: Path) -> tuple[Modes, bool]:
    """Create the store's root folder if needed; return its modes and whether it is writable.

    Refuses a path that is a file, and says so in one sentence, as it does for a
    folder that cannot be created.
    """
    if root.exists() and not root.is_dir():
        raise StoreError(f"The store {root} is a file, not a folder: point FLOWCELL_ROOT at a folder "
                         "(or move the file away).")
    if not root.exists():
        try:
            root.mkdir(mode=0o700, parents=True)
        except FileExistsError:
            pass  # created by a concurrent process
        except OSError as exc:
            raise _creation_error(root, exc) from None
    if not root.is_dir():
        raise StoreError(f"The store {root} is not a folder.")
    return Modes.of(root), is_writable(root)


def make_folder(path: Path, modes: Modes) -> None:
    """Create one folder of the store with the store's mode (existing ones are kept)."""
    try:
        path.mkdir(mode=modes.folder)
    except FileExistsError:
        return
    except OSError as exc:
        raise _creation_error(path, exc) from None
    if modes.shared:
        os.chmod(path, modes.folder)  # the umask may have removed the group bits


def create_file(path: Path, modes: Modes) -> None:
    """Create ``path`` empty with the store's file mode unless it exists."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, modes.file)
    except FileExistsError:
        return
    except OSError as exc:
        raise _creation_error(path, exc) from None
    try:
        if modes.shared:
            os.fchmod(fd, modes.file)
    finally:
        os.close(fd)


def _creation_error(path: Path, exc: OSError) -> StoreError:
    if exc.errno == errno.ENOSPC:
        return StoreFullError(f"The disk holding {path} is full: free some space and try again.")
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return StoreError(f"Cannot create {path}: {os.strerror(exc.errno).lower()}; point FLOWCELL_ROOT "
                          "at a folder you can write to.")
    return StoreError(f"Cannot create {path}: {exc.strerror or exc}.")


# -- temporary files ------------------------------------------------------------------

_HOST = socket.gethostname().replace(".", "_")
_serial = itertools.count()


def temp_name(prefix: str) -> str:
    """A temporary file name that says which process owns it: ``PREFIX.HOST.PID.SERIAL``.

    Unique among live processes (the pid) and within one (the serial number); files
    are created with ``O_EXCL``, so a name left by a dead process with the same pid
    is never written through.
    """
    return f"{prefix}.{_HOST}.{os.getpid()}.{next(_serial)}"


def _owner_alive(host: str, pid: int) -> bool:
    if host != _HOST:
        return True  # another machine's process (a shared file system): not ours to judge
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, someone else's
    return True


def clean_stale_temp_files(folder: Path, now: float | None = None) -> list[Path]:
    """Delete temporary files left by writers that died (killed mid-write); return them.

    A file is stale when its owner process on this host is gone, or, for a name
    without an owner (written by an older flowcell), when it is a day old.
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    now = time.time() if now is None else now
    for entry in entries:
        parts = entry.name.split(".")
        stale = False
        if len(parts) >= 4 and parts[-2].isdigit():
            stale = not _owner_alive(parts[-3], int(parts[-2]))
        else:
            with contextlib.suppress(OSError):
                stale = now - entry.stat(follow_symlinks=False).st_mtime > STALE_UNOWNED_SECONDS
        if stale:
            try:
                os.unlink(entry.path)
            except OSError:
                continue  # read-only store, or removed by another process meanwhile
            removed.append(Path(entry.path))
    return removed
