"""Name -> builder registries: every model, dataset, optimizer and schedule is built by name.

Builders are plain functions (or classes); their keyword arguments are the config keys a user may
set, checked with `inspect.signature(...).bind` before anything runs. Arguments the engine supplies
(the data's input shape, the model's parameters, ...) are named in `provided` and may not be set
in a config.
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any, Callable

from ftool.errors import FtoolError, one_line


def close_matches_hint(word: str, options: list[str]) -> str:
    """' Did you mean X?' for the closest option (the same word in other case first: AdamW is adamw),
    or '' when nothing is close."""
    close = ([o for o in options if o.lower() == word.lower()]
             or difflib.get_close_matches(word, options, n=1, cutoff=0.5))
    return f" Did you mean '{close[0]}'?" if close else ""


class Registry:
    def __init__(self, kind: str, config_key: str, provided: tuple[str, ...] = ()):
        self.kind = kind  # "model", "dataset", ... for messages
        self.config_key = config_key  # "model", "data", ... the config node that names it
        self.provided = provided
        self._builders: dict[str, Callable[..., Any]] = {}

    def register(self, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def add(builder: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._builders:
                first = self._builders[name]
                raise FtoolError(
                    f"{self.kind} '{name}' is registered twice: first by "
                    f"{_origin(first)}, again by {_origin(builder)}"
                )
            self._builders[name] = builder
            return builder

        return add

    def names(self) -> list[str]:
        return sorted(self._builders)

    def get(self, name: str) -> Callable[..., Any]:
        if name not in self._builders:
            hint = close_matches_hint(name, self.names()) or \
                " If your own module registers it, name the module in imports=[...]."
            raise FtoolError(f"{self.config_key}.name: unknown {self.kind} '{name}'; registered: "
                             f"{', '.join(self.names())}.{hint}")
        return self._builders[name]

    def options(self, name: str) -> list[str]:
        """The keyword arguments a config may set for this builder."""
        params = inspect.signature(self.get(name)).parameters.values()
        return [p.name for p in params if p.name not in self.provided and p.kind != p.VAR_KEYWORD]

    def check_args(self, name: str, args: dict[str, Any]) -> list[str]:
        """Every problem with these config arguments for builder `name`, as messages."""
        builder = self.get(name)
        signature = inspect.signature(builder)
        errors = []
        for key in args:
            if key in self.provided:
                errors.append(f"{self.config_key}.{key} is set by ftool, not by the config")
        allowed = self.options(name)
        for key in args:
            if key not in signature.parameters and key not in self.provided:
                errors.append(
                    f"{self.config_key}.{key}: not an option of {self.kind} '{name}'; its options: "
                    f"{', '.join(allowed) or '(none)'}.{close_matches_hint(key, allowed)}"
                )
        if errors:
            return errors
        placeholders = {p: None for p in self.provided if p in signature.parameters}
        try:
            signature.bind(**placeholders, **args)
        except TypeError as e:
            return [f"{self.config_key}: {self.kind} '{name}': {e}"]
        for key, value in args.items():
            problem = _type_problem(signature.parameters[key], value)
            if problem:
                errors.append(f"{self.config_key}.{key}: {problem}")
        return errors

    def build_args(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        """The builder's keyword arguments: its defaults, updated by the config's `args`."""
        params = inspect.signature(self.get(name)).parameters.values()
        return {p.name: p.default for p in params if p.default is not p.empty} | args

    def accepts(self, name: str, arg: str) -> bool:
        return arg in inspect.signature(self.get(name)).parameters

    def build(self, name: str, args: dict[str, Any], **provided: Any) -> Any:
        """The builder's result. A ValueError it raises is the usual answer of torch and other
        libraries to a value they cannot take (Adam's betas=[0.9, 1.5], dropout 1.5): one line
        naming the config node (--debug shows where it came from)."""
        builder = self.get(name)
        accepted = inspect.signature(builder).parameters
        try:
            return builder(**{k: v for k, v in provided.items() if k in accepted}, **args)
        except ValueError as e:
            raise FtoolError(f"{self.config_key}={name}: {one_line(e)}") from e


_SIMPLE_TYPES = {"int": int, "float": (int, float), "bool": bool, "str": str, "list": (list, tuple), "dict": dict}
_TYPE_WORDS = {"int": "a whole number", "float": "a number", "bool": "true or false", "str": "text",
               "list": "a list ([a,b])", "dict": "settings ({key: value})"}


def expected_type(name: str, optional: bool = False) -> str:
    """A setting's type in a user's words, for `must be ..., got ...` (`int`: a whole number)."""
    words = _TYPE_WORDS.get(name, name)
    return f"{words} or null" if optional else words


def _type_problem(param: inspect.Parameter, value: Any) -> str | None:
    """A message when `value` plainly contradicts a simple annotation (int, float, bool, str, list, dict)."""
    annotation = param.annotation if isinstance(param.annotation, str) else getattr(
        param.annotation, "__name__", ""
    )
    optional = annotation.endswith("| None") or annotation.startswith("Optional")
    base = annotation.replace("| None", "").replace("Optional[", "").rstrip("]").strip()
    expected = _SIMPLE_TYPES.get(base)
    if expected is None or (value is None and optional):
        return None
    if not isinstance(value, expected) or (isinstance(value, bool) and base != "bool"):
        return f"must be {expected_type(base, optional)}, got {value!r}"
    return None


def _origin(builder: Callable[..., Any]) -> str:
    try:
        return f"{builder.__module__}:{inspect.getsourcelines(builder)[1]}"
    except (OSError, TypeError):
        return getattr(builder, "__module__", "?")


MODELS = Registry("model", "model", provided=("input_shape", "num_outputs", "pretrained"))
DATASETS = Registry("dataset", "data", provided=("tokenizer", "run_columns"))
OPTIMIZERS = Registry("optimizer", "optimizer", provided=("params", "lr", "weight_decay"))
SCHEDULERS = Registry("scheduler", "scheduler", provided=("optimizer", "total_steps", "steps_per_epoch"))
LOGGERS = Registry("logger", "logger", provided=("run_dir",))
LOSSES = Registry("loss", "trainer.loss", provided=("info",))  # losses of one's own (ftool's are in ftool.metrics)
