"""Kernel hygiene (issue 12, items 3, 4 and 7): no TCP port, no task harming the next, no leaks.

Real child kernels throughout.  Tests that need the *same* kernel to be reused run on
a private one-kernel runtime, so the second task is sure to meet whatever the first
one left behind.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT, process_running, run, wait_for

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def solo() -> Iterator[Any]:
    """A runtime with one kernel: consecutive tasks share it unless it is retired."""
    from flowcell.runtime.engine import Runtime

    rt = Runtime(pool_size=1)
    yield rt
    rt.close()


def _listening_tcp(pid: int) -> list[str]:
    """``address:port`` of the TCP sockets process ``pid`` listens on (from /proc, like ``ss -ltnp``)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                found.append(fields[1])
    return found


def _kernel_pids() -> list[int]:
    """Every child kernel of this process (they carry the kernel folder in their environment)."""
    from flowcell._hygiene import children

    pids = []
    for pid in children(os.getpid()):
        try:
            if b"FLOWCELL_KERNEL_DIR=" in Path(f"/proc/{pid}/environ").read_bytes():
                pids.append(pid)
        except OSError:
            pass
    return pids


# -- item 4: no TCP socket -------------------------------------------------------------


def test_the_socket_lister_sees_a_tcp_listener() -> None:
    """The check below can fail: a listening socket of this process is found."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert any(addr.endswith(f":{port:04X}") for addr in _listening_tcp(os.getpid()))


def test_child_kernels_listen_on_no_tcp_port_during_a_run(runtime: Any, tmp_path: Path) -> None:
    """SPEC 2: kernels over IPC, no TCP port; ipykernel's subprocess pipe included."""
    ready, go = tmp_path / "ready", tmp_path / "go"
    text = f"""
%%step start
import os, time
from pathlib import Path
Path({str(ready)!r}).write_text(str(os.getpid()))
deadline = time.monotonic() + 60
while not Path({str(go)!r}).exists() and time.monotonic() < deadline:
    time.sleep(0.02)
self.next(self.end)
%%step end
pass
"""
    outcome: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: outcome.update(result=run(runtime, text)))
    thread.start()
    try:
        wait_for(ready.exists, what="the step to start")
        kernels = _kernel_pids()
        assert int(ready.read_text()) in kernels
        listening = {pid: _listening_tcp(pid) for pid in kernels}
    finally:
        go.write_text("")
        thread.join(60)
    assert listening and all(not addrs for addrs in listening.values()), listening
    assert outcome["result"][0].status == "completed"


def test_output_of_forked_processes_still_reaches_the_task(runtime: Any) -> None:
    """The pipe ipykernel used TCP for now runs over IPC: a forked child's print is captured."""
    result, flow_run, _ = run(runtime, """
%%step start
import os, sys
pid = os.fork()
if pid == 0:
    print("hello from the forked child", flush=True)
    os._exit(0)
os.waitpid(pid, 0)
self.next(self.end)
%%step end
pass
""")
    assert result.status == "completed"
    assert "hello from the forked child" in flow_run["start"].task.stdout


# -- item 3: one task cannot break the next ---------------------------------------------

DAMAGE = {
    "json": "import json\njson.loads = lambda *args, **kwargs: None",
    "loop": "import asyncio\nasyncio.get_event_loop().stop()",
    "stdout": "import sys\nsys.stdout.close()",
    "thread": (
        "import threading, time\n"
        "def chatter():\n"
        "    while True:\n"
        "        print('from the background thread', flush=True)\n"
        "        time.sleep(0.01)\n"
        "threading.Thread(target=chatter, daemon=True).start()\n"
        "time.sleep(0.05)"
    ),
}
EXPECTED = {
    "json": "replaced json.loads",
    "loop": "stopped the kernel's event loop",
    "stdout": "closed sys.stdout",
    "thread": "left 1 thread running",
}


@pytest.mark.parametrize("how", sorted(DAMAGE))
def test_a_task_that_damages_its_kernel_is_named_and_the_next_task_is_unharmed(solo: Any, how: str) -> None:
    body = "\n".join(DAMAGE[how].splitlines())
    text = f"""
%%step start
{body}
self.x = 1
self.next(self.middle)
%%step middle
print("middle ran")
self.y = self.x + 1
self.next(self.end)
%%step end
print("end ran")
"""
    result, flow_run, events = run(solo, text)
    assert result.status == "completed", [f.outcome.error for f in result.failures]
    start = flow_run["start"].task
    warnings = [p["text"] for k, p in events if k == "stream" and "flowcell: warning" in p["text"]]
    assert len(warnings) == 1 and start.pathspec in warnings[0] and EXPECTED[how] in warnings[0], warnings
    assert EXPECTED[how] in start.stderr  # recorded with the task that did it
    middle, end = flow_run["middle"].task, flow_run["end"].task
    assert middle.stdout == "middle ran\n" and end.stdout == "end ran\n"  # nothing from the thread
    assert middle.data.y == 2 and middle["y"].data == 2
    assert "warning" not in middle.stderr + end.stderr


def test_healthy_tasks_keep_their_warm_kernel(solo: Any) -> None:
    """The checks cost no kernel: an ordinary flow runs every task in the same one."""
    result, flow_run, events = run(solo, """
%%step start
import os
self.pid = os.getpid()
self.next(self.middle)
%%step middle
import os
self.pid = os.getpid()
self.next(self.end)
%%step end
import os
self.pid = os.getpid()
""")
    assert result.status == "completed"
    assert len({flow_run[s].task.data.pid for s in ("start", "middle", "end")}) == 1
    assert not [p for k, p in events if k == "stream" and "warning" in p["text"]]


def _on_loop(rt: Any, coro: Any) -> Any:
    return asyncio.run_coroutine_threadsafe(coro, rt.loop).result(60)


def test_a_kernel_that_does_not_acknowledge_is_replaced_and_the_task_is_not_charged(solo: Any) -> None:
    """Damage no check sees (done outside any task): the deadline catches it, the task moves on."""
    pool = solo.pool

    async def break_idle_kernel() -> int:
        kernel = await pool.acquire()
        await kernel.execute("import json; json.loads = lambda *a, **k: None", lambda m: None)
        await pool.release(kernel)
        return int(kernel.process.pid)

    broken = _on_loop(solo, break_idle_kernel())
    pool.ack_timeout = 3.0
    try:
        result, flow_run, events = run(solo, """
%%step start
import os
self.pid = os.getpid()
self.next(self.end)
%%step end
pass
""")
    finally:
        pool.ack_timeout = 10.0
    assert result.status == "completed"
    task = flow_run["start"].task
    assert task.data.pid != broken
    assert task["pid"].data != broken
    warnings = [p["text"] for k, p in events if k == "stream" and "flowcell: warning" in p["text"]]
    assert any("did not acknowledge" in w and task.pathspec in w for w in warnings), warnings
    assert not [k for k, _ in events if k == "retry"]  # not counted as an attempt


# -- item 7: a task's processes end with it; dead owners' folders are cleaned ---------------


def test_processes_a_task_starts_end_with_the_task(runtime: Any) -> None:
    result, flow_run, events = run(runtime, """
%%step start
import subprocess
self.same_group = subprocess.Popen(["sleep", "300"]).pid
self.own_session = subprocess.Popen(["sleep", "301"], start_new_session=True).pid
self.next(self.end)
%%step end
pass
""")
    assert result.status == "completed"
    task = flow_run["start"].task
    for name in ("same_group", "own_session"):
        pid = task[name].data
        assert not process_running(pid), f"{name} process {pid} outlived its task"
    assert "left 2 process(es) running; they were ended with the task" in task.stderr


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A temp folder with a short path (kernels' socket paths live below it)."""
    path = Path(tempfile.mkdtemp(prefix="fc-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_kernel_folder_of_a_killed_parent_is_cleaned_on_the_next_start(
        tmp_path: Path, short_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """kill -9 of ``flowcell run`` mid-step; the next flowcell process removes what it left."""
    temp = short_tmp
    pidfile = tmp_path / "stray.pid"
    nb = tmp_path / "slow.ipynb"
    _notebook(nb, [
        "%%flow SlowFlow",
        "%%step start\nimport subprocess, time\nfrom pathlib import Path\n"
        f"p = subprocess.Popen(['sleep', '300'], start_new_session=True)\nPath({str(pidfile)!r}).write_text(str(p.pid))\n"
        "time.sleep(300)\nself.next(self.end)",
        "%%step end\npass",
    ])
    env = {**os.environ, "TMPDIR": str(temp), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "flowcell.cli", "run", str(nb), "--quiet"], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(pidfile.exists, what="the step to start its process")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    stray = int(pidfile.read_text())
    left = [p for p in temp.iterdir() if p.name.startswith("flowcell-kernels-")]
    assert left and process_running(stray)  # what a killed parent leaves behind

    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    from flowcell.runtime.launch import make_workdir

    mine = make_workdir()  # what every new pool does first
    assert [p for p in temp.iterdir() if p.name.startswith("flowcell-kernels-")] == [mine]
    wait_for(lambda: not process_running(stray), timeout=10, what="the stray process to end")


def test_live_owners_folders_are_left_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flowcell.runtime.launch import clean_dead_owners, owned_tempdir

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    mine = owned_tempdir("flowcell-spin-")
    foreign = tmp_path / "flowcell-kernels-notanowner"
    foreign.mkdir()
    # Folders of dead owners elsewhere in /tmp (earlier processes of this suite) may be
    # cleaned too; what matters is that a live owner's and a foreign folder are not.
    cleaned = [Path(p) for p in clean_dead_owners()]
    assert mine not in cleaned and foreign not in cleaned
    assert mine.exists() and foreign.exists()


def _notebook(path: Path, cells: list[str]) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    nbformat.write(nb, path)


def _spin_notebook(path: Path) -> None:
    _notebook(path, ["%%flow ScratchFlow", "%%step start\nself.x = 1\nself.next(self.middle)",
                     "%%step middle\nself.y = self.x + 1\nself.next(self.end)", "%%step end\npass"])


def test_flowcell_spin_removes_its_scratch_store(tmp_path: Path, short_tmp: Path) -> None:
    _spin_notebook(tmp_path / "s.ipynb")
    env = {**os.environ, "TMPDIR": str(short_tmp), "PYTHONPATH": str(ROOT)}
    for args in (["run", "s.ipynb", "--quiet"], ["spin", "s.ipynb", "middle"]):
        done = subprocess.run([sys.executable, "-m", "flowcell.cli", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stderr
    assert "Spun 'middle'" in done.stderr and "/spin-1/middle/" in done.stderr
    assert sorted(p.name for p in short_tmp.iterdir()) == []  # no flowcell-spin-*, no kernel folder


def test_a_runner_spins_scratch_store_lives_while_used_and_goes_with_it(runtime: Any, tmp_path: Path) -> None:
    import gc

    from flowcell import Runner

    _spin_notebook(tmp_path / "s.ipynb")
    runner = Runner(tmp_path / "s.ipynb")
    with runner.run() as running:
        assert running.successful
    with runner.spin("middle") as spin:
        scratch = Path(spin.root)
        assert scratch.name.startswith("flowcell-spin-") and spin.task["y"].data == 2
    with runner.spin("end") as chained:  # the runner's spins chain on its earlier ones
        assert chained.successful and chained.inputs_from.startswith("spin of ScratchFlow/")
    del runner, spin, chained
    gc.collect()
    assert not scratch.exists()
