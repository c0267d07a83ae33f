"""Reuse of unchanged tasks (issue 14 item 2), on real kernels.

Every test runs a flow fresh, then again with ``reuse=True`` (sometimes after a
change), and checks which tasks ran, which were reused and from where, and that
the reusing run's results equal those of a fresh run of the same flow.
"""

from __future__ import annotations

from typing import Any

from conftest import make_flow
from flowcell.runtime.runs import start_run
from flowcell.runtime.scheduler import stack_key
from flowcell.store.metadata import MetadataStore


def go(runtime: Any, text: str, params: dict[str, Any] | None = None, reuse: bool = False) -> Any:
    events: list[tuple[str, dict[str, Any]]] = []
    result = start_run(runtime, make_flow(text), params or {}, reuse=reuse,
                       observer=lambda k, p: events.append((k, p)))
    assert result.status == "completed", result.failures
    result.events = events
    return result


def outputs(result: Any) -> dict[tuple[str, tuple[Any, ...]], dict[str, str]]:
    """(step, foreach position) -> {artifact: content address} of a run (what a user can read)."""
    meta = MetadataStore(result.root)
    try:
        return {(t.step, stack_key(t.foreach_stack)): {n: r["address"] for n, r in
                                                       meta.artifacts(t.flow, t.run_number, t.task_id).items()}
                for t in meta.tasks(result.flow, result.run_number) if not t.step.startswith("_")}
    finally:
        meta.close()


def reused_steps(result: Any) -> list[str]:
    return sorted(p.split("/")[2] for p, _ in result.reused)


def ran_steps(result: Any) -> list[str]:
    return sorted(p["step"] for k, p in result.events if k == "task_started")


def same_as_fresh(runtime: Any, text: str, reusing: Any, params: dict[str, Any] | None = None) -> None:
    """The reusing run's outputs equal those of a fresh run of the same flow and parameters."""
    fresh = go(runtime, text, params)
    a, b = outputs(fresh), outputs(reusing)
    assert a.keys() == b.keys()
    for key in a:
        assert a[key] == b[key], key


LINEAR = """
%%flow TestFlow
from flowcell import Parameter
alpha = Parameter("alpha", default=0.5)
%%step start
self.data = list(range(10))
self.next(self.load)
%%step load
print("loading")
self.rows = [x * 2 for x in self.data]
self.next(self.train)
%%step train
self.model = sum(self.rows) * self.alpha
self.next(self.end)
%%step end
self.result = round(self.model, 3)
"""


def test_nothing_changed_reuses_every_task_and_names_the_origin(runtime: Any) -> None:
    first = go(runtime, LINEAR)
    second = go(runtime, LINEAR, reuse=True)
    assert ran_steps(second) == []
    assert reused_steps(second) == ["end", "load", "start", "train"]
    assert {o.split("/")[1] for _, o in second.reused} == {str(first.run_number)}
    assert second.reuse_summary() == f"reused 4 of 4 tasks (from run {first.run_number})"
    finished = [p for k, p in second.events if k == "task_finished"]
    assert all(p["reused"].startswith(f"TestFlow/{first.run_number}/") for p in finished)
    meta = MetadataStore(second.root)
    try:
        load = meta.tasks("TestFlow", second.run_number, "load")[0]
        assert load.origin == f"TestFlow/{first.run_number}/load/{meta.tasks('TestFlow', first.run_number, 'load')[0].task_id}"
        assert "loading" in load.stdout  # the origin's logs come along
        assert (load.transition or {}).get("reused") is True
    finally:
        meta.close()
    assert outputs(second) == outputs(first)
    # Without --reuse (Metaflow's semantics) everything runs.
    third = go(runtime, LINEAR)
    assert ran_steps(third) == ["end", "load", "start", "train"] and third.reused == []


def test_a_parameter_only_train_reads_reruns_train_and_downstream_not_load(runtime: Any) -> None:
    go(runtime, LINEAR, {"alpha": 0.5})
    second = go(runtime, LINEAR, {"alpha": 0.25}, reuse=True)
    assert reused_steps(second) == ["load", "start"]
    assert ran_steps(second) == ["end", "train"]
    same_as_fresh(runtime, LINEAR, second, {"alpha": 0.25})
    # The parameter passes through the reused load to train with its new value.
    meta = MetadataStore(second.root)
    try:
        end = meta.tasks("TestFlow", second.run_number, "end")[0]
        assert meta.artifacts("TestFlow", second.run_number, end.task_id)["alpha"]["address"]
    finally:
        meta.close()


def test_a_changed_step_reruns_it_and_a_same_result_lets_children_reuse(runtime: Any) -> None:
    go(runtime, LINEAR)
    changed = LINEAR.replace("self.rows = [x * 2 for x in self.data]", "self.rows = [x + x for x in self.data]")
    second = go(runtime, changed, reuse=True)
    # load's code changed so it ran; its output bytes are equal, so train and end are reused.
    assert ran_steps(second) == ["load"]
    assert reused_steps(second) == ["end", "start", "train"]
    different = LINEAR.replace("x * 2", "x * 3")
    third = go(runtime, different, reuse=True)
    assert ran_steps(third) == ["end", "load", "train"]
    same_as_fresh(runtime, different, third)


FOREACH = """
%%flow TestFlow
from flowcell import Parameter
items = Parameter("items", default="a,b,c,d")
%%step start
self.letters = self.items.split(",")
self.next(self.each, foreach="letters")
%%step each
self.up = self.input.upper()
self.next(self.join)
%%step join(inputs)
self.ups = [i.up for i in inputs]
self.next(self.end)
%%step end
pass
"""


def test_a_changed_foreach_list_reruns_only_the_changed_splits(runtime: Any) -> None:
    go(runtime, FOREACH)
    second = go(runtime, FOREACH, {"items": "a,B,c,d,e"}, reuse=True)
    ran = [p["pathspec"] for k, p in second.events if k == "task_started"]
    assert ran_steps(second) == ["each", "each", "join", "start"]
    assert sorted(p.split("/")[-1] for p in ran if "/each/" in p)  # the splits of B and e
    # end reads nothing of its inputs, so it is reused; its outputs still carry the new `ups`.
    assert reused_steps(second) == ["each", "each", "each", "end"]  # a, c, d
    same_as_fresh(runtime, FOREACH, second, {"items": "a,B,c,d,e"})


def test_nested_foreach_reuses_unchanged_inner_splits(runtime: Any) -> None:
    text = """
%%flow TestFlow
from flowcell import Parameter
scale = Parameter("scale", default=1)
%%step start
self.outer = [1, 2]
self.next(self.mid, foreach="outer")
%%step mid
self.base = self.input
self.inner = [10, 20, 30]
self.next(self.leaf, foreach="inner")
%%step leaf
self.val = self.base * self.input * (self.scale if self.input == 30 else 1)
self.next(self.inner_join)
%%step inner_join(inputs)
self.total = sum(i.val for i in inputs)
self.next(self.outer_join)
%%step outer_join(inputs)
self.totals = [i.total for i in inputs]
self.next(self.end)
%%step end
self.grand = sum(self.totals)
"""
    go(runtime, text)
    second = go(runtime, text, {"scale": 2}, reuse=True)
    # Only the leaves with input 30 read `scale`; everything they feed runs again.
    assert ran_steps(second) == ["end", "inner_join", "inner_join", "leaf", "leaf", "outer_join"]
    assert reused_steps(second) == ["leaf", "leaf", "leaf", "leaf", "mid", "mid", "start"]
    same_as_fresh(runtime, text, second, {"scale": 2})


BRANCHES = """
%%flow TestFlow
from flowcell import Parameter
k = Parameter("k", default=1)
%%step start
self.shared = "s"
self.next(self.a, self.b)
%%step a
self.x = 1
self.next(self.join)
%%step b
self.y = 2 * self.k
self.next(self.join)
%%step join(inputs)
self.merge_artifacts(inputs)
self.next(self.end)
%%step end
self.seen = self.y
"""


def test_a_join_runs_when_any_input_changed(runtime: Any) -> None:
    go(runtime, BRANCHES)
    same = go(runtime, BRANCHES, reuse=True)
    assert ran_steps(same) == []
    second = go(runtime, BRANCHES, {"k": 5}, reuse=True)
    assert ran_steps(second) == ["b", "end", "join"]
    assert reused_steps(second) == ["a", "start"]
    same_as_fresh(runtime, BRANCHES, second, {"k": 5})


def test_conditions_reuse_the_recorded_branch_and_follow_a_new_one(runtime: Any) -> None:
    text = """
%%flow TestFlow
from flowcell import Parameter
level = Parameter("level", default=1)
%%step start
self.choice = "hi" if self.level > 5 else "lo"
self.next({"hi": self.high, "lo": self.low}, condition="choice")
%%step high
self.msg = "high"
self.next(self.end)
%%step low
self.msg = "low"
self.next(self.end)
%%step end
self.final = self.msg.upper()
"""
    go(runtime, text)
    same = go(runtime, text, {"level": 2}, reuse=True)
    assert ran_steps(same) == ["start"]  # reads level, which changed; the same choice follows
    assert reused_steps(same) == ["end", "low"]
    other = go(runtime, text, {"level": 9}, reuse=True)
    assert ran_steps(other) == ["end", "high", "start"]
    again = go(runtime, text, {"level": 9}, reuse=True)
    assert ran_steps(again) == [] and reused_steps(again) == ["end", "high", "start"]
    same_as_fresh(runtime, text, again, {"level": 9})


def test_a_caught_failure_is_reused_with_its_catch_variable(runtime: Any) -> None:
    text = """
%%step start
self.x = 1
self.next(self.risky)
%%step risky @catch(var="err")
self.y = 2
raise ValueError("boom")
self.next(self.end)
%%step end
self.seen = self.err is not None
"""
    go(runtime, text)
    second = go(runtime, text, reuse=True)
    assert ran_steps(second) == []
    same_as_fresh(runtime, text, second)
    meta = MetadataStore(second.root)
    try:
        risky = meta.tasks("TestFlow", second.run_number, "risky")[0]
        assert "err" in meta.artifacts("TestFlow", second.run_number, risky.task_id)
    finally:
        meta.close()


def test_a_step_marked_no_reuse_always_runs(runtime: Any) -> None:
    text = LINEAR.replace("%%step load", "%%step load --no-reuse")
    go(runtime, text)
    second = go(runtime, text, reuse=True)
    assert ran_steps(second) == ["load"]
    assert reused_steps(second) == ["end", "start", "train"]  # load's output bytes did not change


def test_a_changed_module_function_reruns_every_step(runtime: Any) -> None:
    text = LINEAR.replace('alpha = Parameter("alpha", default=0.5)',
                          'alpha = Parameter("alpha", default=0.5)\ndef helper():\n    return 1')
    go(runtime, text)
    second = go(runtime, text.replace("return 1", "return 2"), reuse=True)
    assert ran_steps(second) == ["end", "load", "start", "train"]


def test_a_changed_parameter_default_reruns_only_its_readers(runtime: Any) -> None:
    go(runtime, LINEAR)
    second = go(runtime, LINEAR.replace("default=0.5", "default=0.75"), reuse=True)
    assert ran_steps(second) == ["end", "train"]


# -- the surfaces users meet: example notebooks, the CLI, the magics, the export --------------------


import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import nbformat  # noqa: E402
import pytest  # noqa: E402

from conftest import ROOT  # noqa: E402
from flowcell.model import read_notebook  # noqa: E402


@pytest.mark.parametrize("name", ["quickstart", "model_selection"])
def test_example_notebooks_reuse_everything_and_equal_a_fresh_run(runtime: Any, name: str) -> None:
    flow = read_notebook(ROOT / "notebooks" / f"{name}.ipynb")
    first = start_run(runtime, flow, {})
    second = start_run(runtime, flow, {}, reuse=True)
    assert first.status == second.status == "completed"
    assert second.reused and len(second.reused) == second.tasks
    assert outputs(second) == outputs(first)


def test_quickstart_with_a_new_alpha_reruns_only_what_reads_it(runtime: Any) -> None:
    flow = read_notebook(ROOT / "notebooks" / "quickstart.ipynb")
    start_run(runtime, flow, {"alpha": 0.3})
    second = start_run(runtime, flow, {"alpha": 0.7}, reuse=True)
    fresh = start_run(runtime, flow, {"alpha": 0.7})
    assert outputs(second) == outputs(fresh)
    reused = {p.split("/")[2] for p, _ in second.reused}
    assert {"start", "stats", "split_groups"} <= reused  # none of them reads alpha
    assert "score_group" not in reused and "collect" not in reused


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flowcell.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_cli_run_reuse_says_what_it_reused_and_json_lists_the_tasks(tmp_path: Path) -> None:
    nb = ROOT / "notebooks" / "quickstart.ipynb"
    assert cli("run", str(nb), "--quiet", cwd=tmp_path).returncode == 0
    proc = cli("run", str(nb), "--reuse", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "QuickstartFlow/2 completed; reused 9 of 9 tasks (from run 1)" in proc.stderr
    assert "reused QuickstartFlow/1/start/" in proc.stderr  # progress names each reused task and its origin
    proc = cli("run", str(nb), "--reuse", "--alpha", "0.9", "--json", cwd=tmp_path)
    result = json.loads(proc.stdout)
    steps = sorted({r["pathspec"].split("/")[2] for r in result["reused"]})
    assert "start" in steps and "score_group" not in steps
    assert all(r["origin"].startswith("QuickstartFlow/") for r in result["reused"])


def test_magics_reuse_flag_and_session_default(tmp_path: Path) -> None:
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in [
        "%load_ext flowcell",
        "%%flow MagicReuseFlow\nK = 1",
        "%%step start\nself.x = 1\nself.next(self.end)",
        "%%step end\nself.y = self.x + 1",
        "first = %run_flow",
        "second = %run_flow --reuse",
        "%flowcell reuse on",
        "third = %run_flow",
        "%flowcell reuse off",
        "fourth = %run_flow",
        "print([t.origin_pathspec for r in (second, third, fourth) for t in (r['start'].task, r['end'].task)])",
    ]]
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()

    def text(i: int) -> str:
        return "".join(o.get("text", "") for o in nb.cells[i].outputs if o["output_type"] == "stream")

    assert "MagicReuseFlow/2: reused 2 of 2 tasks (from run 1)" in text(5)
    assert "reuse on" in text(6) and "MagicReuseFlow/3: reused 2 of 2 tasks (from run 1)" in text(7)
    assert "reused" not in text(9)
    origins = text(10)
    assert origins.count("MagicReuseFlow/1/") == 4 and "None, None" in origins


def test_no_reuse_marker_does_not_reach_the_export_and_metaflow_runs_it(tmp_path: Path) -> None:
    import os

    from flowcell.export import export_source

    text = LINEAR.replace("%%step load", "%%step load @retry(times=1) --no-reuse")
    flow = make_flow(text)
    assert flow.steps["load"].no_reuse and [d.name for d in flow.steps["load"].decorators] == ["retry"]
    source = export_source(flow)
    assert "no-reuse" not in source and "no_reuse" not in source
    (tmp_path / "flow.py").write_text(source)
    env = dict(os.environ, METAFLOW_DEFAULT_DATASTORE="local", METAFLOW_DEFAULT_METADATA="local",
               USERNAME="tester", HOME=str(tmp_path))
    proc = subprocess.run([sys.executable, "flow.py", "--quiet", "run"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_an_unknown_step_option_is_one_clear_sentence() -> None:
    from flowcell.errors import FlowSyntaxError

    with pytest.raises(FlowSyntaxError, match="unknown %%step option --no-reuse-please; the options are --no-reuse"):
        make_flow("%%step start --no-reuse-please\nself.next(self.end)\n%%step end\npass")


def test_client_lists_reused_tasks_with_their_origin(runtime: Any) -> None:
    from flowcell.client import Run

    first = go(runtime, LINEAR, {"alpha": 0.5})
    second = go(runtime, LINEAR, {"alpha": 0.25}, reuse=True)
    run = Run._open(second.pathspec, second.root)
    reused = run.reused
    assert [t.pathspec.split("/")[2] for t in reused] == ["start", "load"]
    assert all(t.reused and t.origin_pathspec.startswith(f"TestFlow/{first.run_number}/") for t in reused)
    assert not run["train"].task.reused and run["train"].task.origin_pathspec is None
    assert run["load"].task["rows"].data == Run._open(first.pathspec, first.root)["load"].task["rows"].data
    # A resume's clones have an origin but were not reused.
    from flowcell.runtime.runs import start_resume

    resumed = start_resume(runtime, make_flow(LINEAR), "train")
    clone = Run._open(resumed.pathspec, resumed.root)["load"].task
    assert clone.origin_pathspec and not clone.reused
    assert Run._open(resumed.pathspec, resumed.root).reused == []


def test_splits_without_an_item_digest_always_run(runtime: Any) -> None:
    import json as _json

    first = go(runtime, FOREACH)
    meta = MetadataStore(first.root)
    try:  # as recorded by a flowcell before item digests: the foreach parent's transition has no items
        start = meta.tasks("TestFlow", first.run_number, "start")[0]
        transition = {k: v for k, v in (start.transition or {}).items() if k != "items"}
        with meta.transaction() as cur:
            cur.execute("UPDATE tasks SET transition = ? WHERE flow = ? AND run_number = ? AND task_id = ?",
                        (_json.dumps(transition), "TestFlow", first.run_number, start.task_id))
    finally:
        meta.close()
    second = go(runtime, FOREACH, reuse=True)
    # start matched; without item digests its splits run (equal outputs then let join and end reuse)
    assert reused_steps(second) == ["end", "join", "start"]
    assert ran_steps(second).count("each") == 4
    same_as_fresh(runtime, FOREACH, second)


def test_runner_run_with_reuse(tmp_path: Path) -> None:
    from flowcell import Runner

    nb = tmp_path / "small.ipynb"
    book = nbformat.v4.new_notebook()
    book.cells = [nbformat.v4.new_code_cell(c) for c in
                  ["%%flow SmallFlow\nK = 2", "%%step start\nself.x = K\nself.next(self.end)",
                   "%%step end\nself.y = self.x * 2"]]
    nbformat.write(book, str(nb))
    with Runner(nb).run() as first:
        assert first.run.reused == []
    with Runner(nb).run(reuse=True) as second:
        run = second.run
        assert [t.origin_pathspec for t in run.reused] == [t.pathspec for t in
                                                           (first.run["start"].task, first.run["end"].task)]
        assert run.data.y == 4


def test_a_metaflow_flow_file_reuses_what_did_not_change(runtime: Any, tmp_path: Path) -> None:
    from flowcell.importer import read_flow_file

    source = '''from metaflow import FlowSpec, Parameter, step


class FileFlow(FlowSpec):
    alpha = Parameter("alpha", default=1)
    SCALE = 10

    def helper(self):
        return self.SCALE

    @step
    def start(self):
        self.base = self.helper()
        self.next(self.train)

    @step
    def train(self):
        self.model = self.base * self.alpha
        self.next(self.end)

    @step
    def end(self):
        self.out = self.model + 1


if __name__ == "__main__":
    FileFlow()
'''
    path = tmp_path / "file_flow.py"
    path.write_text(source)
    start_run(runtime, read_flow_file(path), {})
    second = start_run(runtime, read_flow_file(path), {"alpha": 3}, reuse=True)
    assert sorted(p.split("/")[2] for p, _ in second.reused) == ["start"]
    path.write_text(source.replace("SCALE = 10", "SCALE = 20"))  # class code counts for every step
    third = start_run(runtime, read_flow_file(path), {"alpha": 3}, reuse=True)
    assert third.reused == []
