"""The Client API: ``Flow``, ``Run``, ``Step``, ``Task``, ``DataArtifact``, namespaces.

Names and behaviour follow Metaflow's client.  Objects read the store lazily: a
``Task`` loads an artifact only when ``.data.x`` or ``task["x"].data`` asks for it.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import FlowcellError, NamespaceMismatch, NotFoundError
from .store.blobs import BlobStore
from .store.metadata import MetadataStore, RunRecord, TaskRecord
from .store.serialize import ArtifactRef, load_artifact

_UNSET = object()
_state: dict[str, Any] = {"namespace": _UNSET, "root": None}
_stores: dict[Path, tuple[MetadataStore, BlobStore]] = {}


def _root() -> Path:
    from .runtime.runs import store_root

    return Path(_state["root"]) if _state["root"] else store_root()


def _stores_for(root: Path | None = None) -> tuple[MetadataStore, BlobStore]:
    root = root or _root()
    found = _stores.get(root)
    if found is None:
        if not (root / "metadata.sqlite").exists():
            raise NotFoundError(f"No flowcell store at {root}: run a flow first, or set FLOWCELL_ROOT.")
        found = _stores[root] = (MetadataStore(root), BlobStore(root))
    return found


def inspect_spin(path: str | Path = ".") -> Path:
    """Point the Client at the spins persisted under ``path`` (``PATH/.flowcell_spin``)."""
    from .runtime.spin import SPIN_DIR

    root = Path(path).resolve()
    if root.name != SPIN_DIR:
        root = root / SPIN_DIR
    if not (root / "metadata.sqlite").exists():
        raise NotFoundError(f"No persisted spins in {root}: spin a step with persist=True (--persist) first.")
    _state["root"] = str(root)
    return root


def default_namespace() -> str:
    """``production:TOKEN`` if ``FLOWCELL_PRODUCTION_TOKEN`` is set, else ``user:NAME``."""
    from .runtime.runs import default_namespace as _default

    return _default()


def namespace(ns: str | None) -> str | None:
    """Switch the namespace the Client searches; ``None`` searches every run."""
    _state["namespace"] = ns
    return ns


def get_namespace() -> str | None:
    ns = _state["namespace"]
    return default_namespace() if ns is _UNSET else ns


def _in_namespace(record: RunRecord) -> bool:
    ns = get_namespace()
    return ns is None or ns in record.tags or ns in record.system_tags


def _parse(pathspec: str, parts: int, kind: str) -> list[str]:
    pieces = pathspec.strip("/").split("/") if isinstance(pathspec, str) else []
    if len(pieces) != parts or not all(pieces):
        example = "/".join(["FlowName", "3", "train", "4"][:parts])
        raise NotFoundError(f"{kind}({pathspec!r}): expected a pathspec like {example!r}.")
    return pieces


def _run_number(text: str, pathspec: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise NotFoundError(f"{pathspec!r}: run ids are integers, not {text!r}.") from None


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
    def data(self) -> Any:
        if self._ref.get("root"):
            blobs = BlobStore(self._ref["root"])  # a spin's input, read where it lives
        else:
            _, blobs = _stores_for(self._task._root)
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


class _Recorded:
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
        return self._record.status in ("completed", "failed")

    @property
    def finished_at(self) -> datetime.datetime | None:
        t = self._record.finished_at
        return None if t is None else datetime.datetime.fromtimestamp(t)

    @property
    def created_at(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self._record.created_at)


class Task(_Recorded):
    """One task: ``Task("Flow/3/train/4")``."""

    _record: TaskRecord

    def __init__(self, pathspec: str, _record: TaskRecord | None = None, _root: Path | None = None) -> None:
        self._root = _root or _root_or_default()
        if _record is None:
            flow, run, step, task = _parse(pathspec, 4, "Task")
            run_obj = Run(f"{flow}/{run}", _root=self._root)
            meta, _ = _stores_for(self._root)
            try:
                task_id = int(task)
            except ValueError:
                raise NotFoundError(f"Task({pathspec!r}): task ids are integers.") from None
            _record = meta.get_task(flow, run_obj._record.run_number, task_id)
            if _record is None or _record.step != step:
                raise NotFoundError(f"Task {pathspec} does not exist.")
        self._record = _record
        self._refs: dict[str, dict[str, Any]] | None = None

    def _artifacts(self) -> dict[str, dict[str, Any]]:
        if self._refs is None:
            meta, _ = _stores_for(self._root)
            r = self._record
            self._refs = meta.artifacts(r.flow, r.run_number, r.task_id)
        return self._refs

    @property
    def id(self) -> str:
        return str(self._record.task_id)

    @property
    def pathspec(self) -> str:
        return self._record.pathspec

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
        exc = self._record.exception
        return None if not exc else f"{exc.get('ename')}: {exc.get('evalue')}"

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
        meta, _ = _stores_for(self._root)
        rec = meta.get_task(self._record.flow, self._record.run_number, task_id)
        if rec is None:
            raise NotFoundError(f"Task {task_id} of {self._record.flow}/{self._record.run_number} is missing.")
        return Task(rec.pathspec, _record=rec, _root=self._root)

    @property
    def parent_tasks(self) -> list[Task]:
        return [self._sibling(i) for i in self._record.parents if self._sibling(i)._record.step != "_parameters"]

    @property
    def child_tasks(self) -> list[Task]:
        meta, _ = _stores_for(self._root)
        r = self._record
        return [Task(t.pathspec, _record=t, _root=self._root) for t in meta.tasks(r.flow, r.run_number)
                if r.task_id in t.parents]

    def __repr__(self) -> str:
        return f"Task('{self.pathspec}')"


class Step:
    """All tasks of one step in one run: ``Step("Flow/3/train")``."""

    def __init__(self, pathspec: str, _run: Run | None = None) -> None:
        flow, run, step = _parse(pathspec, 3, "Step")
        self._run = _run or Run(f"{flow}/{run}")
        self.id = step
        if not self._records():
            raise NotFoundError(f"Step {pathspec} does not exist (run {self._run.pathspec} has no task of it).")

    def _records(self) -> list[TaskRecord]:
        meta, _ = _stores_for(self._run._root)
        r = self._run._record
        return meta.tasks(r.flow, r.run_number, self.id)

    @property
    def pathspec(self) -> str:
        return f"{self._run.pathspec}/{self.id}"

    def tasks(self) -> list[Task]:
        return [Task(r.pathspec, _record=r, _root=self._run._root) for r in reversed(self._records())]

    def __iter__(self) -> Iterator[Task]:
        return iter(self.tasks())

    @property
    def task(self) -> Task:
        records = self._records()
        return Task(records[0].pathspec, _record=records[0], _root=self._run._root)

    def __getitem__(self, task_id: str | int) -> Task:
        for t in self._records():
            if str(t.task_id) == str(task_id):
                return Task(t.pathspec, _record=t, _root=self._run._root)
        raise NotFoundError(f"Task {self.pathspec}/{task_id} does not exist.")

    def __repr__(self) -> str:
        return f"Step('{self.pathspec}')"


def _root_or_default() -> Path:
    return _root()


class Run(_Recorded):
    """One run: ``Run("Flow/3")``; ``run["train"]`` is a :class:`Step`."""

    _record: RunRecord

    def __init__(self, pathspec: str, _record: RunRecord | None = None, _root: Path | None = None,
                 _check_namespace: bool = True) -> None:
        self._root = _root or _root_or_default()
        if _record is None:
            flow, run = _parse(pathspec, 2, "Run")
            meta, _ = _stores_for(self._root)
            _record = meta.get_run(flow, _run_number(run, pathspec))
            if _record is None:
                raise NotFoundError(f"Run {pathspec} does not exist.")
            if _check_namespace and not _in_namespace(_record):
                raise NamespaceMismatch(
                    f"Run {pathspec} is not in the current namespace {get_namespace()!r}; switch with "
                    f"namespace(None) (all runs) or namespace('user:{_record.user}')."
                )
        self._record = _record

    @property
    def id(self) -> str:
        return str(self._record.run_number)

    @property
    def pathspec(self) -> str:
        return self._record.pathspec

    def steps(self) -> list[Step]:
        meta, _ = _stores_for(self._root)
        names = [s for s in meta.steps(self._record.flow, self._record.run_number) if not s.startswith("_")]
        return [Step(f"{self.pathspec}/{n}", _run=self) for n in reversed(names)]

    def __iter__(self) -> Iterator[Step]:
        return iter(self.steps())

    def __getitem__(self, step: str) -> Step:
        return Step(f"{self.pathspec}/{step}", _run=self)

    def __contains__(self, step: str) -> bool:
        meta, _ = _stores_for(self._root)
        return step in meta.steps(self._record.flow, self._record.run_number)

    @property
    def end_task(self) -> Task | None:
        return self["end"].task if "end" in self else None

    @property
    def data(self) -> _Data | None:
        end = self.end_task
        return None if end is None else end.data

    @property
    def user_tags(self) -> frozenset[str]:
        return frozenset(self._record.tags)

    @property
    def system_tags(self) -> frozenset[str]:
        return frozenset(self._record.system_tags)

    @property
    def tags(self) -> frozenset[str]:
        return self.user_tags | self.system_tags

    # -- tags (Metaflow's mutation API) ---------------------------------------------

    def _mutate_tags(self, add: list[str], remove: list[str]) -> None:
        from .runtime.runs import MAX_USER_TAGS, check_tags

        add = check_tags(add)
        remove = check_tags(remove)
        protected = [t for t in remove if t in self._record.system_tags]
        if protected:
            raise FlowcellError(f"Cannot remove system tag {protected[0]!r} from {self.pathspec}: system tags "
                                "record how the run was made and are immutable.")
        meta, _ = _stores_for(self._root)
        meta.set_tags(self._record.flow, self._record.run_number, [t for t in add if t not in remove],
                      [t for t in remove if t not in add], max_tags=MAX_USER_TAGS)
        fresh = meta.get_run(self._record.flow, self._record.run_number)
        if fresh is not None:
            self._record = fresh

    def add_tag(self, tag: str) -> None:
        """Add one user tag."""
        self._mutate_tags([tag], [])

    def add_tags(self, tags: list[str]) -> None:
        self._mutate_tags(tags, [])

    def remove_tag(self, tag: str) -> None:
        """Remove one user tag (system tags cannot be removed)."""
        self._mutate_tags([], [tag])

    def remove_tags(self, tags: list[str]) -> None:
        self._mutate_tags([], list(tags))

    def replace_tag(self, tag_to_remove: str, tag_to_add: str) -> None:
        """Remove one tag and add another in one atomic change."""
        self._mutate_tags([tag_to_add], [tag_to_remove])

    def replace_tags(self, tags_to_remove: list[str], tags_to_add: list[str]) -> None:
        self._mutate_tags(list(tags_to_add), list(tags_to_remove))

    @property
    def parameters(self) -> dict[str, Any]:
        return dict(self._record.params)

    @property
    def origin_pathspec(self) -> str | None:
        o = self._record.origin_run_number
        return None if o is None else f"{self._record.flow}/{o}"

    def __repr__(self) -> str:
        return f"Run('{self.pathspec}')"


class Flow:
    """A flow's runs, newest first: ``Flow("PlayListFlow").latest_run``."""

    def __init__(self, name: str, _root: Path | None = None) -> None:
        self._root = _root or _root_or_default()
        meta, _ = _stores_for(self._root)
        if not meta.runs(name, limit=1):
            raise NotFoundError(f"Flow {name} has no runs in {self._root}.")
        self.id = name

    @property
    def pathspec(self) -> str:
        return self.id

    def _ns_tags(self, tags: tuple[str, ...]) -> tuple[str, ...]:
        ns = get_namespace()
        return tags + ((ns,) if ns is not None else ())

    def runs(self, *tags: str) -> list[Run]:
        meta, _ = _stores_for(self._root)
        return [Run(r.pathspec, _record=r, _root=self._root) for r in meta.runs(self.id, self._ns_tags(tags))]

    def __iter__(self) -> Iterator[Run]:
        return iter(self.runs())

    def __getitem__(self, run_id: str | int) -> Run:
        return Run(f"{self.id}/{run_id}", _root=self._root)

    @property
    def latest_run(self) -> Run | None:
        meta, _ = _stores_for(self._root)
        found = meta.runs(self.id, self._ns_tags(()), limit=1)
        return Run(found[0].pathspec, _record=found[0], _root=self._root) if found else None

    @property
    def latest_successful_run(self) -> Run | None:
        meta, _ = _stores_for(self._root)
        found = meta.runs(self.id, self._ns_tags(()), status="completed", limit=1)
        return Run(found[0].pathspec, _record=found[0], _root=self._root) if found else None

    def __repr__(self) -> str:
        return f"Flow('{self.id}')"
