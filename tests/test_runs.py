"""Whole runs on real child kernels: graph shapes, artifacts, isolation, decorators."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conftest import run
from flowcell.client import Flow, Run


def test_linear_run_records_artifacts_and_logs(runtime: Any) -> None:
    result, r, events = run(runtime, """
%%step start
self.x = 1
print("hello from start")
self.next(self.middle)
%%step middle
self.x += 1
self.y = [self.x] * 3
self.next(self.end)
%%step end
print("x is", self.x)
""")
    assert result.status == "completed"
    assert r.successful and r.finished
    assert r.data.x == 2 and r.data.y == [2, 2, 2]
    assert r["start"].task.data.x == 1
    assert "hello from start" in r["start"].task.stdout
    assert "x is 2" in r["end"].task.stdout
    assert [s.id for s in r.steps()] == ["end", "middle", "start"]
    assert Flow("TestFlow").latest_run.pathspec == r.pathspec
    streamed = "".join(p["text"] for k, p in events if k == "stream")
    assert "hello from start" in streamed
    # Run ids increase per flow.
    result2, _, _ = run(runtime, "%%step start\nself.next(self.end)\n%%step end\npass")
    assert result2.run_number == result.run_number + 1


def test_branch_join_inputs_and_merge(runtime: Any) -> None:
    result, r, _ = run(runtime, """
%%step start
self.shared = "same"
self.next(self.a, self.b)
%%step a
self.val = 1
self.only_a = "A"
self.next(self.join)
%%step b
self.val = 2
self.next(self.join)
%%step join(inputs)
self.total = sum(i.val for i in inputs)
self.from_a = inputs.a.val
self.n = len(inputs)
self.merge_artifacts(inputs, exclude=["val"])
self.next(self.end)
%%step end
pass
""")
    assert result.status == "completed", result.failures
    d = r.data
    assert (d.total, d.from_a, d.n, d.shared, d.only_a) == (3, 1, 2, "same", "A")
    assert "val" not in r["end"].task


def test_merge_conflict_is_an_error(runtime: Any) -> None:
    result, r, _ = run(runtime, """
%%step start
self.next(self.a, self.b)
%%step a
self.v = 1
self.next(self.join)
%%step b
self.v = 2
self.next(self.join)
%%step join(inputs)
self.merge_artifacts(inputs)
self.next(self.end)
%%step end
pass
""")
    assert result.status == "failed"
    exc = r["join"].task.exception
    assert "v" in exc and "different values" in exc


def test_nested_foreach(runtime: Any) -> None:
    result, r, _ = run(runtime, """
%%step start
self.letters = ["a", "b"]
self.next(self.outer, foreach="letters")
%%step outer
self.letter = self.input
self.nums = [1, 2, 3]
self.next(self.inner, foreach="nums")
%%step inner
self.word = self.letter * self.input
self.stack = [(i, n) for i, n, _ in self.foreach_stack()]
self.idx = self.index
self.next(self.inner_join)
%%step inner_join(inputs)
self.words = [i.word for i in inputs]
self.letter = inputs[0].letter
self.next(self.outer_join)
%%step outer_join(inputs)
self.all = {i.letter: i.words for i in inputs}
self.next(self.end)
%%step end
pass
""", max_workers=4)
    assert result.status == "completed", result.failures
    assert r.data.all == {"a": ["a", "aa", "aaa"], "b": ["b", "bb", "bbb"]}
    inner = r["inner"].tasks()
    assert len(inner) == 6
    stacks = sorted(t.data.stack for t in inner)
    assert stacks[0] == [(0, 2), (0, 3)] and stacks[-1] == [(1, 2), (2, 3)]
    assert sorted(t.index for t in inner) == [0, 0, 1, 1, 2, 2]


def test_foreach_runs_concurrently(runtime: Any, tmp_path: Path) -> None:
    # A barrier, not a stopwatch: each split announces itself, then waits for the other.
    # Run one after the other, the first split would wait in vain and fail.
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    result, r, events = run(runtime, f"""
%%flow ParFlow
import pathlib, time
BARRIER = pathlib.Path({str(barrier)!r})
%%step start
self.items = [0, 1]
self.next(self.work, foreach="items")
%%step work
(BARRIER / str(self.input)).touch()
other = BARRIER / str(1 - self.input)
for _ in range(1200):
    if other.exists():
        break
    time.sleep(0.05)
self.saw_other = other.exists()
self.next(self.join)
%%step join(inputs)
self.saw = [i.saw_other for i in inputs]
self.next(self.end)
%%step end
pass
""", name="ParFlow", max_workers=2)
    assert result.status == "completed", result.failures
    assert r.data.saw == [True, True]
    order = [(k, p["step"]) for k, p in events if k in ("task_started", "task_finished") and p["step"] == "work"]
    assert order[:2] == [("task_started", "work"), ("task_started", "work")], order


def test_conditional_switch(runtime: Any) -> None:
    text = """
%%step start
self.choice = "hi" if self.value > 5 else "lo"
self.next({"hi": self.high, "lo": self.low}, condition="choice")
%%step high
self.result = "went high"
self.next(self.end)
%%step low
self.result = "went low"
self.next(self.end)
%%step end
pass
"""
    text = '%%flow SwitchFlow\nfrom flowcell import Parameter\nvalue = Parameter("value", default=1)\n' + text
    result, r, _ = run(runtime, text, {"value": "9"}, name="SwitchFlow")
    assert result.status == "completed", result.failures
    assert r.data.result == "went high"
    assert "low" not in r
    result, r, _ = run(runtime, text, name="SwitchFlow")
    assert r.data.result == "went low"


def test_tasks_are_isolated(runtime: Any) -> None:
    result, r, _ = run(runtime, """
%%flow IsoFlow
counter = []
%%step start
global leaked
leaked = "from start"
counter.append(1)
self.next(self.check)
%%step check
self.saw_leak = "leaked" in globals()
self.counter_len = len(counter)
self.next(self.end)
%%step end
pass
""", name="IsoFlow")
    assert result.status == "completed", result.failures
    assert r.data.saw_leak is False
    assert r.data.counter_len == 0, "module-level code runs afresh in every task"


def test_current_inside_steps(runtime: Any) -> None:
    result, r, _ = run(runtime, """
%%flow CurFlow
from flowcell import current, Parameter
alpha = Parameter("alpha", default=0.5)
%%step start
self.info = dict(flow=current.flow_name, run=current.run_id, step=current.step_name,
                 task=current.task_id, pathspec=current.pathspec, user=current.username,
                 ns=current.namespace, params=current.parameter_names, retry=current.retry_count,
                 running=current.is_running_flow)
self.next(self.end)
%%step end
pass
""", name="CurFlow")
    info = r["start"].task.data.info
    task = r["start"].task
    assert info["flow"] == "CurFlow" and info["run"] == str(result.run_number) and info["step"] == "start"
    assert info["pathspec"] == task.pathspec
    assert info["user"] == "tester" and info["ns"] == "user:tester"
    assert info["params"] == ["alpha"] and info["retry"] == 0 and info["running"] is True


def test_unchanged_artifacts_are_passed_by_reference(runtime: Any) -> None:
    result, r, _ = run(runtime, """
%%step start
self.big = list(range(10000))
self.small = 1
self.next(self.middle)
%%step middle
self.small += 1
self.next(self.end)
%%step end
pass
""")
    start, middle = r["start"].task, r["middle"].task
    assert start["big"].sha == middle["big"].sha
    assert start["small"].sha != middle["small"].sha
