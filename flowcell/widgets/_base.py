"""What every flowcell widget shares: the bundled front end, fallbacks, lazy previews."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anywidget
import traitlets

STATIC = Path(__file__).resolve().parent / "static"

_NOT_BUILT = """export default { render({ el }) {
  el.textContent = "flowcell's widget front end is not built: run `npm run build:widgets` in labextension/.";
} };
"""


def _asset(name: str, missing: str) -> Path | str:
    path = STATIC / name
    return path if path.exists() else missing


class FlowcellWidget(anywidget.AnyWidget):
    """One ES module serves every flowcell widget; ``kind`` picks the view it draws.

    ``previews`` holds the previews the front end asked for, keyed
    ``TASK_PATHSPEC/ARTIFACT``: the front end sends ``{"type": "preview", "task": ...,
    "name": ...}`` when one is opened, and only then is the artifact read.
    """

    _esm = _asset("widgets.js", _NOT_BUILT)
    _css = _asset("widgets.css", "")
    kind = traitlets.Unicode("").tag(sync=True)
    previews = traitlets.Dict().tag(sync=True)
    error = traitlets.Unicode("").tag(sync=True)

    def __init__(self, store: Path | None = None, **kwargs: Any) -> None:
        from ..client.context import current_root  # the Client loads with the first widget (start-up time)

        #: The store this view reads (config's rules, or where the Client points now), fixed
        #: when the view is made: a later ``namespace()`` or ``inspect_spin()`` leaves it alone.
        self.store: Path = store or current_root()
        super().__init__(**kwargs)
        self.on_msg(self._on_custom)

    @property
    def meta(self) -> Any:
        """The metadata store of :attr:`store` (opened once per process)."""
        from ..client.context import stores_for

        return stores_for(self.store)[0]

    def _on_custom(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if not isinstance(content, dict):
            return
        if content.get("type") == "preview":
            self.open_preview(str(content.get("task", "")), str(content.get("name", "")))
        else:
            self.on_request(content)

    def on_request(self, content: dict[str, Any]) -> None:
        """Other requests from the front end (subclasses)."""

    def open_preview(self, task: str, name: str) -> dict[str, Any]:
        """Load one artifact and publish its preview (cached per widget)."""
        from ..preview import preview_data

        key = f"{task}/{name}"
        if key not in self.previews:
            self.previews = {**self.previews, key: preview_data(self._task(task), name)}
        return dict(self.previews[key])

    def _task(self, pathspec: str) -> Any:
        from ..client import Task

        return Task._open(pathspec, self.store)

    # -- fallbacks -----------------------------------------------------------------

    def fallback_html(self) -> str:
        raise NotImplementedError

    def fallback_text(self) -> str:
        raise NotImplementedError

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        bundle: dict[str, Any] = {}
        found = super()._repr_mimebundle_(**kwargs)
        data = found[0] if isinstance(found, tuple) else found
        bundle.update(data or {})
        # Where no widget manager renders the view (nbconvert, GitHub, a terminal),
        # the richest of these that the viewer understands is shown instead.
        bundle["text/html"] = self.fallback_html()
        bundle["text/plain"] = self.fallback_text()
        return bundle
