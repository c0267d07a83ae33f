"""``--as-test FILE``: turn a spin into a pytest file with its inputs frozen beside it.

After a successful spin, :func:`write_spin_test` finds the inputs that spin used
(the same way the spin did), copies those artifacts' bytes into a small fixture
store next to the test (``<test name>_inputs/``) as one run holding the parent
task(s) and the step's task with the outputs just computed, and writes a test that
spins that task again and asserts the chosen outputs are unchanged.  Values with an
exact literal ``repr`` (numbers, strings, small containers) are written into the test
itself, so a reader sees what is expected; others are compared with the stored value.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
from pathlib import Path
from typing import Any

from .errors import FlowcellError, NotFoundError
from .graph import build_graph
from .model import FlowSource
from .store.blobs import BlobStore
from .store.metadata import MetadataStore
from .store.serialize import dump_artifact
from .testing import MANIFEST

#: The user the fixture's run is recorded under; the test spins as this user.
FIXTURE_USER = "frozen-spin"
#: Longest ``repr`` written into a test as a literal.
MAX_LITERAL = 300


def fixture_dir(test_file: Path) -> Path:
    return test_file.with_name(f"{test_file.stem}_inputs")


def _copy_ref(ref: dict[str, Any], default_root: Path, dst: BlobStore) -> dict[str, Any]:
    """Copy an artifact's pickle and buffers into ``dst``; the reference loses its foreign root."""
    src = BlobStore(ref.get("root") or default_root)
    for address in [ref["address"], *ref.get("buffers", [])]:
        dst.put(src.get(address))
    return {k: v for k, v in ref.items() if k != "root"}


def _literal(value: Any) -> str | None:
    """``repr(value)`` when it reads back as an equal value of the same type, else None."""
    try:
        text = repr(value)
        if len(text) > MAX_LITERAL:
            return None
        back = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
    return text if type(back) is type(value) and back == value else None


def _found_inputs(spinner: Any, flow: FlowSource, step: str, pathspec: str | None, scratch: BlobStore) -> Any:
    """The inputs the spin used, found again the way the spin found them."""
    graph = build_graph(flow)
    try:
        return spinner.finder.find(flow, graph, step, pathspec)
    except NotFoundError:
        if step != "start" or pathspec:
            raise
        return spinner.finder.default_parameters(flow, scratch)


def _apply_overrides(found: Any, overrides: dict[str, Any], blobs: BlobStore, step: str) -> None:
    """Fold ``--artifacts`` overrides into the frozen inputs, as the spin applied them."""
    for key, value in overrides.items():
        if found.join_inputs is None:
            found.inputs[key] = dump_artifact(blobs, key, value, step=step).to_json()
            continue
        match = [j for j in found.join_inputs if "/" in key and j.pathspec.endswith(key.strip("/"))]
        if not match or not isinstance(value, dict):
            raise FlowcellError(f"--as-test on join '{step}' takes overrides keyed by a parent's pathspec "
                                f"(RUN/STEP/TASK: {{...}}), not {key!r}.")
        for name, v in value.items():
            match[0].artifacts[name] = dump_artifact(blobs, name, v, step=step).to_json()


def freeze_spin(spinner: Any, flow: FlowSource, result: Any, pathspec: str | None,
                overrides: dict[str, Any], target: Path, expect: list[str]) -> str:
    """Write the fixture store at ``target`` for ``result``; returns the frozen task's pathspec."""
    from .config import system_tags

    step = result.step
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    blobs = BlobStore(target)
    found = _found_inputs(spinner, flow, step, pathspec, blobs)
    _apply_overrides(found, overrides, blobs, step)
    meta = MetadataStore(target)
    try:
        run = meta.new_run(flow.name, FIXTURE_USER, [], system_tags(FIXTURE_USER), {}, source=None)
        graph = build_graph(flow)
        node = graph[step]
        parents: list[int] = []
        if found.join_inputs is not None:
            for entry in found.join_inputs:
                frame = [entry.frame] if entry.frame else []
                tid = meta.new_task(flow.name, run, entry.step, frame, [])
                arts = {k: _copy_ref(v, target, blobs) for k, v in entry.artifacts.items()}
                meta.finish_task(flow.name, run, tid, "completed", arts)
                parents.append(tid)
        else:
            parent_step = node.in_funcs[0] if node.in_funcs else "_parameters"
            tid = meta.new_task(flow.name, run, parent_step, [], [])
            meta.finish_task(flow.name, run, tid, "completed",
                             {k: _copy_ref(v, target, blobs) for k, v in found.inputs.items()})
            parents.append(tid)
        task = meta.new_task(flow.name, run, step, found.foreach_stack, parents)
        produced = result.outcome.artifacts
        outputs = {name: _copy_ref(produced[name], Path(result.root), blobs) for name in expect}
        meta.finish_task(flow.name, run, task, "completed", outputs,
                         transition={"join": True} if node.type == "join" else None)
        meta.finish_run(flow.name, run, "completed")
    finally:
        meta.close()
    # Working folders of the blob store, not part of the fixture.
    for extra in ("tmp", "verified"):
        shutil.rmtree(target / extra, ignore_errors=True)
    pathspec_out = f"{flow.name}/{run}/{step}/{task}"
    manifest = {"flow": flow.name, "step": step, "pathspec": pathspec_out, "user": FIXTURE_USER,
                "inputs_from": result.inputs_from, "expect": expect}
    (target / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return pathspec_out


def _test_source(flow: FlowSource, result: Any, test_file: Path, notebook: Path, expect: list[str],
                 command: str, overrides: dict[str, Any]) -> str:
    fixture = fixture_dir(test_file)
    rel_nb = Path(os.path.relpath(notebook.resolve(), test_file.resolve().parent)).as_posix()
    step = result.step
    checks: list[str] = []
    for name in expect:
        value = result.task[name].data
        literal = _literal(value)
        if literal is not None:
            checks.append(f"    assert frozen.actual({name!r}) == {literal}")
        else:
            checks.append(f"    assert_artifact_equal(frozen.actual({name!r}), frozen.expected({name!r}), {name!r})")
    doc = (f'"""Step {step!r} of flow {flow.name}: its outputs on frozen inputs.\n\n'
           f"Written by `{command}` from the spin on the inputs of {result.inputs_from}"
           + (f", with {', '.join(sorted(overrides))} overridden" if overrides else "") + ".\n"
           f"The inputs are frozen in {fixture.name}/. Regenerate the test when the step's\n"
           'behaviour changes on purpose."""')
    source = "\n".join([
        doc, "",
        "from pathlib import Path", "",
        "from flowcell.testing import FrozenSpin, assert_artifact_equal", "",
        "HERE = Path(__file__).resolve().parent",
        f"NOTEBOOK = HERE / {rel_nb!r}",
        f"FIXTURE = HERE / {fixture.name!r}", "", "",
        f"def test_{step}_outputs_are_unchanged() -> None:",
        "    frozen = FrozenSpin(FIXTURE, NOTEBOOK)",
        "    spin = frozen.spin()",
        "    assert spin.successful, spin.exception",
        *checks, "",
    ])
    ast.parse(source)  # what we write must at least be Python
    return source.replace("from flowcell.testing import FrozenSpin, assert_artifact_equal",
                          "from flowcell.testing import FrozenSpin" +
                          (", assert_artifact_equal" if any("assert_artifact_equal(" in c for c in checks) else ""))


def write_spin_test(spinner: Any, flow: FlowSource, result: Any, pathspec: str | None,
                    overrides: dict[str, Any], test_file: str | Path, expect: list[str] | None,
                    command: str) -> Path:
    """Write ``test_file`` and its fixture store for a finished spin; returns the test's path.

    ``expect`` names the outputs to check (default: every artifact the spin created
    or changed).  ``command`` is quoted in the test's docstring.
    """
    if not result.successful:
        raise FlowcellError(f"The spin of {result.step} failed, so there are no outputs to turn into a test.")
    if result.inputs_from.startswith("Metaflow task"):
        raise FlowcellError("--as-test cannot freeze inputs read from Metaflow; spin a task of a flowcell run instead.")
    if result.outcome is None or flow.path is None:
        raise FlowcellError("--as-test needs a spin of a notebook or flow file saved on disk.")
    summary = result.summary()
    names = list(expect) if expect else sorted(set(summary["created"]) | set(summary["changed"]))
    if not names:
        raise FlowcellError(f"The spin of {result.step} created or changed no artifact; name outputs with --expect.")
    unknown = [n for n in names if n not in result.outcome.artifacts]
    if unknown:
        raise FlowcellError(f"--expect {unknown[0]!r}: the spin of {result.step} has no such output; it has "
                            f"{', '.join(sorted(result.outcome.artifacts)) or 'none'}.")
    path = Path(test_file)
    if path.suffix != ".py":
        raise FlowcellError(f"--as-test {str(test_file)!r}: the test file must end in .py (e.g. test_{result.step}.py).")
    path.parent.mkdir(parents=True, exist_ok=True)
    freeze_spin(spinner, flow, result, pathspec, overrides, fixture_dir(path), names)
    path.write_text(_test_source(flow, result, path, Path(flow.path), names, command, overrides))
    return path
