"""Metaflow's ``@project`` for a local run: the names in ``current`` and the run's system tags.

``@project(name=N)`` puts a flow in a project; a local run is on the branch
``user.NAME``, or ``test.B`` with ``--branch B`` (``METAFLOW_BRANCH``), or ``prod`` /
``prod.B`` with ``--production`` (``METAFLOW_PRODUCTION``); ``branch=`` and
``production=`` on the decorator win.  The run is tagged ``project:N`` and
``project_branch:BRANCH`` (system tags), so ``namespace("project:N")`` finds it.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Callable
from typing import Any

_TRUE = ("1", "true", "yes", "y", "on")


def _project_call(flow_decorators: list[str]) -> ast.Call | None:
    for source in flow_decorators:
        try:
            expr = ast.parse(source.strip().lstrip("@"), mode="eval").body
        except SyntaxError:
            continue
        if isinstance(expr, ast.Call) and ast.unparse(expr.func).split(".")[-1] == "project":
            return expr
    return None


def project_fields(flow_decorators: list[str], flow_name: str, username: str | None,
                   evaluate: Callable[[str], Any] | None = None) -> dict[str, Any]:
    """``current.project_name``/``branch_name``/``project_flow_name``/``is_production``/
    ``is_user_branch``; empty without ``@project``.

    An argument that is not a literal (``name=config_expr("c").project``) is given to
    ``evaluate`` (the task's module namespace); without it such a project is unknown here.
    """
    call = _project_call(flow_decorators)
    if call is None:
        return {}
    args: dict[str, Any] = {}
    for kw in call.keywords:
        if kw.arg is None:
            continue
        try:
            args[kw.arg] = ast.literal_eval(kw.value)
        except ValueError:
            if evaluate is None:
                return {}
            args[kw.arg] = evaluate(ast.unparse(kw.value))
    name = args.get("name")
    if not name:
        return {}
    branch = args.get("branch") or os.environ.get("METAFLOW_BRANCH") or None
    production = args.get("production")
    if production is None:
        production = os.environ.get("METAFLOW_PRODUCTION", "").lower() in _TRUE
    if branch:
        branch_name = f"{'prod' if production else 'test'}.{branch}"
    else:
        branch_name = "prod" if production else f"user.{os.environ.get('METAFLOW_OWNER', username)}"
    return {"project_name": str(name), "branch_name": branch_name, "is_production": bool(production),
            "is_user_branch": not branch and not production,
            "project_flow_name": f"{name}.{branch_name}.{flow_name}"}


def needs_module_code(flow_decorators: list[str], module_code: list[str]) -> bool:
    """Whether ``@project``'s fields depend on running the module code: an argument that is
    not a literal, or module code that sets ``METAFLOW_BRANCH``/``METAFLOW_PRODUCTION``."""
    call = _project_call(flow_decorators)
    if call is None:
        return False
    for kw in call.keywords:
        try:
            ast.literal_eval(kw.value)
        except ValueError:
            return True
    return any("METAFLOW_BRANCH" in code or "METAFLOW_PRODUCTION" in code for code in module_code)


def project_tags(fields: dict[str, Any]) -> list[str]:
    """The run's system tags for its project (none without ``@project``)."""
    if not fields:
        return []
    return [f"project:{fields['project_name']}", f"project_branch:{fields['branch_name']}"]
