"""Runs, tasks and artifacts as JSON-ready dicts: the shapes of ``--json`` and of the MCP tools.

Everything here reads what the store holds; nothing unpickles more than the one
artifact a preview asks for, and no value leaves as a pickle.
"""

from __future__ import annotations

import datetime
from html.parser import HTMLParser
from typing import Any

TAIL_LINES = 40


def _iso(when: datetime.datetime | None) -> str | None:
    return None if when is None else when.isoformat(timespec="seconds")


def tail(text: str, lines: int = TAIL_LINES) -> str:
    """The last ``lines`` lines of ``text`` (all of it when shorter)."""
    parts = text.splitlines(keepends=True)
    return "".join(parts[-lines:]) if lines > 0 else ""


def run_summary(result: Any) -> dict[str, Any]:
    """One machine-readable result for a finished run or resume (``--json``)."""
    from .client import Run
    from .errors import StepFailed

    run = Run._open(result.pathspec, result.root)
    error = None
    if result.failures:
        first = result.failures[0]
        failed = StepFailed.of(first.pathspec, first.outcome.error if first.outcome else None)
        error = {"pathspec": failed.pathspec, "type": failed.ename, "message": failed.evalue,
                 "line": failed.detail.get("line")}
    end = run.end_task
    return {"status": result.status, "pathspec": result.pathspec, "origin": run.origin_pathspec,
            "artifacts": sorted(a.id for a in end.artifacts) if end else [], "error": error,
            "reused": [{"pathspec": p, "origin": o} for p, o in getattr(result, "reused", [])]}


def task_info(task: Any, tail_lines: int = TAIL_LINES) -> dict[str, Any]:
    """A task: status, timings, attempt, exception, stdout/stderr tails, artifact names."""
    record = task._record
    exc = record.exception or None
    duration = None if record.finished_at is None else round(record.finished_at - record.created_at, 4)
    return {
        "pathspec": task.pathspec, "step": record.step, "status": task.status,
        "created_at": _iso(task.created_at), "finished_at": _iso(task.finished_at), "duration": duration,
        "attempt": record.attempt, "index": task.index, "origin": record.origin,
        "exception": None if not exc else {"type": exc.get("ename"), "message": exc.get("evalue"),
                                           "line": exc.get("line")},
        "stdout": tail(task.stdout, tail_lines), "stderr": tail(task.stderr, tail_lines),
        "artifacts": sorted(a.id for a in task.artifacts if not a.id.startswith("_")),
    }


def run_info(run: Any) -> dict[str, Any]:
    """A run: status, timings, parameters, tags and each step's tasks with their status."""
    duration = None
    if run.finished_at is not None:
        duration = round((run.finished_at - run.created_at).total_seconds(), 4)
    steps = []
    for step in reversed(run.steps()):  # steps() is newest first, as Metaflow iterates
        steps.append({"step": step.id, "tasks": [{"pathspec": t.pathspec, "status": t.status}
                                                 for t in step.tasks()]})
    return {
        "pathspec": run.pathspec, "status": run.status, "created_at": _iso(run.created_at),
        "finished_at": _iso(run.finished_at), "duration": duration, "parameters": run.parameters,
        "tags": sorted(run.user_tags), "system_tags": sorted(run.system_tags), "origin": run.origin_pathspec,
        "steps": steps,
    }


def artifact_preview(artifact: Any, max_chars: int = 2000) -> dict[str, Any]:
    """An artifact's type, stored size, shape and a short text preview (never its pickle)."""
    from .preview import preview_text, summary

    value = artifact.data
    shape = getattr(value, "shape", None)
    length = len(value) if isinstance(value, (str, bytes, list, tuple, dict, set, frozenset)) else None
    text = preview_text(value)
    return {
        "pathspec": artifact.pathspec, "name": artifact.id, "type": type(value).__qualname__,
        "module": type(value).__module__, "size": artifact.size, "summary": summary(value),
        "shape": list(shape) if isinstance(shape, tuple) else None, "length": length,
        "preview": text[:max_chars] + ("..." if len(text) > max_chars else ""),
    }


class _TextOfHTML(HTMLParser):
    """The readable text of a card: scripts and styles dropped, cells tab-separated."""

    _BLOCKS = {"p", "div", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6", "br", "pre", "table", "section"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        elif tag == "img":
            self.parts.append(f"[image{': ' + a if (a := dict(attrs).get('alt')) else ''}]")
        elif tag in ("td", "th"):
            self.parts.append("\t")
        elif tag in self._BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skip = max(0, self._skip - 1)
        elif tag in self._BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def html_to_text(html_text: str) -> str:
    """Plain text of an HTML page, one block per line, blank runs collapsed."""
    parser = _TextOfHTML()
    parser.feed(html_text)
    lines = []
    for line in "".join(parser.parts).splitlines():
        cells = [" ".join(part.split()) for part in line.split("\t")]
        lines.append(" | ".join(c for c in cells if c))
    return "\n".join(line for line in lines if line)
