"""Spin, resume and the Runner, on real kernels and notebooks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest

from flowcell import Runner
from flowcell.client import Flow, Run, Task, inspect_spin
from flowcell.errors import FlowcellError, NamespaceMismatch, NotFoundError

TRAIN = [
    "%%flow TrainFlow\nimport numpy as np\nfrom flowcell import Parameter, current\nk = Parameter('k', default=3)",
    "%%step start\nself.big = np.zeros(2_000_000)\nself.small = 'tiny'\nself.items = ['a', 'b', 'c']\n"
    "self.next(self.train, self.other)",
    "%%step train\nprint('training with k =', self.k)\nself.model = f'kmeans-{self.k}-{self.small}'\n"
    "self.where = current.pathspec\nself.next(self.join)",
    "%%step other\nself.fan = list(self.items)\nself.next(self.each, foreach='fan')",
    "%%step each\nself.item = self.input\nself.pos = self.index\nself.next(self.gather)",
    "%%step gather(inputs)\nself.items_seen = [i.item for i in inputs]\nself.next(self.join)",
    "%%step join(inputs)\nself.model = inputs.train.model\nself.items_seen = inputs.gather.items_seen\n"
    "self.next(self.end)",
    "%%step end\nprint('done', self.model)",
]


def write_notebook(path: Path, cells: list[str]) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    nbformat.write(nb, str(path))
    return path


@pytest.fixture
def train_nb(tmp_path: Path) -> Path:
    return write_notebook(tmp_path / "train.ipynb", TRAIN)


def test_runner_run_then_spin_with_overrides_and_persist(train_nb: Path, tmp_path: Path) -> None:
    with Runner(train_nb).run(k=5) as running:
        run = running.run
        assert running.successful and run.data.model == "kmeans-5-tiny"
    with Runner(train_nb).spin("train", artifacts={"k": 1}, persist=True) as spin:
        assert spin.successful
        assert spin.task["model"].data == "kmeans-1-tiny"
        assert "training with k = 1" in spin.stdout
        assert spin.inputs_from == f"{run.pathspec}/train/{run['train'].task.id}"
        assert spin.summary()["created"] == ["model", "where"]
    # A spin records no run.
    assert Flow("TrainFlow").latest_run.pathspec == run.pathspec
    assert len(Flow("TrainFlow").runs()) == 1
    assert (tmp_path / ".flowcell_spin").is_dir()
    inspect_spin(".")
    assert Flow("TrainFlow").latest_run["train"].task["model"].data == "kmeans-1-tiny"


def test_pathspec_forms(train_nb: Path) -> None:
    with Runner(train_nb).run() as running:
        run = running.run
    task = run["train"].task
    forms = ["train", f"{run.id}/train", f"{run.id}/train/{task.id}", f"TrainFlow/{run.id}/train",
             f"TrainFlow/{run.id}/train/{task.id}"]
    for form in forms:
        with Runner(train_nb).spin(form) as spin:
            assert spin.successful, (form, spin.exception)
            assert spin.inputs_from.endswith(f"/train/{task.id}")


def test_spin_foreach_task_keeps_input_and_index(train_nb: Path) -> None:
    with Runner(train_nb).run() as running:
        run = running.run
    second = sorted(run["each"].tasks(), key=lambda t: t.index)[1]
    with Runner(train_nb).spin(f"{run.id}/each/{second.id}") as spin:
        assert spin.task["item"].data == "b" and spin.task["pos"].data == 1


def test_spin_join_gets_all_parents_and_pathspec_overrides(train_nb: Path) -> None:
    with Runner(train_nb).run() as running:
        run = running.run
    with Runner(train_nb).spin("gather") as spin:
        assert spin.task["items_seen"].data == ["a", "b", "c"]
    first = sorted(run["each"].tasks(), key=lambda t: t.index)[0]
    with Runner(train_nb).spin("gather", artifacts={f"{run.id}/each/{first.id}": {"item": "z"}}) as spin:
        assert spin.task["items_seen"].data == ["z", "b", "c"]


def test_spin_is_lazy_untouched_artifacts_are_never_read(train_nb: Path, private_store: Path) -> None:
    with Runner(train_nb).run() as running:
        run = running.run
    big = run["start"].task["big"]
    # Corrupt the large artifact's bytes: a spin that does not touch it still works.
    for address in [big.sha] + [p.name for p in (private_store / "blobs").rglob("*") if p.is_file()
                                 and p.stat().st_size >= 16_000_000]:
        path = next((private_store / "blobs").rglob(address))
        os.chmod(path, 0o644)
        with open(path, "r+b") as fh:
            fh.seek(100)
            fh.write(b"\x00\x01\x02")
    with Runner(train_nb).spin("train") as spin:
        assert spin.successful, spin.exception
        assert spin.task["model"].data == "kmeans-3-tiny"
        assert spin.task["big"].sha == big.sha, "passed on by reference"


def test_conditional_step_spins(tmp_path: Path) -> None:
    nb = write_notebook(tmp_path / "cond.ipynb", [
        "%%flow CondFlow",
        "%%step start\nself.choice = 'hi'\nself.next({'hi': self.high, 'lo': self.low}, condition='choice')",
        "%%step high\nself.r = 'high'\nself.next(self.end)",
        "%%step low\nself.r = 'low'\nself.next(self.end)",
        "%%step end\nself.final = self.r",
    ])
    with Runner(nb).run() as running:
        assert running.run.data.final == "high"
    with Runner(nb).spin("end") as spin:
        assert spin.task["final"].data == "high"
    with Runner(nb).spin("high") as spin:
        assert spin.task["r"].data == "high"


def test_failing_spin_returns_status_exception_and_logs(train_nb: Path) -> None:
    with Runner(train_nb).run():
        pass
    with Runner(train_nb).spin("train", artifacts={"k": "not-a-number"}) as spin:
        assert spin.successful  # a string is fine for an f-string...
    nb = write_notebook(train_nb.parent / "bad.ipynb", TRAIN[:2] + [
        "%%step train\nprint('before failure')\nraise KeyError('missing feature')\nself.next(self.join)",
    ] + TRAIN[3:])
    with Runner(nb).spin("train") as spin:
        assert not spin.successful and spin.status == "failed"
        assert "KeyError" in spin.exception and "missing feature" in spin.exception
        assert "before failure" in spin.stdout
        assert spin.summary()["error"]["line"] == 3


def test_spin_errors(train_nb: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(NotFoundError, match="No inputs for step 'train'.*spin 'start' first"):
        with Runner(train_nb).spin("train"):
            pass
    with Runner(train_nb).run() as running:
        run = running.run
    with pytest.raises(NotFoundError, match="no step 'nope'"):
        Runner(train_nb).spin("nope")
    with pytest.raises(NotFoundError, match="does not exist"):
        Runner(train_nb).spin("99/train")
    with pytest.raises(NotFoundError, match="does not exist"):
        Runner(train_nb).spin(f"{run.id}/train/999")
    with pytest.raises(NotFoundError, match="belongs to flow OtherFlow"):
        Runner(train_nb).spin(f"OtherFlow/{run.id}/train")
    monkeypatch.setenv("FLOWCELL_USER", "someone_else")
    with pytest.raises(NamespaceMismatch, match="user:someone_else"):
        Runner(train_nb).spin(f"{run.id}/train")
    monkeypatch.setenv("FLOWCELL_USER", "tester")
    (tmp_path / "no_dict.py").write_text("ARTIFACTS = [1, 2]\n")
    (tmp_path / "broken.py").write_text("import not_a_module_anywhere\n")
    with pytest.raises(FlowcellError, match="must define a dict named ARTIFACTS"):
        Runner(train_nb).spin("train", artifacts_module=str(tmp_path / "no_dict.py"))
    with pytest.raises(FlowcellError, match="failed to import.*ModuleNotFoundError"):
        Runner(train_nb).spin("train", artifacts_module=str(tmp_path / "broken.py"))
    with pytest.raises(FlowcellError, match="does not exist"):
        Runner(train_nb).spin("train", artifacts_module=str(tmp_path / "missing.py"))
    from flowcell.options import parse_artifacts_expr

    with pytest.raises(FlowcellError, match="must be a dict"):
        parse_artifacts_expr("[1, 2]")


def test_artifacts_module_overrides(train_nb: Path, tmp_path: Path) -> None:
    with Runner(train_nb).run():
        pass
    (tmp_path / "artifacts.py").write_text("ARTIFACTS = {'small': 'from-module', 'k': 9}\n")
    with Runner(train_nb).spin("train", artifacts_module=str(tmp_path / "artifacts.py")) as spin:
        assert spin.task["model"].data == "kmeans-9-from-module"


def test_step_that_changed_shape_is_refused(tmp_path: Path) -> None:
    before = write_notebook(tmp_path / "shape.ipynb", [
        "%%flow ShapeFlow", "%%step start\nself.next(self.mid)", "%%step mid\nself.next(self.end)", "%%step end\npass"])
    with Runner(before).run():
        pass
    after = write_notebook(tmp_path / "shape.ipynb", [
        "%%flow ShapeFlow", "%%step start\nself.next(self.x, self.y)", "%%step x\nself.next(self.mid)",
        "%%step y\nself.next(self.mid)", "%%step mid(inputs)\nself.next(self.end)", "%%step end\npass"])
    with pytest.raises(FlowcellError, match="now a join.*ran before that change"):
        Runner(after).spin("mid")


def test_resume_clones_by_reference_and_reruns_from_failure(tmp_path: Path) -> None:
    failing = TRAIN.copy()
    failing[6] = "%%step join(inputs)\nraise RuntimeError('join is broken')\nself.next(self.end)"
    nb = write_notebook(tmp_path / "resume.ipynb", failing)
    with Runner(nb).run(k=7) as running:
        origin = running.run
        assert not running.successful
    fixed = write_notebook(tmp_path / "resume.ipynb", TRAIN[:6] + [
        "%%step join(inputs)\nfrom flowcell import current\nself.model = inputs.train.model\n"
        "self.items_seen = inputs.gather.items_seen\nself.origin = current.origin_run_id\nself.next(self.end)",
        TRAIN[7]])
    with Runner(fixed).resume() as resumed:
        run = resumed.run
    assert resumed.successful
    assert run.origin_pathspec == origin.pathspec
    assert run.data.model == "kmeans-7-tiny", "parameters default to the origin run's"
    assert run["join"].task.data.origin == origin.id, "a string, as Metaflow gives it"
    # Tasks before the failed step were cloned, not re-run: same artifact bytes.
    assert run["start"].task["big"].sha == origin["start"].task["big"].sha
    assert len(run["each"].tasks()) == 3
    with pytest.raises(FlowcellError, match="no failed step"):
        Runner(fixed).resume()
    with Runner(fixed).resume("end") as again:
        assert again.successful and again.run.origin_pathspec == run.pathspec


def test_resume_without_runs_is_a_clear_error(train_nb: Path) -> None:
    with pytest.raises(FlowcellError, match="no runs"):
        Runner(train_nb).resume()


def test_cli_spin_json_prints_one_result(train_nb: Path, tmp_path: Path) -> None:
    env = dict(os.environ)
    subprocess.run([sys.executable, "-m", "flowcell.cli", "run", str(train_nb), "--quiet"], cwd=tmp_path,
                   env=env, check=True, capture_output=True)
    proc = subprocess.run([sys.executable, "-m", "flowcell.cli", "spin", str(train_nb), "train", "--json",
                           "--artifacts", "{'k': 2}"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert result["status"] == "completed" and result["created"] == ["model", "where"]
    assert result["inputs_from"].startswith("TrainFlow/1/train/")
    proc = subprocess.run([sys.executable, "-m", "flowcell.cli", "spin", str(train_nb), "nope", "--json"],
                          cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 2 and json.loads(proc.stdout)["status"] == "error"


def test_notebook_written_cell_by_cell_with_autospin(tmp_path: Path) -> None:
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in ["%load_ext flowcell"] + TRAIN[:3] + [
        "%flowcell autospin off", "%%step other\nself.next(self.end)", "%flowcell autospin on",
        "%spin train --artifacts \"{'k': 42}\"",
    ]]
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    out = ["".join(o.get("text", "") for o in c.outputs if o["output_type"] == "stream") for c in nb.cells]
    assert "Spun 'start'" in out[2] and "parameter defaults" in out[2]
    assert "training with k = 3" in out[3] and "inputs from spin of TrainFlow/" in out[3]
    assert "Registered step 'other'" in out[5] and "Spun" not in out[5]
    assert "training with k = 42" in out[7]
    assert not (tmp_path / ".flowcell").exists(), "spins record no run"


# -- issue 11.2: spins inside a foreach run every split; joins get complete sets ------------

def test_spin_inside_a_foreach_runs_every_split(train_nb: Path) -> None:
    with Runner(train_nb).run() as running:
        run = running.run
    with Runner(train_nb).spin("each") as spin:
        assert spin.successful and len(spin.tasks) == 3
        assert sorted(t.split for t in spin.tasks) == [0, 1, 2]
        items = sorted(Task(t.pathspec)["item"].data for t in spin.tasks)
        assert items == ["a", "b", "c"]
        assert spin.describe() == f"3 splits, inputs from run {run.pathspec}"


def test_split_option_and_task_pathspec_name_one_split(train_nb: Path) -> None:
    with Runner(train_nb).run() as running:
        run = running.run
    with Runner(train_nb).spin("each", split=2) as spin:
        assert len(spin.tasks) == 1 and spin.task["item"].data == "c"
    with pytest.raises(NotFoundError, match="has no split 7 here; its splits are 0, 1, 2"):
        Runner(train_nb).spin("each", split=7)
    first = sorted(run["each"].tasks(), key=lambda t: t.index)[0]
    with Runner(train_nb).spin(f"{run.id}/each/{first.id}") as spin:
        assert len(spin.tasks) == 1 and spin.task["item"].data == "a"


def test_join_after_a_spun_foreach_gets_all_splits_of_that_spin(train_nb: Path) -> None:
    runner = Runner(train_nb)
    with runner.run():
        pass
    with runner.spin("each", artifacts={"items": ["x", "y", "z"]}) as each:
        assert len(each.tasks) == 3
    with runner.spin("gather") as gather:
        assert gather.task["items_seen"].data == ["a", "b", "c"]  # self.input comes from the fan, not items
        assert gather.describe() == f"3 inputs from spin {each.run_id} of each"
        assert gather.run_id.startswith("spin-") and gather.pathspec.startswith(f"TrainFlow/{gather.run_id}/gather/")


def test_join_never_mixes_a_partial_spin_with_a_run(train_nb: Path) -> None:
    runner = Runner(train_nb)
    with runner.run() as running:
        run = running.run
    with runner.spin("each", split=1):
        pass
    with runner.spin("gather") as gather:
        assert gather.task["items_seen"].data == ["a", "b", "c"]
        assert gather.describe() == (f"3 inputs from {run['gather'].task.pathspec} "
                                     f"(the spin spin-1 of each has 1 of 3 inputs; using run {run.pathspec})")


NESTED = [
    "%%flow NestFlow",
    "%%step start\nself.outer = [1, 2]\nself.next(self.fan, foreach='outer')",
    "%%step fan\nself.o = self.input\nself.inner = ['a', 'b', 'c']\nself.next(self.work, foreach='inner')",
    "%%step work\nself.tag = f'{self.o}{self.input}'\nself.next(self.inner_join)",
    "%%step inner_join(inputs)\nself.tags = [i.tag for i in inputs]\nself.next(self.outer_join)",
    "%%step outer_join(inputs)\nself.all = [t for i in inputs for t in i.tags]\nself.next(self.end)",
    "%%step end\npass",
]


def test_nested_foreach_spins_every_split_and_joins_per_group(tmp_path: Path) -> None:
    runner = Runner(write_notebook(tmp_path / "nest.ipynb", NESTED))
    with runner.run() as running:
        assert running.successful
    with runner.spin("work") as work:
        assert len(work.tasks) == 6
    with runner.spin("inner_join") as inner:
        assert len(inner.tasks) == 2
        got = sorted(Task(t.pathspec)["tags"].data for t in inner.tasks)
        assert got == [["1a", "1b", "1c"], ["2a", "2b", "2c"]]
    with runner.spin("outer_join") as outer:
        assert outer.task["all"].data == ["1a", "1b", "1c", "2a", "2b", "2c"]
        assert outer.describe().startswith(f"2 inputs from spin {inner.run_id} of inner_join")


# -- issue 11.5: spin ids look like spin-12 and are accepted wherever a pathspec is ------------

def test_spin_pathspecs_are_recognisable_and_readable(train_nb: Path) -> None:
    runner = Runner(train_nb)
    with runner.run():
        pass
    with runner.spin("train") as spin:
        assert spin.run_id.startswith("spin-")
        assert spin.pathspec == f"TrainFlow/{spin.run_id}/train/{spin.task.id}"
        # The Client finds it by that pathspec, and so does a later spin.
        assert Task(spin.pathspec)["model"].data == "kmeans-3-tiny"
        assert Run(f"TrainFlow/{spin.run_id}").id == spin.run_id
    with runner.spin(f"{spin.run_id}/train") as again:
        assert again.successful and again.inputs_from == spin.pathspec
    assert Flow("TrainFlow").latest_run.id == "1"


def test_spin_of_a_resumed_run_sees_the_parameters_it_resumed_with(tmp_path: Path) -> None:
    cells = TRAIN[:6] + [
        "%%step join(inputs)\nself.model = inputs.train.model\nself.k_seen = self.k\nself.next(self.end)",
        "%%step end\nself.k_end = self.k",
    ]
    nb = write_notebook(tmp_path / "params.ipynb", cells)
    with Runner(nb).run(k=7) as running:
        assert running.successful
    with Runner(nb).resume("join", k=2) as resumed:
        run = resumed.run
        assert resumed.successful
    assert run["join"].task.data.k_seen == 2, "the re-run step used the new value"
    assert run["train"].task.data.model == "kmeans-7-tiny", "train was cloned from the origin"
    runner = Runner(nb)
    with runner.spin(f"{run.id}/join") as spin:
        assert spin.successful, spin.exception
        assert spin.task["k_seen"].data == 2
    with runner.spin(f"{run.id}/end") as spin:
        assert spin.successful, spin.exception
        assert spin.task["k_end"].data == 2
    # A cloned task ran with the origin's value, so its spin does too.
    with runner.spin(f"{run.id}/train") as spin:
        assert spin.successful, spin.exception
        assert spin.task["model"].data == "kmeans-7-tiny"


def test_persisted_spin_goes_beside_the_notebook_not_the_shell_directory(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "other" / "dir"
    folder.mkdir(parents=True)
    nb = write_notebook(folder / "train.ipynb", TRAIN)
    shell = tmp_path / "elsewhere"
    shell.mkdir()
    env = dict(os.environ)
    subprocess.run([sys.executable, "-m", "flowcell.cli", "run", str(nb), "--quiet"], cwd=shell, env=env,
                   check=True, capture_output=True)
    proc = subprocess.run([sys.executable, "-m", "flowcell.cli", "spin", str(nb.relative_to(tmp_path)), "train",
                           "--persist", "--json", "--artifacts", "{'k': 4}"], cwd=tmp_path, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    spun = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (folder / ".flowcell_spin").is_dir()
    assert not (tmp_path / ".flowcell_spin").exists() and not (shell / ".flowcell_spin").exists()
    # Readable from the notebook's folder with ".", and from anywhere given the notebook's path.
    monkeypatch.chdir(folder)
    inspect_spin(".")
    assert Task(spun["tasks"][0])["model"].data == "kmeans-4-tiny"
    monkeypatch.chdir(shell)
    inspect_spin(nb)
    assert Task(spun["tasks"][0])["model"].data == "kmeans-4-tiny"
    # The Runner, given a notebook in another folder, persists there too.
    with Runner(nb).spin("train", persist=True) as spin:
        assert spin.successful
    assert not (shell / ".flowcell_spin").exists()
    assert Path(spin.root) == (folder / ".flowcell_spin").resolve()
