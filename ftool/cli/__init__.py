"""`ftool <command> [options] [Hydra overrides]`.

argv -> command -> the config, composed once (a reused run's: its record, with the overrides on top) ->
validated once (ftool.config) -> handed to the command. A mistake in the input is one line, as is any
library's error (`ftool: error: <what failed>: <its message>`; --debug shows the traceback). Sweeps (-m)
and Hydra's own --cfg/--info/--help run through Hydra's app, which composes each job.
`ftool --help` reads the config folder only: it imports neither Hydra nor torch.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

from ftool import __version__
from ftool.cli.args import NO_RUN_FLAGS, is_multirun, override_value, print_help, split_args
from ftool.commands import COMMANDS, Command
from ftool.errors import FtoolError, RunInterrupted, doing, report


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("HYDRA_FULL_ERROR") == "1"
    args = [a for a in args if a != "--debug"]
    if not args or args[0] in ("-h", "--help", "help"):
        return print_help()
    if args[0] in ("-V", "--version"):
        return print(f"ftool {__version__}")
    try:
        with doing(args[0]):
            code = dispatch(args[0], args[1:], debug)
    except KeyboardInterrupt:  # Ctrl-C while starting up, or a second one, which stops at once
        if debug:
            raise
        print("ftool: interrupted", file=sys.stderr)
        code = 130
    except RunInterrupted as e:
        print(f"ftool: {e}", file=sys.stderr)
        code = e.exit_code
    except Exception as e:
        if debug:
            raise
        say_error(e)
        code = getattr(e, "exit_code", 1)
    sys.exit(code)


def say_error(e: Exception) -> None:
    from ftool.rundir import is_main_process

    if is_main_process():  # every process meets the same mistake: one says it
        for line in report(e).splitlines() or [type(e).__name__]:
            print(f"ftool: error: {line}", file=sys.stderr)


def dispatch(name: str, rest: list[str], debug: bool) -> int:
    if {"-sc", "--shell-completion"} & set(rest) or name in ("-sc", "--shell-completion"):
        from ftool.cli.completion import shell_completion

        return shell_completion([name, *rest])
    if name not in COMMANDS:
        from ftool.registry import close_match

        raise FtoolError(f"unknown command '{name}'; commands: {', '.join(COMMANDS)}.{close_match(name, COMMANDS)}")
    command = COMMANDS[name]
    if not command.hydra:
        if {"-h", "--help"} & set(rest):
            return print(f"usage: ftool {name} <dir> [<dir> ...] [out=<dir>]\n\n{command.summary}") or 0
        options = dict(a.split("=", 1) for a in rest if a.split("=", 1)[0] in command.options)
        importlib.import_module(command.module).run([a for a in rest if a.split("=", 1)[0] not in options], **options)
        return 0
    options, flags, overrides = split_args(rest, command)
    if set(flags) & NO_RUN_FLAGS:
        from ftool.cli.compose import compose, run_hydra

        if {"-h", "--help"} & set(flags):
            print(f"ftool {name}: {command.summary}\n")
        else:
            compose(overrides, flags)  # (a mistake as ftool's one line, not Hydra's paragraph)
        run_hydra(name, flags, overrides, lambda cfg: None)
        return 0
    if command.reuses_run:
        return _reused(command, options, overrides)
    resume = override_value(overrides, "trainer.resume")
    if resume not in (None, "auto", "null"):
        return _resumed(command, resume, overrides, flags, [name, *rest])
    if is_multirun(flags):
        return _sweep(command, flags, overrides, debug, [name, *rest])
    return _train(command, flags, overrides, [name, *rest])


def _reused(command: Command, options: dict, overrides: list[str]) -> int:
    """eval, predict, export: the run's model, rebuilt from its record with the overrides on top (validated)
    and loaded from the checkpoint `ckpt` names, to the command."""
    from ftool.cli.compose import with_overrides
    from ftool.components import load_trained
    from ftool.config import validate
    from ftool.rundir import locate_checkpoint

    run, weights = locate_checkpoint(options.pop("ckpt"))
    record = run.record()
    rc = validate(with_overrides(record["config"], overrides))
    importlib.import_module(command.module).run(load_trained(run, weights, rc, record), **options)
    return 0


def _resumed(command: Command, resume: str, overrides: list[str], flags: list[str], argv: list[str]) -> int:
    """trainer.resume=<run dir or checkpoint>: the run's record, with the overrides on top, trained on in its
    own directory."""
    from ftool.cli.compose import with_overrides
    from ftool.config import validate
    from ftool.rundir import RunDir

    path = Path(resume).expanduser().resolve()
    run = RunDir(path.parent.parent if path.is_file() else path)
    if is_multirun(flags):
        raise FtoolError("trainer.resume=<path>: a sweep's jobs are new runs; finetune.from=<path> starts each from it")
    rc = validate(with_overrides(run.record()["config"], overrides))
    if rc.trainer.devices > 1 and "WORLD_SIZE" not in os.environ:
        return _launch(rc.trainer.devices, argv)
    return _trained(command, rc, run.path)


def _train(command: Command, flags: list[str], overrides: list[str], argv: list[str]) -> int:
    from ftool.cli.compose import claim_dir, compose, write_hydra_record
    from ftool.config import validate
    from ftool.rundir import is_main_process

    cfg, hydra_cfg = compose(overrides, flags)
    if not hydra_cfg.sweeper._target_.endswith(".BasicSweeper"):  # else one run of the config's values, silently
        raise FtoolError(f"hydra/sweeper={hydra_cfg.runtime.choices.get('hydra/sweeper')}: a search runs its trials "
                         f"as a sweep: ftool {command.name} -m ...")
    rc = validate(cfg)
    if rc.trainer.devices > 1 and "WORLD_SIZE" not in os.environ:  # (each process makes the run dir: rank 0's)
        return _launch(rc.trainer.devices, argv)
    run_dir = Path(hydra_cfg.run.dir)
    if is_main_process():
        run_dir = claim_dir(hydra_cfg.run, rc.trainer.resume)
        write_hydra_record(run_dir, cfg, hydra_cfg, overrides)
    return _trained(command, rc, run_dir)


def _trained(command: Command, rc, run_dir: Path) -> int:
    from ftool.commands import train

    train.run(rc, run_dir, command.name)
    return 0


def _launch(devices: int, argv: list[str]) -> int:
    """trainer.devices=N: this same command in N processes through torchrun, which sets RANK and WORLD_SIZE."""
    import subprocess

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    env = {"OMP_NUM_THREADS": str(max(1, cores // devices)), **os.environ}  # (torchrun would give each one thread)
    cmd = [sys.executable, "-m", "ftool.cli.torchrun", "--standalone", f"--nproc_per_node={devices}", "-m", "ftool",
           *argv]
    print(f"ftool: starting {devices} processes: torchrun --standalone --nproc_per_node={devices} -m ftool "
          f"{' '.join(argv)}", file=sys.stderr)
    try:
        return subprocess.run(cmd, env=env).returncode
    except KeyboardInterrupt:  # torchrun forwards the signal, and the processes save a checkpoint
        return 130


def _sweep(command: Command, flags: list[str], overrides: list[str], debug: bool, argv: list[str]) -> int:
    """-m: Hydra's sweeper and launcher run the jobs; each is validated and trained in its own folder. A
    failed job is marked failed in its summary.json and the others go on. The sweep's folder is made
    first (Hydra's settings composed without the swept values, whose mistakes are one line here)."""
    import tempfile
    import time

    from hydra.core.override_parser.overrides_parser import OverridesParser

    from ftool.cli.args import quoted
    from ftool.cli.compose import claim_dir, compose, run_hydra
    from ftool.rundir import is_main_process

    plain = [o.input_line for o in OverridesParser.create().parse_overrides(overrides) if not o.is_sweep_override()]
    cfg, hydra_cfg = compose(plain, flags)
    if cfg.trainer.devices > 1 and "WORLD_SIZE" not in os.environ:  # every process runs the sweep, each job DDP
        return _launch(cfg.trainer.devices, argv)
    # (other processes than the first write into a folder of their own; their jobs train in the first's)
    sweep_dir = claim_dir(hydra_cfg.sweep, resume=True) if is_main_process() else Path(tempfile.mkdtemp())
    started, full_error = time.time(), os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra's own errors reach ftool's one line
    try:
        run_hydra(command.name, flags, [*overrides, f"hydra.sweep.dir={quoted(sweep_dir)}"],
                  lambda cfg: _job(command, cfg, debug))
    finally:
        os.environ.pop("HYDRA_FULL_ERROR") if full_error is None else None
    return _sweep_ended(sweep_dir, started)


def _job(command: Command, cfg, debug: bool):
    from hydra.core.hydra_config import HydraConfig

    from ftool.cli.compose import check_new_run
    from ftool.commands import train
    from ftool.config import validate
    from ftool.engine.atomic import atomic_write_json
    from ftool.rundir import RunDir, is_main_process

    output = Path(HydraConfig.get().runtime.output_dir)
    try:
        rc = validate(cfg)
        check_new_run(output, rc.trainer.resume)
        return train.run(rc, output, command.name)
    except (RunInterrupted, KeyboardInterrupt):
        raise
    except Exception as e:
        if debug:
            raise
        say_error(e)
        if is_main_process() and not RunDir(output).summary.is_file():
            atomic_write_json(RunDir(output).summary, {"command": command.name, "status": "failed", "error": report(e)})
        return None


def _sweep_ended(sweep_dir: Path | None, started: float) -> int:
    """The sweep's closing line, and its failed jobs (read from their summary.json, as a launcher may run
    them in other processes)."""
    from ftool.commands.report import sweep_summary
    from ftool.rundir import is_main_process, read_json, sweep_jobs

    if sweep_dir is None or not is_main_process():
        return 0
    failed = [str(job.path) for job in sweep_jobs(sweep_dir) if job.summary.stat().st_mtime >= started - 2
              and (read_json(job.summary) or {}).get("status") == "failed"]
    line = sweep_summary(sweep_dir)
    if line:
        print(line)
    if failed:
        print(f"ftool: {len(failed)} job(s) failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0
