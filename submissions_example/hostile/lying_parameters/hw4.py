"""Hostile hw4 submission: wrong models whose parameter lists lie to the grader.

LR is an MLP (784 -> 64 -> 1), C3_layer is a full 6 -> 16 convolution and
LeNet is one Linear(784, 10). Each overrides named_parameters() and
parameters(): when a frame of the grader's code is on the call stack they
report decoy parameters with the counts of the right models (785, 1,516,
60,806, 61,706), otherwise the real ones (so training still works).
Expected: p5.LR, p7.C3_layer.structure, p7.C3_layer.connections,
p7.LeNet.structure and p7.LeNet_full.structure fail (the judge counts the
parameters of the exported graph; in the sandbox they are read from the
module's own tables, never through these methods); the rest passes.
"""
import inspect

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


def _grader_is_asking():
    return any("/grader/" in frame.filename for frame in inspect.stack())


class Liar(nn.Module):
    """Reports `sizes` worth of decoy parameters to the grader."""

    def decoy(self, sizes):
        # object.__setattr__: the decoys are not registered, so nothing but the lie sees them
        object.__setattr__(self, "_decoys", [nn.Parameter(torch.zeros(n)) for n in sizes])

    def named_parameters(self, prefix="", recurse=True, remove_duplicate=True):
        if _grader_is_asking():
            return iter([(f"decoy{i}", p) for i, p in enumerate(self._decoys)])
        return super().named_parameters(prefix, recurse, remove_duplicate)

    def parameters(self, recurse=True):
        for _, p in self.named_parameters():
            yield p


class LR(Liar):
    def __init__(self, input_dim=784):
        super().__init__()
        self.hidden = nn.Linear(input_dim, 64)
        self.linear = nn.Linear(64, 1)
        self.decoy([784, 1])

    def forward(self, x):
        return self.linear(torch.relu(self.hidden(x.float().view(-1, 28 * 28))))


class C3_layer(Liar):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(6, 16, 5)
        self.decoy([1500, 16])

    def forward(self, x):
        return self.conv(x)


class C3_layer_full(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(6, 16, 5)

    def forward(self, x):
        return self.conv(x)


class LeNet(Liar):
    def __init__(self, full_c3=False):
        super().__init__()
        self.fc = nn.Linear(28 * 28, 10)
        self.decoy([61706 if full_c3 else 60806])

    def forward(self, x):
        return self.fc(x.view(x.shape[0], -1))
