"""ftool: build, train, evaluate and fine-tune PyTorch models from YAML configs."""

__version__ = "0.1.0"
