"""A run dir's config (`.hydra/config.yaml`), read so that it can build nothing but this project's own objects.

The analyses rebuild a run's net and data from its config with Hydra's `instantiate`, which calls whatever class or
function a `_target_` names, at any depth of the tree: a run dir from elsewhere (a colleague's sweep, a tarball)
could name `torch.load` of a pickle, which runs code as it is read. So the config is resolved once, then every
`_target_` in it must be one that this project's own config group of that place builds (configs/model/, data/,
optim/, schedule/, trainer/); anything else is refused in one line before anything is built."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from yaml import YAMLError

from resnet_exp.errors import UserError
from resnet_exp.run import GROUPS

CONFIG = Path(".hydra") / "config.yaml"


@functools.cache
def project_targets() -> dict[str, frozenset[str]]:
    """What each of this project's config groups builds, by group: the `_target_`s of its own configs (bases
    included), read from the configs the package ships."""
    root = files("resnet_exp.configs")
    targets = {}
    for group in GROUPS:
        folders = [root / group, root / group / "base"]
        texts = [f.read_text() for folder in folders if folder.is_dir() for f in folder.iterdir()
                 if f.name.endswith(".yaml")]
        targets[group] = frozenset(str(t) for text in texts if (t := OmegaConf.create(text).get("_target_")))
    return targets


def targets_in(node: Any, where: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted place, `_target_`) of every node of `node` that names one, at any depth."""
    if isinstance(node, dict):
        if "_target_" in node:
            yield where, node["_target_"]
        for key, value in node.items():
            yield from targets_in(value, f"{where}.{key}" if where else str(key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from targets_in(value, f"{where}[{index}]")


def read_config(run_dir: Path) -> DictConfig:
    """The run's config, resolved, once every `_target_` in it is one its place builds in this project; refused
    in one line where it names anything else, or cannot be read."""
    path = run_dir / CONFIG
    if not path.is_file():
        raise UserError(f"{str(run_dir)!r} is not a resnet-exp run dir: it has no {str(CONFIG)!r}")
    try:
        plain = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    except (OmegaConfBaseException, YAMLError, UnicodeDecodeError, ValueError) as e:
        raise UserError(f"{str(path)!r} cannot be read as a run's config ({type(e).__name__}): "
                        f"{str(e).splitlines()[0] if str(e) else ''}") from None
    if not isinstance(plain, dict):
        raise UserError(f"{str(path)!r} is not a run's config: it holds a {type(plain).__name__}, not settings")
    allowed = project_targets()
    for where, target in targets_in(plain):
        if where not in allowed or target not in allowed[where]:
            accepted = "none" if where not in allowed else ", ".join(sorted(allowed[where]))
            raise UserError(
                f"{str(path)!r} names {target!r} to build at {where or 'its top'}, which this project's configs "
                f"never do there (accepted: {accepted}): refused, nothing of it was built; analyse run dirs that "
                "resnet-exp wrote")
    return OmegaConf.create(plain)
