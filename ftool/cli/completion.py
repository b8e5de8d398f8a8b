"""Tab completion: `eval "$(ftool -sc install=bash)"` (zsh and fish too). Hydra's scripts do the work,
registered for `ftool`; ftool answers their queries with the command first, then what Hydra completes
after it (config groups, options, keys), or the command's own options."""

from __future__ import annotations

import os
import sys

from ftool.cli.args import config_root
from ftool.commands import COMMANDS


def shell_completion(args: list[str]) -> int:
    """`args`: ftool's arguments holding -sc and install=, uninstall= or query=<shell>."""
    request = next((a for a in args if a.partition("=")[0] in ("install", "uninstall", "query")), "install=bash")
    if request.startswith("query="):
        line = os.environ.get("COMP_LINE", "ftool ")
        words = line.split()
        if len(words) < 2 or (len(words) == 2 and not line.endswith(" ")):  # the command is being typed
            print(" ".join(COMMANDS))
            return 0
        command = COMMANDS.get(words[1])
        if command is None:
            return 0
        if command.reuses_run or not command.hydra:
            print(" ".join(f"{option}=" for option in command.options))
            return 0
        os.environ["COMP_LINE"] = "ftool" + line[line.index(words[1]) + len(words[1]):]
    import hydra

    @hydra.main(version_base="1.3", config_path=str(config_root()), config_name="config")
    def app(cfg) -> None:  # never runs: Hydra answers -sc itself
        pass

    sys.argv = ["ftool", "-sc", request]
    app()
    return 0
