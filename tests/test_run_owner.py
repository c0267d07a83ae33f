"""Runs never stay "running" after their process is gone (issue 12, item 5).

``flowcell run`` is started as a real process and stopped the ways the world stops
it: SIGTERM (``timeout``, ``docker stop``, systemd), SIGHUP (terminal closed),
SIGKILL (nothing can be done then: readers see the owner is gone).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT, process_running, wait_for

pytestmark = pytest.mark.timeout(240)


def _slow_notebook(path: Path, started: Path, hold: Path) -> None:
    """``start`` writes its kernel's pid, then waits while ``hold`` exists (at most 120 s)."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in [
        "%%flow OwnedFlow",
        "%%step start\nimport os, time\nfrom pathlib import Path\n"
        f"Path({str(started)!r}).write_text(str(os.getpid()))\n"
        f"deadline = time.monotonic() + 120\nwhile Path({str(hold)!r}).exists() and time.monotonic() < deadline:\n"
        "    time.sleep(0.05)\nself.x = 1\nself.next(self.end)",
        "%%step end\nprint('end', self.x)",
    ]]
    nbformat.write(nb, path)


def _cli(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "flowcell.cli", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _start_and_hold(tmp_path: Path) -> tuple[subprocess.Popen[str], int, Path]:
    started, hold = tmp_path / "started", tmp_path / "hold"
    hold.write_text("")
    _slow_notebook(tmp_path / "owned.ipynb", started, hold)
    proc = _cli(tmp_path, "run", "owned.ipynb", "--quiet")
    try:
        wait_for(started.exists, what="the step to start")
    except BaseException:
        proc.kill()
        raise
    return proc, int(started.read_text()), hold


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_stop_a_run_like_ctrl_c(tmp_path: Path, sig: signal.Signals) -> None:
    from flowcell import Flow

    proc, kernel_pid, _ = _start_and_hold(tmp_path)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=90)
    assert proc.returncode == 128 + sig, err
    assert f"stopped by {sig.name}" in err and "Traceback" not in err
    run = Flow("OwnedFlow").latest_run
    assert run.status == "failed" and run.finished and not run.successful
    wait_for(lambda: not process_running(kernel_pid), timeout=10, what="the kernel to be gone")


def test_a_killed_run_is_shown_as_crashed_and_resume_works_from_it(tmp_path: Path, runtime: Any) -> None:
    from flowcell import Flow, Run
    from flowcell.runtime.runs import start_resume
    from flowcell.runner import load_flow

    proc, _, hold = _start_and_hold(tmp_path)
    proc.kill()
    proc.communicate(timeout=30)
    run = Flow("OwnedFlow").latest_run  # the newest run: shown, but never as running
    assert run.id == "1"
    assert (run.status, run.finished, run.successful) == ("crashed", True, False)
    assert Run("OwnedFlow/1").status == "crashed"
    task = Run("OwnedFlow/1")["start"].task  # the task it was running when killed
    assert (task.status, task.finished, task.successful) == ("crashed", True, False)
    db = sqlite3.connect(os.environ["FLOWCELL_ROOT"] + "/metadata.sqlite")
    assert db.execute("SELECT status FROM runs").fetchone()[0] == "running"  # what was recorded
    db.close()

    from flowcell.store.metadata import MetadataStore
    from flowcell.widgets.runview import run_row, run_view

    meta = MetadataStore(os.environ["FLOWCELL_ROOT"])
    try:  # what the run browser lists
        record = meta.runs("OwnedFlow", ())[0]
        assert run_row(record)["status"] == "crashed"
        steps = {n["id"]: n["status"] for n in run_view(meta, record)["graph"]["nodes"]}
        assert steps["start"] == "crashed"
    finally:
        meta.close()

    hold.unlink()
    result = start_resume(runtime, load_flow(tmp_path / "owned.ipynb"))
    assert result.status == "completed"
    resumed = Flow("OwnedFlow").latest_run
    assert resumed.origin_pathspec == "OwnedFlow/1" and resumed.data.x == 1


def test_run_id_file_in_a_missing_folder_is_refused_before_the_run(tmp_path: Path) -> None:
    _slow_notebook(tmp_path / "owned.ipynb", tmp_path / "started", tmp_path / "hold")
    proc = _cli(tmp_path, "run", "owned.ipynb", "--run-id-file", "missing/run.txt")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert err.strip().splitlines() == [
        "flowcell: Cannot write the run id to missing/run.txt: folder missing does not exist; "
        "create it or choose another path."]
    assert not (tmp_path / "started").exists()
    db = Path(os.environ["FLOWCELL_ROOT"]) / "metadata.sqlite"
    if db.exists():
        with sqlite3.connect(db) as conn:
            assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 0


def test_runs_record_their_owner_and_old_stores_gain_the_column(runtime: Any, private_store: Path) -> None:
    from conftest import run

    from flowcell.owner import current
    from flowcell.store.metadata import MetadataStore

    result, flow_run, _ = run(runtime, "%%step start\nself.next(self.end)\n%%step end\npass")
    meta = MetadataStore(private_store)
    record = meta.get_run("TestFlow", result.run_number)
    meta.close()
    assert record is not None and record.owner == {"pid": os.getpid(), "host": current().host,
                                                   "started": current().started}
    # A store made before runs had owners: the column is added on open, old runs read as recorded.
    with sqlite3.connect(private_store / "metadata.sqlite") as conn:
        conn.execute("ALTER TABLE runs DROP COLUMN owner")
        conn.execute("PRAGMA user_version = 1")  # as a store of the previous schema
        conn.execute("UPDATE runs SET status = 'running'")
    meta = MetadataStore(private_store)
    old = meta.get_run("TestFlow", result.run_number)
    meta.close()
    assert old is not None and old.owner is None and old.status == "running"
