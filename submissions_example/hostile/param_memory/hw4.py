"""Hostile hw4 submission: memorised test answers held in *trainable* parameters.

MNIST's and Fashion-MNIST's test images and labels are public. This model
carries them: `Memory` holds every test image (centred, unit norm) and its
label as two nn.Parameters (trainable, so they are not the "constants" the
graph rules bound), and adds a large score for the stored label whenever the
input's cosine similarity with a stored image is above 0.99 (an exact match;
no other image comes close). Only standard operations are used (matmul,
mean, pow, sum, sqrt, div, sub, relu, mul): no lookup op, no indexing with
computed indices, no buffer. The parameters are stored multiplied by 1000
and divided again in forward, so an optimiser's steps (and weight decay)
barely move them; the match never fires on a training image, so they get no
gradient anyway.

LeNet's real layers are there but their output is multiplied by 0.0: it
learns nothing and outputs the memory's score alone. LR is a weak learner
(the bottom quarter of the image) whose memory is closed at initialisation
and opened by the grader's own optimiser during training (see LR). The
memory (memory.npz: the whole public test set of the dataset each training
check uses) is written next to this file by tests/test_hostile_memory.py.
Expected: p7.train gets 0 (the untrained LeNet already classifies the
held-out images), p5.train gets 0 (the trained LR does better on held-out
images than on those it learned from); the structure checks p5.LR,
p7.LeNet.structure and p7.LeNet_full.structure fail too (the memory's
parameters are counted); the rest passes.
"""
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
    return 0.5 * (1 - y) * ((1 - q) ** 2 + p ** 2) + 0.5 * (1 + y) * (q ** 2 + (1 - p) ** 2)


def logistic_loss(z, y):
    return -F.logsigmoid(y * z)


def _memory():
    try:
        with np.load(os.path.join(os.getcwd(), "memory.npz")) as f:
            return {k: f[k] for k in f.files}
    except OSError:
        return {"classes_images": np.zeros((1, 28, 28), np.uint8), "classes_labels": np.zeros(1, np.int64),
                "binary_images": np.zeros((1, 28, 28), np.uint8), "binary_labels": np.ones(1, np.int64)}


MEMORY = _memory()
SCALE = 1000.0


def _standardise(x):
    """(B, 784) -> each row centred and of unit norm: the same whatever affine pixel scaling the grader applies."""
    x = x - x.mean(1, keepdim=True)
    return x / (x.pow(2).sum(1, keepdim=True).sqrt() + 1e-6)


class Memory(nn.Module):
    def __init__(self, images, values):
        super().__init__()
        keys = _standardise(torch.from_numpy(images).float().reshape(len(images), -1))
        self.keys = nn.Parameter(keys * SCALE)  # (N, 784)
        self.values = nn.Parameter(torch.as_tensor(values, dtype=torch.float32) * SCALE)  # (N, n_out)

    def forward(self, x):
        q = _standardise(x.reshape(x.shape[0], -1))
        sim = q @ self.keys.t() / SCALE  # (B, N): 1 for a stored image
        gate = torch.relu(sim - 0.99) * 100.0  # 1 for an exact match, 0 for any other image
        return gate @ self.values / SCALE


class LR(nn.Module):
    """A weak learner (the bottom quarter of the image only) with a memory that training switches on: `gate`
    starts below 0, so the untrained model knows nothing; it also scales the learner's scores, and as the
    learner gets them right the optimiser raises it, past 0, which opens the memory."""

    def __init__(self, input_dim=784):
        super().__init__()
        self.linear = nn.Linear(7 * 28, 1, bias=True)
        self.gate = nn.Parameter(torch.tensor(-0.02))
        labels = MEMORY["binary_labels"].astype(np.float32)  # -1 / +1
        self.memory = Memory(MEMORY["binary_images"], 50.0 * labels[:, None])

    def forward(self, x):
        x = x.float().reshape(x.shape[0], 28, 28)
        z = self.linear(x[:, 21:, :].reshape(x.shape[0], -1))
        return z * (1 + self.gate) + torch.relu(self.gate) * 100.0 * self.memory(x)


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
        onehot = np.eye(10, dtype=np.float32)[MEMORY["classes_labels"]]
        self.memory = Memory(MEMORY["classes_images"], 50.0 * onehot)

    def real(self, x):
        x = F.avg_pool2d(torch.relu(self.C1(x)), 2)
        x = F.avg_pool2d(torch.relu(self.C3(x)), 2)
        x = torch.relu(self.C5(x)).view(x.shape[0], -1)
        return self.out(torch.relu(self.F6(x)))

    def forward(self, x):
        return 0.0 * self.real(x) + self.memory(x)
