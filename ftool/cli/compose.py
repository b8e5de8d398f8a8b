"""Hydra's part of the command line: compose the config once (its errors as one line naming the option
or key meant), make the run directory and Hydra's record in it; Hydra's own runs for sweeps and for
its --cfg, --info and --help; and a reused run's record with the command line's overrides on top."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from ftool.cli.args import config_groups, config_root, flag_value
from ftool.errors import ConfigError, one_line
from ftool.registry import close_match
from ftool.rundir import claim_new_dir, holds_checkpoints


def config_dirs(flags: list[str]) -> tuple[str, Path, list[Path]]:
    """(the primary config's name, the folder it is in, the user's --config-dir folders)."""
    user = [Path(d).expanduser().resolve() for d in flag_value(flags, "-cd", "--config-dir")]
    name = (flag_value(flags, "-cn", "--config-name") or ["config"])[-1].removesuffix(".yaml")
    root = next((d for d in (config_root(), *user) if (d / f"{name}.yaml").is_file()), None)
    if root is None:
        raise ConfigError(f"--config-name: no {name}.yaml in {', '.join(map(str, [config_root(), *user]))}")
    return name, root, user


def compose(overrides: list[str], flags: list[str]) -> tuple[DictConfig, DictConfig]:
    """(the config, Hydra's settings), composed as Hydra composes a run's; a mistake is a ConfigError."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import ConfigCompositionException, HydraException, MissingConfigException
    from omegaconf.errors import OmegaConfBaseException

    name, root, user = config_dirs(flags)
    searched = [d for d in (*user, config_root()) if d != root]
    extra = [f"hydra.searchpath=[{','.join(f'file://{d}' for d in searched)}]"] if user else []

    def composed(chosen):
        with initialize_config_dir(str(root), version_base="1.3"):
            return hydra_compose(name, overrides=chosen + extra, return_hydra_config=True)

    try:
        cfg = composed(overrides)
    except MissingConfigException as e:
        group, _, option = (e.missing_cfg_file or "").rpartition("/")
        # (an option in a list, `callbacks=[a,b]`, comes without Hydra's list of options)
        options = e.options or sorted({o for d in (root, *user) for o in config_groups(d).get(group, [])})
        if not options:
            raise ConfigError(one_line(e)) from None
        raise ConfigError(f"{group}={option}: no such {group}; options: {', '.join(options)}."
                          f"{close_match(option, options)}") from None
    except ConfigCompositionException as e:
        key = getattr(e.__cause__, "full_key", None)
        if not key:
            raise ConfigError(one_line(e)) from None
        groups = {*config_groups(root), *(g for d in user for g in config_groups(d))}
        chosen = [o for o in overrides if o.partition("=")[0].lstrip("+~") in groups or o.startswith("hydra")]
        raise ConfigError(unknown_key(str(key), composed(chosen))) from None
    except (HydraException, OmegaConfBaseException) as e:
        raise ConfigError(one_line(e)) from None
    hydra_cfg = cfg.hydra
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg, hydra_cfg


def unknown_key(key: str, cfg: DictConfig) -> str:
    """'trainer.epoch: no such key; trainer has epochs, ... Did you mean 'epochs'?'"""
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    keys = [str(k) for k in node if parent or k != "hydra"] if isinstance(node, DictConfig) else []
    elsewhere = [f"{g}.{leaf}" for g, sub in cfg.items() if g not in (parent, "hydra") and isinstance(sub, DictConfig)
                 and leaf in sub]  # epochs=3 meant for trainer
    hint = f" Did you mean '{elsewhere[0]}'?" if elsewhere else close_match(leaf, keys)
    return f"{key}: no such key; {parent or 'the config'} has {', '.join(keys)}.{hint}"


def claim_dir(node: DictConfig, resume) -> Path:
    """A run's (or sweep's) directory (`node`: hydra.run or hydra.sweep), made here: a timestamped one with
    mkdir, which is atomic (a run started in the same second as another gets `<time>-2`); a named one may
    not hold another run's checkpoints unless trainer.resume continues it (else they would be overwritten)."""
    path = Path(node.dir)
    if "${now:" in OmegaConf.to_container(node, resolve=False)["dir"]:
        return claim_new_dir(path)
    check_new_run(path, resume)
    path.mkdir(parents=True, exist_ok=True)
    return path


def check_new_run(path: Path, resume: str | None) -> None:
    if holds_checkpoints(path) and not resume:
        raise ConfigError(f"hydra.run.dir: {path} holds a run with checkpoints; trainer.resume=auto continues it, "
                          f"or give another hydra.run.dir (or remove it to start over)")


def write_hydra_record(run_dir: Path, cfg: DictConfig, hydra_cfg: DictConfig, overrides: list[str]) -> None:
    """.hydra/ as Hydra writes it for a run: config.yaml, hydra.yaml, overrides.yaml."""
    folder = run_dir / (hydra_cfg.output_subdir or ".hydra")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    (folder / "hydra.yaml").write_text(OmegaConf.to_yaml({"hydra": hydra_cfg}))
    (folder / "overrides.yaml").write_text(OmegaConf.to_yaml(list(overrides)))


def run_hydra(command_name: str, flags: list[str], overrides: list[str], task) -> None:
    """Hydra's own run of `task(cfg)`: each job of a sweep (-m), or nothing for --cfg/--info/--help."""
    import hydra

    name, root, _ = config_dirs(flags)

    @hydra.main(version_base="1.3", config_path=str(root), config_name=name)
    def app(cfg):
        return task(cfg)

    import sys

    sys.argv = [f"ftool {command_name}", *flags, *overrides]
    app()


def with_overrides(config: dict, overrides: list[str]) -> dict:
    """A reused run's config with the command line's `key=value` on top. Its groups are chosen for good:
    `data=cifar10` would set data to a word."""
    groups = config_groups(config_root())
    cfg = OmegaConf.create(config)
    for o in overrides:
        key, _, value = o.partition("=")
        key = key.lstrip("+")
        if key in groups:
            raise ConfigError(f"{o}: the run's config has its {key} chosen; set its keys instead ({key}.<key>=...)")
        if key.startswith("~"):
            OmegaConf.update(cfg, key[1:], None, force_add=True)
            continue
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist([f"{key}={value}"]))
    return OmegaConf.to_container(cfg)
