"""``flowcell mcp [NOTEBOOK_OR_DIR]``: flowcell as Model Context Protocol tools over stdio.

The tools are plain synchronous methods of :class:`FlowcellTools` returning the
dicts ``--json`` prints (see :mod:`flowcell.results`); :func:`build_server` hands
them to the official SDK's ``MCPServer``, which runs each call in a worker thread.
Runs and spins share one warm kernel pool for the life of the server, so an
agent's second spin costs what a notebook's does.  A :class:`FlowcellError` becomes
a tool error carrying its one-sentence message.

The SDK is an optional extra (``pip install 'flowcell[mcp]'``) and is imported
only here, so ``import flowcell`` never pays for it.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from .errors import FlowcellError, NotFoundError

F = TypeVar("F", bound=Callable[..., Any])

INSTRUCTIONS = """\
flowcell runs Metaflow-style flows written in Jupyter notebooks (%%step cells).
Typical loop: `flows` to see the steps, `run` once to record inputs for every step,
then after editing a step's cell `spin` it against those inputs (fast; records no run),
`read` a run or task to see status, exceptions and output, `preview_artifact` to look
at a value, `resume` to continue a failed run from its failed step, `status` to see which
steps are stale against the latest run and why (with `diff`, what changed in a step's cell)."""


class FlowcellTools:
    """What the MCP tools do, without MCP: testable and callable from Python."""

    def __init__(self, target: Path) -> None:
        self.target = target.resolve()
        self.home = self.target if self.target.is_dir() else self.target.parent
        # One Spinner per notebook for the server's life: spins chain as in a notebook, and
        # the results kept here keep their scratch stores (and so `read` of a spin) alive.
        self._spinners: dict[str, Any] = {}
        self._spins: dict[str, Any] = {}
        self._ns_lock = threading.Lock()

    # -- helpers ---------------------------------------------------------------

    def notebook(self, notebook: str | None) -> Path:
        """The notebook a call names (relative to the served folder), or the served one."""
        if notebook:
            path = Path(notebook)
            path = path if path.is_absolute() else self.home / path
            if not path.exists():
                raise NotFoundError(f"Notebook {notebook!r} does not exist under {self.home}.")
            return path
        if not self.target.is_dir():
            return self.target
        from .describe import find_notebooks

        found = find_notebooks(self.home)
        if len(found) != 1:
            names = ", ".join(str(p.relative_to(self.home)) for p in found[:10]) or "none"
            raise FlowcellError(f"Say which notebook: {self.home} holds {len(found)} ({names}).")
        return found[0]

    def _flow(self, notebook: str | None) -> Any:
        from .runner import load_flow

        return load_flow(self.notebook(notebook))

    def _client(self, namespace: str | None) -> Any:
        """The Client with the namespace a read asks for ("" means every namespace)."""
        from . import client

        client.namespace(None if namespace == "" else (namespace or client.default_namespace()))
        return client

    def _task(self, client: Any, pathspec: str) -> Any:
        """A task of the store, else of a spin this server made (spins live in their own stores)."""
        parts = pathspec.strip("/").split("/")
        try:
            return client.Step(pathspec).task if len(parts) == 3 else client.Task(pathspec)
        except NotFoundError:
            spun = self._spins.get(pathspec.strip("/"))
            if spun is None:
                raise
            return client.Task(pathspec, _root=Path(spun.root))

    # -- tools -----------------------------------------------------------------

    def flows(self, notebook: str | None = None) -> dict[str, Any]:
        """The flows served (or one notebook's): steps in graph order, transitions, parameters, cells."""
        from .describe import describe_path

        target = self.notebook(notebook) if notebook else self.target
        return {"flows": describe_path(target)}

    def run(self, notebook: str | None = None, parameters: dict[str, Any] | None = None,
            tags: list[str] | None = None, max_workers: int = 4, reuse: bool = False) -> dict[str, Any]:
        """Run the whole flow as a recorded run; the result has the shape of ``flowcell run --json``.
        With ``reuse``, tasks whose fingerprint is unchanged are taken from earlier runs."""
        from .results import run_summary
        from .runner import shared_runtime
        from .runtime.runs import start_run

        flow = self._flow(notebook)
        result = start_run(shared_runtime(), flow, parameters or {}, tags=tags, max_workers=max_workers,
                           reuse=reuse)
        return run_summary(result)

    def resume(self, notebook: str | None = None, step: str | None = None, origin_run_id: str | None = None,
               parameters: dict[str, Any] | None = None, tags: list[str] | None = None,
               max_workers: int = 4) -> dict[str, Any]:
        """Re-run from ``step`` (default: the first failed one), cloning the tasks before it."""
        from .results import run_summary
        from .runner import shared_runtime
        from .runtime.runs import start_resume

        flow = self._flow(notebook)
        result = start_resume(shared_runtime(), flow, step, origin_run_id, parameters or {}, tags=tags,
                              max_workers=max_workers)
        return run_summary(result)

    def spin(self, pathspec: str, notebook: str | None = None, artifacts: dict[str, Any] | None = None,
             persist: bool = False, tail_lines: int = 40) -> dict[str, Any]:
        """Run one step against a past task's inputs; ``flowcell spin --json`` plus output tails."""
        from .options import spin_target
        from .results import tail
        from .runner import shared_runtime
        from .runtime.spin import Spinner

        path = self.notebook(notebook)
        flow = self._flow(str(path))
        step, past = spin_target(flow.name, [pathspec])
        spinner = self._spinners.get(str(path))
        if spinner is None:
            spinner = self._spinners[str(path)] = Spinner(shared_runtime())
        result = spinner.spin(flow, step, past, dict(artifacts or {}), persist=persist)
        if result.pathspec:
            self._spins[result.pathspec] = result
        out = result.summary()
        out["stdout"], out["stderr"] = tail(result.stdout, tail_lines), tail(result.stderr, tail_lines)
        return out

    def read(self, pathspec: str, namespace: str | None = None, tail_lines: int = 40) -> dict[str, Any]:
        """A flow's recent runs, a run (steps and tasks), or a task (status, exception, output tails)."""
        from .results import run_info, task_info

        with self._ns_lock:
            client = self._client(namespace)
            parts = pathspec.strip("/").split("/")
            if len(parts) == 1:
                runs = list(client.Flow(parts[0]).runs())[:20]
                return {"flow": parts[0], "runs": [{"pathspec": r.pathspec, "status": r.status,
                                                    "tags": sorted(r.user_tags)} for r in runs]}
            if len(parts) == 2:
                return run_info(client.Run(pathspec))
            return task_info(self._task(client, pathspec), tail_lines)

    def preview_artifact(self, pathspec: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        """One artifact of a task: type, stored size, shape and a short text preview."""
        from .results import artifact_preview

        with self._ns_lock:
            return artifact_preview(self._task(self._client(namespace), pathspec)[name])

    def read_card(self, pathspec: str, id: str | None = None, namespace: str | None = None) -> dict[str, Any]:
        """A task's card as plain text (tables as ``a | b`` rows, images as ``[image]``)."""
        from .cards import get_cards
        from .results import html_to_text

        with self._ns_lock:
            task = self._task(self._client(namespace), pathspec)
            cards = get_cards(task, id=id)
            if not cards:
                raise NotFoundError(f"Task {task.pathspec} has no cards: add @card to its %%step line.")
            return {"pathspec": task.pathspec,
                    "cards": [{"type": c.type, "id": c.id, "text": html_to_text(c.html)} for c in cards]}

    def status(self, notebook: str | None = None, run: str | None = None, diff: str | None = None,
               namespace: str | None = None) -> dict[str, Any]:
        """Each step up to date or stale against a run (default: the latest) with the reasons, as
        ``flowcell status --json`` prints it; with ``diff`` (a step), the unified diff of its cell instead."""
        from .staleness import flow_status, step_diff

        flow = self._flow(notebook)
        with self._ns_lock:
            self._client(namespace)
            if diff:
                return {"flow": flow.name, "step": diff, "diff": step_diff(flow, diff, run)}
            return flow_status(flow, run).to_json()


TOOLS = ("flows", "run", "spin", "resume", "read", "preview_artifact", "read_card", "status")


def _as_tool_errors(fn: F) -> F:
    """A FlowcellError becomes an error result: its one sentence as text, ``--json``'s error shape as data.

    (Raising the SDK's ToolError would prefix "Error executing tool NAME:" to the sentence.)
    """
    from mcp.types import CallToolResult, TextContent

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except FlowcellError as exc:
            return CallToolResult(content=[TextContent(type="text", text=str(exc))], is_error=True,
                                  structured_content={"status": "error", "error": {
                                      "type": type(exc).__name__, "message": str(exc)}})

    return wrapper  # type: ignore[return-value]


def build_server(tools: FlowcellTools) -> Any:
    """An ``MCPServer`` exposing every method named in :data:`TOOLS`."""
    from mcp.server.mcpserver import MCPServer

    from ._version import __version__

    server = MCPServer("flowcell", version=__version__, instructions=INSTRUCTIONS, log_level="WARNING")
    for name in TOOLS:
        method = getattr(tools, name)
        server.add_tool(_as_tool_errors(method), name=name, description=method.__doc__,
                        structured_output=True)
    return server


def serve(target: str | None = None) -> None:
    """Serve MCP over stdin/stdout until the client closes it."""
    try:
        import mcp  # noqa: F401  (only to say what is missing)
    except ImportError:
        raise FlowcellError("flowcell mcp needs the MCP SDK: pip install 'flowcell[mcp]'.") from None
    path = Path(target or ".").resolve()
    if not path.exists():
        raise NotFoundError(f"{target!r} does not exist: give a notebook or a folder of notebooks.")
    tools = FlowcellTools(path)
    # Relative paths in flows (data files, ./.flowcell_spin) resolve beside the notebooks.
    os.chdir(tools.home)
    build_server(tools).run("stdio")
