"""``Task`` and ``DataArtifact``: one task's artifacts, logs, exception and cards."""

from __future__ import annotations

import datetime
import html
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

from ..errors import NotFoundError
from ..store.blobs import BlobStore
from ..store.metadata import RunRecord, TaskRecord
from ..store.serialize import ArtifactRef, load_artifact
from . import context


class DataArtifact:
    """One artifact of a task: ``.data`` loads it; ``.size``, ``.sha`` and ``.type`` do not."""

    def __init__(self, task: Task, name: str, ref: dict[str, Any]) -> None:
        self._task = task
        self.id = name
        self._ref = ref

    @property
    def pathspec(self) -> str:
        return f"{self._task.pathspec}/{self.id}"

    @property
    def tags(self) -> frozenset[str]:
        """The run's tags, as Metaflow gives every object of a run."""
        return self._task.tags

    @property
    def data(self) -> Any:
        if self._ref.get("root"):
            blobs = BlobStore(self._ref["root"])  # a spin's input, read where it lives
        else:
            _, blobs = context.stores_for(self._task._root)
        return load_artifact(blobs, ArtifactRef.from_json(self._ref))

    @property
    def size(self) -> int:
        return int(self._ref.get("size", 0))

    @property
    def sha(self) -> str:
        return str(self._ref.get("address"))

    @property
    def type(self) -> str:
        return str(self._ref.get("type", ""))

    def __repr__(self) -> str:
        return f"DataArtifact('{self.pathspec}')"


class _Data:
    """``task.data``: artifacts as attributes, loaded on access."""

    def __init__(self, task: Task) -> None:
        self._task = task

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        refs = self._task._artifacts()
        if name not in refs:
            raise AttributeError(f"Task {self._task.pathspec} has no artifact {name!r}; it has: {', '.join(refs) or 'none'}.")
        return DataArtifact(self._task, name, refs[name]).data

    def __contains__(self, name: str) -> bool:
        return name in self._task._artifacts()

    def __dir__(self) -> list[str]:
        return list(self._task._artifacts())

    def __repr__(self) -> str:
        return f"<data of {self._task.pathspec}: {', '.join(self._task._artifacts())}>"


class Pathspec:
    """What every Client object is known by: equal (and hashed) by its pathspec, as in Metaflow."""

    @property
    def pathspec(self) -> str:
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        return isinstance(other, type(self)) and other.pathspec == self.pathspec

    def __hash__(self) -> int:
        return hash(self.pathspec)

    @property
    def path_components(self) -> list[str]:
        return self.pathspec.split("/")


class Recorded(Pathspec):
    """Status and timestamps shared by runs and tasks (read from their record)."""

    _record: RunRecord | TaskRecord

    @property
    def status(self) -> str:
        return str(self._record.status)

    @property
    def successful(self) -> bool:
        return bool(self._record.status == "completed")

    @property
    def finished(self) -> bool:
        # "crashed": recorded as running, but the process that ran it is gone (see store.metadata).
        return self._record.status in ("completed", "failed", "crashed")

    @property
    def finished_at(self) -> datetime.datetime | None:
        t = self._record.finished_at
        return None if t is None else datetime.datetime.fromtimestamp(t)

    @property
    def created_at(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self._record.created_at)


class Metadata(NamedTuple):
    """One metadata entry of a task (Metaflow's ``Metadata``)."""

    name: str
    value: str
    created_at: float
    type: str
    task: str


class Task(Recorded):
    """One task: ``Task("Flow/3/train/4")``."""

    _record: TaskRecord

    def __init__(self, pathspec: str, _record: TaskRecord | None = None, _root: Path | None = None,
                 _namespace_check: bool = True) -> None:
        self._root = _root or context.current_root()
        self._run_id: str | None = None
        if _record is None:
            flow, run, step, task = context.parse(pathspec, 4, "Task")
            run_record, self._root = context.find_run(flow, run, self._root, _namespace_check)
            self._run_id = context.run_id(run_record)
            meta, _ = context.stores_for(self._root)
            try:
                task_id = int(task)
            except ValueError:
                raise NotFoundError(f"Task({pathspec!r}): task ids are integers.") from None
            _record = meta.get_task(flow, run_record.run_number, task_id)
            if _record is None or _record.step != step:
                raise NotFoundError(f"Task {pathspec} does not exist.")
        self._record = _record
        self._refs: dict[str, dict[str, Any]] | None = None

    @classmethod
    def _of(cls, record: TaskRecord, root: Path, run_id: str | None = None) -> Task:
        """Internal factory: a Task for a record already read from the store at ``root``."""
        task = cls(record.pathspec, _record=record, _root=root)
        task._run_id = run_id
        return task

    @classmethod
    def _open(cls, pathspec: str, root: str | Path) -> Task:
        """Internal factory: a task a command just made, in the store at ``root``."""
        return cls(pathspec, _root=Path(root))

    def _artifacts(self) -> dict[str, dict[str, Any]]:
        if self._refs is None:
            meta, _ = context.stores_for(self._root)
            r = self._record
            self._refs = meta.artifacts(r.flow, r.run_number, r.task_id)
        return self._refs

    @property
    def id(self) -> str:
        return str(self._record.task_id)

    @property
    def pathspec(self) -> str:
        if self._run_id is None:
            meta, _ = context.stores_for(self._root)
            run = meta.get_run(self._record.flow, self._record.run_number)
            self._run_id = context.run_id(run) if run else str(self._record.run_number)
        r = self._record
        return f"{r.flow}/{self._run_id}/{r.step}/{r.task_id}"

    @property
    def data(self) -> _Data:
        return _Data(self)

    @property
    def artifacts(self) -> list[DataArtifact]:
        return [DataArtifact(self, n, r) for n, r in self._artifacts().items()]

    def __getitem__(self, name: str) -> DataArtifact:
        refs = self._artifacts()
        if name not in refs:
            raise NotFoundError(f"Task {self.pathspec} has no artifact {name!r}.")
        return DataArtifact(self, name, refs[name])

    def __contains__(self, name: str) -> bool:
        return name in self._artifacts()

    def __iter__(self) -> Iterator[DataArtifact]:
        return iter(self.artifacts)

    @property
    def stdout(self) -> str:
        return self._record.stdout

    @property
    def stderr(self) -> str:
        return self._record.stderr

    @property
    def exception(self) -> str | None:
        """``"Type: message"``, with Metaflow's ``.exception``/``.type``/``.stacktrace``; None if none."""
        from .._exception_value import TaskException  # small module, only needed here

        exc = self._record.exception
        return None if not exc else TaskException(exc)

    @property
    def traceback(self) -> str | None:
        exc = self._record.exception
        return None if not exc else exc.get("text")

    @property
    def current_attempt(self) -> int:
        return self._record.attempt

    @property
    def index(self) -> int | None:
        frames = [f for f in self._record.foreach_stack if f.get("kind") == "foreach"]
        return frames[-1]["index"] if frames else None

    def _sibling(self, task_id: int) -> Task:
        meta, _ = context.stores_for(self._root)
        rec = meta.get_task(self._record.flow, self._record.run_number, task_id)
        if rec is None:
            raise NotFoundError(f"Task {task_id} of {self._record.flow}/{self._record.run_number} is missing.")
        return Task._of(rec, self._root, self._run_id)

    @property
    def parent_tasks(self) -> list[Task]:
        parents = [self._sibling(i) for i in self._record.parents]  # one query per parent
        return [t for t in parents if t._record.step != "_parameters"]

    @property
    def child_tasks(self) -> list[Task]:
        meta, _ = context.stores_for(self._root)
        r = self._record
        return [Task._of(t, self._root, self._run_id) for t in meta.tasks(r.flow, r.run_number)
                if r.task_id in t.parents]

    # -- Metaflow's Task API beyond flowcell's own (issue 13) ------------------------

    #: Makes the :class:`Step` of a task; set by ``run.py``, which defines Step and imports this module.
    _step_of: ClassVar[Callable[[Task], Any] | None] = None

    @property
    def parent(self) -> Any:
        """The :class:`Step` this task belongs to."""
        if Task._step_of is None:
            raise NotFoundError("Task.parent needs flowcell.client (import it, not flowcell.client.task alone).")
        return Task._step_of(self)

    @property
    def origin_pathspec(self) -> str | None:
        """For a task cloned by resume or reused by ``--reuse``, the task it was taken from."""
        return self._record.origin

    @property
    def reused(self) -> bool:
        """Whether the task was taken from an earlier run by ``--reuse`` instead of running
        (a resume's clones are not: they have an ``origin_pathspec`` but were asked for by the resume)."""
        return bool((self._record.transition or {}).get("reused"))

    @property
    def metadata(self) -> list[Metadata]:
        """Metaflow's task metadata: one ``attempt`` entry per attempt, ``origin-*`` when cloned."""
        r = self._record
        entries = [Metadata("attempt", str(i), r.created_at, "attempt", self.pathspec) for i in range(r.attempt + 1)]
        if r.finished_at:
            entries.append(Metadata("attempt-done", str(r.attempt), r.finished_at, "attempt-done", self.pathspec))
        frames = r.foreach_stack
        if frames and (frames[-1].get("kind") == "control" or
                       (frames[-1].get("var") == "_parallel_ubf_iter" and frames[-1].get("index") == 0)):
            # the control task of a @parallel step or an unbounded foreach (Metaflow's marker)
            entries.append(Metadata("internal_task_type", "control", r.created_at, "internal_task_type",
                                    self.pathspec))
        if r.origin:
            parts = r.origin.split("/")
            entries += [Metadata("origin-run-id", parts[-3], r.created_at, "origin-run-id", self.pathspec),
                        Metadata("origin-task-id", parts[-1], r.created_at, "origin-task-id", self.pathspec)]
        if Task._step_of is not None:
            version = next((t.split(":", 1)[1] for t in self.system_tags if t.startswith("python_version:")), None)
            if version:
                entries.append(Metadata("python_version", version, r.created_at, "python_version", self.pathspec))
        if not r.origin and Task._step_of is not None:
            # a task re-run by resume: Metaflow records the run it resumed
            origin_run = self.parent.parent._record.origin_run_number
            if origin_run is not None:
                entries.append(Metadata("origin-run-id", str(origin_run), r.created_at, "origin-run-id", self.pathspec))
        return entries

    @property
    def metadata_dict(self) -> dict[str, str]:
        """The latest value of each metadata name."""
        return {m.name: m.value for m in sorted(self.metadata, key=lambda m: m.created_at)}

    def loglines(self, stream: str, as_unicode: bool = True) -> Iterator[tuple[datetime.datetime | None, str]]:
        """``(timestamp, line)`` for each line of ``stdout`` or ``stderr`` (flowcell keeps no per-line times)."""
        text = self.stdout if stream == "stdout" else self.stderr
        for line in text.splitlines():
            yield None, line

    @property
    def tags(self) -> frozenset[str]:
        return frozenset(self.parent.parent.tags)

    @property
    def user_tags(self) -> frozenset[str]:
        return frozenset(self.parent.parent.user_tags)

    @property
    def system_tags(self) -> frozenset[str]:
        return frozenset(self.parent.parent.system_tags)

    @property
    def cards(self) -> list[Card]:
        """The cards stored with this task (``@card``), in the order the step declares them."""
        entries = (self._record.transition or {}).get("cards", [])
        _, blobs = context.stores_for(self._root)
        return [Card(self.pathspec, e["type"], e.get("id"), blobs.get(e["address"]).decode()) for e in entries]

    def __repr__(self) -> str:
        return f"Task('{self.pathspec}')"


class Card:
    """A stored card: ``.html``; shows itself inline in a notebook."""

    def __init__(self, pathspec: str, card_type: str, card_id: str | None, html_text: str) -> None:
        self.pathspec, self.type, self.id, self.html = pathspec, card_type, card_id, html_text

    # Metaflow's Card: get() the HTML, a hash, and the path it would have in Metaflow's store.
    def get(self) -> str:
        return self.html

    @property
    def hash(self) -> str:
        import hashlib

        return hashlib.sha1(self.html.encode()).hexdigest()

    @property
    def path(self) -> str:
        return f"{self.pathspec}/cards/{self.type}-{self.id or ''}-{self.hash}.html"

    def _repr_html_(self) -> str:
        # An iframe keeps the card's styles from leaking into the notebook.
        return (f"<iframe srcdoc=\"{html.escape(self.html, quote=True)}\" style='width:100%;height:420px;"
                "border:1px solid #d0d7de;border-radius:6px'></iframe>")

    def __repr__(self) -> str:
        return f"<Card {self.type}{'/' + self.id if self.id else ''} of {self.pathspec}>"


def get_cards(task: Task | str, type: str | None = None, id: str | None = None) -> list[Card]:
    """The cards stored with a task (a ``Task`` or its pathspec): Metaflow's name for ``Task.cards``."""
    found = (Task(task) if isinstance(task, str) else task).cards
    return [c for c in found if (type is None or c.type == type) and (id is None or c.id == id)]
