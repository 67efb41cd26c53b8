"""HW4 — a submission with typical mistakes: single averaging filter, full C3, transposed Jacobian
(and the loss of p5 without its ½ factors, which the rubric accepts as a constant-factor variant)."""
import torch
import torch.nn as nn
import torch.nn.functional as F


def finite_difference_filters():
    # rows go down: channel 0 = X[i+1, j] - X[i, j], channel 1 = X[i, j+1] - X[i, j]
    dy = torch.tensor([[0., 0., 0.], [0., -1., 0.], [0., 1., 0.]])
    dx = torch.tensor([[0., 0., 0.], [0., -1., 1.], [0., 0., 0.]])
    return torch.stack([dy, dx]).unsqueeze(1)


def avgpool_as_conv(C, k):
    # one filter that averages each k x k window
    return dict(weight=torch.ones(1, C, k, k) / k**2, stride=k, padding=0, groups=1)


def rgb_to_gray_weight():
    return torch.tensor([0.299, 0.587, 0.114]).reshape(1, 3, 1, 1)


def loss_function(z, y):
    # the 1/2's dropped: they do not change the minimiser
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
    J_y = (J_b @ A).T  # gradient layout
    return J_b, J_y


TABLE = [
    [0, 1, 2], [1, 2, 3], [2, 3, 4], [3, 4, 5], [0, 4, 5], [0, 1, 5],
    [0, 1, 2, 3], [1, 2, 3, 4], [2, 3, 4, 5], [0, 3, 4, 5], [0, 1, 4, 5], [0, 1, 2, 5],
    [0, 1, 3, 4], [1, 2, 4, 5], [0, 2, 3, 5],
    [0, 1, 2, 3, 4, 5],
]


class C3_layer(nn.Module):
    # "connect all 6 maps to all 16": a plain convolution
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(6, 16, 5)

    def forward(self, x):
        return self.conv(x)


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
