"""The cells that make up a notebook's flow, keyed by the front end's cell id.

Plain data, no IPython: the magics register each executed ``%%flow`` and ``%%step``
cell here and ask for the :class:`~flowcell.model.FlowSource` it adds up to.  The
flow is what the notebook holds now: a cell run again replaces what it registered,
and a cell deleted from the notebook leaves the flow — told by the Lab front end
(:meth:`CellRegistry.keep_only`), or, without it, read from the saved notebook file
(:meth:`CellRegistry.sync_with_file`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from .model import CodeCell, FlowSource, StepCell, flow_name_from_path


@dataclass
class Registered:
    """One executed cell: the front end's id (``None`` outside a notebook), what it registered."""

    key: str
    kind: str
    cell: CodeCell | StepCell
    cell_id: str | None = None
    registered_at: float = field(default_factory=time.time)

    def describe(self) -> str:
        what = f"step {self.cell.name}" if isinstance(self.cell, StepCell) else "%%flow code"
        return f"{self.cell.label}: {what}" + (f" (cell {self.cell_id[:8]})" if self.cell_id else "")


@dataclass
class CellRegistry:
    """The registered cells, in the order they were run, and the flow's name and decorators."""

    cells: list[Registered] = field(default_factory=list)
    flow_name: str | None = None
    flow_decorators: list[str] = field(default_factory=list)
    #: Bumped on every change, so the flow's graph is built once per change (see ``FlowcellMagics.graph``).
    version: int = 0
    _file_seen: tuple[str, float] | None = None

    def register(self, kind: str, key: str, cell: CodeCell | StepCell, cell_id: str | None) -> None:
        """Add a cell; what the same cell registered before, or another cell's same step, is replaced."""
        kept = []
        for reg in self.cells:
            same_cell = cell_id is not None and reg.cell_id == cell_id
            same_step = kind == "step" and reg.kind == "step" and reg.key == key
            same_code = kind == "flow" and reg.kind == "flow" and isinstance(reg.cell, CodeCell) \
                and isinstance(cell, CodeCell) and reg.cell.source == cell.source
            if same_cell or same_step or same_code:
                continue
            kept.append(reg)
        kept.append(Registered(key, kind, cell, cell_id))
        self.cells = kept
        self.version += 1

    def keep_only(self, ids: list[str]) -> list[Registered]:
        """The notebook now holds the cells ``ids``: drop registrations of any other cell; return them."""
        present = set(ids)
        dropped = [r for r in self.cells if r.cell_id is not None and r.cell_id not in present]
        if dropped:
            self.cells = [r for r in self.cells if r not in dropped]
            self.version += 1
            if not any(r.kind == "flow" for r in self.cells):
                self.flow_decorators = []
        return dropped

    def sync_with_file(self, path: str | None) -> list[Registered]:
        """Without a front end, the saved notebook is the reference: a cell registered before the
        file was last saved and absent from it was deleted.  (Cells run after the save are kept:
        they may simply not be saved yet.)"""
        if not path or not path.endswith(".ipynb"):
            return []
        try:
            mtime = Path(path).stat().st_mtime
            if self._file_seen == (path, mtime):
                return []
            self._file_seen = (path, mtime)
            ids = [c.get("id") for c in json.loads(Path(path).read_text()).get("cells", [])]
        except (OSError, ValueError):
            return []  # unsaved, unreadable or mid-write: keep everything
        present = {i for i in ids if i}
        if not present:
            return []  # a notebook format without cell ids says nothing about deletions
        stale = [r for r in self.cells if r.cell_id is not None and r.cell_id not in present
                 and r.registered_at < mtime]
        return self.keep_only([r.cell_id for r in self.cells if r not in stale and r.cell_id])

    def flow(self, path: str | None) -> FlowSource:
        """The flow as registered so far, in the order the cells were run."""
        name = self.flow_name or (flow_name_from_path(path) if path else "NotebookFlow")
        flow = FlowSource(name=name, path=path, flow_decorators=list(self.flow_decorators))
        for reg in self.cells:
            if isinstance(reg.cell, StepCell):
                flow.steps[reg.cell.name] = reg.cell
            else:
                flow.code_cells.append(reg.cell)
        return flow

    def describe(self) -> list[str]:
        """One line per cell that makes up the flow, in the order they were run."""
        return [r.describe() for r in self.cells]
