"""Tab completion: `eval "$(ftool -sc install=bash)"` (zsh and fish too).

Hydra's own scripts do the work, but they take the program for a one-command Hydra app: ftool
registers them for `ftool` and answers their queries itself, with the command first, then what
Hydra completes after it (config groups, their options, keys) or the command's own options.
"""

from __future__ import annotations

import glob
import os
import sys

from ftool.commands import COMMANDS
from ftool.errors import FtoolError

_ACTIONS = ("install", "uninstall", "query")
_SHELLS = ("bash", "zsh", "fish")  # Hydra's completion plugins


def shell_completion(args: list[str]) -> int:
    """`args`: ftool's arguments holding -sc (or --shell-completion) and install=<shell>,
    uninstall=<shell> or query=<shell>."""
    request = next((a for a in args if a.partition("=")[0] in _ACTIONS), "")
    if request.partition("=")[2] not in _SHELLS:
        raise FtoolError(f"-sc needs install=, uninstall= or query= with bash, zsh or fish, got {request or 'none'} "
                         "(in ~/.bashrc: eval \"$(ftool -sc install=bash)\")")
    if request.startswith("query="):
        line = os.environ.get("COMP_LINE", "ftool ")
        words = line.split()
        if len(words) < 2 or (len(words) == 2 and not line.endswith(" ")):  # the command is being typed
            print(" ".join(COMMANDS))
            return 0
        command = COMMANDS.get(words[1])
        if command is None:
            return 0
        if command.reuses_run or not command.hydra:  # eval ckpt=...; report: folders, the shell's own completion
            key, typed_value, value = ("" if line.endswith(" ") else words[-1]).partition("=")
            if typed_value and key in command.options:  # ckpt=runs/m<Tab>: the files and folders there
                print(" ".join(f"{key}={path}" for path in _paths(value)))
            else:
                print(" ".join(f"{option}=" for option in command.options))
            return 0
        # Hydra completes a line of overrides after the program's name: the command's word goes.
        os.environ["COMP_LINE"] = "ftool" + line[line.index(words[1]) + len(words[1]):]
    return _hydra_completion(request)


def _paths(prefix: str) -> list[str]:
    """The files and folders whose path starts with `prefix`; a folder's ends in / (Tab goes on into it)."""
    return sorted(path + "/" if os.path.isdir(path) else path for path in glob.glob(glob.escape(prefix) + "*"))


def _hydra_completion(request: str) -> int:
    import hydra

    from ftool.cli import config_root

    @hydra.main(version_base="1.3", config_path=str(config_root()), config_name="config")
    def app(cfg) -> None:  # never runs: Hydra answers -sc itself
        pass

    sys.argv = ["ftool", "-sc", request]  # the scripts name the program after argv[0]
    app()
    return 0
