"""ftool's Hydra config groups, shipped inside the package as `ftool.configs`."""
