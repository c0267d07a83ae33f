"""What a task read, wrote and imported, reported by the child for its fingerprint.

Inputs are hydrated lazily (``_flowspec``), so the task knows which names it took
from ``self`` and from each join input; the parent turns names into content
addresses (it holds the references) and stores them with the task.  Everything
here is cheap: set operations over names, plus one digest per foreach item.
"""

from __future__ import annotations

import sys
from typing import Any

from .protocol import ReadSet


def modules_snapshot() -> set[str]:
    """The modules loaded before the task's code runs."""
    return set(sys.modules)


def _top_level(names: set[str]) -> list[str]:
    stdlib = sys.stdlib_module_names
    tops = {n.partition(".")[0] for n in names}
    return sorted(t for t in tops if t and not t.startswith("_") and t not in stdlib)


def _named(names: set[str]) -> set[str]:
    """Artifact names only: probes such as ``_ipython_display_`` by display machinery are not reads."""
    return {n for n in names if not (n.startswith("__") and n.endswith("__")) and not n.startswith("_repr_")
            and not n.startswith("_ipython_")}


def item_digests(items: Any) -> list[str | None]:
    """One digest per foreach item, so a changed list re-runs only the splits whose item changed."""
    import cloudpickle  # loaded by the task's serializer already; imported here for clarity

    from .store.blobs import digest

    out: list[str | None] = []
    for item in items:
        try:
            out.append(digest(cloudpickle.dumps(item, protocol=5)))
        except Exception:  # an item that cannot be pickled cannot be matched: its split always runs
            out.append(None)
    return out


def report(instance: Any, views: list[Any] | None, inputs: dict[str, Any], outputs: dict[str, Any],
           before: set[str]) -> ReadSet:
    """The read set of a finished task (``instance`` is its ``FlowInstance``, ``views`` the join inputs)."""
    d = instance.__dict__
    reads = _named(set(d["_fc_loaded"]) | (set(d["_fc_peeked"]) - set(d["_fc_set"])))
    join_reads = None
    if views is not None:
        join_reads = [sorted(_named(set(v._fc_cache) | v._fc_peeked)) for v in views]
    assigned = d["_fc_set"]
    written = sorted(
        name for name, ref in outputs.items()
        if name in assigned or name not in inputs or inputs[name].get("address") != ref.get("address")
    )
    return ReadSet(reads=sorted(reads), join_reads=join_reads, read_all=bool(d["_fc_read_all"]),
                   written=written, modules=_top_level(set(sys.modules) - before))
