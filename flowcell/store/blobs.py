"""Content-addressed blob storage on the file system.

A blob's address is the BLAKE3 hex digest of its bytes; it lives at
``ROOT/blobs/ab/<address>``.  Writes go to a temporary file under ``ROOT/tmp``
and are renamed into place, so a crash never leaves a partial blob under a valid
address; they are made durable before any task that refers to them is committed
(one file-system sync per task inside ``batch()``, else one fsync per blob).
Reads verify the digest, and so does a write that finds its blob already there:
a damaged blob is replaced by the next write of the same content.
"""

from __future__ import annotations

import errno
import mmap
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from pickle import PickleBuffer
from typing import Any

import blake3

from ..errors import CorruptBlobError, StoreError, StoreFullError
from .files import Modes, clean_stale_temp_files, make_folder, open_root, temp_name

_ADDRESS = re.compile(r"^[0-9a-f]{64}$")
#: Above this size, hashing uses every core (BLAKE3 scales across threads).
_PARALLEL_HASH = 1 << 20
_CHUNK = 64 << 20
#: Blobs at least this large are re-hashed only when their file changed since the
#: last verification (see ``BlobStore.map``).
LARGE_BLOB = 64 << 20
#: A batch of more blobs than this is made durable with one sync of the file system.
_FSYNC_EACH_MAX = 8

Data = bytes | bytearray | memoryview | PickleBuffer


def digest(data: Data) -> str:
    view = memoryview(data).cast("B") if not isinstance(data, bytes) else data
    threads = blake3.blake3.AUTO if len(view) >= _PARALLEL_HASH else 1
    return blake3.blake3(view, max_threads=threads).hexdigest()


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_syncfs: Any = None


def _sync_file_system(path: Path) -> bool:
    """``syncfs(2)`` on the file system holding ``path``; False where it is unavailable."""
    global _syncfs
    if _syncfs is None:
        try:
            import ctypes  # only when a batch is synced: keeps ``import flowcell`` cheap

            _syncfs = ctypes.CDLL(None, use_errno=True).syncfs
        except (OSError, AttributeError):
            _syncfs = False
    if _syncfs is False:
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        if _syncfs(fd) != 0:
            import ctypes

            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
    finally:
        os.close(fd)
    return True


def _fingerprint(st: os.stat_result) -> str:
    return f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"


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
        #: Files this process hashed (or wrote) and found good: address -> fingerprint.
        self._good: dict[str, str] = {}
        #: Blobs written inside ``batch()`` and not yet synced: address -> path.
        self._pending: dict[str, str] | None = None
        #: Blobs written or verified since the current (or last) batch began.
        self._fresh: set[str] = set()
        #: Fan-out folders known to exist (saves a mkdir per blob).
        self._folders: set[str] = set()
        self._blobs_dir = str(self.blobs)
        self._tmp_prefix = str(self.tmp) + os.sep
        self.modes, self.writable = open_root(self.root)
        if self.writable:
            for folder in (self.blobs, self.tmp, self.verified):
                make_folder(folder, self.modes)
            clean_stale_temp_files(self.tmp)

    # -- verification memory -----------------------------------------------------------

    def _remember(self, address: str, st: os.stat_result) -> None:
        """Remember that this exact file (inode, size, mtime, ctime) hashed correctly.

        In memory for this process; on disk (``verified/``) for large blobs, so
        other processes skip re-reading them too.
        """
        fingerprint = _fingerprint(st)
        self._good[address] = fingerprint
        if st.st_size < self.large_blob or not self.writable:
            return
        tmp = self.tmp / temp_name("verified")
        try:
            fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, self.modes.file)
            with os.fdopen(fd, "w") as fh:
                fh.write(fingerprint)
            os.replace(tmp, self.verified / address)
        except OSError:
            # Only a cache: without it the blob is hashed again on the next read.
            if tmp.exists():
                tmp.unlink()

    def _known_good(self, address: str, st: os.stat_result) -> bool:
        if self.verify_always:
            return False
        fingerprint = _fingerprint(st)
        if self._good.get(address) == fingerprint:
            return True
        if st.st_size < self.large_blob:
            return False
        try:
            return (self.verified / address).read_text() == fingerprint
        except OSError:
            return False

    # -- addresses -----------------------------------------------------------------

    def path(self, address: str) -> Path:
        """Where a blob lives; refuses anything but a well-formed address."""
        if not isinstance(address, str) or not _ADDRESS.match(address):
            raise StoreError(f"{address!r} is not a blob address (64 lowercase hex digits).")
        return self.blobs / address[:2] / address

    def has(self, address: str) -> bool:
        return self.path(address).exists()

    def size(self, address: str) -> int:
        return self.path(address).stat().st_size

    # -- writing -------------------------------------------------------------------

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Blobs put inside are made durable together on a clean exit: one sync of the
        file system instead of one fsync per blob (a task's outputs are one batch)."""
        if self._pending is not None:
            yield  # nested: the outer batch syncs
            return
        self._pending = {}
        self._fresh = set()
        try:
            yield
            self.sync()
        finally:
            self._pending = None

    def sync(self) -> None:
        """Make every blob written in the current batch durable; large ones are then
        remembered as verified on disk (their bytes were hashed from memory)."""
        pending = self._pending or {}
        if not pending:
            return
        try:
            if self.durable and (len(pending) <= _FSYNC_EACH_MAX or not _sync_file_system(self.root)):
                for path in pending.values():
                    _fsync_path(Path(path))
                for folder in {os.path.dirname(path) for path in pending.values()}:
                    _fsync_path(Path(folder))
            for address, path in pending.items():
                st = os.stat(path)
                if st.st_size >= self.large_blob:
                    self._remember(address, st)
        except OSError as exc:
            raise self._write_error(exc, 0) from exc
        self._fresh.update(pending)
        pending.clear()

    def fresh(self, address: str) -> bool:
        """Whether this process wrote or verified the blob since the current (or last) batch began."""
        return address in self._fresh

    def put(self, data: Data) -> str:
        """Store bytes (never copied: memoryviews are written as they are); return the address.

        If the blob is already there, its file is checked first (its size always,
        its hash unless it was verified since it last changed) and replaced when
        it does not hold these bytes: a damaged blob is repaired by the next write.
        """
        view = memoryview(data).cast("B") if not isinstance(data, bytes) else memoryview(data)
        address = digest(view)
        # Plain strings, not Path objects: a task may put tens of thousands of blobs.
        folder = f"{self._blobs_dir}{os.sep}{address[:2]}"
        target = f"{folder}{os.sep}{address}"
        if self._intact(address, target, len(view)):
            return address
        self._write(address, folder, target, view)
        return address

    def _intact(self, address: str, target: str, size: int) -> bool:
        if self._pending and address in self._pending:
            return True
        try:
            st = os.stat(target)
        except FileNotFoundError:
            return False
        if st.st_size != size:
            return False
        if not self._known_good(address, st):
            try:
                if self._hash_file(target) != address:
                    return False
            except OSError:
                return False
            self._remember(address, st)
        self._fresh.add(address)
        return True

    def _hash_file(self, path: str | Path) -> str:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size == 0:
                return digest(b"")
            with mmap.mmap(fh.fileno(), size, access=mmap.ACCESS_READ) as mapped:
                return digest(memoryview(mapped))

    def _write(self, address: str, folder: str, target: str, view: memoryview) -> None:
        if not self.writable:
            raise self._write_error(OSError(errno.EROFS, "read-only"), len(view))
        batched = self._pending is not None
        tmp = self._tmp_prefix + temp_name(address[:8])
        placed = False
        try:
            if folder not in self._folders:
                make_folder(Path(folder), self.modes)
                self._folders.add(folder)
            while True:
                try:  # created read-only: this descriptor may write, nobody else ever can
                    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, self.modes.blob)
                    break
                except FileExistsError:  # left by a dead process that had our pid
                    tmp = self._tmp_prefix + temp_name(address[:8])
            try:
                if self.modes.shared:
                    os.fchmod(fd, self.modes.blob)  # past the umask
                offset = 0
                while offset < len(view):
                    offset += os.write(fd, view[offset:offset + _CHUNK])
                if self.durable and not batched:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, target)
            placed = True
            if batched:
                assert self._pending is not None
                self._pending[address] = target
                return
            if self.durable:
                _fsync_path(Path(folder))
            # The bytes were hashed from memory just now and are durable.
            self._fresh.add(address)
            self._remember(address, os.stat(target))
        except OSError as exc:
            raise self._write_error(exc, len(view)) from exc
        finally:
            if not placed and os.path.lexists(tmp):
                os.unlink(tmp)

    def _write_error(self, exc: OSError, size: int) -> StoreError:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return StoreFullError(
                f"The disk holding {self.root} is full: could not store {size} bytes. "
                "Free some space and re-run (finished tasks are kept)."
            )
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            return StoreError(f"The store {self.root} is read-only for this process, so nothing can be "
                              "written to it; it can still be read.")
        return StoreError(f"Could not write a blob to {self.root}: {exc.strerror or exc}.")

    # -- reading -------------------------------------------------------------------

    def corrupt(self, address: str, actual: str | None = None) -> CorruptBlobError:
        found = f"its content hashes to {actual[:16]}..." if actual else "its file has the wrong size"
        return CorruptBlobError(
            f"Blob {address} in {self.blobs} is corrupted ({found}); the artifact cannot be trusted. "
            "Re-run the step that produced it.",
            address=address,
        )

    def _missing(self, address: str) -> StoreError:
        return CorruptBlobError(f"Blob {address} is missing from {self.blobs}.", address=address, missing=True)

    def get(self, address: str) -> bytes:
        """The blob's bytes, verified against the address."""
        try:
            data = self.path(address).read_bytes()
        except FileNotFoundError:
            raise self._missing(address) from None
        actual = digest(data)
        if actual != address:
            raise self.corrupt(address, actual)
        return data

    def file_size(self, address: str) -> int:
        """The size of the blob's file (a ``stat``: nothing is read)."""
        try:
            return self.path(address).stat().st_size
        except FileNotFoundError:
            raise self._missing(address) from None

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
            raise self._missing(address) from None
        with fh:
            st = os.fstat(fh.fileno())
            if st.st_size == 0:
                if digest(b"") != address:
                    raise self.corrupt(address, digest(b""))
                return b""
            mapped = mmap.mmap(fh.fileno(), st.st_size, access=mmap.ACCESS_COPY)
        if self._known_good(address, st):
            return mapped
        actual = digest(memoryview(mapped))
        if actual != address:
            mapped.close()
            raise self.corrupt(address, actual)
        self._remember(address, st)
        return mapped
