"""Showing a run as it happens: console (tqdm) and notebook (HTML display) observers.

Both consume the runtime's events: ``run_started``, ``task_started``, ``stream``,
``display``, ``retry``, ``task_finished``, ``run_finished``.
"""

from __future__ import annotations

import re
import sys
import time
from dataclasses import dataclass, field
from typing import IO, Any


@dataclass
class RunState:
    """Counts per step, updated from events; both observers render it."""

    pathspec: str = ""
    steps: list[str] = field(default_factory=list)
    running: dict[str, int] = field(default_factory=dict)
    done: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    #: When each step's first task started and its last task finished (its elapsed time).
    first_start: dict[str, float] = field(default_factory=dict)
    last_end: dict[str, float] = field(default_factory=dict)
    errors: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    #: ``(pathspec, origin)`` of tasks taken from an earlier run (``--reuse``).
    reused: list[tuple[str, str]] = field(default_factory=list)
    started: float = field(default_factory=time.time)
    status: str = "running"

    def update(self, kind: str, p: dict[str, Any]) -> None:
        if kind == "run_started":
            self.pathspec, self.steps = p["pathspec"], list(p.get("steps", []))
        elif kind == "task_started":
            self.running[p["step"]] = self.running.get(p["step"], 0) + 1
            self.first_start.setdefault(p["step"], time.time())
        elif kind == "task_finished":
            self.running[p["step"]] = max(0, self.running.get(p["step"], 0) - 1)
            bucket = self.done if p["status"] == "completed" else self.failed
            bucket[p["step"]] = bucket.get(p["step"], 0) + 1
            self.last_end[p["step"]] = time.time()
            if p.get("reused"):
                self.reused.append((p["pathspec"], p["reused"]))
            if p["status"] != "completed" and p.get("error") and not p.get("stopped"):
                self.errors.append((p["pathspec"], p["error"]))
        elif kind == "run_finished":
            self.status = p["status"]

    @property
    def elapsed(self) -> float:
        return time.time() - self.started

    def step_elapsed(self, step: str) -> float | None:
        """Seconds from the step's first task start to its last task end (or now, while running)."""
        start = self.first_start.get(step)
        if start is None:
            return None
        end = time.time() if self.running.get(step) else self.last_end.get(step, time.time())
        return end - start

    def totals(self) -> tuple[int, int, int]:
        return sum(self.done.values()), sum(self.running.values()), sum(self.failed.values())

    def summary(self) -> str:
        done, running, failed = self.totals()
        reused = f" ({len(self.reused)} reused)" if self.reused else ""
        return (f"{self.pathspec}: {done} tasks done{reused}, {running} running, {failed} failed, "
                f"{self.elapsed:.1f}s")


class ConsoleProgress:
    """Task output prefixed with its pathspec, and a tqdm bar of finished tasks."""

    def __init__(self, stream: IO[str] | None = None, quiet: bool = False, out: IO[str] | None = None) -> None:
        self.state = RunState()
        self.stream = stream or sys.stderr
        # The tasks' own output goes to stdout, flowcell's progress and messages to stderr,
        # so a shell (or an agent) can pipe them apart.
        self.out = out or sys.stdout
        self.quiet = quiet
        self._bar: Any = None
        self._partial: dict[str, str] = {}

    def __call__(self, kind: str, p: dict[str, Any]) -> None:
        self.state.update(kind, p)
        if self.quiet:
            return
        if kind == "run_started":
            from tqdm import tqdm

            # disable=None: a live bar on a terminal, none in a log file (task lines still print).
            self._bar = tqdm(total=None, unit="task", desc=p["pathspec"], file=self.stream, leave=True,
                             dynamic_ncols=True, disable=None,
                             bar_format="{desc} | {n} tasks done | {elapsed}{postfix}")
            self._bar.set_postfix_str("starting")
        elif kind == "stream":
            self._write_lines(p["pathspec"], p["text"])
        elif kind == "display":
            text = p["data"].get("text/plain")
            if text:
                self._write_lines(p["pathspec"], text + "\n")
        elif kind == "retry":
            self._write(f"[{p['pathspec']}] failed, retrying (attempt {p['attempt'] + 1})")
        elif kind == "task_finished" and self._bar is not None:
            if p.get("reused"):
                self._write(f"[{p['pathspec']}] reused {p['reused']} (unchanged)")
            self._bar.update(1)
            done, running, failed = self.state.totals()
            self._bar.set_postfix_str(f"{running} running, {failed} failed, last: {p['step']}")
            if p["status"] != "completed" and p.get("error") and not p.get("stopped"):
                err = p["error"]
                self._write(f"[{p['pathspec']}] FAILED: {err.get('ename')}: {err.get('evalue')}")
                for line in err.get("traceback") or []:
                    self._write(line)
        elif kind == "run_finished" and self._bar is not None:
            self._bar.set_postfix_str(p["status"])
            self._bar.close()

    def _write_lines(self, pathspec: str, text: str) -> None:
        buffered = self._partial.pop(pathspec, "") + text
        *lines, rest = buffered.split("\n")
        if rest:
            self._partial[pathspec] = rest
        for line in lines:
            self._write(f"[{pathspec}] {line}", self.out)

    def _write(self, line: str, target: IO[str] | None = None) -> None:
        target = target or self.stream
        if not _is_tty(target):
            line = strip_ansi(line)  # a log file gets plain text, not colour escapes
        if self._bar is not None:
            self._bar.write(line, file=target)  # clears and redraws the bar around the line
        else:
            print(line, file=target)


class NotebookProgress:
    """Live progress in the cell (the LiveRun widget, ending as the run view) plus the tasks' output."""

    def __init__(self, prefix_output: bool = True, live_table: bool = True) -> None:
        self.state = RunState()
        self.prefix_output = prefix_output
        self.live_table = live_table
        self.live: Any = None
        self._handle: Any = None
        self._cards: dict[str, Any] = {}

    def __call__(self, kind: str, p: dict[str, Any]) -> None:
        from IPython.display import display, publish_display_data

        self.state.update(kind, p)
        if kind == "run_started" and self.live_table:
            from .widgets import LiveRun

            self.live = LiveRun(p["pathspec"], list(p.get("steps", [])))
            self._handle = display(self.live, display_id=True)
        elif kind == "stream":
            target = sys.stdout if p["name"] == "stdout" else sys.stderr
            text = p["text"]
            if self.prefix_output:
                text = "".join(f"[{p['pathspec']}] {line}" for line in text.splitlines(keepends=True))
            target.write(text)
            target.flush()
        elif kind == "display":
            publish_display_data(p["data"], p.get("metadata") or {})
        elif kind == "card":
            # A live card (current.card.refresh()): one view per card, updated in place.
            from .client.task import Card
            from .widgets import CardView

            for c in p["cards"]:
                card = Card(p["pathspec"], c["type"], c["id"], c["html"])
                key = f"{p['pathspec']}/{c['type']}/{c['id']}"
                view = self._cards.get(key)
                if view is None:
                    self._cards[key] = view = CardView(card)
                    display(view)
                else:
                    view.update(card)
        elif kind in ("task_started", "task_finished", "run_finished") and self.live is not None:
            self.live.event(kind, p)
            if kind == "run_finished":
                self.live.finish()
                # The saved notebook (nbconvert, GitHub) keeps the final table, not the first.
                if self._handle is not None:
                    self._handle.update(self.live)


_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


def strip_ansi(text: str) -> str:
    """``text`` without terminal colour escapes (IPython colours the child's tracebacks)."""
    return _ANSI.sub("", text)


def _is_tty(stream: IO[str]) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False
