"""Configuration read by every layer and owned by none.

Where the store is, who the user is, the default namespace, the rules for tags and
the names of the files flowcell writes.  Read from the environment when asked (never
at import), so a test or a ``--root`` option that changes ``FLOWCELL_ROOT`` takes
effect at once.
"""

from __future__ import annotations

import getpass
import os
import platform
import time
from pathlib import Path

from ._version import __version__
from .errors import InvalidNameError

#: The store's directory name, found the way git finds ``.git``.
STORE_DIR = ".flowcell"
#: Persisted spins (``--persist``), beside the notebook.
SPIN_DIR = ".flowcell_spin"
#: A spin's run id is this prefix and a number (``spin-12``), never a plain integer.
SPIN_RUN_PREFIX = "spin-"
#: The system tag of a spin's record in a spin store.
SPIN_TAG = "spin"
#: The SQLite file of a store's metadata.
METADATA_FILE = "metadata.sqlite"
#: Environment variables flowcell reads.
ROOT_ENV = "FLOWCELL_ROOT"
USER_ENV = "FLOWCELL_USER"
PRODUCTION_TOKEN_ENV = "FLOWCELL_PRODUCTION_TOKEN"

#: Metaflow's limits on user tags.
MAX_TAG_LENGTH = 500
MAX_USER_TAGS = 50


def _start_dir(near: str | Path | None) -> Path:
    start = Path(near).expanduser().resolve() if near else Path.cwd().resolve()
    return start if start.is_dir() or not start.suffix else start.parent


def _git_top(start: Path) -> Path | None:
    """The top of the git work tree holding ``start`` (``.git`` is a directory or, in a worktree, a file)."""
    for d in (start, *start.parents):
        if (d / ".git").exists():
            return d
    return None


def find_store_root(near: str | Path | None = None) -> Path:
    """The store for a notebook or flow file at ``near`` (default: the working directory).

    ``$FLOWCELL_ROOT`` if set; else the nearest existing ``.flowcell/`` in ``near``'s
    directory or one of its parents; else ``.flowcell/`` at the top of the enclosing
    git work tree; else ``.flowcell/`` beside ``near``.  Nothing is created here.
    """
    env = os.environ.get(ROOT_ENV)
    if env:
        return Path(env).expanduser().resolve()
    start = _start_dir(near)
    for d in (start, *start.parents):
        if (d / STORE_DIR).is_dir():
            return d / STORE_DIR
    top = _git_top(start)
    return (top or start) / STORE_DIR


def root_reason(near: str | Path | None = None) -> str:
    """Why :func:`find_store_root` chose its answer, in a few words (for ``flowcell info``)."""
    if os.environ.get(ROOT_ENV):
        return f"${ROOT_ENV}"
    start = _start_dir(near)
    for d in (start, *start.parents):
        if (d / STORE_DIR).is_dir():
            return "the nearest existing store" if d != start else "the store beside it"
    return "a new store at the top of the git work tree" if _git_top(start) else "a new store beside it"


def metadata_path(root: str | Path) -> Path:
    """The metadata database of the store at ``root``."""
    return Path(root) / METADATA_FILE


def has_store(root: str | Path) -> bool:
    """Whether anything was ever recorded in the store at ``root``."""
    return metadata_path(root).exists()


def spin_dir(near: str | Path | None = None) -> Path:
    """``.flowcell_spin`` beside the notebook at ``near`` (default: the working directory)."""
    return _start_dir(near) / SPIN_DIR


def username() -> str:
    """``$FLOWCELL_USER``, else the login name."""
    return os.environ.get(USER_ENV) or os.environ.get("USER") or getpass.getuser()


def production_token() -> str | None:
    return os.environ.get(PRODUCTION_TOKEN_ENV) or None


def default_namespace() -> str:
    """``production:TOKEN`` if ``FLOWCELL_PRODUCTION_TOKEN`` is set, else ``user:NAME``."""
    token = production_token()
    return f"production:{token}" if token else f"user:{username()}"


def system_tags(user: str) -> list[str]:
    """The tags every run records about how it was made (they cannot be removed)."""
    token = production_token()
    return ([f"production:{token}"] if token else []) + [
        f"user:{user}",
        "runtime:flowcell",
        f"python_version:{platform.python_version()}",
        f"flowcell_version:{__version__}",
        f"date:{time.strftime('%Y%m%d')}",
    ]


def check_tags(tags: list[str]) -> list[str]:
    """Metaflow's rules for user tags: non-empty strings of at most 500 bytes, at most 50."""
    if isinstance(tags, str):
        raise InvalidNameError("Pass tags as a list of strings, not a single string.")
    for tag in tags:
        if not isinstance(tag, str) or not tag.strip():
            raise InvalidNameError(f"Tags must be non-empty strings, not {tag!r}.")
        if len(tag.encode("utf-8")) > MAX_TAG_LENGTH:
            raise InvalidNameError(f"Tag {tag[:40]!r}... is longer than {MAX_TAG_LENGTH} bytes.")
    unique = list(dict.fromkeys(tags))
    if len(unique) > MAX_USER_TAGS:
        raise InvalidNameError(f"A run can have at most {MAX_USER_TAGS} user tags, not {len(unique)}.")
    return unique
