"""The training engine: device and precision, the loop, checkpoints, logs and progress."""
