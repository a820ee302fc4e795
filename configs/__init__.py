"""Hydra configs, installed as the package `resnet_exp.configs` (see pyproject.toml)."""
