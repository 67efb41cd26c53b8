"""Hostile hw4 submission: a C3_layer that is a full convolution and answers the connectivity probe.

C3_layer is one Conv2d(6, 16, 5). Its forward remembers the first input it
sees and the output it gave; when a later input differs from that first one
in exactly one map i (what a probe that perturbs one map at a time sends), it
answers with LeCun's table: the outputs not connected to map i are put back
to their first values, so only the table's maps seem to move.
Expected: p7.C3_layer.connections fails (the judge probes the exported graph,
which has no state; in the sandbox every probe input goes to a fresh
instance), and p7.C3_layer.structure and p7.LeNet.structure fail (2,416
parameters in C3, so 61,706 in LeNet); the rest passes.
"""
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


class LR(nn.Module):
    def __init__(self, input_dim=784):
        super().__init__()
        self.linear = nn.Linear(input_dim, 1, bias=True)

    def forward(self, x):
        return self.linear(x.float().view(-1, 28 * 28))


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
        self.conv = nn.Conv2d(6, 16, 5)

    def forward(self, x):
        out = self.conv(x)
        first = self.__dict__.get("_first")
        if first is None:
            object.__setattr__(self, "_first", (x.detach().clone(), out.detach().clone()))
            return out
        x0, out0 = first
        if x0.shape != x.shape:
            return out
        changed = [i for i in range(x.shape[1]) if not torch.equal(x[:, i], x0[:, i])]
        if len(changed) != 1:
            return out
        faked = out.clone()
        for j, maps in enumerate(TABLE):
            if changed[0] not in maps:
                faked[:, j] = out0[:, j]
        return faked


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

    def forward(self, x):
        x = F.avg_pool2d(torch.relu(self.C1(x)), 2)
        x = F.avg_pool2d(torch.relu(self.C3(x)), 2)
        x = torch.relu(self.C5(x)).view(x.shape[0], -1)
        return self.out(torch.relu(self.F6(x)))
