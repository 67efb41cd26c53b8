"""Probes of a module's behaviour: train versus eval mode, and which parameters a function freezes.

``train_eval_outputs`` runs the student's module twice in ``train()`` and
twice in ``eval()`` on one input (dropout must make the first two differ and
the last two agree). ``freeze_probe`` builds a model the grader defines
(`grader.models`, the same code the parent builds its copy with), hands it to
the student's function and reports ``requires_grad`` per parameter name.
"""
from __future__ import annotations

from typing import Any

import torch

from grader.models import build_transfer_model
from grader.child.ops import NotPlainData, Namespace, StudentError, from_plain, operation, student_error, to_plain

# Captured before student code runs (see grader.child.ops).
_Module = torch.nn.Module
_train = torch.nn.Module.train
_named_parameters = torch.nn.Module.named_parameters
_no_grad = torch.no_grad
_isinstance, _type = isinstance, type


@operation("train_eval_outputs")
def train_eval_outputs(ns: Namespace, r: dict[str, Any]) -> dict[str, Any]:
    """Outputs of ``target(**init)`` on one input: two passes in train mode, then two in eval mode."""
    model = ns.instantiate(r["target"], from_plain(r.get("init", {})))
    if not _isinstance(model, _Module):
        raise NotPlainData(f"{r['target']}(...) built an object of type {_type(model).__name__}, not a torch.nn.Module")
    x = from_plain(r["input"])
    outputs: dict[str, Any] = {}
    try:
        with _no_grad():
            for mode, training in (("train", True), ("eval", False)):
                _train(model, training)
                outputs[mode] = [to_plain(model(x)) for _ in range(2)]
    except (StudentError, NotPlainData):
        raise
    except BaseException as exc:
        raise student_error(exc) from None
    return outputs


@operation("freeze_probe")
def freeze_probe(ns: Namespace, r: dict[str, Any]) -> dict[str, Any]:
    """``requires_grad`` of every parameter after ``target(model, *args)`` on a grader-built model."""
    fn = ns.lookup(r["target"])
    model = build_transfer_model(r["model"])
    try:
        returned = fn(model, *[from_plain(a) for a in r.get("args", [])])
    except BaseException as exc:
        raise student_error(exc) from None
    # A function that returns a (possibly new) model is judged on what it returns.
    judged = returned if _isinstance(returned, _Module) else model
    try:
        flags = {name: bool(p.requires_grad) for name, p in _named_parameters(judged)}
    except BaseException as exc:
        raise student_error(exc) from None
    return {"requires_grad": flags, "returned_module": _isinstance(returned, _Module)}
