"""The cells that make up a notebook's flow, keyed by the front end's cell id.

Plain data, no IPython: the magics register each executed ``%%flow`` and ``%%step``
cell here and ask for the :class:`~flowcell.model.FlowSource` it adds up to.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .model import CodeCell, FlowSource, StepCell, flow_name_from_path


@dataclass
class Registered:
    """One executed cell: the front end's id (``None`` outside a notebook), what it registered."""

    key: str
    kind: str
    cell: CodeCell | StepCell
    cell_id: str | None = None


@dataclass
class CellRegistry:
    """The registered cells, in the order they were run, and the flow's name and decorators."""

    cells: list[Registered] = field(default_factory=list)
    flow_name: str | None = None
    flow_decorators: list[str] = field(default_factory=list)

    def register(self, kind: str, key: str, cell: CodeCell | StepCell, cell_id: str | None) -> None:
        """Add a cell; what the same cell registered before, or another cell's same step, is replaced."""
        kept = []
        for reg in self.cells:
            same_cell = cell_id is not None and reg.cell_id == cell_id
            same_step = kind == "step" and reg.kind == "step" and reg.key == key
            if same_cell or same_step:
                continue
            if kind == "flow" and cell_id is None and isinstance(reg.cell, CodeCell) \
                    and isinstance(cell, CodeCell) and reg.cell.source == cell.source:
                continue
            kept.append(reg)
        kept.append(Registered(key, kind, cell, cell_id))
        self.cells = kept

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
