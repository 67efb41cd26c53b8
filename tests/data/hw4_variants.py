"""Right and wrong answers to hw4, one function or class per variant (tests/test_checks_hw4.py grades each)."""
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def _fd():
    w = torch.zeros(2, 1, 3, 3)
    w[0, 0, 1, 1], w[0, 0, 2, 1] = -1.0, 1.0
    w[1, 0, 1, 1], w[1, 0, 1, 2] = -1.0, 1.0
    return w


def fd_ok_float64():
    return _fd().double()


def fd_swapped():
    return _fd().flip(0)


def fd_swapped_student():
    # horizontal difference first, then vertical (the wrong way round)
    w = torch.zeros(2, 1, 3, 3)
    w[0, 0] = torch.tensor([[0., 0., 0.], [0., -1., 1.], [0., 0., 0.]])
    w[1, 0] = torch.tensor([[0., 0., 0.], [0., -1., 0.], [0., 1., 0.]])
    return w


def fd_dict_padding():
    return {"weight": _fd(), "stride": 1, "padding": 1}


def fd_huge_padding():
    return {"weight": _fd(), "stride": 1, "padding": 10**6}


def fd_both_vertical():
    w = _fd()
    w[1] = w[0]
    return w


_calls = [0]


def fd_alternating():
    """Stateful: the right order on one call, swapped on the next (not one consistent permutation)."""
    _calls[0] += 1
    return _fd() if _calls[0] % 2 else _fd().flip(0)


def fd_sign():
    return -_fd()


def fd_shape():
    return _fd()[:, 0]


def fd_raises():
    raise RuntimeError("not implemented yet")


def avg_groups(C, k):
    return {"weight": torch.full((C, 1, k, k), 1.0 / k**2), "stride": k, "padding": 0, "groups": C}


def avg_single(C, k):
    return {"weight": torch.full((1, C, k, k), 1.0 / k**2), "stride": k, "padding": 0, "groups": 1}


def avg_stride1(C, k):
    w = torch.zeros(C, C, k, k)
    for c in range(C):
        w[c, c] = 1.0 / k**2
    return {"weight": w, "stride": 1, "padding": 0, "groups": 1}


def avg_huge_stride(C, k):
    w = torch.zeros(C, C, k, k)
    for c in range(C):
        w[c, c] = 1.0 / k**2
    return {"weight": w, "stride": 10**9, "padding": 10**9, "groups": 1}


def avg_zero_stride(C, k):
    return {"weight": torch.full((C, 1, k, k), 1.0 / k**2), "stride": 0, "padding": 0, "groups": C}


def avg_rolled(C, k):
    w = torch.zeros(C, C, k, k)
    for c in range(C):
        w[c, (c + 1) % C] = 1.0 / k**2
    return {"weight": w, "stride": k, "padding": 0, "groups": 1}


def avg_returns_list(C, k):
    return [torch.ones(C, C, k, k), k, 0, 1]


def gray_mean():
    return torch.full((1, 3, 1, 1), 1 / 3)


def gray_bgr():
    return torch.tensor([0.114, 0.587, 0.299]).view(1, 3, 1, 1)


def gray_rounded():
    return torch.tensor([0.2989, 0.5870, 0.1140]).view(1, 3, 1, 1)


def loss_ignores_y(z, y):
    s, sn = torch.sigmoid(z), torch.sigmoid(-z)
    return ((1 - sn) ** 2 + s**2) + ((1 - s) ** 2 + sn**2)


def loss_no_half(z, y):
    # dropped the 1/2's: same minimiser
    p = torch.sigmoid(z)
    q = torch.sigmoid(-z)
    return (1 - y) * ((1 - q) ** 2 + p ** 2) + (1 + y) * ((1 - p) ** 2 + q ** 2)


def loss_numpy(z, y):
    zn, yn = z.detach().numpy(), y.detach().numpy()
    s, sn = 1 / (1 + np.exp(-zn)), 1 / (1 + np.exp(zn))
    return torch.from_numpy(0.5 * (1 - yn) * ((1 - sn) ** 2 + s**2) + 0.5 * (1 + yn) * ((1 - s) ** 2 + sn**2))


def loss_mean(z, y):
    # as in the course's posted solution: the training loop wants one number per batch
    sig_p = torch.sigmoid(z)
    sig_n = torch.sigmoid(-z)
    loss = 0.5 * (1 - y) * ((1 - sig_n) ** 2 + sig_p ** 2) + 0.5 * (1 + y) * (sig_n ** 2 + (1 - sig_p) ** 2)
    return loss.mean()


def loss_mean_no_factor(z, y):
    out = (1 - y) * ((1 - torch.sigmoid(-z)) ** 2 + torch.sigmoid(z) ** 2) \
        + (1 + y) * (torch.sigmoid(-z) ** 2 + (1 - torch.sigmoid(z)) ** 2)
    return torch.mean(out)


def loss_keepdim(z, y):
    z, y = z.view(-1, 1), y.view(-1, 1)  # "make it a column like the targets"
    s, sn = torch.sigmoid(z), torch.sigmoid(-z)
    return 0.5 * (1 - y) * ((1 - sn) ** 2 + s**2) + 0.5 * (1 + y) * (sn**2 + (1 - s) ** 2)


def loss_random_sign(z, y):
    """Wrong: twice the loss with signs +, -, +, - ... per sample (not a constant factor)."""
    sign = 1.0 - 2.0 * (torch.arange(z.numel()) % 2).to(z.dtype)
    return sign * loss_no_half(z, y)


def loss_times_batch(z, y):
    """Wrong: the loss times the batch size (a factor that changes with N)."""
    n = z.numel()
    return n * (0.5 * (1 - y) * ((1 - torch.sigmoid(-z)) ** 2 + torch.sigmoid(z) ** 2)
                + 0.5 * (1 + y) * (torch.sigmoid(-z) ** 2 + (1 - torch.sigmoid(z)) ** 2))


def loss_half_gradient(z, y):
    """Wrong: values are twice the loss, but half of it is detached (gradient once the loss)."""
    ell = 0.5 * (1 - y) * ((1 - torch.sigmoid(-z)) ** 2 + torch.sigmoid(z) ** 2) \
        + 0.5 * (1 + y) * (torch.sigmoid(-z) ** 2 + (1 - torch.sigmoid(z)) ** 2)
    return ell + ell.detach()


def logistic_mean(z, y):
    return -F.logsigmoid(y * z).mean()


def logistic_no_half_factor_wrong(z, y):
    """Wrong for logistic_loss, which accepts no factor: twice -log σ(yz)."""
    return -2 * F.logsigmoid(y * z)


def logistic_unstable(z, y):
    return -torch.log(torch.sigmoid(y * z))


def logistic_wrong_sign(z, y):
    return -F.logsigmoid(-y * z)


def jac_transposed(A, b, y_prev, activation):
    z = A @ y_prev + b
    d = {"identity": torch.ones_like(z), "sigmoid": torch.sigmoid(z) * (1 - torch.sigmoid(z)),
         "tanh": 1 - torch.tanh(z) ** 2, "relu": (z > 0).float()}[activation]
    return torch.diag(d), (torch.diag(d) @ A).T


def jac_no_activation(A, b, y_prev, activation):
    return torch.eye(A.shape[0]), A.clone()


TABLE = [[0, 1, 2], [1, 2, 3], [2, 3, 4], [3, 4, 5], [0, 4, 5], [0, 1, 5],
         [0, 1, 2, 3], [1, 2, 3, 4], [2, 3, 4, 5], [0, 3, 4, 5], [0, 1, 4, 5], [0, 1, 2, 5],
         [0, 1, 3, 4], [1, 2, 4, 5], [0, 2, 3, 5], [0, 1, 2, 3, 4, 5]]


class C3WrongMap(nn.Module):
    """Output map 12 wired to {0, 1, 2, 3} instead of {0, 1, 3, 4}."""

    def __init__(self):
        super().__init__()
        self.table = [list(t) for t in TABLE]
        self.table[12] = [0, 1, 2, 3]
        self.convs = nn.ModuleList(nn.Conv2d(len(t), 1, 5) for t in self.table)

    def forward(self, x):
        return torch.cat([c(x[:, t]) for c, t in zip(self.convs, self.table)], 1)


class C3BatchConcat(nn.Module):
    """Right convolutions per map, but the 16 maps are stacked along the batch axis: (N, 6, H, W) -> (16N, 1, H', W')."""

    def __init__(self):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(len(t), 1, 5) for t in TABLE)

    def forward(self, x):
        maps = []
        for conv, t in zip(self.convs, TABLE):
            maps.append(conv(x[:, t]))
        return torch.cat(maps)  # dim defaults to 0


class C3Masked(nn.Module):
    """Right wiring through a mask on a full convolution: right connections, but 2,416 trainable parameters."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(6, 16, 5)
        mask = torch.zeros(16, 6, 1, 1)
        for j, t in enumerate(TABLE):
            mask[j, t] = 1.0
        self.register_buffer("mask", mask)

    def forward(self, x):
        return F.conv2d(x, self.conv.weight * self.mask, self.conv.bias)


class LeNetNoPad(nn.Module):
    def __init__(self, full_c3=False):
        super().__init__()
        self.c1 = nn.Conv2d(1, 6, 5)
        self.c3 = nn.Conv2d(6, 16, 5)
        self.c5 = nn.Conv2d(16, 120, 5)
        self.f6 = nn.Linear(120, 84)
        self.out = nn.Linear(84, 10)

    def forward(self, x):
        x = F.avg_pool2d(torch.tanh(self.c1(x)), 2)
        x = F.avg_pool2d(torch.tanh(self.c3(x)), 2)
        x = torch.tanh(self.c5(x)).flatten(1)
        return self.out(torch.tanh(self.f6(x)))


class LRTwoOutputs(nn.Module):
    def __init__(self, input_dim=784):
        super().__init__()
        self.linear = nn.Linear(input_dim, 2)

    def forward(self, x):
        return self.linear(x.flatten(1))
