"""Backpropagation run where the code under test lives, so that gradient checks work the
same whether the student's code runs in the test process or in a sandboxed worker."""

from __future__ import annotations

import torch
from torch import nn


def gradients(fn, args, upstream=None):
    """Differentiate ``sum(fn(*args) * upstream)``.

    Args:
        fn: a callable (a function or an ``nn.Module``). When it returns a tuple, its first
            element is the output that is differentiated.
        args: the positional arguments. Every floating-point tensor among them is copied
            with ``requires_grad=True``; everything else is passed through unchanged.
        upstream: the gradient flowing into the output (same shape); ones when ``None``.

    Returns:
        ``(arg_grads, param_grads)``: a list with one entry per argument (the gradient, or
        ``None`` for arguments that are not floating-point tensors or that the output does
        not depend on) and, when ``fn`` is a module, ``{parameter name: gradient or None}``.
    """
    leaves = [
        a.detach().clone().requires_grad_(True) if isinstance(a, torch.Tensor) and a.is_floating_point() else a
        for a in args
    ]
    if isinstance(fn, nn.Module):
        fn.zero_grad(set_to_none=True)
    output = fn(*leaves)
    if isinstance(output, tuple):
        output = output[0]
    if upstream is None:
        upstream = torch.ones_like(output)
    (output * upstream).sum().backward()
    arg_grads = [
        leaf.grad.detach() if isinstance(leaf, torch.Tensor) and leaf.grad is not None else None for leaf in leaves
    ]
    param_grads = {}
    if isinstance(fn, nn.Module):
        param_grads = {
            name: (p.grad.detach().clone() if p.grad is not None else None) for name, p in fn.named_parameters()
        }
        fn.zero_grad(set_to_none=True)
    return arg_grads, param_grads
