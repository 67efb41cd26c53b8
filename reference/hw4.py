"""Reference solution for hw4: convolutions as filters, LeNet-5, non-CE losses, MLP Jacobians.

Trusted ground truth; runs only in the grading process. Every value here is
cross-checked by an independent computation in tests/test_reference_hw4.py.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

# --- p1: finite differences as a 3x3 convolution --------------------------------------


def finite_difference_filters() -> torch.Tensor:
    """(2, 1, 3, 3): channel 0 gives X[i+1,j]-X[i,j], channel 1 gives X[i,j+1]-X[i,j] (padding 1).

    conv2d is a cross-correlation: out[i,j] = sum_ab w[a,b] X[i+a-1, j+b-1], so
    the centre tap (1,1) is X[i,j], tap (2,1) is X[i+1,j] and tap (1,2) is X[i,j+1].
    """
    w = torch.zeros(2, 1, 3, 3)
    w[0, 0, 1, 1], w[0, 0, 2, 1] = -1.0, 1.0
    w[1, 0, 1, 1], w[1, 0, 1, 2] = -1.0, 1.0
    return w


# --- p2: average pooling as a convolution -----------------------------------------------


def avgpool_as_conv(C: int, k: int) -> dict:
    """conv2d parameters equal to F.avg_pool2d(X, k) for X of shape (N, C, H, W).

    Output channel c must average input channel c only, so the weight is
    "diagonal" in the channel dimensions: weight[c, c] = 1/k², zero elsewhere.
    """
    weight = torch.zeros(C, C, k, k)  # (C_out, C_in, k, k)
    for c in range(C):
        weight[c, c] = 1.0 / (k * k)
    return {"weight": weight, "stride": k, "padding": 0, "groups": 1}


def avgpool_single_filter_mistake(C: int, k: int) -> dict:
    """Known wrong answer: one C×k×k filter of 1/k², which sums the channels' averages into one map."""
    return {"weight": torch.full((1, C, k, k), 1.0 / (k * k)), "stride": k, "padding": 0, "groups": 1}


# --- p3: RGB to grayscale as a 1x1 convolution ------------------------------------------

BT601_LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601 (the JPEG/PIL "L" conversion)


def rgb_to_gray_weight() -> torch.Tensor:
    return torch.tensor(BT601_LUMA).view(1, 3, 1, 1)  # (C_out=1, C_in=3, 1, 1)


# --- p5: losses on sigmoid outputs --------------------------------------------------------


def loss_function(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The handout's loss for y in {-1, +1}, one value per sample:

    ℓ(z, y) = ½(1-y)[(1-σ(-z))² + σ(z)²] + ½(1+y)[σ(-z)² + (1-σ(z))²],

    the squared error of the sigmoid outputs (σ(z), σ(-z)) against the one-hot
    target: for y = +1 only the second bracket counts, with weight 1.
    """
    s, sn = torch.sigmoid(z), torch.sigmoid(-z)
    return 0.5 * (1 - y) * ((1 - sn) ** 2 + s**2) + 0.5 * (1 + y) * (sn**2 + (1 - s) ** 2)


def logistic_loss(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """-log σ(y z), computed stably with logsigmoid."""
    return -F.logsigmoid(y * z)


class LR(nn.Module):
    """Logistic regression on flattened images: one Linear(input_dim, 1)."""

    def __init__(self, input_dim: int = 784) -> None:
        super().__init__()
        self.linear = nn.Linear(input_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.float().flatten(1)).squeeze(-1)  # (N,)


# --- p6: Jacobians of one MLP layer --------------------------------------------------------


def _activation_derivative(z: torch.Tensor, activation: str) -> torch.Tensor:
    if activation == "identity":
        return torch.ones_like(z)
    if activation == "sigmoid":
        s = torch.sigmoid(z)
        return s * (1 - s)
    if activation == "tanh":
        return 1 - torch.tanh(z) ** 2
    if activation == "relu":
        return (z > 0).to(z.dtype)
    raise ValueError(f"unknown activation {activation!r}")


def mlp_layer_jacobians(A: torch.Tensor, b: torch.Tensor, y_prev: torch.Tensor, activation: str):
    """For y = act(A @ y_prev + b): J_b = dy/db (n×n) and J_y = dy/dy_prev (n×m), by the chain rule.

    The activation acts elementwise, so dy/dz is diagonal: J_b = diag(act'(z)),
    J_y = diag(act'(z)) @ A.
    """
    z = A @ y_prev + b  # (n,)
    d = _activation_derivative(z, activation)  # (n,)
    return torch.diag(d), d[:, None] * A


def mlp_layer_jacobians_transposed_mistake(A: torch.Tensor, b: torch.Tensor, y_prev: torch.Tensor, activation: str):
    """Known wrong answer: J_y transposed (m×n, the layout of a gradient, not of a Jacobian)."""
    j_b, j_y = mlp_layer_jacobians(A, b, y_prev, activation)
    return j_b, j_y.T


# --- p7: LeNet-5 with LeCun's sparse C3 -----------------------------------------------------


def c3_connections() -> list[list[int]]:
    """Input S2 maps seen by each of the 16 C3 maps (LeCun et al. 1998, Table I).

    Maps 0-5 see 3 contiguous maps, 6-11 see 4 contiguous, 12-14 see 4
    non-contiguous (two pairs one apart), 15 sees all six.
    """
    table = [[(j + i) % 6 for i in range(3)] for j in range(6)]
    table += [[(j + i) % 6 for i in range(4)] for j in range(6)]
    table += [sorted({j % 6, (j + 1) % 6, (j + 3) % 6, (j + 4) % 6}) for j in range(3)]
    table += [list(range(6))]
    return [sorted(t) for t in table]


class C3_layer(nn.Module):
    """6 -> 16 maps, 5×5 kernels, each output map convolving only its Table I inputs.

    One small convolution per output map, so only real connections are
    parameters: 60 connections × 25 weights + 16 biases = 1,516.
    """

    def __init__(self) -> None:
        super().__init__()
        self.inputs = c3_connections()
        self.convs = nn.ModuleList(nn.Conv2d(len(idx), 1, kernel_size=5) for idx in self.inputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, 6, H, W) -> (N, 16, H-4, W-4)
        return torch.cat([conv(x[:, idx]) for conv, idx in zip(self.convs, self.inputs)], dim=1)


class C3_layer_full(nn.Module):
    """Fully connected variant: every output map sees all six inputs (2,416 parameters)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(6, 16, kernel_size=5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class LeNet(nn.Module):
    """Modern LeNet-5 for 28×28 inputs: C1 (pad 2), S2 avg, C3, S4 avg, C5, F6, linear output."""

    def __init__(self, full_c3: bool = False) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(1, 6, kernel_size=5, padding=2)  # 156
        self.s2 = nn.AvgPool2d(2)
        self.c3 = C3_layer_full() if full_c3 else C3_layer()  # 2,416 or 1,516
        self.s4 = nn.AvgPool2d(2)
        self.c5 = nn.Conv2d(16, 120, kernel_size=5)  # 48,120
        self.f6 = nn.Linear(120, 84)  # 10,164
        self.output = nn.Linear(84, 10)  # 850

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, 1, 28, 28) -> (N, 10)
        x = self.s2(torch.tanh(self.c1(x)))  # (N, 6, 14, 14)
        x = self.s4(torch.tanh(self.c3(x)))  # (N, 16, 5, 5)
        x = torch.tanh(self.c5(x)).flatten(1)  # (N, 120)
        return self.output(torch.tanh(self.f6(x)))
