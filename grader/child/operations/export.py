"""Export the student's model with ``torch.export`` and send its graph as plain data (op ``export_model``).

The graph, not the student's Python, is what the grader's judge process
(`grader.judge`) measures: parameter counts come from the graph's inputs,
outputs and connectivity from running it, training and evaluation from a
GraphModule rebuilt from this data. So a ``named_parameters`` that lies, a
``forward`` that keeps state between calls, or an eval-mode branch that
looks labels up cannot decide a verdict: they either become ops and
constants in the graph (which the grader refuses), or are not in it.

What is sent (no pickle, no code): a list of nodes ``{name, op, target,
args, kwargs}`` where ``target`` is a string such as "aten.conv2d.default",
node references are ``{"node": name}`` and literals are ints, floats,
bools, strings, None, lists or ``{"dtype": "float32"}``-like tags; the input
signature (which placeholders are parameters, buffers, constants or user
inputs, under which name, trainable or not); and every tensor as a numpy
array. Everything is bounded here (nodes, literal sizes, weight bytes), and
again by the parent, which trusts none of it.

The model is exported in train mode only: the judge derives the eval-mode
graph from it by switching dropout and batch norm (`grader.judge.graph`),
so the student's eval-mode forward is never what is graded, and exporting
it too would only double the cost (about 0.5 s a model here).
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
import torch.fx.config as _fx_config

from grader.child.operations.training import build_model
from grader.child.ops import Namespace, operation

# Captured before student code runs (see grader.child.ops).
_Module = torch.nn.Module
_train = torch.nn.Module.train
_Tensor = torch.Tensor
_as_subclass = torch.Tensor.as_subclass
_isinstance, _type, _str, _repr = isinstance, type, str, repr
_np_array = np.array
_export = torch.export.export
_Dim = torch.export.Dim
_manual_seed = torch.manual_seed
_no_grad = torch.no_grad

MAX_NODES = 4000
MAX_LITERAL_ITEMS = 256  # elements of one literal list argument
MAX_TENSOR_BYTES = 256 << 20  # parameters, buffers and constants together
MAX_TENSORS = 2000


class ExportRefused(Exception):
    """The graph is too big to send: the parent reports it like an export failure."""


def _literal(v: Any, depth: int = 0) -> Any:
    """One node argument as plain data."""
    if depth > 6:
        raise ExportRefused("a node argument is nested too deeply")
    t = _type(v)
    if v is None or t in (bool, int, float, str):
        return v
    if t is torch.fx.Node:
        return {"node": v.name}
    if _isinstance(v, (list, tuple)):  # fx's immutable_list included
        if len(v) > MAX_LITERAL_ITEMS:
            raise ExportRefused(f"a node argument is a list of {len(v)} items")
        return [_literal(x, depth + 1) for x in v]
    if t is torch.dtype:
        return {"dtype": _str(v).removeprefix("torch.")}
    if t is torch.device:
        return {"device": v.type}
    if t is torch.layout:
        return {"layout": _str(v).removeprefix("torch.")}
    if t is torch.memory_format:
        return {"memory_format": _str(v).removeprefix("torch.")}
    if t is slice:
        return {"slice": [_literal(v.start, depth + 1), _literal(v.stop, depth + 1), _literal(v.step, depth + 1)]}
    raise ExportRefused(f"a node argument of type {t.__name__}")


def _target(node: torch.fx.Node) -> str | None:
    if node.op != "call_function":
        return _str(node.target) if node.op == "get_attr" else None
    target = node.target
    if _isinstance(target, torch._ops.OpOverload):
        return _str(target)  # "aten.conv2d.default"
    module = getattr(target, "__module__", "") or ""
    return f"{module}.{getattr(target, '__name__', _repr(target))}"  # e.g. "_operator.getitem"


def _nodes(ep: Any) -> list[dict[str, Any]]:
    nodes = list(ep.graph.nodes)
    if len(nodes) > MAX_NODES:
        raise ExportRefused(f"the graph has {len(nodes)} nodes, more than {MAX_NODES}")
    return [{"name": n.name, "op": n.op, "target": _target(n), "args": _literal(list(n.args)),
             "kwargs": {k: _literal(v) for k, v in n.kwargs.items()}} for n in nodes]


def _array(t: Any) -> np.ndarray:
    base = _as_subclass(t, _Tensor)
    with _no_grad():
        return _np_array(base.detach().cpu().contiguous().numpy(), copy=True)


def _signature(ep: Any) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """Inputs in graph order, and the tensors they name (parameters, buffers, constants)."""
    state = ep.state_dict
    constants = ep.constants
    inputs: list[dict[str, Any]] = []
    tensors: dict[str, np.ndarray] = {}
    total = 0
    for spec in ep.graph_signature.input_specs:
        kind = spec.kind.name.lower()  # parameter | buffer | constant_tensor | user_input | ...
        name = getattr(spec.arg, "name", None)
        entry: dict[str, Any] = {"name": name, "kind": kind,
                                 "target": spec.target.removeprefix("m.") if _isinstance(spec.target, _str) else spec.target}
        if kind in ("parameter", "buffer", "constant_tensor"):
            source = state if kind != "constant_tensor" and spec.target in state else constants
            if spec.target not in source:
                raise ExportRefused(f"the graph names a tensor {spec.target!r} it does not carry")
            tensor = source[spec.target]
            if not _isinstance(tensor, _Tensor):
                raise ExportRefused(f"the graph's constant {spec.target!r} is not a tensor")
            array = _array(tensor)
            if array.dtype.kind not in "biuf":
                raise ExportRefused(f"the tensor {spec.target!r} has dtype {array.dtype}")
            total += array.nbytes
            if total > MAX_TENSOR_BYTES or len(tensors) >= MAX_TENSORS:
                raise ExportRefused(f"the model's tensors take more than {MAX_TENSOR_BYTES >> 20} MB")
            tensors[entry["target"]] = array
            entry["trainable"] = bool(kind == "parameter" and tensor.requires_grad)
        elif kind != "user_input":
            raise ExportRefused(f"the graph has an input of kind {kind}")
        inputs.append(entry)
    return inputs, tensors


def export_graph(model: Any, examples: tuple[Any, ...], dynamic: tuple[Any, ...]) -> dict[str, Any]:
    """Export ``model`` on ``examples`` (first dim dynamic) in train mode.

    ``model`` is a grader-owned root (`_Root`, `_LossModule`); tensor names lose the root's "m." prefix.
    Nodes get no stack traces: nothing reads them, and collecting one per node was a fifth of an export.
    """
    _fx_config.do_not_emit_stack_traces = True
    _train(model, True)
    ep = _export(model, examples, dynamic_shapes=dynamic)
    inputs, tensors = _signature(ep)
    outputs = [{"name": getattr(s.arg, "name", None), "kind": s.kind.name.lower(), "target": s.target}
               for s in ep.graph_signature.output_specs]
    return {"version": 1, "nodes": _nodes(ep), "inputs": inputs, "outputs": outputs, "tensors": tensors}


class _Root(_Module):
    """The student's module under a grader-owned root: torch.export then lists parameters with the root's
    (unoverridden) ``named_parameters``, which reads every submodule's own table, so a student's override
    of ``named_parameters``/``parameters`` is not what decides which tensors are the graph's parameters."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.m = model

    def forward(self, x: torch.Tensor) -> Any:
        return self.m(x)


class _LossModule(_Module):
    """``loss(z, y)`` as a module, so that torch.export can trace a student's loss function."""

    def __init__(self, fn: Any) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> Any:
        return self.fn(z, y)


def _failure(exc: BaseException) -> str:
    text = _str(exc).strip().splitlines()
    first = text[0] if text else ""
    return f"{_type(exc).__name__}: {first[:300]}"


@operation("export_model")
def export_model(ns: Namespace, r: dict[str, Any]) -> dict[str, Any]:
    """Build ``target(*args, **init)`` after ``torch.manual_seed(seed)`` and export it on a random input.

    Request: target, init, args, seed, input (shape with the batch first),
    loss (optional name of a student loss ``loss(z, y)`` to export too, on
    vectors of the batch size). Reply: ``{"graph": ...}`` or ``{"error": why}``
    (and ``loss_graph`` / ``loss_error``); failing to export is not an error
    of the request: the parent falls back to the sandbox.
    """
    started = time.perf_counter()
    _manual_seed(int(r.get("seed", 0)))
    model = build_model(ns, r)  # target(*args, **init), which must give an nn.Module
    shape = [int(s) for s in r["input"]]
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    batch = _Dim("batch", min=1, max=1 << 20)
    reply: dict[str, Any] = {}
    try:
        reply["graph"] = export_graph(_Root(model), (x,), ({0: batch},))
    except BaseException as exc:  # the student's model (or torch.export on it) failed: the parent falls back
        reply["error"] = _failure(exc)
    if r.get("loss") and "graph" in reply:
        loss = ns.lookup(r["loss"])
        z = torch.randn(shape[0], generator=torch.Generator().manual_seed(1))
        y = torch.where(torch.randn(shape[0], generator=torch.Generator().manual_seed(2)) > 0, 1.0, -1.0)
        try:
            loss_graph = export_graph(_LossModule(loss), (z, y), ({0: batch}, {0: batch}))
        except BaseException as exc:
            reply["loss_error"] = _failure(exc)
        else:
            reply["loss_graph"] = loss_graph
    reply["seconds"] = time.perf_counter() - started
    return reply


class _WarmUp(_Module):
    """A small grader-owned model with the layers and tensor operations the assignments use, exported once
    at start-up: convolutions on channels picked by a list and by a slice, concatenation, both poolings,
    the usual activations, a view and a linear layer. Each kind of node costs most the first time a
    process exports it (hw4's LeNet: about 0.4 s less once these are warm)."""

    def __init__(self) -> None:
        super().__init__()
        self.convs = torch.nn.ModuleList([torch.nn.Conv2d(2, 1, 3), torch.nn.Conv2d(1, 1, 3)])
        self.fc = torch.nn.Linear(2 * 3 * 3, 3)

    def forward(self, x: torch.Tensor) -> Any:  # (B, 3, 8, 8) -> (B, 3)
        h = torch.cat([self.convs[0](x[:, [0, 1], :, :]), self.convs[1](x[:, 2:3])], dim=1)  # (B, 2, 6, 6)
        h = torch.nn.functional.max_pool2d(torch.nn.functional.avg_pool2d(torch.relu(h), 2), 1)  # (B, 2, 3, 3)
        h = torch.sigmoid(torch.tanh(h)).view(h.shape[0], -1)
        return torch.nn.functional.log_softmax(self.fc(h), dim=1)


def warm_up() -> None:
    """Export `_WarmUp` once, before any student code runs (the child's ``warm_export`` start-up option).

    The first ``torch.export`` in a process pays for importing torch._dynamo and priming its caches
    (about 3.4 s here, against 0.7 s for the next): done at start-up, that overlaps with the parent's
    own imports. The global RNG state is restored afterwards, so what the student's code later draws
    is what it would have drawn without the warm-up.
    """
    with torch.random.fork_rng(devices=[]):
        x = torch.zeros(2, 3, 8, 8)
        export_graph(_Root(_WarmUp()), (x,), ({0: _Dim("batch", min=1, max=1 << 20)},))
