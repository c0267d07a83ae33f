"""Start a recorded run: lint, resolve parameters, record, schedule, finish."""

from __future__ import annotations

import getpass
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import parameters as params_mod
from .._version import __version__
from ..errors import InvalidNameError
from ..graph import FlowGraph, build_graph
from ..lint import lint
from ..model import FlowSource
from ..store.blobs import BlobStore
from ..store.metadata import MetadataStore
from ..store.serialize import dump_artifact
from .engine import Observer, Runtime
from .scheduler import Done, Pending, RunContext, Scheduler

MAX_TAG_LENGTH = 500


def store_root() -> Path:
    """``$FLOWCELL_ROOT`` or ``.flowcell`` in the working directory."""
    return Path(os.environ.get("FLOWCELL_ROOT") or ".flowcell").resolve()


def username() -> str:
    return os.environ.get("FLOWCELL_USER") or os.environ.get("USER") or getpass.getuser()


def default_namespace() -> str:
    token = os.environ.get("FLOWCELL_PRODUCTION_TOKEN")
    return f"production:{token}" if token else f"user:{username()}"


def system_tags(user: str) -> list[str]:
    return [
        f"user:{user}",
        "runtime:flowcell",
        f"python_version:{platform.python_version()}",
        f"flowcell_version:{__version__}",
        f"date:{time.strftime('%Y%m%d')}",
    ]


def check_tags(tags: list[str]) -> list[str]:
    for tag in tags:
        if not isinstance(tag, str) or not tag.strip():
            raise InvalidNameError("Tags must be non-empty strings.")
        if len(tag) > MAX_TAG_LENGTH:
            raise InvalidNameError(f"Tag {tag[:40]!r}... is longer than {MAX_TAG_LENGTH} characters.")
    return list(dict.fromkeys(tags))


@dataclass
class RunResult:
    flow: str
    run_number: int
    status: str
    root: str
    failures: list[Done] = field(default_factory=list)

    @property
    def pathspec(self) -> str:
        return f"{self.flow}/{self.run_number}"


def prepare(flow: FlowSource) -> FlowGraph:
    """Build and lint the graph; raises before anything is recorded."""
    graph = build_graph(flow)
    lint(graph)
    return graph


def start_run(
    runtime: Runtime,
    flow: FlowSource,
    given_params: dict[str, Any] | None = None,
    tags: list[str] | None = None,
    max_workers: int = 4,
    run_id_file: str | None = None,
    observer: Observer | None = None,
    root: Path | None = None,
) -> RunResult:
    """Run ``flow`` as a recorded run and wait for it (Ctrl-C stops it)."""
    graph = prepare(flow)
    base_dirs = [Path.cwd()] + ([Path(flow.path).parent] if flow.path else [])
    values = params_mod.resolve(flow, given_params or {}, base_dirs)
    user_tags = check_tags(list(tags or []))
    root = root or store_root()
    meta = MetadataStore(root)
    blobs = BlobStore(root)
    user = username()
    run_number = meta.new_run(flow.name, user, user_tags, system_tags(user),
                              params_mod.display_values(values), source=flow.path)
    if run_id_file:
        Path(run_id_file).write_text(str(run_number))
    ctx = RunContext(flow=flow, graph=graph, meta=meta, root=str(root), run_number=run_number,
                     parameter_names=list(values), namespace=default_namespace(), username=user,
                     tags=user_tags, cwd=os.getcwd(), max_workers=max_workers)
    param_task = meta.new_task(flow.name, run_number, "_parameters", [], [])
    refs = {name: dump_artifact(blobs, name, value, step="_parameters").to_json() for name, value in values.items()}
    meta.finish_task(flow.name, run_number, param_task, "completed", refs)
    first = Done("_parameters", param_task, f"{flow.name}/{run_number}/_parameters/{param_task}", refs, [])
    runtime.resize(min(max_workers, 4))

    async def go(emit: Observer) -> str:
        emit("run_started", {"pathspec": f"{flow.name}/{run_number}", "steps": list(graph.sorted_nodes())})
        scheduler = Scheduler(ctx, runtime.pool, emit)
        status = "failed"
        try:
            status = await scheduler.run([Pending("start", [first], [])])
        finally:
            meta.finish_run(flow.name, run_number, status)
            emit("run_finished", {"pathspec": f"{flow.name}/{run_number}", "status": status})
        result.failures = scheduler.failed
        return status

    result = RunResult(flow.name, run_number, "running", str(root))
    try:
        result.status = runtime.run(go, observer)
    finally:
        meta.close()
    return result
