"""``current``: what the running task knows about itself (Metaflow's singleton)."""

from __future__ import annotations

from typing import Any

_FIELDS = (
    "flow_name",
    "run_id",
    "origin_run_id",
    "step_name",
    "task_id",
    "retry_count",
    "namespace",
    "username",
    "parameter_names",
    "tags",
    "is_running_flow",
    "card",
    # @project (Metaflow's project decorator), None without it
    "project_name",
    "project_flow_name",
    "branch_name",
    "is_production",
    # @parallel: (main_ip, num_nodes, node_index, control_task_id)
    "parallel",
)


class Current:
    """Attributes are set while a task runs and reset afterwards.

    Outside a task every field is ``None`` (``is_running_flow`` is ``False``), as
    in Metaflow.
    """

    def __init__(self) -> None:
        self._values: dict[str, Any] = {}

    def _set(self, **values: Any) -> None:
        unknown = set(values) - set(_FIELDS)
        if unknown:
            raise AttributeError(f"current has no field(s) {sorted(unknown)}")
        self._values = dict(values)

    def _clear(self) -> None:
        self._values = {}

    @property
    def is_running_flow(self) -> bool:
        return bool(self._values.get("is_running_flow", False))

    @property
    def pathspec(self) -> str | None:
        v = self._values
        if not v.get("flow_name") or v.get("run_id") is None:
            return None
        return f"{v['flow_name']}/{v['run_id']}/{v['step_name']}/{v['task_id']}"

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if name in _FIELDS:
            return self._values.get(name)
        raise AttributeError(f"current has no attribute {name!r}; it knows {', '.join(_FIELDS)} and pathspec.")

    def __repr__(self) -> str:
        if not self._values:
            return "<current: not in a task>"
        return f"<current {self.pathspec}>"


current = Current()
