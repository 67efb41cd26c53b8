"""Probes of a module's behaviour in the sandbox: structure, connectivity, train versus eval mode, frozen parameters.

``module_info`` and ``connectivity`` measure the student's module here only
when it could not be exported for the judge (`grader.judge`): the counts
walk the module tree through ``object.__getattribute__`` (a lying
``parameters()``/``named_parameters()`` is never called), and the probe
sends every input to a fresh, identically seeded instance (a ``forward``
that keeps state between calls sees one input only).

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
from grader.probes import channel_probe

# Captured before student code runs (see grader.child.ops).
_Module = torch.nn.Module
_train = torch.nn.Module.train
_named_parameters = torch.nn.Module.named_parameters
_no_grad = torch.no_grad
_isinstance, _type = isinstance, type
_getattribute = object.__getattribute__
_dict_values = dict.values
_id, _len = id, len
_numel = torch._C.TensorBase.numel
_requires_grad = torch._C.TensorBase.requires_grad.__get__
_Parameter = torch.nn.Parameter
_manual_seed = torch.manual_seed
_equal = torch.equal
_as_subclass = torch.Tensor.as_subclass
_Tensor = torch.Tensor


def true_parameters(model: Any) -> list[Any]:
    """Every parameter of the module tree, found through the instance dicts, not the student's methods."""
    found: list[Any] = []
    seen_modules: set[int] = set()
    seen_params: set[int] = set()
    stack = [model]
    while stack:
        module = stack.pop()
        if _id(module) in seen_modules:
            continue
        seen_modules.add(_id(module))
        params, children = _getattribute(module, "_parameters"), _getattribute(module, "_modules")
        if not (_isinstance(params, dict) and _isinstance(children, dict)):
            raise NotPlainData("the module's parameter or submodule table is not a dict")
        for p in _dict_values(params):
            if p is not None and _id(p) not in seen_params:
                seen_params.add(_id(p))
                found.append(p)
        stack.extend(c for c in _dict_values(children) if c is not None)
    return found


def _build(ns: Namespace, r: dict[str, Any], seed: int = 0) -> Any:
    _manual_seed(seed)
    model = ns.instantiate(r["target"], from_plain(r.get("init", {})))
    if not _isinstance(model, _Module):
        raise NotPlainData(f"{r['target']}(...) built an object of type {_type(model).__name__}, not a torch.nn.Module")
    return model


@operation("module_info")
def module_info(ns: Namespace, r: dict[str, Any]) -> dict[str, Any]:
    """Trainable and total parameter counts of ``target(**init)`` and its eval-mode output on ``input``."""
    model = _build(ns, r)
    try:
        params = true_parameters(model)
        info: dict[str, Any] = {
            "trainable": int(sum(_numel(p) for p in params if _requires_grad(p))),
            "total": int(sum(_numel(p) for p in params)),
            "children": [[name, _type(m).__name__] for name, m in _getattribute(model, "_modules").items()],
        }
        if r.get("input") is not None:
            _train(model, False)
            with _no_grad():
                out = model(from_plain(r["input"]))
            info["output"] = to_plain(out)
    except (StudentError, NotPlainData):
        raise
    except BaseException as exc:
        raise student_error(exc) from None
    return info


def _same_weights(a: Any, b: Any) -> bool:
    pa, pb = true_parameters(a), true_parameters(b)
    return _len(pa) == _len(pb) and all(_equal(_as_subclass(x, _Tensor), _as_subclass(y, _Tensor)) for x, y in zip(pa, pb))


@operation("connectivity")
def connectivity(ns: Namespace, r: dict[str, Any]) -> dict[str, Any]:
    """Which output channels move when one input channel changes (see grader.probes), one fresh instance per input."""
    first, second = _build(ns, r), _build(ns, r)
    try:
        # Fresh identical instances defeat a forward that remembers earlier inputs; a module whose
        # construction is not reproducible from the seed is probed on one instance instead.
        model: Any = (lambda: _build(ns, r)) if _same_weights(first, second) else first
        probe = channel_probe(model, from_plain(r["input"]))
    except (StudentError, NotPlainData):
        raise
    except BaseException as exc:
        raise student_error(exc) from None
    return probe


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
