"""Right and wrong answers to tricks, one function or class per variant (tests/test_checks_tricks.py grades each)."""
import copy
import math

import torch
import torch.nn.functional as F


# --- batch norm ----------------------------------------------------------------------------

class Cache:
    """A cache that is not plain data: it must never need to leave the sandbox."""

    def __init__(self, **kw):
        self.__dict__.update(kw)


def bn_forward_objcache(z, gamma, beta, eps=1e-5):
    mu = z.mean(0)
    var = z.var(0, unbiased=False)
    zhat = (z - mu) / torch.sqrt(var + eps)
    return gamma * zhat + beta, Cache(zhat=zhat, gamma=gamma, inv=1 / torch.sqrt(var + eps))


def bn_forward_unbiased(z, gamma, beta, eps=1e-5):
    mu = z.mean(0)
    var = z.var(0)  # unbiased: divides by B - 1
    zhat = (z - mu) / torch.sqrt(var + eps)
    return gamma * zhat + beta, Cache(zhat=zhat, gamma=gamma, inv=1 / torch.sqrt(var + eps))


def bn_forward_out_only(z, gamma, beta, eps=1e-5):
    return bn_forward_objcache(z, gamma, beta, eps)[0]


def bn_backward_objcache(dout, cache):
    B = dout.shape[0]
    g = dout * cache.gamma
    dz = cache.inv / B * (B * g - g.sum(0) - cache.zhat * (g * cache.zhat).sum(0))
    return dz, (dout * cache.zhat).sum(0), dout.sum(0)


def bn_backward_no_var_term(dout, cache):
    B = dout.shape[0]
    g = dout * cache.gamma
    dz = cache.inv / B * (B * g - g.sum(0))
    return dz, (dout * cache.zhat).sum(0), dout.sum(0)


def bn_backward_dgamma_wrong(dout, cache):
    dz, _, dbeta = bn_backward_objcache(dout, cache)
    return dz, dout.sum(0), dbeta


# CS231n-style batch norm written with NumPy: right on arrays, it raises on torch tensors.

def bn_forward_numpy(x, gamma, beta, eps=1e-5):
    import numpy as np

    sample_mean = np.mean(x, axis=0)
    sample_var = np.var(x, axis=0)
    x_hat = (x - sample_mean) / np.sqrt(sample_var + eps)
    out = gamma * x_hat + beta
    cache = (x, x_hat, sample_mean, sample_var, gamma, beta, eps)
    return out, cache


def bn_backward_numpy(dout, cache):
    import numpy as np

    x, x_hat, mu, var, gamma, beta, eps = cache
    N = x.shape[0]
    dbeta = np.sum(dout, axis=0)
    dgamma = np.sum(dout * x_hat, axis=0)
    dx_hat = dout * gamma
    dvar = np.sum(dx_hat * (x - mu) * -0.5 * (var + eps) ** -1.5, axis=0)
    dmu = np.sum(-dx_hat / np.sqrt(var + eps), axis=0) + dvar * np.mean(-2.0 * (x - mu), axis=0)
    dx = dx_hat / np.sqrt(var + eps) + dvar * 2.0 * (x - mu) / N + dmu / N
    return dx, dgamma, dbeta


def bn_backward_numpy_no_dvar(dout, cache):
    import numpy as np

    x, x_hat, mu, var, gamma, beta, eps = cache
    N = x.shape[0]
    dx_hat = dout * gamma
    dx = dx_hat / np.sqrt(var + eps) - np.sum(dx_hat, axis=0) / (N * np.sqrt(var + eps))
    return dx, np.sum(dout * x_hat, axis=0), np.sum(dout, axis=0)


def bn_forward_numpy_unbiased(x, gamma, beta, eps=1e-5):
    import numpy as np

    mu = np.mean(x, axis=0)
    var = np.var(x, axis=0, ddof=1)
    x_hat = (x - mu) / np.sqrt(var + eps)
    return gamma * x_hat + beta, (x, x_hat, mu, var, gamma, beta, eps)


def bn_forward_broken_everywhere(x, gamma, beta, eps=1e-5):
    import numpy as np

    return np.mean(x, axis=0, dtype="banana"), None


def jac_numpy(z, eps=1e-5):
    import numpy as np

    B = z.shape[0]
    d = z - np.mean(z)
    v = np.var(z) + eps
    return (np.eye(B) - 1.0 / B) / np.sqrt(v) - np.outer(d, d) / (B * v ** 1.5)


def jac_slide(z, eps=1e-5):
    B = z.shape[0]
    d = z - z.mean()
    v = z.var(unbiased=False) + eps
    return (torch.eye(B, dtype=z.dtype) - 1 / B) / v.sqrt() - (d**2).expand(B, B) / (B * v**1.5)


def jac_autograd(z, eps=1e-5):
    def u(t):
        return (t - t.mean()) / torch.sqrt(t.var(unbiased=False) + eps)
    return torch.autograd.functional.jacobian(u, z)


def jac_no_cross(z, eps=1e-5):
    B = z.shape[0]
    return (torch.eye(B, dtype=z.dtype) - 1 / B) / torch.sqrt(z.var(unbiased=False) + eps)


def inf_no_correction(batch_means, batch_vars, B):
    return batch_means.mean(0), batch_vars.mean(0)


def inf_ok_loop(batch_means, batch_vars, B):
    K = batch_means.shape[0]
    mu = sum(batch_means[k] for k in range(K)) / K
    var = sum(batch_vars[k] for k in range(K)) / K
    return mu, var * (B / (B - 1))


# --- dropout -------------------------------------------------------------------------------

def dropout_ok(x, keep_prob, train, generator=None):
    if not train:
        return x
    return x * torch.bernoulli(torch.full(x.shape, keep_prob), generator=generator) / keep_prob


def dropout_non_inverted(x, keep_prob, train, generator=None):
    if not train:
        return x * keep_prob
    return x * (torch.rand(x.shape, generator=generator) < keep_prob)


def dropout_drop_prob(x, keep_prob, train, generator=None):
    # keeps with probability 1 - keep_prob: keep_prob read as a drop probability
    if not train:
        return x
    return x * (torch.rand(x.shape, generator=generator) >= keep_prob) / keep_prob


def dropout_fixed_mask(x, keep_prob, train, generator=None):
    if not train:
        return x
    g = torch.Generator().manual_seed(0)
    return x * (torch.rand(x.shape, generator=g) < keep_prob) / keep_prob


def dropout_ignores_generator(x, keep_prob, train, generator=None):
    if not train:
        return x
    return x * (torch.rand(x.shape) < keep_prob) / keep_prob


def dropout_no_generator_param(x, keep_prob, train):
    if not train:
        return x
    return x * (torch.rand(x.shape) < keep_prob) / keep_prob


def dropout_eval_scaled(x, keep_prob, train, generator=None):
    if not train:
        return x * keep_prob
    return dropout_ok(x, keep_prob, train, generator)


# --- regularisation, clipping, schedules ------------------------------------------------------

def l2_forgets_lr(W, grad, lr, lam):
    return W - lr * grad - lam * W


def clip_norm_ok(g, theta):
    return g * min(1.0, theta / float(g.norm()))


def clip_norm_always(g, theta):
    return g * theta / g.norm()


def clip_norm_as_value(g, theta):
    return g.clamp(-theta, theta)


def power_default_c2(t, eta0, s, c=2):
    return eta0 / (1 + t / s) ** c


def exp_natural(t, eta0, s):
    return eta0 * math.exp(-t / s)


class PerfNonStrict:
    def __init__(self, eta0, factor, patience):
        self.lr, self.factor, self.patience, self.best, self.bad = eta0, factor, patience, math.inf, 0

    def step(self, val_loss):
        if val_loss <= self.best:
            self.best, self.bad = val_loss, 0
        else:
            self.bad += 1
        if self.bad >= self.patience:
            self.lr, self.bad = self.lr * self.factor, 0
        return self.lr


class PerfTorchCounting:
    """Reduces one step later (bad > patience), as torch's ReduceLROnPlateau counts."""

    def __init__(self, eta0, factor, patience):
        self.lr, self.factor, self.patience, self.best, self.bad = eta0, factor, patience, math.inf, 0

    def step(self, val_loss):
        if val_loss < self.best:
            self.best, self.bad = val_loss, 0
        else:
            self.bad += 1
        if self.bad > self.patience:
            self.lr, self.bad = self.lr * self.factor, 0
        return self.lr


# --- activations ---------------------------------------------------------------------------

def relu_max(x):
    return torch.maximum(x, torch.zeros_like(x))


def leaky_default_wrong(x, alpha=0.1):
    return torch.where(x > 0, x, alpha * x)


def elu_detached(x, alpha=1.0):
    return torch.from_numpy(F.elu(x, alpha).detach().numpy())


def selu_rounded(x):
    return 1.05 * torch.where(x > 0, x, 1.67 * (torch.exp(x) - 1))


def selu_torch(x):
    return torch.selu(x)


# --- early stopping, transfer, divergences ----------------------------------------------------

class EarlyNonStrict:
    def __init__(self, patience, min_delta=0.0):
        self.patience, self.min_delta, self.best, self.bad = patience, min_delta, math.inf, 0

    def step(self, val_loss):
        if val_loss <= self.best - self.min_delta:
            self.best, self.bad = val_loss, 0
        else:
            self.bad += 1
        return self.bad >= self.patience


class EarlyNoMinDelta:
    def __init__(self, patience, min_delta=0.0):
        self.patience, self.best, self.bad = patience, math.inf, 0

    def step(self, val_loss):
        if val_loss < self.best:
            self.best, self.bad = val_loss, 0
        else:
            self.bad += 1
        return self.bad >= self.patience


class EarlySticky:
    """Once it says stop it always says stop: fine, the contract ends at the first True."""

    def __init__(self, patience, min_delta=0.0):
        self.patience, self.min_delta, self.best, self.bad, self.stopped = patience, min_delta, math.inf, 0, False

    def step(self, val_loss):
        if val_loss < self.best - self.min_delta:
            self.best, self.bad = val_loss, 0
        else:
            self.bad += 1
        self.stopped = self.stopped or self.bad >= self.patience
        return self.stopped


def freeze_every_child(model, n_trainable):
    for p in model.parameters():
        p.requires_grad_(False)
    children = list(model.children())
    for child in children[len(children) - n_trainable:] if n_trainable else []:
        for p in child.parameters():
            p.requires_grad_(True)
    return model


def freeze_returns_copy(model, n_trainable):
    model = copy.deepcopy(model)
    with_params = [c for c in model.children() if any(True for _ in c.parameters())]
    for p in model.parameters():
        p.requires_grad = False
    for c in with_params[len(with_params) - n_trainable:] if n_trainable else []:
        for p in c.parameters():
            p.requires_grad = True
    return model


def freeze_only_unfreezes(model, n_trainable):
    with_params = [c for c in model.children() if any(True for _ in c.parameters())]
    for c in with_params[len(with_params) - n_trainable:] if n_trainable else []:
        for p in c.parameters():
            p.requires_grad = True


def kl_naive(y, d):
    return (d * torch.log(d)).sum() - (d * torch.log(y)).sum()


def kl_xlogy(y, d):
    return torch.xlogy(d, d).sum() - torch.xlogy(d, y).sum()


def kl_reversed(y, d):
    return kl_xlogy(d, y)


def l2div_no_half(y, d):
    return ((y - d) ** 2).sum()


def l2div_float(y, d):
    return float(0.5 * ((y - d) ** 2).sum())
