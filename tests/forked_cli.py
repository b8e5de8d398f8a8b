"""`python -m ftool ARGS`, minus the 3 to 4 seconds each new interpreter spends importing torch and torchvision.

The tests run the real CLI in its own process some 200 times. On Linux each such process is forked
from a server that has imported torch and torchvision and nothing else (multiprocessing's
forkserver), then made into what `python -m ftool` starts as: its own folder, environment, argv,
sys.path and standard streams, and at exit what an interpreter does (wait for threads, run atexit
handlers). What it reads and writes, its exit status and its run directory are the real CLI's; the
suite takes about half the time. Tests of what only a fresh interpreter shows (signals, a reader
that goes away, `--help` importing neither torch nor Hydra) start one themselves.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import runpy
import subprocess
import sys
import tempfile
import threading
import traceback
from pathlib import Path

# Fork after importing torch is safe on Linux (no GPU is initialised); elsewhere a fresh interpreter.
SERVER = multiprocessing.get_context("forkserver") if sys.platform == "linux" else None
if SERVER:
    SERVER.set_forkserver_preload(["torch", "torchvision", __name__])


def ftool_process(args: list[str], cwd: str, env: dict[str, str], stdin: str,
                  timeout: float) -> subprocess.CompletedProcess:
    """What `subprocess.run([python, -m, ftool, *args], capture_output=True, text=True)` returns."""
    if not SERVER:
        return subprocess.run([sys.executable, "-m", "ftool", *args], cwd=cwd, capture_output=True, text=True,
                              timeout=timeout, env=env, input=stdin)
    with tempfile.TemporaryDirectory() as folder:
        streams = [os.path.join(folder, name) for name in ("stdin", "stdout", "stderr")]
        for path, text in zip(streams, (stdin, "", "")):
            Path(path).write_text(text)
        child = SERVER.Process(target=_run, args=(args, cwd, env, *streams))
        child.start()
        child.join(timeout)
        if child.exitcode is None:
            child.kill()
            child.join()
            raise subprocess.TimeoutExpired(["ftool", *args], timeout)
        out, err = (Path(path).read_text() for path in streams[1:])
    return subprocess.CompletedProcess(["ftool", *args], child.exitcode, out, err)


def _run(args: list[str], cwd: str, env: dict[str, str], stdin: str, stdout: str, stderr: str) -> None:
    """The forked child, from its start to its exit."""
    for fd, path, flags in ((0, stdin, os.O_RDONLY), (1, stdout, os.O_WRONLY), (2, stderr, os.O_WRONLY)):
        opened = os.open(path, flags)
        os.dup2(opened, fd)
        os.close(opened)
    sys.stdin = open(0, closefd=False)  # the interpreter's encodings and buffering
    sys.stdout = open(1, "w", closefd=False)
    sys.stderr = open(2, "w", buffering=1, errors="backslashreplace", closefd=False)
    # A forkserver child starts its own processes through the forkserver; `python -m ftool` uses the
    # platform's default (fork on Linux): DataLoader workers started so outlived an early exit with a traceback.
    multiprocessing.set_start_method(None, force=True)
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    sys.path.insert(0, cwd)  # as `-m` does
    sys.argv = [sys.executable, *args]
    try:
        runpy.run_module("ftool", run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as e:
        code = _exit_status(e.code)
    except BaseException:  # a bug: its traceback, as the interpreter prints it
        traceback.print_exc()
        code = 1
    threading._shutdown()  # the interpreter's exit, which a multiprocessing child skips
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _exit_status(code) -> int:
    if code is None or isinstance(code, int):
        return code or 0
    print(code, file=sys.stderr)  # sys.exit("message"), as the interpreter reports it
    return 1
