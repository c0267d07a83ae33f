"""Metaflow's ``Config`` values: ``ConfigValue``, ``config_expr`` and resolving them.

A ``Config`` is resolved once per run, before any step runs, from (first found)
the ``--NAME`` value given to the run, ``METAFLOW_FLOW_CONFIG_VALUE`` (JSON of
name -> value), ``METAFLOW_FLOW_CONFIG`` (JSON of name -> file), the ``default``
file, the ``default_value`` (a dict, a string, or a function of the deploy context);
a string is parsed by the config's ``parser`` (a function, or its dotted name) or as
JSON.  The value is a :class:`ConfigValue`: an immutable dict whose keys are also
attributes (``config.nested.value``), stored as an artifact like a parameter.

Module code runs before configs are known, so ``config_expr("c").x`` and ``c.x`` on
an unresolved ``Config`` give a :class:`DelayEvaluator`; :func:`resolve` turns one
(or a dict or list holding some) into its value once :func:`bind` has been given the
run's configs (the task driver and the evaluation of module code call it).
"""

from __future__ import annotations

import collections.abc
import json
import sys
from typing import Any

#: The running flow's configs by name, once resolved (like ``current``, per process).
_BOUND: dict[str, Any] = {}


class ConfigValue(dict[str, Any]):
    """An immutable dict whose keys are attributes too; nested dicts are ConfigValues."""

    def __init__(self, data: collections.abc.Mapping[str, Any]) -> None:
        object.__setattr__(self, "_data", {k: _construct(v) for k, v in data.items()})
        dict.__init__(self, self._data)

    def __getattr__(self, key: str) -> Any:
        if key == "_data":
            raise AttributeError(key)
        if key in self._data:
            return self._data[key]
        raise AttributeError(f"Config has no key {key!r}; it has {', '.join(map(str, self._data)) or 'none'}.")

    def __getitem__(self, key: Any) -> Any:
        return self._data[key]

    def __iter__(self) -> Any:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ConfigValue):
            return bool(self._data == other._data)
        return isinstance(other, dict) and bool(self._data == other)

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    __hash__ = None

    def _immutable(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("ConfigValue is immutable")

    __setattr__ = __setitem__ = __delattr__ = __delitem__ = _immutable
    clear = update = setdefault = pop = popitem = _immutable

    def to_dict(self) -> dict[str, Any]:
        return {k: v.to_dict() if isinstance(v, ConfigValue) else v for k, v in self._data.items()}

    def __repr__(self) -> str:
        return repr(self._data)

    def __reduce__(self) -> Any:
        return (ConfigValue, (self.to_dict(),))


def _construct(value: Any) -> Any:
    if isinstance(value, ConfigValue):
        return value
    if isinstance(value, collections.abc.Mapping):
        return ConfigValue(value)
    if isinstance(value, (list, tuple)):
        return type(value)(_construct(v) for v in value)
    return value


class DelayEvaluator:
    """An expression over the flow's configs, evaluated once they are known:
    ``config_expr("str(config.value)")``, ``config_expr("c").nested.value``."""

    def __init__(self, expr: str, scope: dict[str, Any] | None = None,
                 path: tuple[tuple[str, Any], ...] = ()) -> None:
        self._expr, self._scope, self._path = expr, scope or {}, path

    def __getattr__(self, name: str) -> DelayEvaluator:
        if name.startswith("__"):
            raise AttributeError(name)
        return DelayEvaluator(self._expr, self._scope, (*self._path, ("attr", name)))

    def __getitem__(self, key: Any) -> DelayEvaluator:
        return DelayEvaluator(self._expr, self._scope, (*self._path, ("item", key)))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Metaflow calls a config-based parameter default with the deploy context."""
        return self._evaluate()

    def _evaluate(self) -> Any:
        if not _BOUND:
            raise RuntimeError(f"config_expr({self._expr!r}) used before the flow's configs are known.")
        value = eval(self._expr, {**self._scope, **_BOUND})
        for kind, key in self._path:
            value = getattr(value, key) if kind == "attr" else value[key]
        return value

    def __repr__(self) -> str:
        return f"config_expr({self._expr!r})" + "".join(
            f".{k}" if kind == "attr" else f"[{k!r}]" for kind, k in self._path)


def config_expr(expr: str) -> DelayEvaluator:
    """An expression over the flow's configs, for decorators and defaults (Metaflow's ``config_expr``)."""
    caller = sys._getframe(1).f_globals  # the module the expression is written in
    return DelayEvaluator(expr, caller)


def bind(configs: dict[str, Any]) -> None:
    """Make the run's configs (by config name) known to every ``config_expr`` of this process."""
    _BOUND.clear()
    _BOUND.update(configs)


def resolve(value: Any) -> Any:
    """``value`` with every DelayEvaluator in it (also inside dicts, lists, tuples) evaluated."""
    if isinstance(value, DelayEvaluator):
        return resolve(value._evaluate())
    if getattr(value, "_fc_config_value", None) is not None:  # a resolved Config stands for its value
        return value._fc_config_value
    if isinstance(value, dict) and not isinstance(value, ConfigValue):
        return {k: resolve(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(resolve(v) for v in value)
    return value


def parse(text: str, parser: Any) -> Any:
    """A config's text as its value: through ``parser`` (a function or its dotted name), else JSON."""
    if parser is None:
        return json.loads(text)
    if isinstance(parser, str):
        import importlib

        module, _, name = parser.rpartition(".")
        parser = getattr(importlib.import_module(module), name)
    return parser(text)


def value_of(config: Any, given_file: str | None, context: Any) -> Any:
    """The value of one ``Config`` for a run, by Metaflow's order of sources (module docstring).

    ``context`` is the deploy context a ``default``/``default_value`` function receives.
    """
    import os

    name = config.name
    text: str | None = None
    value: Any = None
    given_values = json.loads(os.environ.get("METAFLOW_FLOW_CONFIG_VALUE") or "{}")
    given_files = json.loads(os.environ.get("METAFLOW_FLOW_CONFIG") or "{}")
    path = given_file or given_files.get(name)
    if given_file is None and name in given_values:
        value = given_values[name]
    elif path is not None:
        text = _read(name, path)
    else:
        default = config.default(context) if callable(config.default) else config.default
        if default is not None and os.path.isfile(str(default)):
            text = _read(name, str(default))
        elif config.default_value is not None:
            dv = config.default_value
            value = dv(context) if callable(dv) else dv
        elif default is not None:
            raise FileNotFoundError(f"Config {name!r}: its default file {default!r} does not exist.")
    if isinstance(value, str):
        text = value
    if text is not None:
        value = parse(text, config.parser)
    if value is None:
        if config.required:
            raise ValueError(f"Config {name!r} is required: give it with --{name} FILE or METAFLOW_FLOW_CONFIG.")
        return None
    return value if config.plain else _construct(value)


def _read(name: str, path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as exc:
        raise FileNotFoundError(f"Config {name!r}: cannot read {path!r} ({exc.strerror}).") from None
