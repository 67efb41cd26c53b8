"""``grader handout``: an assignment's handout for students, in Markdown, generated from its rubric.

What students need to know to be graded fairly, from the same records the
grader uses, so the two cannot drift apart: the files to hand in, each name
to define with its signature and docstring (taken from the reference module
with `inspect`: the stub, never its body), each answer key, and per check
what is checked, its points, its tolerances (from the kind's declared
options, defaults included) and the equivalent forms accepted with their
credit. Hidden checks show only their title and points.

The output depends on nothing but the rubric and the reference (no dates, no
absolute paths), so a test can regenerate the committed handouts and compare.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, Mapping

from grader.checks import REGISTRY
from grader.rubric.model import CheckSpec, Rubric

HIDDEN = {"hidden": "hidden", "after_due_date": "shown after the due date", "after_published": "shown once grades are published"}
TOLERANCE_OPTIONS = ("rtol", "atol", "weight_atol", "loss_rtol")


def _code(text: Any) -> str:
    return f"`{text}`"


def _num(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _annotation(a: Any) -> str:
    if a is inspect.Parameter.empty:
        return ""
    if isinstance(a, str):  # `from __future__ import annotations`: as written
        return a
    if isinstance(a, type):
        return a.__qualname__ if a.__module__ == "builtins" else f"{a.__module__}.{a.__qualname__}"
    return repr(a).replace("typing.", "")


def signature_text(name: str, obj: Any) -> str:
    """``def name(a: T, b=1) -> R`` or ``class name(a: T = 1)``: the stub, never the body."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return f"{name} = ..."
    params = []
    for p in sig.parameters.values():
        text = p.name if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) else ("*" if p.kind == p.VAR_POSITIONAL else "**") + p.name
        ann = _annotation(p.annotation)
        if ann:
            text += f": {ann}"
        if p.default is not inspect.Parameter.empty:
            text += f" = {p.default!r}" if ann else f"={p.default!r}"
        params.append(text)
    if inspect.isclass(obj):
        # torch's classes by the name handouts use (nn.Module), not their defining module (torch.nn.modules.module)
        bases = [f"nn.{b.__name__}" if b.__module__.startswith("torch.nn") else b.__name__
                 for b in obj.__bases__ if b is not object]
        head = f"class {name}({', '.join(bases)})" if bases else f"class {name}"
        return f"{head}:\n    def __init__(self{''.join(', ' + p for p in params)}): ..."
    ret = _annotation(sig.return_annotation)
    return f"def {name}({', '.join(params)})" + (f" -> {ret}" if ret else "") + ": ..."


def _accepted(params: Mapping[str, Any]) -> list[str]:
    """The equivalent forms a check accepts, in words, with their credit."""
    out = []
    accept = params.get("accept") or {}
    red = accept.get("reduction")
    if red:
        forms, credit = (red.get("forms", []), red.get("credit", 1.0)) if isinstance(red, dict) else (red, 1.0)
        other = [f for f in forms if f != "none"]
        if other:
            out.append(f"the {' or '.join(other)} over the batch instead of one value per sample ({credit:.0%} credit)")
    if "constant_factor" in accept:
        out.append(f"the values times one positive constant, the same in every case ({accept['constant_factor'].get('credit', 1.0):.0%} credit)")
    if "permuted_channels" in accept:
        out.append(f"the output channels in another order ({accept['permuted_channels'].get('credit', 1.0):.0%} credit)")
    apis = params.get("array_api") or ["torch"]
    if "numpy" in apis:
        out.append("a NumPy implementation (called with float64 arrays when it fails on tensors)")
    return out


def _what(spec: CheckSpec, p: Mapping[str, Any]) -> str:
    """One sentence: what this check does with the student's work."""
    t = _code(spec.target)
    sentences: dict[str, Callable[[], str]] = {
        "conv_filter": lambda: f"The parameters {t} returns are applied with `F.conv2d` to random inputs and the outputs "
                               "compared with the expected ones (any filter with the right effect is right).",
        "tensor_function": lambda: f"{t} is called on random inputs and its values"
                                   + (" and gradients" if p.get("grad_wrt") else "") + " compared with the expected ones.",
        "forward_backward": lambda: f"{_code(p.get('forward'))} runs forward, then {t} gets the upstream gradient and the cache; "
                                    "the forward output and the gradients are compared with the expected ones.",
        "module_structure": lambda: f"{t} is built" + (" with several settings" if p.get("inits") else "")
                                    + " and its number of trainable parameters"
                                    + (" and output shape" if p.get("input") else "") + " compared with the expected ones.",
        "connectivity": lambda: f"Which input maps reach each output map of {t} is measured by changing one input map at a time.",
        "dropout": lambda: f"{t} is called with keep probabilities {', '.join(map(_num, p.get('keep_probs') or []))}; its "
                           "drop rate, scaling and fresh masks are tested statistically (a correct implementation fails "
                           f"with probability at most {_num(p.get('delta'))}).",
        "method_sequence": lambda: f"Objects of {t} get sequences of inputs through `.{p.get('method')}()`; every result is "
                                   "compared with the expected one.",
        "parameter_freeze": lambda: f"{t} is applied to small models; which parameters still require gradients is compared.",
        "train_eval_modes": lambda: f"{t} is run twice in `train()` and twice in `eval()` mode: dropout must act in train mode only.",
        "expression": lambda: f"Your answer {t} is read as math and compared symbolically with the expected expression.",
        "numeric": lambda: f"Your answer {t} is a number, compared with the expected value.",
        "manual": lambda: "Graded by hand" + (f" (worth {_num(p.get('points_by_hand'))} points)" if p.get("points_by_hand") else "")
                          + ": not scored automatically.",
        "training": lambda: f"The grader trains {t} itself on {_datasets(p)} with a fixed budget and seed, and measures "
                            "its accuracy on held-out test images.",
        "training_loop": lambda: f"Your {_code(p.get('train_function'))} and {_code(p.get('test_function'))} train {t} for "
                                 f"{_num(p.get('epochs'))} epochs on {_datasets(p)}; what they return is recounted and the "
                                 "model's test accuracy measured.",
    }
    if spec.kind in sentences:
        return sentences[spec.kind]()
    cls = REGISTRY.get(spec.kind)
    doc = (inspect.getdoc(cls) or "").splitlines() if cls else []
    return doc[0] if doc else f"Checked by the course's {spec.kind} check."


def _datasets(p: Mapping[str, Any]) -> str:
    d = p.get("dataset")
    names = [d] if isinstance(d, str) else list(d or [])
    return names[0] if len(names) == 1 else f"the first of {', '.join(names)} the grader has"


def _details(spec: CheckSpec, p: Mapping[str, Any]) -> list[str]:
    """Tolerances, answer format and thresholds, as bullet texts."""
    out = []
    tol = [f"{name} {_num(p[name])}" for name in TOLERANCE_OPTIONS if p.get(name) is not None]
    if tol:
        out.append("Tolerance: " + ", ".join(tol) + ".")
    if spec.kind == "expression":
        names = ", ".join(_code(s) for s in (p.get("symbols") or {}))
        out.append(f"Symbols you may use: {names}." if names else "Use no symbols.")
        if p.get("must_use"):
            out.append(f"Write it with {', '.join(map(_code, p['must_use']))}.")
        if p.get("must_not_use"):
            out.append(f"Do not use {', '.join(map(_code, p['must_not_use']))}.")
    if spec.kind == "numeric" and p.get("optional"):
        out.append("Optional: feedback only.")
    if spec.kind in ("training", "training_loop"):
        thr = p.get("threshold")
        if isinstance(thr, dict):
            out.append("Accuracy needed: " + ", ".join(f"{k} {v:.0%}" for k, v in thr.items()) + ".")
        elif thr is not None:
            out.append(f"Accuracy needed: {thr:.0%}.")
        if p.get("relative_to_reference") is not None:
            out.append(f"Accuracy needed: the reference model's, trained the same way, minus {p['relative_to_reference']:.0%}.")
    forms = _accepted(p)
    if forms:
        out.append("Also accepted: " + "; ".join(forms) + ".")
    for item in spec.rubric_items:
        out.append(f"{_num(item.points)} pts: {item.message}.")
    return out


def _targets(rubric: Rubric) -> dict[str, tuple[str | None, list[CheckSpec]]]:
    """Code names students define -> (the reference name whose stub documents it, the checks that use it)."""
    out: dict[str, tuple[str | None, list[CheckSpec]]] = {}
    for spec in rubric.checks:
        cls = REGISTRY.get(spec.kind)
        if not spec.target or cls is None or not cls.needs_code:
            continue
        names = [spec.target]
        p = cls.params_of(spec)
        if spec.kind == "forward_backward" and p.get("forward"):
            names.insert(0, p["forward"])
        if spec.kind == "training_loop":
            names += [p["train_function"], p["test_function"]]
        for name in names:
            ref = spec.reference if name == spec.target else name
            entry = out.setdefault(name, (ref, []))
            if spec not in entry[1]:
                entry[1].append(spec)
    return out


def _answer_keys(rubric: Rubric) -> list[CheckSpec]:
    return [c for c in rubric.checks if c.target and c.kind in REGISTRY and not REGISTRY[c.kind].needs_code]


def handout_markdown(rubric: Rubric) -> str:
    """The handout of one assignment (Markdown), from its rubric and the reference's stubs."""
    lines = [f"# {rubric.title}", "",
             f"<!-- Generated by `grader handout --assignment {rubric.assignment}` from rubrics/{rubric.path.name} and the "
             "reference's signatures and docstrings; regenerate it rather than editing it. -->", ""]
    hand_in = " or ".join(_code(f) for f in rubric.code_files)
    if rubric.answer_files:
        hand_in += f", and {' or '.join(_code(f) for f in rubric.answer_files)} for the written answers"
    lines += [f"**Hand in:** {hand_in}.  ",
              f"**Points:** {_num(rubric.total_points)} in all, in {len(rubric.questions)} questions.", "",
              "Your code is loaded without running what no graded name needs (downloads, training loops and plots at "
              "the top level are skipped), then each name below is called on inputs the grader draws at random.", ""]

    targets = _targets(rubric)
    if targets:
        lines += ["## Names to define", ""]
        for name, (ref_name, specs) in targets.items():
            obj = getattr(rubric.reference, ref_name or "", None) if rubric.reference is not None else None
            lines.append(f"### `{name}`")
            lines.append("")
            if obj is not None and callable(obj):
                lines += ["```python", signature_text(name, obj), "```", ""]
                doc = inspect.getdoc(obj)
                if doc:
                    lines += [doc, ""]
            lines.append("Checked by: " + ", ".join(f"{s.id} ({_num(s.points)} pts)" for s in specs) + ".")
            lines.append("")

    keys = _answer_keys(rubric)
    if keys:
        files = " or ".join(_code(f) for f in rubric.answer_files) or "the answers"
        lines += ["## Answers", "", f"Write these keys in {files}:", "", "| key | answer | points |", "|---|---|---|"]
        form = {"expression": "a math expression", "numeric": "a number", "manual": "text (graded by hand)"}
        for spec in keys:
            by_hand = spec.params.get("points_by_hand") if spec.kind == "manual" else None
            points = f"{_num(by_hand)} (by hand)" if by_hand else _num(spec.points)
            lines.append(f"| `{spec.target}` | {form.get(spec.kind, spec.kind)} | {points} |")
        lines.append("")

    lines += ["## What is checked", ""]
    for q in rubric.questions:
        lines += [f"### {q.id}: {q.title} ({_num(q.points)} points)", ""]
        for spec in q.checks:
            head = f"- **{spec.id}** ({_num(spec.points)} pts): {spec.title}."
            if spec.visibility != "visible":
                lines.append(head + f" *Hidden check ({HIDDEN.get(spec.visibility, spec.visibility)}).*")
                continue
            cls = REGISTRY.get(spec.kind)
            p = cls.params_of(spec) if cls is not None else dict(spec.params)
            lines.append(head + " " + _what(spec, p))
            lines += [f"  - {d}" for d in _details(spec, p)]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
