"""``%run_flow`` while it runs: a live table per step, then the run view.

Fed by the runtime's events through :class:`~flowcell.progress.NotebookProgress`.
The kernel sends a state change only when a task starts or ends (the elapsed
times tick in the browser); when the run ends the widget becomes the run view
of the run browser (graph, timeline, tasks, a task's artifacts/logs/cards).
"""

from __future__ import annotations

import html
import time
from pathlib import Path
from typing import Any

import traitlets

from .runs import RunBrowser


def _expected(record: Any) -> int | None:
    """How many tasks the step of ``record`` will have: the product of its foreach splits."""
    frames = [f for f in record.foreach_stack if f.get("kind", "foreach") == "foreach"]
    if not frames:
        return None
    n = 1
    for f in frames:
        n *= int(f.get("num_splits") or 1)
    return n


def _new_step(name: str) -> dict[str, Any]:
    """A step's row before any of its tasks started. ``done`` includes the tasks taken from
    earlier runs, ``reused`` (``--reuse``) or ``cloned`` (``%resume``); ``origins`` lists the
    runs they came from, ``origin`` the last one's pathspec."""
    return {"name": name, "done": 0, "running": 0, "failed": 0, "reused": 0, "cloned": 0, "origins": [],
            "origin": None, "expected": None, "started": None, "finished": None}


class LiveRun(RunBrowser):
    """Progress of one run: per step done / running / failed, a progress bar and elapsed time."""

    live = traitlets.Dict().tag(sync=True)

    def __init__(self, pathspec: str, steps: list[str], store: Path | None = None) -> None:
        flow = pathspec.split("/")[0]
        self._steps: dict[str, dict[str, Any]] = {s: _new_step(s) for s in steps if not s.startswith("_")}
        self._errors: list[dict[str, str]] = []
        self._pathspec, self._status, self._started = pathspec, "running", time.time()
        self._finished: float | None = None
        self._published = 0.0
        # The view is chosen from the state the widget opens with: kind and first progress.
        super().__init__(flow, namespace=None, store=store, kind="live", live=self._state())

    def refresh(self) -> None:
        """No run table here: the live view shows one run."""

    def _step(self, name: str) -> dict[str, Any]:
        return self._steps.setdefault(name, _new_step(name))

    def event(self, kind: str, p: dict[str, Any]) -> None:
        """Apply one runtime event (``task_started``, ``task_finished``, ``run_finished``)."""
        now = time.time()
        if kind == "task_started" and not p["step"].startswith("_"):
            s = self._step(p["step"])
            s["running"] += 1
            s["started"] = s["started"] or now
            s["finished"] = None
            if s["expected"] is None and p.get("task_id") is not None:
                s["expected"] = self._expected_of(int(p["task_id"]))
        elif kind == "task_finished" and not p["step"].startswith("_"):
            s = self._step(p["step"])
            s["running"] = max(0, s["running"] - 1)
            s["done" if p["status"] == "completed" else "failed"] += 1
            s["started"] = s["started"] or now
            if p.get("reused") or p.get("cloned"):
                self._taken(s, p, "reused" if p.get("reused") else "cloned")
            if not s["running"]:
                s["finished"] = now
            if p["status"] != "completed" and p.get("error") and not p.get("stopped"):
                err = p["error"]
                self._errors.append({"pathspec": p["pathspec"], "text": f"{err.get('ename')}: {err.get('evalue')}"})
        elif kind == "run_finished":
            self._status, self._finished = p["status"], now
        else:
            return
        # Starts of a wide foreach arrive in bursts: one message per 0.1 s is enough for them.
        if kind != "task_started" or now - self._published > 0.1:
            self._publish()

    def _taken(self, s: dict[str, Any], p: dict[str, Any], how: str) -> None:
        """Count a task taken from an earlier run (no task_started came for it) and name its origin."""
        origin = str(p[how])
        s[how] += 1
        s["origin"] = origin
        run = "/".join(origin.split("/")[:2])
        if run not in s["origins"]:
            s["origins"].append(run)
        if s["expected"] is None:  # a foreach of reused splits still knows its split count
            s["expected"] = self._expected_of(int(p["pathspec"].rsplit("/", 1)[1]))

    def _expected_of(self, task_id: int) -> int | None:
        flow, run = self._pathspec.split("/")[:2]
        record = self.meta.get_task(flow, int(run), task_id)
        return None if record is None else _expected(record)

    def _state(self) -> dict[str, Any]:
        # origins is copied: traitlets must see a changed list as a new value.
        steps = [{**s, "origins": list(s["origins"])} for s in self._steps.values()]
        return {"pathspec": self._pathspec, "status": self._status, "started": self._started,
                "finished": self._finished, "steps": steps, "errors": list(self._errors)}

    def _publish(self) -> None:
        self._published = time.time()
        self.live = self._state()

    def finish(self) -> None:
        """The run ended: show its run view."""
        self.selected = self._pathspec.split("/")[1]

    def fallback_html(self) -> str:
        cell = "style='padding:2px 10px;border-bottom:1px solid #d0d7de;text-align:left'"
        rows = "".join(
            f"<tr><td {cell}>{html.escape(s['name'])}</td><td {cell}>{s['done']} done</td>"
            f"<td {cell}>{html.escape(_taken_text(s))}</td>"
            f"<td {cell}>{s['running']} running</td><td {cell}>{s['failed']} failed</td>"
            f"<td {cell}>{self._elapsed(s)}</td></tr>" for s in self._steps.values())
        errors = "".join(f"<div style='color:#cf222e'>{html.escape(e['pathspec'])}: {html.escape(e['text'])}</div>"
                         for e in self._errors)
        took = (self._finished or time.time()) - self._started
        return (f"<div class='flowcell-progress'><b>{html.escape(self._pathspec)}</b> &mdash; "
                f"{html.escape(self._status)}, {took:.1f}s<table style='border-collapse:collapse'>{rows}</table>"
                f"{errors}</div>")

    @staticmethod
    def _elapsed(s: dict[str, Any]) -> str:
        if s["started"] is None:
            return ""
        return f"{(s['finished'] or time.time()) - s['started']:.1f}s"

    def fallback_text(self) -> str:
        done = sum(s["done"] for s in self._steps.values())
        running = sum(s["running"] for s in self._steps.values())
        failed = sum(s["failed"] for s in self._steps.values())
        took = (self._finished or time.time()) - self._started
        taken = [f"{n} {how}" for how in ("reused", "cloned") if (n := sum(s[how] for s in self._steps.values()))]
        runs = sorted({r for s in self._steps.values() for r in s["origins"]})
        done_text = f"{done} tasks done" + (f" ({', '.join(taken)} from {', '.join(runs)})" if taken else "")
        return (f"{self._pathspec}: {done_text}, {running} running, {failed} failed, {took:.1f}s "
                f"({self._status})")


def _taken_text(s: dict[str, Any]) -> str:
    """``"3 reused from F/4"`` for a step's row (one task: its origin's pathspec); "" when none."""
    taken = [f"{s[how]} {how}" for how in ("reused", "cloned") if s[how]]
    if not taken:
        return ""
    one = s["reused"] + s["cloned"] == 1
    return f"{', '.join(taken)} from {s['origin'] if one else ', '.join(s['origins'])}"
