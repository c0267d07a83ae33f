"""A :class:`~flowcell.staleness.StatusReport` as a table: plain text for shells, HTML for notebooks.

Both show one row per step in graph order — the step, "up to date" or "stale", and
each reason on a line of its own — under a headline naming the run.  The HTML is
self-contained (inline styles, theme colours with fallbacks) so it reads the same
in JupyterLab, Notebook 7, VS Code and nbconvert.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: staleness uses this module to show itself
    from .staleness import StatusReport

_STATE_COLOURS = {"up to date": "#1a7f37", "stale": "#bf8700"}
#: Notebook front ends right-align table cells by default; reasons read from the left.
_CELL = "text-align:left;vertical-align:top;padding:2px 14px 2px 0"


def text_table(report: StatusReport, hint: str | None = None) -> str:
    """The report as aligned plain text, one reason per line."""
    width = max([len("step"), *(len(s.step) for s in report.steps)])
    state_w = len("up to date")
    lines = [report.headline(), f"  {'step'.ljust(width)}  {'state'.ljust(state_w)}  why"]
    for status in report.steps:
        reasons = [r.message for r in status.reasons] or [""]
        lines.append(f"  {status.step.ljust(width)}  {status.state.ljust(state_w)}  {reasons[0]}".rstrip())
        lines += [f"  {''.ljust(width)}  {''.ljust(state_w)}  {reason}" for reason in reasons[1:]]
    if report.removed:
        lines.append(f"  (run {report.run_id} also has step{'s' if len(report.removed) > 1 else ''} "
                     f"{', '.join(report.removed)}, no longer in the flow)")
    if hint and report.stale:
        lines.append(hint)
    return "\n".join(lines)


def html_table(report: StatusReport, hint: str | None = None) -> str:
    """The report as an HTML table (the notebook's rich display of ``%flow_status``)."""
    esc = html.escape
    rows = []
    for status in report.steps:
        colour = _STATE_COLOURS[status.state]
        reasons = "".join(f"<div>{_code(esc(r.message))}</div>" for r in status.reasons)
        rows.append(
            f"<tr class='fc-status-row fc-status-{'stale' if status.stale else 'current'}' data-step='{esc(status.step)}'>"
            f"<td style='{_CELL};font-weight:600'>{esc(status.step)}</td>"
            f"<td style='{_CELL};white-space:nowrap'><span style='color:{colour}'>\u25cf</span> "
            f"{esc(status.state)}</td><td style='{_CELL}'>{reasons}</td></tr>")
    extra = ""
    if report.removed:
        extra += (f"<div style='opacity:.7'>Run {esc(report.run_id)} also has "
                  f"{esc(', '.join(report.removed))}, no longer in the flow.</div>")
    if hint and report.stale:
        extra += f"<div style='opacity:.7'>{_code(esc(hint))}</div>"
    return (f"<div class='fc-flow-status'><div style='margin-bottom:4px'>{esc(report.headline())}</div>"
            "<table style='border-collapse:collapse;margin:0'>"
            f"<thead><tr><th style='{_CELL}'>step</th><th style='{_CELL}'>state</th>"
            f"<th style='{_CELL}'>why</th></tr></thead><tbody>{''.join(rows)}</tbody></table>{extra}</div>")


def _code(escaped: str) -> str:
    """Backticked names (`def clean`, `load`) as code."""
    parts = escaped.split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))
