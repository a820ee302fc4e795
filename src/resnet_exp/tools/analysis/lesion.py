"""Lesion study (Veit et al. 2016, "Residual Networks Behave Like Ensembles of Relatively Shallow Networks").

At test time, delete blocks and measure the test error. A deleted residual block keeps only its shortcut
(and what follows the addition); a deleted plain block becomes the identity, which is possible only where it
keeps the shape (stride 1, same width): other plain blocks are "not removable". Veit et al. find that deleting
one block of a residual net barely matters, except where it downsamples, while a plain net breaks, and that
the error of residual nets grows smoothly with the number k of blocks deleted at random.
"""

from __future__ import annotations

import random
from collections.abc import Collection
from typing import Any

from torch import Tensor

from resnet_exp.canvas import panels
from resnet_exp.models.cifar import Block, CifarResNet
from resnet_exp.tools.analysis.common import Subject, cifar_blocks, error_rate, forward, progress

NOT_REMOVABLE = "not removable"


def removable(block: Block) -> bool:
    """Residual blocks always (their shortcut stays); plain blocks only where the identity fits the shapes."""
    return block.shortcut is not None or not block.reshapes


def shortcut_only(_branch: Tensor, shortcut: Tensor | None) -> Tensor:
    """The addition of a block whose residual branch is deleted: the shortcut's output alone."""
    assert shortcut is not None, "a plain block has no shortcut to keep"
    return shortcut


def without(block: Block, x: Tensor) -> Tensor:
    """The block's output once its residual branch is deleted (the identity for a removable plain block); what
    follows the addition (ReLU in post-activation blocks) stays."""
    return x if block.shortcut is None else block(x, add=shortcut_only)


def lesioned(model: CifarResNet, x: Tensor, deleted: Collection[int]) -> Tensor:
    """Logits of the net with the blocks at the `deleted` indices deleted."""
    return forward(model, x, lambda i, block, h: without(block, h) if i in deleted else block(h))


def measure_lesions(model: CifarResNet, batches: Any, draws: int = 5, seed: int = 0) -> dict[str, Any]:
    """Test errors (%): intact, with each block deleted alone (keyed by block index), and for k = 1..n
    removable blocks deleted at random (`draws` seeded draws each, keyed by k)."""
    blocks = cifar_blocks(model, "lesion")
    candidates = [i for i, b in enumerate(blocks) if removable(b)]
    rng = random.Random(seed)
    draws_by_k = {
        k: [tuple(sorted(rng.sample(candidates, k))) for _ in range(draws)] for k in range(1, len(candidates) + 1)
    }
    # Each distinct set of deleted blocks is evaluated once: small k=n draws repeat, and k=1 repeats the singles.
    jobs = list(dict.fromkeys([(), *((i,) for i in candidates), *(d for ds in draws_by_k.values() for d in ds)]))
    errors = {
        d: error_rate(lambda x, d=d: lesioned(model, x, d), batches) for d in progress(jobs, "lesion", len(jobs))
    }
    return {
        "error": errors[()],
        "single": {str(i): errors[(i,)] if i in candidates else NOT_REMOVABLE for i in range(len(blocks))},
        "random": {str(k): [errors[d] for d in ds] for k, ds in draws_by_k.items()},
    }


def run(subjects: list[Subject], draws: int, seed: int) -> tuple[dict[str, Any], Any]:
    """Measure every subject; one figure: error per deleted block, and error against k random deletions."""
    fig, (single, multiple) = panels(2)
    results = {}
    for s in subjects:
        result = measure_lesions(s.model, s.batches.eval, draws, seed)
        points = [(int(i), e) for i, e in result["single"].items() if e != NOT_REMOVABLE]
        (line,) = single.plot(*zip(*points, strict=True), marker="o", markersize=3, label=s.label)
        single.axhline(result["error"], color=line.get_color(), linestyle=":", linewidth=1)
        ks = [int(k) for k in result["random"]]
        means = [sum(v) / len(v) for v in result["random"].values()]
        multiple.plot(ks, means, marker="o", markersize=3, color=line.get_color(), label=s.label)
        multiple.fill_between(ks, [min(v) for v in result["random"].values()],
                              [max(v) for v in result["random"].values()], color=line.get_color(), alpha=0.2)
        results[s.label] = {**s.describe(), **result}
    single.set(xlabel="deleted block", ylabel="test error (%)", title="one block deleted (dotted: intact)")
    multiple.set(xlabel="blocks deleted at random (k)", ylabel="test error (%)",
                 title=f"k random blocks deleted ({draws} draws: mean, min..max)")
    for ax in (single, multiple):
        ax.legend(fontsize="small")
    return {"draws": draws, "seed": seed, "runs": results}, fig
