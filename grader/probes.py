"""Functional probes of a module's structure, shared by the sandbox child and the parent.

The child runs them on the student's module, the parent on the reference
module, so both sides are measured by the same code.
"""
from __future__ import annotations

import torch


@torch.no_grad()
def channel_connectivity(model: torch.nn.Module, x: torch.Tensor, *, eps: float = 1.0) -> list[list[bool]]:
    """connected[i][j] is True when perturbing input channel i changes output channel j.

    One input map at a time gets a random perturbation; an output map "sees"
    that input when any of its values moves by more than a tolerance scaled to
    the output's magnitude. x: (N, C_in, H, W).
    """
    model.eval()
    base = model(x)  # (N, C_out, H', W')
    if not isinstance(base, torch.Tensor) or base.dim() < 2:
        raise ValueError("the module must return a tensor of shape (N, C, ...)")
    gen = torch.Generator().manual_seed(1234)
    tol = 1e-6 * (1.0 + float(base.abs().max()))
    matrix: list[list[bool]] = []
    for i in range(x.shape[1]):
        bumped = x.clone()
        bumped[:, i] += eps * torch.randn(bumped[:, i].shape, generator=gen, dtype=x.dtype)
        moved = (model(bumped) - base).abs().flatten(2).amax(dim=(0, 2))  # (C_out,)
        matrix.append([bool(m > tol) for m in moved])
    return matrix
