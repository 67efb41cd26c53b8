"""Cross-checks of reference/tricks.py against autograd, torch built-ins and direct sums.

Each reference function is compared with an independent computation: batch
norm with ``F.batch_norm`` and autograd, the inference statistics with
``nn.BatchNorm1d``'s running averages, dropout statistically (Hoeffding
bounds), clipping, weight decay and schedules with ``torch.nn.utils`` /
``torch.optim``, activations with ``F.*``, divergences with ``F.kl_div`` and
plain Python sums. Numbers from ASSIGNMENTS.md only confirm a second time.
"""
from __future__ import annotations

import math
import random
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # import reference.* without installing it

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from reference import tricks as T

DTYPE = torch.float64

# ---------------------------------------------------------------------------
# batch norm
# ---------------------------------------------------------------------------


def bn_inputs(B: int, D: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    z = 3.0 * torch.randn(B, D, generator=g, dtype=DTYPE) + 2.0  # (B, D), not already standardised
    gamma = torch.randn(D, generator=g, dtype=DTYPE)  # (D,)
    beta = torch.randn(D, generator=g, dtype=DTYPE)  # (D,)
    dout = torch.randn(B, D, generator=g, dtype=DTYPE)  # (B, D)
    return z, gamma, beta, dout


@pytest.mark.parametrize("B", [2, 3, 8, 64])
@pytest.mark.parametrize("D", [1, 4, 7])
def test_batchnorm_forward_and_backward_match_torch_batch_norm(B: int, D: int) -> None:
    z, gamma, beta, dout = bn_inputs(B, D, seed=B * 100 + D)
    eps = 1e-5
    zt, gt, bt = (t.clone().requires_grad_(True) for t in (z, gamma, beta))
    expected = F.batch_norm(zt, None, None, weight=gt, bias=bt, training=True, eps=eps)  # (B, D)
    expected.backward(dout)

    out, cache = T.batchnorm_forward(z, gamma, beta, eps=eps)
    torch.testing.assert_close(out, expected.detach(), rtol=1e-10, atol=1e-12)
    assert isinstance(cache, tuple) and all(isinstance(t, torch.Tensor) for t in cache)
    dz, dgamma, dbeta = T.batchnorm_backward(dout, cache)
    for mine, theirs in ((dz, zt.grad), (dgamma, gt.grad), (dbeta, bt.grad)):
        torch.testing.assert_close(mine, theirs, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("B", [2, 3, 8, 64])
def test_batchnorm_backward_matches_autograd_of_the_forward_itself(B: int) -> None:
    # Second route: differentiate the reference forward with autograd, with a
    # large eps so that eps visibly enters the gradient.
    z, gamma, beta, dout = bn_inputs(B, 5, seed=B)
    zt, gt, bt = (t.clone().requires_grad_(True) for t in (z, gamma, beta))
    out, _ = T.batchnorm_forward(zt, gt, bt, eps=0.5)
    out.backward(dout)
    _, cache = T.batchnorm_forward(z, gamma, beta, eps=0.5)
    dz, dgamma, dbeta = T.batchnorm_backward(dout, cache)
    for mine, theirs in ((dz, zt.grad), (dgamma, gt.grad), (dbeta, bt.grad)):
        torch.testing.assert_close(mine, theirs, rtol=1e-10, atol=1e-12)


def test_batchnorm_forward_rejects_wrong_rank() -> None:
    with pytest.raises(ValueError):
        T.batchnorm_forward(torch.zeros(4), torch.ones(1), torch.zeros(1))


def autograd_bn_jacobian(z: torch.Tensor, eps: float) -> torch.Tensor:
    def u(v: torch.Tensor) -> torch.Tensor:  # (B,) -> (B,)
        return F.batch_norm(v[:, None], None, None, training=True, eps=eps)[:, 0]

    return torch.autograd.functional.jacobian(u, z)  # (B, B), [j, i] = du_j / dz_i


@pytest.mark.parametrize("B", [2, 3, 5, 8, 64])
@pytest.mark.parametrize("eps", [1e-5, 0.3])
def test_batchnorm_jacobian_matches_autograd(B: int, eps: float) -> None:
    z = torch.randn(B, generator=torch.Generator().manual_seed(B), dtype=DTYPE) * 2 + 1  # (B,)
    torch.testing.assert_close(T.batchnorm_jacobian(z, eps=eps), autograd_bn_jacobian(z, eps), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("B", [3, 5, 8])
def test_slide_jacobian_is_the_stated_formula_and_differs(B: int) -> None:
    z = torch.randn(B, generator=torch.Generator().manual_seed(7 * B), dtype=DTYPE)  # (B,)
    eps = 1e-5
    mu, var = z.mean().item(), z.var(correction=0).item()
    zs = z.tolist()
    # The slide's formula, written out element by element.
    slide = torch.tensor(
        [[((i == j) - 1 / B) / math.sqrt(var + eps) - (zs[i] - mu) ** 2 / (B * (var + eps) ** 1.5)
          for i in range(B)] for j in range(B)],
        dtype=DTYPE,
    )
    mistake = T.batchnorm_jacobian_slide_mistake(z, eps=eps)
    torch.testing.assert_close(mistake, slide, rtol=1e-12, atol=1e-12)
    truth = autograd_bn_jacobian(z, eps)
    assert not torch.allclose(mistake, truth, rtol=1e-3, atol=1e-6)
    # The mistake is confined to the off-diagonal cross terms.
    torch.testing.assert_close(torch.diagonal(mistake), torch.diagonal(truth), rtol=1e-10, atol=1e-12)


def test_jacobian_and_backward_agree_for_one_feature() -> None:
    # dz = J^T (gamma * dout) for D = 1: ties the two closed forms together.
    z, gamma, beta, dout = bn_inputs(6, 1, seed=3)
    _, cache = T.batchnorm_forward(z, gamma, beta)
    dz, _, _ = T.batchnorm_backward(dout, cache)
    J = T.batchnorm_jacobian(z[:, 0])  # (6, 6)
    torch.testing.assert_close(dz[:, 0], J.T @ (gamma * dout[:, 0]), rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------------
# inference statistics
# ---------------------------------------------------------------------------


def make_batches(K: int, B: int, D: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 2.0 * torch.randn(K, B, D, generator=g, dtype=DTYPE) + 1.0  # (K, B, D), population var 4


@pytest.mark.parametrize("B", [2, 4, 16])
def test_inference_stats_equal_batchnorm1d_cumulative_running_stats(B: int) -> None:
    # BatchNorm1d with momentum=None keeps the plain average of the batch means
    # and of the UNBIASED batch variances: exactly what B/(B-1) should produce.
    batches = make_batches(K=25, B=B, D=3, seed=B)
    bn = nn.BatchNorm1d(3, momentum=None).double().train()
    for batch in batches:
        bn(batch)
    mu, var = T.bn_inference_stats(batches.mean(dim=1), batches.var(dim=1, correction=0), B)
    torch.testing.assert_close(mu, bn.running_mean, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(var, bn.running_var, rtol=1e-12, atol=1e-12)


def test_inference_stats_direct_on_concatenated_batches() -> None:
    B = 4
    batches = make_batches(K=4000, B=B, D=2, seed=0)
    means = [b.mean(dim=0) for b in batches]  # K x (D,)
    biased = [b.var(dim=0, correction=0) for b in batches]  # K x (D,)
    mu, var = T.bn_inference_stats(means, biased, B)  # lists are accepted as well as tensors
    # Equal batch sizes: the mean of batch means is the mean of the concatenation.
    torch.testing.assert_close(mu, batches.reshape(-1, 2).mean(dim=0), rtol=1e-12, atol=1e-12)
    # B/(B-1) turns each biased batch variance into the unbiased one.
    torch.testing.assert_close(var, batches.var(dim=1, correction=1).mean(dim=0), rtol=1e-12, atol=1e-12)
    # And it estimates the population variance (4) where the plain mean is 25% low.
    # Seeded, so deterministic; 0.3 is about 6 standard deviations of the estimate
    # (sd = sqrt(2*4^2/(B-1)/K) ~ 0.05).
    assert torch.all((var - 4.0).abs() < 0.3)
    assert torch.all((torch.stack(biased).mean(dim=0) - 3.0).abs() < 0.3)


def test_inference_stats_reject_batch_of_one() -> None:
    with pytest.raises(ValueError):
        T.bn_inference_stats([0.0], [1.0], 1)


# ---------------------------------------------------------------------------
# dropout
# ---------------------------------------------------------------------------

N_DROPOUT = 1_000_000
# Failure budget: 4 statistical assertions below (rate and mean for two keep
# probabilities) share delta_total = 1e-6 by the union bound.
DELTA_EACH = 1e-6 / 4


def hoeffding_tolerance(ranges_squared_sum: float, n: int, delta: float) -> float:
    """t with P(|mean - E mean| >= t) <= delta for n independent variables with ranges r_i.

    Hoeffding: P(|sum (Y_i - E Y_i)| >= n t) <= 2 exp(-2 n^2 t^2 / sum r_i^2).
    """
    return math.sqrt(math.log(2 / delta) * ranges_squared_sum / 2) / n


@pytest.mark.parametrize("keep_prob", [0.5, 0.8])
def test_dropout_mask_rate_and_mean_within_hoeffding_bounds(keep_prob: float) -> None:
    # x in [0.5, 1.5]: nonzero everywhere (so y != 0 marks a kept unit) and with
    # a clearly nonzero mean, so forgetting the 1/keep_prob scale is caught.
    x = 0.5 + torch.rand(N_DROPOUT, generator=torch.Generator().manual_seed(1), dtype=DTYPE)  # (N,)
    y = T.dropout_forward(x, keep_prob, True, generator=torch.Generator().manual_seed(2))  # (N,)
    kept = y != 0
    # Each kept unit is exactly x / keep_prob.
    torch.testing.assert_close(y[kept], x[kept] / keep_prob, rtol=1e-15, atol=0)

    # Mask rate: indicators in [0, 1], so each range is 1.
    t_rate = hoeffding_tolerance(N_DROPOUT * 1.0, N_DROPOUT, DELTA_EACH)
    assert abs(kept.double().mean().item() - keep_prob) < t_rate

    # E[y] = x: y_i - x_i lies in [-x_i, x_i (1/p - 1)], a range of x_i / p.
    t_mean = hoeffding_tolerance(float(((x / keep_prob) ** 2).sum()), N_DROPOUT, DELTA_EACH)
    assert abs((y - x).mean().item()) < t_mean
    # The test has the power to see the non-inverted mistake (its mean is off by (1-p)*mean(x)).
    wrong = T.dropout_forward_non_inverted(x, keep_prob, True, generator=torch.Generator().manual_seed(2))
    assert abs((wrong - x).mean().item()) > 10 * t_mean


def test_dropout_eval_is_identity_and_train_is_reproducible() -> None:
    x = torch.randn(64, 32)  # (N, D)
    g = torch.Generator().manual_seed(0)
    state = g.get_state()
    assert torch.equal(T.dropout_forward(x, 0.7, False, generator=g), x)
    assert torch.equal(g.get_state(), state)  # evaluation draws nothing
    a = T.dropout_forward(x, 0.7, True, generator=torch.Generator().manual_seed(5))
    b = T.dropout_forward(x, 0.7, True, generator=torch.Generator().manual_seed(5))
    c = T.dropout_forward(x, 0.7, True, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(T.dropout_forward(x, 1.0, True), x)  # keep everything: identity
    assert T.dropout_forward(x, 0.7, True).shape == x.shape  # default generator works


def test_non_inverted_dropout_mistake_is_the_unscaled_mask() -> None:
    x = torch.randn(50, 20, dtype=DTYPE)  # (N, D)
    right = T.dropout_forward(x, 0.6, True, generator=torch.Generator().manual_seed(9))
    wrong = T.dropout_forward_non_inverted(x, 0.6, True, generator=torch.Generator().manual_seed(9))
    torch.testing.assert_close(wrong, right * 0.6, rtol=1e-14, atol=0)
    torch.testing.assert_close(T.dropout_forward_non_inverted(x, 0.6, False), 0.6 * x)


@pytest.mark.parametrize("keep_prob", [0.0, -0.1, 1.5])
def test_dropout_rejects_bad_keep_prob(keep_prob: float) -> None:
    with pytest.raises(ValueError):
        T.dropout_forward(torch.ones(3), keep_prob, True)


# ---------------------------------------------------------------------------
# L2 regularisation, clipping
# ---------------------------------------------------------------------------


def test_l2_update_matches_sgd_weight_decay() -> None:
    g = torch.Generator().manual_seed(0)
    W = torch.randn(5, 3, generator=g, dtype=DTYPE)  # (5, 3)
    grad = torch.randn(5, 3, generator=g, dtype=DTYPE)  # (5, 3)
    p = nn.Parameter(W.clone())
    p.grad = grad.clone()
    torch.optim.SGD([p], lr=0.1, weight_decay=0.01).step()  # adds weight_decay * W to the gradient
    torch.testing.assert_close(T.l2_regularized_update(W, grad, 0.1, 0.01), p.detach(), rtol=1e-14, atol=1e-15)


def torch_clip(g: torch.Tensor, theta: float, how: str) -> torch.Tensor:
    p = nn.Parameter(torch.zeros_like(g))
    p.grad = g.clone()
    if how == "value":
        nn.utils.clip_grad_value_([p], theta)
    else:
        nn.utils.clip_grad_norm_([p], theta)
    return p.grad


def test_clip_handout_example_against_torch_utils() -> None:
    g = torch.tensor([0.9, 100.0], dtype=DTYPE)
    by_value = T.clip_by_value(g, 1.0)
    by_norm = T.clip_by_norm(g, 1.0)
    torch.testing.assert_close(by_value, torch_clip(g, 1.0, "value"), rtol=0, atol=0)
    # clip_grad_norm_ divides by (norm + 1e-6): a relative difference of ~1e-8 here.
    torch.testing.assert_close(by_norm, torch_clip(g, 1.0, "norm"), rtol=1e-7, atol=0)
    assert torch.linalg.vector_norm(by_norm).item() == pytest.approx(1.0, rel=1e-14)
    # Second confirmation: the handout's numbers.
    assert by_value.tolist() == [0.9, 1.0]
    assert by_norm.tolist() == pytest.approx([0.00899964, 0.9999595], abs=5e-8)


@pytest.mark.parametrize("seed", range(4))
def test_clip_random_tensors_against_torch_utils(seed: int) -> None:
    g = torch.randn(4, 6, generator=torch.Generator().manual_seed(seed), dtype=DTYPE) * (seed + 1)  # (4, 6)
    for theta in (0.1, 1.0, 100.0):  # the last never clips by norm
        torch.testing.assert_close(T.clip_by_value(g, theta), torch_clip(g, theta, "value"), rtol=0, atol=0)
        torch.testing.assert_close(T.clip_by_norm(g, theta), torch_clip(g, theta, "norm"), rtol=1e-5, atol=0)
    assert torch.equal(T.clip_by_norm(g, 100.0), g)


def test_clip_by_norm_leaves_zero_gradient_alone() -> None:
    assert torch.equal(T.clip_by_norm(torch.zeros(3), 1.0), torch.zeros(3))


# ---------------------------------------------------------------------------
# schedules
# ---------------------------------------------------------------------------


def test_exponential_schedule_matches_exponential_lr() -> None:
    eta0, s = 0.1, 20.0
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=eta0)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.1 ** (1 / s))
    for t in range(60):
        assert T.exponential_schedule(t, eta0, s) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12)
        opt.step()
        sched.step()
    assert T.exponential_schedule(s, eta0, s) == pytest.approx(eta0 / 10, rel=1e-15)  # ten times smaller per s


@pytest.mark.parametrize("c", [1, 0.5, 2])
def test_power_schedule_against_an_equivalent_form(c: float) -> None:
    # No torch scheduler has this shape (PolynomialLR decays to zero), so check
    # the equivalent form eta0 * (s / (s + t))**c instead.
    eta0, s = 0.05, 7.0
    for t in range(0, 200, 7):
        assert T.power_schedule(t, eta0, s, c) == pytest.approx(eta0 * (s / (s + t)) ** c, rel=1e-13)
    # With c = 1 the learning rate halves when t = s, and 1/lr grows linearly.
    if c == 1:
        assert T.power_schedule(s, eta0, s) == pytest.approx(eta0 / 2, rel=1e-15)
        inv = [1 / T.power_schedule(t, eta0, s) for t in range(10)]
        steps = [b - a for a, b in zip(inv, inv[1:])]
        assert max(steps) - min(steps) < 1e-9


def plateau_sequences() -> list[list[float]]:
    rnd = random.Random(0)
    seqs = [
        [1.0, 0.9, 0.9, 0.9, 0.8, 0.85, 0.85, 0.85, 0.85, 0.7, 0.7],
        [5.0] * 12,
        [3.0, 2.0, 1.0, 0.5, 0.25],
    ]
    for _ in range(20):
        seq, v = [], 1.0
        for _ in range(40):
            v = v - rnd.choice([0.0, 0.0, 0.0, 0.05, 0.01]) + rnd.choice([0.0, 0.0, 0.02])
            seq.append(round(v, 4))
        seqs.append(seq)
    return seqs


@pytest.mark.parametrize("patience", [1, 2, 3])
def test_performance_scheduler_matches_reduce_lr_on_plateau(patience: int) -> None:
    # Convention difference: torch reduces when bad epochs EXCEED its patience,
    # ours when they REACH it, so torch's patience is ours minus one. threshold=0
    # with 'abs' makes "improvement" mean strictly below the best; eps=0 stops
    # torch from skipping tiny reductions.
    for seq in plateau_sequences():
        ours = T.PerformanceScheduler(0.1, 0.5, patience)
        opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
        theirs = torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode="min", factor=0.5, patience=patience - 1, threshold=0.0, threshold_mode="abs",
            cooldown=0, min_lr=0.0, eps=0.0)
        for v in seq:
            opt.step()
            theirs.step(v)
            assert ours.step(v) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-15), (seq, v)


def test_performance_scheduler_hand_worked_case() -> None:
    # patience 2: 0.9 repeated twice -> halve; then 0.85 x2 after 0.8 -> halve again.
    sched = T.PerformanceScheduler(0.1, 0.5, 2)
    lrs = [sched.step(v) for v in [1.0, 0.9, 0.9, 0.9, 0.8, 0.85, 0.85]]
    assert lrs == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025])
    assert "lr=0.025" in repr(sched)


# ---------------------------------------------------------------------------
# activations
# ---------------------------------------------------------------------------


ACTIVATIONS = [
    (T.relu, F.relu, {}),
    (T.leaky_relu, F.leaky_relu, {}),
    (T.leaky_relu, lambda x: F.leaky_relu(x, 0.2), {"alpha": 0.2}),
    (T.elu, F.elu, {}),
    (T.elu, lambda x: F.elu(x, alpha=0.7), {"alpha": 0.7}),
    (T.selu, F.selu, {}),
]


@pytest.mark.parametrize(("mine", "theirs", "kwargs"), ACTIVATIONS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_activations_match_torch_values_and_gradients(mine, theirs, kwargs, dtype) -> None:  # type: ignore[no-untyped-def]
    x = torch.cat([torch.linspace(-60, 60, 2001, dtype=dtype), torch.tensor([0.0, -1e-8, 1e-8], dtype=dtype)])
    xa = x.clone().requires_grad_(True)
    xb = x.clone().requires_grad_(True)
    ya, yb = mine(xa, **kwargs), theirs(xb)
    tol = {"rtol": 1e-6, "atol": 1e-6} if dtype == torch.float32 else {"rtol": 1e-13, "atol": 1e-14}
    torch.testing.assert_close(ya, yb, **tol)
    ya.sum().backward()
    yb.sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, **tol)  # finite everywhere, same at 0


def test_selu_constants_agree_with_torch_and_self_normalise() -> None:
    one, big_negative = torch.tensor(1.0, dtype=DTYPE), torch.tensor(-100.0, dtype=DTYPE)
    assert T.SELU_LAMBDA == pytest.approx(F.selu(one).item(), rel=1e-14)
    assert T.SELU_LAMBDA * T.SELU_ALPHA == pytest.approx(-F.selu(big_negative).item(), rel=1e-14)
    # The defining property: for x ~ N(0, 1), selu(x) has mean 0 and variance 1.
    # Trapezoid rule on [-12, 12] with the kink at 0 on a grid point.
    x = torch.linspace(-12, 12, 2_400_001, dtype=DTYPE)  # (M,)
    pdf = torch.exp(-x * x / 2) / math.sqrt(2 * math.pi)  # (M,)
    y = T.selu(x)  # (M,)
    assert torch.trapezoid(y * pdf, x).item() == pytest.approx(0.0, abs=1e-9)
    assert torch.trapezoid(y * y * pdf, x).item() == pytest.approx(1.0, abs=1e-9)


def test_relu_keeps_nan_like_torch() -> None:
    x = torch.tensor([float("nan"), -1.0, 2.0])
    assert torch.equal(T.relu(x).isnan(), F.relu(x).isnan())


# ---------------------------------------------------------------------------
# early stopping
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("patience", "min_delta", "losses", "expected"),
    [
        (2, 0.0, [1.0, 0.9, 0.9, 0.9], [False, False, False, True]),  # equal is not better
        (1, 0.0, [1.0, 2.0], [False, True]),
        (2, 0.0, [1.0, 1.0, 1.0, 1.0], [False, False, True, True]),  # stays True on a plateau
        (2, 0.0, [1.0, 1.0, 1.0, 0.5, 0.6], [False, False, True, False, False]),  # an improvement resets
        # min_delta 0.05: 0.97, 0.96 are not enough; 0.94 is (best moves only then).
        (3, 0.05, [1.0, 0.97, 0.96, 0.94, 0.8, 0.79], [False] * 6),
        (2, 0.05, [1.0, 0.97, 0.96, 0.94], [False, False, True, False]),
    ],
)
def test_early_stopping_hand_worked_cases(patience: int, min_delta: float, losses: list[float],
                                          expected: list[bool]) -> None:
    stopper = T.EarlyStopping(patience, min_delta)
    assert [stopper.step(v) for v in losses] == expected


@pytest.mark.parametrize(("patience", "min_delta"), [(1, 0.0), (2, 0.0), (3, 0.01), (4, 0.03)])
def test_early_stopping_fires_when_reduce_lr_on_plateau_first_reduces(patience: int, min_delta: float) -> None:
    # Same improvement rule (value < best - threshold, 'abs'); torch acts one
    # bad epoch later, hence patience - 1. Compared up to torch's first reduction.
    for seq in plateau_sequences():
        stopper = T.EarlyStopping(patience, min_delta)
        opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode="min", factor=0.5, patience=patience - 1, threshold=min_delta, threshold_mode="abs",
            eps=0.0)
        for v in seq:
            opt.step()
            plateau.step(v)
            reduced = opt.param_groups[0]["lr"] < 1.0
            assert stopper.step(v) == reduced, (seq, v)
            if reduced:
                break


# ---------------------------------------------------------------------------
# transfer learning
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torchvision.models.resnet18(weights=None, num_classes=10)


@pytest.mark.parametrize(("n", "prefixes"), [
    (0, ()),
    (1, ("fc.",)),
    (2, ("layer4.", "fc.")),
    (7, ("conv1.", "bn1.", "layer1.", "layer2.", "layer3.", "layer4.", "fc.")),
])
def test_freeze_for_transfer_on_resnet18(resnet: nn.Module, n: int, prefixes: tuple[str, ...]) -> None:
    # relu, maxpool and avgpool have no parameters and are skipped when counting.
    assert T.freeze_for_transfer(resnet, n) is resnet
    for name, p in resnet.named_parameters():
        assert p.requires_grad == name.startswith(prefixes), name


def test_freeze_for_transfer_skips_parameterless_tail_and_trains_only_the_rest() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2), nn.Dropout(0.1))
    T.freeze_for_transfer(model, 1)
    assert [p.requires_grad for p in model.parameters()] == [False] * 4 + [True] * 2
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model(torch.randn(3, 4)).sum().backward()
    opt.step()
    changed = [not torch.equal(b, p) for b, p in zip(before, model.parameters())]
    assert changed == [False] * 4 + [True] * 2
    T.freeze_for_transfer(model, 3)  # calling again re-decides every parameter
    assert all(p.requires_grad for p in model.parameters())
    with pytest.raises(ValueError):
        T.freeze_for_transfer(model, 4)


# ---------------------------------------------------------------------------
# divergences
# ---------------------------------------------------------------------------


def python_kl(y: list[float], d: list[float]) -> float:
    return sum(di * math.log(di) for di in d if di > 0) - sum(di * math.log(yi) for di, yi in zip(d, y) if di > 0)


@pytest.mark.parametrize("seed", range(5))
def test_divergences_against_kl_div_and_python_sums(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    y = torch.softmax(torch.randn(10, generator=g, dtype=DTYPE), dim=0)  # (10,)
    d = torch.rand(10, generator=g, dtype=DTYPE)
    d[[1, 4, 7]] = 0.0  # zeros in the target: 0 log 0 = 0
    d = d / d.sum()  # (10,)
    kl = T.kl_divergence(y, d)
    torch.testing.assert_close(kl, F.kl_div(y.log(), d, reduction="sum"), rtol=1e-12, atol=1e-14)
    assert kl.item() == pytest.approx(python_kl(y.tolist(), d.tolist()), rel=1e-12)
    assert kl.item() >= 0
    l2 = T.l2_divergence(y, d)
    assert l2.item() == pytest.approx(0.5 * sum((a - b) ** 2 for a, b in zip(y.tolist(), d.tolist())), rel=1e-12)
    torch.testing.assert_close(l2, F.mse_loss(y, d, reduction="sum") / 2, rtol=1e-12, atol=1e-14)


def test_kl_edge_cases() -> None:
    d = torch.tensor([0.5, 0.5, 0.0], dtype=DTYPE)
    assert T.kl_divergence(d, d).item() == 0.0  # identical distributions, zero entry included
    y_zero_where_d_zero = torch.tensor([0.25, 0.75, 0.0], dtype=DTYPE)
    assert math.isfinite(T.kl_divergence(y_zero_where_d_zero, d).item())
    y_zero_where_d_positive = torch.tensor([1.0, 0.0, 0.0], dtype=DTYPE)
    assert T.kl_divergence(y_zero_where_d_positive, d).item() == math.inf
    batch = torch.softmax(torch.randn(4, 6, dtype=DTYPE), dim=1)  # (N, K): sums over every element
    target = torch.softmax(torch.randn(4, 6, dtype=DTYPE), dim=1)
    torch.testing.assert_close(T.kl_divergence(batch, target), F.kl_div(batch.log(), target, reduction="sum"))
