"""Artifacts to blobs and back: cloudpickle protocol 5 with out-of-band buffers.

Large buffers (NumPy arrays, pandas and Arrow columns: whatever pickles through
``PickleBuffer``) are stored raw as blobs of their own and memory-mapped on load,
so a 500 MB array is written once, never compressed or copied in memory, and is
readable before any page of it is touched.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import cloudpickle

from ..errors import CorruptBlobError, UnpicklableArtifactError
from .blobs import BlobStore

#: Buffers smaller than this stay inside the pickle stream (fewer tiny files).
OUT_OF_BAND_MIN = 64 * 1024


@dataclass(frozen=True)
class ArtifactRef:
    """Where an artifact's bytes live: a pickle stream plus raw buffers.

    ``name`` and ``task`` (the pathspec of the task that wrote it) only serve
    messages: two refs to the same bytes are equal whoever wrote them.
    """

    address: str
    buffers: tuple[str, ...]
    size: int
    type: str
    name: str | None = field(default=None, compare=False)
    task: str | None = field(default=None, compare=False)

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"address": self.address, "buffers": list(self.buffers), "size": self.size,
                             "type": self.type}
        if self.name is not None:
            d["name"] = self.name
        if self.task is not None:
            d["task"] = self.task
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ArtifactRef:
        return cls(d["address"], tuple(d.get("buffers", ())), int(d.get("size", 0)), d.get("type", ""),
                   d.get("name"), d.get("task"))

    def blobs(self) -> tuple[str, ...]:
        """Every blob the artifact needs: the pickle stream, then its raw buffers."""
        return (self.address, *self.buffers)


def type_name(value: Any) -> str:
    t = type(value)
    return f"{t.__module__}.{t.__qualname__}"


def dump_artifact(store: BlobStore, name: str, value: Any, step: str | None = None,
                  task: str | None = None) -> ArtifactRef:
    """Serialize ``value`` into ``store``; identical values get identical addresses.

    ``task`` (the writing task's pathspec) is recorded in the reference so that a
    reader of damaged bytes is told which artifact of which task they were.
    """
    buffers: list[pickle.PickleBuffer] = []

    def keep_large(buf: pickle.PickleBuffer) -> bool:
        if buf.raw().nbytes < OUT_OF_BAND_MIN:
            return True  # serialize in band
        buffers.append(buf)
        return False

    try:
        stream = cloudpickle.dumps(value, protocol=5, buffer_callback=keep_large)
    except Exception as exc:
        where = f" of step '{step}'" if step else ""
        raise UnpicklableArtifactError(
            f"Artifact '{name}'{where} cannot be pickled ({type(exc).__name__}: {exc}); keep it in a local "
            "variable instead of on self, or store what it holds (e.g. a path or a plain value)."
        ) from None  # the sentence says it all; cloudpickle's frames would bury it
    addresses = tuple(store.put(buf.raw()) for buf in buffers)
    address = store.put(stream)
    size = len(stream) + sum(buf.raw().nbytes for buf in buffers)
    return ArtifactRef(address, addresses, size, type_name(value), name, task)


def damaged(exc: CorruptBlobError, name: str | None, pathspec: str | None) -> CorruptBlobError:
    """The blob-level error restated for the artifact it belongs to, in one sentence."""
    what = f"Artifact '{name}' of {pathspec}" if name and pathspec else (
        f"Artifact '{name}'" if name else "An artifact")
    address = exc.address or "?"
    state = "is missing from the store" if exc.missing else "is corrupted"
    return CorruptBlobError(f"{what} {state} (blob {address[:12]}…; its run can be re-run to repair it).",
                            address=exc.address, missing=exc.missing, artifact=name, pathspec=pathspec)


def load_artifact(store: BlobStore, ref: ArtifactRef, name: str | None = None, pathspec: str | None = None) -> Any:
    """Load an artifact; out-of-band buffers come back memory-mapped (copy-on-write).

    Damaged bytes raise ``CorruptBlobError`` naming the artifact and its task:
    ``name`` and ``pathspec`` as the reader sees them, else as the reference recorded.
    """
    try:
        stream = store.get(ref.address)
        buffers = [store.map(address) for address in ref.buffers]
    except CorruptBlobError as exc:
        raise damaged(exc, name or ref.name, pathspec or ref.task) from None
    return pickle.loads(stream, buffers=buffers)


def check_artifacts(store: BlobStore, refs: Mapping[str, Mapping[str, Any]],
                    store_at: Callable[[str], BlobStore] = BlobStore) -> None:
    """Raise ``CorruptBlobError`` (naming the artifact) unless every blob of ``refs`` is in place.

    Run before a task is committed.  The blobs the task wrote were verified as they
    were written (``BlobStore.put`` checks a blob it finds already there); an input
    passed on by reference must still have all its files at their recorded size.
    That costs a ``stat`` per blob and reads nothing, so untouched inputs stay
    unread however large they are.
    """
    for name, raw in refs.items():
        ref = ArtifactRef.from_json(raw)
        source = store_at(raw["root"]) if raw.get("root") else store  # a spin's input lives elsewhere
        blobs = ref.blobs()
        if all(source.fresh(address) for address in blobs):
            continue  # written or verified by this task just now
        try:
            total = sum(source.file_size(address) for address in blobs)
            if total != ref.size:
                raise source.corrupt(ref.address)
        except CorruptBlobError as exc:
            raise damaged(exc, name, ref.task) from None
