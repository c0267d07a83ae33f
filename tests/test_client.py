"""The Client as Metaflow users know it: navigation, namespaces, tags, ``current``."""

from __future__ import annotations

import multiprocessing
import os
import pickle
from pathlib import Path
from typing import Any

import pytest

from conftest import run
from flowcell import current
from flowcell.client import DataArtifact, Flow, Run, Step, Task, get_namespace, namespace
from flowcell.errors import FlowcellError, InvalidNameError, NamespaceMismatch, NotFoundError

SIMPLE = "%%step start\nself.x = 1\nself.next(self.a, self.b)\n%%step a\nself.y = 'a'\nself.next(self.j)\n" \
         "%%step b\nself.y = 'b'\nself.next(self.j)\n%%step j(inputs)\nself.ys = [i.y for i in inputs]\n" \
         "self.next(self.end)\n%%step end\npass"


@pytest.fixture
def simple(runtime: Any) -> Run:
    """A run of SIMPLE (a static branch and its join) tagged 'exp'."""
    _, r, _ = run(runtime, SIMPLE, tags=["exp"])
    return r


def test_flow_finds_its_latest_runs_and_a_run_lists_steps_newest_first(simple: Run) -> None:
    flow = Flow("TestFlow")
    assert flow.latest_run.pathspec == simple.pathspec == flow.latest_successful_run.pathspec
    assert [s.id for s in simple.steps()] == ["end", "j", "b", "a", "start"]
    assert Step(f"{simple.pathspec}/a").task.data.y == "a"


def test_task_artifacts_by_attribute_item_and_membership(simple: Run) -> None:
    task = Task(f"{simple.pathspec}/start/{simple['start'].task.id}")
    assert task.data.x == 1 and task["x"].data == 1 and "x" in task and "nope" not in task
    art = task["x"]
    assert isinstance(art, DataArtifact) and art.size > 0 and len(art.sha) == 64 and art.type == "builtins.int"
    assert task.finished and task.successful


def test_parent_and_child_tasks(simple: Run) -> None:
    start = simple["start"].task
    assert {t.pathspec for t in start.child_tasks} == {simple["a"].task.pathspec, simple["b"].task.pathspec}
    join = simple["j"].task
    assert {t.id for t in join.parent_tasks} == {simple["a"].task.id, simple["b"].task.id}
    assert join.data.ys == ["a", "b"]


def test_run_timestamps_and_tags(simple: Run) -> None:
    assert simple.finished_at >= simple.created_at
    assert simple.tags >= {"exp", "user:tester", "runtime:flowcell"} and simple.user_tags == {"exp"}
    assert any(t.startswith("python_version:") for t in simple.system_tags)
    assert any(t.startswith("flowcell_version:") for t in simple.system_tags)


def test_client_objects_pickle_and_print_as_their_pathspec(simple: Run) -> None:
    task = simple["start"].task
    again = pickle.loads(pickle.dumps(task))
    assert again.data.x == 1 and repr(again) == f"Task('{task.pathspec}')"
    assert pickle.loads(pickle.dumps(simple)).pathspec == simple.pathspec


@pytest.mark.parametrize("bad", ["TestFlow", "TestFlow/x", "TestFlow/1/start/1/extra", "", "/"])
def test_bad_pathspecs_have_clear_errors(runtime: Any, bad: str) -> None:
    run(runtime, SIMPLE)
    with pytest.raises(NotFoundError):
        Run(bad)


def test_missing_objects(runtime: Any) -> None:
    run(runtime, SIMPLE)
    with pytest.raises(NotFoundError, match="does not exist"):
        Run("TestFlow/99")
    with pytest.raises(NotFoundError, match="does not exist"):
        Task("TestFlow/1/start/999")
    with pytest.raises(NotFoundError, match="no runs"):
        Flow("NoSuchFlow")


def test_anne_and_will(runtime: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Seed 004's story: each user sees their own latest run unless they switch."""
    monkeypatch.setenv("FLOWCELL_USER", "anne")
    anne1, _, _ = run(runtime, SIMPLE, name="PredictionFlow")
    monkeypatch.setenv("FLOWCELL_USER", "will")
    will1, _, _ = run(runtime, SIMPLE, name="PredictionFlow")
    monkeypatch.setenv("FLOWCELL_USER", "anne")
    anne2, _, _ = run(runtime, SIMPLE, name="PredictionFlow", tags=["xyz_features"])
    monkeypatch.setenv("FLOWCELL_USER", "will")
    will2, _, _ = run(runtime, SIMPLE, name="PredictionFlow")

    monkeypatch.setenv("FLOWCELL_USER", "anne")
    assert get_namespace() == "user:anne"
    assert Flow("PredictionFlow").latest_run.pathspec == anne2.pathspec
    with pytest.raises(NamespaceMismatch, match="user:anne.*namespace"):
        Run(will2.pathspec)
    namespace("user:will")
    assert Flow("PredictionFlow").latest_run.pathspec == will2.pathspec
    assert Run(will2.pathspec).successful
    namespace("xyz_features")
    assert Flow("PredictionFlow").latest_run.pathspec == anne2.pathspec
    namespace(None)
    assert Flow("PredictionFlow").latest_run.pathspec == will2.pathspec
    assert len(Flow("PredictionFlow").runs()) == 4
    namespace("user:anne")
    assert [r.pathspec for r in Flow("PredictionFlow").runs("xyz_features")] == [anne2.pathspec]
    namespace("user:will")
    assert Flow("PredictionFlow").runs("xyz_features") == [], "tag filters AND the namespace"


def test_production_namespace(runtime: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWCELL_PRODUCTION_TOKEN", "tok123")
    from flowcell.client import default_namespace

    assert default_namespace() == "production:tok123"
    result, r, _ = run(runtime, SIMPLE)
    assert "production:tok123" in r.system_tags
    assert Flow("TestFlow").latest_run.pathspec == r.pathspec


def test_tag_mutation_semantics(runtime: Any) -> None:
    _, r, _ = run(runtime, SIMPLE, tags=["one"])
    r.add_tag("two")
    r.add_tags(["three", "ünïcødé ✓"])
    assert r.user_tags == {"one", "two", "three", "ünïcødé ✓"}
    r.remove_tag("one")
    r.replace_tag("two", "deux")
    r.replace_tags(["three"], ["trois", "drei"])
    assert Run(r.pathspec).user_tags == {"deux", "trois", "drei", "ünïcødé ✓"}
    with pytest.raises(FlowcellError, match="system tag"):
        r.remove_tag("user:tester")
    for bad in ["", "   ", "x" * 501]:
        with pytest.raises(InvalidNameError):
            r.add_tag(bad)
    with pytest.raises(InvalidNameError):
        r.add_tags("not-a-list")  # type: ignore[arg-type]
    with pytest.raises(InvalidNameError, match="at most 50"):
        r.add_tags([f"t{i}" for i in range(60)])
    assert Run(r.pathspec).user_tags == {"deux", "trois", "drei", "ünïcødé ✓"}, "failed changes change nothing"
    assert [x.pathspec for x in Flow("TestFlow").runs("trois", "drei")] == [r.pathspec]


def _tagger(root: str, pathspec: str, prefix: str) -> None:
    os.environ["FLOWCELL_ROOT"] = root
    from flowcell.client import Run

    run_obj = Run(pathspec)
    for i in range(15):
        run_obj.add_tag(f"{prefix}{i}")


def test_concurrent_taggers_lose_nothing(runtime: Any, private_store: Path) -> None:
    _, r, _ = run(runtime, SIMPLE)
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        pool.starmap(_tagger, [(str(private_store), r.pathspec, p) for p in ("a", "b", "c")])
    assert len(Run(r.pathspec).user_tags) == 45


def test_current_outside_a_task() -> None:
    assert current.flow_name is None and current.pathspec is None and current.is_running_flow is False
    with pytest.raises(AttributeError, match="knows"):
        current.no_such_field  # noqa: B018


def test_current_pathspec_usable_in_task_and_namespace_flag(runtime: Any) -> None:
    text = """
%%flow NsFlow
from flowcell import current, Task, get_namespace
%%step start
self.me = Task(current.pathspec).pathspec if get_namespace() == "user:tester" else None
self.ns = get_namespace()
self.tags = current.tags
self.next(self.end)
%%step end
pass
"""
    _, r, _ = run(runtime, text, name="NsFlow", tags=["t1"])
    task = r["start"].task
    assert task.data.me == task.pathspec
    assert task.data.ns == "user:tester" and task.data.tags == {"t1"}, "a set, as Metaflow gives it"
    _, r, _ = run(runtime, text, name="NsFlow", namespace="user:someone")
    assert r["start"].task.data.ns == "user:someone"


def test_tag_mutation_follows_metaflows_rules(runtime: Any) -> None:
    """Issue 13: Metaflow's own tag-mutation checks (its core suite's TagMutationTest)."""
    _, r, _ = run(runtime, SIMPLE)
    system = sorted(r.system_tags)[0]
    r.add_tags(["along", system])
    assert "along" in r.user_tags and system not in r.user_tags, "a system tag is not added as a user tag"
    with pytest.raises(FlowcellError, match="system tag"):
        r.remove_tags(["along", system])
    assert "along" in Run(r.pathspec).user_tags, "all or nothing"
    r.add_tag(["whoop", "eee"])  # Metaflow's older form: a list where one tag is expected
    r.replace_tag(["whoop", "eee"], ["woo", "hoo"])
    r.add_tag("新想法".encode())  # UTF-8 bytes are text
    assert {"woo", "hoo", "新想法"} <= r.user_tags and not {"whoop", "eee"} & r.user_tags
    r.remove_tag(["woo", "hoo"])
    for bad in (lambda: r.replace_tags([], []), lambda: r.remove_tag(4), lambda: r.add_tag(b"\xff\xfe"),
                lambda: r.add_tag("a" * 600)):
        with pytest.raises(InvalidNameError):
            bad()
    assert Run(r.pathspec).user_tags == {"along", "新想法"}
