"""ftool: build, train, evaluate and fine-tune PyTorch models from YAML configs."""

import time

__version__ = "0.1.0"
STARTED = time.perf_counter()  # the first ftool import: a command's timing (summary.json) counts from here
