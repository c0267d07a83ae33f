"""Every failure of the ``flowcell`` command is one sentence and exit code 2 (issue 12.6).

The commands run as a user runs them, in a subprocess, against real notebooks and a
real store; read-only and full disks are real mounts in a private mount namespace.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from flowcell.client import Run
from flowcell.errors import NotFoundError
from flowcell.store.metadata import MetadataStore

QUICK = [
    "%%flow QuickFlow",
    "%%step start\nself.a = 'x' * 1000\nself.next(self.mid)",
    "%%step mid\nself.b = self.a * 2\nself.next(self.end)",
    "%%step end\nprint(len(self.b))",
]


def notebook(path: Path, cells: list[str]) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    nbformat.write(nb, str(path))
    return path


def flowcell(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flowcell.cli", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)


def assert_one_sentence(out: subprocess.CompletedProcess[str], *words: str) -> None:
    assert out.returncode == 2, (out.returncode, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("flowcell: ") and lines[0].endswith("."), lines[0]
    assert "\x1b" not in out.stderr and "Traceback" not in out.stderr
    for word in words:
        assert word in lines[0], lines[0]


@pytest.fixture
def quick(tmp_path: Path) -> Path:
    return notebook(tmp_path / "quick.ipynb", QUICK)


def _recorded_run(root: Path) -> None:
    meta = MetadataStore(root)
    meta.new_run("QuickFlow", "tester", [], ["user:tester"], {})
    meta.close()


def test_bad_input_to_the_cli_is_one_sentence(quick: Path, tmp_path: Path, private_store: Path) -> None:
    _recorded_run(private_store)
    assert_one_sentence(flowcell("tag", "add", "--run-id", "QuickFlow/99999999999999999999999", "x", cwd=tmp_path),
                        "Run QuickFlow/99999999999999999999999 does not exist")
    assert_one_sentence(flowcell("export", str(quick), "-o", "/missing/x.py", cwd=tmp_path),
                        "/missing/x.py", "does not exist")
    assert_one_sentence(flowcell("tag", "add", "--run-id", "QuickFlow/1", "two\nlines", cwd=tmp_path),
                        "control character")
    (tmp_path / "am.py").write_text("raise SystemExit(3)\n")
    assert_one_sentence(flowcell("spin", str(quick), "mid", "--artifacts-module", "am.py", cwd=tmp_path),
                        "am.py", "sys.exit(3)")
    (tmp_path / "a-file").write_text("not a store")
    for command in (["run", str(quick)], ["tag", "list", "--run-id", "QuickFlow/1"]):
        assert_one_sentence(flowcell(*command, cwd=tmp_path, env={"FLOWCELL_ROOT": str(tmp_path / "a-file")}),
                            "is a file, not a folder")


def test_a_missing_run_id_file_folder_is_refused_before_the_run_starts(quick: Path, tmp_path: Path,
                                                                       private_store: Path) -> None:
    _recorded_run(private_store)
    assert_one_sentence(flowcell("run", str(quick), "--run-id-file", "/missing/f", cwd=tmp_path),
                        "/missing/f", "does not exist")
    assert [r.run_number for r in MetadataStore(private_store).runs("QuickFlow")] == [1], "no run recorded"


def test_client_errors_are_flowcell_errors(private_store: Path) -> None:
    _recorded_run(private_store)
    with pytest.raises(NotFoundError, match="does not exist"):
        Run("QuickFlow/99999999999999999999999")


def test_an_unexpected_error_says_it_is_a_bug(capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from flowcell import cli

    def broken(argv: list[str]) -> int:
        return {}["no such key"]  # type: ignore[no-any-return]

    monkeypatch.setitem(cli.COMMANDS, "info", broken)
    assert cli.main(["info"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "internal error (KeyError: 'no such key')" in err[0]
    assert "bug in flowcell" in err[0] and "report it" in err[0] and "FLOWCELL_DEBUG=1" in err[0]


def test_a_failed_step_from_the_shell_has_no_colour_and_no_internal_frames(tmp_path: Path) -> None:
    nb = notebook(tmp_path / "bad.ipynb", [
        "%%flow BadFlow",
        "%%step start\nimport threading\nself.lock = threading.Lock()\nself.next(self.end)",
        "%%step end\npass",
    ])
    out = flowcell("run", str(nb), cwd=tmp_path)
    assert out.returncode == 1
    text = out.stdout + out.stderr
    assert "Artifact 'lock' of step 'start' cannot be pickled" in text
    assert "\x1b" not in text, "no colour escapes into a pipe"
    assert "cloudpickle" not in text and "flowcell/" not in text


def test_spin_while_a_run_is_writing_uses_the_latest_run_with_the_step(quick: Path, tmp_path: Path) -> None:
    assert flowcell("run", str(quick), "--quiet", cwd=tmp_path).returncode == 0
    release = tmp_path / "release"
    slow = notebook(tmp_path / "quick.ipynb", [
        QUICK[0],
        f"%%step start\nimport os, time\nwhile not os.path.exists({str(release)!r}):\n    time.sleep(0.05)\n"
        "self.a = 'y' * 1000\nself.next(self.mid)",
        *QUICK[2:],
    ])
    writing = subprocess.Popen([sys.executable, "-m", "flowcell.cli", "run", str(slow), "--quiet",
                                "--run-id-file", str(tmp_path / "run-id")], cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while not (tmp_path / "run-id").exists():
            assert writing.poll() is None, writing.communicate()
            time.sleep(0.05)
        out = flowcell("spin", str(slow), "mid", cwd=tmp_path)
    finally:
        release.write_text("go")
        writing.communicate(timeout=300)
    assert out.returncode == 0, out.stderr
    assert "inputs from QuickFlow/1/mid/" in out.stderr
    assert "run QuickFlow/2 is unfinished and has no finished 'mid' task yet, so the latest run that has one, " \
           "QuickFlow/1, was used" in out.stderr
    assert writing.returncode == 0


# -- a read-only store, a full disk, a deleted write-ahead log --------------------------


def _can_mount() -> bool:
    return shutil.which("unshare") is not None and subprocess.run(
        ["unshare", "-m", "true"], capture_output=True).returncode == 0


needs_mount = pytest.mark.skipif(not _can_mount(), reason="needs mount namespaces (unshare -m)")


def _in_namespace(setup: str, *args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = " ".join(f"'{a}'" for a in [sys.executable, "-m", "flowcell.cli", *args])
    return subprocess.run(["unshare", "-m", "sh", "-c", f"{setup} && exec {command}"], cwd=cwd,
                          capture_output=True, text=True, env={**os.environ, **env}, timeout=120)


@needs_mount
def test_a_read_only_store_is_readable_from_the_shell(quick: Path, tmp_path: Path, private_store: Path) -> None:
    assert flowcell("run", str(quick), "--quiet", cwd=tmp_path).returncode == 0
    ro = f'mount --bind -o ro "{private_store}" "{private_store}"'
    env = {"FLOWCELL_ROOT": str(private_store)}
    listed = _in_namespace(ro, "tag", "list", "--run-id", "QuickFlow/1", cwd=tmp_path, env=env)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.startswith("QuickFlow/1: user tags: -; system tags: ")
    info = _in_namespace(ro, "info", cwd=tmp_path, env=env)
    assert info.returncode == 0 and "flows:     QuickFlow" in info.stdout, info.stderr
    assert_one_sentence(_in_namespace(ro, "tag", "add", "--run-id", "QuickFlow/1", "x", cwd=tmp_path, env=env),
                        "is read-only for this process", "it can still be read")


@needs_mount
def test_a_full_disk_at_open_is_the_store_full_sentence(quick: Path, tmp_path: Path, private_store: Path) -> None:
    assert flowcell("run", str(quick), "--quiet", cwd=tmp_path).returncode == 0
    disk = tmp_path / "disk"
    disk.mkdir()
    store = disk / "store"
    setup = (f'mount -t tmpfs -o size=2m tmpfs "{disk}" && cp -a "{private_store}" "{store}" && '
             f'(dd if=/dev/zero of="{disk}/filler" bs=64k 2>/dev/null; true)')
    out = _in_namespace(setup, "tag", "add", "--run-id", "QuickFlow/1", "x", cwd=tmp_path,
                        env={"FLOWCELL_ROOT": str(store)})
    assert_one_sentence(out, f"The disk holding the store {store} is full")


def test_a_deleted_write_ahead_log_is_one_sentence_from_the_shell(tmp_path: Path, private_store: Path) -> None:
    holder = MetadataStore(private_store)  # a notebook that has the store open
    holder.new_run("QuickFlow", "tester", [], ["user:tester"], {})
    os.unlink(private_store / "metadata.sqlite-wal")
    holder.new_run("QuickFlow", "tester", [], ["user:tester"], {})
    try:
        assert_one_sentence(flowcell("tag", "list", "--run-id", "QuickFlow/1", cwd=tmp_path),
                            "write-ahead log metadata.sqlite-wal was deleted")
    finally:
        holder.close()
    assert [r.run_number for r in MetadataStore(private_store).runs("QuickFlow")] == [2, 1]


def test_a_store_shared_with_a_group_stays_shared_after_flowcell_run(quick: Path, tmp_path: Path) -> None:
    """``flowcell run`` also starts the warm kernel server, whose folder alone is private."""
    import stat

    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o2770)
    env = {"FLOWCELL_ROOT": str(shared)}
    try:
        assert flowcell("run", str(quick), "--quiet", cwd=tmp_path, env=env).returncode == 0
    finally:
        flowcell("server", "stop", cwd=tmp_path, env=env)
    assert stat.S_IMODE(shared.stat().st_mode) == 0o2770
    for path in [*(shared / "blobs").rglob("*"), shared / "metadata.sqlite"]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o040 and not mode & 0o007, f"{path} is {oct(mode)}"
    if (shared / "server").exists():
        assert stat.S_IMODE((shared / "server").stat().st_mode) == 0o700


def test_spin_after_a_crashed_run_uses_the_latest_run_with_the_step(quick: Path, tmp_path: Path,
                                                                    private_store: Path) -> None:
    assert flowcell("run", str(quick), "--quiet", cwd=tmp_path).returncode == 0
    # A run whose process was killed right after recording it: its owner is gone.
    subprocess.run([sys.executable, "-c", "import os, sys; from flowcell.store.metadata import MetadataStore as M;"
                    "M(sys.argv[1]).new_run('QuickFlow', 'tester', [], ['user:tester'], {}); os._exit(0)",
                    str(private_store)], check=True)
    assert Run("QuickFlow/2").finished and not Run("QuickFlow/2").successful
    out = flowcell("spin", str(quick), "mid", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "inputs from QuickFlow/1/mid/" in out.stderr and "run QuickFlow/2 is unfinished" in out.stderr
