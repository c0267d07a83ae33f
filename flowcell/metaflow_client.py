"""Runs of the exported flow as Metaflow's own metadata records them (local or service).

``%flow_runs --metaflow`` and :func:`list_metaflow_runs` read them through Metaflow's
client, so a run started anywhere Metaflow reaches (``python flow.py run``, Argo,
Step Functions, Kubernetes) is listed with its status and tags, next to the command
that spins one of its steps in the notebook.  Nothing is copied: only
``--on metaflow`` runs are mirrored into the flowcell store (and are marked so here).
"""

from __future__ import annotations

import datetime
import html
from dataclasses import dataclass, field
from pathlib import Path
from types import EllipsisType
from typing import Any

from .config import find_store_root, has_store
from .errors import NotFoundError
from .metaflow_runs import METAFLOW_RUN_TAG as _METAFLOW_RUN_TAG
from .metaflow_runs import RUNTIME_TAG as _RUNTIME_TAG
from .metaflow_runs import import_metaflow
from .store.metadata import MetadataStore


@dataclass(frozen=True)
class MetaflowRunInfo:
    """One run of a flow in Metaflow's metadata."""

    pathspec: str
    status: str  # "completed", "failed" or "running"
    created_at: datetime.datetime | None
    finished_at: datetime.datetime | None
    user_tags: frozenset[str] = field(default_factory=frozenset)
    system_tags: frozenset[str] = field(default_factory=frozenset)
    #: The flowcell run mirroring it (``--on metaflow`` runs), e.g. ``ProdFlow/3``.
    mirrored_as: str | None = None

    @property
    def id(self) -> str:
        return self.pathspec.split("/", 1)[1]

    @property
    def tags(self) -> frozenset[str]:
        return self.user_tags | self.system_tags

    def spin_command(self, step: str) -> str:
        """The magic that spins ``step`` of this run's flow with this run's inputs."""
        return f"%spin {step} --from-metaflow {self.pathspec}"


def _mirrors(flow: str, near: str | Path | None) -> dict[str, str]:
    """Metaflow pathspec -> flowcell pathspec of the mirrored runs in the store."""
    root = find_store_root(near)
    if not has_store(root):
        return {}
    meta = MetadataStore(root)
    try:
        found = {}
        for record in meta.runs(flow, (_RUNTIME_TAG,)):
            for tag in record.system_tags:
                if tag.startswith(_METAFLOW_RUN_TAG):
                    found[tag[len(_METAFLOW_RUN_TAG):]] = record.pathspec
        return found
    finally:
        meta.close()


def list_metaflow_runs(
    flow: str,
    *tags: str,
    namespace: str | None | EllipsisType = ...,
    limit: int = 20,
    near: str | Path | None = None,
) -> list[MetaflowRunInfo]:
    """The newest ``limit`` runs of ``flow`` in Metaflow's metadata having every tag in ``tags``.

    ``namespace`` is a Metaflow namespace (``user:NAME``, ``production:TOKEN``, any tag);
    ``None`` lists every namespace; the default is Metaflow's own current namespace.
    Metaflow's client decides where it looks (``METAFLOW_DEFAULT_METADATA``, its
    profile): the local ``.metaflow`` folder or the metadata service.
    """
    metaflow = import_metaflow()
    previous = metaflow.get_namespace()
    try:
        if namespace is not ...:
            metaflow.namespace(namespace)
        try:
            runs = metaflow.Flow(flow).runs(*tags)
        except metaflow.exception.MetaflowNotFound:
            raise NotFoundError(f"Metaflow's metadata has no flow {flow} (run it with %run_flow --on metaflow, "
                                "or check METAFLOW_DEFAULT_METADATA / the Metaflow profile).") from None
        except metaflow.exception.MetaflowNamespaceMismatch:
            return []  # the flow has runs, none of them in this namespace
        mirrors = _mirrors(flow, near)
        found: list[MetaflowRunInfo] = []
        for run in runs:
            if len(found) >= limit:
                break
            finished = bool(run.finished)
            status = ("completed" if run.successful else "failed") if finished else "running"
            found.append(MetaflowRunInfo(run.pathspec, status, run.created_at, run.finished_at,
                                         frozenset(run.user_tags), frozenset(run.system_tags),
                                         mirrors.get(run.pathspec)))
        return found
    finally:
        metaflow.namespace(previous)


@dataclass
class MetaflowRunsTable:
    """What ``%flow_runs --metaflow`` shows: an HTML table in Jupyter, plain text elsewhere."""

    flow: str
    runs: list[MetaflowRunInfo]
    last_step: str = "STEP"

    def _rows(self) -> list[tuple[str, str, str, str, str]]:
        rows = []
        for r in self.runs:
            when = r.created_at.strftime("%Y-%m-%d %H:%M:%S") if r.created_at else "-"
            tags = ", ".join(sorted(r.user_tags)) or "-"
            rows.append((r.pathspec, r.status, when, tags, r.mirrored_as or "-"))
        return rows

    def __repr__(self) -> str:
        if not self.runs:
            return f"No runs of {self.flow} in Metaflow's metadata in this namespace (--all lists every namespace)."
        head = ("metaflow run", "status", "started", "tags", "in flowcell")
        rows = [head, *self._rows()]
        widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
        lines.append(f"Spin a step on a run's inputs: {self.runs[0].spin_command(self.last_step)}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        if not self.runs:
            return f"<p>{html.escape(repr(self))}</p>"
        colour = {"completed": "#2e7d32", "failed": "#c62828", "running": "#1565c0"}
        body = "".join(
            f"<tr><td><code>{html.escape(p)}</code></td><td style='color:{colour.get(s, '#888')}'>{s}</td>"
            f"<td>{html.escape(w)}</td><td>{html.escape(t)}</td><td>{html.escape(m)}</td>"
            f"<td><code>{html.escape(r.spin_command(self.last_step))}</code></td></tr>"
            for (p, s, w, t, m), r in zip(self._rows(), self.runs))
        return ("<table class='flowcell-metaflow-runs'><thead><tr><th>Metaflow run</th><th>status</th>"
                "<th>started</th><th>tags</th><th>in flowcell</th><th>spin in the notebook</th></tr></thead>"
                f"<tbody>{body}</tbody></table>")


def metaflow_runs_view(flow: str, tags: tuple[str, ...] = (), namespace: Any = ..., limit: int = 20,
                       near: str | Path | None = None, last_step: str = "STEP") -> MetaflowRunsTable:
    """The table ``%flow_runs --metaflow`` displays."""
    return MetaflowRunsTable(flow, list_metaflow_runs(flow, *tags, namespace=namespace, limit=limit, near=near),
                             last_step)
