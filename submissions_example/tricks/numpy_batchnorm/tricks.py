"""Training tricks: batch norm in NumPy (CS231n style), the rest in torch."""
import math

import torch
import torch.nn.functional as F


# --- batch norm --------------------------------------------------------------------------
# Adapted from my CS231n assignment 2 (layers.py), which is NumPy throughout.

import numpy as np


def batchnorm_forward(x, gamma, beta, eps=1e-5):
    """
    Forward pass for batch normalization.

    Input:
    - x: Data of shape (N, D)
    - gamma: Scale parameter of shape (D,)
    - beta: Shift paremeter of shape (D,)
    - eps: Constant for numeric stability

    Returns a tuple of:
    - out: of shape (N, D)
    - cache: A tuple of values needed in the backward pass
    """
    sample_mean = np.mean(x, axis=0)
    sample_var = np.var(x, axis=0)
    x_hat = (x - sample_mean) / np.sqrt(sample_var + eps)
    out = gamma * x_hat + beta
    cache = (x, x_hat, sample_mean, sample_var, gamma, beta, eps)
    return out, cache


def batchnorm_backward(dout, cache):
    """
    Backward pass for batch normalization.

    Inputs:
    - dout: Upstream derivatives, of shape (N, D)
    - cache: Variable of intermediates from batchnorm_forward.

    Returns a tuple of:
    - dx: Gradient with respect to inputs x, of shape (N, D)
    - dgamma: Gradient with respect to scale parameter gamma, of shape (D,)
    - dbeta: Gradient with respect to shift parameter beta, of shape (D,)
    """
    x, x_hat, mu, var, gamma, beta, eps = cache
    N = x.shape[0]
    dbeta = np.sum(dout, axis=0)
    dgamma = np.sum(dout * x_hat, axis=0)
    # simplified formula (derived on paper)
    dx = (gamma / (N * np.sqrt(var + eps))) * (N * dout - dbeta - x_hat * dgamma)
    return dx, dgamma, dbeta


def batchnorm_jacobian(z, eps=1e-5):
    B = z.shape[0]
    d = z - np.mean(z)
    v = np.var(z) + eps
    return (np.eye(B) - 1.0 / B) / np.sqrt(v) - np.outer(d, d) / (B * v ** 1.5)


def bn_inference_stats(batch_means, batch_vars, B):
    # running averages as in the lecture: unbiased variance for inference
    mu = np.mean(batch_means, axis=0)
    var = np.mean(batch_vars, axis=0) * B / (B - 1)
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
