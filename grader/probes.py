"""Functional probes of a module's structure, shared by the judge, the sandbox child and the parent.

The judge runs them on the student's exported graph (the sandbox child on
the student's module when it does not export), the parent on the reference
module, so both sides are measured by the same code.
"""
from __future__ import annotations

from collections.abc import Callable

import torch


def channel_connectivity(model: torch.nn.Module | Callable[[], torch.nn.Module], x: torch.Tensor) -> list[list[bool]]:
    """connected[i][j] is True when changing input channel i changes output channel j (see `channel_probe`)."""
    return channel_probe(model, x)["matrix"]


@torch.no_grad()
def channel_probe(model: torch.nn.Module | Callable[[], torch.nn.Module], x: torch.Tensor) -> dict[str, list]:
    """{"matrix": connected, "output_shape": shape of the output on x}: connected[i][j] is True when changing
    input channel i changes output channel j. The output's shape travels with the table so that a layer
    whose table has the wrong shape can be told why (e.g. maps stacked along the batch axis).

    One input map at a time is replaced by a random shuffle of its own values:
    the probe input has exactly the statistics of the base input (per channel
    mean, spread, extremes), so a forward cannot tell the probe from an
    ordinary input by looking at its numbers. An output map "sees" that
    input when any of its values moves by more than a tolerance scaled to
    the output's magnitude. x: (N, C_in, H, W).

    ``model`` may be a factory instead: then every input (the base and each
    probe) goes to a fresh module from it, so that a module keeping state
    between calls sees one input only. The factory must build identical
    modules (e.g. seed before building).
    """
    fresh = model if not isinstance(model, torch.nn.Module) else None

    def run(inp: torch.Tensor) -> torch.Tensor:
        module = fresh() if fresh is not None else model
        module.eval()
        return module(inp)

    base = run(x)  # (N, C_out, H', W')
    if not isinstance(base, torch.Tensor) or base.dim() < 2:
        raise ValueError("the module must return a tensor of shape (N, C, ...)")
    gen = torch.Generator().manual_seed(1234)
    tol = 1e-6 * (1.0 + float(base.abs().max()))
    matrix: list[list[bool]] = []
    for i in range(x.shape[1]):
        bumped = x.clone()
        values = x[:, i].reshape(-1)  # (N*H*W,)
        bumped[:, i] = values[torch.randperm(values.numel(), generator=gen)].reshape(x[:, i].shape)
        moved = (run(bumped) - base).abs().flatten(2).amax(dim=(0, 2))  # (C_out,)
        matrix.append([bool(m > tol) for m in moved])
    return {"matrix": matrix, "output_shape": [int(s) for s in base.shape]}
