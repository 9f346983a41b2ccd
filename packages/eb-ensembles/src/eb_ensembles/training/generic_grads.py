"""Per-member losses and gradients for stacked parameters ``(T, ...)`` of ANY module (the generic vectorised path).

The members' forward passes are batched with ``vmap(functional_call)``; the loss and its gradient in the outputs
come in closed form (:func:`~eb_ensembles.training.likelihood.stacked_loss_and_output_grad`); one autograd
backward pass from those output gradients gives every member's parameter gradients at once (the members'
losses are independent, so the gradient of their sum holds each member's own gradient).

Doing that eagerly every step pays vmap's and autograd's Python overhead for every operation, which at small
widths costs more than the arithmetic. :func:`generic_value_and_grad` therefore records the whole step (batched
forward, closed-form loss, backward) once per minibatch shape as a flat graph of ATen operations with
``torch.fx.experimental.proxy_tensor.make_fx`` (no compiler: the graph runs as plain PyTorch calls), and replays it.
A recording cannot bake a data-dependent branch into a wrong graph: the step runs under ``vmap``, which refuses
Python control flow on tensor values (``.item()``, ``bool(tensor)``) outright, so such a module cannot take the
vectorised path at all. Anything else the recorder cannot handle makes that module run the eager path (same
numbers, slower). Recording a shape costs about as much as 30-40 eager steps, so only minibatch shapes that will be
replayed often are recorded (``record``); the rest run eagerly. Identity nodes the recorder leaves in (``detach``,
``x * 1``, ``view``/``expand`` to the same shape) are dropped from the graph before it is replayed.

All callables share the signature ``value_and_grad(params, buffers, xb, yb, grads) -> losses``: ``xb (T, B, D)``,
``yb (T, B)``, ``losses (T,)``; the gradients of ``losses.sum()`` are written into ``grads`` (name → ``(T, ...)``
views of the optimiser's flat gradient buffer).
"""

from __future__ import annotations

import logging
import warnings

import torch
from torch import nn
from torch.func import functional_call, vmap

from eb_ensembles.training.likelihood import stacked_loss_and_output_grad

logger = logging.getLogger(__name__)

__all__ = ["drop_identities", "eager_value_and_grad", "generic_value_and_grad"]


def _step(base: nn.Module, task: str, noise_std: float | None):
    """The eager step ``(params, buffers, xb, yb) -> (losses (T,), gradients in params' order)``."""

    def forward_one(p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], xb: torch.Tensor) -> torch.Tensor:
        return functional_call(base, (p, b), (xb,))

    forward = vmap(forward_one, in_dims=(0, 0, 0), randomness="error")

    def step(params, buffers, xb, yb):
        leaves = {k: v.detach().requires_grad_(True) for k, v in params.items()}
        with torch.enable_grad():
            h = forward(leaves, buffers, xb)  # T x B x O
        losses, g = stacked_loss_and_output_grad(task, h.detach(), yb, noise_std)
        grads = torch.autograd.grad(h, list(leaves.values()), g, allow_unused=True)
        grads = tuple(torch.zeros_like(v) if gr is None else gr for v, gr in zip(leaves.values(), grads, strict=True))
        return losses, grads

    return step


def eager_value_and_grad(base: nn.Module, task: str, noise_std: float | None = None):
    """The generic step run eagerly every time (vmap forward, closed-form loss, one autograd backward)."""
    step = _step(base, task, noise_std)

    def value_and_grad(params, buffers, xb, yb, grads):
        losses, member_grads = step(params, buffers, xb, yb)
        for target, grad in zip((grads[k] for k in params), member_grads, strict=True):
            target.copy_(grad)
        return losses

    return value_and_grad


_IDENTITY_OPS = {torch.ops.aten.detach.default, torch.ops.aten.alias.default}
_SAME_SHAPE_OPS = {torch.ops.aten.view.default, torch.ops.aten._unsafe_view.default, torch.ops.aten.expand.default}


def drop_identities(graph_module: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Remove nodes that return their input unchanged (see the module docs); recompile and return the module."""
    graph = graph_module.graph
    for node in list(graph.nodes):
        if node.op != "call_function" or not node.args or not isinstance(node.args[0], torch.fx.Node):
            continue
        source = node.args[0]
        same = node.target in _IDENTITY_OPS
        if node.target is torch.ops.aten.mul.Scalar and node.args[1] == 1:
            same = True
        if node.target in _SAME_SHAPE_OPS:
            before, after = source.meta.get("val"), node.meta.get("val")
            same = isinstance(before, torch.Tensor) and isinstance(after, torch.Tensor) and before.shape == after.shape
        if same:
            node.replace_all_uses_with(source)
            graph.erase_node(node)
    graph.eliminate_dead_code()
    graph_module.recompile()
    return graph_module


def generic_value_and_grad(
    base: nn.Module, task: str, noise_std: float | None = None, record: set[tuple[int, ...]] | None = None
):
    """The generic step, recorded once per minibatch shape with ``make_fx`` and replayed (see the module docs).

    Args:
        base: the members' module (any device, e.g. ``meta``: only its structure is used).
        task, noise_std: the likelihood (see :func:`~eb_ensembles.training.likelihood.stacked_loss_and_output_grad`).
        record: the ``xb`` shapes ``(T, B, ...)`` worth recording (replayed often); None records every shape.

    Falls back to :func:`eager_value_and_grad` (logged once) when recording fails; the eager path then raises
    what the module really does wrong (e.g. vmap's randomness error for dropout).
    """
    from torch.fx.experimental.proxy_tensor import make_fx

    step = _step(base, task, noise_std)
    eager = eager_value_and_grad(base, task, noise_std)
    graphs: dict[tuple, torch.fx.GraphModule] = {}
    state = {"failed": False}

    def value_and_grad(params, buffers, xb, yb, grads):
        if state["failed"] or (record is not None and tuple(xb.shape) not in record):
            return eager(params, buffers, xb, yb, grads)
        key = (tuple(xb.shape), tuple(yb.shape), xb.dtype, yb.dtype, xb.device)
        graph = graphs.get(key)
        if graph is None:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # notes from the tracer itself, not about the model
                    graph = drop_identities(make_fx(step, tracing_mode="real")(params, buffers, xb, yb))
            except Exception as err:  # noqa: BLE001: anything the tracer cannot record runs eagerly instead
                logger.info("generic vectorised path: recording failed (%s); running eagerly", err)
                state["failed"] = True
                return eager(params, buffers, xb, yb, grads)
            graphs[key] = graph
        with torch.no_grad():
            losses, member_grads = graph(params, buffers, xb, yb)
        for target, grad in zip((grads[k] for k in params), member_grads, strict=True):
            target.copy_(grad)
        return losses

    return value_and_grad
