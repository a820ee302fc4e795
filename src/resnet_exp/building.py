"""A config node built into its object, every key and value checked first: the one way resnet-exp instantiates.

Hydra's `instantiate` would pass an unknown key (a misspelt `+trainer.max_iter=5`) or a value of the wrong kind
(`data.augment=maybe`) on to the constructor, to fail there with a traceback, or not at all. `build` first refuses,
in one line naming the accepted keys or values, any key that the `_target_` does not take and any value of another
type than its parameter declares; the ranges stay with the code that knows them.
"""

from __future__ import annotations

import inspect
import math
import types
import typing
from collections.abc import Callable
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig

from resnet_exp.errors import ConfigError, UserError


def build(node: DictConfig, **kwargs: Any) -> Any:
    """`instantiate`, after `check_keys` and `check_values`, unwrapping Hydra's wrapper so our own errors reach the
    user unchanged."""
    check_keys(node, *kwargs)
    check_values(node)
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as e:
        cause = e.__cause__
        if isinstance(cause, UserError):
            raise cause from None
        raise


TOP_LEVEL = ("seed", "predict")  # the config's own keys beside its groups (configs/config.yaml)
GROUPS = ("model", "data", "optim", "schedule", "trainer")  # the config groups whose nodes are built


def check_top_level(cfg: DictConfig) -> None:
    """Refuse a key the config does not have at its top (`+sed=1` for `seed=1`), which would otherwise be recorded
    and change nothing."""
    unknown = [str(key) for key in cfg if key not in (*GROUPS, *TOP_LEVEL) and key != "hydra"]
    if unknown:
        raise ConfigError(f"{unknown[0]}={cfg[unknown[0]]!r} is not a setting of resnet-exp; accepted at the top: "
                          f"{', '.join(TOP_LEVEL)}, and the groups {', '.join(GROUPS)} (e.g. trainer.max_iters=2000)")


def check_keys(node: DictConfig, *given: str) -> None:
    """Refuse a key that what `node` builds does not take (a misspelt `+trainer.max_iter=5`), naming the keys it
    does take; `given` are the arguments passed in code (the optimizer's parameters)."""
    accepted = accepted_keys(get_object(node._target_))
    group = node._key()
    unknown = [key for key in node if not str(key).startswith("_") and accepted is not None and key not in accepted]
    if unknown:
        names = ", ".join(f"{group}.{name}" for name in accepted if name not in given)
        raise ConfigError(f"{group}.{unknown[0]} is not a setting of {group} ({node._target_}); accepted: {names}")


def check_values(node: DictConfig) -> None:
    """Refuse a value of the wrong type for what `node` builds, by the type its parameter declares: a boolean
    that is not true or false (`data.augment=maybe`), a number that is text or not finite (`optim.lr=abc`,
    `data.noise=nan`), an integer that is not whole. Every setting of every group is so checked before it is used,
    without a line per setting; ranges stay with the code that knows them."""
    declared = declared_types(get_object(node._target_))
    group = node._key()
    for key, value in node.items():
        if (hint := declared.get(str(key))) is not None and (problem := type_problem(value, hint)):
            raise ConfigError(f"{group}.{key}={value!r} {problem}")


def declared_types(target: Any) -> dict[str, Any]:
    """The declared type of each keyword argument `target` takes, following `**kwargs` handed to a base class."""
    hints: dict[str, Any] = {}
    for function in init_functions(target):
        hints = {**typing.get_type_hints(function), **hints}
    return hints


# A declared scalar type: how to tell a value of it, and how to say what is accepted.
SCALARS: dict[Any, tuple[Callable[[Any], bool], str]] = {
    bool: (lambda v: isinstance(v, bool), "true or false"),
    int: (lambda v: isinstance(v, int) and not isinstance(v, bool), "a whole number"),
    float: (lambda v: isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v), "a finite number"),
    str: (lambda v: isinstance(v, str), "text"),
}


def type_problem(value: Any, hint: Any) -> str | None:
    """Why `value` is not of the declared scalar type `hint` (`bool`, `int | None`, ...), None where it is or where
    the type is not a scalar one (lists, modules), which the code checks itself."""
    members = typing.get_args(hint) if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union \
        else (hint,)
    scalars = [m for m in members if m is not type(None)]
    if any(m not in SCALARS for m in scalars) or (value is None and len(scalars) < len(members)):
        return None
    if any(SCALARS[m][0](value) for m in scalars):
        return None
    accepted = " or ".join(SCALARS[m][1] for m in scalars) + (" or null" if len(scalars) < len(members) else "")
    return f"is the wrong kind of value; accepted: {accepted}"


def init_functions(target: Any) -> list[Any]:
    """What builds `target`: a function itself, or a class's `__init__`s from its own up its bases, where `**kwargs`
    hands arguments on."""
    return [c.__init__ for c in target.__mro__ if "__init__" in vars(c)] if isinstance(target, type) else [target]


def accepted_keys(target: Any) -> list[str] | None:
    """The keyword arguments `target` takes, following `**kwargs` handed on to a base class; None for any."""
    names: list[str] = []
    for function in init_functions(target):
        parameters = inspect.signature(function).parameters.values()
        names += [p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                  and p.name != "self" and p.name not in names]
        if all(p.kind != p.VAR_KEYWORD for p in parameters):
            return names
    return None
