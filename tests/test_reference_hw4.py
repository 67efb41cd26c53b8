"""Cross-check reference/hw4.py by independent means: explicit loops, torch built-ins, autograd, hand counts, LeCun's table."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import sympy
import torch
import torch.nn.functional as F

from reference import hw4


def test_p1_filters_match_the_finite_differences_computed_by_loops():
    g = torch.Generator().manual_seed(0)
    for h, w in [(4, 5), (9, 3), (28, 28)]:
        x = torch.randn(1, 1, h, w, generator=g, dtype=torch.float64)
        out = F.conv2d(x, hw4.finite_difference_filters().double(), padding=1)
        padded = torch.zeros(h + 1, w + 1, dtype=torch.float64)
        padded[:h, :w] = x[0, 0]  # X is zero outside the image
        for i, j in itertools.product(range(h), range(w)):
            assert out[0, 0, i, j].item() == pytest.approx((padded[i + 1, j] - padded[i, j]).item(), abs=1e-12)
            assert out[0, 1, i, j].item() == pytest.approx((padded[i, j + 1] - padded[i, j]).item(), abs=1e-12)


@pytest.mark.parametrize("C,k", [(1, 2), (3, 2), (4, 3), (2, 5)])
def test_p2_avgpool_as_conv_equals_avg_pool2d(C, k):
    x = torch.randn(2, C, 15, 16, dtype=torch.float64)
    p = hw4.avgpool_as_conv(C, k)
    got = F.conv2d(x, p["weight"].double(), stride=p["stride"], padding=p["padding"], groups=p["groups"])
    # the reference weight is float32 (1/9 is not exact): tolerance of float32 rounding
    torch.testing.assert_close(got, F.avg_pool2d(x, k), rtol=1e-6, atol=1e-7)


def test_p2_known_mistake_really_is_wrong_and_sums_channels():
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    p = hw4.avgpool_single_filter_mistake(3, 2)
    got = F.conv2d(x, p["weight"].double(), stride=2)
    assert got.shape == (2, 1, 4, 4)
    torch.testing.assert_close(got[:, 0], F.avg_pool2d(x, 2).sum(dim=1))


def test_p3_gray_weight_is_bt601_and_maps_three_channels_to_one():
    w = hw4.rgb_to_gray_weight()
    assert w.shape == (1, 3, 1, 1)
    # BT.601 luma: Y = 0.299 R + 0.587 G + 0.114 B; the weights sum to 1 (white stays white)
    assert w.sum().item() == pytest.approx(1.0, abs=1e-6)
    x = torch.rand(2, 3, 5, 5)
    y = F.conv2d(x, w)
    assert y.shape == (2, 1, 5, 5)
    torch.testing.assert_close(y[:, 0], 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])


def _handout_loss_numpy(z, y):
    """The handout's formula written out again in numpy, term by term (σ(t) = 1/(1+e^-t))."""
    sig = lambda t: 1.0 / (1.0 + np.exp(-t))  # noqa: E731
    return (0.5 * (1 - y) * ((1 - sig(-z)) ** 2 + sig(z) ** 2)
            + 0.5 * (1 + y) * (sig(-z) ** 2 + (1 - sig(z)) ** 2))


def test_p5_loss_function_is_the_handouts_formula_values_and_gradients():
    rng = np.random.default_rng(5)
    z = rng.standard_normal(64) * 3
    y = rng.choice([-1.0, 1.0], size=64)
    zt = torch.from_numpy(z).requires_grad_(True)
    got = hw4.loss_function(zt, torch.from_numpy(y))
    np.testing.assert_allclose(got.detach().numpy(), _handout_loss_numpy(z, y), rtol=1e-12, atol=1e-15)
    # gradients against a central finite difference of the numpy formula
    (grad,) = torch.autograd.grad(got.sum(), zt)
    h = 1e-6
    numeric = (_handout_loss_numpy(z + h, y) - _handout_loss_numpy(z - h, y)) / (2 * h)
    np.testing.assert_allclose(grad.numpy(), numeric, rtol=1e-6, atol=1e-9)


def test_p5_loss_function_symbolically_is_the_squared_error_of_the_two_sigmoid_outputs():
    """sympy: for y = +1 ℓ = σ(-z)² + (1-σ(z))², for y = -1 ℓ = (1-σ(-z))² + σ(z)²; both equal 2σ(-z)² resp. 2σ(z)²."""
    zs = sympy.symbols("z", real=True)
    sig = lambda t: 1 / (1 + sympy.exp(-t))  # noqa: E731
    handout = {y: sympy.Rational(1, 2) * (1 - y) * ((1 - sig(-zs)) ** 2 + sig(zs) ** 2)
               + sympy.Rational(1, 2) * (1 + y) * (sig(-zs) ** 2 + (1 - sig(zs)) ** 2) for y in (-1, 1)}
    assert sympy.simplify(handout[1] - 2 * sig(-zs) ** 2) == 0
    assert sympy.simplify(handout[-1] - 2 * sig(zs) ** 2) == 0
    f = sympy.lambdify(zs, handout[1], "math")
    for value in (-3.0, -0.5, 0.0, 1.25, 4.0):
        got = hw4.loss_function(torch.tensor([value], dtype=torch.float64), torch.tensor([1.0], dtype=torch.float64))
        assert got.item() == pytest.approx(f(value), rel=1e-12)


def test_p5_loss_function_is_the_mse_of_sigmoid_outputs_against_one_hot_targets_summed_over_the_two_classes():
    z = torch.randn(50, dtype=torch.float64) * 3
    y = torch.randint(0, 2, (50,)).double() * 2 - 1
    probs = torch.stack([torch.sigmoid(z), torch.sigmoid(-z)], dim=1)  # (N, 2): P(y=+1), P(y=-1)
    onehot = torch.stack([(y > 0).double(), (y < 0).double()], dim=1)
    expected = F.mse_loss(probs, onehot, reduction="none").sum(dim=1)
    torch.testing.assert_close(hw4.loss_function(z, y), expected)


def test_p5_logistic_loss_equals_binary_cross_entropy_with_logits():
    z = torch.randn(50, dtype=torch.float64) * 5
    y = torch.randint(0, 2, (50,)).double() * 2 - 1
    expected = F.binary_cross_entropy_with_logits(z, (y + 1) / 2, reduction="none")
    torch.testing.assert_close(hw4.logistic_loss(z, y), expected)


def test_p5_lr_is_one_linear_layer():
    model = hw4.LR()
    assert sum(p.numel() for p in model.parameters()) == 784 + 1
    assert model(torch.zeros(4, 1, 28, 28)).shape == (4,)


@pytest.mark.parametrize("activation", ["identity", "sigmoid", "tanh", "relu"])
@pytest.mark.parametrize("n,m", [(3, 4), (5, 2), (4, 4)])
def test_p6_jacobians_equal_autograd(activation, n, m):
    act = {"identity": lambda t: t, "sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu}[activation]
    A, b, y0 = (torch.randn(*s, dtype=torch.float64) for s in [(n, m), (n,), (m,)])
    J_b, J_y = hw4.mlp_layer_jacobians(A, b, y0, activation)
    torch.testing.assert_close(J_b, torch.autograd.functional.jacobian(lambda bb: act(A @ y0 + bb), b))
    torch.testing.assert_close(J_y, torch.autograd.functional.jacobian(lambda yy: act(A @ yy + b), y0))


# LeCun et al. 1998, Table I: rows are S2 maps 0-5, columns C3 maps 0-15, X = connected.
LECUN_TABLE_I = """
X   XXX  XXXX XX
XX   XXX  XXXX X
XXX   XXX  X XXX
 XXX  XXXX  X XX
  XXX  XXXX XX X
   XXX  XXXX XXX
"""


def test_p7_c3_connections_are_lecun_table_i():
    rows = [r.ljust(16) for r in LECUN_TABLE_I.strip("\n").splitlines()]
    paper = [[i for i in range(6) if rows[i][j] == "X"] for j in range(16)]
    assert hw4.c3_connections() == paper
    assert sum(len(c) for c in paper) == 60


def test_p7_c3_layer_is_functionally_wired_as_the_table():
    from grader.probes import channel_connectivity

    matrix = channel_connectivity(hw4.C3_layer(), torch.randn(2, 6, 14, 14))
    assert [[i for i in range(6) if matrix[i][j]] for j in range(16)] == hw4.c3_connections()


def _trainable(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_p7_parameter_counts_by_hand_sum_of_layer_shapes():
    conv = lambda cin, cout, k: cin * cout * k * k + cout  # noqa: E731
    linear = lambda i, o: i * o + o  # noqa: E731
    c3_sparse = 25 * 60 + 16  # 60 connections of 5x5 weights, one bias per output map
    sparse = conv(1, 6, 5) + c3_sparse + conv(16, 120, 5) + linear(120, 84) + linear(84, 10)
    full = sparse - c3_sparse + conv(6, 16, 5)
    assert (sparse, full) == (60806, 61706)  # the figures ASSIGNMENTS.md quotes
    assert _trainable(hw4.LeNet()) == sparse
    assert _trainable(hw4.LeNet(full_c3=True)) == full
    assert _trainable(hw4.C3_layer()) == c3_sparse
    assert _trainable(hw4.C3_layer_full()) == conv(6, 16, 5)
    assert hw4.LeNet()(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
