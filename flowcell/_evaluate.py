"""Evaluate a flow's module code in a separate process to learn its parameter defaults.

Metaflow takes a flow's *graph* from the source but *executes* the module and the
class body: a ``Parameter`` default may be a call or a function of the deploy context
(``default=str_func``), module code may create the file an ``IncludeFile`` names or set
``METAFLOW_RUN_<NAME>``.  flowcell keeps reading the graph statically; when a flow's
parameters need it, :func:`evaluate_parameters` runs the module code once, in a fresh
Python process (never in the notebook's own kernel), with ``metaflow`` resolving to
flowcell, and returns the defaults and the ``METAFLOW_RUN_*`` environment it produced.
"""

from __future__ import annotations

import base64
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

from .errors import ParameterError
from .model import FlowSource

ENV_PREFIX = "METAFLOW_RUN_"


class DeployContext:
    """What Metaflow passes to a callable default (its ``ParameterContext``)."""

    def __init__(self, flow_name: str, parameter_name: str) -> None:
        self.flow_name = flow_name
        self.parameter_name = parameter_name
        self.user_name = os.environ.get("FLOWCELL_USER") or os.environ.get("METAFLOW_USER") or os.environ.get("USER")
        self.logger = print
        self.ds_type = "local"
        self.configs: Any = None


def evaluate_parameters(flow: FlowSource, config_files: dict[str, str] | None = None
                        ) -> tuple[dict[str, Any], dict[str, str], dict[str, Any]]:
    """``({var: default}, {METAFLOW_RUN_X: value}, {var: config value})`` after running ``flow``'s
    module code; ``config_files`` are the files given to the run for configs, by config name."""
    payload = _evaluate(flow, config_files)
    return payload["defaults"], payload["env"], payload["configs"]


def evaluate_project(flow: FlowSource, user: str) -> dict[str, Any]:
    """``@project``'s fields as the flow's tasks see them, after its module code ran (a name
    from a config, a branch the module code sets); ``{}`` without ``@project``."""
    return dict(_evaluate(flow, None, user)["project"])


def _evaluate(flow: FlowSource, config_files: dict[str, str] | None, user: str | None = None) -> dict[str, Any]:
    request = {
        "config_files": config_files or {},
        "flow": flow.name,
        "path": flow.path,
        "cells": [{"source": c.source, "filename": c.filename or c.label, "first_line": c.first_line}
                  for c in flow.code_cells],
        "vars": [p.var for p in flow.parameters],
        "flow_decorators": flow.flow_decorators,
        "user": user or os.environ.get("FLOWCELL_USER") or os.environ.get("METAFLOW_USER") or os.environ.get("USER"),
    }
    cwd = str(Path(flow.path).parent) if flow.path else None
    proc = subprocess.run([sys.executable, "-m", "flowcell._evaluate_child"], input=json.dumps(request),
                          capture_output=True, text=True, cwd=cwd)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("FLOWCELL-EVALUATED ")]
    if proc.returncode or not lines:
        detail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise ParameterError(f"Running the module code of flow {flow.name} to learn its parameter defaults "
                             f"failed: {detail}")
    return dict(pickle.loads(base64.b64decode(lines[-1].split(" ", 1)[1])))
