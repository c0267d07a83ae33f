"""Content-addressed blob storage on the file system.

A blob's address is the BLAKE3 hex digest of its bytes; it lives at
``ROOT/blobs/ab/<address>``.  Writes go to a temporary file under ``ROOT/tmp``,
are fsynced, then renamed into place (and the directory fsynced), so a crash never
leaves a partial blob under a valid address.  Reads verify the digest.
"""

from __future__ import annotations

import errno
import mmap
import os
import re
import tempfile
from pathlib import Path
from pickle import PickleBuffer

import blake3

from ..errors import CorruptBlobError, StoreError, StoreFullError

_ADDRESS = re.compile(r"^[0-9a-f]{64}$")
#: Above this size, hashing uses every core (BLAKE3 scales across threads).
_PARALLEL_HASH = 1 << 20
_CHUNK = 64 << 20

Data = bytes | bytearray | memoryview | PickleBuffer


def digest(data: Data) -> str:
    view = memoryview(data).cast("B") if not isinstance(data, bytes) else data
    threads = blake3.blake3.AUTO if len(view) >= _PARALLEL_HASH else 1
    return blake3.blake3(view, max_threads=threads).hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlobStore:
    """Immutable blobs addressed by their BLAKE3 digest."""

    def __init__(self, root: str | os.PathLike[str], durable: bool = True) -> None:
        self.root = Path(root)
        self.blobs = self.root / "blobs"
        self.tmp = self.root / "tmp"
        self.durable = durable
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)

    def path(self, address: str) -> Path:
        """Where a blob lives; refuses anything but a well-formed address."""
        if not isinstance(address, str) or not _ADDRESS.match(address):
            raise StoreError(f"{address!r} is not a blob address (64 lowercase hex digits).")
        return self.blobs / address[:2] / address

    def has(self, address: str) -> bool:
        return self.path(address).exists()

    def size(self, address: str) -> int:
        return self.path(address).stat().st_size

    def put(self, data: Data) -> str:
        """Store bytes (never copied: memoryviews are written as they are); return the address."""
        view = memoryview(data).cast("B") if not isinstance(data, bytes) else memoryview(data)
        address = digest(view)
        target = self.path(address)
        if target.exists():
            return address
        target.parent.mkdir(exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=self.tmp, prefix=address[:8] + ".")
        try:
            try:
                with os.fdopen(fd, "wb", buffering=0) as fh:
                    offset = 0
                    while offset < len(view):
                        offset += fh.write(view[offset:offset + _CHUNK])
                    if self.durable:
                        os.fsync(fh.fileno())
                os.chmod(tmp_name, 0o444)
                os.replace(tmp_name, target)
                if self.durable:
                    _fsync_dir(target.parent)
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    raise StoreFullError(
                        f"The disk holding {self.root} is full: could not store {len(view)} bytes. "
                        "Free some space and re-run (finished tasks are kept)."
                    ) from exc
                raise StoreError(f"Could not write a blob to {self.root}: {exc}") from exc
        finally:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)
        return address

    def _corrupt(self, address: str, actual: str) -> CorruptBlobError:
        return CorruptBlobError(
            f"Blob {address} in {self.blobs} is corrupted (its content hashes to {actual[:16]}...); "
            "the artifact cannot be trusted. Re-run the step that produced it."
        )

    def get(self, address: str) -> bytes:
        """The blob's bytes, verified against the address."""
        try:
            data = self.path(address).read_bytes()
        except FileNotFoundError:
            raise StoreError(f"Blob {address} is missing from {self.blobs}.") from None
        actual = digest(data)
        if actual != address:
            raise self._corrupt(address, actual)
        return data

    def map(self, address: str) -> mmap.mmap | bytes:
        """A copy-on-write memory map of the blob, verified against the address.

        Verification reads the pages once through the page cache; the mapping itself
        stays lazy, so a large array costs no private memory until written to.
        """
        path = self.path(address)
        try:
            fh = open(path, "rb")
        except FileNotFoundError:
            raise StoreError(f"Blob {address} is missing from {self.blobs}.") from None
        with fh:
            size = os.fstat(fh.fileno()).st_size
            if size == 0:
                if digest(b"") != address:
                    raise self._corrupt(address, digest(b""))
                return b""
            mapped = mmap.mmap(fh.fileno(), size, access=mmap.ACCESS_COPY)
        actual = digest(memoryview(mapped))
        if actual != address:
            mapped.close()
            raise self._corrupt(address, actual)
        return mapped
