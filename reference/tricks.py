"""Reference solution of assignment ``tricks``: training tricks from the lectures.

Names and signatures are exactly those of ASSIGNMENTS.md, so the grader can
call a student's function and this one on the same inputs. Two extra functions
implement known mistakes, so the grader can recognise them and say what went
wrong: ``batchnorm_jacobian_slide_mistake`` (the lecture slide's cross term)
and ``dropout_forward_non_inverted`` (dropout without the 1/keep_prob scale).

Everything is written from the formulas (activations included, not by calling
``F.*``); ``tests/test_reference_tricks.py`` compares each function with
autograd or the matching torch built-in.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import torch
from torch import Tensor, nn

# ---------------------------------------------------------------------------
# Batch normalisation
# ---------------------------------------------------------------------------


class BatchNormCache(NamedTuple):
    """What the backward pass needs from the forward pass (a plain tuple of tensors)."""

    z_hat: Tensor  # (B, D) normalised input (z - mu) / sqrt(var + eps)
    gamma: Tensor  # (D,)
    inv_std: Tensor  # (D,) 1 / sqrt(var + eps)


def batchnorm_forward(z: Tensor, gamma: Tensor, beta: Tensor, eps: float = 1e-5) -> tuple[Tensor, BatchNormCache]:
    """Training-mode batch norm over the batch axis of ``z`` (B, D): ``gamma*(z-mu)/sqrt(var+eps) + beta``."""
    if z.dim() != 2:
        raise ValueError(f"z must have shape (B, D), got {tuple(z.shape)}")
    mu = z.mean(dim=0)  # (D,)
    # Biased (divide by B) variance: normalisation uses the batch's own spread, as torch does.
    var = z.var(dim=0, correction=0)  # (D,)
    inv_std = torch.rsqrt(var + eps)  # (D,)
    z_hat = (z - mu) * inv_std  # (B, D)
    out = gamma * z_hat + beta  # (B, D)
    return out, BatchNormCache(z_hat, gamma, inv_std)


def batchnorm_backward(dout: Tensor, cache: BatchNormCache | Sequence[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients ``(dz, dgamma, dbeta)`` of the forward pass, in closed form.

    With u = z_hat and g = dout*gamma, du_j/dz_i = inv_std*(delta_ij - 1/B - u_i u_j / B)
    (see ``batchnorm_jacobian``), so dz = inv_std/B * (B g - sum(g) - u * sum(g u)).
    The formula is exact for any eps, because u already contains eps.
    """
    z_hat, gamma, inv_std = cache
    batch = dout.shape[0]
    dbeta = dout.sum(dim=0)  # (D,)
    dgamma = (dout * z_hat).sum(dim=0)  # (D,)
    g = dout * gamma  # (B, D) gradient w.r.t. z_hat
    dz = inv_std / batch * (batch * g - g.sum(dim=0) - z_hat * (g * z_hat).sum(dim=0))  # (B, D)
    return dz, dgamma, dbeta


def _standardise_1d(z: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    if z.dim() != 1:
        raise ValueError(f"z must have shape (B,), got {tuple(z.shape)}")
    inv_std = torch.rsqrt(z.var(correction=0) + eps)  # ()
    return (z - z.mean()) * inv_std, inv_std  # (B,), ()


def batchnorm_jacobian(z: Tensor, eps: float = 1e-5) -> Tensor:
    """``J[j, i] = du_j/dz_i`` for ``u = (z - mu)/sqrt(var + eps)``, z of shape (B,).

    J[j, i] = (delta_ij - 1/B)/sqrt(var+eps) - (z_i-mu)(z_j-mu) / (B (var+eps)^{3/2}):
    the second term comes from var depending on z_i, and it is symmetric in i, j.
    """
    u, inv_std = _standardise_1d(z, eps)  # (B,), ()
    batch = z.shape[0]
    eye = torch.eye(batch, dtype=z.dtype, device=z.device)  # (B, B)
    return inv_std * (eye - 1.0 / batch - torch.outer(u, u) / batch)  # (B, B)


def batchnorm_jacobian_slide_mistake(z: Tensor, eps: float = 1e-5) -> Tensor:
    """The lecture slide's WRONG Jacobian, kept so the grader can recognise it.

    The slide writes the cross term as -(z_i-mu)^2 / (B (var+eps)^{3/2}), i.e. it
    uses z_i twice where one factor should be z_j; the result depends on the
    column only and is not symmetric. The diagonal agrees with the right answer.
    """
    u, inv_std = _standardise_1d(z, eps)  # (B,), ()
    batch = z.shape[0]
    eye = torch.eye(batch, dtype=z.dtype, device=z.device)  # (B, B)
    cross = (u * u).expand(batch, batch) / batch  # (B, B): row j, column i holds u_i^2 / B
    return inv_std * (eye - 1.0 / batch - cross)


def _stack(values: Tensor | Sequence[Tensor] | Sequence[float]) -> Tensor:
    if isinstance(values, Tensor):
        return values
    return torch.stack([torch.as_tensor(v) for v in values])


def bn_inference_stats(
    batch_means: Tensor | Sequence[Tensor] | Sequence[float],
    batch_vars: Tensor | Sequence[Tensor] | Sequence[float],
    B: int,
) -> tuple[Tensor, Tensor]:
    """Population statistics for inference from K training batches of size B.

    ``batch_means`` and ``batch_vars`` are (K, ...) or K tensors/floats; the
    variances are the biased ones used in training, so B/(B-1) turns their mean
    into an unbiased estimate of the population variance.
    """
    if B < 2:
        raise ValueError(f"B must be at least 2 for an unbiased variance, got {B}")
    means = _stack(batch_means)  # (K, ...)
    variances = _stack(batch_vars)  # (K, ...)
    return means.mean(dim=0), B / (B - 1) * variances.mean(dim=0)


# ---------------------------------------------------------------------------
# Dropout
# ---------------------------------------------------------------------------


def _check_keep_prob(keep_prob: float) -> None:
    if not 0.0 < keep_prob <= 1.0:
        raise ValueError(f"keep_prob must be in (0, 1], got {keep_prob}")


def _keep_mask(x: Tensor, keep_prob: float, generator: torch.Generator | None) -> Tensor:
    # Uniform draws on the generator's device, then moved: same mask for a given seed everywhere.
    device = generator.device if generator is not None else x.device
    return (torch.rand(x.shape, generator=generator, device=device) < keep_prob).to(x.device)  # same shape as x


def dropout_forward(x: Tensor, keep_prob: float, train: bool, generator: torch.Generator | None = None) -> Tensor:
    """Inverted dropout: in training keep each unit with probability keep_prob and scale by 1/keep_prob.

    The scale keeps E[y] = x, so evaluation is the identity.
    """
    _check_keep_prob(keep_prob)
    if not train:
        return x  # draws nothing, so evaluation leaves the generator's state alone
    return x * _keep_mask(x, keep_prob, generator) / keep_prob


def dropout_forward_non_inverted(
    x: Tensor, keep_prob: float, train: bool, generator: torch.Generator | None = None
) -> Tensor:
    """KNOWN MISTAKE for the grader to recognise: dropout without the 1/keep_prob scale.

    Classic (non-inverted) dropout scales by keep_prob at test time instead;
    the spec asks for inverted dropout. Draws the same mask as
    ``dropout_forward`` for the same generator state.
    """
    _check_keep_prob(keep_prob)
    if not train:
        return x * keep_prob
    return x * _keep_mask(x, keep_prob, generator)


# ---------------------------------------------------------------------------
# Regularisation and gradient clipping
# ---------------------------------------------------------------------------


def l2_regularized_update(W: Tensor, grad: Tensor, lr: float, lam: float) -> Tensor:
    """One SGD step on loss + lam/2 * ||W||^2: ``W - lr*(grad + lam*W)`` (a new tensor)."""
    return W - lr * (grad + lam * W)


def clip_by_value(g: Tensor, theta: float) -> Tensor:
    """Clamp every component of ``g`` to [-theta, theta]."""
    if theta <= 0:
        raise ValueError(f"theta must be positive, got {theta}")
    return torch.clamp(g, -theta, theta)


def clip_by_norm(g: Tensor, theta: float) -> Tensor:
    """Rescale ``g`` to norm theta when its (whole-tensor) L2 norm exceeds theta; keeps the direction."""
    if theta <= 0:
        raise ValueError(f"theta must be positive, got {theta}")
    norm = torch.linalg.vector_norm(g)  # ()
    # theta/0 is inf and clamps to 1, so a zero gradient passes through unchanged.
    return g * torch.clamp(theta / norm, max=1.0)


# ---------------------------------------------------------------------------
# Learning-rate schedules
# ---------------------------------------------------------------------------


def power_schedule(t: float, eta0: float, s: float, c: float = 1) -> float:
    """Power scheduling: ``eta0 / (1 + t/s)**c``."""
    return eta0 / (1 + t / s) ** c


def exponential_schedule(t: float, eta0: float, s: float) -> float:
    """Exponential scheduling: ``eta0 * 0.1**(t/s)`` (ten times smaller every s steps)."""
    return eta0 * 0.1 ** (t / s)


class PerformanceScheduler:
    """Multiply the learning rate by ``factor`` after ``patience`` steps in a row without improvement.

    An improvement is a validation loss strictly below the best so far. After a
    reduction the count starts again from zero; the best is kept. This is
    Keras's ReduceLROnPlateau counting; PyTorch's ReduceLROnPlateau reduces one
    step later, so it matches with ``patience - 1``, ``threshold=0``,
    ``threshold_mode="abs"``, ``mode="min"``, ``cooldown=0``, ``eps=0``.
    """

    def __init__(self, eta0: float, factor: float, patience: int) -> None:
        if not 0.0 < factor < 1.0:
            raise ValueError(f"factor must be in (0, 1), got {factor}")
        if patience < 1:
            raise ValueError(f"patience must be at least 1, got {patience}")
        self.lr = eta0
        self.factor = factor
        self.patience = patience
        self.best = math.inf
        self.num_bad = 0

    def step(self, val_loss: float) -> float:
        """Record one validation loss; return the learning rate to use next."""
        if val_loss < self.best:
            self.best = val_loss
            self.num_bad = 0
        else:
            self.num_bad += 1
        if self.num_bad >= self.patience:
            self.lr *= self.factor
            self.num_bad = 0
        return self.lr

    def __repr__(self) -> str:
        return (f"PerformanceScheduler(lr={self.lr:g}, factor={self.factor}, patience={self.patience}, "
                f"best={self.best:g}, num_bad={self.num_bad})")


# ---------------------------------------------------------------------------
# Activations (by formula)
# ---------------------------------------------------------------------------


def _selu_constants() -> tuple[float, float]:
    # Klambauer et al. (2017), eq. (14): the alpha and lambda that make mean 0,
    # variance 1 a fixed point of SELU for standard normal inputs.
    e1 = math.erfc(1 / math.sqrt(2))
    e2 = math.erfc(math.sqrt(2))
    alpha = -math.sqrt(2 / math.pi) / (e1 * math.exp(0.5) - 1)
    lam = (1 - e1 * math.sqrt(math.e)) * math.sqrt(2 * math.pi) * (
        2 * e2 * math.e**2 + math.pi * e1**2 * math.e - 2 * (2 + math.pi) * e1 * math.sqrt(math.e) + math.pi + 2
    ) ** -0.5
    return alpha, lam


SELU_ALPHA, SELU_LAMBDA = _selu_constants()  # ~1.6733, ~1.0507


def relu(x: Tensor) -> Tensor:
    """max(0, x); gradient 0 at x = 0 and NaN kept, as in torch."""
    return torch.where(x <= 0, torch.zeros_like(x), x)


def leaky_relu(x: Tensor, alpha: float = 0.01) -> Tensor:
    """x for x > 0, alpha*x otherwise."""
    return torch.where(x > 0, x, alpha * x)


def _exp_branch(x: Tensor, alpha: float) -> Tensor:
    # Zero the positive inputs before expm1: the branch not taken must not
    # overflow to inf, or its zero gradient times inf turns the where() gradient
    # into NaN. where() rather than clamp(max=0), whose gradient at exactly 0 is
    # 0; torch's elu uses this branch at 0, with gradient alpha.
    safe = torch.where(x > 0, torch.zeros_like(x), x)
    return alpha * torch.expm1(safe)


def elu(x: Tensor, alpha: float = 1.0) -> Tensor:
    """x for x > 0, alpha*(exp(x) - 1) otherwise."""
    return torch.where(x > 0, x, _exp_branch(x, alpha))


def selu(x: Tensor) -> Tensor:
    """lambda * elu(x, alpha) with the self-normalising constants SELU_LAMBDA, SELU_ALPHA."""
    return SELU_LAMBDA * torch.where(x > 0, x, _exp_branch(x, SELU_ALPHA))


# ---------------------------------------------------------------------------
# Early stopping and transfer learning
# ---------------------------------------------------------------------------


class EarlyStopping:
    """Say stop once ``patience`` steps in a row fail to improve on the best by more than ``min_delta``.

    A step improves when ``val_loss < best - min_delta``; only then does ``best``
    move (the Keras / PyTorch Lightning convention, and PyTorch's
    ReduceLROnPlateau with ``threshold_mode="abs"``).
    """

    def __init__(self, patience: int, min_delta: float = 0.0) -> None:
        if patience < 1:
            raise ValueError(f"patience must be at least 1, got {patience}")
        if min_delta < 0:
            raise ValueError(f"min_delta must be non-negative, got {min_delta}")
        self.patience = patience
        self.min_delta = min_delta
        self.best = math.inf
        self.num_bad = 0

    def step(self, val_loss: float) -> bool:
        """Record one validation loss; return True when training should stop."""
        if val_loss < self.best - self.min_delta:
            self.best = val_loss
            self.num_bad = 0
        else:
            self.num_bad += 1
        return self.num_bad >= self.patience

    def __repr__(self) -> str:
        return (f"EarlyStopping(patience={self.patience}, min_delta={self.min_delta}, best={self.best:g}, "
                f"num_bad={self.num_bad})")


def freeze_for_transfer(model: nn.Module, n_trainable: int) -> nn.Module:
    """Freeze every parameter except those of the last ``n_trainable`` children that have parameters.

    Children without parameters (ReLU, pooling, dropout) are skipped when
    counting from the end. Works in place and returns ``model`` for chaining.
    """
    with_params = [child for child in model.children() if next(child.parameters(), None) is not None]
    if not 0 <= n_trainable <= len(with_params):
        raise ValueError(
            f"n_trainable must be between 0 and {len(with_params)} (the children with parameters), got {n_trainable}"
        )
    for p in model.parameters():
        p.requires_grad_(False)
    for child in with_params[len(with_params) - n_trainable:]:
        for p in child.parameters():
            p.requires_grad_(True)
    return model


# ---------------------------------------------------------------------------
# Divergences
# ---------------------------------------------------------------------------


def l2_divergence(y: Tensor, d: Tensor) -> Tensor:
    """``0.5 * sum((y - d)**2)`` over all elements."""
    return 0.5 * ((y - d) ** 2).sum()


def kl_divergence(y: Tensor, d: Tensor) -> Tensor:
    """``sum d log d - sum d log y`` over all elements, with 0 log 0 = 0 (d is the target)."""
    # xlogy(0, anything) is 0, which is exactly the 0 log 0 = 0 convention,
    # also where y is 0; d > 0 with y = 0 gives +inf, as it should.
    return (torch.xlogy(d, d) - torch.xlogy(d, y)).sum()
