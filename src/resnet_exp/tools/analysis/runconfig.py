"""A run's config, rebuilt from the record its training wrote, through this project's own config groups.

A run dir travels (a colleague's sweep, a tarball next to a paper), and what it holds may have been edited since,
or rewritten by a later command. So nothing of it is instantiated as written: the record (the checkpoint's `run`,
else summary.json) names every setting by its command-line name (`optim.lr`, `model.depth`); each group's node is
composed from this package's configs, the config of that group whose settings hold the recorded ones, and the
recorded values are set on it. No `_target_` is read from the run dir, so no file in it can name code to run, and a
later `.hydra/` folder cannot change what is analysed. A record holding anything else (a setting no config of its
group has, a value that is not a plain one) is refused in one line."""

from __future__ import annotations

import functools
import json
from importlib.resources import files
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_module
from omegaconf import DictConfig, ListConfig, OmegaConf

from resnet_exp.building import GROUPS
from resnet_exp.errors import UserError
from resnet_exp.runlog import SUMMARY, read_summary

PLAIN = (bool, int, float, str, type(None))  # the values a record holds; lists are written as text


@functools.cache
def group_nodes(group: str) -> tuple[DictConfig, ...]:
    """The node each config of `group` composes to (model=resnet20, model=tv_resnet18-cifar, ...), the group's
    default config first."""
    names = sorted(f.name.removesuffix(".yaml") for f in files("resnet_exp.configs").joinpath(group).iterdir()
                   if f.name.endswith(".yaml"))
    with initialize_config_module("resnet_exp.configs", version_base="1.3"):
        default = compose("config")
        nodes = [default[group]] + [compose("config", overrides=[f"{group}={name}"])[group] for name in names]
    return tuple(nodes)


def group_node(group: str, recorded: dict[str, Any], source: str) -> DictConfig:
    """A copy of the config of `group` that has every recorded key and, of those, lacks the fewest of its own (a
    CIFAR-10 record lacks only data.root and data.download, which no run records), with the recorded values set."""
    fits = [n for n in group_nodes(group) if set(recorded) <= set(n) - {"_target_"}]
    if not fits:
        raise UserError(f"{source} records the {group} settings {', '.join(f'{group}.{k}' for k in sorted(recorded))}, "
                        f"which no {group} config of resnet-exp has: refused, nothing of it was built; analyse runs "
                        "that this version of resnet-exp wrote")
    node = min(fits, key=lambda n: len(set(n) - set(recorded))).copy()
    for key, value in recorded.items():
        node[key] = recorded_value(f"{group}.{key}", value, isinstance(node[key], ListConfig), source)
    return node


def recorded_value(name: str, value: Any, is_list: bool, source: str) -> Any:
    """A recorded setting as the config takes it: a plain value, or the list a record writes as text ("[1000,
    1500]"); anything else (a nested node, an interpolation that would be resolved) is refused."""
    if is_list and isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            value = None
        if not isinstance(value, list) or not all(isinstance(v, PLAIN) for v in value):
            raise UserError(f"{source} records {name}={value!r}, which is not a list of values: refused")
        return value
    if not isinstance(value, PLAIN) or (isinstance(value, str) and "${" in value):
        raise UserError(f"{source} records {name}={value!r}, which is not a plain value (a number, text, true, false "
                        "or null): refused, nothing of it was built")
    return value


def config_from_record(record: Any, source: str) -> DictConfig:
    """The config of the run that `record` (a checkpoint's `run`, or summary.json) describes; `source` names where
    it was read, for the one-line refusal."""
    settings = record.get("settings") if isinstance(record, dict) else None
    seed = record.get("seed") if isinstance(record, dict) else None
    if not isinstance(settings, dict) or isinstance(seed, bool) or not isinstance(seed, int):
        raise UserError(f"{source} holds no record of a run's settings (written by resnet-exp before 2026-12-02, "
                        "or not by resnet-exp): rerun it with this version to analyse it")
    by_group: dict[str, dict[str, Any]] = {group: {} for group in GROUPS}
    for key, value in settings.items():
        group, _, name = str(key).partition(".")
        if group not in by_group or not name or "." in name:
            raise UserError(f"{source} records {key!r}, which is not a setting of resnet-exp: refused, nothing of "
                            f"it was built (settings are group.name, groups {', '.join(GROUPS)})")
        by_group[group][name] = value
    nodes = {group: group_node(group, recorded, source) for group, recorded in by_group.items()}
    return OmegaConf.create({**nodes, "seed": seed, "predict": False})


def read_config(run_dir: Path, record: Any = None, source: str | None = None) -> DictConfig:
    """The config of the run in `run_dir`: from `record` (the run's checkpoint record, read by the caller) where
    given, else from its summary.json."""
    if record is None:
        source = str(run_dir / SUMMARY)
        record = read_summary(run_dir)
        if record is None:
            raise UserError(f"{str(run_dir)!r} is not a resnet-exp run dir: it has no readable {SUMMARY!r}")
    return config_from_record(record, source or str(run_dir))
