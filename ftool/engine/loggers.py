"""Metric logs. `metrics.jsonl` (one JSON object per logged step or epoch) is always written."""

from __future__ import annotations

import json
from pathlib import Path


class JsonlLogger:
    def __init__(self, path: Path):
        self.file = open(path, "a", encoding="utf-8")

    def log(self, record: dict) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()
