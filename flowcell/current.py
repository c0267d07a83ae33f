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
    "is_user_branch",
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

    @property
    def task(self) -> Any:
        """The running task as a Client object (Metaflow's ``current.task``)."""
        path = self.pathspec
        return None if path is None else ClientRef("Task", path)

    @property
    def run(self) -> Any:
        """The running run as a Client object (Metaflow's ``current.run``)."""
        v = self._values
        if not v.get("flow_name") or v.get("run_id") is None:
            return None
        return ClientRef("Run", f"{v['flow_name']}/{v['run_id']}")

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


class ClientRef:
    """``current.task``/``current.run``: stored as its pathspec, read through the Client on use.

    The running task is not in the store until it ends, so the Client object is made
    only when an attribute other than ``pathspec``/``id`` is asked for.
    """

    def __init__(self, kind: str, pathspec: str) -> None:
        self.kind = kind
        self.pathspec = pathspec

    @property
    def id(self) -> str:
        return self.pathspec.rsplit("/", 1)[-1]

    def _resolve(self) -> Any:
        from . import client  # the Client loads only when used

        if self.kind == "Task":
            return client.Task(self.pathspec, _namespace_check=False)
        return client.Run(self.pathspec, _check_namespace=False)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name in ("kind", "pathspec"):
            raise AttributeError(name)
        return getattr(self._resolve(), name)

    def __getitem__(self, key: Any) -> Any:
        return self._resolve()[key]

    def __repr__(self) -> str:
        return f"{self.kind}('{self.pathspec}')"


current = Current()
