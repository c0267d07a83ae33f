"""``Flow``, ``Run`` and ``Step``: a flow's runs, a run's steps and tags, a step's tasks."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .. import config
from ..errors import FlowcellError, InvalidNameError, NotFoundError
from ..store.metadata import RunRecord, TaskRecord
from . import context
from .task import Pathspec, Recorded, Task, _Data


class Step(Pathspec):
    """All tasks of one step in one run: ``Step("Flow/3/train")``."""

    def __init__(self, pathspec: str, _run: Run | None = None) -> None:
        flow, run, step = context.parse(pathspec, 3, "Step")
        self._run = _run or Run(f"{flow}/{run}")
        self.id = step
        if not self._records():
            raise NotFoundError(f"Step {pathspec} does not exist (run {self._run.pathspec} has no task of it).")

    @classmethod
    def _of(cls, run: Run, name: str) -> Step:
        """Internal factory: a step the store just listed for ``run`` (no query to check it exists)."""
        step = cls.__new__(cls)
        step._run, step.id = run, name
        return step

    def _records(self) -> list[TaskRecord]:
        meta, _ = context.stores_for(self._run._root)
        r = self._run._record
        return meta.tasks(r.flow, r.run_number, self.id)

    @property
    def pathspec(self) -> str:
        return f"{self._run.pathspec}/{self.id}"

    def tasks(self, *tags: str) -> list[Task]:
        """The step's tasks; with ``tags``, none unless the run has them all (tags belong to the run)."""
        if not set(tags) <= self._run.tags:
            return []
        return [Task._of(r, self._run._root, self._run.id) for r in reversed(self._records())]

    def __iter__(self) -> Iterator[Task]:
        return iter(self.tasks())

    @property
    def parent(self) -> Run:
        return self._run

    @property
    def tags(self) -> frozenset[str]:
        return self._run.tags

    @property
    def child_steps(self) -> list[Step]:
        """The steps whose tasks follow this step's tasks in the run."""
        names = dict.fromkeys(child._record.step for task in self.tasks() for child in task.child_tasks)
        return [Step(f"{self._run.pathspec}/{name}", _run=self._run) for name in names]

    def control_tasks(self) -> Iterator[Task]:
        """The control tasks of a @parallel step (its node 0) or of an unbounded foreach; none for
        other steps, as in Metaflow."""
        for task in self.tasks():
            frames = task._record.foreach_stack
            if frames and (frames[-1].get("kind") == "control" or
                           (frames[-1].get("var") == "_parallel_ubf_iter" and frames[-1].get("index") == 0)):
                yield task

    @property
    def origin_pathspec(self) -> str | None:
        """For a step cloned by resume, the step it was cloned from."""
        origin = self.task.origin_pathspec
        return origin.rsplit("/", 1)[0] if origin else None

    @property
    def task(self) -> Task:
        records = self._records()
        return Task._of(records[0], self._run._root, self._run.id)

    def __getitem__(self, task_id: str | int) -> Task:
        for t in self._records():
            if str(t.task_id) == str(task_id):
                return Task._of(t, self._run._root, self._run.id)
        raise NotFoundError(f"Task {self.pathspec}/{task_id} does not exist.")

    def __repr__(self) -> str:
        return f"Step('{self.pathspec}')"


class Run(Recorded):
    """One run: ``Run("Flow/3")``; ``run["train"]`` is a :class:`Step`."""

    _record: RunRecord

    def __init__(self, pathspec: str, _record: RunRecord | None = None, _root: Path | None = None,
                 _check_namespace: bool = True) -> None:
        self._root = _root or context.current_root()
        if _record is None:
            flow, run = context.parse(pathspec, 2, "Run")
            _record, self._root = context.find_run(flow, run, self._root, _check_namespace)
        self._record = _record

    @classmethod
    def _of(cls, record: RunRecord, root: Path) -> Run:
        """Internal factory: a Run for a record already read from the store at ``root``."""
        return cls(record.pathspec, _record=record, _root=root)

    @classmethod
    def _open(cls, pathspec: str, root: str | Path) -> Run:
        """Internal factory: the run a command just made, in its store, whatever the namespace."""
        return cls(pathspec, _root=Path(root), _check_namespace=False)

    @property
    def id(self) -> str:
        """``3``, or ``spin-12`` for a spin read through ``inspect_spin``."""
        return context.run_id(self._record)

    @property
    def pathspec(self) -> str:
        return f"{self._record.flow}/{self.id}"

    def steps(self, *tags: str) -> list[Step]:
        """The run's steps; with ``tags``, none unless the run has them all."""
        if not set(tags) <= self.tags:
            return []
        meta, _ = context.stores_for(self._root)
        names = [s for s in meta.steps(self._record.flow, self._record.run_number) if not s.startswith("_")]
        return [Step._of(self, n) for n in reversed(names)]

    def __iter__(self) -> Iterator[Step]:
        return iter(self.steps())

    def __getitem__(self, step: str) -> Step:
        return Step(f"{self.pathspec}/{step}", _run=self)

    def __contains__(self, step: str) -> bool:
        meta, _ = context.stores_for(self._root)
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

    def _mutate_tags(self, add: Any, remove: Any) -> None:
        """Metaflow's ``replace_tags``: remove, then add, atomically.  Adding a system tag is a
        no-op; removing one fails the whole change.  The run's tags afterwards hold this change
        even when another process changes the run's tags at the same time."""
        add, remove = _tag_list(add, "tags_to_add"), _tag_list(remove, "tags_to_remove")
        if not add and not remove:
            raise InvalidNameError("Must add or remove at least one tag.")
        meta, _ = context.stores_for(self._root)
        fresh = meta.get_run(self._record.flow, self._record.run_number) or self._record
        system = set(fresh.system_tags)
        protected = sorted(set(remove) & system)
        if protected:
            raise FlowcellError(f"Cannot remove system tag {protected[0]!r} from {self.pathspec}: system tags "
                                "record how the run was made and are immutable.")
        add = [t for t in add if t not in system]
        meta.set_tags(self._record.flow, self._record.run_number, add, [t for t in remove if t not in add],
                      max_tags=config.MAX_USER_TAGS)
        fresh = meta.get_run(self._record.flow, self._record.run_number) or fresh
        tags = [t for t in fresh.tags if t not in remove or t in add] + [t for t in add if t not in fresh.tags]
        self._record = dataclasses.replace(fresh, tags=tags)

    def add_tag(self, tag: str) -> None:
        """Add one user tag (a list is accepted too, as Metaflow does)."""
        self._mutate_tags(_one_or_many(tag), [])

    def add_tags(self, tags: list[str]) -> None:
        self._mutate_tags(tags, [])

    def remove_tag(self, tag: str) -> None:
        """Remove one user tag (system tags cannot be removed)."""
        self._mutate_tags([], _one_or_many(tag))

    def remove_tags(self, tags: list[str]) -> None:
        self._mutate_tags([], tags)

    def replace_tag(self, tag_to_remove: str, tag_to_add: str) -> None:
        """Remove one tag and add another in one atomic change."""
        self._mutate_tags(_one_or_many(tag_to_add), _one_or_many(tag_to_remove))

    def replace_tags(self, tags_to_remove: list[str], tags_to_add: list[str]) -> None:
        self._mutate_tags(tags_to_add, tags_to_remove)

    @property
    def parameters(self) -> dict[str, Any]:
        return dict(self._record.params)

    @property
    def environment(self) -> dict[str, Any] | None:
        """``{"python": "3.11.7", "packages": {"numpy": "2.1.0", ...}}``: the versions of what the
        flow's code imports, as the run's tasks used them (None for runs recorded without)."""
        from ..pins import run_environment

        meta, _ = context.stores_for(self._root)
        env = run_environment(meta, self._record.flow, self._record.run_number)
        return env.to_json() if env else None

    @property
    def origin_pathspec(self) -> str | None:
        o = self._record.origin_run_number
        return None if o is None else f"{self._record.flow}/{o}"

    @property
    def reused(self) -> list[Task]:
        """The tasks this run took from earlier runs with ``--reuse`` (in task order); each names its
        origin in ``origin_pathspec``.  Tasks a resume cloned are not listed (see ``Task.reused``)."""
        meta, _ = context.stores_for(self._root)
        return [Task._of(r, self._root, self.id) for r in meta.tasks(self._record.flow, self._record.run_number)
                if (r.transition or {}).get("reused") and not r.step.startswith("_")]

    def __repr__(self) -> str:
        return f"Run('{self.pathspec}')"

    @property
    def parent(self) -> Flow:
        return Flow(self._record.flow, _root=self._root)


def _one_or_many(tag: Any) -> Any:
    return [tag] if isinstance(tag, (str, bytes)) else tag


def _tag_list(tags: Any, what: str) -> list[str]:
    """Metaflow's tag rules: an iterable (not a string) of non-empty text of at most 500
    characters; UTF-8 bytes are taken as their text.  Blank tags are refused too."""
    if isinstance(tags, (str, bytes)):
        raise InvalidNameError(f"{what} must be a list of tags, not a single string.")
    try:
        items = list(tags)
    except TypeError:
        raise InvalidNameError(f"{what} must be a list of tags, not {type(tags).__name__}.") from None
    out = []
    for tag in items:
        if isinstance(tag, bytes):
            try:
                tag = tag.decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidNameError("Tags must be UTF-8 text; these bytes are not.") from None
        if not isinstance(tag, str):
            raise InvalidNameError(f"Tags must be strings, not {type(tag).__name__} {tag!r}.")
        if not tag.strip():  # Metaflow refuses only ""; a blank tag is as surely a mistake
            raise InvalidNameError("Tags must not be empty or blank.")
        if len(tag) > config.MAX_TAG_LENGTH:
            raise InvalidNameError(f"Tag {tag[:40]!r}... is longer than {config.MAX_TAG_LENGTH} characters.")
        out.append(tag)
    return list(dict.fromkeys(out))


class Flow:
    """A flow's runs, newest first: ``Flow("PlayListFlow").latest_run``."""

    def __init__(self, name: str, _root: Path | None = None) -> None:
        self._root = _root or context.current_root()
        meta, _ = context.stores_for(self._root)
        if not meta.runs(name, limit=1):
            raise NotFoundError(f"Flow {name} has no runs in {self._root}.")
        self.id = name

    @property
    def pathspec(self) -> str:
        return self.id

    #: A flow has no tags of its own in Metaflow; its runs do.
    tags: frozenset[str] = frozenset()
    user_tags: frozenset[str] = frozenset()
    system_tags: frozenset[str] = frozenset()

    def _ns_tags(self, tags: tuple[str, ...]) -> tuple[str, ...]:
        ns = context.get_namespace()
        return tags + ((ns,) if ns is not None else ())

    def runs(self, *tags: str) -> list[Run]:
        meta, _ = context.stores_for(self._root)
        return [Run._of(r, self._root) for r in meta.runs(self.id, self._ns_tags(tags))]

    def _newest(self, limit: int) -> list[Run]:
        """Internal: the newest ``limit`` runs of the namespace (``LIMIT`` in SQL, not a list of all)."""
        meta, _ = context.stores_for(self._root)
        return [Run._of(r, self._root) for r in meta.runs(self.id, self._ns_tags(()), limit=limit)]

    def __iter__(self) -> Iterator[Run]:
        return iter(self.runs())

    def __getitem__(self, run_id: str | int) -> Run:
        return Run(f"{self.id}/{run_id}", _root=self._root)

    @property
    def latest_run(self) -> Run | None:
        meta, _ = context.stores_for(self._root)
        found = meta.runs(self.id, self._ns_tags(()), limit=1)
        return Run._of(found[0], self._root) if found else None

    @property
    def latest_successful_run(self) -> Run | None:
        meta, _ = context.stores_for(self._root)
        found = meta.runs(self.id, self._ns_tags(()), status="completed", limit=1)
        return Run._of(found[0], self._root) if found else None

    def __repr__(self) -> str:
        return f"Flow('{self.id}')"


def _step_of(task: Task) -> Step:
    r = task._record
    run = Run(f"{r.flow}/{r.run_number}", _root=task._root, _check_namespace=False)
    return Step(f"{r.flow}/{r.run_number}/{r.step}", _run=run)


Task._step_of = _step_of  # Task.parent, without task.py importing this module
