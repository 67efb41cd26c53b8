"""Cross-checks of reference/a2.py: every reference value against an independent computation.

The independent routes: random matrices and explicit symbolic 2x2 matrices
for q1, torch autograd for q2, torch's FlopCounterMode, real modules and
brute-force window counting for q3, real torch modules for q4 and q7, and
separate sympy derivations plus numeric checks for q5 and q6. Numbers quoted
in ASSIGNMENTS.md appear only as a second confirmation next to these.
"""
from __future__ import annotations

import functools
import math
import operator
import random
import sys
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # import reference.* without installing it

import numpy as np
import pytest
import sympy as sp
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from reference import a2

# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def evaluate(expr: sp.Expr, env: dict[str, Any], mul: Callable[[Any, Any], Any]) -> Any:
    """Evaluate a (possibly non-commutative) sympy expression with concrete values.

    Mul arguments are multiplied in the order sympy stores them, which keeps the
    order of non-commutative factors, so W2*W1 and W1*W2 evaluate differently.
    """
    if expr.is_Symbol:
        return env[expr.name]
    if expr.is_Number:
        return float(expr)
    if expr.is_Add:
        return functools.reduce(operator.add, (evaluate(t, env, mul) for t in expr.args))
    if expr.is_Mul:
        return functools.reduce(mul, (evaluate(t, env, mul) for t in expr.args))
    if expr.is_Pow and expr.args[1].is_Integer and expr.args[0].is_commutative:
        return evaluate(expr.args[0], env, mul) ** int(expr.args[1])
    raise NotImplementedError(f"cannot evaluate {expr!r}")


def np_mul(u: Any, v: Any) -> Any:
    both_matrices = isinstance(u, np.ndarray) and isinstance(v, np.ndarray)
    return u @ v if both_matrices else u * v


def count_trainable(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


# ---------------------------------------------------------------------------
# q1
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_q1_collapse_matches_numeric_composition_with_random_matrices(seed: int) -> None:
    # Scalars are represented as multiples of the identity, the faithful matrix
    # picture of a commutative scalar (so "+ c" and "W2*c" mean the same thing).
    rng = np.random.default_rng(seed)
    n = 4
    W1, W2, b1, b2, x = (rng.standard_normal((n, n)) for _ in range(5))
    a, c = float(rng.standard_normal()), float(rng.standard_normal())
    eye = np.eye(n)
    z1 = W1 @ x + b1
    h1 = a * z1 + c * eye
    z2 = W2 @ h1 + b2
    h2 = a * z2 + c * eye  # (n, n)
    env = {"W1": W1, "W2": W2, "b1": b1, "b2": b2, "x": x, "a": a, "c": c * eye}
    w_eff = evaluate(a2.ANSWERS_EXPR["q1.W_eff"], env, np_mul)
    b_eff = evaluate(a2.ANSWERS_EXPR["q1.b_eff"], env, np_mul)
    np.testing.assert_allclose(w_eff @ x + b_eff, h2, rtol=1e-12, atol=1e-12)
    # The order matters: W1 W2 in place of W2 W1 must not pass this check.
    assert not np.allclose(a**2 * W1 @ W2 @ x + b_eff, h2)


def test_q1_collapse_is_an_identity_for_symbolic_2x2_matrices() -> None:
    # Generic 2x2 matrices with symbolic entries: equality is a polynomial identity.
    def mat(name: str) -> sp.Matrix:
        return sp.Matrix(2, 2, sp.symbols(f"{name}_0:4"))

    W1, W2, b1, b2, x = (mat(n) for n in ("W1", "W2", "b1", "b2", "x"))
    a, c = sp.symbols("a c", real=True)
    eye = sp.eye(2)
    h2 = a * (W2 * (a * (W1 * x + b1) + c * eye) + b2) + c * eye
    env = {"W1": W1, "W2": W2, "b1": b1, "b2": b2, "x": x, "a": a, "c": c * eye}
    w_eff = evaluate(a2.ANSWERS_EXPR["q1.W_eff"], env, operator.mul)
    b_eff = evaluate(a2.ANSWERS_EXPR["q1.b_eff"], env, operator.mul)
    assert (w_eff * x + b_eff - h2).expand() == sp.zeros(2, 2)


def test_q1_symbols_carry_the_stated_assumptions() -> None:
    s = a2.symbols_for("q1.W_eff")
    for name in ("W1", "W2", "b1", "b2", "x"):
        assert s[name].is_commutative is False, name
    for name in ("a", "c"):
        assert s[name].is_commutative and s[name].is_real, name
    assert s["W1"] * s["W2"] != s["W2"] * s["W1"]


def test_q1_agrees_with_the_handout_strings() -> None:
    # Second confirmation only; the computations above are the real check.
    s = a2.SYMBOLS["q1"]
    for key, text in {"q1.W_eff": "a**2*W2*W1", "q1.b_eff": "a**2*W2*b1 + a*W2*c + a*b2 + c"}.items():
        assert sp.expand(sp.sympify(text, locals=s) - a2.ANSWERS_EXPR[key]) == 0, key


# ---------------------------------------------------------------------------
# q2
# ---------------------------------------------------------------------------


def torch_q2(x: tuple[float, ...], w: tuple[float, ...]) -> tuple[float, list[float]]:
    xt = torch.tensor(x, dtype=torch.float64)  # (4,)
    wt = torch.tensor(w, dtype=torch.float64, requires_grad=True)  # (6,)
    z1 = wt[0] * xt[0] + wt[1] * xt[1]
    z2 = wt[2] * xt[2] + wt[3] * xt[3]
    y_hat = torch.sigmoid(wt[4] * torch.sigmoid(z1) + wt[5] * torch.sigmoid(z2))
    loss = (0.5 - y_hat) ** 2
    loss.backward()
    return loss.item(), wt.grad.tolist()


def test_q2_gradients_match_autograd_at_the_handout_point() -> None:
    loss, grads = torch_q2(a2.Q2_X, a2.Q2_W)
    ref = a2.q2_gradients()
    assert list(ref) == [f"dL_dw{k}" for k in range(1, 7)]
    np.testing.assert_allclose(list(ref.values()), grads, rtol=1e-10, atol=0)
    assert a2.q2_loss() == pytest.approx(loss, rel=1e-12)
    for k in range(1, 7):
        assert a2.ANSWERS_NUM[f"q2.dL_dw{k}"] == ref[f"dL_dw{k}"]


@pytest.mark.parametrize("seed", range(5))
def test_q2_backward_is_general_not_tuned_to_one_point(seed: int) -> None:
    rnd = random.Random(seed)
    x = tuple(rnd.uniform(-3, 3) for _ in range(4))
    w = tuple(rnd.uniform(-2, 2) for _ in range(6))
    _, grads = torch_q2(x, w)
    np.testing.assert_allclose(list(a2.q2_gradients(x, w).values()), grads, rtol=1e-10, atol=1e-300)


# ---------------------------------------------------------------------------
# q3
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def q3_conv_output() -> torch.Tensor:
    torch.manual_seed(0)
    conv = nn.Conv2d(a2.Q3_C_IN, a2.Q3_C_OUT, a2.Q3_K, bias=False).double()
    x = torch.randn(1, a2.Q3_C_IN, a2.Q3_H_IN, a2.Q3_W_IN, dtype=torch.float64)  # (1, 50, 9, 9)
    with torch.no_grad():
        return conv(x)  # (1, 20, 6, 6)


def test_q3_conv_counts_agree_with_torch_flop_counter() -> None:
    conv = nn.Conv2d(50, 20, 4, bias=False)
    x = torch.zeros(1, 50, 9, 9)  # (N, C, H, W)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        y = conv(x)  # (1, 20, 6, 6)
    torch_flops = counter.get_total_flops()  # torch counts 2 per multiply-accumulate
    flops = a2.q3_flops()
    assert flops["torch_flop_counter"] == torch_flops
    assert flops["macs"] == torch_flops // 2
    # 2*MACs counts one add per product; a sum of n products needs n-1 adds,
    # so without bias one add per output element is too many.
    assert flops["conv_flops"] == torch_flops - y.numel()
    assert flops["conv_flops_with_bias"] == torch_flops
    assert (flops["conv_flops"], flops["conv_flops_with_bias"]) == (1_151_280, 1_152_000)  # handout


def test_q3_conv_flops_by_im2col_matmul(q3_conv_output: torch.Tensor) -> None:
    # The same convolution as a matrix product (m x n) @ (n x p): each of the
    # m*p outputs is n multiplies and n-1 adds.
    torch.manual_seed(0)
    conv = nn.Conv2d(50, 20, 4, bias=False).double()
    x = torch.randn(1, 50, 9, 9, dtype=torch.float64)  # (1, 50, 9, 9)
    cols = F.unfold(x, kernel_size=4)[0]  # (800, 36)
    weight = conv.weight.reshape(20, -1)  # (20, 800)
    torch.testing.assert_close((weight @ cols).reshape(1, 20, 6, 6), q3_conv_output)
    m, n = weight.shape
    p = cols.shape[1]
    assert a2.q3_flops()["conv_flops"] == m * p * (2 * n - 1)


def test_q3_output_sizes_match_real_modules(q3_conv_output: torch.Tensor) -> None:
    assert tuple(q3_conv_output.shape[2:]) == a2.conv2d_output_hw(9, 9, 4)
    pooled = nn.MaxPool2d(a2.Q3_POOL_K, stride=a2.Q3_POOL_STRIDE)(q3_conv_output)  # (1, 20, 4, 4)
    assert tuple(pooled.shape[2:]) == a2.conv2d_output_hw(6, 6, 3, stride=1)


def test_q3_pool_comparisons_by_brute_force(q3_conv_output: torch.Tensor) -> None:
    y = q3_conv_output[0]  # (20, 6, 6)
    k, stride = a2.Q3_POOL_K, a2.Q3_POOL_STRIDE
    pooled = nn.MaxPool2d(k, stride=stride)(q3_conv_output)[0]  # (20, 4, 4)
    comparisons = 0
    for ch in range(y.shape[0]):
        for i in range(0, y.shape[1] - k + 1, stride):
            for j in range(0, y.shape[2] - k + 1, stride):
                window = y[ch, i:i + k, j:j + k].flatten().tolist()
                best = window[0]
                for v in window[1:]:
                    comparisons += 1
                    best = max(best, v)
                assert best == pooled[ch, i // stride, j // stride].item()
    flops = a2.q3_flops()
    assert flops["pool_flops"] == comparisons == 2_560
    assert flops["total_flops"] == flops["conv_flops"] + comparisons == 1_153_840
    assert flops["total_flops_with_bias"] == flops["conv_flops_with_bias"] + comparisons == 1_154_560
    assert a2.ANSWERS_NUM["q3.total_flops"] == flops["total_flops"]


# ---------------------------------------------------------------------------
# q4
# ---------------------------------------------------------------------------

# Table I of LeCun et al. (1998), transcribed row by row (rows: S2 maps 0-5,
# columns: C3 maps 0-15), to check the rule-built table against the paper.
PAPER_TABLE_I = (
    "X...XXX..XXXX.XX",
    "XX...XXX..XXXX.X",
    "XXX...XXX..X.XXX",
    ".XXX..XXXX..X.XX",
    "..XXX..XXXX.XX.X",
    "...XXX..XXXX.XXX",
)


class TableC3(nn.Module):
    """C3 with only the paper's connections: one small conv per output map."""

    def __init__(self, table: tuple[tuple[int, ...], ...], *, bias_per_connection: bool = False) -> None:
        super().__init__()
        self.table = table
        self.convs = nn.ModuleList(nn.Conv2d(len(inputs), 1, 5) for inputs in table)
        if bias_per_connection:  # the known mistake: an extra bias for every (output, input) pair
            self.extra = nn.ParameterList(nn.Parameter(torch.zeros(len(i) - 1)) for i in table)

    def forward(self, s2: torch.Tensor) -> torch.Tensor:  # (N, 6, 14, 14)
        return torch.cat([conv(s2[:, list(inputs)]) for conv, inputs in zip(self.convs, self.table)], dim=1)  # (N, 16, 10, 10)


class TrainableSubsampling(nn.Module):
    """The paper's subsampling: 2x2 sum times a trainable coefficient plus a trainable bias, per map."""

    def __init__(self, maps: int) -> None:
        super().__init__()
        self.coefficient = nn.Parameter(torch.ones(maps))
        self.bias = nn.Parameter(torch.zeros(maps))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W)
        summed = 4 * F.avg_pool2d(x, 2)  # (N, C, H/2, W/2)
        return torch.sigmoid(self.coefficient[:, None, None] * summed + self.bias[:, None, None])


class RBFOutput(nn.Module):
    """Euclidean RBF units with fixed centres: buffers, not parameters, so nothing to train."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("centres", torch.sign(torch.randn(10, 84)))

    def forward(self, f6: torch.Tensor) -> torch.Tensor:  # (N, 84)
        return ((f6[:, None, :] - self.centres) ** 2).sum(-1)  # (N, 10)


def lenet5_modules(*, reading: str, c3: str) -> dict[str, nn.Module]:
    original = reading == "original"
    c3_module: nn.Module
    if c3 == "table":
        c3_module = TableC3(a2.C3_TABLE)
    elif c3 == "full":
        c3_module = nn.Conv2d(6, 16, 5)
    else:
        c3_module = TableC3(tuple(tuple(range(6)) for _ in range(16)), bias_per_connection=True)
    return {
        "c1": nn.Conv2d(1, 6, 5),
        "s2": TrainableSubsampling(6) if original else nn.AvgPool2d(2),
        "c3": c3_module,
        "s4": TrainableSubsampling(16) if original else nn.AvgPool2d(2),
        "c5": nn.Conv2d(16, 120, 5),
        "f6": nn.Linear(120, 84),
        "output": RBFOutput() if original else nn.Linear(84, 10),
    }


def run_lenet(layers: dict[str, nn.Module], x: torch.Tensor) -> torch.Tensor:  # (N, 1, 32, 32)
    h = x
    for name in ("c1", "s2", "c3", "s4", "c5"):
        h = layers[name](h)
    h = layers["f6"](h.flatten(1))  # (N, 84)
    return layers["output"](h)  # (N, 10)


@pytest.mark.parametrize(
    ("reading", "c3", "handout_total"),
    [
        ("modern", "table", 60_806),
        ("original", "table", 60_000),
        ("modern", "full", 61_706),
        ("modern", "full_bias_per_connection", 61_786),
        ("original", "full", None),
    ],
)
def test_q4_counts_match_real_modules(reading: str, c3: str, handout_total: int | None) -> None:
    layers = lenet5_modules(reading=reading, c3=c3)
    assert run_lenet(layers, torch.zeros(2, 1, 32, 32)).shape == (2, 10)  # the layers fit together
    by_module = {name: count_trainable(m) for name, m in layers.items()}
    by_module["total"] = sum(by_module.values())
    assert a2.lenet5_param_counts(reading=reading, c3=c3) == by_module
    if handout_total is not None:
        assert by_module["total"] == handout_total


def test_q4_answers_and_variants_match_module_counts() -> None:
    modern = {n: count_trainable(m) for n, m in lenet5_modules(reading="modern", c3="table").items()}
    assert {k: a2.ANSWERS_NUM[f"q4.{k}"] for k in modern} == modern
    assert a2.ANSWERS_NUM["q4.total"] == sum(modern.values())
    original = {n: count_trainable(m) for n, m in lenet5_modules(reading="original", c3="table").items()}
    for layer in ("s2", "s4", "output"):
        (variant,) = [v for v in a2.VARIANTS[f"q4.{layer}"] if v.name == "original_paper"]
        assert variant.value == original[layer] and variant.kind == "alternative"
    by_name = {v.name: v for v in a2.VARIANTS["q4.c3"]}
    assert by_name["full_c3"].value == count_trainable(nn.Conv2d(6, 16, 5)) == 2_416
    assert by_name["bias_per_connection"].value == 2_496
    assert all(v.kind == "mistake" and v.explanation for v in by_name.values())
    totals = {v.name: v.value for v in a2.VARIANTS["q4.total"]}
    assert totals == {"original_paper": 60_000, "full_c3": 61_706, "original_full_c3": 60_900,
                      "bias_per_connection": 61_786}


def test_q4_c3_table_matches_the_paper_transcription() -> None:
    from_paper = tuple(
        tuple(row for row in range(6) if PAPER_TABLE_I[row][col] == "X") for col in range(16)
    )
    assert a2.C3_TABLE == from_paper
    assert sum(len(m) for m in a2.C3_TABLE) == 60
    assert [len(m) for m in a2.C3_TABLE] == [3] * 6 + [4] * 9 + [6]


def test_q4_c3_connectivity_is_functional() -> None:
    # Perturb one S2 map at a time and record which C3 maps move.
    torch.manual_seed(0)
    c3 = TableC3(a2.C3_TABLE).double()
    s2 = torch.randn(1, 6, 14, 14, dtype=torch.float64)  # (1, 6, 14, 14)
    base = c3(s2)  # (1, 16, 10, 10)
    seen: list[set[int]] = [set() for _ in range(16)]
    for j in range(6):
        bumped = s2.clone()
        bumped[:, j] += 1.0
        moved = (c3(bumped) - base).abs().flatten(2).amax(-1)[0] > 1e-9  # (16,)
        for m in torch.nonzero(moved).flatten().tolist():
            seen[m].add(j)
    assert [tuple(sorted(s)) for s in seen] == list(a2.C3_TABLE)


# ---------------------------------------------------------------------------
# q5
# ---------------------------------------------------------------------------


def test_q5_equals_an_independent_sympy_derivative() -> None:
    s = a2.symbols_for("q5.dg_dxi")
    w_i, x_i = s["w_i"], s["x_i"]
    rest = sp.Symbol("rest", real=True)  # sum over j != i of w_j x_j, plus b
    z = w_i * x_i + rest
    g_of_z = 1 / (1 + sp.exp(-z))
    direct = sp.diff(g_of_z, x_i)
    in_x = a2.ANSWERS_EXPR["q5.dg_dxi"].subs(s["g"], g_of_z)
    assert sp.simplify(direct - in_x) == 0
    # Second confirmation: the handout's form.
    assert sp.simplify(sp.sympify("w_i*g*(1-g)", locals=s) - a2.ANSWERS_EXPR["q5.dg_dxi"]) == 0


def test_q5_matches_finite_differences() -> None:
    s = a2.symbols_for("q5.dg_dxi")
    f = sp.lambdify((s["w_i"], s["g"]), a2.ANSWERS_EXPR["q5.dg_dxi"], "math")
    rnd = random.Random(0)
    for _ in range(20):
        w = [rnd.uniform(-2, 2) for _ in range(3)]
        x = [rnd.uniform(-2, 2) for _ in range(3)]
        b = rnd.uniform(-1, 1)

        def g(xs: list[float]) -> float:
            return 1 / (1 + math.exp(-(sum(wj * xj for wj, xj in zip(w, xs)) + b)))

        h = 1e-6
        numeric = (g([x[0], x[1] + h, x[2]]) - g([x[0], x[1] - h, x[2]])) / (2 * h)
        assert f(w[1], g(x)) == pytest.approx(numeric, rel=1e-6, abs=1e-10)


def test_q5_domain_of_g() -> None:
    assert a2.DOMAINS["q5"]["g"] == (0.0, 1.0)
    assert a2.symbols_for("q5.dg_dxi")["g"].is_positive


# ---------------------------------------------------------------------------
# q6
# ---------------------------------------------------------------------------


def test_q6_sympy_proves_tanh_and_its_derivative() -> None:
    x = a2.symbols_for("q6.tanh")["x"]
    tanh_expr, dtanh_expr = a2.ANSWERS_EXPR["q6.tanh"], a2.ANSWERS_EXPR["q6.dtanh"]
    assert not tanh_expr.has(a2.sigmoid) and not dtanh_expr.has(a2.sigmoid)
    assert sp.simplify((tanh_expr - sp.tanh(x)).rewrite(sp.exp)) == 0
    assert sp.simplify((dtanh_expr - sp.diff(sp.tanh(x), x)).rewrite(sp.exp)) == 0


def test_q6_numeric_and_display_forms() -> None:
    x = a2.symbols_for("q6.tanh")["x"]
    f = sp.lambdify(x, a2.ANSWERS_EXPR["q6.tanh"], "math")
    df = sp.lambdify(x, a2.ANSWERS_EXPR["q6.dtanh"], "math")
    for v in np.linspace(-4, 4, 17):
        assert f(v) == pytest.approx(math.tanh(v), abs=1e-14)
        assert df(v) == pytest.approx(1 - math.tanh(v) ** 2, abs=1e-14)
    # The display strings, read back with sigmoid spelled out, are the same answers.
    locals_ = {"x": x, "sigmoid": lambda t: 1 / (1 + sp.exp(-t))}
    for key in ("q6.tanh", "q6.dtanh"):
        back = sp.sympify(a2.ANSWERS_STR[key], locals=locals_)
        assert sp.simplify(back - a2.ANSWERS_EXPR[key]) == 0, key
    assert a2.ANSWERS_STR["q6.tanh"] == "2*sigmoid(2*x) - 1"  # the handout's form


def test_sigmoid_function_derivative_is_right() -> None:
    t = sp.Symbol("t", real=True)
    assert sp.simplify(sp.diff(a2.sigmoid(t), t).rewrite(sp.exp) - sp.diff(1 / (1 + sp.exp(-t)), t)) == 0


# ---------------------------------------------------------------------------
# q7
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(("h", "n_layers"), [(1, 1), (16, 1), (32, 3), (128, 2), (7, 5)])
def test_q7_param_count_matches_numel(h: int, n_layers: int) -> None:
    model = a2.build_mlp(h, n_layers, 0.5)
    assert count_trainable(model) == a2.mlp_param_count(h, n_layers)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == (
        [(784, h)] + [(h, h)] * (n_layers - 1) + [(h, 10)]
    )
    assert sum(isinstance(m, nn.Dropout) for m in model.modules()) == n_layers


def test_q7_shapes_and_dropout_modes() -> None:
    torch.manual_seed(0)
    model = a2.build_mlp(64, 2, 0.5)
    x = torch.randn(8, 1, 28, 28)  # (N, 1, 28, 28)
    model.train()
    assert model(x).shape == (8, 10)
    assert not torch.equal(model(x), model(x))  # fresh dropout masks
    model.eval()
    torch.testing.assert_close(model(x), model(x), rtol=0, atol=0)


@pytest.mark.parametrize(("h", "n_layers", "dropout"), [(0, 1, 0.1), (8, 0, 0.1), (8, 1, 1.0), (8, 1, -0.1)])
def test_q7_rejects_bad_arguments(h: int, n_layers: int, dropout: float) -> None:
    with pytest.raises(ValueError):
        a2.build_mlp(h, n_layers, dropout)


# ---------------------------------------------------------------------------
# answer tables
# ---------------------------------------------------------------------------


def test_answer_tables_cover_the_handout_keys() -> None:
    assert set(a2.ANSWERS_EXPR) == {"q1.W_eff", "q1.b_eff", "q5.dg_dxi", "q6.tanh", "q6.dtanh"}
    assert set(a2.ANSWERS_STR) == set(a2.ANSWERS_EXPR)
    for key in ("q2.dL_dw1", "q2.dL_dw3", "q2.dL_dw5", "q3.conv_flops", "q3.conv_flops_with_bias",
                "q3.pool_flops", "q3.total_flops", "q4.c1", "q4.s2", "q4.c3", "q4.s4", "q4.c5",
                "q4.f6", "q4.output", "q4.total"):
        assert key in a2.ANSWERS_NUM, key
    with pytest.raises(KeyError):
        a2.symbols_for("q2.dL_dw3")


def test_display_strings_parse_back_to_the_answers() -> None:
    for key in ("q1.W_eff", "q1.b_eff", "q5.dg_dxi"):
        back = sp.sympify(a2.ANSWERS_STR[key], locals=a2.symbols_for(key))
        assert sp.expand(back - a2.ANSWERS_EXPR[key]) == 0, key


def test_q3_variants_are_the_stated_conventions() -> None:
    conv = {v.name: v.value for v in a2.VARIANTS["q3.conv_flops"]}
    assert conv == {"macs": 576_000, "torch_flop_counter": 1_152_000}
    total = {v.name: v.value for v in a2.VARIANTS["q3.total_flops"]}
    assert total["with_bias"] == 1_154_560
