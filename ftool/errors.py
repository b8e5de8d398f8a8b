"""Errors a user can cause: the CLI prints them as one line and exits non-zero, no traceback."""

import contextlib
import errno
import re


class FtoolError(Exception):
    """A mistake in the user's input (config, option, path); the message says what to do."""

    exit_code = 2

    def __init__(self, message: str):
        # One raised in a DataLoader worker comes back as FtoolError(<its traceback>): keep its message.
        if message.startswith("Caught FtoolError in DataLoader worker"):
            message = message.rstrip().rsplit("FtoolError: ", 1)[-1]
        super().__init__(message)


class TooFewToSplit(FtoolError):
    """Data too small for its held-out splits: for `eval` of new data, split=all is the answer."""


class MachineError(FtoolError):
    """The machine refused, not ftool or its input: a full or read-only disk, a missing permission."""

    exit_code = 1
    errnos = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO}


@contextlib.contextmanager
def machine_errors():
    """The machine's refusals as a MachineError: one line, as plain as a user's mistake. They are
    OSErrors with one of MachineError.errnos, and running out of memory (torch's OutOfMemoryError on
    a GPU, its allocator's RuntimeError on a CPU); any other error stays as it is (a bug's traceback)."""
    try:
        yield
    except OSError as e:
        if e.errno not in MachineError.errnos:
            raise
        raise MachineError(f"{e.strerror}: {e.filename}" if e.filename else one_line(e)) from e
    except RuntimeError as e:  # (torch.OutOfMemoryError is one; matched by name: this module imports no torch)
        if type(e).__name__ != "OutOfMemoryError" and "can't allocate memory" not in str(e):
            raise
        asked = re.search(r"allocate (\d+) bytes", str(e))
        what = f"{int(asked[1]) / 1e9:,.1f} GB asked for" if asked else one_line(e, limit=200)
        raise MachineError(f"out of memory ({what}); a smaller data.batch_size (trainer.accumulate_grad_batches "
                           f"keeps the batch an optimizer step sees), smaller inputs (data.image_size, "
                           f"data.max_length) or a smaller model needs less") from e


class RunInterrupted(Exception):
    """Ctrl-C or SIGTERM stopped a run after it saved a checkpoint; the CLI exits 130."""

    exit_code = 130


def one_line(e: BaseException, limit: int = 300) -> str:
    """Another library's exception quoted in one line (an FtoolError's lines print as one
    `ftool: error:` each): its message's lines joined, without OmegaConf's full_key/object_type
    detail lines or Hydra's config search path, cut at `limit` characters; its type if it says nothing."""
    lines = [ln.strip() for ln in str(e).split("Config search path:")[0].splitlines() if ln.strip()]
    kept = [ln for ln in lines if not ln.startswith(("full_key:", "object_type=", "reference_type="))]
    text = kept[0] if kept else type(e).__name__
    for ln in kept[1:]:
        text += (" " if text.endswith(":") else "; ") + ln  # "Tried:" runs on into what it lists
    return text if len(text) <= limit else text[:limit - 3].rstrip() + "..."
