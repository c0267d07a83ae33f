"""The warm kernel server: shell commands handed to it behave exactly as without it."""

from __future__ import annotations

import json
import re
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest

CELLS = [
    "%%flow ServedFlow\nimport time\nfrom flowcell import Parameter\nk = Parameter('k', default=2)",
    "%%step start\nself.items = list(range(self.k))\nprint('start with', self.k)\nself.next(self.double)",
    "%%step double\nif self.k == 99:\n    print('sleeping', flush=True)\n    time.sleep(60)\n"
    "self.doubled = [2 * i for i in self.items]\nprint('doubled', self.doubled)\n"
    "import sys\nprint('to stderr', file=sys.stderr)\nself.next(self.end)",
    "%%step end\nprint('end')",
]


def write_notebook(path: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in CELLS]
    nbformat.write(nb, str(path))
    return path


#: The installed ``flowcell`` command (its entry point tries the server before loading the CLI).
FLOWCELL = str(Path(sys.executable).parent / "flowcell")


def cli(folder: Path, *args: str, server: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FLOWCELL_SERVER": "on" if server else "off"}
    return subprocess.run([FLOWCELL, *args], cwd=folder, env=env, capture_output=True, text=True, timeout=300)


def status(folder: Path) -> dict[str, Any]:
    out = cli(folder, "server", "status", "--json")
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout))


def wait_until_serving(folder: Path) -> dict[str, Any]:
    """The server starts after the command that spawned it has finished; wait for its socket."""
    from flowcell import warm

    for _ in range(1200):
        found = warm.request(folder / ".flowcell", {"status": True})
        if found is not None:
            return found
        time.sleep(0.1)
    raise AssertionError(f"no kernel server came up: {(folder / '.flowcell' / 'server' / 'log').read_text()}")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Path]:
    """A project whose store has a live server (stopped at the end)."""
    write_notebook(tmp_path / "served.ipynb")
    first = cli(tmp_path, "run", "served.ipynb", "--quiet")
    assert first.returncode == 0, first.stderr
    wait_until_serving(tmp_path)
    yield tmp_path
    cli(tmp_path, "server", "stop")


def _messages(stderr: str) -> list[str]:
    """stderr without asyncio's shutdown notices, which a process may print at exit (not output),
    and with durations ("Spun 'x' in 101 ms") blanked: they differ from one process to the next."""
    lines = stderr.splitlines()
    return [re.sub(r" (in|after) \d+(\.\d+)? m?s\b", r" \1 _", line) for line in lines
            if not line.startswith(("Task was destroyed", "task: <Task"))]


def test_commands_give_identical_output_with_and_without_the_server(served: Path) -> None:
    before = status(served)["commands"]
    cases = [
        ("spin", "served.ipynb", "double"),                       # task output on stdout/stderr
        ("spin", "served.ipynb", "double", "--json"),
        ("spin", "served.ipynb", "double", "--artifacts", "{'items': [None]}"),  # the step raises: exit 1
        ("spin", "served.ipynb", "nosuchstep"),                   # bad input: exit 2, one sentence
        ("spin", "served.ipynb", "double", "--artifacts", "{'items': [5]}", "--json"),
        ("spin", "served.ipynb", "double", "--bogus"),            # argparse usage error
    ]
    for args in cases:
        local, warm = cli(served, *args, server=False), cli(served, *args)
        if "--json" in args:
            a, b = json.loads(local.stdout), json.loads(warm.stdout)
            a.pop("duration"), b.pop("duration")
            assert (local.returncode, a) == (warm.returncode, b), args
        else:
            assert (local.returncode, local.stdout) == (warm.returncode, warm.stdout), args
        assert _messages(local.stderr) == _messages(warm.stderr), args
    assert cli(served, "spin", "served.ipynb", "double").stdout == "doubled [0, 2]\n"
    assert cli(served, "spin", "served.ipynb", "nosuchstep").returncode == 2
    after = status(served)
    # Every command above that ran with the server on was served (none fell back to its own kernels).
    assert after["commands"] - before == len(cases) + 2 and not after["busy"]

    local = cli(served, "run", "served.ipynb", "--k", "3", "--json", server=False)
    warm = cli(served, "run", "served.ipynb", "--k", "3", "--json")
    a, b = json.loads(local.stdout), json.loads(warm.stdout)
    assert (a["pathspec"], b["pathspec"]) == ("ServedFlow/2", "ServedFlow/3")
    a.pop("pathspec"), b.pop("pathspec")
    assert (local.returncode, a) == (warm.returncode, b) == (0, b)
    assert status(served)["commands"] - before == len(cases) + 3


def test_busy_server_lets_a_second_shell_run_on_its_own(served: Path) -> None:
    env = {**os.environ, "FLOWCELL_SERVER": "on"}
    slow = subprocess.Popen([FLOWCELL, "spin", "served.ipynb", "double", "--artifacts",
                             "{'k': 99}"], cwd=served,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert slow.stdout is not None and slow.stdout.readline() == "sleeping\n"
        assert status(served)["busy"]
        other = cli(served, "spin", "served.ipynb", "double")   # from another shell, meanwhile
        assert other.returncode == 0 and other.stdout == "doubled [0, 2]\n"
        # Ctrl-C in the first shell stops its command only; the server lives on.
        slow.send_signal(signal.SIGINT)
        _, err = slow.communicate(timeout=120)
        assert slow.returncode == 130
        assert err.splitlines()[-1] == "flowcell: interrupted; the run was stopped and marked failed."
    finally:
        if slow.poll() is None:
            slow.kill()
    after = status(served)
    assert not after["busy"]
    again = cli(served, "spin", "served.ipynb", "double")
    assert again.returncode == 0 and status(served)["commands"] == after["commands"] + 1


def test_server_stop_idle_exit_and_version_change(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_notebook(tmp_path / "served.ipynb")
    assert status(tmp_path) == {"running": False, "state": "stopped", "store": str(tmp_path / ".flowcell")}
    assert cli(tmp_path, "spin", "served.ipynb", "start").returncode == 0
    pid = wait_until_serving(tmp_path)["pid"]
    socket_file = tmp_path / ".flowcell" / "server" / "sock"
    assert socket_file.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / ".flowcell" / "server").stat().st_mode & 0o777 == 0o700
    stop = cli(tmp_path, "server", "stop")
    assert stop.stdout == f"stopped kernel server {pid} for {tmp_path / '.flowcell'}\n"
    _wait_gone(pid)
    assert not socket_file.exists() and not status(tmp_path)["running"]

    # Idle exit (configurable).
    monkeypatch.setenv("FLOWCELL_SERVER_IDLE", "1")
    assert cli(tmp_path, "spin", "served.ipynb", "start").returncode == 0
    log = tmp_path / ".flowcell" / "server" / "log"
    for _ in range(1200):
        if "exiting: idle" in log.read_text():
            break
        time.sleep(0.1)
    assert "exiting: idle" in log.read_text()
    monkeypatch.delenv("FLOWCELL_SERVER_IDLE")
    _wait_for_lock_free(tmp_path)

    # A changed flowcell install: the old server leaves, and the command is not served by it.
    assert cli(tmp_path, "spin", "served.ipynb", "start").returncode == 0
    pid = wait_until_serving(tmp_path)["pid"]
    version_file = Path(__file__).resolve().parent.parent / "flowcell" / "_version.py"
    stat = version_file.stat()
    newest = max(p.stat().st_mtime_ns for p in version_file.parent.rglob("*.py"))
    os.utime(version_file, ns=(stat.st_atime_ns, newest + 1_000_000_000))  # what an upgrade does
    try:
        _wait_gone(pid)
    finally:
        os.utime(version_file, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert "exiting: flowcell changed" in (tmp_path / ".flowcell" / "server" / "log").read_text()


def _wait_for_lock_free(folder: Path) -> None:
    """Until no server holds the store's lock (one that logged its exit may still be closing kernels)."""
    import fcntl

    for _ in range(1200):
        fd = os.open(folder / ".flowcell" / "server" / "lock", os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return
        except OSError:
            time.sleep(0.1)
        finally:
            os.close(fd)
    raise AssertionError("the kernel server never released its lock")


def _wait_gone(pid: int) -> None:
    for _ in range(600):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    raise AssertionError(f"kernel server {pid} did not exit")


@pytest.mark.parametrize("behaviour", ["silent", "hangs-up", "garbage"])
def test_a_broken_server_never_hangs_a_command(tmp_path: Path, behaviour: str) -> None:
    """A process on the socket that never answers, hangs up or talks nonsense: the command runs on its own."""
    import socket
    import threading

    from flowcell import warm

    write_notebook(tmp_path / "served.ipynb")
    assert cli(tmp_path, "run", "served.ipynb", "--quiet", server=False).returncode == 0
    path = warm.socket_path(tmp_path / ".flowcell")
    path.parent.mkdir(parents=True, exist_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(4)
    seen: list[bytes] = []

    def serve() -> None:
        conn, _ = listener.accept()
        seen.append(conn.recv(65536))
        if behaviour == "garbage":
            conn.sendall(b"this is not json\n")
        if behaviour != "silent":
            conn.close()
        else:
            time.sleep(30)  # holds the connection open without a word

    threading.Thread(target=serve, daemon=True).start()
    try:
        out = cli(tmp_path, "spin", "served.ipynb", "double")
    finally:
        listener.close()
    assert seen and json.loads(seen[0])["argv"] == ["spin", "served.ipynb", "double"]
    assert out.returncode == 0 and out.stdout == "doubled [0, 2]\n", out.stderr
