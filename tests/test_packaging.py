"""The built wheel carries the configs: `ftool` works from it outside the source tree."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_ships_every_config_and_trains_from_outside_the_source_tree(tmp_path):
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                            str(tmp_path / "dist"), str(ROOT)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    (wheel,) = (tmp_path / "dist").glob("ftool-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"ftool/configs/{c.relative_to(ROOT / 'configs')}" for c in ROOT.glob("configs/**/*.yaml")} <= names
    zipfile.ZipFile(wheel).extractall(tmp_path / "site")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    run = subprocess.run([sys.executable, "-m", "ftool", "train", "trainer.epochs=1", "trainer.progress=false",
                          "hydra.run.dir=run"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert run.returncode == 0 and (tmp_path / "run" / "summary.json").is_file(), run.stderr
