"""The tier that needs no kernel: option parsing, the task-message router fed recorded
messages (nbclient's style), cell registration, and the magics driven through an
``InteractiveShell``.  Fast; behaviour a user meets is tested on real kernels elsewhere.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import nbformat
import pytest

from flowcell.errors import FlowcellError, LintError, NotFoundError
from flowcell.lint import prepare
from flowcell.options import parse_artifacts_expr, parse_pathspec, spin_overrides, spin_target, split_params
from flowcell.protocol import RESULT_MIME, TaskError, TaskResult, TaskSpec

# -- options ---------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("train", (None, "train", None)),
    ("3/train", ("3", "train", None)),
    ("3/train/12", ("3", "train", "12")),
    ("F/3/train", ("3", "train", None)),
    ("F/3/train/12", ("3", "train", "12")),
    ("spin-4/train", ("spin-4", "train", None)),
    ("F/spin-4/train/2", ("spin-4", "train", "2")),
])
def test_pathspec_forms(text: str, expected: tuple[Any, ...]) -> None:
    assert parse_pathspec("F", text) == expected


def test_pathspec_errors_say_what_is_wrong() -> None:
    with pytest.raises(NotFoundError, match="belongs to flow G, not to this notebook's flow F"):
        parse_pathspec("F", "G/3/train")
    with pytest.raises(NotFoundError, match="is not a pathspec"):
        parse_pathspec("F", "3//train")
    with pytest.raises(FlowcellError, match="does not match pathspec"):
        spin_target("F", ["train", "3/other"])
    assert spin_target("F", ["train", "3/train/1"]) == ("train", "3/train/1")
    assert spin_target("F", ["train"]) == ("train", None)


def test_run_options_and_parameters_are_split_once_for_every_surface() -> None:
    params, rest = split_params(["nb.ipynb", "--alpha", "0.5", "--tag", "x", "--beta=2", "--json"])
    assert params == {"alpha": "0.5", "beta": "2"} and rest == ["nb.ipynb", "--tag", "x", "--json"]
    with pytest.raises(FlowcellError, match="needs a value"):
        split_params(["--alpha"])


def test_artifact_overrides(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("ARTIFACTS = {'k': 1, 'm': 2}\n")
    assert spin_overrides(str(tmp_path / "a.py"), "{'k': 5}") == {"k": 5, "m": 2}
    assert parse_artifacts_expr("{'df': x}", {"x": 3}) == {"df": 3}
    with pytest.raises(FlowcellError, match="is not a literal"):
        parse_artifacts_expr("{'k': int(3)}")
    with pytest.raises(FlowcellError, match="is not a Python expression"):
        parse_artifacts_expr("{'k': ")


# -- the task-message router -------------------------------------------------------------


class RecordedKernel:
    """Plays back iopub messages recorded from a child kernel, as ``ChildKernel.execute`` delivers them."""

    def __init__(self, messages: list[dict[str, Any]]) -> None:
        self.messages = messages
        self.code = ""

    async def execute(self, code: str, on_message: Any, timeout: float | None = None, **_: Any) -> None:
        self.code = code
        for msg in self.messages:
            on_message(msg)


def _msg(kind: str, **content: Any) -> dict[str, Any]:
    return {"msg_type": kind, "content": content}


def _spec() -> TaskSpec:
    from flowcell.protocol import CellCode, NodeSpec

    cell = CellCode("self.next(self.end)", "<In [2], step start>", 1, "%%step start")
    return TaskSpec(root="/r", flow="F", step="start", pathspec="F/1/start/1", steps=["start", "end"],
                    code_cells=[], step_cell=cell, node=NodeSpec("start", ["end"]))


def _route(messages: list[dict[str, Any]]) -> tuple[Any, list[tuple[str, dict[str, Any]]], RecordedKernel]:
    from flowcell.runtime.task import run_in_kernel

    events: list[tuple[str, dict[str, Any]]] = []
    kernel = RecordedKernel(messages)
    outcome = asyncio.run(run_in_kernel(kernel, _spec(), lambda k, p: events.append((k, p)), None))  # type: ignore[arg-type]
    return outcome, events, kernel


def test_router_turns_messages_into_an_outcome_and_events() -> None:
    result = TaskResult("ok", artifacts={"x": {"address": "ab"}}, created=["x"])
    outcome, events, kernel = _route([
        _msg("stream", name="stdout", text="hello\n"),
        _msg("display_data", data={"text/plain": "a plot"}, metadata={}),
        _msg("display_data", data={RESULT_MIME: result.to_dict()}, metadata={}),
    ])
    assert outcome.ok and outcome.created == ["x"] and outcome.stdout == "hello\n"
    assert [k for k, _ in events] == ["stream", "display"], "the result message is consumed, never shown"
    # The spec crossed the boundary as JSON and comes back as the same record.
    sent = kernel.code.split("run_task(", 1)[1].rsplit("); del", 1)[0]
    assert TaskSpec.from_json(eval(sent)) == _spec()


def test_router_reports_an_error_without_a_result() -> None:
    outcome, _, _ = _route([_msg("error", ename="NameError", evalue="x", traceback=["tb"])])
    assert not outcome.ok and outcome.error == TaskError("NameError", "x", ["tb"], "tb")


def test_router_with_no_message_at_all_says_the_driver_returned_nothing() -> None:
    outcome, _, _ = _route([])
    assert not outcome.ok and outcome.error is not None and "returned no result" in outcome.error.evalue


def test_a_task_error_becomes_one_user_visible_error() -> None:
    from flowcell.errors import StepFailed

    err = StepFailed.of("F/1/start/1", TaskError("ValueError", "bad", ["line 1", "line 2"], line=3), "(note)")
    assert str(err) == "Step F/1/start/1 failed: ValueError: bad"
    assert err._render_traceback_() == ["Step F/1/start/1 failed:", "(note)", "line 1", "line 2"]


# -- cell registration and the magics in an InteractiveShell --------------------------------


@pytest.fixture
def shell() -> Any:
    from IPython.core.interactiveshell import InteractiveShell

    from flowcell.magics import FlowcellMagics

    ip = InteractiveShell.instance()
    magics = FlowcellMagics(shell=ip, autospin=False)
    ip.register_magics(magics)
    ip.events.register("pre_run_cell", magics.pre_run_cell)
    yield ip, magics
    ip.events.unregister("pre_run_cell", magics.pre_run_cell)
    InteractiveShell.clear_instance()


def run(ip: Any, source: str, cell_id: str | None = None) -> Any:
    result = ip.run_cell(source, cell_id=cell_id)
    if result.error_in_exec is not None:
        raise result.error_in_exec
    return result


FLOW = "%%flow F\nimport math\nfrom flowcell import Parameter\nalpha = Parameter('alpha', default=1)"


def test_rerunning_a_flow_cell_replaces_its_code(shell: Any) -> None:
    ip, magics = shell
    run(ip, FLOW, "c1")
    run(ip, FLOW.replace("default=1", "default=2"), "c1")
    flow = magics.current_flow()
    assert len(flow.code_cells) == 1 and flow.parameters[0].default == 2
    # The same code run again from a new cell (a reopened notebook) does not double it either.
    run(ip, FLOW.replace("default=1", "default=2"), "c9")
    assert len(magics.current_flow().code_cells) == 1


def test_deleted_cells_leave_the_flow_when_the_front_end_says_so(shell: Any) -> None:
    ip, magics = shell
    run(ip, FLOW, "c1")
    run(ip, "%%step start\nself.next(self.end)", "c2")
    run(ip, "%%step middle\nself.next(self.end)", "c3")
    run(ip, "%%step end\npass", "c4")
    assert magics.retain_cells(["c1", "c2", "c4"]) and not magics.retain_cells(["c1", "c2", "c4"])
    assert list(magics.current_flow().steps) == ["start", "end"]


def test_without_a_front_end_the_saved_notebook_is_the_reference(shell: Any, tmp_path: Path) -> None:
    ip, magics = shell
    path = tmp_path / "nb.ipynb"
    ip.user_ns["__session__"] = str(path)
    run(ip, FLOW, "c1")
    run(ip, "%%step start\nself.next(self.end)", "c2")
    run(ip, "%%step gone\nself.next(self.end)", "c3")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(FLOW), nbformat.v4.new_code_cell("%%step start\nself.next(self.end)")]
    nb.cells[0].id, nb.cells[1].id = "c1", "c2"
    nbformat.write(nb, str(path))  # saved after c3 was deleted
    run(ip, "%%step end\npass", "c5")  # run after the save: kept though not saved yet
    assert list(magics.current_flow().steps) == ["start", "end"]


def test_two_parameters_of_one_name_are_a_lint_error_naming_both_cells(shell: Any) -> None:
    ip, magics = shell
    run(ip, FLOW, "c1")
    run(ip, "%%flow\nbeta = Parameter('alpha', default=3)", "c2")
    run(ip, "%%step start\nself.next(self.end)", "c3")
    run(ip, "%%step end\npass", "c4")
    with pytest.raises(LintError) as caught:
        prepare(magics.current_flow())
    assert "Parameter 'alpha' is defined twice, in In [" in str(caught.value)


def test_flowcell_status_lists_the_cells_and_the_store(shell: Any, capsys: pytest.CaptureFixture[str],
                                                       private_store: Path) -> None:
    ip, magics = shell
    run(ip, FLOW, "c1")
    run(ip, "%%step start\nself.next(self.end)", "c2")
    capsys.readouterr()
    run(ip, "%flowcell status")
    out = capsys.readouterr().out
    assert "flow F: 1 %%flow cell(s), steps: start" in out
    assert "%%flow code (cell c1)" in out and "step start (cell c2)" in out
    assert f"store: {private_store} ($FLOWCELL_ROOT)" in out


def test_a_bad_step_line_is_one_usage_error(shell: Any) -> None:
    from IPython.core.error import UsageError

    _, magics = shell
    with pytest.raises(UsageError) as caught:
        magics.step("train @retry(times=int(2))", "pass")
    assert str(caught.value).endswith("must be a literal value (number, string, list, dict), not 'int(2)'.")


def test_json_of_the_result_mime_is_plain(shell: Any) -> None:
    # What the child publishes must survive Jupyter's JSON display channel unchanged.
    result = TaskResult("failed", error=TaskError("E", "v", ["t"], "t", 2))
    assert TaskResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result


def test_a_timed_out_task_is_a_step_timeout_error() -> None:
    from flowcell.errors import StepFailed, StepTimeoutError

    err = StepFailed.of("F/1/a/2", TaskError("StepTimeoutError", "F/1/a/2 ran longer than its @timeout of 1 s"))
    assert isinstance(err, StepTimeoutError) and isinstance(err, StepFailed)
    inside = StepFailed.of("F/1/a/2", TaskError("TimeoutException", "Step a timed out after 0 hours, 0 minutes, 1 s"))
    assert isinstance(inside, StepTimeoutError), "a step stopped inside its kernel is a timeout too"
