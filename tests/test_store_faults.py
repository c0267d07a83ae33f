"""The store under attack (issue 12): damaged blobs, killed writers, read-only and full
disks, a deleted write-ahead log, file permissions, tags and long logs.

Damage is done to real files; read-only and full file systems are real mounts made
in a private mount namespace (``unshare -m``), since as root ``chmod`` would not stop
a write.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import ROOT, run
from flowcell.client import Run
from flowcell.errors import CorruptBlobError, InvalidNameError, StoreError, StoreFullError
from flowcell.store import blobs as blobs_mod
from flowcell.store.blobs import BlobStore
from flowcell.store.metadata import LOG_INLINE_MAX, MetadataStore
from flowcell.store.serialize import dump_artifact, load_artifact

THREE_STEPS = """
%%step start
self.b = 'payload ' * 500
self.next(self.mid)
%%step mid
self.c = len(self.b)
self.next(self.end)
%%step end
self.d = self.c + 1
"""


def damage(path: Path, truncate: bool = False) -> None:
    """Flip one byte in the middle of a blob (or cut its last byte off)."""
    os.chmod(path, 0o600)
    data = bytearray(path.read_bytes())
    if truncate:
        data = data[:-1]
    else:
        data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def blob_file(root: Path, address: str) -> Path:
    return root / "blobs" / address[:2] / address


# -- 1. a damaged blob is repaired; a task is never committed on damaged outputs ----------


@pytest.mark.parametrize("truncate", [False, True], ids=["flipped-byte", "truncated"])
def test_put_replaces_a_damaged_blob(tmp_path: Path, truncate: bool) -> None:
    store = BlobStore(tmp_path)
    address = store.put(b"precious bytes" * 100)
    damage(blob_file(tmp_path, address), truncate)
    fresh = BlobStore(tmp_path)  # another process: it never verified the file itself
    with pytest.raises(CorruptBlobError):
        fresh.get(address)
    assert fresh.put(b"precious bytes" * 100) == address
    assert fresh.get(address) == b"precious bytes" * 100
    assert stat.S_IMODE(blob_file(tmp_path, address).stat().st_mode) == 0o400


def test_put_rehashes_a_large_blob_only_when_its_file_changed(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    store = BlobStore(tmp_path, large_blob=1 << 16)
    arr = np.arange(100_000, dtype=np.float64)
    ref = dump_artifact(store, "arr", arr)
    hashed: list[Path] = []
    real = BlobStore._hash_file

    def counting(self: BlobStore, path: str | Path) -> str:
        hashed.append(Path(path))
        return real(self, path)

    monkeypatch.setattr(BlobStore, "_hash_file", counting)
    other = BlobStore(tmp_path, large_blob=1 << 16)
    dump_artifact(other, "arr", arr)
    assert blob_file(tmp_path, ref.buffers[0]) not in hashed, "verified since written: not re-read"
    damage(blob_file(tmp_path, ref.buffers[0]))
    third = BlobStore(tmp_path, large_blob=1 << 16)
    assert dump_artifact(third, "arr", arr) == ref
    assert blob_file(tmp_path, ref.buffers[0]) in hashed, "its file changed: hashed, found bad, replaced"
    assert np.array_equal(load_artifact(BlobStore(tmp_path, verify_always=True), ref), arr)


def test_a_rerun_repairs_a_corrupted_artifact(runtime: Any, private_store: Path) -> None:
    _, first, _ = run(runtime, THREE_STEPS, name="QuickFlow")
    sha = first["start"].task["b"].sha
    damage(blob_file(private_store, sha))
    result, second, _ = run(runtime, THREE_STEPS, name="QuickFlow")
    assert result.status == "completed", second["mid"].task.exception
    assert second["end"].task.data.d == len("payload " * 500) + 1
    assert first["start"].task.data.b == "payload " * 500, "the earlier run reads again too"


def test_a_task_is_not_committed_when_its_outputs_do_not_read_back(runtime: Any, private_store: Path) -> None:
    """``mid`` passes ``b`` on untouched; ``b``'s file was cut short, so ``mid`` fails."""
    from flowcell.runtime.runs import start_resume

    from conftest import make_flow

    flow_text = THREE_STEPS.replace("self.c = len(self.b)", "self.c = 1")
    _, first, _ = run(runtime, flow_text, name="QuickFlow")
    damage(blob_file(private_store, first["start"].task["b"].sha), truncate=True)
    result = start_resume(runtime, make_flow(flow_text, "QuickFlow"), "mid")
    assert result.status == "failed"
    mid = Run(result.pathspec, _check_namespace=False)["mid"].task
    assert not mid.successful and list(mid.artifacts) == []
    assert mid.exception is not None
    text = str(mid.exception)
    assert f"Artifact 'b' of {first.pathspec}/start/" in text and "is corrupted" in text


# -- 2. messages name the artifact and its task ------------------------------------


def test_corruption_is_one_sentence_from_the_client_and_from_a_step(runtime: Any, private_store: Path) -> None:
    _, first, _ = run(runtime, THREE_STEPS, name="QuickFlow")
    task = first["start"].task
    damage(blob_file(private_store, task["b"].sha))
    expected = f"Artifact 'b' of {task.pathspec} is corrupted (blob {task['b'].sha[:12]}…; its run can be re-run to repair it)."
    with pytest.raises(CorruptBlobError) as caught:
        task.data.b
    assert str(caught.value) == expected
    assert caught.value._render_traceback_() == [f"CorruptBlobError: {expected}"]

    from flowcell.runtime.runs import start_resume

    from conftest import make_flow

    result = start_resume(runtime, make_flow(THREE_STEPS, "QuickFlow"), "mid")
    failed = result.failures[0].outcome
    assert failed is not None and failed.error is not None
    assert failed.error.evalue == expected
    shown = "\n".join(failed.error.traceback)
    assert "self.c = len(self.b)" in shown, "the user's own line is shown"
    assert "flowcell" not in shown.replace("QuickFlow", ""), "no internal frames"


def test_unpicklable_artifact_has_no_cloudpickle_frames(runtime: Any) -> None:
    result, r, _ = run(runtime, "%%step start\nimport threading\nself.lock = threading.Lock()\n"
                                "self.next(self.end)\n%%step end\npass")
    assert result.status == "failed"
    error = result.failures[0].outcome.error
    assert "Artifact 'lock' of step 'start' cannot be pickled" in error.evalue
    assert "cloudpickle" not in "\n".join(error.traceback) + error.text


# -- 7. temporary files of killed writers ---------------------------------------------


WRITER = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[2])
    from flowcell.store.blobs import BlobStore
    import flowcell.store.blobs as b
    b._CHUNK = 1 << 20   # many small writes, so the file exists long before it is done
    store = BlobStore(sys.argv[1])
    store.put(bytes(256 << 20))
""")


def test_a_killed_writers_temp_file_is_removed_on_the_next_start(tmp_path: Path) -> None:
    root = tmp_path / "store"
    BlobStore(root)
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(root), str(ROOT)])
    try:
        while not any(p.stat().st_size > 0 for p in (root / "tmp").iterdir()):
            assert writer.poll() is None, "the writer ended before it was killed"
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    left = list((root / "tmp").iterdir())
    assert left, "killed mid-write: its temporary file is still there"
    alive = root / "tmp" / blobs_mod.temp_name("abcdef12")  # this live process's: kept
    alive.write_bytes(b"in progress")
    BlobStore(root)
    assert list((root / "tmp").iterdir()) == [alive]


# -- 8. private by default, shareable with a group ---------------------------------


def _modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode) for p in [root, *root.rglob("*")]}


def test_the_store_is_created_private(runtime: Any, private_store: Path) -> None:
    old = os.umask(0o022)
    try:
        run(runtime, "%%step start\nprint('secret')\nself.x = 'secret'\nself.next(self.end)\n%%step end\npass")
    finally:
        os.umask(old)
    modes = _modes(private_store)
    assert private_store.joinpath("metadata.sqlite").exists() and any("blobs/" in p for p in modes)
    for path, mode in modes.items():
        assert mode & 0o077 == 0, f"{path} is {oct(mode)}: readable by others"
        if (private_store / path).is_dir() or path == ".":
            assert mode == 0o700, path


def test_a_store_given_to_a_group_stays_shared(tmp_path: Path) -> None:
    root = tmp_path / "shared"
    root.mkdir()
    os.chmod(root, 0o2770)
    old = os.umask(0o077)  # even a private umask does not hide new files from the group
    try:
        meta = MetadataStore(root)
        meta.new_run("F", "u", [], ["user:u"], {})
        dump_artifact(BlobStore(root), "x", "shared value")
        meta.close()
    finally:
        os.umask(old)
    for path, mode in _modes(root).items():
        assert mode & 0o070 >= 0o040, f"{path} is {oct(mode)}: the group cannot read it"
        assert mode & 0o007 == 0, f"{path} is {oct(mode)}: others can read it"


# -- 9. tags, long logs, one sync per task ---------------------------------------------


@pytest.mark.parametrize("tag", ["two\nlines", "nul\x00byte", "bell\x07", "sep\u2028arator"])
def test_tags_with_control_characters_are_refused(runtime: Any, tag: str) -> None:
    _, r, _ = run(runtime, "%%step start\nself.next(self.end)\n%%step end\npass")
    with pytest.raises(InvalidNameError, match="control character"):
        r.add_tag(tag)
    with pytest.raises(InvalidNameError, match="control character"):
        run(runtime, "%%step start\nself.next(self.end)\n%%step end\npass", tags=[tag])
    assert tag not in Run(r.pathspec, _check_namespace=False).tags


def test_long_stdout_is_stored_as_a_blob(runtime: Any, private_store: Path) -> None:
    _, r, _ = run(runtime, "%%step start\nprint('x' * 300_000)\nprint('short', file=__import__('sys').stderr)\n"
                           "self.next(self.end)\n%%step end\npass")
    task = r["start"].task
    # (flowcell may append its own warnings to a task's stderr, e.g. a kernel replaced under load)
    assert task.stdout == "x" * 300_000 + "\n" and task.stderr.startswith("short\n")
    conn = sqlite3.connect(private_store / "metadata.sqlite")
    stdout, blob, stderr_blob = conn.execute(
        "SELECT stdout, stdout_blob, stderr_blob FROM tasks WHERE step = 'start'").fetchone()
    assert stdout == "" and blob and stderr_blob is None
    assert len(stdout) <= LOG_INLINE_MAX and blob_file(private_store, blob).exists()


def test_a_tasks_blobs_are_synced_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append("fsync")
        real_fsync(fd)

    def syncfs(path: Path) -> bool:
        synced.append("syncfs")
        return True

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(blobs_mod, "_sync_file_system", syncfs)
    store = BlobStore(tmp_path)
    with store.batch():
        refs = [dump_artifact(store, f"a{i}", f"value {i}") for i in range(500)]
    assert synced == ["syncfs"]
    other = BlobStore(tmp_path)
    assert [load_artifact(other, ref) for ref in refs[:3]] == ["value 0", "value 1", "value 2"]


# -- 6. a read-only store, a full disk, a deleted write-ahead log ---------------------


def _can_mount() -> bool:
    return shutil.which("unshare") is not None and subprocess.run(
        ["unshare", "-m", "true"], capture_output=True).returncode == 0


needs_mount = pytest.mark.skipif(not _can_mount(), reason="needs mount namespaces (unshare -m)")

READER = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[2])
    from flowcell.client import Flow, namespace
    from flowcell.errors import FlowcellError
    namespace(None)
    run = Flow("QuickFlow").latest_run
    print(run.pathspec, run["end"].task.data.d, run["start"].task.stdout.strip())
    try:
        run.add_tag("archived")
    except FlowcellError as exc:
        print(type(exc).__name__, exc)
""")


def _store_with_a_run(runtime: Any, private_store: Path) -> None:
    run(runtime, THREE_STEPS.replace("self.b = ", "print('hello')\nself.b = "), name="QuickFlow")


def _in_namespace(script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=120)


@needs_mount
@pytest.mark.parametrize("left_open", [False, True], ids=["closed", "killed-with-wal"])
def test_a_read_only_store_is_readable(runtime: Any, private_store: Path, left_open: bool) -> None:
    _store_with_a_run(runtime, private_store)
    if left_open:
        # A writer killed with the database open leaves its -wal and -shm behind.
        subprocess.run([sys.executable, "-c", "import os, sys; sys.path.insert(0, sys.argv[2]);"
                        "from flowcell.store.metadata import MetadataStore as M;"
                        "m = M(sys.argv[1]); m.new_run('Other', 'u', [], [], {}); os._exit(0)",
                        str(private_store), str(ROOT)], check=True)
        assert (private_store / "metadata.sqlite-wal").exists()
    root = str(private_store)
    out = _in_namespace(f'mount --bind -o ro "{root}" "{root}" && "{sys.executable}" -c \'{READER}\' x "{ROOT}"',
                        {"FLOWCELL_ROOT": root})
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == f"QuickFlow/1 {len('payload ' * 500) + 1} hello"
    assert lines[1] == f"StoreError The store {root} is read-only for this process, so nothing can be " \
                       "written to it; it can still be read."


@needs_mount
def test_a_full_disk_at_open_says_the_store_is_full(runtime: Any, private_store: Path, tmp_path: Path) -> None:
    _store_with_a_run(runtime, private_store)
    disk = tmp_path / "disk"
    disk.mkdir()
    store = disk / "store"
    script = (f'mount -t tmpfs -o size=2m tmpfs "{disk}" && cp -a "{private_store}" "{store}" && '
              f'(dd if=/dev/zero of="{disk}/filler" bs=64k 2>/dev/null; true) && '
              f'"{sys.executable}" -c \'{READER}\' x "{ROOT}"')
    out = _in_namespace(script, {"FLOWCELL_ROOT": str(store)})
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("QuickFlow/1 "), "reading works on a full disk"
    assert lines[1] == f"StoreFullError The disk holding the store {store} is full: free some space and " \
                       "try again (finished runs are kept)."


def test_a_deleted_write_ahead_log_is_one_sentence(tmp_path: Path) -> None:
    holder = MetadataStore(tmp_path)
    holder.new_run("F", "u", [], ["user:u"], {})
    os.unlink(tmp_path / "metadata.sqlite-wal")
    holder.new_run("F", "u", [], ["user:u"], {})  # written to the log it still holds
    with pytest.raises(StoreError, match=r"write-ahead log metadata.sqlite-wal was deleted .* stop the other"):
        MetadataStore(tmp_path).runs("F")
    holder.close()  # the holder checkpoints its log on close: nothing was lost
    assert [r.run_number for r in MetadataStore(tmp_path).runs("F")] == [2, 1]


def test_a_store_root_that_is_a_file_is_one_sentence(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a store")
    for opener in (MetadataStore, BlobStore):
        with pytest.raises(StoreError, match="is a file, not a folder"):
            opener(tmp_path / "file")



def test_corruption_from_a_spin_is_one_sentence_with_the_users_lines_only(tmp_path: Path, private_store: Path) -> None:
    import nbformat

    from flowcell.errors import StepFailed
    from flowcell.runner import Runner

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in ["%%flow QuickFlow", *THREE_STEPS.strip().split("\n%%")]]
    for cell in nb.cells[2:]:
        cell.source = "%%" + cell.source
    nbformat.write(nb, str(tmp_path / "quick.ipynb"))
    with Runner(tmp_path / "quick.ipynb").run() as running:
        task = running.run["start"].task
    damage(blob_file(private_store, task["b"].sha))
    with Runner(tmp_path / "quick.ipynb").spin("mid") as spin:
        assert not spin.successful
        error = spin.outcome.error
    assert error.evalue == (f"Artifact 'b' of {task.pathspec} is corrupted (blob {task['b'].sha[:12]}…; "
                            "its run can be re-run to repair it).")
    shown = "\n".join(StepFailed.of(spin.pathspec, error)._render_traceback_())
    assert "self.c = len(self.b)" in shown
    assert "flowcell/" not in shown and "site-packages" not in shown and len(shown.splitlines()) < 15
