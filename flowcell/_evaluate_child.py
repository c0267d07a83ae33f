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
from typing import Any

from ._evaluate import ENV_PREFIX, DeployContext
from ._metaflow_shim import install, project_fields, task_namespace
from .current import current


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
    current._values.update(project_fields(request["flow_decorators"], request["flow"], request["user"]))
    defaults: dict[str, Any] = {}
    for var in request["vars"]:
        param = namespace.get(var)
        default = getattr(param, "default", None)
        if callable(default) and not isinstance(default, type):
            default = default(DeployContext(request["flow"], getattr(param, "name", var)))
        defaults[var] = default
    env = {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIX)}
    blob = base64.b64encode(pickle.dumps({"defaults": defaults, "env": env})).decode()
    sys.stdout.write(f"\nFLOWCELL-EVALUATED {blob}\n")


if __name__ == "__main__":
    _main()
