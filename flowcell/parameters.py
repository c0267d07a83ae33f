"""``Parameter``, ``IncludeFile`` and ``Config``, and turning given values into artifacts.

In a ``%%flow`` cell these calls only declare parameters (flowcell reads them with
``ast``); their values are resolved once per run, in the process that starts it,
and stored as the artifacts of the run's ``_parameters`` task, from where every
step sees them on ``self``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .errors import ParameterError
from .model import FlowSource, ParameterSpec


class JSONType:
    """Marker type: the parameter's value is parsed as JSON (Metaflow's ``JSONType``)."""


class Parameter:
    """A flow parameter, set with ``--name VALUE`` on a run."""

    def __init__(self, name: str, default: Any = None, type: Any = None, help: str | None = None,
                 required: bool = False, **kwargs: Any) -> None:
        self.name = name
        self.default = default
        self.type = type
        self.help = help
        self.required = required
        self.kwargs = kwargs

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, default={self.default!r})"


class IncludeFile(Parameter):
    """A parameter whose value is the content of a file, read when the run starts."""

    def __init__(self, name: str, default: Any = None, is_text: bool = True, encoding: str = "utf-8",
                 help: str | None = None, required: bool = False, **kwargs: Any) -> None:
        super().__init__(name, default=default, help=help, required=required, **kwargs)
        self.is_text = is_text
        self.encoding = encoding


class Config(Parameter):
    """A configuration, resolved once per run before any step runs (see :mod:`flowcell.user_config`).

    In module code, before it is resolved, ``config.x`` is a ``DelayEvaluator``; in a task
    (and for decorator arguments) the object stands for its value: ``config.x``,
    ``config["x"]``, ``**config``.
    """

    def __init__(self, name: str, default: Any = None, default_value: Any = None, help: str | None = None,
                 required: bool | None = None, parser: Any = None, plain: bool = False, **kwargs: Any) -> None:
        if default is not None and default_value is not None:
            raise ParameterError(f"Config {name!r}: give default (a file) or default_value, not both.")
        super().__init__(name, default=default, help=help, required=bool(required), **kwargs)
        self.default_value, self.parser, self.plain = default_value, parser, plain

    def _bind(self, value: Any) -> None:
        self.__dict__["_fc_config_value"] = value

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_"):
            raise AttributeError(key)
        value = self.__dict__.get("_fc_config_value")
        if value is not None:
            return getattr(value, key)
        from .user_config import DelayEvaluator  # only module code that uses configs needs it

        return DelayEvaluator(self.name, {}, (("attr", key),))

    def __getitem__(self, key: Any) -> Any:
        value = self.__dict__.get("_fc_config_value")
        if value is None:
            return self._fc_delay(key)
        return value[key]

    def _fc_delay(self, key: Any) -> Any:
        from .user_config import DelayEvaluator  # only module code that uses configs needs it

        return DelayEvaluator(self.name, {}, (("item", key),))

    def keys(self) -> Any:
        """``**config`` unpacks the resolved value (e.g. ``@environment(**config)``)."""
        value = self.__dict__.get("_fc_config_value")
        return value.keys() if value is not None else []


ENV_PREFIX = "METAFLOW_RUN_"
_TYPES: dict[str, type] = {"int": int, "float": float, "str": str, "bool": bool}


def _target_type(spec: ParameterSpec) -> str | None:
    declared = spec.kwargs.get("type")
    if isinstance(declared, str):
        return declared.rsplit(".", 1)[-1]
    default = spec.default
    if default is None:
        return None
    return type(default).__name__ if type(default).__name__ in _TYPES else None


def convert(spec: ParameterSpec, value: Any) -> Any:
    """A value given for ``spec`` (text from a shell, or a Python value) as a run would see it."""
    return _convert(spec, value)


def _convert(spec: ParameterSpec, value: Any) -> Any:
    kind = _target_type(spec)
    if kind == "JSONType":
        if isinstance(value, str):
            try:
                return json.loads(value)
            except json.JSONDecodeError as exc:
                raise ParameterError(f"--{spec.name} expects JSON, got {value!r} ({exc.msg}).") from None
        return value
    separator = spec.kwargs.get("separator")
    if separator and isinstance(value, str):  # Parameter(separator=","): a list of values
        return [_convert_one(spec, kind, v) for v in value.split(separator)]
    return _convert_one(spec, kind, value)


def _convert_one(spec: ParameterSpec, kind: str | None, value: Any) -> Any:
    if kind not in _TYPES:
        return value
    target = _TYPES[kind]
    if isinstance(value, str) and target is not str:
        text = value.strip()
        if target is bool:
            lowered = text.lower()
            if lowered in ("true", "1", "yes", "y", "on"):
                return True
            if lowered in ("false", "0", "no", "n", "off"):
                return False
        else:
            try:
                return target(text)
            except ValueError:
                pass
        raise ParameterError(f"--{spec.name} expects a value of type {kind}, got {value!r}.")
    if target is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, target) or (target is int and isinstance(value, bool)):
        raise ParameterError(
            f"Parameter {spec.name!r} expects a value of type {kind}, got {type(value).__name__} {value!r}."
        )
    return value


def _find_file(spec: ParameterSpec, path_value: Any, base_dirs: list[Path]) -> Path:
    path = Path(str(path_value)).expanduser()
    candidates = [path] if path.is_absolute() else [d / path for d in base_dirs]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    where = " or ".join(str(c) for c in candidates)
    raise ParameterError(f"{spec.kind} {spec.name!r}: file {str(path_value)!r} not found (looked for {where}).")


def _read_file(spec: ParameterSpec, path_value: Any, base_dirs: list[Path]) -> Any:
    path = Path(str(path_value)).expanduser()
    candidates = [path] if path.is_absolute() else [d / path for d in base_dirs]
    for candidate in candidates:
        if candidate.is_file():
            if spec.kind == "Config":
                try:
                    return json.loads(candidate.read_text())
                except json.JSONDecodeError as exc:
                    raise ParameterError(f"Config {spec.name!r}: {candidate} is not valid JSON ({exc}).") from None
            if spec.kwargs.get("is_text", True):
                return candidate.read_text(encoding=spec.kwargs.get("encoding") or "utf-8")
            return candidate.read_bytes()
    where = " or ".join(str(c) for c in candidates)
    raise ParameterError(f"{spec.kind} {spec.name!r}: file {str(path_value)!r} not found (looked for {where}).")


def _evaluated(flow: FlowSource, specs: list[ParameterSpec], given: dict[str, Any], base_dirs: list[Path]
               ) -> tuple[dict[str, Any], dict[str, str], dict[str, Any]]:
    """Defaults that need the module code run (calls, functions of the deploy context, files
    the module code writes), the ``METAFLOW_RUN_*`` values it set, and the flow's configs
    (always resolved there: a parser, a default function or the environment the module code
    sets may decide them); all empty when none are needed."""
    configs = [s for s in specs if s.kind == "Config"]
    needed = [s for s in specs if s.name not in given and not s.required and s.kind != "Config" and
              (not s.has_literal_default or s.kind == "IncludeFile")]
    if (not needed and not configs) or not flow.code_cells:
        return {}, {}, {}
    from ._evaluate import evaluate_parameters  # spawns a process; only for flows that need it

    given_files = {}
    for spec in configs:
        key = next((k for k in (spec.name, spec.name.replace("_", "-")) if k in given), None)
        if key is not None:
            given_files[spec.name] = str(_find_file(spec, given[key], base_dirs))
    defaults, env, config_values = evaluate_parameters(flow, given_files)
    return {s.var: defaults.get(s.var) for s in needed}, env, config_values


def resolve(flow: FlowSource, given: dict[str, Any], base_dirs: list[Path]) -> dict[str, Any]:
    """Values of every parameter by attribute name, given values by parameter name.

    Raises :class:`ParameterError` for an unknown name, a missing required value or
    a value of the wrong type, before anything is recorded.
    """
    specs = flow.parameters
    by_name = {s.name: s for s in specs}
    by_name.update({s.name.replace("_", "-"): s for s in specs})
    unknown = [k for k in given if k not in by_name and k.replace("_", "-") not in by_name]
    if unknown:
        known = ", ".join(f"--{s.name}" for s in specs) or "none"
        raise ParameterError(
            f"Unknown parameter {', '.join('--' + u for u in unknown)} for flow {flow.name}; "
            f"its parameters are: {known}."
        )
    values: dict[str, Any] = {}
    evaluated, module_env, configs = _evaluated(flow, specs, given, base_dirs)
    for spec in specs:
        if spec.var in configs:  # resolved with the module code (user_config's rules)
            values[spec.var] = configs[spec.var]
            continue
        key = next((k for k in (spec.name, spec.name.replace("_", "-"), spec.name.replace("-", "_")) if k in given), None)
        env_name = ENV_PREFIX + spec.name.upper().replace("-", "_")
        from_env = os.environ.get(env_name, module_env.get(env_name))
        if key is not None:
            value = given[key]
        elif from_env is not None:  # Metaflow reads METAFLOW_RUN_<NAME> as the parameter's value
            value, key = from_env, env_name
        elif spec.var in evaluated:
            value = evaluated[spec.var]
        elif spec.required:
            raise ParameterError(f"Flow {flow.name} needs --{spec.name}: it is a required parameter.")
        elif not spec.has_literal_default:
            raise ParameterError(
                f"The default of parameter {spec.name!r} ({spec.label}) is not a literal value; "
                f"give it explicitly with --{spec.name}, or write the default as a literal."
            )
        else:
            value = spec.default
        if spec.kind in ("IncludeFile", "Config"):
            if spec.kind == "Config" and spec.kwargs.get("default_value") is not None and key is None:
                values[spec.var] = spec.kwargs["default_value"]
            else:
                values[spec.var] = None if value is None else _read_file(spec, value, base_dirs)
        else:
            values[spec.var] = None if value is None else _convert(spec, value)
    return values


def display_values(values: dict[str, Any]) -> dict[str, Any]:
    """JSON-safe summary of parameter values, for the run record."""
    out: dict[str, Any] = {}
    for k, v in values.items():
        if isinstance(v, (int, float, bool, type(None))) or (isinstance(v, str) and len(v) < 200):
            out[k] = v
        else:
            out[k] = f"<{type(v).__name__}, {len(v) if hasattr(v, '__len__') else '?'} items>"
    return out
