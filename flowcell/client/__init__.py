"""The Client API: ``Flow``, ``Run``, ``Step``, ``Task``, ``DataArtifact``, namespaces.

Names and behaviour follow Metaflow's client.  Objects read the store lazily: a
``Task`` loads an artifact only when ``.data.x`` or ``task["x"].data`` asks for it.
Which store and namespace are read lives in :mod:`flowcell.client.context`.
"""

from __future__ import annotations

from .context import default_namespace, get_namespace, inspect_spin, namespace, use_store
from .run import Flow, Run, Step
from .task import Card, DataArtifact, Task, get_cards

__all__ = ["Flow", "Run", "Step", "Task", "DataArtifact", "Card", "get_cards", "namespace", "get_namespace",
           "default_namespace", "inspect_spin", "use_store"]
