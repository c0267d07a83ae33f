"""Which store and namespace the Client reads, and the open connections to stores.

Per-process state, as in Metaflow's client: ``namespace()`` switches it,
``inspect_spin()`` points it at persisted spins, and a task's child kernel points it
at its run's store (:func:`use_store`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import config
from ..errors import NamespaceMismatch, NotFoundError, StoreError
from ..store.blobs import BlobStore
from ..store.metadata import MetadataStore, RunRecord

_UNSET: Any = object()
_state: dict[str, Any] = {"namespace": _UNSET, "root": None}
_stores: dict[Path, tuple[MetadataStore, BlobStore]] = {}


def reset() -> None:
    """Forget the namespace, the store and open connections (tests, and ``--root``)."""
    _state.update(namespace=_UNSET, root=None)
    _stores.clear()


def use_store(root: str | Path | None, ns: str | None | Any = _UNSET) -> None:
    """Read the store at ``root`` (``None``: find it from the working directory), in namespace ``ns``."""
    _state["root"] = str(root) if root else None
    if ns is not _UNSET:
        _state["namespace"] = ns


def current_root() -> Path:
    """The store the Client reads now."""
    return Path(_state["root"]) if _state["root"] else config.find_store_root()


def stores_for(root: Path | None = None) -> tuple[MetadataStore, BlobStore]:
    """The (cached) metadata and blob stores at ``root``; a clear error if nothing was recorded there."""
    root = root or current_root()
    found = _stores.get(root)
    if found is None:
        if not config.has_store(root):
            if root.exists() and not root.is_dir():
                raise StoreError(f"The store {root} is a file, not a folder: point {config.ROOT_ENV} at a folder "
                                 "(or move the file away).")
            raise NotFoundError(f"No flowcell store at {root}: run a flow first, or set {config.ROOT_ENV}.")
        found = _stores[root] = (MetadataStore(root), BlobStore(root))
    return found


def inspect_spin(path: str | Path = ".") -> Path:
    """Point the Client at the spins persisted under ``path`` (``PATH/.flowcell_spin``)."""
    root = Path(path).resolve()
    if root.name != config.SPIN_DIR:
        root = root / config.SPIN_DIR
    if not config.has_store(root):
        raise NotFoundError(f"No persisted spins in {root}: spin a step with persist=True (--persist) first.")
    _state["root"] = str(root)
    return root


def default_namespace() -> str:
    """``production:TOKEN`` if ``FLOWCELL_PRODUCTION_TOKEN`` is set, else ``user:NAME``."""
    return config.default_namespace()


def namespace(ns: str | None) -> str | None:
    """Switch the namespace the Client searches; ``None`` searches every run."""
    _state["namespace"] = ns
    return ns


def get_namespace() -> str | None:
    """The namespace the Client searches (``None``: every run)."""
    ns = _state["namespace"]
    return default_namespace() if ns is _UNSET else ns


def in_namespace(record: RunRecord) -> bool:
    ns = get_namespace()
    return ns is None or ns in record.tags or ns in record.system_tags


def parse(pathspec: str, parts: int, kind: str) -> list[str]:
    """``pathspec`` split into exactly ``parts`` non-empty pieces, or a NotFoundError showing the form."""
    pieces = pathspec.strip("/").split("/") if isinstance(pathspec, str) else []
    if len(pieces) != parts or not all(pieces):
        example = "/".join(["FlowName", "3", "train", "4"][:parts])
        raise NotFoundError(f"{kind}({pathspec!r}): expected a pathspec like {example!r}.")
    return pieces


def run_number(text: str, pathspec: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise NotFoundError(f"{pathspec!r}: run ids are integers, not {text!r}.") from None


def find_run(flow: str, run: str, root: Path, check_namespace: bool = True) -> RunRecord:
    """The record of run ``flow/run`` in the store at ``root``, checked against the namespace."""
    pathspec = f"{flow}/{run}"
    meta, _ = stores_for(root)
    record = meta.get_run(flow, run_number(run, pathspec))
    if record is None:
        raise NotFoundError(f"Run {pathspec} does not exist.")
    if check_namespace and not in_namespace(record):
        raise NamespaceMismatch(
            f"Run {pathspec} is not in the current namespace {get_namespace()!r}; switch with "
            f"namespace(None) (all runs) or namespace('user:{record.user}')."
        )
    return record
