"""The command line before Hydra: the command's own options (ckpt=...), Hydra's flags and the overrides;
and the config folder's groups, read without Hydra or torch (`ftool --help` answers at once)."""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

from ftool import __version__
from ftool.commands import COMMANDS, Command
from ftool.errors import FtoolError
from ftool.registry import close_match

FLAGS_WITH_VALUE = {"-c", "--cfg", "-p", "--package", "-cp", "--config-path", "-cn", "--config-name",
                    "-cd", "--config-dir", "--experimental-rerun"}
INFO_TOPICS = {"all", "config", "defaults", "defaults-tree", "plugins", "searchpath"}
NO_RUN_FLAGS = {"-c", "--cfg", "-i", "--info", "-h", "--help", "--hydra-help"}  # Hydra answers these, no job runs


def config_root() -> Path:
    """The packaged config folder (configs/ in the source tree, ftool/configs in a wheel)."""
    return Path(importlib.util.find_spec("ftool.configs").submodule_search_locations[0])


def config_groups(root: Path) -> dict[str, list[str]]:
    """group -> options (Hydra's own groups, under hydra/, aside)."""
    return {d.name: sorted(p.stem for p in d.glob("*.yaml")) for d in sorted(root.iterdir())
            if d.is_dir() and not d.name.startswith(("_", ".")) and d.name != "hydra"}


def default_choices(root: Path) -> dict[str, str]:
    """group -> option from the `- group: option` lines of config.yaml's defaults list."""
    found = re.findall(r"^\s*- (\w+): *(\w+)", (root / "config.yaml").read_text(), re.MULTILINE)
    return dict(found)


def print_help() -> None:
    root = config_root()
    defaults, groups = default_choices(root), config_groups(root)
    lines = [f"ftool {__version__}: train, evaluate and fine-tune PyTorch models from YAML configs", "",
             "usage: ftool <command> [key=value ...] [group=option ...] [-m] [--cfg job] [--debug]", "", "commands:",
             *(f"  {c.name:<10}{c.summary}" for c in COMMANDS.values()), "",
             "config groups (choose with group=option; * marks the default):",
             *(f"  {g:<16}{', '.join(o + '*' if defaults.get(g) == o else o for o in options)}"
               for g, options in groups.items()), "",
             "examples:",
             "  ftool train                                      simplecnn on the bundled digits data",
             "  ftool train model=convnet data=cifar10 data.root=~/data trainer.epochs=20",
             "  ftool train -m optimizer.lr=0.01,0.001           a sweep: one run dir per job",
             "  ftool eval ckpt=outputs/2026-11-25/10-00-00      re-evaluate a run's best checkpoint",
             '  ftool predict ckpt=RUN input="a witty film"      label new inputs (output=json or csv)',
             "  ftool report multirun/2026-11-25/10-00-00        a sweep's table and plots", "",
             "`ftool <command> --help` shows the command's config; --debug shows tracebacks."]
    print("\n".join(lines))


def split_args(args: list[str], command: Command) -> tuple[dict, list[str], list[str]]:
    """(the command's options, Hydra's flags, the overrides)."""
    options, flags, overrides = dict(command.options), [], []
    it = iter(args)
    for arg in it:
        flag, given, value = arg.partition("=")
        if given and flag in FLAGS_WITH_VALUE:  # --config-name=mine, as argparse takes it
            flags += [flag, value]
        elif arg.startswith("-"):
            flags.append(arg)
            if arg in FLAGS_WITH_VALUE:
                flags.append(next(it, ""))
        elif flags[-1:] in (["-i"], ["--info"]) and arg in INFO_TOPICS:
            flags.append(arg)
        elif flag in command.options:
            options[flag] = (*options[flag], value) if isinstance(command.options[flag], tuple) else value
        else:
            overrides.append(shell_like(arg))
    missing = [k for k, v in options.items() if v is None or v == ()]
    if missing and not set(flags) & {"-h", "--help", "--hydra-help"}:
        raise FtoolError(f"{command.name} needs {', '.join(f'{k}=...' for k in missing)} ({command.summary})")
    for key, allowed in command.choices.items():
        if options[key] not in allowed:
            raise FtoolError(f"{key}: must be {', '.join(allowed)}; got {options[key]!r}.{close_match(options[key], allowed)}")
    return options, flags, targets_replace_presets(overrides)


COMPONENT_GROUPS = ("model", "data", "optimizer", "scheduler")


def targets_replace_presets(overrides: list[str]) -> list[str]:
    """`model._target_=torchvision.models.vgg11` (as Hydra apps are told which class to build): that model,
    with the keys given beside it, in place of the chosen preset, whose keys would not fit it."""
    keys = [o.partition("=")[0].lstrip("+") for o in overrides]
    named = {k.removesuffix("._target_") for k in keys if k.endswith("._target_")}
    named = {g for g in named if g in COMPONENT_GROUPS and g not in keys}  # (model=mine model._target_=... keeps mine)
    if not named:
        return overrides
    return [*(f"~{g}" for g in sorted(named)),
            *("+" + o.lstrip("+") if k.partition(".")[0] in named else o for o, k in zip(overrides, keys))]


def shell_like(override: str) -> str:
    """An override as a shell user means it, in Hydra's grammar, which takes neither ~ nor non-ASCII letters
    in a plain value: `data.root=~/data` gets the home folder, non-ASCII words (`[猫,狗]`) are quoted."""
    key, sep, value = override.partition("=")
    if not sep or key.startswith("~"):
        return override
    if value == "~" or value.startswith("~/"):
        return f"{key}={quoted(os.path.expanduser(value))}"
    if value.isascii() or set(value) & set("(){}'\"$=\\"):
        return override
    return key + "=" + "".join(w if w.isascii() else quoted(w.strip()) for w in re.split(r"([,\[\]])", value))


def quoted(path) -> str:
    """A value quoted for Hydra's grammar, which reserves , = [ ' and non-ASCII letters."""
    return "'" + str(path).replace("'", "\\'") + "'"


def override_value(overrides: list[str], key: str) -> str | None:
    for o in reversed(overrides):
        k, sep, value = o.partition("=")
        if sep and k.lstrip("+") == key:
            return value.strip("'\"")
    return None


def flag_value(flags: list[str], *names: str) -> list[str]:
    return [flags[i + 1] for i, f in enumerate(flags[:-1]) if f in names]


def is_multirun(flags: list[str]) -> bool:
    return "-m" in flags or "--multirun" in flags
