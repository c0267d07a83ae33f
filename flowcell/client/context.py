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
#: Spin stores of this process (a notebook's scratch spins), searched for ``spin-N`` run ids.
_spin_roots: list[Path] = []


def reset() -> None:
    """Forget the namespace, the store and open connections (tests, and ``--root``)."""
    _state.update(namespace=_UNSET, root=None)
    _stores.clear()
    _spin_roots.clear()


def add_spin_store(root: str | Path) -> None:
    """Let the Client find the spins recorded at ``root`` by their ``spin-N`` ids."""
    path = Path(root)
    if path not in _spin_roots:
        _spin_roots.insert(0, path)


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
    """Point the Client at the spins persisted under ``path``: ``PATH/.flowcell_spin``, or the
    ``.flowcell_spin`` beside the notebook when ``path`` is one (where ``--persist`` writes)."""
    root = Path(path).resolve()
    if root.name != config.SPIN_DIR:
        root = config.spin_dir(near=root)
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
    """The number behind a run id: ``3``, or ``spin-12`` for a spin (in a spin store)."""
    number = text[len(config.SPIN_RUN_PREFIX):] if text.startswith(config.SPIN_RUN_PREFIX) else text
    try:
        return int(number)
    except ValueError:
        raise NotFoundError(f"{pathspec!r}: run ids are integers (or spin-N for a spin), not {text!r}.") from None


def run_id(record: RunRecord) -> str:
    """A run's id as users see it: ``3``, or ``spin-12`` for a spin."""
    spin = config.SPIN_TAG in record.system_tags
    return f"{config.SPIN_RUN_PREFIX}{record.run_number}" if spin else str(record.run_number)


def _spin_stores(root: Path) -> list[Path]:
    persisted = config.spin_dir()
    return [r for r in dict.fromkeys([root, *_spin_roots, persisted]) if config.has_store(r)]


def find_run(flow: str, run: str, root: Path, check_namespace: bool = True) -> tuple[RunRecord, Path]:
    """Run ``flow/run`` and the store holding it (a ``spin-N`` id is looked up among the spin stores)."""
    pathspec = f"{flow}/{run}"
    number = run_number(run, pathspec)
    record = None
    for where in (_spin_stores(root) if run.startswith(config.SPIN_RUN_PREFIX) else [root]):
        meta, _ = stores_for(where)
        record = meta.get_run(flow, number)
        if record is not None and run_id(record) == run:
            root = where
            break
        record = None
    if record is None:
        raise NotFoundError(f"Run {pathspec} does not exist.")
    if check_namespace and not in_namespace(record):
        raise NamespaceMismatch(
            f"Run {pathspec} is not in the current namespace {get_namespace()!r}; switch with "
            f"namespace(None) (all runs) or namespace('user:{record.user}')."
        )
    return record, root
