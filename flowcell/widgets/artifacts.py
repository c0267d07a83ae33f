"""The artifact inspector shown after a spin or a run: one line, one list, previews on demand."""

from __future__ import annotations

import html
from typing import Any

import traitlets

from ._base import FlowcellWidget


def human_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.0f} B"


class ArtifactInspector(FlowcellWidget):
    """A task's artifacts: name, type, size, created/changed/passed on; a preview when one is opened."""

    headline = traitlets.Unicode("").tag(sync=True)
    task = traitlets.Unicode("").tag(sync=True)
    artifacts = traitlets.List(traitlets.Dict()).tag(sync=True)

    def __init__(self, task: Any, created: list[str] | tuple[str, ...] = (),
                 changed: list[str] | tuple[str, ...] = (), headline: str = "") -> None:
        created_set, changed_set = set(created), set(changed)

        def flag(name: str) -> str:
            return "created" if name in created_set else ("changed" if name in changed_set else "passed on")

        arts = sorted((a for a in task.artifacts if not a.id.startswith("_")),
                      key=lambda a: (flag(a.id) == "passed on", a.id))
        super().__init__(kind="artifacts", headline=headline, task=task.pathspec,
                         artifacts=[{"name": a.id, "type": a.type, "size": a.size, "flag": flag(a.id)}
                                    for a in arts])
        self._client_task = task

    def _task(self, pathspec: str) -> Any:
        return self._client_task if pathspec == self.task else super()._task(pathspec)

    def preview(self, name: str) -> dict[str, Any]:
        """The preview of one artifact (loads it; the front end asks for this when it is opened)."""
        return self.open_preview(self.task, name)

    def fallback_html(self) -> str:
        cell = "style='padding:2px 10px;border-bottom:1px solid #d0d7de;text-align:left'"
        rows = "".join(
            f"<tr><td {cell}><b>{html.escape(a['name'])}</b></td><td {cell}>{html.escape(a['type'])}</td>"
            f"<td {cell}>{human_size(a['size'])}</td><td {cell}>{a['flag']}</td></tr>" for a in self.artifacts)
        head = "".join(f"<th {cell}>{h}</th>" for h in ("artifact", "type", "size", "this step"))
        title = html.escape(self.headline or f"{self.task}: {len(self.artifacts)} artifacts")
        return f"<div>{title}</div><table style='border-collapse:collapse'><tr>{head}</tr>{rows}</table>"

    def fallback_text(self) -> str:
        lines = [self.headline or f"{self.task}: {len(self.artifacts)} artifacts"]
        lines += [f"  {a['name']:<24} {a['type']:<28} {human_size(a['size']):>10}  {a['flag']}"
                  for a in self.artifacts]
        return "\n".join(lines)


ArtifactsView = ArtifactInspector
