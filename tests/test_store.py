"""The blob store and the metadata store on real files."""

from __future__ import annotations

import errno
import multiprocessing
import os
from pathlib import Path

import numpy as np
import pytest

from flowcell.errors import CorruptBlobError, StoreError, StoreFullError, UnpicklableArtifactError
from flowcell.store.blobs import BlobStore
from flowcell.store.metadata import MetadataStore
from flowcell.store.serialize import ArtifactRef, dump_artifact, load_artifact


def test_round_trip_and_dedup(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    ref1 = dump_artifact(store, "x", {"a": [1, 2, 3]})
    ref2 = dump_artifact(store, "y", {"a": [1, 2, 3]})
    assert ref1 == ref2
    assert load_artifact(store, ArtifactRef.from_json(ref1.to_json())) == {"a": [1, 2, 3]}
    assert len(list((tmp_path / "blobs").rglob("*"))) == 2  # one folder, one blob


def test_large_array_is_out_of_band_mapped_and_writeable(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    arr = np.arange(1_000_000, dtype=np.float64)
    ref = dump_artifact(store, "arr", arr)
    assert len(ref.buffers) == 1
    raw = store.path(ref.buffers[0])
    assert raw.stat().st_size == arr.nbytes, "the buffer is stored raw, not compressed"
    loaded = load_artifact(store, ref)
    assert np.array_equal(loaded, arr)
    loaded[0] = -1.0  # copy-on-write: the blob is untouched
    assert load_artifact(store, ref)[0] == 0.0
    assert dump_artifact(store, "again", arr) == ref


def test_corruption_is_detected_for_small_and_large_blobs(tmp_path: Path) -> None:
    store = BlobStore(tmp_path, large_blob=1 << 16)
    small = dump_artifact(store, "s", "x" * 1000)
    large = dump_artifact(store, "l", np.ones(100_000))
    load_artifact(store, large)  # verified once, remembered
    for address in (small.address, large.buffers[0]):
        path = store.path(address)
        os.chmod(path, 0o644)
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))
    with pytest.raises(CorruptBlobError, match=small.address[:12]):
        load_artifact(store, small)
    with pytest.raises(CorruptBlobError, match=large.buffers[0][:12]):
        load_artifact(store, large)


def test_verify_always_rehashes_large_blobs(tmp_path: Path) -> None:
    store = BlobStore(tmp_path, large_blob=1 << 16, verify_always=True)
    ref = dump_artifact(store, "l", np.ones(100_000))
    assert not store._known_good(ref.buffers[0], store.path(ref.buffers[0]).stat())


@pytest.mark.parametrize("address", ["../../etc/passwd", "AB" * 32, "ab" * 31, "", "g" * 64])
def test_bad_addresses_are_refused(tmp_path: Path, address: str) -> None:
    with pytest.raises(StoreError):
        BlobStore(tmp_path).path(address)


def test_unpicklable_artifact_is_named(tmp_path: Path) -> None:
    import threading

    with pytest.raises(UnpicklableArtifactError, match="'lock' of step 'train'"):
        dump_artifact(BlobStore(tmp_path), "lock", threading.Lock(), step="train")


def test_full_disk_is_a_clear_error_and_leaves_no_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = BlobStore(tmp_path)

    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(StoreFullError, match="full"):
        store.put(b"some bytes")
    assert list((tmp_path / "tmp").iterdir()) == []
    assert list((tmp_path / "blobs").rglob("*")) == [] or all(p.is_dir() for p in (tmp_path / "blobs").rglob("*"))


def _put_many(root: str, seed: int) -> list[str]:
    store = BlobStore(root)
    return [store.put(f"shared-{i}".encode()) for i in range(20)] + [store.put(f"own-{seed}".encode())]


def test_concurrent_writers(tmp_path: Path) -> None:
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        results = pool.starmap(_put_many, [(str(tmp_path), i) for i in range(4)])
    store = BlobStore(tmp_path)
    for addresses in results:
        for address in addresses:
            store.get(address)
    assert results[0][:20] == results[1][:20]


def test_metadata_run_numbers_and_tags(tmp_path: Path) -> None:
    meta = MetadataStore(tmp_path)
    a = meta.new_run("F", "u", ["t1"], ["user:u"], {})
    b = meta.new_run("F", "u", ["t1", "t2"], ["user:u"], {})
    c = meta.new_run("G", "u", [], ["user:u"], {})
    assert (a, b, c) == (1, 2, 1)
    assert [r.run_number for r in meta.runs("F", ("t1",))] == [2, 1]
    assert [r.run_number for r in meta.runs("F", ("t1", "t2"))] == [2]
    meta.set_tags("F", 1, add=["new"], remove=["t1", "user:u"])
    run = meta.get_run("F", 1)
    assert run is not None and run.tags == ["new"] and run.system_tags == ["user:u"]
    conn_mode = meta._conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert conn_mode == "wal"
