"""The whole training step (forward, backward, SGD update, the device sums) replayed as one CUDA graph.

A CIFAR ResNet step launches hundreds of small kernels; on a GPU the eager loop is bound by those launches,
not by arithmetic. Captured once, the step is one launch. What the graph needs, and why it is here:

- static tensors: the batch is copied into the graph's own input tensors before each replay;
- the learning rate as a device tensor, read by the captured update at each replay, so the milestones and
  warm-ups change it without re-capture (torch's SGD turns a tensor lr into a host number, hence `sgd_update_`);
- the momentum buffers must exist before capture: the trainer's first `GRAPH_WARMUP` steps run eagerly,
  on the side stream the capture then uses (cuDNN's autotuning and cuBLAS's workspaces happen there);
- batch norm's running statistics and counter are updated in place, so replaying updates the real buffers.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from resnet_exp.errors import ConfigError

GRAPH_WARMUP = 3


def sgd_update_(optimizer: torch.optim.SGD, params: list[Tensor], lr: Tensor) -> None:
    """`optimizer.step()` for its one param group with the lr a 0-dim device tensor: the same arithmetic as
    torch's foreach SGD (weight decay, momentum, dampening, nesterov), on buffers that already exist."""
    group = optimizer.param_groups[0]
    momentum, dampening, nesterov = group["momentum"], group["dampening"], group["nesterov"]
    grads = [p.grad for p in params]
    if group["weight_decay"]:
        grads = torch._foreach_add(grads, params, alpha=group["weight_decay"])
    if momentum:
        bufs = [optimizer.state[p]["momentum_buffer"] for p in params]
        torch._foreach_mul_(bufs, momentum)
        torch._foreach_add_(bufs, grads, alpha=1 - dampening)
        # Nesterov not in place, unlike torch's, so that `p.grad` still holds the gradient for `grad_norms`.
        grads = torch._foreach_add(grads, bufs, alpha=momentum) if nesterov else bufs
    torch._foreach_sub_(params, torch._foreach_mul(grads, lr))


def check_graphable(optimizer: torch.optim.Optimizer) -> None:
    """The captured update reproduces plain SGD with one param group; anything else would silently differ."""
    if type(optimizer) is not torch.optim.SGD or len(optimizer.param_groups) != 1:
        raise ConfigError(
            f"trainer.cuda_graph=true needs torch.optim.SGD with one param group, got {type(optimizer).__name__} "
            f"with {len(optimizer.param_groups)}: use trainer.cuda_graph=false"
        )
    if optimizer.param_groups[0]["maximize"]:
        raise ConfigError("trainer.cuda_graph=true does not reproduce SGD(maximize=True): use trainer.cuda_graph=false")


class GraphedStep:
    """A training step run eagerly on a side stream for its first `GRAPH_WARMUP` calls, then captured once and
    replayed: call it with each batch, the lr and the eager optimizer update.

    `body(x, y, update)` is the caller's own step (forward, loss, backward, `update()`, device sums), so the graph
    runs the code the eager path runs, with only the optimizer's update swapped for `sgd_update_`.
    """

    def __init__(
        self,
        body: Callable[[Tensor, Tensor, Callable[[], None]], None],
        params: list[Tensor],
        optimizer: torch.optim.SGD,
        device: torch.device,
    ) -> None:
        check_graphable(optimizer)
        self.body, self.params, self.optimizer = body, params, optimizer
        self.stream = torch.cuda.Stream(device)
        self.eager_calls = 0
        self.graph: torch.cuda.CUDAGraph | None = None

    @property
    def captured(self) -> bool:
        return self.graph is not None

    def capture(self, x: Tensor, y: Tensor) -> None:
        self.x, self.y = x.clone(), y.clone()
        self.lr = torch.zeros((), device=x.device)
        self.optimizer.zero_grad(set_to_none=True)  # the graph allocates the gradients it writes in its own pool
        self.graph = torch.cuda.CUDAGraph()
        self.stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.graph(self.graph, stream=self.stream):
            self.body(self.x, self.y, lambda: sgd_update_(self.optimizer, self.params, self.lr))
        torch.cuda.current_stream().wait_stream(self.stream)

    def __call__(self, x: Tensor, y: Tensor, lr: float, update: Callable[[], None]) -> None:
        if self.graph is None and self.eager_calls >= GRAPH_WARMUP:
            self.capture(x, y)
        if self.graph is not None:
            self.x.copy_(x)
            self.y.copy_(y)
            self.lr.fill_(lr)
            self.graph.replay()
            return
        self.stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.stream):
            self.body(x, y, update)
        torch.cuda.current_stream().wait_stream(self.stream)
        self.eager_calls += 1
