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
#: Blobs at least this large are re-hashed only when their file changed since the
#: last verification (see ``BlobStore.map``).
LARGE_BLOB = 64 << 20

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

    def __init__(
        self,
        root: str | os.PathLike[str],
        durable: bool = True,
        verify_always: bool | None = None,
        large_blob: int = LARGE_BLOB,
    ) -> None:
        self.root = Path(root)
        self.blobs = self.root / "blobs"
        self.tmp = self.root / "tmp"
        self.verified = self.root / "verified"
        self.durable = durable
        if verify_always is None:
            verify_always = os.environ.get("FLOWCELL_VERIFY", "").lower() == "always"
        self.verify_always = verify_always
        self.large_blob = large_blob
        for folder in (self.blobs, self.tmp, self.verified):
            folder.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def _fingerprint(st: os.stat_result) -> str:
        return f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"

    def _mark_verified(self, address: str, st: os.stat_result) -> None:
        """Remember that this exact file (inode, size, mtime, ctime) hashed correctly."""
        if st.st_size < self.large_blob:
            return
        marker = self.verified / address
        tmp = self.tmp / f"{address}.verified.{os.getpid()}"
        tmp.write_text(self._fingerprint(st))
        os.replace(tmp, marker)

    def _known_good(self, address: str, st: os.stat_result) -> bool:
        if self.verify_always or st.st_size < self.large_blob:
            return False
        try:
            return (self.verified / address).read_text() == self._fingerprint(st)
        except OSError:
            return False

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
                # The bytes were hashed from memory just now and are durable.
                self._mark_verified(address, target.stat())
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

        The mapping is lazy: a large array costs no private memory until written
        to.  Hashing a blob reads every page, so a large blob (``large_blob`` bytes
        or more) is hashed only if its file changed since it was last verified
        (same inode, size, mtime and ctime, as git's index does); set
        ``FLOWCELL_VERIFY=always`` to hash on every read.
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
            st = os.fstat(fh.fileno())
            mapped = mmap.mmap(fh.fileno(), size, access=mmap.ACCESS_COPY)
        if self._known_good(address, st):
            return mapped
        actual = digest(memoryview(mapped))
        if actual != address:
            mapped.close()
            raise self._corrupt(address, actual)
        self._mark_verified(address, st)
        return mapped
