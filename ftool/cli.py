"""`ftool <command> [options] [Hydra overrides]`.

argv -> command (ftool.commands) -> preflight (group options, Hydra composition, the schema: every
mistake ends here in one line, before Hydra makes a run dir) -> Hydra runs the command once, or per
job with -m. `ftool --help` reads the config folder only: it imports neither Hydra nor torch.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import sys
import time
from pathlib import Path

from ftool import __version__
from ftool.commands import COMMANDS, Command
from ftool.errors import FtoolError, RunInterrupted, machine_errors, one_line

# Hydra's own flags, and those of them that take a value.
_CONFIG_NAME_FLAGS = ("-cn", "--config-name")
_FLAGS_WITH_VALUE = {"-c", "--cfg", "-p", "--package", "-cp", "--config-path", *_CONFIG_NAME_FLAGS,
                     "-cd", "--config-dir", "--experimental-rerun"}
_INFO_TOPICS = {"all", "config", "defaults", "defaults-tree", "plugins", "searchpath"}
_NO_RUN_FLAGS = {"-c", "--cfg", "-i", "--info", "-h", "--help", "--hydra-help", "--version"}


def config_root() -> Path:
    """The packaged config folder (configs/ in the source tree, ftool/configs in a wheel)."""
    return Path(importlib.util.find_spec("ftool.configs").submodule_search_locations[0])


def config_groups(root: Path) -> dict[str, list[str]]:
    """group -> options; `hydra/` holds options of Hydra's own groups (hydra/launcher=...)."""
    return {d.name: sorted(p.stem for p in d.glob("*.yaml") if not p.stem.startswith("_"))
            for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith(("_", ".")) and d.name != "hydra"}


def print_help() -> None:
    lines = [f"ftool {__version__}: train, evaluate and fine-tune PyTorch models from YAML configs", "",
             "usage: ftool <command> [key=value ...] [group=option ...] [-m] [--cfg job] [--debug]", "",
             "commands:"]
    lines += [f"  {c.name:<10}{c.summary}" for c in COMMANDS.values()]
    lines += ["", "config groups (choose with group=option; * marks the default):"]
    defaults = _default_choices(config_root())
    groups = config_groups(config_root())
    width = max(map(len, groups)) + 2
    for group, options in groups.items():
        shown = [f"{o}*" if defaults.get(group) == o else o for o in options]
        lines.append(f"  {group:<{width}}{', '.join(shown)}")
    examples = [("ftool train", "simplecnn on the bundled digits data"),
                ("ftool train model=convnet data=cifar10 data.root=~/data trainer.epochs=20", ""),
                ("ftool train -m optimizer.lr=0.01,0.001", "a sweep: one run dir per job"),
                ("ftool eval ckpt=outputs/2026-11-25/10-00-00", "re-evaluate a run's best checkpoint"),
                ("ftool report multirun/2026-11-25/10-00-00", "a sweep's table (best first) and plots"),
                ("ftool finetune experiment=minilm_mr data.root=mr", "a pretrained BERT on new text"),
                ('ftool predict ckpt=RUN input="a witty film"', "label new inputs (output=json or csv)"),
                ("ftool export ckpt=RUN format=onnx", "or safetensors, torchscript, pt2; checked"),
                ("ftool train --cfg job", "print the composed config")]
    lines += ["", "examples:", *(f"  {command:<49} {comment}".rstrip() for command, comment in examples),
              "", "`ftool <command> --help` shows the command's config; --debug shows tracebacks."]
    print("\n".join(lines))


def _default_choices(root: Path) -> dict[str, str]:
    """group -> option from the `- group: option` lines of config.yaml's defaults list."""
    choices = {}
    for line in (root / "config.yaml").read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("- ") and ":" in stripped and "override" not in stripped:
            group, _, option = stripped[2:].partition(":")
            choices[group.strip()] = option.strip()
    return choices


def split_args(args: list[str], command: Command) -> tuple[dict, list[str], list[str]]:
    """(command options, Hydra flags, overrides)."""
    options, flags, overrides = dict(command.options), [], []
    it = iter(args)
    for arg in it:
        flag, given, value = arg.partition("=")
        if given and flag in _FLAGS_WITH_VALUE:  # --config-name=mine, as argparse takes it: read as --config-name mine
            flags += [flag, value]
        elif arg.startswith("-"):
            flags.append(arg)
            if arg in _FLAGS_WITH_VALUE:
                flags.append(next(it, ""))
            elif arg in ("-i", "--info"):  # Hydra's default topic: else the overrides after it would be read as one
                flags.append("all")
        elif flags[-2:-1] in (["-i"], ["--info"]) and arg in _INFO_TOPICS:
            flags[-1] = arg
        elif arg.split("=", 1)[0] in command.options:
            key, _, value = arg.partition("=")
            options[key] = (*options[key], value) if isinstance(command.options[key], tuple) else value
        else:
            overrides.append(shell_like(arg))
    check_no_empty_paths(options, overrides)
    missing = [k for k, v in options.items() if v is None or v == ()]
    if missing and not set(flags) & {"-h", "--help", "--hydra-help"}:
        bare = [a for a in overrides if "=" not in a]  # `ftool eval outputs/run`: the value without its key
        hint = f"; {bare[0]!r} has no key: {missing[0]}={bare[0]}?" if bare else f" ({command.name}: {command.summary})"
        raise FtoolError(f"{command.name} needs {', '.join(f'{k}=...' for k in missing)}{hint}")
    return options, flags, overrides


# Settings that name a file or folder. Given empty, the value is most often a shell variable that is not
# set (`ckpt=$RUN`), and would stand for the current folder (ckpt, data.root: whatever runs or images are
# there) or for nothing (finetune.from: a fine-tune from scratch).
PATH_SETTINGS = ("ckpt", "input", "data.root", "trainer.resume", "finetune.from", "model.name_or_path",
                 "hydra.run.dir", "hydra.sweep.dir")


def check_no_empty_paths(options: dict, overrides: list[str]) -> None:
    given = [(k, v) for k, value in options.items() for v in (value if isinstance(value, tuple) else (value,))]
    given += [(k.lstrip("+~"), v) for k, sep, v in (o.partition("=") for o in overrides) if sep]
    for key, value in given:
        if key in PATH_SETTINGS and isinstance(value, str) and not value.strip("'\" "):
            raise FtoolError(f"{key}= is empty (a shell variable that is not set?); give a path")


# Characters of Hydra's override values that ftool leaves to the user: quotes, interpolations, escapes,
# sweeps' functions (`choice(...)`) and dicts (whose keys Hydra takes in ASCII only).
_GRAMMAR = set("(){}'\"$=\\")


def shell_like(override: str) -> str:
    """An override as a shell user means it, in Hydra's grammar, which takes neither ~ nor non-ASCII
    letters in a plain value: `data.root=~/data` gets the home folder, and non-ASCII words are quoted,
    a value's (`hydra.run.dir=runs/训练`), a sweep's (`data.path=a.csv,中文.csv`) or a list's (`[猫,狗]`)."""
    key, sep, value = override.partition("=")
    if not sep or key.startswith("~"):  # `~key` deletes a key
        return override
    if value == "~" or value.startswith("~/"):
        return f"{key}={quoted(os.path.expanduser(value))}"
    if value.isascii() or set(value) & _GRAMMAR:
        return override
    return key + "=" + "".join(w if w.isascii() else quoted(w.strip()) for w in re.split(r"([,\[\]])", value))


def check_group_choices(overrides: list[str], groups: dict[str, list[str]]) -> None:
    """`model=simplecn` -> one line listing the options and the closest one (every sweep value too);
    `+model=mlp` -> one line: the group is chosen already;
    a sweep value that gives no values (`glob(zz*)`, `range(5,1)`) -> one line, not a sweep of no jobs."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import Glob
    from hydra.errors import HydraException

    from ftool.registry import close_matches_hint

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as e:
        raise FtoolError(f"bad override: {_one_line(e)}") from None
    defaults = _default_choices(config_root())
    for o in parsed:
        group = o.key_or_group
        if o.is_add() and group in defaults:  # Hydra would answer in a defaults list's syntax (`override ...`)
            raise FtoolError(f"{o.input_line}: the config's defaults already choose {group}; set it without "
                             f"the +: {o.input_line[1:]}")
        if o.is_delete() or o.is_interval_sweep():  # (interval: a search sweeper's range, no values to list)
            continue
        if isinstance(o.value(), Glob):  # glob(*) picks among a group's options, so they need no check
            if group.startswith("hydra/"):
                continue
            if group not in groups:
                raise FtoolError(f"{o.input_line}: glob() sweeps a config group's options, and {group} is no "
                                 f"group; list the values instead ({group}=a,b,c)")
            if not o.value().filter(groups[group]):
                raise FtoolError(f"{o.input_line}: matches none of the {group} options: {', '.join(groups[group])}")
            continue
        values = list(o.sweep_string_iterator()) if o.is_sweep_override() else None
        if values == []:
            raise FtoolError(f"{o.input_line}: gives no values, so the sweep would run no jobs")
        if group not in groups:
            continue
        if values is None:
            values = ([str(v) for v in o.value()] if isinstance(o.value(), list)  # a multi-select: logger=[a,b]
                      else [o.get_value_element_as_str()])
        for value in values:
            if value not in groups[group]:
                raise FtoolError(f"{group}={value}: no such {group}; options: {', '.join(groups[group])}."
                                 f"{close_matches_hint(value, groups[group])}")


def without_group_choices(overrides: list[str], groups: dict, command: str, run) -> list[str]:
    """A reused run's saved config has no groups left: there `data=cifar10` would set data to a word.
    The run's own choice, given again (its command repeated with trainer.resume=...), changes nothing
    and is dropped; another one is an error."""
    import yaml

    try:
        chosen = yaml.safe_load((run.config.parent / "hydra.yaml").read_text())["hydra"]["runtime"]["choices"]
    except (OSError, yaml.YAMLError, KeyError, TypeError):  # (a run dir without Hydra's record of its choices)
        chosen = {}
    kept = []
    for o in overrides:
        key, sep, value = o.partition("=")
        key = key.lstrip("+")
        if sep and key in groups and value != str(chosen.get(key)):
            # (loggers are keys of `logger`, each with its settings: one is added as a key)
            hint = (" ".join(f"+logger.{name.strip()}={{}}" for name in value.strip("[]").split(","))
                    if key == "logger" else f"{key}.<key>=...")
            raise FtoolError(f"{o}: {command} uses the config saved with the run ({run.config}), where a group's "
                             f"option cannot be swapped (the run's is {key}={chosen.get(key)}); set its keys instead "
                             f"({hint})")
        if not (sep and key in groups):
            kept.append(o)
    return kept


def check_settings_that_change_nothing(overrides: list[str], command: Command) -> None:
    """Settings a command that reuses a run would ignore, given on its command line: eval, predict and
    export run in one process (trainer.devices=2 ran one), and predict and export read inputs as the
    run read its data (input size, classes, scaling: from its summary.json), so a data setting would
    change nothing (data.image_size=[64,64] resized nothing)."""
    for o in overrides:
        key = o.lstrip("+~").partition("=")[0]
        if key in ("trainer.devices", "trainer.strategy"):
            raise FtoolError(f"{o}: {command.name} runs in one process, on one device (trainer.accelerator picks "
                             f"it); leave {key} out")
        if key.startswith("data.") and not command.reads_data:
            raise FtoolError(f"{o}: {command.name} reads its inputs as the run read its data (their size, classes "
                             f"and scaling are saved with it), so data settings change nothing here; leave them out")


def paths_from_where_it_ran(run, overrides: list[str]) -> list[str]:
    """Overrides that pin a reused run's relative paths (`data.root=imgs`) to the folder it ran in, so
    eval, predict, export and a resume work from any folder (the keys the command line sets stay)."""
    from ftool.rundir import relative_paths_resolved

    given = {o.partition("=")[0].lstrip("+~") for o in overrides}
    return [f"{key}={quoted(path)}" for key, path in relative_paths_resolved(run).items() if key not in given]


def user_config_dirs(flags: list[str]) -> list[Path]:
    """The folders given with --config-dir/-cd: the user's own config groups and options."""
    dirs = [Path(flags[i + 1]).expanduser().resolve() for i, f in enumerate(flags[:-1])
            if f in ("-cd", "--config-dir")]
    for d in dirs:
        if not d.is_dir():
            raise FtoolError(f"--config-dir: {d} is not a folder")
    return dirs


def primary_config(flags: list[str], config_dir: Path, user_dirs: list[Path]) -> tuple[str, Path]:
    """The config Hydra composes, and the folder it is in: ftool's `config`, or one of the user's own
    (--config-name/-cn, from a --config-dir folder; Hydra looks in ftool's own folder first)."""
    name = next((flags[i + 1] for i, f in enumerate(flags[:-1]) if f in _CONFIG_NAME_FLAGS), "config")
    name = name.removesuffix(".yaml")
    if not name:
        raise FtoolError("--config-name: give a config's name (its file's, without .yaml)")
    root = next((d for d in (config_dir, *user_dirs) if (d / f"{name}.yaml").is_file()), None)
    if root is None:
        there = sorted({p.stem for d in user_dirs for p in d.glob("*.yaml")} | {"config"})
        where = f"the --config-dir folders ({', '.join(map(str, user_dirs))})" if user_dirs else "ftool's configs"
        raise FtoolError(f"--config-name: no {name}.yaml in {where}; the configs there: {', '.join(there)}"
                         f"{'' if user_dirs else ' (give your own folder with --config-dir)'}")
    return name, root


def quoted(path) -> str:
    """A path as a Hydra override's value: quoted, as its grammar reserves , = [ ' and non-ASCII letters."""
    return "'" + str(path).replace("'", "\\'") + "'"


def is_multirun(flags: list[str]) -> bool:
    return "-m" in flags or "--multirun" in flags


def preflight(overrides: list[str], flags: list[str], config_dir: Path, command: Command):
    """Compose and validate as Hydra will, so bad input fails here in one line. Returns the
    validated RunConfig (None for sweeps and --cfg/--help) and Hydra's own composed settings (None
    with --cfg/--help). A sweep is checked without its swept values (each job checks its own, and a
    bad one fails that job only)."""
    multirun = is_multirun(flags)
    if multirun:
        from hydra.core.override_parser.overrides_parser import OverridesParser

        parsed = OverridesParser.create().parse_overrides(overrides)
        sweeps = [o for o in parsed if o.is_sweep_override()]
        overrides = [o.input_line for o in parsed if not o.is_sweep_override()]
    user_dirs = user_config_dirs(flags)
    primary, root = primary_config(flags, config_dir, user_dirs)
    searched = [d for d in (*user_dirs, config_dir) if d != root]  # (a user's own primary config is the root)
    if user_dirs:
        overrides = [*overrides, f"hydra.searchpath=[{','.join(f'file://{d}' for d in searched)}]"]
    import yaml
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import open_dict
    from omegaconf.errors import OmegaConfBaseException

    from ftool.config import GLOBAL_GROUPS, not_global, validate

    def composed(chosen: list[str]):
        with initialize_config_dir(str(root), version_base="1.3"):
            return compose(primary, overrides=chosen, return_hydra_config=True)

    try:
        cfg = composed(overrides)
        if multirun:  # a setting the config leaves to the user (data.path: ???) that a sweep gives: its first value
            from omegaconf import OmegaConf

            missing = {k for part, node in cfg.items() if part != "hydra" and OmegaConf.is_config(node)
                       for k in OmegaConf.missing_keys(node)}  # (hydra's own: interpolations of the job's)
            given = [f"{o.key_or_group}={next(o.sweep_string_iterator())}" for o in sweeps if o.key_or_group in missing]
            cfg = composed([*overrides, *given]) if given else cfg
    except yaml.YAMLError as e:  # a config file that is not YAML (the user's own, with --config-dir)
        raise FtoolError(f"config: {one_line(e)}") from None
    except (HydraException, OmegaConfBaseException) as e:
        unknown = re.match(r"Could not override '([^']+)'", str(e))
        if unknown and "not in struct" in str(e.__cause__):
            # Compose with only the group choices and Hydra's settings to list the keys that exist.
            groups = {d.name for folder in (config_dir, *user_dirs) for d in folder.iterdir() if d.is_dir()}
            choices = [o for o in overrides if o.startswith("hydra.") or o.split("=")[0].lstrip("+~") in groups]
            from ftool.key_hints import unknown_key

            raise FtoolError(unknown_key(unknown.group(1), composed(choices), [config_dir, *user_dirs],
                                         tuple(command.options), command.name)) from None
        group = re.match(rf"In '({'|'.join(GLOBAL_GROUPS)})/([^']+)': Could not override '\w+@\1\.", str(e))
        if group:  # (Hydra: "Could not override 'model@experiment.model'. Did you mean to override model?")
            raise FtoolError(not_global(group.group(1), f"{group.group(1)}/{group.group(2)}.yaml")) from None
        raise FtoolError(_one_line(e, e.__cause__)) from None
    if set(flags) & _NO_RUN_FLAGS:
        return None, None  # --cfg/--help answer for a config that composes, even one that does not validate
    hydra_cfg = cfg.hydra
    for group in set(GLOBAL_GROUPS) & set(cfg):  # its file lacks the package line
        raise FtoolError(not_global(group, f"{group}/{hydra_cfg.runtime.choices[group]}.yaml"))
    if hydra_cfg.job.chdir:  # relative paths (data.root=imgs) would name folders inside the new run's dir
        raise FtoolError("hydra.job.chdir=true: ftool runs in the folder it starts in, where relative paths "
                         "(data.root=imgs) are read, and writes every file of a run to its run directory itself; "
                         "leave hydra.job.chdir=false")
    with open_dict(cfg):
        del cfg["hydra"]  # (it stays resolvable: output dirs may name config values, runs/${model.name})
    rc = validate(cfg)
    if multirun:
        check_launcher(overrides)
        check_interval_sweeps(sweeps, hydra_cfg)
        check_search_direction(rc, hydra_cfg)
        return None, hydra_cfg
    check_search_has_multirun(hydra_cfg, command)
    return rc, hydra_cfg


def claim_output_dir(hydra_cfg, multirun: bool, resume_auto: bool) -> tuple[Path | None, list[str]]:
    """A new run (or sweep) gets a directory of its own, made here before Hydra writes to it. The
    timestamped default is taken with mkdir, which is atomic: a run started in the same second as
    another gets `<time>-2`. A directory named by the user may not hold another run's checkpoints
    (Hydra would overwrite its saved config, and ftool its results) unless trainer.resume=auto, whose
    config Hydra then saves aside until the resume goes ahead (settle_config).
    Returns the directory (None where only Hydra's job can resolve its name) and the overrides
    that give it to Hydra."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from ftool.rundir import PENDING_CONFIG, RunDir, check_not_training, claim_new_dir, holds_checkpoints

    key = "sweep" if multirun else "run"
    pattern = OmegaConf.to_container(hydra_cfg[key], resolve=False)["dir"]
    try:
        path = Path(OmegaConf.select(hydra_cfg, f"{key}.dir"))  # as Hydra takes it (no ~ expansion)
    except OmegaConfBaseException:  # a pattern only Hydra's job can resolve (${hydra:job.name}): left to Hydra
        return None, []
    try:
        if "${now:" in pattern:
            path = claim_new_dir(path)
            if resume_auto:  # a job script's resume=auto would start over after every crash, without a word
                from ftool.engine.progress import warn

                warn(f"trainer.resume=auto: hydra.{key}.dir is a new timestamped folder for every run, so there is "
                     f"never one to continue; name one (hydra.{key}.dir=runs/long) for a command that resumes "
                     f"when run again")
            return path, [f"hydra.{key}.dir={quoted(path)}"]
        runs = ([p for p in path.iterdir() if p.is_dir()] if path.is_dir() else []) if multirun else [path]
        for run in runs:  # (before Hydra writes its config there)
            check_not_training(RunDir(run))
        held = [p for p in runs if holds_checkpoints(p)]
        if held and not resume_auto:
            what = f"{len(held)} runs with checkpoints" if multirun else "a run with checkpoints"
            raise FtoolError(f"hydra.{key}.dir: {path} already holds {what}; trainer.resume=auto continues "
                             f"{'them' if multirun else 'it'}, or give another hydra.{key}.dir "
                             f"(or remove it to start over)")
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # a read-only disk, a path through a file: Hydra's own mkdir would be a traceback
        raise FtoolError(f"hydra.{key}.dir: cannot make {path} ({e.strerror or e})") from None
    return path, [f"hydra.output_subdir={PENDING_CONFIG}"] if held else []


def check_search_direction(rc, hydra_cfg) -> None:
    """A search (Optuna) optimizes what each job returns, the best value of trainer.monitor: a
    direction against the monitor's mode would look for the worst settings."""
    direction = hydra_cfg.sweeper.get("direction")
    if not isinstance(direction, str) or rc.trainer.monitor is None:
        return
    from ftool.metrics import monitor_mode

    mode = monitor_mode(rc.trainer.monitor, rc.trainer.mode)
    wanted = "maximize" if mode == "max" else "minimize"
    if direction != wanted:
        raise FtoolError(f"hydra.sweeper.direction={direction}, but trainer.monitor={rc.trainer.monitor} is better "
                         f"{'higher' if mode == 'max' else 'lower'}; set hydra.sweeper.direction={wanted}")


def check_interval_sweeps(sweeps: list, hydra_cfg) -> None:
    """interval() is a search sweeper's range (Optuna's); Hydra's basic sweeper, which lists values,
    stops on one with a traceback: say it in one line."""
    if not hydra_cfg.sweeper._target_.endswith(".BasicSweeper"):
        return
    for o in sweeps:
        if o.is_interval_sweep():
            raise FtoolError(f"{o.input_line}: interval() is a range for a search (hparams_search=..., Optuna); "
                             f"a grid sweep takes values: {o.key_or_group}=range(start,stop,step) or "
                             f"{o.key_or_group}=a,b,c")


def check_search_has_multirun(hydra_cfg, command: Command) -> None:
    """A search (Optuna) chosen without -m: Hydra would train one run of the config's values, silently."""
    if hydra_cfg.sweeper._target_.endswith(".BasicSweeper"):
        return
    choices = hydra_cfg.runtime.choices
    chosen = (f"hparams_search={choices['hparams_search']}" if choices.get("hparams_search")
              else f"hydra/sweeper={choices.get('hydra/sweeper')}")
    raise FtoolError(f"{chosen}: a search runs its trials as a sweep: ftool {command.name} -m {chosen} ...; "
                     f"without -m it would be one run of the config's values")


def check_launcher(overrides: list[str]) -> None:
    """Off a SLURM cluster, Hydra's SLURM launcher (submitit) fails with a traceback: say it in one line."""
    import shutil

    launcher = _override_value(overrides, "hydra/launcher")
    if launcher in ("slurm", "submitit_slurm") and shutil.which("srun") is None:
        raise FtoolError(f"hydra/launcher={launcher}: this machine has no SLURM (srun not found); start the sweep "
                         f"on the cluster's login node, or use hydra/launcher=local_parallel here")


def run_to_reuse(command: Command, options: dict, overrides: list[str]) -> str | None:
    """The run dir a command continues: eval's `ckpt`; train's `trainer.resume=<path>`."""
    if command.reuses_run:
        return options.get("ckpt")
    if command.trains:
        resume = _override_value(overrides, "trainer.resume")
        if resume not in (None, "auto", "null"):
            return resume
    return None


def _override_value(overrides: list[str], key: str) -> str | None:
    for o in reversed(overrides):
        k, sep, value = o.partition("=")
        if sep and k.lstrip("+") == key:
            return value
    return None


def requested_devices(rc, overrides: list[str]) -> int:
    """`trainer.devices` of a run (rc) or, for a sweep, of its command line (not sweepable)."""
    if rc is not None:
        return rc.trainer.devices
    value = _override_value(overrides, "trainer.devices") or "1"
    if not value.isdigit():
        raise FtoolError(f"trainer.devices: a sweep runs every job on the same processes; give one number, "
                         f"got {value!r}")
    return int(value)


def launch_processes(devices: int, args: list[str]) -> int:
    """`trainer.devices=N`: run this same command in N processes through torch.distributed.run
    (torchrun), which sets RANK/WORLD_SIZE for each; returns its exit code."""
    import subprocess

    cmd = [sys.executable, "-m", "ftool.engine.launch", "--standalone", f"--nproc_per_node={devices}",
           "-m", "ftool", *args]
    # torchrun would give each process one CPU thread (and print a banner saying so): share the cores.
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    env = {"OMP_NUM_THREADS": str(max(1, cores // devices)), **os.environ}
    threads = int(env["OMP_NUM_THREADS"])
    print(f"ftool: starting {devices} processes ({threads} CPU thread{'s' if threads > 1 else ''} each): torchrun "
          f"--standalone --nproc_per_node={devices} -m ftool {' '.join(args)}", file=sys.stderr)
    try:
        return subprocess.run(cmd, env=env).returncode
    except KeyboardInterrupt:  # torchrun forwards the signal and the ranks save a checkpoint
        return 130


def secondary_rank_dirs() -> tuple[list[str], str | None]:
    """Under torchrun, ranks other than 0 give Hydra a throwaway output dir: rank 0's run dir is the
    run's only one (its path is broadcast), so no duplicate or half-written run dirs appear."""
    from ftool.rundir import is_main_process

    if is_main_process():
        return [], None
    import tempfile

    tmp = tempfile.mkdtemp(prefix=f"ftool-rank{os.environ['RANK']}-")
    return [f"hydra.run.dir={quoted(tmp)}", f"hydra.sweep.dir={quoted(tmp)}", "hydra.output_subdir=null",
            "hydra/hydra_logging=none"], tmp


def _one_line(*errors) -> str:
    return "; ".join(one_line(e) for e in errors if e is not None)


def run_hydra(command: Command, options: dict, flags: list[str], overrides: list[str],
              config_dir: Path, extra: list[str], sweep_dir: Path | None = None) -> int:
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.types import RunMode

    from ftool.rundir import check_rerun_job, is_main_process

    failed: list[str] = []
    swept = ({o.key_or_group for o in OverridesParser.create().parse_overrides(overrides) if o.is_sweep_override()}
             if is_multirun(flags) else set())  # (with the sweeper's own params: a rerun's jobs are checked by them)

    @hydra.main(version_base="1.3", config_path=str(config_dir), config_name="config")
    def task(cfg):
        hc = HydraConfig.get()
        if command.trains and hc.mode == RunMode.MULTIRUN:
            try:
                check_rerun_job(Path(hc.runtime.output_dir), list(hc.overrides.task),
                                swept | set(hc.sweeper.get("params") or {}))
            except FtoolError as e:  # the folder holds another sweep: the whole sweep stops
                if is_main_process():
                    report_error(e)
                raise SystemExit(e.exit_code) from None
        try:
            with machine_errors():  # (imported here: --cfg, --info and Hydra's help run no job and need no torch)
                module = importlib.import_module(command.module)
                return module.run(cfg, Path(hc.runtime.output_dir), **options)
        except RunInterrupted as e:  # Ctrl-C / SIGTERM stops a sweep too
            print(f"ftool: {e}", file=sys.stderr)
            raise SystemExit(e.exit_code) from None
        except FtoolError as e:
            if os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            if is_main_process():  # every process meets the same mistake: one says it
                report_error(e)
            if hc.mode != RunMode.MULTIRUN:
                raise SystemExit(e.exit_code) from None
            failed.append(hc.runtime.output_dir)  # a failed job is marked in its summary.json
            return None

    sys.argv = [f"ftool {command.name}", *flags, *overrides, *extra]
    started = time.time()
    try:
        task()
    except ValueError as e:  # Hydra's check of its own flags (-m with --cfg, ...), before any job
        raise FtoolError(str(e)) from None
    if sweep_dir is not None:  # jobs that a launcher ran in other processes (joblib, SLURM) fail unseen by `task`
        from ftool.commands.report import sweep_summary
        from ftool.rundir import failed_jobs

        failed = [str(job.path.absolute()) for job in failed_jobs(sweep_dir, started)]
        try:
            summary = sweep_summary(sweep_dir) if is_main_process() else None
        except FtoolError:  # a job's summary.json that cannot be read: the line is a courtesy, not the result
            summary = None
        if summary:
            print(summary)
    if failed:
        if is_main_process():  # (the other processes' job dirs are temporary)
            print(f"ftool: {len(failed)} job(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def run_plain(command: Command, args: list[str]) -> int:
    """A command without a config (report): its arguments are folders, not overrides, and its
    options (`out=...`)."""
    if any(a in ("-h", "--help") for a in args):
        print(f"usage: ftool {command.name} <dir> [<dir> ...] [out=<dir>]\n\n{command.summary}")
        return 0
    options = dict(a.split("=", 1) for a in args if a.split("=", 1)[0] in command.options)
    with machine_errors():
        importlib.import_module(command.module).run([a for a in args if a.split("=", 1)[0] not in options], **options)
    return 0


def report_error(e: Exception) -> None:
    for line in str(e).splitlines() or [type(e).__name__]:
        print(f"ftool: error: {line}", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if "--debug" in args:
        args.remove("--debug")
        os.environ["HYDRA_FULL_ERROR"] = "1"
    debug = os.environ.get("HYDRA_FULL_ERROR") == "1"
    if not args or args[0] in ("-h", "--help", "help"):
        print_help()
        return
    if args[0] in ("-V", "--version"):
        print(f"ftool {__version__}")
        return
    name, rest = args[0], args[1:]
    try:
        if {"-sc", "--shell-completion"} & set(args):  # tab completion, for any command: before one is typed
            from ftool.completion import shell_completion

            sys.exit(shell_completion(args))
        if name not in COMMANDS:
            from ftool.registry import close_matches_hint

            raise FtoolError(f"unknown command '{name}'; commands: {', '.join(COMMANDS)}."
                             f"{close_matches_hint(name, list(COMMANDS))}")
        command = COMMANDS[name]
        if not command.hydra:
            sys.exit(run_plain(command, rest))
        options, flags, overrides = split_args(rest, command)
        if set(flags) & {"-h", "--help"}:  # Hydra's help shows the config; first, what the command does
            print(f"ftool {name}: {command.summary}\n")
        if command.reuses_run and is_multirun(flags):  # (eval's jobs each replaced eval.json; all left sweep folders)
            raise FtoolError(f"{name} -m: sweeps are for training; {name} takes one run: run it once per setting")
        config_dir, extra = config_root(), [f"hydra.job.name={name}"]
        reused = run_to_reuse(command, options, overrides)
        if reused:
            from ftool.rundir import PENDING_CONFIG, check_not_training, locate_checkpoint, locate_run, where_it_ran

            run = locate_checkpoint(reused)[0] if command.reuses_run else locate_run(reused, "trainer.resume")
            if command.trains:  # (before Hydra writes the resume's config there)
                check_not_training(run)
            elsewhere = _override_value(overrides, "hydra.run.dir")
            if command.trains and elsewhere and Path(elsewhere.strip("'\"")).resolve() != run.path.resolve():
                raise FtoolError(f"hydra.run.dir: a resume continues the run in its own folder ({run.path}); to "
                                 f"train on from its weights in another, ftool finetune finetune.from={reused} "
                                 f"hydra.run.dir={elsewhere}")
            if command.trains and is_multirun(flags):  # its jobs would each look for a checkpoint in their own folder
                raise FtoolError(f"trainer.resume={reused}: a sweep's jobs are new runs and a resume continues one; "
                                 f"to start each job from its weights, ftool finetune -m finetune.from={reused} ...")
            ran_in = where_it_ran(run)
            if ran_in:  # the modules its `imports` names may live in the folder it ran in
                sys.path.append(str(ran_in))
            config_dir = run.config.parent  # the run's own composed config; overrides apply on top
            flags = [f for i, f in enumerate(flags)  # (so --config-name, which it was composed from, is done)
                     if f not in _CONFIG_NAME_FLAGS and (i == 0 or flags[i - 1] not in _CONFIG_NAME_FLAGS)]
            overrides = without_group_choices(overrides, config_groups(config_root()), command.name, run)
            if not command.trains:
                check_settings_that_change_nothing(overrides, command)
            saves = PENDING_CONFIG if command.trains else "null"  # (a resume's config: see settle_config)
            extra += [f"hydra.run.dir={quoted(run.path)}", f"hydra.output_subdir={saves}", "hydra/job_logging=none",
                      *paths_from_where_it_ran(run, overrides)]
        else:
            groups = config_groups(config_dir)
            for user_dir in user_config_dirs(flags):
                for group, choices in config_groups(user_dir).items():
                    groups[group] = sorted(set(groups.get(group, [])) | set(choices))
            check_group_choices(overrides, groups)
        rc, hydra_cfg = preflight(overrides, flags, config_dir, command)
        if command.trains and "WORLD_SIZE" not in os.environ and not set(flags) & _NO_RUN_FLAGS:
            devices = requested_devices(rc, overrides)
            if devices > 1:
                if rc is not None:  # a sweep's jobs check their own settings
                    from ftool.data.loaders import check_batch_split
                    from ftool.engine.accelerator import check

                    check(rc.trainer, devices, warns=False)
                    check_batch_split(rc.data.batch_size, devices)
                sys.exit(launch_processes(devices, args))
        rank_extra, tmp = secondary_rank_dirs()
        output_dir = None
        if hydra_cfg is not None and command.trains and not reused and not tmp:  # a new run, on rank 0
            output_dir, claimed = claim_output_dir(hydra_cfg, is_multirun(flags),
                                                   _override_value(overrides, "trainer.resume") == "auto")
            extra += claimed
        sweep_dir = output_dir if is_multirun(flags) else None
        try:
            code = run_hydra(command, options, flags, overrides, config_dir, extra + rank_extra, sweep_dir)
        finally:
            if tmp:
                import shutil

                shutil.rmtree(tmp, ignore_errors=True)
    except FtoolError as e:
        if debug:
            raise
        report_error(e)
        code = e.exit_code
    except KeyboardInterrupt:  # Ctrl-C while starting up, or a second one, which stops at once
        if debug:
            raise
        print("ftool: interrupted", file=sys.stderr)
        code = 130
    sys.exit(code)
