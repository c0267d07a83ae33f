"""Bad input and failures (SPEC 8): each gets one clear message and loses nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT, make_flow, run
from flowcell.client import Flow, Run
from flowcell.errors import (
    CorruptBlobError,
    FlowSyntaxError,
    InvalidNameError,
    LintError,
    NotFoundError,
    ParameterError,
)
from flowcell.runtime.runs import start_run

PARAM_FLOW = """
%%flow ParamFlow
from flowcell import Parameter
alpha = Parameter("alpha", default=0.5)
count = Parameter("count", default=3)
%%step start
self.product = self.alpha * self.count
self.next(self.end)
%%step end
pass
"""


def test_parameters_are_typed(runtime: Any) -> None:
    result, r, _ = run(runtime, PARAM_FLOW, {"alpha": "0.25", "count": "4"}, name="ParamFlow")
    assert r.data.product == 1.0
    assert isinstance(r.data.alpha, float) and isinstance(r.data.count, int)


@pytest.mark.parametrize(
    "params, message",
    [({"beta": "1"}, "Unknown parameter --beta"), ({"count": "many"}, "--count expects a value of type int")],
)
def test_bad_parameters_record_nothing(runtime: Any, private_store: Path, params: dict[str, str], message: str) -> None:
    with pytest.raises(ParameterError, match=message):
        run(runtime, PARAM_FLOW, params, name="ParamFlow")
    assert not (private_store / "metadata.sqlite").exists() or not _runs("ParamFlow")


def _runs(flow: str) -> list[Any]:
    try:
        return list(Flow(flow).runs())
    except NotFoundError:
        return []


def test_lint_error_records_no_run(runtime: Any) -> None:
    with pytest.raises(LintError) as info:
        run(runtime, "%%step start\nself.next(self.missing)\n%%step end\npass", name="LintFlow")
    assert "start" in str(info.value) and "missing" in str(info.value)
    assert _runs("LintFlow") == []


def test_step_exception_fails_run_and_keeps_finished_tasks(runtime: Any) -> None:
    result, r, events = run(runtime, """
%%step start
self.kept = "still here"
self.next(self.boom)
%%step boom
x = 1
y = 0
print("about to fail")
z = x / y
self.next(self.end)
%%step end
pass
""")
    assert result.status == "failed" and not r.successful and r.finished
    assert r["start"].task.data.kept == "still here"
    task = r["boom"].task
    assert not task.successful
    assert "ZeroDivisionError" in task.exception
    # The traceback uses the cell's own line numbers: the magic line is line 1,
    # so `z = x / y` is line 5 of the cell.
    err = next(p["error"] for k, p in events if k == "task_finished" and p["status"] == "failed")
    assert err["line"] == 5
    assert "about to fail" in task.stdout
    assert "end" not in r


def test_syntax_error_names_cell_line() -> None:
    from flowcell.graph import build_graph

    with pytest.raises(FlowSyntaxError, match=r"cell 1.*line 3"):
        build_graph(make_flow("%%step start\nx = 1\nx = = 2\nself.next(self.end)\n%%step end\npass"))


def test_unpicklable_artifact_names_artifact_and_step(runtime: Any) -> None:
    result, r, _ = run(runtime, """
%%flow LockFlow
import threading
%%step start
self.lock = threading.Lock()
self.next(self.end)
%%step end
pass
""", name="LockFlow")
    assert result.status == "failed"
    exc = r["start"].task.exception
    assert "'lock'" in exc and "start" in exc


@pytest.mark.parametrize(
    "code, how",
    [
        ("import os; os._exit(3)", "exit code 3"),
        ("import ctypes; ctypes.string_at(0)", "SIGSEGV"),
        # The out-of-memory killer ends a process with SIGKILL; send it directly
        # rather than exhausting the shared machine's memory.
        ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", "SIGKILL"),
    ],
)
def test_kernel_death_is_reported_and_pool_recovers(runtime: Any, code: str, how: str) -> None:
    result, r, _ = run(runtime, f"%%step start\nself.x = 1\nself.next(self.die)\n%%step die\n{code}\nself.next(self.end)\n%%step end\npass")
    assert result.status == "failed"
    exc = r["die"].task.exception
    assert "kernel died" in exc and how in exc and "die" in exc
    # The pool replaced the dead kernel: the next run works.
    result2, r2, _ = run(runtime, "%%step start\nself.ok = True\nself.next(self.end)\n%%step end\npass")
    assert result2.status == "completed" and r2.data.ok


def test_retry_then_success(runtime: Any) -> None:
    result, r, events = run(runtime, """
%%flow RetryFlow
from flowcell import current
%%step start @retry(times=2, minutes_between_retries=0)
self.attempt = current.retry_count
if current.retry_count < 1:
    raise RuntimeError("flaky")
self.next(self.end)
%%step end
pass
""", name="RetryFlow")
    assert result.status == "completed"
    assert r["start"].task.data.attempt == 1
    assert r["start"].task.current_attempt == 1
    assert any(k == "retry" for k, _ in events)


def test_catch_records_exception_and_continues(runtime: Any) -> None:
    result, r, _ = run(runtime, """
%%step start @catch(var="failure")
self.before = 1
raise ValueError("bad row")
self.next(self.end)
%%step end
self.seen = str(self.failure)
""")
    assert result.status == "completed", result.failures
    assert "ValueError: bad row" in r.data.seen


def test_timeout_stops_the_task(runtime: Any) -> None:
    t0 = time.time()
    result, r, _ = run(runtime, """
%%flow SlowFlow
import time
%%step start @timeout(seconds=1)
time.sleep(30)
self.next(self.end)
%%step end
pass
""", name="SlowFlow")
    assert result.status == "failed"
    assert "timeout" in r["start"].task.exception.lower()
    assert time.time() - t0 < 20


def test_timeout_under_catch_keeps_what_the_step_set(runtime: Any) -> None:
    """Issue 13: Metaflow stops a step inside it (TimeoutException), so @catch keeps its artifacts."""
    result, r, _ = run(runtime, """
%%flow SlowCatchFlow
import time
%%step start @catch(var="ex") @timeout(seconds=1)
self.before = "set before the timeout"
time.sleep(30)
self.after = "never"
self.next(self.end)
%%step end
pass
""", name="SlowCatchFlow")
    assert result.status == "completed", result.failures
    start = r["start"].task
    assert start.data.before == "set before the timeout" and "after" not in start
    assert start.data.ex.type == "metaflow.plugins.timeout_decorator.TimeoutException"
    assert "timed out after 0 hours, 0 minutes, 1 seconds" in start.data.ex.exception


def test_environment_decorator(runtime: Any) -> None:
    result, r, _ = run(runtime, """
%%flow EnvFlow
import os
%%step start @environment(vars={"FLOWCELL_TEST_VAR": "on"})
self.var = os.environ.get("FLOWCELL_TEST_VAR")
self.next(self.end)
%%step end
self.var_after = os.environ.get("FLOWCELL_TEST_VAR")
""", name="EnvFlow")
    assert r["start"].task.data.var == "on"
    assert r.data.var_after is None


def test_interrupt_stops_tasks_and_marks_run_failed(runtime: Any) -> None:
    flow = make_flow("""
%%flow SleepFlow
import time
%%step start
self.items = [1, 2]
self.next(self.nap, foreach="items")
%%step nap
time.sleep(60)
self.next(self.join)
%%step join(inputs)
self.next(self.end)
%%step end
pass
""", name="SleepFlow")
    started = threading.Event()

    def observer(kind: str, payload: dict[str, Any]) -> None:
        if kind == "task_started" and payload["step"] == "nap":
            started.set()

    def interrupt() -> None:
        started.wait(30)
        time.sleep(0.5)
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

    threading.Thread(target=interrupt, daemon=True).start()
    t0 = time.time()
    with pytest.raises(KeyboardInterrupt):
        start_run(runtime, flow, observer=observer)
    assert time.time() - t0 < 30
    r = Flow("SleepFlow").latest_run
    assert r.finished and not r.successful
    assert all(not t.successful for t in r["nap"].tasks())
    # The pool still works afterwards.
    result, r2, _ = run(runtime, "%%step start\nself.next(self.end)\n%%step end\npass")
    assert result.status == "completed"


def test_corrupted_blob_is_detected(runtime: Any, private_store: Path) -> None:
    result, r, _ = run(runtime, "%%step start\nself.payload = 'x' * 5000\nself.next(self.end)\n%%step end\npass")
    art = r["start"].task["payload"]
    blob = next(p for p in (private_store / "blobs").rglob(art.sha))
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    os.chmod(blob, 0o644)
    blob.write_bytes(bytes(data))
    with pytest.raises(CorruptBlobError, match=art.sha[:12]):
        r["start"].task.data.payload


@pytest.mark.parametrize("name", ["../escape", "a/b", "..", "x y", "class"])
def test_names_that_would_escape_the_store_are_rejected(runtime: Any, name: str) -> None:
    with pytest.raises((InvalidNameError, FlowSyntaxError)):
        make_flow(f"%%flow {name}\n%%step start\nself.next(self.end)\n%%step end\npass")
    with pytest.raises((InvalidNameError, FlowSyntaxError)):
        make_flow(f"%%step {name}\nself.next(self.end)\n%%step end\npass")


def test_tags_are_data_not_paths(runtime: Any, private_store: Path) -> None:
    with pytest.raises(InvalidNameError):
        run(runtime, "%%step start\nself.next(self.end)\n%%step end\npass", tags=[""])
    result, r, _ = run(runtime, "%%step start\nself.next(self.end)\n%%step end\npass", tags=["../../etc/passwd"])
    assert "../../etc/passwd" in r.user_tags
    # The tag lives in the metadata only: no file or folder anywhere under the test's folder is named after it.
    names = {p.name for p in private_store.parent.rglob("*")}
    assert not names & {"etc", "passwd"}, sorted(names & {"etc", "passwd"})


def test_four_concurrent_runs_from_four_processes(tmp_path: Path) -> None:
    nb = ROOT / "notebooks" / "quickstart.ipynb"
    env = dict(os.environ)
    procs = [
        subprocess.Popen([sys.executable, "-m", "flowcell.cli", "run", str(nb), "--quiet",
                          "--run-id-file", str(tmp_path / f"id{i}")], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(4)
    ]
    outs = [p.communicate(timeout=240) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
    ids = sorted(int((tmp_path / f"id{i}").read_text()) for i in range(4))
    assert ids == [1, 2, 3, 4]
    assert all(Run(f"QuickstartFlow/{i}").successful for i in ids)
