"""Why is this step stale? (issue 14.3): the words for a change, the marks on the graph, reused tasks in a run."""

from __future__ import annotations

from typing import Any

from conftest import make_flow, run
from flowcell.sourcediff import (
    describe_lines, describe_list_change, describe_module_change, line_changes, unified_diff,
)

# -- describing a change ----------------------------------------------------------


def test_line_counts_of_a_changed_cell() -> None:
    old = "rows = load()\nself.rows = rows\nself.next(self.end)\n"
    new = "rows = load()\nrows = [r for r in rows if r]\nself.rows = sorted(rows)\nself.next(self.end)"
    # One line replaced, one inserted; the missing final newline is no change.
    assert line_changes(old, new) == (2, 1)
    assert describe_lines(2, 1) == "+2 \u22121 lines"
    assert describe_lines(1, 0) == "+1 \u22120 line"
    assert line_changes("a = 1   \n\n", "a = 1") == (0, 0)


def test_unified_diff_of_a_cell() -> None:
    diff = unified_diff("x = 1\ny = 2\n", "x = 1\ny = 3\n", "F/3/train (run 3)", "train (notebook)")
    assert diff.splitlines() == ["--- F/3/train (run 3)", "+++ train (notebook)", "@@ -1,2 +1,2 @@",
                                 " x = 1", "-y = 2", "+y = 3"]
    assert unified_diff("x = 1\n", "x = 1  \n", "a", "b") == ""


def test_module_code_changes_are_named_by_definition() -> None:
    old = {"import csv": "a", "def clean": "b", "THRESHOLD": "c", "class Model": "d"}
    assert describe_module_change(old, dict(old)) is None
    # Moving a definition is no change; changing one names it.
    moved = {"def clean": "b", "import csv": "a", "class Model": "d", "THRESHOLD": "c"}
    assert describe_module_change(old, moved) is None
    assert describe_module_change(old, {**old, "def clean": "B"}) == "module code changed (`def clean`)"
    grown = {**old, "THRESHOLD": "C", "def extra": "e"}
    del grown["class Model"]
    assert describe_module_change(old, grown) == \
        "module code changed (`THRESHOLD`; added `def extra`; removed `class Model`)"
    many = {f"def f{i}": "x" for i in range(5)}
    assert describe_module_change(many, {k: "y" for k in many}) == \
        "module code changed (`def f0`, `def f1`, `def f2` and 2 more)"


def test_decorator_changes() -> None:
    assert describe_list_change("decorators", ["@retry(times=2)"], ["@retry(times=2)"]) is None
    assert describe_list_change("decorators", ["@retry(times=2)"], ["@retry(times=3)"]) == \
        "decorators changed (@retry(times=2) \u2192 @retry(times=3))"
    assert describe_list_change("decorators", [], ["@card"]) == "decorators changed (none \u2192 @card)"


# -- the flow graph marks stale steps ---------------------------------------------

GRAPH = "%%step start\nself.next(self.train)\n%%step train\nself.next(self.end)\n%%step end\npass"


def test_graph_model_and_svg_mark_stale_steps_with_their_reasons() -> None:
    from flowcell.graph import build_graph
    from flowcell.widgets.graphmodel import flow_graph_svg, graph_model

    graph = build_graph(make_flow(GRAPH))
    reasons = {"train": ["cell changed (+1 \u22121 lines)"], "end": ["upstream step `train` is stale"]}
    statuses: dict[str, str | None] = {"start": "completed", "train": "completed", "end": "completed"}
    nodes = {n["id"]: n for n in graph_model(graph, statuses, stale=reasons)["nodes"]}
    assert "stale" not in nodes["start"]
    assert nodes["train"]["stale"] == ["cell changed (+1 \u22121 lines)"]
    svg = flow_graph_svg(graph, statuses, stale=reasons)
    assert svg.count("fc-step fc-stale") == 2 and "stroke-dasharray='5,3'" in svg
    assert "train: linear, completed; stale: cell changed (+1 \u22121 lines)" in svg
    assert "fc-stale" not in flow_graph_svg(graph, statuses)


def test_flow_graph_widget_carries_stale_marks_to_the_front_end() -> None:
    from flowcell.graph import build_graph
    from flowcell.widgets import FlowGraph

    graph = build_graph(make_flow(GRAPH))
    stale: dict[str, list[str]] = {}
    widget = FlowGraph(lambda: ("TestFlow", graph, {"start": "completed", "train": "completed"}),
                       stale=lambda: stale)
    assert not any("stale" in n for n in widget.graph["nodes"])
    stale["train"] = ["parameter alpha: 0.3 in run 2, default now 0.5"]
    widget.refresh()  # after a cell is run again, the widget is redrawn with the new marks
    nodes = {n["id"]: n for n in widget.graph["nodes"]}
    assert nodes["train"]["stale"] == ["parameter alpha: 0.3 in run 2, default now 0.5"]
    assert "fc-stale" in widget.fallback_html()


# -- a run shows the tasks it did not execute --------------------------------------

RESUMABLE = """
%%flow ResumeFlow
import os
%%step start
self.items = [1, 2, 3]
self.next(self.each, foreach="items")
%%step each
self.value = self.input * 10
self.next(self.join)
%%step join(inputs)
if os.path.exists("FAIL_JOIN"):
    raise ValueError("join fails")
self.total = sum(i.value for i in inputs)
self.next(self.end)
%%step end
pass
"""


def test_run_view_marks_reused_tasks_with_their_origin(runtime: Any, tmp_path: Any) -> None:
    from flowcell.client import Run
    from flowcell.runtime.runs import start_resume, start_run
    from flowcell.store.metadata import MetadataStore
    from flowcell.widgets.runview import run_view

    flag = tmp_path / "FAIL_JOIN"  # tasks run in the test's working directory
    flag.touch()
    first, _, _ = run(runtime, RESUMABLE, name="ResumeFlow")
    assert first.status == "failed"
    flag.unlink()
    resumed = start_resume(runtime, make_flow(RESUMABLE), None, None, {})
    assert resumed.status == "completed"
    meta = MetadataStore(resumed.root)
    view = run_view(meta, Run._open(resumed.pathspec, resumed.root)._record)
    nodes = {n["id"]: n for n in view["graph"]["nodes"]}
    # start and the three splits were cloned from run 1; join and end ran.
    assert nodes["start"]["cloned"] == 1 and nodes["each"]["cloned"] == 3 and nodes["each"]["tasks"] == 3
    assert "cloned" not in nodes["join"] and "reused" not in nodes["each"]
    tasks = {t["step"]: t for t in view["tasks"]}
    assert tasks["start"]["origin"].startswith("ResumeFlow/1/start/") and tasks["start"]["taken"] == "cloned"
    assert tasks["join"]["origin"] is None and tasks["join"]["taken"] is None
    assert view["reused"] == 4 and view["origin"] == "1"

    # A run with reuse: everything unchanged is taken from run 2, marked "reused" with its origin.
    again = start_run(runtime, make_flow(RESUMABLE), {}, reuse=True)
    view = run_view(meta, Run._open(again.pathspec, again.root)._record)
    nodes = {n["id"]: n for n in view["graph"]["nodes"]}
    assert [(n["id"], n.get("reused"), n.get("cloned")) for n in view["graph"]["nodes"]] == [
        ("start", 1, None), ("each", 3, None), ("join", 1, None), ("end", 1, None)]
    tasks = {t["step"]: t for t in view["tasks"]}
    assert tasks["join"]["taken"] == "reused" and tasks["join"]["origin"].startswith("ResumeFlow/2/join/")


def test_status_of_a_failed_run_and_of_its_resume(runtime: Any, tmp_path: Any) -> None:
    """A failed task and a step the run never reached are stale; a resume's cloned tasks are
    compared through the tasks they were cloned from."""
    from flowcell.runtime.runs import start_resume, start_run
    from flowcell.staleness import flow_status

    flag = tmp_path / "FAIL_JOIN"
    flag.touch()
    first, _, _ = run(runtime, RESUMABLE, name="ResumeFlow")
    flow = make_flow(RESUMABLE)
    report = flow_status(flow)
    assert report.run_id == "1" and report.stale == ["join", "end"]
    assert [r.message for r in report["join"].reasons] == ["failed in run 1"]
    assert [r.message for r in report["end"].reasons] == ["not in run 1", "upstream step `join` is stale"]
    assert report["each"].state == "up to date" and report["each"].tasks == 3
    flag.unlink()
    start_resume(runtime, flow, None, None, {})
    report = flow_status(flow)
    assert report.run_id == "2" and report.stale == []
    assert (report["start"].reused, report["each"].reused, report["join"].reused) == (1, 3, 0)
    assert report.headline() == "ResumeFlow: every step is up to date with run 2 (completed)."
    # The first run stays what it was.
    assert flow_status(flow, "1").stale == ["join", "end"]
    # A run that reused every task is compared through the tasks that ran.
    start_run(runtime, flow, {}, reuse=True)
    report = flow_status(flow)
    assert report.run_id == "3" and report.stale == [] and report["each"].reused == 3
    flow.steps["each"].body = flow.steps["each"].body.replace("* 10", "* 100")
    assert [(s.step, [r.message for r in s.reasons]) for s in flow_status(flow).steps if s.stale] == [
        ("each", ["cell changed (+1 \u22121 line)"]), ("join", ["upstream step `each` is stale"]),
        ("end", ["upstream step `join` is stale"])]


def test_a_step_added_and_one_removed_since_the_run(runtime: Any) -> None:
    from flowcell.staleness import flow_status

    run(runtime, "%%step start\nself.next(self.a)\n%%step a\nself.v = 1\nself.next(self.end)\n%%step end\npass",
        name="Renamed")
    flow = make_flow("%%step start\nself.next(self.b)\n%%step b\nself.v = 1\nself.next(self.end)\n%%step end\npass",
                     name="Renamed")
    report = flow_status(flow)
    # start's own transition changed (next b instead of a): its cell changed.
    assert [(s.step, [r.message for r in s.reasons]) for s in report.steps] == [
        ("start", ["cell changed (+1 \u22121 line)"]),
        ("b", ["not in run 1", "upstream step `start` is stale"]),
        ("end", ["upstream step `b` is stale"]),
    ]
    assert report.removed == ["a"]
    assert "(run 1 also has step a, no longer in the flow)" in str(report)


def test_a_run_recorded_before_fingerprints_says_so(runtime: Any, private_store: Any) -> None:
    """A store written by a flowcell older than fingerprints has runs without records: status says
    so, once per step, instead of guessing (and --diff has no old cell to show)."""
    import sqlite3

    import pytest

    from flowcell.errors import NotFoundError
    from flowcell.staleness import flow_status, step_diff

    run(runtime, GRAPH, name="OldFlow")
    with sqlite3.connect(private_store / "metadata.sqlite") as db:
        db.execute("DELETE FROM task_fingerprints")
    report = flow_status(make_flow(GRAPH, name="OldFlow"))
    assert [r.message for r in report["train"].reasons] == [
        "run 1 recorded no fingerprint of it (an older flowcell); run the flow again to compare with",
        "upstream step `start` is stale"]
    with pytest.raises(NotFoundError, match="Run 1 kept no copy of step 'train'"):
        step_diff(make_flow(GRAPH, name="OldFlow"), "train")
