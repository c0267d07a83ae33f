"""Artifacts to blobs and back: cloudpickle protocol 5 with out-of-band buffers.

Large buffers (NumPy arrays, pandas and Arrow columns: whatever pickles through
``PickleBuffer``) are stored raw as blobs of their own and memory-mapped on load,
so a 500 MB array is written once, never compressed or copied in memory, and is
readable before any page of it is touched.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from typing import Any

import cloudpickle

from ..errors import UnpicklableArtifactError
from .blobs import BlobStore

#: Buffers smaller than this stay inside the pickle stream (fewer tiny files).
OUT_OF_BAND_MIN = 64 * 1024


@dataclass(frozen=True)
class ArtifactRef:
    """Where an artifact's bytes live: a pickle stream plus raw buffers."""

    address: str
    buffers: tuple[str, ...]
    size: int
    type: str

    def to_json(self) -> dict[str, Any]:
        return {"address": self.address, "buffers": list(self.buffers), "size": self.size, "type": self.type}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ArtifactRef:
        return cls(d["address"], tuple(d.get("buffers", ())), int(d.get("size", 0)), d.get("type", ""))


def type_name(value: Any) -> str:
    t = type(value)
    return f"{t.__module__}.{t.__qualname__}"


def dump_artifact(store: BlobStore, name: str, value: Any, step: str | None = None) -> ArtifactRef:
    """Serialize ``value`` into ``store``; identical values get identical addresses."""
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
        ) from exc
    addresses = tuple(store.put(buf.raw()) for buf in buffers)
    address = store.put(stream)
    size = len(stream) + sum(buf.raw().nbytes for buf in buffers)
    return ArtifactRef(address, addresses, size, type_name(value))


def load_artifact(store: BlobStore, ref: ArtifactRef) -> Any:
    """Load an artifact; out-of-band buffers come back memory-mapped (copy-on-write)."""
    stream = store.get(ref.address)
    buffers = [store.map(address) for address in ref.buffers]
    return pickle.loads(stream, buffers=buffers)
