import platform
import subprocess
import sys

import pytest

CODE = "from ftool.engine.allocator import tune_malloc; print(tune_malloc())"


def run(env):
    return subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, env=env).stdout.strip()


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_malloc_is_tuned_on_glibc_unless_the_user_chose(monkeypatch):
    import os

    base = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "LD_PRELOAD"}
    assert run(base) == "glibc tuned"
    assert run({**base, "MALLOC_ARENA_MAX": "2"}) == "user's choice"
