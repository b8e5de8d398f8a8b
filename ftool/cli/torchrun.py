"""`trainer.devices=N`: torchrun's launcher (torch.distributed.run), in a process of its own. A failed ftool
process has said why in one line; torchrun's traceback and failure table would bury it, so they are left
out and the exit status is the failed process's. A process killed by a signal gets one line here."""

from __future__ import annotations

import logging
import sys

from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.run import parse_args, run


def main(argv: list[str]) -> int:
    logging.getLogger("torch.distributed.elastic.multiprocessing.api").setLevel(logging.CRITICAL)
    try:
        run(parse_args(argv))
    except ChildFailedError as e:
        rank, failure = e.get_first_failure()
        if failure.exitcode < 0:
            print(f"ftool: error: process {rank} was killed by {failure.signal_name()}", file=sys.stderr)
            return 1
        return failure.exitcode
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
