"""The command line's errors of composition, said in one line naming the value and what is accepted.

Hydra composes the config before any of our code runs. For a key the chosen config does not have
(`trainer.max_iter=3`, `model.stem=imagenet` on a CIFAR net) it prints six lines advising `+trainer.max_iter=3`,
which would only add a key that nothing reads; for a config that does not exist it prints one option a line, then
its search path. Hydra raises these errors instead of printing them where HYDRA_FULL_ERROR is set, so `composing`
sets it around the composition, and our first callback after it (`released`, from rundir.OutputDirCheck and
sweep.SweepStart) unsets it again, so that everything after reports as Hydra does. A user's own HYDRA_FULL_ERROR is
left alone: they asked for Hydra's trace."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Sequence

from hydra import compose, initialize_config_module
from hydra.errors import HydraException

FULL_ERROR = "HYDRA_FULL_ERROR"
OURS = "RESNET_EXP_COMPOSING"  # set while `composing` holds HYDRA_FULL_ERROR at 1; the user's value, "" for none


def composing(entry: Callable[[], object], argv: Sequence[str]) -> None:
    """Run Hydra's entry point, with a composition error said in one line (exit code 2)."""
    if os.environ.get(FULL_ERROR) == "1":  # the user asked for Hydra's trace
        entry()
        return
    os.environ[OURS] = os.environ.get(FULL_ERROR, "")
    os.environ[FULL_ERROR] = "1"
    try:
        entry()
    except HydraException as e:
        if OURS not in os.environ:
            raise  # raised after composition, where Hydra's own report applies
        released()
        print(f"resnet-exp: error: {one_line(e, argv)}", file=sys.stderr)
        sys.exit(2)
    finally:
        released()


def released() -> None:
    """Composition is over: HYDRA_FULL_ERROR back to how the user had it."""
    if (given := os.environ.pop(OURS, None)) is not None:
        if given:
            os.environ[FULL_ERROR] = given
        else:
            os.environ.pop(FULL_ERROR, None)


def one_line(e: HydraException, argv: Sequence[str]) -> str:
    """`e` as one line: a key the config lacks with the keys its group takes, a config that does not exist with
    those that do, anything else as Hydra's lines joined."""
    text = str(e)
    overrides = [a for a in argv if not a.startswith("-")]
    if found := re.match(r"Could not override '([^'.]+)\.([^']+)'", text):
        group, key = found.groups()
        given = next((a for a in overrides if a.split("=", 1)[0] == f"{group}.{key}"), f"{group}.{key}")
        accepted = group_keys(group, [a for a in overrides if a != given and not a.startswith("hydra")])
        listed = f"accepted: {', '.join(accepted)}" if accepted else "`resnet-exp --cfg job` lists the settings"
        return f"{given}: {group}.{key} is not a setting of the {group} config chosen; {listed}"
    if found := re.search(r"Could not find '([^'/]+)/([^']+)'", text):
        group, name = found.groups()
        options = re.findall(r"^\t(\S+)$", text, flags=re.MULTILINE)
        return f"{group}={name} is not a {group} config; accepted: {', '.join(options) or 'none found'}"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return "; ".join(lines)


def group_keys(group: str, overrides: list[str]) -> list[str]:
    """The settings of `group` in the config these overrides compose, by command-line name; [] where they do not
    compose on their own (a sweep's comma lists)."""
    try:
        with initialize_config_module("resnet_exp.configs", version_base="1.3"):
            node = compose("config", overrides=overrides)[group]
    except Exception:  # any failure loses only the list of accepted keys
        return []
    return [f"{group}.{key}" for key in node if key != "_target_"]
