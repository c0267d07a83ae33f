"""Runs on Metaflow from the cell and the shell, read back through flowcell (SPEC section 12).

Everything here goes through the real Metaflow 2.19 package and its local runtime,
with METAFLOW_HOME and the local datastore inside the test's own folder.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import ROOT
from flowcell.client import Flow, namespace
from flowcell.errors import FlowcellError
from flowcell.errors import MetaflowRunError
from flowcell.metaflow_runs import LogTranslator, mirrored_pathspec, split_metaflow_options

PROD_CELLS = [
    "%load_ext flowcell",
    "%%flow ProdFlow\nfrom flowcell import Parameter\nn = Parameter('n', default=2)",
    "%%step start\nself.items = list(range(self.n))\nself.next(self.square, foreach='items')",
    "%%step square\nprint('squaring', self.input)\nself.sq = self.input ** 2\nself.next(self.join)",
    "%%step join(inputs)\nself.total = sum(i.sq for i in inputs)\nif self.total > 4:\n"
    "    raise ValueError(f'total {self.total} is too big')\nself.next(self.end)",
    "%%step end\nprint('total', self.total)",
]


@pytest.fixture(autouse=True)
def metaflow_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Metaflow's configuration, metadata and datastore inside the test's folder."""
    monkeypatch.setenv("METAFLOW_HOME", str(tmp_path / "mfhome"))
    monkeypatch.setenv("METAFLOW_DATASTORE_SYSROOT_LOCAL", str(tmp_path / "mfdata"))
    monkeypatch.setenv("METAFLOW_DEFAULT_METADATA", "local")
    monkeypatch.setenv("METAFLOW_DEFAULT_DATASTORE", "local")
    monkeypatch.setenv("USERNAME", "tester")
    return tmp_path


def text_of(cell: nbformat.NotebookNode) -> str:
    parts = []
    for out in cell.get("outputs", []):
        if out["output_type"] == "stream":
            parts.append(out["text"])
        elif out["output_type"] in ("display_data", "execute_result"):
            parts.append(out["data"].get("text/plain", ""))
        elif out["output_type"] == "error":
            parts.append(out["ename"] + ": " + out["evalue"] + "\n" + "\n".join(out["traceback"]))
    return "".join(parts)


def test_notebook_runs_on_metaflow_fails_and_spins_from_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JPY_SESSION_NAME", str(tmp_path / "prod.ipynb"))  # as Jupyter tells the kernel
    cells = [
        *PROD_CELLS,
        "%run_flow --on metaflow --n 2 --tag nightly",                                   # 6
        "from flowcell import Flow\nr = Flow('ProdFlow').latest_run\n"
        "print(r.data.total, r.successful, sorted(r.tags))",                             # 7
        "%run_flow --on metaflow --n 4",                                                 # 8: fails in join
        "%%step join(inputs)\nself.total = min(4, sum(i.sq for i in inputs))\nself.next(self.end)",  # 9: the fix
        "%spin join --from-metaflow",                                                    # 10
        "%flow_runs --metaflow --tag nightly",                                           # 11
        "%flow_runs",                                                                    # 12
    ]
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    nbformat.write(nb, str(tmp_path / "prod.ipynb"))
    NotebookClient(nb, timeout=600, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    ran = text_of(nb.cells[6])
    # Task output streamed with Metaflow's own pathspecs, in order, then the readable Run.
    assert "Workflow starting" in ran and "/square/" in ran and "squaring 1" in ran
    assert ran.index("squaring") < ran.index("total 1") < ran.index("Reading ProdFlow/")
    assert "Run('ProdFlow/1')" in ran
    total, ok, tags = text_of(nb.cells[7]).split(" ", 2)
    assert (total, ok) == ("1", "True")
    assert "'runtime:metaflow'" in tags and "'nightly'" in tags and "'metaflow_run:ProdFlow/" in tags
    failed = text_of(nb.cells[8])
    assert "ValueError: total 14 is too big" in failed and "failed" in failed
    assert 'raise ValueError(f\'total {self.total} is too big\')' in failed  # the step's own source line
    spun = text_of(nb.cells[10])
    namespace(None)
    runs = Flow("ProdFlow").runs()
    assert [r.successful for r in runs] == [False, True]
    failed_mf = mirrored_pathspec(runs[0].system_tags)
    assert failed_mf and f"inputs from Metaflow task {failed_mf}/join/" in spun, spun
    assert "created total" in spun or "total" in spun
    # The mirror holds every task with its logs, and the failed task's exception.
    join = runs[0]["join"].task
    assert not join.successful and "total 14 is too big" in (join.exception or "")
    assert sorted(t.data.sq for t in runs[0]["square"]) == [0, 1, 4, 9]
    assert any("squaring 3" in t.stdout for t in runs[0]["square"])
    # Metaflow's own metadata lists the tagged run, marked as mirrored into flowcell.
    listed = text_of(nb.cells[11]).splitlines()
    assert listed[0].split() == ["metaflow", "run", "status", "started", "tags", "in", "flowcell"]
    assert len(listed) == 3 and mirrored_pathspec(runs[1].system_tags) in listed[1]
    assert listed[1].split()[1] == "completed" and "nightly" in listed[1] and listed[1].endswith("ProdFlow/1")
    assert listed[2].startswith("Spin a step on a run's inputs: %spin STEP --from-metaflow ProdFlow/")
    # flowcell's own run browser marks the mirrored runs with their Metaflow pathspecs.
    browser = text_of(nb.cells[12])
    assert f"metaflow_run:{failed_mf}" in browser and f"metaflow_run:{mirrored_pathspec(runs[1].system_tags)}" in browser
    # The export the run used sits beside the notebook, with its pins.
    assert (tmp_path / "prod.py").is_file() and (tmp_path / "prod.requirements.txt").is_file()


def test_cli_run_on_metaflow_and_spin_from_it(tmp_path: Path) -> None:
    nb = nbformat.read(ROOT / "notebooks" / "quickstart.ipynb", as_version=4)
    nbformat.write(nb, str(tmp_path / "quickstart.ipynb"))
    proc = subprocess.run([sys.executable, "-m", "flowcell.cli", "run", "quickstart.ipynb", "--on", "metaflow",
                           "--alpha", "0.4", "--tag", "cli", "--json", "--run-id-file", "rid"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["status"] == "completed" and summary["pathspec"] == "QuickstartFlow/1"
    mf = summary["metaflow_pathspec"]
    assert (tmp_path / "rid").read_text() == mf.split("/")[1]
    run = Flow("QuickstartFlow").latest_run
    assert run.parameters["alpha"] == 0.4 and "cli" in run.tags and mirrored_pathspec(run.system_tags) == mf
    assert run.data.best in "abc" and len(run["score_group"].tasks()) == 3
    import metaflow

    assert run.environment is not None and run.environment["packages"] == {"metaflow": metaflow.__version__}
    # The same run, read by Metaflow's own client in another process, agrees.
    check = subprocess.run([sys.executable, "-c", f"from metaflow import Run, namespace; namespace(None); "
                            f"print(Run({mf!r}).data.best)"], cwd=tmp_path, capture_output=True, text=True)
    assert check.stdout.strip() == run.data.best, check.stderr
    spin = subprocess.run([sys.executable, "-m", "flowcell.cli", "spin", "quickstart.ipynb", "collect",
                           "--from-metaflow", "--json"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert spin.returncode == 0, spin.stderr
    assert json.loads(spin.stdout)["inputs_from"].startswith(f"Metaflow task {mf}/collect/")
    # A run started by Metaflow itself (not mirrored) is listed from Metaflow's metadata, with its tags.
    plain = subprocess.run([sys.executable, "quickstart.py", "--quiet", "run", "--tag", "plain"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=600)
    assert plain.returncode == 0, plain.stderr
    # Read in a fresh process, as a notebook would: Metaflow reads its configuration once, at import.
    listing = subprocess.run([sys.executable, "-c", LIST_RUNS], cwd=tmp_path, capture_output=True, text=True,
                             timeout=300)
    assert listing.returncode == 0, listing.stderr
    listed = json.loads(listing.stdout)
    assert [r["mirrored_as"] for r in listed["all"]] == [None, "QuickstartFlow/1"]
    assert "plain" in listed["all"][0]["user_tags"] and listed["all"][1]["pathspec"] == mf
    assert listed["all"][1]["status"] == "completed" and listed["all"][0]["user:tester"]
    assert listed["cli"] == [mf]  # Metaflow's default namespace, tags AND-ed
    assert listed["elsewhere"] == [] and listed["missing"].startswith("Metaflow's metadata has no flow NoSuchFlow")


LIST_RUNS = """
import json
from flowcell.errors import NotFoundError
from flowcell.metaflow_client import list_metaflow_runs
out = {"all": [{"pathspec": r.pathspec, "mirrored_as": r.mirrored_as, "user_tags": sorted(r.user_tags),
                "status": r.status, "user:tester": "user:tester" in r.system_tags}
               for r in list_metaflow_runs("QuickstartFlow", namespace=None)],
       "cli": [r.pathspec for r in list_metaflow_runs("QuickstartFlow", "cli")],
       "elsewhere": [r.pathspec for r in list_metaflow_runs("QuickstartFlow", namespace="user:someone-else")]}
try:
    list_metaflow_runs("NoSuchFlow", namespace=None)
except NotFoundError as exc:
    out["missing"] = str(exc)
print(json.dumps(out))
"""


def test_option_splitting_and_bad_inputs() -> None:
    on, opts, rest = split_metaflow_options(
        ["--on", "metaflow", "--alpha", "1", "--with", "retry", "--with=kubernetes:cpu=2", "--config", "cfg",
         "c.json", "--config-value", "cfg", '{"a": 1}', "--branch", "b1", "--production", "--tag", "t"])
    assert on == "metaflow" and rest == ["--alpha", "1", "--tag", "t"]
    assert opts.runner_kwargs() == {"decospecs": ["retry", "kubernetes:cpu=2"], "config": [("cfg", "c.json")],
                                    "config_value": [("cfg", '{"a": 1}')], "branch": "b1", "production": True}
    with pytest.raises(MetaflowRunError, match="--config needs 2 values"):
        split_metaflow_options(["--on", "metaflow", "--config", "cfg"])
    with pytest.raises(MetaflowRunError, match="--on takes 'metaflow'"):
        split_metaflow_options(["--on", "argo"])
    with pytest.raises(MetaflowRunError, match="--with applies to runs on Metaflow; add --on metaflow"):
        split_metaflow_options(["--with", "retry"])
    assert issubclass(MetaflowRunError, FlowcellError)


def test_metaflow_log_lines_become_progress_events() -> None:
    """Protocol edge cases of Metaflow's runtime output: a retry, a final failure, plain lines."""
    events: list[tuple[str, dict[str, object]]] = []
    t = LogTranslator("F", "17", lambda kind, p: events.append((kind, p)))
    stamp = "2026-01-01 10:00:00.000"
    for line in [f"{stamp} Workflow starting (run-id 17):",
                 f"{stamp} [17/start/1 (pid 5)] Task is starting.",
                 f"{stamp} [17/start/1 (pid 5)] hello",
                 f"{stamp} [17/start/1 (pid 5)] ValueError: first",
                 f"{stamp} [17/start/1 (pid 5)] Task failed.",
                 f"{stamp} [17/start/1 (pid 9)] Task is starting (retry).",
                 f"{stamp} [17/start/1 (pid 9)] KeyError: 'second'",
                 f"{stamp} [17/start/1 (pid 9)] Task failed.",
                 f"{stamp} Workflow failed."]:
        t.feed("stdout", line)
    kinds = [k for k, _ in events]
    assert kinds == ["stream", "task_started", "stream", "stream", "retry", "stream", "task_finished", "stream"]
    finished = events[6][1]
    assert finished["status"] == "failed" and finished["pathspec"] == "F/17/start/1"
    assert finished["error"]["ename"] == "KeyError" and finished["error"]["evalue"] == "'second'"  # type: ignore[index]
    assert events[2][1]["text"] == "hello\n" and events[4][1]["attempt"] == 1


CONFIG_CELLS = [
    "%%flow CfgFlow @project(name='demo')\nfrom flowcell import Config, Parameter, current\n"
    "cfg = Config('cfg', default='cfg.json')\nscale = Parameter('scale', default=1)",
    "%%step start\nself.k = self.cfg['k'] * self.scale\n"
    "self.branch = getattr(current, 'branch_name', None)\nself.project = getattr(current, 'project_name', None)\n"
    "self.next(self.end)",
    "%%step end\nprint('k is', self.k)",
]


def test_config_and_project_run_under_metaflow_like_locally(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in CONFIG_CELLS]
    nbformat.write(nb, str(tmp_path / "cfg.ipynb"))
    (tmp_path / "cfg.json").write_text('{"k": 2}')
    (tmp_path / "other.json").write_text('{"k": 5}')

    def flowcell(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "flowcell.cli", *args], cwd=tmp_path, capture_output=True,
                              text=True, timeout=600)

    # Locally: the JSON file by default, another file with --cfg.
    assert flowcell("run", "cfg.ipynb", "--quiet").returncode == 0
    assert flowcell("run", "cfg.ipynb", "--quiet", "--cfg", "other.json").returncode == 0
    assert [r.data.k for r in Flow("CfgFlow").runs()] == [5, 2]
    # On Metaflow: the same --cfg becomes Metaflow's --config cfg other.json; --branch gives @project its branch.
    proc = flowcell("run", "cfg.ipynb", "--on", "metaflow", "--cfg", "other.json", "--scale", "3",
                    "--branch", "feature1", "--json")
    assert proc.returncode == 0, proc.stderr
    run = Flow("CfgFlow").latest_run
    assert (run.data.k, run.data.project, run.data.branch) == (15, "demo", "test.feature1")
    assert {"project:demo", "project_branch:test.feature1", "runtime:metaflow"} <= run.system_tags
    assert Flow("CfgFlow").runs("project_branch:test.feature1")[0].id == run.id
    exported = (tmp_path / "cfg.py").read_text()
    assert "@project(name='demo')\nclass CfgFlow(FlowSpec):\n    cfg = Config('cfg', default='cfg.json')" in exported
    # The exported file takes Metaflow's own config overrides unchanged.
    plain = subprocess.run([sys.executable, "cfg.py", "--config-value", "cfg", '{"k": 7}', "run"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=600)
    assert plain.returncode == 0, plain.stderr
    assert "k is 7" in plain.stdout + plain.stderr
    # Metaflow's default branch for a user, without --branch.
    mf = subprocess.run([sys.executable, "-c", "from metaflow import Flow, namespace; namespace(None); "
                         "r = Flow('CfgFlow').latest_run; print(r.data.k, r.data.branch)"],
                        cwd=tmp_path, capture_output=True, text=True)
    assert mf.stdout.split() == ["7", "user.tester"], mf.stderr


def test_interrupt_stops_metaflow_and_marks_the_run_failed(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in [
        "%%flow SlowFlow\nimport time",
        "%%step start\nprint('sleeping', flush=True)\ntime.sleep(300)\nself.next(self.end)",
        "%%step end\npass"]]
    nbformat.write(nb, str(tmp_path / "slow.ipynb"))
    proc = subprocess.Popen([sys.executable, "-m", "flowcell.cli", "run", "slow.ipynb", "--on", "metaflow"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:  # wait until the task is really running on Metaflow
        seen.append(line)
        if "sleeping" in line:
            break
    proc.send_signal(signal.SIGINT)
    started = time.monotonic()
    rest, _ = proc.communicate(timeout=240)
    assert time.monotonic() - started < 240
    assert proc.returncode != 0, "".join(seen) + rest
    namespace(None)
    run = Flow("SlowFlow").latest_run
    assert run.status == "failed" and not run.successful
    assert "end" not in run  # the run stopped at the interrupted step


def test_metaflow_refusing_to_start_is_one_sentence(tmp_path: Path) -> None:
    nb = nbformat.read(ROOT / "notebooks" / "quickstart.ipynb", as_version=4)
    nbformat.write(nb, str(tmp_path / "quickstart.ipynb"))
    proc = subprocess.run([sys.executable, "-m", "flowcell.cli", "run", "quickstart.ipynb", "--on", "metaflow",
                           "--with", "nosuchdeco"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("flowcell: Metaflow could not run quickstart.py: Unknown step decorator")
    bad = subprocess.run([sys.executable, "-m", "flowcell.cli", "run", "quickstart.ipynb", "--on", "metaflow",
                          "--alpha", "high"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "--alpha expects a value of type float" in bad.stderr
