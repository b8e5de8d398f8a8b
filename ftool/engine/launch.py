"""`trainer.devices=N`: torchrun's launcher (torch.distributed.run), which `ftool` starts in a process
of its own. A failed ftool process has said why in one line (`ftool: error: ...`); torchrun's own
traceback and failure table would bury that line, so they are left out, and the exit status is the
failed process's. A process killed by a signal (out of memory, say) said nothing: it gets one line here."""

from __future__ import annotations

import logging
import sys

from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.run import parse_args, run


def main(argv: list[str]) -> int:
    # Its "failed (exitcode: N) local_rank: ..." line, which the failed process's own line replaces.
    logging.getLogger("torch.distributed.elastic.multiprocessing.api").setLevel(logging.CRITICAL)
    try:
        run(parse_args(argv))
    except ChildFailedError as e:
        rank, failure = e.get_first_failure()
        if failure.exitcode < 0:
            likely = " (out of memory, most often)" if failure.signal_name() == "SIGKILL" else ""
            print(f"ftool: error: process {rank} was killed by {failure.signal_name()}{likely}", file=sys.stderr)
            return 1
        return failure.exitcode
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
