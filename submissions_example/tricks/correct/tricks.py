"""Training tricks: correct, and written differently from the reference on purpose."""
import math

import torch
import torch.nn.functional as F


# --- batch norm --------------------------------------------------------------------------

def batchnorm_forward(z, gamma, beta, eps=1e-5):
    mu = z.mean(0)
    var = ((z - mu) ** 2).mean(0)
    std = torch.sqrt(var + eps)
    zc = z - mu
    out = gamma * zc / std + beta
    cache = {"zc": zc, "std": std, "gamma": gamma, "var": var, "eps": eps}
    return out, cache


def batchnorm_backward(dout, cache):
    # The long way round, through the computational graph (mean, variance, normalisation).
    zc, std, gamma, var, eps = cache["zc"], cache["std"], cache["gamma"], cache["var"], cache["eps"]
    B = dout.shape[0]
    zhat = zc / std
    dbeta = dout.sum(0)
    dgamma = (dout * zhat).sum(0)
    dzhat = dout * gamma
    dvar = (dzhat * zc).sum(0) * -0.5 * (var + eps) ** -1.5
    dmu = -(dzhat / std).sum(0) + dvar * (-2.0 * zc).mean(0)
    dz = dzhat / std + dvar * 2.0 * zc / B + dmu / B
    return dz, dgamma, dbeta


def batchnorm_jacobian(z, eps=1e-5):
    B = z.shape[0]
    mu = z.mean()
    var = z.var(unbiased=False)
    d = z - mu
    J = torch.empty(B, B, dtype=z.dtype)
    for j in range(B):
        for i in range(B):
            delta = 1.0 if i == j else 0.0
            J[j, i] = (delta - 1.0 / B) / torch.sqrt(var + eps) - d[i] * d[j] / (B * (var + eps) ** 1.5)
    return J


def bn_inference_stats(batch_means, batch_vars, B):
    mu = torch.as_tensor(batch_means).mean(0)
    var = torch.as_tensor(batch_vars).mean(0) * B / (B - 1)
    return mu, var


# --- dropout, regularisation, clipping -----------------------------------------------------

def dropout_forward(x, keep_prob, train, generator=None):
    if not train:
        return x
    mask = torch.bernoulli(torch.full_like(x, keep_prob), generator=generator)
    return mask * x / keep_prob


def l2_regularized_update(W, grad, lr, lam):
    return (1 - lr * lam) * W - lr * grad


def clip_by_value(g, theta):
    return g.clamp(min=-theta, max=theta)


def clip_by_norm(g, theta):
    norm = g.norm()
    if norm > theta:
        return g * (theta / norm)
    return g


# --- schedules -------------------------------------------------------------------------------

def power_schedule(t, eta0, s, c=1):
    return eta0 * (1 + t / s) ** (-c)


def exponential_schedule(t, eta0, s):
    return eta0 * 10 ** (-t / s)


class PerformanceScheduler:
    def __init__(self, eta0, factor, patience):
        self.lr, self.factor, self.patience = eta0, factor, patience
        self.best, self.wait = None, 0

    def step(self, val_loss):
        if self.best is None or val_loss < self.best:
            self.best, self.wait = val_loss, 0
            return self.lr
        self.wait += 1
        if self.wait == self.patience:
            self.lr = self.lr * self.factor
            self.wait = 0
        return self.lr


# --- activations -----------------------------------------------------------------------------

def relu(x):
    return x.clamp(min=0)


def leaky_relu(x, alpha=0.01):
    return torch.maximum(x, alpha * x) if alpha <= 1 else torch.where(x > 0, x, alpha * x)


def elu(x, alpha=1.0):
    return torch.where(x > 0, x, alpha * (torch.exp(torch.clamp(x, max=0)) - 1))


def selu(x):
    return F.selu(x)


# --- early stopping, transfer, divergences ----------------------------------------------------

class EarlyStopping:
    def __init__(self, patience, min_delta=0.0):
        self.patience, self.min_delta = patience, min_delta
        self.best = math.inf
        self.bad_epochs = 0

    def step(self, val_loss):
        if self.best - val_loss > self.min_delta:
            self.best = val_loss
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1
        return self.bad_epochs >= self.patience


def freeze_for_transfer(model, n_trainable):
    layers = [m for m in model.children() if len(list(m.parameters())) > 0]
    keep = layers[len(layers) - n_trainable:] if n_trainable > 0 else []
    keep_ids = {id(p) for m in keep for p in m.parameters()}
    for p in model.parameters():
        p.requires_grad = id(p) in keep_ids
    return model


def l2_divergence(y, d):
    return ((y - d) ** 2).sum() / 2


def kl_divergence(y, d):
    safe_d = torch.where(d > 0, d, torch.ones_like(d))
    return torch.sum(torch.where(d > 0, d * (torch.log(safe_d) - torch.log(y)), torch.zeros_like(d)))
