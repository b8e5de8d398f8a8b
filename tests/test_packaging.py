"""The built wheel carries the configs: `ftool` works from it outside the source tree."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_ships_every_config_and_runs_from_outside_the_source_tree(tmp_path):
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"),
                            str(ROOT)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    (wheel,) = (tmp_path / "dist").glob("ftool-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for config in ROOT.glob("configs/**/*.yaml"):
        assert f"ftool/configs/{config.relative_to(ROOT / 'configs')}" in names

    target = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                              str(wheel)], capture_output=True, text=True)
    assert install.returncode == 0, install.stderr
    env = {**os.environ, "PYTHONPATH": str(target)}
    where = subprocess.run([sys.executable, "-c", "import ftool, ftool.configs; print(ftool.__file__)"],
                           capture_output=True, text=True, env=env, cwd=tmp_path)
    assert where.stdout.strip().startswith(str(target)), where
    run = subprocess.run([sys.executable, "-m", "ftool", "train", "trainer.epochs=1", "trainer.progress=false",
                          f"hydra.run.dir={tmp_path / 'run'}"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "run" / "summary.json").is_file()
