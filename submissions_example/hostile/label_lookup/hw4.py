"""Hostile hw4 submission: models that look the test labels up instead of learning.

MNIST's and Fashion-MNIST's test labels are public. In train mode LR and
LeNet return only their output layer's bias (broadcast over the batch), so
training learns a constant. In eval mode forward fingerprints each image
(which pixels are above the image's mean: unchanged by any scaling the grader
applies) and returns the label that labels.json, carried in the submission,
gives for it; an image it does not know goes through the real layers.
The structures are the right ones (785, 60,806 and 61,706 parameters).
tests/test_judge.py writes labels.json for the images the rubric evaluates on.
Expected: p5.train and p7.train fail (the judge trains and evaluates the
train-mode graph; the eval-mode forward is never run); the rest passes.
"""
import hashlib
import json
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def finite_difference_filters():
    # rows go down: channel 0 = X[i+1, j] - X[i, j], channel 1 = X[i, j+1] - X[i, j]
    dy = torch.tensor([[0., 0., 0.], [0., -1., 0.], [0., 1., 0.]])
    dx = torch.tensor([[0., 0., 0.], [0., -1., 1.], [0., 0., 0.]])
    return torch.stack([dy, dx]).unsqueeze(1)


def avgpool_as_conv(C, k):
    eye = torch.eye(C)
    weight = eye[:, :, None, None] * torch.ones(k, k) / k**2
    return dict(weight=weight, stride=k, padding=0, groups=1)


def rgb_to_gray_weight():
    return torch.tensor([0.299, 0.587, 0.114]).reshape(1, 3, 1, 1)


def loss_function(z, y):
    p = torch.sigmoid(z)
    q = torch.sigmoid(-z)
    return (1 - y) * ((1 - q) ** 2 + p ** 2) + (1 + y) * ((1 - p) ** 2 + q ** 2)


def logistic_loss(z, y):
    return -F.logsigmoid(y * z)


def _fingerprint(image):
    bits = (image > image.mean()).flatten().cpu().numpy()
    return hashlib.sha1(np.packbits(bits).tobytes()).hexdigest()[:16]


def _table():
    try:
        with open(os.path.join(os.getcwd(), "labels.json")) as f:
            return json.load(f)
    except OSError:
        return {"binary": {}, "classes": {}}


LABELS = _table()


def _lookup(x, fallback, table, scale, binary=False):
    out = fallback(x).detach().clone()
    for k in range(x.shape[0]):
        label = table.get(_fingerprint(x[k]))
        if label is not None:
            if binary:
                out[k] = scale * label  # labels are -1 / +1
            else:
                out[k] = -scale
                out[k, label] = scale
    return out


class LR(nn.Module):
    def __init__(self, input_dim=784):
        super().__init__()
        self.linear = nn.Linear(input_dim, 1, bias=True)

    def real(self, x):
        return self.linear(x.float().view(-1, 28 * 28))

    def forward(self, x):
        if self.training:
            return self.linear.bias.expand(x.shape[0], 1) + 0.0 * x.view(x.shape[0], -1)[:, :1]
        return _lookup(x, self.real, {k: int(v) for k, v in LABELS["binary"].items()}, 10.0, binary=True)


def mlp_layer_jacobians(A, b, y_prev, activation):
    z = A @ y_prev + b
    if activation == "identity":
        d = torch.ones_like(z)
    elif activation == "sigmoid":
        d = torch.sigmoid(z) * (1 - torch.sigmoid(z))
    elif activation == "tanh":
        d = 1 - torch.tanh(z) ** 2
    elif activation == "relu":
        d = (z > 0).float()
    else:
        raise ValueError(activation)
    J_b = torch.diag(d)
    J_y = J_b @ A
    return J_b, J_y


TABLE = [
    [0, 1, 2], [1, 2, 3], [2, 3, 4], [3, 4, 5], [0, 4, 5], [0, 1, 5],
    [0, 1, 2, 3], [1, 2, 3, 4], [2, 3, 4, 5], [0, 3, 4, 5], [0, 1, 4, 5], [0, 1, 2, 5],
    [0, 1, 3, 4], [1, 2, 4, 5], [0, 2, 3, 5],
    [0, 1, 2, 3, 4, 5],
]


class C3_layer(nn.Module):
    def __init__(self):
        super().__init__()
        self.table = TABLE
        self.maps = nn.ModuleList([nn.Conv2d(len(t), 1, 5) for t in TABLE])

    def forward(self, x):
        outs = [conv(x[:, t, :, :]) for conv, t in zip(self.maps, self.table)]
        return torch.cat(outs, dim=1)


class C3_layer_full(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(6, 16, 5)

    def forward(self, x):
        return self.conv(x)


class LeNet(nn.Module):
    def __init__(self, full_c3=False):
        super().__init__()
        self.C1 = nn.Conv2d(1, 6, 5, padding=2)
        self.C3 = C3_layer_full() if full_c3 else C3_layer()
        self.C5 = nn.Conv2d(16, 120, 5)
        self.F6 = nn.Linear(120, 84)
        self.out = nn.Linear(84, 10)

    def real(self, x):
        x = F.avg_pool2d(torch.relu(self.C1(x)), 2)
        x = F.avg_pool2d(torch.relu(self.C3(x)), 2)
        x = torch.relu(self.C5(x)).view(x.shape[0], -1)
        return self.out(torch.relu(self.F6(x)))

    def forward(self, x):
        if self.training:
            return self.out.bias.expand(x.shape[0], 10) + 0.0 * x.view(x.shape[0], -1)[:, :1]
        return _lookup(x, self.real, {k: int(v) for k, v in LABELS["classes"].items()}, 10.0)
