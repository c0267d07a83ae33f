"""What crosses the kernel boundary: the task spec, the task result, their MIME types.

The parent builds a :class:`TaskSpec`, sends it as JSON in one ``run_task`` call, and
the child answers with a :class:`TaskResult` published as display data of
:data:`RESULT_MIME` (which the parent consumes and never shows).  Both sides work
with these records; JSON exists only in :meth:`to_json` / :meth:`from_json`.
Imports nothing from flowcell, so either side can load it cheaply.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

#: The child's result message (consumed by the parent, never displayed).
RESULT_MIME = "application/vnd.flowcell.result+json"
#: A card refreshed while its task runs (``current.card.refresh()``).
CARD_MIME = "application/vnd.flowcell.card+json"

#: An artifact reference as stored in the metadata (see ``store.serialize.ArtifactRef``).
RefJSON = dict[str, Any]


@dataclass
class Frame:
    """One enclosing split of a task: a static branch (``split``) or a foreach item.

    Stored with every task (its stack) and sent to the child as JSON (foreach frames only).
    """

    kind: str
    step: str
    index: int
    num_splits: int
    var: str | None = None
    #: A foreach item's digest, recorded by the foreach parent (the fingerprint's split).
    item: str | None = None
    #: An unbounded foreach's item: the step sees no split count (``foreach_stack()`` gives None).
    unbounded: bool = False

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind, "step": self.step, "index": self.index,
                             "num_splits": self.num_splits, "var": self.var}
        if self.item is not None:
            d["item"] = self.item
        if self.unbounded:
            d["unbounded"] = True
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Frame:
        return cls(d["kind"], d["step"], d["index"], d["num_splits"], d.get("var"), d.get("item"),
                   bool(d.get("unbounded")))


@dataclass
class CellCode:
    """Source of one cell as the child compiles it, with the cell's own line numbers."""

    source: str
    filename: str
    first_line: int
    header: str
    real_file: bool = False
    join_arg: str | None = None


@dataclass
class NodeSpec:
    """The step's place in the graph: what the child checks its transition against."""

    type: str
    out_funcs: list[str]
    foreach_param: str | None = None
    condition: str | None = None
    switch_cases: dict[str, str] = field(default_factory=dict)


@dataclass
class CardSpec:
    """One ``@card`` of the step."""

    type: str = "default"
    id: str | None = None
    #: ``options=``: a literal dict, or (``options_expr``) the source of an expression the task evaluates
    options: dict[str, Any] | None = None
    options_expr: str | None = None
    timeout: float | None = None
    save_errors: bool = True
    customize: bool = False


@dataclass
class JoinInput:
    """One parent task of a join: its artifacts and its innermost foreach frame."""

    step: str
    pathspec: str
    artifacts: dict[str, RefJSON]
    frame: dict[str, Any] | None = None


@dataclass
class TaskSpec:
    """Everything the child needs to run one attempt of one task."""

    root: str
    flow: str
    step: str
    pathspec: str
    steps: list[str]
    code_cells: list[CellCode]
    step_cell: CellCode
    node: NodeSpec
    inputs: dict[str, RefJSON] = field(default_factory=dict)
    join_inputs: list[JoinInput] | None = None
    foreach_stack: list[dict[str, Any]] = field(default_factory=list)
    run_id: int | str | None = None
    task_id: int | None = None
    origin_run_id: int | str | None = None
    file: str | None = None
    cwd: str | None = None
    retry_count: int = 0
    catch_var: str | None = None
    #: @timeout in seconds: the step is stopped inside its kernel (so @catch keeps what it set)
    timeout: float | None = None
    namespace: str | None = None
    username: str | None = None
    tags: list[str] = field(default_factory=list)
    parameter_names: list[str] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)
    client_root: str | None = None
    cards: list[CardSpec] = field(default_factory=list)
    #: Flow-level decorators (``@project(name=...)``) as written: ``current`` reads them.
    flow_decorators: list[str] = field(default_factory=list)
    #: ``@environment(vars=<expression>)``: evaluated in the task after the module code.
    environment_expr: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> TaskSpec:
        d = json.loads(text)
        d["code_cells"] = [CellCode(**c) for c in d["code_cells"]]
        d["step_cell"] = CellCode(**d["step_cell"])
        d["node"] = NodeSpec(**d["node"])
        d["cards"] = [CardSpec(**c) for c in d.get("cards") or []]
        if d.get("join_inputs") is not None:
            d["join_inputs"] = [JoinInput(**j) for j in d["join_inputs"]]
        return cls(**d)


@dataclass
class TaskError:
    """A task's failure: the child's traceback (in the cell's line numbers) and what kind it was."""

    ename: str
    evalue: str
    traceback: list[str] = field(default_factory=list)
    text: str = ""
    line: int | None = None
    interrupted: bool = False
    kernel_died: bool = False
    #: Fully qualified class name (``builtins.KeyError``): Metaflow's ``.type``.
    qualname: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def record(self) -> dict[str, Any]:
        """The form stored with the task in the metadata (what ``Task.exception`` reads)."""
        return {"ename": self.ename, "evalue": self.evalue, "traceback": self.traceback, "text": self.text,
                "line": self.line, "qualname": self.qualname}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TaskError:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def __str__(self) -> str:
        return f"{self.ename}: {self.evalue}"


@dataclass
class ReadSet:
    """What a task took from its inputs (names; the parent maps them to addresses) and what it set."""

    reads: list[str] = field(default_factory=list)
    #: Per join input, in order, the names read from it (None: not a join).
    join_reads: list[list[str]] | None = None
    #: The task listed or merged its inputs: every input counts as read.
    read_all: bool = False
    #: Output names this task produced (assigned, mutated or merged), as opposed to passed on.
    written: list[str] = field(default_factory=list)
    #: Top-level non-standard-library modules first loaded while the task ran.
    modules: list[str] = field(default_factory=list)


@dataclass
class TaskResult:
    """What the child reports after one attempt."""

    status: str
    artifacts: dict[str, RefJSON] = field(default_factory=dict)
    created: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    num_splits: int | None = None
    switch_value: Any = None
    error: TaskError | None = None
    caught: TaskError | None = None
    cards: list[dict[str, Any]] = field(default_factory=list)
    duration: float = 0.0
    #: How the task damaged its kernel (see ``flowcell._hygiene``); the parent retires the kernel.
    damage: list[str] = field(default_factory=list)
    #: Processes the task left running, ended when it ended (``pid command``).
    ended_processes: list[str] = field(default_factory=list)
    #: The task's read set, for its fingerprint (None when the task could not report it).
    read_set: ReadSet | None = None
    #: A foreach parent's per-item digests, in order.
    split_items: list[str | None] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The payload of the :data:`RESULT_MIME` message (display data is already JSON)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TaskResult:
        known = {f.name for f in fields(cls)}
        kept = {k: v for k, v in d.items() if k in known}
        for key in ("error", "caught"):
            if kept.get(key) is not None:
                kept[key] = TaskError.from_dict(kept[key])
        if kept.get("read_set") is not None:
            kept["read_set"] = ReadSet(**kept["read_set"])
        return cls(**kept)


class CaughtException:
    """What ``@catch(var=...)`` stores, with the attributes of Metaflow's value:
    ``.exception`` (the message), ``.type`` (fully qualified class name), ``.stacktrace``."""

    def __init__(self, ename: str, evalue: str, traceback_text: str, qualname: str | None = None) -> None:
        self.type = qualname or ename
        self.message = self.exception = evalue
        self.traceback = self.stacktrace = traceback_text

    def __setstate__(self, state: dict[str, Any]) -> None:
        # values pickled before these attributes existed
        self.__dict__.update(state)
        self.__dict__.setdefault("exception", state.get("message"))
        self.__dict__.setdefault("stacktrace", state.get("traceback"))

    def __repr__(self) -> str:
        return f"CaughtException({self.type}: {self.message})"

    def __str__(self) -> str:
        return self.stacktrace or f"{self.type}: {self.message}"
