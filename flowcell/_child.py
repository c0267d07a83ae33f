"""The task driver that runs inside a child kernel.

The parent sends one ``run_task(spec)`` call per task.  Each task gets a fresh
module namespace (its ``%%flow`` code, then the step as a function), so nothing a
previous task defined is visible.  Outputs are written to the blob store here; the
result (artifact references, transition, error) goes back to the parent as one
display message of a private MIME type, which the parent consumes and never shows.
"""

from __future__ import annotations

import ast
import json
import linecache
import os
import sys
import time
import traceback
from typing import Any

from ._flowspec import ArtifactView, FlowInstance, Inputs
from .current import current
from .store.blobs import BlobStore
from .store.serialize import ArtifactRef, dump_artifact, load_artifact

RESULT_MIME = "application/vnd.flowcell.result+json"
CARD_MIME = "application/vnd.flowcell.card+json"
_stores: dict[str, BlobStore] = {}


class CaughtException:
    """What ``@catch(var=...)`` stores: the exception's type, message and traceback."""

    def __init__(self, ename: str, evalue: str, traceback_text: str) -> None:
        self.type = ename
        self.message = evalue
        self.traceback = traceback_text

    def __repr__(self) -> str:
        return f"CaughtException({self.type}: {self.message})"

    def __str__(self) -> str:
        return f"{self.type}: {self.message}"


def _store(root: str) -> BlobStore:
    store = _stores.get(root)
    if store is None:
        store = _stores[root] = BlobStore(root)
    return store


def _register_source(filename: str, text: str) -> None:
    """Let tracebacks show the cell's lines under the cell's own numbering."""
    lines = [line + "\n" for line in text.splitlines()]
    linecache.cache[filename] = (len(text), None, lines, filename)


def _compile_cell(source: str, filename: str, first_line: int, header: str, real_file: bool = False) -> Any:
    if not real_file:  # a real file's lines are read from disk by the traceback
        _register_source(filename, header + "\n" + source if first_line > 1 else source)
    tree = ast.parse(source, filename)
    ast.increment_lineno(tree, first_line - 1)
    return tree


def _step_function(spec: dict[str, Any], namespace: dict[str, Any]) -> Any:
    cell = spec["step_cell"]
    filename = cell["filename"]
    tree = _compile_cell(cell["body"], filename, cell["first_line"], cell["header"], cell.get("real_file", False))
    args = [ast.arg(arg="self")]
    if cell.get("join_arg"):
        args.append(ast.arg(arg=cell["join_arg"]))
    extra: dict[str, Any] = {"type_params": []} if sys.version_info >= (3, 12) else {}
    fn = ast.FunctionDef(
        name=spec["step"],
        args=ast.arguments(posonlyargs=[], args=args, kwonlyargs=[], kw_defaults=[], defaults=[]),
        body=tree.body or [ast.Pass()],
        decorator_list=[],
        returns=None,
        **extra,
    )
    body = fn.body
    fn.lineno, fn.col_offset = max(1, cell["first_line"] - 1), 0
    fn.end_lineno = getattr(body[-1], "end_lineno", None) or cell["first_line"]
    fn.end_col_offset = 0
    module = ast.fix_missing_locations(ast.Module(body=[fn], type_ignores=[]))
    local: dict[str, Any] = {}
    exec(compile(module, filename, "exec"), namespace, local)
    return local[spec["step"]]


def _format_error(exc: BaseException, cell_files: set[str]) -> dict[str, Any]:
    """Traceback from the first frame in user code, coloured like IPython's."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename not in cell_files:
        tb = tb.tb_next
    if tb is None:
        tb = exc.__traceback__
    lines: list[str]
    try:
        ip = get_ipython()  # type: ignore[name-defined]  # noqa: F821
        lines = ip.InteractiveTB.structured_traceback(type(exc), exc, tb)
    except Exception:
        lines = traceback.format_exception(type(exc), exc, tb)
    line = None
    walk = tb
    while walk is not None:
        if walk.tb_frame.f_code.co_filename in cell_files:
            line = walk.tb_lineno
        walk = walk.tb_next
    plain = "".join(traceback.format_exception(type(exc), exc, tb))
    return {"ename": type(exc).__name__, "evalue": str(exc), "traceback": lines, "text": plain, "line": line}


def _load(store: BlobStore) -> Any:
    def loader(ref: dict[str, Any]) -> Any:
        # A reference may live in another store (a spin reads a run's artifacts).
        source = _store(ref["root"]) if ref.get("root") else store
        return load_artifact(source, ArtifactRef.from_json(ref))

    return loader


def _run(spec: dict[str, Any]) -> dict[str, Any]:
    store = _store(spec["root"])
    loader = _load(store)
    namespace: dict[str, Any] = {"__name__": "__main__", "__file__": spec.get("file"), "__builtins__": __builtins__}
    cell_files = {c["filename"] for c in spec["code_cells"]} | {spec["step_cell"]["filename"]}
    env_before = dict(os.environ)
    os.environ.update(spec.get("environment") or {})
    if spec.get("cwd"):
        os.chdir(spec["cwd"])
    join_inputs = spec.get("join_inputs")
    instance = FlowInstance(
        spec["flow"], set(spec["steps"]), spec.get("inputs") or {}, loader, spec.get("foreach_stack") or []
    )
    cards = _card_collector(spec, instance)
    current._set(
        flow_name=spec["flow"], run_id=spec.get("run_id"), origin_run_id=spec.get("origin_run_id"),
        step_name=spec["step"], task_id=spec.get("task_id"), retry_count=spec.get("retry_count", 0),
        namespace=spec.get("namespace"), username=spec.get("username"),
        parameter_names=spec.get("parameter_names", []), tags=spec.get("tags", []),
        is_running_flow=spec.get("run_id") is not None, card=cards,
    )
    from . import client

    # Client calls inside the step read the run's store, in the run's namespace.
    client._state.update(namespace=spec.get("namespace"), root=spec.get("client_root"))
    started = time.time()
    try:
        for cell in spec["code_cells"]:
            tree = _compile_cell(cell["source"], cell["filename"], cell["first_line"], cell["header"],
                                 cell.get("real_file", False))
            exec(compile(tree, cell["filename"], "exec"), namespace)
        fn = _step_function(spec, namespace)
        if join_inputs is not None:
            views = [ArtifactView(i["step"], i["pathspec"], i["artifacts"], loader, i.get("frame")) for i in join_inputs]
            fn(instance, Inputs(views))
        else:
            fn(instance)
        error = None
    except BaseException as exc:  # the step's own failure, reported to the parent
        error = _format_error(exc, cell_files)
        if isinstance(exc, KeyboardInterrupt):
            error["interrupted"] = True
    finally:
        current._clear()
        os.environ.clear()
        os.environ.update(env_before)
    result: dict[str, Any] = {"status": "ok", "duration": time.time() - started}
    catch_var = spec.get("catch_var")
    if error is not None:
        if not catch_var:
            result.update(status="failed", error=error)
            return result
        instance.__dict__["_fc_values"][catch_var] = CaughtException(error["ename"], error["evalue"], error["text"])
        result["caught"] = error
    try:
        result.update(_outputs(spec, instance, store, caught=error is not None))
        result["cards"] = _render_cards(spec, instance, cards, store, result.get("artifacts", {}))
    except Exception as exc:
        result.update(status="failed", error=_format_error(exc, cell_files))
    return result


def _card_collector(spec: dict[str, Any], instance: FlowInstance) -> Any:
    from IPython.display import publish_display_data

    from .cards import CardCollector

    def publish(collector: Any) -> None:
        html = _render_all(spec, instance, collector, None)
        publish_display_data({CARD_MIME: {"cards": html}})

    return CardCollector(spec.get("cards") or [], publish)


def _render_all(spec: dict[str, Any], instance: FlowInstance, collector: Any,
                refs: dict[str, dict[str, Any]] | None) -> list[dict[str, Any]]:
    from .cards import _MISSING, render_card

    out = []
    values = instance.__dict__["_fc_values"]
    for deco in spec.get("cards") or []:
        card_type = deco.get("type", "default")
        artifacts = None
        if card_type == "default" and refs is not None:
            artifacts = [(name, ref.get("type", ""), int(ref.get("size", 0)), values.get(name, _MISSING))
                         for name, ref in sorted(refs.items())]
        components = list(collector.components(deco.get("id")))
        if deco.get("id") and len(spec["cards"]) == 1:
            # With a single @card, current.card.append() goes to it, id or not (as in Metaflow).
            components += collector.components(None)
        html = render_card(card_type, deco.get("id"), spec.get("pathspec") or spec["step"], components, artifacts)
        out.append({"type": card_type, "id": deco.get("id"), "html": html})
    return out


def _render_cards(spec: dict[str, Any], instance: FlowInstance, collector: Any, store: BlobStore,
                  refs: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Render each @card of the step to HTML and store it; return the references."""
    return [{"type": c["type"], "id": c["id"], "address": store.put(c["html"].encode())}
            for c in _render_all(spec, instance, collector, refs)]


def _outputs(spec: dict[str, Any], instance: FlowInstance, store: BlobStore, caught: bool) -> dict[str, Any]:
    """Persist what the step set or touched; pass the rest on by reference."""
    d = instance.__dict__
    refs: dict[str, dict[str, Any]] = d["_fc_refs"]
    values: dict[str, Any] = d["_fc_values"]
    values.pop("input", None)
    outputs: dict[str, dict[str, Any]] = {}
    created, changed = [], []
    for name, ref in refs.items():
        if name not in d["_fc_deleted"] and name not in values:
            outputs[name] = ref
    for name, value in values.items():
        ref = dump_artifact(store, name, value, step=spec["step"]).to_json()
        outputs[name] = ref
        old = refs.get(name)
        if old is None:
            created.append(name)
        elif old.get("address") != ref.get("address"):
            changed.append(name)
    node = spec["node"]
    transition = d["_fc_next"]
    out: dict[str, Any] = {"artifacts": outputs, "created": created, "changed": changed,
                           "deleted": sorted(d["_fc_deleted"] & set(refs))}
    if node["type"] == "end":
        return out
    if transition is None:
        if not caught:
            raise RuntimeError(
                f"Step {spec['step']} finished without calling self.next(); end it with self.next(self.<step>)."
            )
        transition = {"steps": node["out_funcs"], "foreach": node.get("foreach_param"),
                      "condition": node.get("condition"), "cases": node.get("switch_cases", {})}
    if transition["steps"] != node["out_funcs"] and not transition["cases"]:
        raise RuntimeError(
            f"Step {spec['step']} called self.next({', '.join('self.' + s for s in transition['steps'])}) "
            f"but its cell says {', '.join('self.' + s for s in node['out_funcs'])}; the transition must be the "
            "same every time the step runs."
        )
    if node["type"] == "foreach":
        items = getattr(instance, node["foreach_param"])
        try:
            count = len(items)
        except TypeError:
            raise TypeError(
                f"foreach={node['foreach_param']!r} in step {spec['step']} must be a list or other sized "
                f"collection, not {type(items).__name__}."
            ) from None
        if count == 0:
            raise ValueError(
                f"Foreach over {node['foreach_param']!r} in step {spec['step']} produced zero splits; "
                "the list must have at least one item."
            )
        out["num_splits"] = count
    elif node["type"] == "split-switch":
        value = getattr(instance, node["condition"])
        if value not in node["switch_cases"]:
            raise ValueError(
                f"Condition {node['condition']!r} of step {spec['step']} is {value!r}, which matches no case; "
                f"expected one of {sorted(node['switch_cases'])}."
            )
        out["switch_value"] = value
    return out


def run_task(spec_json: str) -> None:
    """Entry point called by the parent; publishes the result as display data."""
    from IPython.display import publish_display_data

    spec = json.loads(spec_json)
    try:
        result = _run(spec)
    except BaseException as exc:  # a failure of the driver itself
        result = {"status": "failed", "error": _format_error(exc, set())}
    sys.stdout.flush()
    sys.stderr.flush()
    publish_display_data({RESULT_MIME: result})
