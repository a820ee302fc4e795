"""K nets of one shape trained as one batched computation (horizontal fusion, as in HFTA), step for step equal
to training them one by one.

Small CIFAR nets leave a GPU mostly idle: a ResNet-20 step at batch 128 is a few dozen tiny kernels. Stacking
the K nets' parameters along a new leading dimension and running one forward under `torch.func.vmap` turns every
conv of the K nets into one grouped conv, every BN into one BN over K*C channels, and the K optimizers into one.

Why it is exact (up to float rounding of the fused kernels):

- each net sees only its own images and its own parameters, so net k's logits are those of the separate net;
- the loss is the sum of the K per-net mean cross-entropies, so d(loss)/d(params of net k) is net k's own
  gradient (the other terms do not depend on them);
- SGD with momentum, weight decay and Nesterov is elementwise, so one step over the stacked tensors is K steps;
- BN keeps per-net running statistics: the stacked buffers are passed to `functional_call` with a vmapped
  dimension, and BN's in-place update of a batched buffer writes each net's slice (checked by the tests).

Plain and residual nets of the same depth can share a batch when their shortcuts are option A: the two have the
same parameters, and a per-net shortcut scale (1.0 residual, 0.0 plain) makes the stacked forward compute each
plain net exactly (adding 0 * shortcut adds exact zeros, and passes exact zero gradients back).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from resnet_exp.errors import ConfigError
from resnet_exp.training.optim import sgd

# CifarResNet attributes that change the forward without changing any parameter shape; nets in one batch must
# agree on them (`residual` may differ only as a plain/residual mix with option A shortcuts, handled below).
FORWARD_SETTINGS = ("depth", "block", "preact")


class ScaledShortcut(nn.Module):
    """A parameter-free shortcut times a per-net scale (a buffer `functional_call` replaces with each net's)."""

    def __init__(self, shortcut: nn.Module) -> None:
        super().__init__()
        self.inner = shortcut
        self.register_buffer("scale", torch.ones(()), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.inner(x) * self.scale


class Float32InputBatchNorm(nn.BatchNorm2d):
    """BN on a float32 copy of its input, the output cast back: the template's BN under autocast.

    Under vmap, BN's batched weight is applied after a weightless BN, and CUDA's BN backward without a weight
    wants its float32 running statistics in the input's dtype ("Expected running_mean to have type BFloat16",
    torch 2.11). A separate net's cuDNN BN computes in float32 from bf16 inputs too and rounds its output to
    bf16, so the result is the same up to rounding; it costs a float32 copy of each BN input.
    """

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.float()).to(x.dtype)


def check_same_shapes(models: Sequence[nn.Module]) -> None:
    """Raise ConfigError naming the first parameter or buffer whose name or shape differs from models[0]'s."""
    if not models:
        raise ConfigError("BatchedNets needs at least one model")
    first = models[0]
    reference = {n: t.shape for n, t in [*first.named_parameters(), *first.named_buffers()]}
    buffers = dict(first.named_buffers())
    for k, model in enumerate(models[1:], 1):
        if type(model) is not type(first):
            raise ConfigError(f"model {k} is a {type(model).__name__}, model 0 a {type(first).__name__}")
        named = {n: t.shape for n, t in [*model.named_parameters(), *model.named_buffers()]}
        for name in [*reference, *(n for n in named if n not in reference)]:
            if named.get(name) != reference.get(name):
                kind = "buffer" if name in buffers or name in dict(model.named_buffers()) else "parameter"
                raise ConfigError(
                    f"model {k} does not have model 0's shape: {kind} {name!r} is "
                    f"{_shape(named.get(name))} there and {_shape(reference.get(name))} in model 0; "
                    "only nets with the same parameter names and shapes can be batched"
                )
        for attr in FORWARD_SETTINGS:
            ours, theirs = getattr(model, attr, None), getattr(first, attr, None)
            if ours != theirs:
                raise ConfigError(f"model {k} has {attr}={ours!r}, model 0 {attr}={theirs!r}; they cannot be batched")


def _shape(shape: torch.Size | None) -> str:
    return "missing" if shape is None else str(tuple(shape))


def _template(models: Sequence[nn.Module]) -> tuple[nn.Module, list[str], Tensor | None]:
    """A stateless copy of the nets' module (on the meta device: `functional_call` supplies every tensor), the
    names of its per-net shortcut scales, and those scales [len(names), K] (None when all nets are alike)."""
    flags = [getattr(m, "residual", None) for m in models]
    residual = [m for m, flag in zip(models, flags, strict=True) if flag]
    for attr in ("shortcut", "zero_channels"):
        values = {getattr(m, attr, None) for m in residual}
        if len(values) > 1:
            raise ConfigError(f"residual nets with different {attr} ({sorted(map(str, values))}) cannot be batched")
    if len(set(flags)) == 1:
        return copy.deepcopy(models[0]).to("meta"), [], None
    # A plain/residual mix: the residual module with each shortcut scaled per net (0.0 for the plain nets). The
    # shapes already match, so the shortcuts have no parameters (option A); plain nets' shortcuts are None.
    template = copy.deepcopy(residual[0]).to("meta")
    names = []
    for name, block in template.blocks.named_children():
        if block.shortcut is not None:
            block.shortcut = ScaledShortcut(block.shortcut)
            names.append(f"blocks.{name}.shortcut.scale")
    scales = torch.tensor([1.0 if flag else 0.0 for flag in flags]).expand(len(names), -1)
    return template, names, scales


def per_net_channels_last(t: Tensor) -> Tensor:
    """[K, N, C, H, W] with each net's [N, C, H, W] slice in channels_last (stored as [K, N, H, W, C])."""
    return t.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)


class BatchedNets:
    """K nets of the same shape, trained together with one vmapped forward/backward and one SGD step.

    The nets' parameters and buffers are copied into stacked tensors (leading dimension K) at construction;
    `models` are left untouched until `load_into` copies the trained state back. Put the models on the target
    device first: the stacked tensors live where they do. `memory_format=channels_last` lays out each net's
    weights and images as `Trainer` does; it applies on CPUs only (see `__init__`), elsewhere the nets run in
    the contiguous layout. `amp_dtype` autocasts as `Trainer.forward` does, with BN fed float32 copies of its
    inputs (`Float32InputBatchNorm`).
    """

    def __init__(
        self,
        models: list[nn.Module],
        lr: float = 0.1,
        momentum: float = 0.9,
        weight_decay: float = 1e-4,
        nesterov: bool = False,
        amp_dtype: torch.dtype | None = None,
        memory_format: torch.memory_format = torch.contiguous_format,
    ) -> None:
        check_same_shapes(models)
        if memory_format not in (torch.contiguous_format, torch.channels_last):
            raise ConfigError(f"memory_format={memory_format} is not supported; use contiguous_format or channels_last")
        self.k = len(models)
        self.amp_dtype = amp_dtype
        self.device = next(models[0].parameters()).device
        if self.device.type != "cpu":
            # Under vmap, BN on CUDA fails on channels_last inputs ("NYI: querying is_contiguous inside of vmap
            # for memory_format other than torch.contiguous_format", torch 2.11): the stacked nets stay contiguous.
            memory_format = torch.contiguous_format
        self.memory_format = memory_format
        self.keys = [list(m.state_dict()) for m in models]
        self.template, scale_names, scales = _template(models)
        self.template.train(models[0].training)
        if amp_dtype is not None:
            for module in self.template.modules():
                if type(module) is nn.BatchNorm2d:
                    module.__class__ = Float32InputBatchNorm
        params, buffers = stack_module_state(models)
        if memory_format == torch.channels_last:
            # As `Trainer` does with `model.to(memory_format=...)`: 4-D weights channels_last, per net.
            with torch.no_grad():
                params = {
                    n: per_net_channels_last(p).requires_grad_() if p.dim() == 5 else p for n, p in params.items()
                }
        self.params: dict[str, Tensor] = params
        self.buffers: dict[str, Tensor] = buffers
        # The shortcut scales of a plain/residual mix: [K] each, fixed, kept apart from the nets' own buffers.
        self.scales = {} if scales is None else {n: s.to(self.device) for n, s in zip(scale_names, scales, strict=True)}
        # The optimizer factory the single-net runs use, on the stacked tensors: weight decay on every parameter.
        self.optimizer = sgd(list(params.values()), lr, momentum, weight_decay, nesterov)
        self.last_wrong: Tensor | None = None
        self._forward = vmap(self._forward_one)

    @property
    def training(self) -> bool:
        return self.template.training

    def train(self, mode: bool = True) -> BatchedNets:
        """Train mode (BN on batch statistics, updating the running ones) or, `mode=False`, eval mode."""
        self.template.train(mode)
        return self

    def eval(self) -> BatchedNets:
        return self.train(False)

    def _forward_one(self, params: dict[str, Tensor], buffers: dict[str, Tensor], x: Tensor) -> Tensor:
        """One net's logits; vmapped over the nets, so `params`, `buffers` and `x` are one net's slices."""
        return functional_call(self.template, (params, buffers), (x,))

    def forward(self, xs: Tensor) -> Tensor:
        """Logits [K, B, classes] (float32) of xs [K, B, C, H, W], net k on xs[k]; autocast as `Trainer.forward`."""
        if xs.dim() != 5 or xs.shape[0] != self.k:
            raise ValueError(f"xs must be [K={self.k}, B, C, H, W], got {tuple(xs.shape)}")
        # The layout vmap's grouped conv reads without a copy: [B, K*C, H, W], channels_last if asked.
        if self.memory_format == torch.channels_last:
            xs = xs.permute(1, 3, 4, 0, 2).contiguous().permute(3, 0, 4, 1, 2)
        else:
            xs = xs.transpose(0, 1).contiguous().transpose(0, 1)
        buffers = {**self.buffers, **self.scales}
        dtype = self.amp_dtype or torch.bfloat16
        with torch.autocast(xs.device.type, dtype=dtype, enabled=self.amp_dtype is not None):
            return self._forward(self.params, buffers, xs).float()

    __call__ = forward

    def step(self, xs: Tensor, ys: Tensor, lr: float) -> Tensor:
        """One SGD step of every net at learning rate `lr`: net k on (xs[k], ys[k]), xs [K, B, C, H, W] already
        normalized and augmented, ys [K, B]. Returns the K losses (device tensor, no host sync); the K counts of
        wrong predictions are left in `last_wrong`."""
        if ys.shape != xs.shape[:2]:
            raise ValueError(f"ys must be [K, B] = {tuple(xs.shape[:2])}, got {tuple(ys.shape)}")
        logits = self.forward(xs)
        losses = F.cross_entropy(logits.flatten(0, 1), ys.flatten(), reduction="none").view_as(ys).mean(1)
        self.optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()
        with torch.no_grad():
            self.last_wrong = (logits.argmax(-1) != ys).sum(1)
        return losses.detach()

    def state_dicts(self) -> list[dict[str, Tensor]]:
        """Each net's state_dict (copies, same keys as its model's), loadable into a separately built net."""
        stacked = {**self.params, **self.buffers}
        return [{key: stacked[key][k].detach().clone() for key in keys} for k, keys in enumerate(self.keys)]

    def load_into(self, models: Sequence[nn.Module]) -> None:
        """Copy the trained parameters and buffers back into K separate modules (e.g. the ones given)."""
        if len(models) != self.k:
            raise ValueError(f"expected {self.k} models, got {len(models)}")
        for model, state in zip(models, self.state_dicts(), strict=True):
            model.load_state_dict(state)
