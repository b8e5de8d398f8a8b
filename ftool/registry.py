"""Name -> builder registries: every model, dataset, optimizer, schedule, logger and loss of one's own.

A builder's keyword arguments are the config keys a user may set; `check_args` checks them against
its signature (unknown keys with the closest one, missing ones, simple types, paths that must exist)
before anything runs. Arguments ftool supplies (the data's input shape, the parameters, ...) are
named in `provided` and may not be set in a config.
"""

from __future__ import annotations

import difflib
import inspect
import pydoc
import types
import typing
from pathlib import Path
from typing import Any, Callable

from ftool.errors import FtoolError


def close_match(word: str, options) -> str:
    """' Did you mean X?' for the closest option (the same word in other case first), or ''."""
    options = [str(o) for o in options]
    close = [o for o in options if o.lower() == str(word).lower()] or difflib.get_close_matches(
        str(word), options, n=1, cutoff=0.5)
    return f" Did you mean '{close[0]}'?" if close else ""


class Registry:
    def __init__(self, kind: str, config_key: str, provided: tuple[str, ...] = ()):
        self.kind, self.config_key, self.provided = kind, config_key, provided
        self._builders: dict[str, Callable[..., Any]] = {}

    def register(self, name: str) -> Callable:
        def add(builder: Callable) -> Callable:
            if name in self._builders:
                raise FtoolError(f"{self.kind} '{name}' is registered twice: first by "
                                 f"{_origin(self._builders[name])}, again by {_origin(builder)}")
            self._builders[name] = builder
            return builder

        return add

    def names(self) -> list[str]:
        return sorted(self._builders)

    def get(self, name: str) -> Callable:
        """The builder registered as `name`, or the callable a dotted `_target_` names (Hydra's convention)."""
        if name not in self._builders and "." in name:
            found = pydoc.locate(name)
            if found is None:
                module, _, attribute = name.rpartition(".")
                parent = pydoc.locate(module)
                hint = close_match(attribute, dir(parent)) if parent is not None else f" No module {module}."
                raise FtoolError(f"{self.config_key}._target_: cannot import {name}.{hint}")
            return found
        if name not in self._builders:
            hint = close_match(name, self.names()) or " A module of your own that registers it goes in imports=[...]."
            raise FtoolError(f"{self.config_key}: unknown {self.kind} '{name}'; registered: "
                             f"{', '.join(self.names())}.{hint}")
        return self._builders[name]

    def parameters(self, name: str) -> dict[str, inspect.Parameter]:
        return dict(inspect.signature(self.get(name), eval_str=True).parameters)

    def accepts(self, name: str, arg: str) -> bool:
        return arg in self.parameters(name)

    def check_args(self, name: str, args: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
        """(every problem with these config arguments of builder `name`, the arguments with paths
        made absolute)."""
        params = self.parameters(name)
        allowed = [p for p, v in params.items() if p not in self.provided and v.kind not in _VARIADIC]
        # a callable that takes **kwargs takes any key: the library checks those
        errors = [] if _takes_any(params) else [
            f"{self.config_key}.{key}: not an option of {self.kind} '{name}'; its options: "
            f"{', '.join(allowed) or '(none)'}.{close_match(key, allowed)}" for key in args if key not in allowed]
        if errors:
            return errors, args
        missing = [p for p in allowed if params[p].default is inspect.Parameter.empty and p not in args]
        errors += [f"{self.config_key}.{key}: needs a value; give {self.config_key}.{key}=..." for key in missing]
        resolved = dict(args)
        for key, value in args.items():
            if key not in params:
                continue
            annotation = params[key].annotation
            problem = type_problem(annotation, value)
            if problem:
                errors.append(f"{self.config_key}.{key}: {problem}, got {value!r}")
            elif value is not None and Path in _members(annotation):
                path = Path(str(value)).expanduser().resolve()
                if not path.exists():
                    errors.append(f"{self.config_key}.{key}: {path} does not exist")
                resolved[key] = str(path)
        return errors, resolved

    def build(self, name: str, args: dict[str, Any], **provided: Any) -> Any:
        """`name`'s object from the config's `args` and what ftool provides, each to the argument that takes
        it; to a callable taking **kwargs, also `provided`'s `num_classes` (torchvision's builders)."""
        params = self.parameters(name)
        given = {k: v for k, v in provided.items() if k in params or k == "num_classes" and _takes_any(params)}
        return self.get(name)(**given, **args)


_VARIADIC = (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)


def _takes_any(params: dict[str, inspect.Parameter]) -> bool:
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def _members(annotation) -> tuple:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return typing.get_args(annotation)
    return (annotation,)


_PLAIN = {int: "int", float: "float", bool: "bool", str: "str", Path: "a path", list: "list", tuple: "list",
          dict: "dict", type(None): "null"}


def type_problem(annotation, value) -> str | None:
    """'must be int or list' when `value` plainly contradicts a simple annotation, else None."""
    kinds = _members(annotation)
    if annotation in (inspect.Parameter.empty, Any) or any(_fits(k, value) for k in kinds):
        return None
    if all(typing.get_origin(k) is typing.Literal for k in kinds):
        options = [o for k in kinds for o in typing.get_args(k)]
        return f"must be one of {', '.join(map(str, options))}.{close_match(value, options)}"
    words = [_PLAIN.get(typing.get_origin(k) or k) for k in kinds]
    return None if None in words else f"must be {' or '.join(dict.fromkeys(words))}"


def _fits(kind, value) -> bool:
    origin = typing.get_origin(kind) or kind
    if origin is typing.Literal:
        return value in typing.get_args(kind)
    if origin is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if origin is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin in (list, tuple):
        return isinstance(value, (list, tuple))
    if origin is Path:
        return isinstance(value, str)
    if origin is type(None):
        return value is None
    return not isinstance(origin, type) or isinstance(value, origin)


def _origin(builder: Callable) -> str:
    try:
        return f"{builder.__module__}:{inspect.getsourcelines(builder)[1]}"
    except (OSError, TypeError):
        return getattr(builder, "__module__", "?")


# What the data gives a model, under each name a builder may take it by (torchvision: num_classes;
# transformers: num_labels).
MODELS = Registry("model", "model", provided=("input_shape", "num_outputs", "num_classes", "num_labels", "pretrained"))
DATASETS = Registry("dataset", "data", provided=("tokenizer", "run_columns"))
OPTIMIZERS = Registry("optimizer", "optimizer", provided=("params", "lr", "weight_decay"))
SCHEDULERS = Registry("scheduler", "scheduler", provided=("optimizer", "total_steps", "steps_per_epoch"))
LOGGERS = Registry("logger", "logger", provided=("run_dir", "resumed_at", "settings", "metrics", "run_name"))
LOSSES = Registry("loss", "trainer.loss", provided=("info",))
CALLBACKS = Registry("callback", "callbacks", provided=("run_dir",))
METRICS = Registry("metric", "trainer.metrics")
REGISTRIES = {"model": MODELS, "data": DATASETS, "optimizer": OPTIMIZERS, "scheduler": SCHEDULERS, "logger": LOGGERS,
              "callbacks": CALLBACKS}
