"""The child side of :mod:`flowcell._evaluate`: run a flow's module code, report its defaults.

Started as ``python -m flowcell._evaluate_child`` with the request on stdin; ``metaflow``
resolves to flowcell here, as in a task.
"""

from __future__ import annotations

import ast
import base64
import json
import os
import pickle
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from ._evaluate import ENV_PREFIX, DeployContext
from ._metaflow_shim import install, task_namespace
from .project import project_fields
from .current import current
from .parameters import Config
from .user_config import bind, resolve, value_of


def _main() -> None:
    """The child side: run the module code, report defaults (pickled) on stdout."""
    request = json.loads(sys.stdin.read())
    install()
    current._set(flow_name=request["flow"], username=request["user"],
                 **project_fields(request["flow_decorators"], request["flow"], request["user"]))
    if request.get("path"):
        sys.path.insert(0, str(Path(request["path"]).parent))
    namespace = task_namespace(request.get("path"))
    for cell in request["cells"]:
        tree = ast.parse(cell["source"], cell["filename"])
        ast.increment_lineno(tree, cell["first_line"] - 1)
        exec(compile(tree, cell["filename"], "exec"), namespace)
    configs = _configs(namespace, request)
    current._values.update(project_fields(request["flow_decorators"], request["flow"], request["user"],
                                          lambda expr: resolve(eval(expr, namespace))))
    defaults: dict[str, Any] = {}
    for var in request["vars"]:
        param = namespace.get(var)
        if isinstance(param, Config):
            continue
        default = getattr(param, "default", None)
        if callable(default) and not isinstance(default, type):
            default = default(_context(request["flow"], getattr(param, "name", var), namespace))
        defaults[var] = resolve(default)
    env = {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIX)}
    project = {k: current._values[k] for k in ("project_name", "branch_name", "is_production", "is_user_branch",
                                                "project_flow_name") if k in current._values}
    blob = base64.b64encode(pickle.dumps({"defaults": defaults, "env": env, "configs": configs,
                                          "project": project})).decode()
    sys.stdout.write(f"\nFLOWCELL-EVALUATED {blob}\n")


def _context(flow: str, name: str, namespace: dict[str, Any]) -> DeployContext:
    """The deploy context a default function gets; ``ctx.configs.NAME`` is a resolved config."""
    ctx = DeployContext(flow, name)
    ctx.configs = SimpleNamespace(**{c.name: c.__dict__.get("_fc_config_value")
                                     for c in namespace.values() if isinstance(c, Config)})
    return ctx


def _configs(namespace: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    """Resolve every ``Config`` of the module code, in the order written; ``{var: value}``."""
    out: dict[str, Any] = {}
    for var, config in list(namespace.items()):
        if isinstance(config, Config):
            value = value_of(config, request["config_files"].get(config.name),
                             _context(request["flow"], config.name, namespace))
            config._bind(value)
            out[var] = value
    bind({c.name: c.__dict__.get("_fc_config_value") for c in namespace.values() if isinstance(c, Config)})
    return out


if __name__ == "__main__":
    _main()
