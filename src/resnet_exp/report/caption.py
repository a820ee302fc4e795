"""What a figure of the report shows, said in its caption from the runs' summary.json alone: the data set, the
runs' length, the seeds behind each line and whatever is not the paper's recipe (section 4.2), so that a figure
seen without its command line cannot pass for another: a synthetic one for CIFAR-10, a 2000-iteration one with a
lr ramp for the paper's 64k iterations."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from resnet_exp.report.paper import (
    PAPER_CHOICES_ADDED,
    PAPER_GAMMA,
    PAPER_LR_DROPS,
    PAPER_RECIPE,
    PAPER_WARMUP_DEPTH,
    PAPER_WARMUP_LR,
    PAPER_WARMUP_UNTIL_ERROR,
)
from resnet_exp.report.runs import MILESTONES, Key, Run

DATA_NAMES = {"cifar10": "CIFAR-10", "synthetic": "synthetic data (not CIFAR-10)"}
SHORTCUT = "model.shortcut"  # a setting of residual nets only: a plain net's value is never used
GAMMA = "schedule.gamma"
WARMUP_LR, WARMUP_UNTIL = "schedule.warmup_lr", "schedule.warmup_until_error"
# How a deviation from PAPER_RECIPE reads, given the setting's value as text.
PHRASES = {
    "optim.lr": "lr {}",
    "optim.momentum": "momentum {}",
    "optim.weight_decay": "weight decay {}",
    "optim.nesterov": "optim.nesterov={}",
    "trainer.batch_size": "batch {}",
    "schedule.ramp_iters": "lr ramped over the first {} iterations",
    "data.augment": "data.augment={}",
    "data.normalize": "per-{} normalisation",
    SHORTCUT: "option {} shortcuts",
    "model.zero_init_residual": "residual branches starting at zero",
    "schedule.decay": "lr falling linearly to 0, no steps",
}
DECAY = "schedule.decay"


def _value(text: str) -> Any:
    """A setting as `Key` holds it (text) back as a value: 0.1, true, null, [1000, 1500]. A history of changes
    made during the run ("0.1, 0.05 after 600") or a plain string stays text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _same(value: Any, paper: Any) -> bool:
    """Numbers compared as numbers (1e-4 is 0.0001), booleans and everything else as they are."""
    return math.isclose(value, paper) if _number(value) and _number(paper) else (
        value == paper and type(value) is type(paper))


def _spell(value: Any) -> str:
    """A value as a caption spells it: numbers briefly (80, 0.0001), booleans and null as the command line does
    (true, null), text as it is."""
    return format(value, "g") if _number(value) else value if isinstance(value, str) else json.dumps(value)


def _settings(key: Key) -> dict[str, Any]:
    """The settings a configuration's summary.json recorded, as values; a plain net without its shortcut, which
    it does not use."""
    return {name: _value(text) for name, text in key.settings if key.residual or name != SHORTCUT}


def _and(items: Sequence[Any]) -> str:
    """"600", "600 and 1200", "300, 600 and 1200"."""
    texts = [str(item) for item in items]
    return texts[0] if len(texts) == 1 else f"{', '.join(texts[:-1])} and {texts[-1]}"


def _lr_drops(settings: dict[str, Any], max_iters: int) -> list[str]:
    """The lr drops where they are not the paper's /10 at 50% and 75% of the run: "lr /10 at 600 and 1200",
    "lr x0.2 at 1000 and 1500", or "no lr drop" where none falls inside the run (milestones of 64k runs kept for a
    shorter one)."""
    if MILESTONES not in settings or settings.get(DECAY, "step") != "step":  # a linear decay is said on its own
        return []
    milestones, gamma = settings[MILESTONES], settings.get(GAMMA, PAPER_GAMMA)
    if not isinstance(milestones, list):  # changed during the run: its history
        return [f"{MILESTONES}={_spell(milestones)}"]
    inside = [m for m in milestones if m < max_iters]
    paper_shape = len(inside) == len(PAPER_LR_DROPS) and all(
        math.floor(f * max_iters) <= m <= math.ceil(f * max_iters) for f, m in zip(PAPER_LR_DROPS, inside, strict=True))
    paper_gamma = _same(gamma, PAPER_GAMMA)
    if paper_shape and paper_gamma:
        return []
    if not inside:
        return ["no lr drop"]
    return [f"lr {'/10' if paper_gamma else f'x{_spell(gamma)}'} at {_and(inside)}"]


def _warmup(settings: dict[str, Any], depth: int) -> list[str]:
    """The constant warm-up lr where it is not the paper's: lr 0.01 until training error < 80% for nets of 110
    layers or more, and none for shallower ones."""
    if WARMUP_LR not in settings:
        return []
    lr, until = settings[WARMUP_LR], settings.get(WARMUP_UNTIL, PAPER_WARMUP_UNTIL_ERROR)
    deep = depth >= PAPER_WARMUP_DEPTH
    if lr is None:
        return [f"no warm-up at lr {_spell(PAPER_WARMUP_LR)}"] if deep else []
    if deep and _same(lr, PAPER_WARMUP_LR) and _same(until, PAPER_WARMUP_UNTIL_ERROR):
        return []
    return [f"lr {_spell(lr)} until training error < {_spell(until)}%"]


def deviations(key: Key) -> list[str]:
    """What one configuration does unlike the paper's recipe (section 4.2), in words: "lr 0.05", "batch 64",
    "lr ramped over the first 200 iterations", "lr /10 at 600 and 1200". Settings it did not record say nothing
    here (`unrecorded`)."""
    settings = _settings(key)
    differ = [PHRASES[name].format(_spell(settings[name])) for name, paper in
              {**PAPER_RECIPE, **PAPER_CHOICES_ADDED}.items() if name in settings and not _same(settings[name], paper)]
    return differ + _lr_drops(settings, key.max_iters) + _warmup(settings, key.depth)


def unrecorded(key: Key) -> list[str]:
    """The recipe's settings a configuration's summary.json lacks (older runs), so that no deviation can be told."""
    settings = _settings(key)
    names = [*PAPER_RECIPE, MILESTONES, GAMMA, WARMUP_LR]
    return [name for name in names if name not in settings and (key.residual or name != SHORTCUT)]


def notes(key: Key) -> list[str]:
    """How a configuration measured its curves where a reader could take them for something else: intermediate
    test points on a subset of the test set, or test points on a validation split."""
    settings = _settings(key)
    said = []
    if settings.get("trainer.eval_images"):
        said.append(f"intermediate test points on {settings['trainer.eval_images']} test images, the last on all")
    if settings.get("data.val_split"):
        said.append(f"test points on {settings['data.val_split']} training images held out for validation")
    return said


def _across(keys: Sequence[Key], phrases: Callable[[Key], list[str]], per: str) -> list[str]:
    """Each configuration's phrases once, in order, with how many of the figure's lines each holds for where it is
    not all of them ("lr 0.05 (1 of 3 lines)"); the legend names which."""
    counts = Counter(phrase for key in keys for phrase in dict.fromkeys(phrases(key)))
    return [phrase if n == len(keys) else f"{phrase} ({n} of {len(keys)} {per}s)" for phrase, n in counts.items()]


def _data(keys: Iterable[Key]) -> str:
    return " and ".join(dict.fromkeys(DATA_NAMES.get(key.data, key.data) for key in keys))


def _length(keys: Iterable[Key], per: str) -> str:
    """"2000 iterations", or "1000 to 2000 iterations (lines differ in length)"."""
    lengths = sorted({key.max_iters for key in keys})
    if len(lengths) == 1:
        return f"{lengths[0]} iterations"
    return f"{lengths[0]} to {lengths[-1]} iterations ({per}s differ in length)"


def _seeds(groups: dict[Key, list[Run]], per: str) -> str:
    """"1 seed per line", "mean and min..max of 3 seeds per line", or "... of 1 to 3 seeds per line (lines differ
    in seeds)", counting distinct seeds as the table does."""
    counts = sorted({len({run.summary["seed"] for run in runs}) for runs in groups.values()})
    if counts == [1]:
        return f"1 seed per {per}"
    spread = str(counts[0]) if len(counts) == 1 else f"{counts[0]} to {counts[-1]}"
    differ = f" ({per}s differ in seeds)" if len(counts) > 1 else ""
    return f"mean and min..max of {spread} seeds per {per}{differ}"


def caption(groups: dict[Key, list[Run]], per: str = "line") -> str:
    """The figure's caption, in sentences: data, length and seeds; the deviations from the paper's recipe, or that
    there are none; the recipe settings summary.json did not record; how test points were measured. `per` names
    what one configuration is in the figure (a "line", a "point")."""
    keys = list(groups)
    facts = f"{_data(keys)}, {_length(keys, per)}, {_seeds(groups, per)}."
    sentences = [facts[0].upper() + facts[1:]]
    differ = _across(keys, deviations, per)
    missing = list(dict.fromkeys(name for key in keys for name in unrecorded(key)))
    if differ:
        sentences.append(f"Deviations from the paper's recipe (section 4.2): {'; '.join(differ)}.")
    elif not missing:
        sentences.append("The paper's recipe (section 4.2).")
    if missing:
        sentences.append(f"Not recorded in summary.json: {', '.join(missing)}.")
    measured = "; ".join(_across(keys, notes, per))
    if measured:
        sentences.append(f"{measured[0].upper()}{measured[1:]}.")
    return " ".join(sentences)
