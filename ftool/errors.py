"""What the CLI reports: a user's mistake (FtoolError: its own line, exit status 2) or another library's
error, passed through as one line that says what ftool was doing (`doing`)."""

from __future__ import annotations

import contextlib


class FtoolError(Exception):
    """A mistake in the user's input (config, option, path); the message says what to do."""

    exit_code = 2


class ConfigError(FtoolError):
    """A config that breaks the documented contract: every problem it has, a line each."""


class RunInterrupted(Exception):
    """Ctrl-C or SIGTERM stopped a run after it saved a checkpoint; the CLI exits 130."""

    exit_code = 130


@contextlib.contextmanager
def doing(what: str):
    """Tag an exception raised inside with `what` ftool was doing (the innermost step wins)."""
    try:
        yield
    except Exception as e:
        if not hasattr(e, "ftool_doing"):
            with contextlib.suppress(AttributeError):
                e.ftool_doing = what
        raise


def one_line(e: BaseException, limit: int = 300) -> str:
    """An exception as one line: FtoolError's message as it is, another's type and message's lines."""
    text = " ".join(line.strip() for line in str(e).splitlines() if line.strip())
    if not isinstance(e, FtoolError):
        text = f"{type(e).__name__}: {text}" if text else type(e).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def report(e: BaseException) -> str:
    """The line the CLI prints for `e` (without `ftool: error: `)."""
    if isinstance(e, FtoolError):
        return str(e)
    return f"{getattr(e, 'ftool_doing', 'ftool')}: {one_line(e)}"
