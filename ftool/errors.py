"""Errors a user can cause: the CLI prints them as one line and exits non-zero, no traceback."""


class FtoolError(Exception):
    """A mistake in the user's input (config, option, path); the message says what to do."""

    exit_code = 2


class RunInterrupted(Exception):
    """Ctrl-C or SIGTERM stopped a run after it saved a checkpoint; the CLI exits 130."""

    exit_code = 130
