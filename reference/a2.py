"""Reference solution of assignment ``a2``: theory by hand and MLP experiments.

Every answer here is computed from the question's own definition, never typed
in: sympy derives the symbolic answers (q1, q5, q6), a hand-written backward
pass gives the gradients of q2, formulas over the layer shapes give the FLOP
and parameter counts (q3, q4), and q7's model is built as the handout says.
``tests/test_reference_a2.py`` checks each value by an independent route
(autograd, torch's FLOP counter, real torch modules, sympy).

What a rubric points at:

- ``ANSWERS_EXPR[key]``: the sympy answer of a symbolic key, in built-in sympy
  functions only (sigmoid written out with ``exp``), so any comparer can use it;
  ``ANSWERS_STR[key]`` is its display form (``sympy.sstr``, with ``sigmoid``).
- ``symbols_for(key)`` / ``SYMBOLS[question]``: the symbols a student's string is
  parsed with, carrying their assumptions (non-commutative matrices in q1);
  ``DOMAINS`` gives the intervals a numeric second opinion must sample from.
- ``ANSWERS_NUM[key]``: the primary numeric answer; ``VARIANTS[key]``: other
  values with a name, whether they are a defensible alternative reading or a
  known mistake, and the sentence that explains them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Sequence

import sympy as sp
from torch import nn

# ---------------------------------------------------------------------------
# Symbols
# ---------------------------------------------------------------------------


class sigmoid(sp.Function):  # noqa: N801 - lower case like sympy's own exp, tanh
    """The logistic function 1/(1+exp(-x)), kept unevaluated so answers read as in the handout."""

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        # sigma' = sigma (1 - sigma): lets sympy differentiate without expanding to exp.
        s = sigmoid(self.args[0])
        return s * (1 - s)

    def _eval_rewrite_as_exp(self, arg: sp.Expr, **kwargs: object) -> sp.Expr:
        return 1 / (1 + sp.exp(-arg))


def _q1_symbols() -> dict[str, sp.Symbol]:
    # W1, W2, b1, b2, x are matrices/vectors: their products must keep their order.
    matrices = {n: sp.Symbol(n, commutative=False) for n in ("W1", "W2", "b1", "b2", "x")}
    scalars = {n: sp.Symbol(n, real=True) for n in ("a", "c")}
    return {**matrices, **scalars}


SYMBOLS: dict[str, dict[str, sp.Symbol]] = {
    "q1": _q1_symbols(),
    # g is a sigmoid output, so 0 < g < 1; sympy has no interval assumption,
    # positive is the strongest one that holds (DOMAINS carries the upper bound).
    "q5": {
        "w_i": sp.Symbol("w_i", real=True),
        "x_i": sp.Symbol("x_i", real=True),
        "g": sp.Symbol("g", positive=True),
    },
    "q6": {"x": sp.Symbol("x", real=True)},
}

# Open intervals to draw random points from when comparing expressions
# numerically; symbols not listed may take any real value.
DOMAINS: dict[str, dict[str, tuple[float, float]]] = {
    "q5": {"g": (0.0, 1.0)},
}


def symbols_for(answer_key: str) -> dict[str, sp.Symbol]:
    """Symbols (with assumptions) to parse the answer to ``answer_key`` (e.g. "q1.W_eff") with."""
    question = answer_key.split(".", 1)[0]
    if question not in SYMBOLS:
        raise KeyError(f"no symbols for {answer_key!r}; symbolic questions are {sorted(SYMBOLS)}")
    return SYMBOLS[question]


# ---------------------------------------------------------------------------
# q1: two affine layers with a linear activation collapse to one
# ---------------------------------------------------------------------------


def q1_collapse() -> tuple[sp.Expr, sp.Expr]:
    """Return ``(W_eff, b_eff)`` with ``h2 = W_eff*x + b_eff``, derived by composing the layers."""
    s = SYMBOLS["q1"]
    W1, W2, b1, b2, x, a, c = (s[n] for n in ("W1", "W2", "b1", "b2", "x", "a", "c"))
    z1 = W1 * x + b1
    h1 = a * z1 + c
    z2 = W2 * h1 + b2
    h2 = sp.expand(a * z2 + c)
    # With x non-commutative, coeff(x) collects the factor standing to the LEFT
    # of x in each term: the matrix that multiplies x, i.e. W_eff.
    w_eff = h2.coeff(x)
    b_eff = sp.expand(h2 - w_eff * x)
    if b_eff.has(x):
        raise RuntimeError(f"q1: x left over in the bias term {b_eff}; the collapse is not affine")
    return w_eff, b_eff


# ---------------------------------------------------------------------------
# q2: backprop by hand on a 2-2-1 sigmoid network
# ---------------------------------------------------------------------------

Q2_X: tuple[float, float, float, float] = (1.0, -2.0, 0.5, 3.0)
Q2_W: tuple[float, float, float, float, float, float] = (0.3, -0.1, 0.8, 0.2, 0.5, -0.4)
Q2_TARGET: float = 0.5  # L = (target - y_hat)^2


def _sigma(t: float) -> float:
    return 1.0 / (1.0 + math.exp(-t))


def q2_loss(x: Sequence[float] = Q2_X, w: Sequence[float] = Q2_W) -> float:
    """Forward pass: ``L = (0.5 - sigma(w5*sigma(z1) + w6*sigma(z2)))**2``."""
    z1 = w[0] * x[0] + w[1] * x[1]
    z2 = w[2] * x[2] + w[3] * x[3]
    y_hat = _sigma(w[4] * _sigma(z1) + w[5] * _sigma(z2))
    return (Q2_TARGET - y_hat) ** 2


def q2_gradients(x: Sequence[float] = Q2_X, w: Sequence[float] = Q2_W) -> dict[str, float]:
    """dL/dw_k for k = 1..6 by the chain rule, as ``{"dL_dw1": ..., ..., "dL_dw6": ...}``."""
    if len(x) != 4 or len(w) != 6:
        raise ValueError(f"q2 needs 4 inputs and 6 weights, got {len(x)} and {len(w)}")
    z1 = w[0] * x[0] + w[1] * x[1]
    z2 = w[2] * x[2] + w[3] * x[3]
    s1, s2 = _sigma(z1), _sigma(z2)
    y_hat = _sigma(w[4] * s1 + w[5] * s2)
    # delta_k = dL/dz_k, propagated from the loss back to each pre-activation.
    delta3 = -2.0 * (Q2_TARGET - y_hat) * y_hat * (1.0 - y_hat)
    delta1 = delta3 * w[4] * s1 * (1.0 - s1)
    delta2 = delta3 * w[5] * s2 * (1.0 - s2)
    grads = (delta1 * x[0], delta1 * x[1], delta2 * x[2], delta2 * x[3], delta3 * s1, delta3 * s2)
    return {f"dL_dw{k}": g for k, g in enumerate(grads, start=1)}


# ---------------------------------------------------------------------------
# q3: FLOPs of a conv + max-pool block
# ---------------------------------------------------------------------------

Q3_C_IN, Q3_H_IN, Q3_W_IN = 50, 9, 9
Q3_C_OUT, Q3_K = 20, 4
Q3_POOL_K, Q3_POOL_STRIDE = 3, 1


def conv2d_output_hw(h: int, w: int, k: int, *, stride: int = 1, padding: int = 0) -> tuple[int, int]:
    """Spatial size of a square-kernel convolution or pooling output."""
    return (h + 2 * padding - k) // stride + 1, (w + 2 * padding - k) // stride + 1


def conv2d_macs(c_in: int, h: int, w: int, c_out: int, k: int, *, stride: int = 1, padding: int = 0) -> int:
    """Multiply-accumulates: one per weight per output element."""
    h_out, w_out = conv2d_output_hw(h, w, k, stride=stride, padding=padding)
    return c_out * h_out * w_out * c_in * k * k


def conv2d_flops(
    c_in: int, h: int, w: int, c_out: int, k: int, *, bias: bool, stride: int = 1, padding: int = 0
) -> int:
    """FLOPs counting a multiply and an add as one each.

    An output element is a sum of ``c_in*k*k`` products: that many multiplies
    and one fewer adds; a bias adds the missing add back.
    """
    h_out, w_out = conv2d_output_hw(h, w, k, stride=stride, padding=padding)
    per_output = 2 * c_in * k * k - 1 + (1 if bias else 0)
    return c_out * h_out * w_out * per_output


def maxpool2d_flops(c: int, h: int, w: int, k: int, *, stride: int) -> int:
    """Comparisons of a max-pool: the max of k*k values takes k*k - 1 of them."""
    h_out, w_out = conv2d_output_hw(h, w, k, stride=stride)
    return c * h_out * w_out * (k * k - 1)


def q3_flops() -> dict[str, int]:
    """All q3 counts: conv (without/with bias), pool, totals, MACs, and torch's FlopCounterMode count."""
    conv = conv2d_flops(Q3_C_IN, Q3_H_IN, Q3_W_IN, Q3_C_OUT, Q3_K, bias=False)
    conv_bias = conv2d_flops(Q3_C_IN, Q3_H_IN, Q3_W_IN, Q3_C_OUT, Q3_K, bias=True)
    h_conv, w_conv = conv2d_output_hw(Q3_H_IN, Q3_W_IN, Q3_K)
    pool = maxpool2d_flops(Q3_C_OUT, h_conv, w_conv, Q3_POOL_K, stride=Q3_POOL_STRIDE)
    macs = conv2d_macs(Q3_C_IN, Q3_H_IN, Q3_W_IN, Q3_C_OUT, Q3_K)
    return {
        "conv_flops": conv,
        "conv_flops_with_bias": conv_bias,
        "pool_flops": pool,
        "total_flops": conv + pool,
        "total_flops_with_bias": conv_bias + pool,
        "macs": macs,
        # torch.utils.flop_counter counts 2 FLOPs per MAC and ignores bias and pooling.
        "torch_flop_counter": 2 * macs,
    }


# ---------------------------------------------------------------------------
# q4: LeNet-5 trainable parameters
# ---------------------------------------------------------------------------

LENET5_LAYERS: tuple[str, ...] = ("c1", "s2", "c3", "s4", "c5", "f6", "output")
Reading = Literal["modern", "original"]
C3Wiring = Literal["table", "full", "full_bias_per_connection"]


def c3_connection_table() -> tuple[tuple[int, ...], ...]:
    """For each of the 16 C3 maps, the S2 maps it reads (LeCun et al. 1998, Table I).

    Maps 0-5 read 3 cyclically contiguous S2 maps, 6-11 read 4 contiguous ones,
    12-14 read two adjacent pairs with one map skipped between them, 15 reads all 6.
    """
    n = 6

    def cyclic(start: int, offsets: Sequence[int]) -> tuple[int, ...]:
        return tuple(sorted((start + o) % n for o in offsets))

    three = [cyclic(i, (0, 1, 2)) for i in range(n)]
    four = [cyclic(i, (0, 1, 2, 3)) for i in range(n)]
    split = [cyclic(i, (0, 1, 3, 4)) for i in range(3)]
    return tuple(three + four + split + [tuple(range(n))])


C3_TABLE: tuple[tuple[int, ...], ...] = c3_connection_table()


def _conv_params(inputs_per_map: Sequence[int], k: int) -> int:
    # One k*k kernel per (output map, input map) connection, one bias per output map.
    return sum(n_in * k * k + 1 for n_in in inputs_per_map)


def _linear_params(n_in: int, n_out: int) -> int:
    return n_out * (n_in + 1)


def lenet5_param_counts(*, reading: Reading = "modern", c3: C3Wiring = "table") -> dict[str, int]:
    """Trainable parameters per LeNet-5 layer (keys ``LENET5_LAYERS`` + ``"total"``).

    ``reading="modern"``: average pooling without parameters and a linear
    10-way output. ``reading="original"``: each subsampling map has a trainable
    coefficient and bias, and the RBF output units have fixed (hand-set) centres.
    ``c3`` selects the paper's table, a fully connected C3, or the known
    mistake of one bias per (output, input) connection.
    """
    if reading not in ("modern", "original"):
        raise ValueError(f"reading must be 'modern' or 'original', got {reading!r}")
    k = 5
    if c3 == "table":
        c3_params = _conv_params([len(m) for m in C3_TABLE], k)
    elif c3 == "full":
        c3_params = _conv_params([6] * 16, k)
    elif c3 == "full_bias_per_connection":
        c3_params = 16 * 6 * (k * k + 1)
    else:
        raise ValueError(f"c3 must be 'table', 'full' or 'full_bias_per_connection', got {c3!r}")
    trainable_pool = reading == "original"
    counts = {
        "c1": _conv_params([1] * 6, k),
        "s2": 6 * 2 if trainable_pool else 0,  # coefficient + bias per map
        "c3": c3_params,
        "s4": 16 * 2 if trainable_pool else 0,
        "c5": _conv_params([16] * 120, k),  # 5x5 over the 5x5 S4 maps
        "f6": _linear_params(120, 84),
        "output": 0 if reading == "original" else _linear_params(84, 10),
    }
    counts["total"] = sum(counts.values())
    return counts


# ---------------------------------------------------------------------------
# q5, q6: sigmoid and tanh derivatives
# ---------------------------------------------------------------------------


def q5_dg_dxi(n_inputs: int = 3, i: int = 2) -> sp.Expr:
    """dg/dx_i for ``g = sigmoid(sum_j w_j x_j + b)``, written in terms of g and w_i.

    Differentiates an explicit sum of ``n_inputs`` terms (so the other terms
    visibly drop out), then eliminates the inputs through z = log(g/(1-g)).
    """
    if not 1 <= i <= n_inputs:
        raise ValueError(f"i must be in 1..{n_inputs}, got {i}")
    ws = sp.symbols(f"w_1:{n_inputs + 1}", real=True)
    xs = sp.symbols(f"x_1:{n_inputs + 1}", real=True)
    b = sp.Symbol("b", real=True)
    z = sum(w * x for w, x in zip(ws, xs)) + b
    derivative = sp.diff(1 / (1 + sp.exp(-z)), xs[i - 1])
    g = SYMBOLS["q5"]["g"]
    # sigma is invertible on (0, 1): solve z = logit(g) for b, which removes every x_j.
    b_of_g = sp.solve(sp.Eq(z, sp.log(g / (1 - g))), b)
    if len(b_of_g) != 1:
        raise RuntimeError(f"q5: expected one solution for b, got {b_of_g}")
    in_g = sp.simplify(derivative.subs(b, b_of_g[0]))
    return in_g.subs(ws[i - 1], SYMBOLS["q5"]["w_i"])


def q6_tanh_via_sigmoid() -> tuple[sp.Expr, sp.Expr]:
    """Return ``(tanh(x), d/dx tanh(x))`` written with ``sigmoid`` (display form).

    tanh(x) = (1 - u)/(1 + u) with u = exp(-2x) > 0, and sigmoid(2x) = s = 1/(1+u)
    gives u = (1 - s)/s; substituting and simplifying yields tanh in s. The
    derivative follows from the chain rule through ``sigmoid.fdiff``.
    """
    x = SYMBOLS["q6"]["x"]
    u = sp.Dummy("u", positive=True)
    s = sp.Dummy("s", positive=True)
    tanh_in_u = sp.simplify(sp.tanh(-sp.log(u) / 2).rewrite(sp.exp))
    tanh_in_s = sp.simplify(tanh_in_u.subs(u, (1 - s) / s))
    tanh_sig = tanh_in_s.subs(s, sigmoid(2 * x))
    return tanh_sig, sp.diff(tanh_sig, x)


# ---------------------------------------------------------------------------
# q7: configurable MLP
# ---------------------------------------------------------------------------


def build_mlp(hidden_units: int, n_layers: int, dropout: float) -> nn.Module:
    """MNIST MLP: (N,1,28,28) -> (N,10) logits with ``n_layers`` hidden ReLU+Dropout layers."""
    if hidden_units < 1 or n_layers < 1:
        raise ValueError(f"need hidden_units >= 1 and n_layers >= 1, got {hidden_units}, {n_layers}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout is a drop probability in [0, 1), got {dropout}")
    layers: list[nn.Module] = [nn.Flatten(), nn.Linear(28 * 28, hidden_units), nn.ReLU(), nn.Dropout(dropout)]
    for _ in range(n_layers - 1):
        layers += [nn.Linear(hidden_units, hidden_units), nn.ReLU(), nn.Dropout(dropout)]
    layers.append(nn.Linear(hidden_units, 10))
    return nn.Sequential(*layers)


def mlp_param_count(hidden_units: int, n_layers: int) -> int:
    """Trainable parameters of ``build_mlp``: 784h + h + (n_layers-1)(h^2 + h) + 10h + 10."""
    h = hidden_units
    return 784 * h + h + (n_layers - 1) * (h * h + h) + 10 * h + 10


# ---------------------------------------------------------------------------
# Answer tables
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """A value other than the primary answer that a rubric may recognise.

    ``kind`` is "alternative" for a defensible answer under another stated
    convention or reading, "mistake" for a known error; the rubric decides the
    credit. ``explanation`` is written to be shown to the student.
    """

    name: str
    value: float
    kind: Literal["alternative", "mistake"]
    explanation: str


def _symbolic_answers() -> tuple[dict[str, sp.Expr], dict[str, str]]:
    w_eff, b_eff = q1_collapse()
    dg = q5_dg_dxi()
    tanh_sig, dtanh_sig = q6_tanh_via_sigmoid()
    display = {
        "q1.W_eff": w_eff,
        "q1.b_eff": b_eff,
        "q5.dg_dxi": dg,
        "q6.tanh": tanh_sig,
        "q6.dtanh": dtanh_sig,
    }
    # Built-in functions only, so comparers that do not know our sigmoid class work.
    exprs = {k: v.rewrite(sigmoid, sp.exp) if v.has(sigmoid) else v for k, v in display.items()}
    return exprs, {k: sp.sstr(v) for k, v in display.items()}


ANSWERS_EXPR, ANSWERS_STR = _symbolic_answers()


def _numeric_answers() -> dict[str, float]:
    answers: dict[str, float] = {f"q2.{k}": v for k, v in q2_gradients().items()}
    flops = q3_flops()
    for key in ("conv_flops", "conv_flops_with_bias", "pool_flops", "total_flops"):
        answers[f"q3.{key}"] = flops[key]
    for layer, count in lenet5_param_counts(reading="modern").items():
        answers[f"q4.{layer}"] = count
    return answers


ANSWERS_NUM: dict[str, float] = _numeric_answers()


def _variants() -> dict[str, tuple[Variant, ...]]:
    f = q3_flops()
    out: dict[str, list[Variant]] = {
        "q3.conv_flops": [
            Variant("macs", f["macs"], "alternative",
                    "This counts multiply-accumulates (one per weight per output), not FLOPs with a multiply "
                    "and an add counted separately."),
            Variant("torch_flop_counter", f["torch_flop_counter"], "alternative",
                    "This is 2 x MACs, torch's FlopCounterMode convention; it also equals the count with bias."),
        ],
        "q3.total_flops": [
            Variant("with_bias", f["total_flops_with_bias"], "alternative",
                    "This total includes one add per output for the bias."),
            Variant("macs_plus_pool", f["macs"] + f["pool_flops"], "alternative",
                    "This total counts the convolution in multiply-accumulates rather than FLOPs."),
        ],
    }
    modern = lenet5_param_counts(reading="modern")
    original = lenet5_param_counts(reading="original")
    full = lenet5_param_counts(reading="modern", c3="full")
    bias_each = lenet5_param_counts(reading="modern", c3="full_bias_per_connection")
    original_full = lenet5_param_counts(reading="original", c3="full")
    pool_why = ("This is the 1998 paper's count: each subsampling map has one trainable coefficient and one "
                "trainable bias; modern average pooling has none.")
    original_why = {
        "s2": pool_why,
        "s4": pool_why,
        "output": ("This is the 1998 paper's count: the RBF output units have fixed, hand-set centres; a modern "
                   "linear output layer has 84*10 + 10 trainable parameters."),
        "total": ("This is the 1998 paper's total: trainable subsampling (coefficient and bias per map) and a "
                  "fixed RBF output layer instead of average pooling and a linear output."),
    }
    for layer, why in original_why.items():
        if original[layer] != modern[layer]:
            out.setdefault(f"q4.{layer}", []).append(Variant("original_paper", original[layer], "alternative", why))
    full_c3_why = (
        "LeNet-5's C3 is not fully connected: Table I of LeCun et al. (1998) connects each C3 map to 3, 4 "
        f"or 6 of the S2 maps (60 connections), giving {modern['c3']:,}; a fully connected C3 has "
        f"6*16*25 + 16 = {full['c3']:,}.")
    bias_why = (
        f"A convolution map has one bias, not one per input map: 6*16*25 + 16 = {full['c3']:,} for a fully "
        f"connected C3, not {bias_each['c3']:,}.")
    out.setdefault("q4.c3", []).extend([
        Variant("full_c3", full["c3"], "mistake", full_c3_why),
        Variant("bias_per_connection", bias_each["c3"], "mistake", bias_why),
    ])
    out.setdefault("q4.total", []).extend([
        Variant("full_c3", full["total"], "mistake", full_c3_why),
        Variant("original_full_c3", original_full["total"], "mistake", full_c3_why),
        Variant("bias_per_connection", bias_each["total"], "mistake", bias_why),
    ])
    return {k: tuple(v) for k, v in out.items()}


VARIANTS: dict[str, tuple[Variant, ...]] = _variants()
