"""What the magics, the CLI and ``Runner`` take, parsed once so the three cannot drift.

Spin targets (``STEP``, ``RUN/STEP[/TASK]``, ``FLOW/RUN/STEP[/TASK]``), artifact
overrides (``--artifacts``, ``--artifacts-module``) and a run's ``--PARAM VALUE``
pairs become the same values the Python API takes.
"""

from __future__ import annotations

import ast
import runpy
from pathlib import Path
from typing import Any

from .errors import FlowcellError, NotFoundError

PATHSPEC_FORMS = "STEP, RUN/STEP, RUN/STEP/TASK or FLOW/RUN/STEP[/TASK]"


def parse_pathspec(flow: str, text: str) -> tuple[str | None, str | None, str | None]:
    """Metaflow's spin forms as ``(run, step, task)``: STEP, RUN/STEP, RUN/STEP/TASK, FLOW/RUN/STEP[/TASK]."""
    parts = text.strip().split("/")
    if not all(parts):
        raise NotFoundError(f"{text!r} is not a pathspec; use {PATHSPEC_FORMS}.")
    run: str | None = None
    task: str | None = None
    flow_part = flow
    if len(parts) == 1:
        step = parts[0]
    elif len(parts) == 2:
        run, step = parts
    elif len(parts) == 3 and parts[0].isdigit():
        run, step, task = parts
    elif len(parts) == 3:
        flow_part, run, step = parts
    elif len(parts) == 4:
        flow_part, run, step, task = parts
    else:
        raise NotFoundError(f"{text!r} has too many parts for a pathspec.")
    if flow_part != flow:
        raise NotFoundError(f"{text!r} belongs to flow {flow_part}, not to this notebook's flow {flow}.")
    return run or None, step, task or None


def spin_target(flow: str, words: list[str]) -> tuple[str, str | None]:
    """``STEP``, ``PATHSPEC`` or ``STEP PATHSPEC`` as ``(step, pathspec or None)``."""
    if not words or len(words) > 2:
        raise FlowcellError("Spin takes a step and/or a pathspec, e.g. train or 3/train/5.")
    pathspec = words[-1]
    _, step, _ = parse_pathspec(flow, pathspec)
    if step is None:
        raise FlowcellError(f"{pathspec!r} names no step.")
    if len(words) == 2 and words[0] != step:
        raise FlowcellError(f"Step {words[0]!r} does not match pathspec {pathspec!r}.")
    return step, pathspec if "/" in pathspec else None


def load_artifacts_module(path: str) -> dict[str, Any]:
    """``ARTIFACTS`` from a Python file, with a clear error for each way it can be wrong."""
    p = Path(path)
    if not p.is_file():
        raise FlowcellError(f"Artifacts module {path!r} does not exist.")
    try:
        namespace = runpy.run_path(str(p))
    except SystemExit as exc:  # sys.exit() in the module must not end the notebook or the command
        raise FlowcellError(f"Artifacts module {path!r} called sys.exit({exc.code!r}) while being imported; "
                            "it should only define a dict named ARTIFACTS.") from None
    except Exception as exc:
        raise FlowcellError(f"Artifacts module {path!r} failed to import: {type(exc).__name__}: {exc}") from None
    value = namespace.get("ARTIFACTS")
    if not isinstance(value, dict):
        raise FlowcellError(
            f"Artifacts module {path!r} must define a dict named ARTIFACTS, e.g. ARTIFACTS = {{'k': 15}}."
        )
    return value


def parse_artifacts_expr(text: str, namespace: dict[str, Any] | None = None) -> dict[str, Any]:
    """``--artifacts "{'k': 15}"``: a dict expression (evaluated in ``namespace`` if given)."""
    try:
        tree = ast.parse(text.strip(), "<--artifacts>", mode="eval")
    except SyntaxError as exc:
        raise FlowcellError(f"--artifacts {text!r} is not a Python expression ({exc.msg}); "
                            "write a dict such as \"{'k': 15}\".") from None
    if namespace is None:
        try:
            value = ast.literal_eval(tree)
        except (ValueError, TypeError):
            raise FlowcellError(
                f"--artifacts {text!r} is not a literal: from a shell it takes plain values such as "
                "\"{'k': 15}\"; put computed values in a file and pass --artifacts-module FILE.") from None
    else:
        try:
            value = eval(compile(tree, "<--artifacts>", "eval"), dict(namespace))
        except Exception as exc:
            raise FlowcellError(f"--artifacts {text!r} could not be evaluated: {type(exc).__name__}: {exc}") from None
    if not isinstance(value, dict):
        raise FlowcellError(f"--artifacts must be a dict expression such as \"{{'k': 15}}\", not {type(value).__name__}.")
    return value


def spin_overrides(artifacts_module: str | None, artifacts: str | dict[str, Any] | None,
                   namespace: dict[str, Any] | None = None) -> dict[str, Any]:
    """The artifact overrides of a spin: the module's ``ARTIFACTS``, then ``--artifacts`` on top."""
    overrides: dict[str, Any] = {}
    if artifacts_module:
        overrides.update(load_artifacts_module(artifacts_module))
    if isinstance(artifacts, str):
        overrides.update(parse_artifacts_expr(artifacts, namespace))
    elif artifacts:
        overrides.update(artifacts)
    return overrides


#: Options of ``run``/``resume`` that take a value (everything else ``--NAME VALUE`` is a parameter).
RUN_OPTIONS = frozenset({"--tag", "--max-workers", "--run-id-file", "--namespace", "--origin-run-id", "--root"})
RUN_FLAGS = frozenset({"--quiet", "--json", "--help", "--reuse"})


def split_params(
    argv: list[str], known_with_value: frozenset[str] | set[str] = RUN_OPTIONS, known_flags: frozenset[str] = RUN_FLAGS
) -> tuple[dict[str, str], list[str]]:
    """Separate ``--PARAM VALUE`` pairs (any flag that is not a known option) from the rest."""
    params: dict[str, str] = {}
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        name, eq, inline = arg.partition("=")
        if arg.startswith("--") and name not in known_with_value and name not in known_flags | {"--help"}:
            if eq:
                params[name[2:]] = inline
                i += 1
                continue
            if i + 1 >= len(argv):
                raise FlowcellError(f"Parameter {arg} needs a value, e.g. {arg} 0.5.")
            params[name[2:]] = argv[i + 1]
            i += 2
            continue
        rest.append(arg)
        i += 1
    return params, rest


def output_file(path: str | Path, option: str) -> Path:
    """A file flowcell will write (``-o``, ``--run-id-file``), checked before any work starts."""
    target = Path(path).expanduser()
    folder = target.parent
    if target.is_dir():
        raise FlowcellError(f"{option} {path} is a folder; give the path of a file.")
    if not folder.is_dir():
        raise FlowcellError(f"{option} {path}: the folder {folder} does not exist; create it or choose another path.")
    return target
