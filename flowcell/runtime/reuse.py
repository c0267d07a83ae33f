"""Fingerprints of a run's tasks, and reuse of tasks whose fingerprint is unchanged (issue 14).

Every executed task of a run (and of a resume) records its fingerprint
(:func:`Fingerprints.record`).  With reuse on, before a task runs
:func:`Fingerprints.find` looks for a completed task of the same step that ran the
same code at the same foreach position (one indexed query), and takes the first
whose reads, split items and distribution versions equal what the pending task
would see now.  The task is then recorded by reference, as resume clones a task:
its outputs are the current inputs minus what the origin deleted, overlaid with
what the origin wrote.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..fingerprint import CodeComponents, addresses, code_components, make_record, record_digest, short_repr, split_key
from ..model import FlowSource
from ..pins import distributions_for, installed_version
from ..protocol import Frame, JoinInput
from ..store.fingerprints import TaskFingerprint, candidates, save
from ..store.metadata import MetadataStore, TaskRecord
from .task import TaskOutcome

#: Blob addresses of cell sources this process already stored (per store root).
_stored_sources: set[tuple[str, str]] = set()


def reuse_summary(reused: list[tuple[str, str]], total: int) -> str:
    """``"reused 18 of 20 tasks (from run 12)"`` for ``(pathspec, origin)`` pairs; "" when none."""
    if not reused:
        return ""
    runs = sorted({int(origin.split("/")[1]) for _, origin in reused})
    where = f"run {runs[0]}" if len(runs) == 1 else "runs " + ", ".join(map(str, runs))
    return f"reused {len(reused)} of {total} tasks (from {where})"


def split_of(stack: list[Frame]) -> list[dict[str, Any]]:
    """The foreach frames of a task as its fingerprint records them."""
    return [{"step": f.step, "index": f.index, "item": f.item} for f in stack if f.kind == "foreach"]


def _same(reads: Mapping[str, str | None], refs: Mapping[str, Mapping[str, Any]], read_all: bool) -> bool:
    for name, address in reads.items():
        ref = refs.get(name)
        if (ref.get("address") if ref is not None else None) != address:
            return False
    return not read_all or set(refs) == set(reads)


@dataclass
class Reused:
    """A task taken from an earlier run: its outputs and how it ended there."""

    origin: TaskRecord
    artifacts: dict[str, dict[str, Any]]
    transition: dict[str, Any]


@dataclass
class Fingerprints:
    """Per run: records the fingerprints of executed tasks; with ``reuse``, finds tasks to reuse."""

    meta: MetadataStore
    flow: FlowSource
    root: str
    parameter_names: list[str]
    #: Shown parameter values of the run (``{name: value}``), for the record's messages.
    param_display: dict[str, Any] = field(default_factory=dict)
    reuse: bool = False
    _versions: dict[str, str | None] = field(default_factory=dict)
    _dists: dict[frozenset[str], dict[str, str]] = field(default_factory=dict)

    # -- recording -----------------------------------------------------------------

    def _version(self, dist: str) -> str | None:
        if dist not in self._versions:
            self._versions[dist] = installed_version(dist)
        return self._versions[dist]

    def _distributions(self, modules: frozenset[str]) -> dict[str, str]:
        found = self._dists.get(modules)
        if found is None:
            found = self._dists[modules] = distributions_for(modules)
        return found

    def _new_sources(self, comp: CodeComponents) -> dict[str, str]:
        """The raw step and module text this store may not hold yet (``--diff`` shows them later)."""
        out = {}
        for text, address in ((comp.step_source, comp.step_address), (comp.module_source, comp.module_address)):
            if (self.root, address) not in _stored_sources:
                out[address] = text
        return out

    def record(self, run_number: int, task_id: int, step: str, stack: list[Frame],
               inputs: dict[str, dict[str, Any]], join_inputs: list[JoinInput] | None,
               outcome: TaskOutcome) -> TaskFingerprint:
        """Store the fingerprint of an executed task; return it."""
        comp = code_components(self.flow, step)
        rs = outcome.read_set
        if rs is None:  # the task could not report (its kernel died): everything it was offered counts
            read_all, names, join_names = True, list(inputs), [list(j.artifacts) for j in join_inputs or []]
            written = [n for n, ref in outcome.artifacts.items()
                       if n not in inputs or inputs[n].get("address") != ref.get("address")]
            modules: frozenset[str] = comp.imports
        else:
            read_all, names, written = rs.read_all, rs.reads, rs.written
            join_names = rs.join_reads or []
            if read_all and join_inputs is not None:
                join_names = [list(j.artifacts) for j in join_inputs]
            modules = comp.imports | frozenset(rs.modules)
        reads = addresses(names, inputs)
        join_reads = None if join_inputs is None else [
            addresses(n, j.artifacts) for n, j in zip(join_names or [[]] * len(join_inputs), join_inputs)]
        params = {n: short_repr(self.param_display.get(n)) for n in reads if n in self.parameter_names}
        record = make_record(comp, reads, join_reads, read_all, params, split_of(stack),
                             self._distributions(modules), written, outcome.deleted)
        fp = TaskFingerprint(self.flow.name, run_number, task_id, step, comp.code, split_key(record["split"]),
                             record_digest(comp.code, record), record)
        sources = self._new_sources(comp)
        save(self.meta, fp, sources)
        _stored_sources.update((self.root, a) for a in sources)
        return fp

    # -- reuse ---------------------------------------------------------------------

    def matches(self, record: Mapping[str, Any], inputs: dict[str, dict[str, Any]],
                join_inputs: list[JoinInput] | None) -> bool:
        """Whether a task that recorded ``record`` would read now what it read then."""
        if record.get("no_reuse"):
            return False
        read_all = bool(record.get("read_all"))
        if not _same(record.get("reads") or {}, inputs, False):
            return False
        join_reads = record.get("join_reads")
        if (join_reads is None) != (join_inputs is None):
            return False
        if join_reads is not None and join_inputs is not None:
            if len(join_reads) != len(join_inputs):
                return False
            if not all(_same(r, j.artifacts, read_all) for r, j in zip(join_reads, join_inputs)):
                return False
        return all(self._version(d) == v for d, v in (record.get("distributions") or {}).items())

    def find(self, run_number: int, step: str, stack: list[Frame], inputs: dict[str, dict[str, Any]],
             join_inputs: list[JoinInput] | None) -> Reused | None:
        """A completed earlier task this one can be taken from, with the outputs it gives now."""
        comp = code_components(self.flow, step)
        frames = split_of(stack)
        if comp.no_reuse or any(f["item"] is None for f in frames):
            return None  # a foreach item without a digest (not picklable, or recorded before digests) always runs
        split = split_key(frames)
        for origin, fp in candidates(self.meta, self.flow.name, step, comp.code, split):
            if origin.run_number == run_number or not self.matches(fp.record, inputs, join_inputs):
                continue
            written = self.meta.artifacts(origin.flow, origin.run_number, origin.task_id)
            deleted = set(fp.record.get("deleted") or ())
            artifacts = {k: v for k, v in inputs.items() if k not in deleted}
            artifacts.update({k: written[k] for k in fp.record.get("written") or () if k in written})
            return Reused(origin, artifacts, dict(origin.transition or {}))
        return None
