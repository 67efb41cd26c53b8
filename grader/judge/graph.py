"""An exported model as plain data: validate it against an allow-list, and rebuild it as a torch.fx GraphModule.

The sandbox child sends the graph of ``torch.export.export(model)`` as a
list of nodes (see `grader.child.operations.export`). Nothing in it is
trusted. `validate` reads it as plain data and says whether the grader may
judge it:

- every ``call_function`` target must be a standard ATen op of the
  allow-list (`ALLOWED_OPS`) or a shape helper on symbolic sizes;
- ops that only a lookup needs (equality tests, argmax, gather, sorting,
  embedding tables) and indexing with indices computed from the input are
  refused as *evidence*: a classifier's forward has no use for them;
- constants are bounded: lifted tensor constants, buffers that are not a
  batch norm's running statistics and frozen parameters together may hold
  at most `MAX_CONSTANT_ELEMENTS` numbers (LeNet has none; the reference
  C3 layer's index lists hold 60; a table of labels holds thousands);
- no op may write into a parameter, constant or buffer, except batch norm's
  own statistics.

`build` turns a valid graph into two GraphModules sharing one set of
parameters: the train-mode graph as exported, and its eval-mode twin with
dropout switched off and batch norm using its running statistics. The
eval-mode twin is derived here from the train-mode graph, never taken from
the student's eval-mode forward, so a model cannot behave one way while
it is trained and another while it is graded.
"""
from __future__ import annotations

import operator
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Standard ATen ops (the packet name: "aten.conv2d" covers "aten.conv2d.default"), found by exporting
# hw4's LR, C3_layer (as in the reference, and the usual student loop with zeros + slice assignment, masks),
# LeNet, ds5220's CNN and MLPs, a2's build_mlp, and the usual losses.
ALLOWED_OPS = frozenset(f"aten.{name}" for name in """
    conv1d conv2d conv3d convolution linear matmul mm addmm bmm baddbmm
    relu relu_ sigmoid sigmoid_ tanh tanh_ gelu leaky_relu leaky_relu_ elu elu_ selu silu silu_ hardtanh hardtanh_
    relu6 softplus log_sigmoid mish hardswish hardsigmoid prelu
    max_pool1d max_pool2d avg_pool1d avg_pool2d adaptive_avg_pool1d adaptive_avg_pool2d adaptive_max_pool2d
    view reshape flatten unflatten _unsafe_view view_as reshape_as expand expand_as contiguous clone alias detach
    cat concat concatenate stack hstack vstack slice select narrow split split_with_sizes chunk unbind index index_select
    add add_ mul mul_ sub sub_ div div_ rsub neg pow sqrt rsqrt exp log log1p log2 abs square reciprocal
    clamp clamp_ clamp_min clamp_min_ clamp_max clamp_max_ maximum minimum sign where gt lt ge le
    log_softmax softmax _log_softmax _softmax dropout feature_dropout alpha_dropout feature_alpha_dropout
    batch_norm layer_norm group_norm instance_norm
    mean sum t permute transpose squeeze unsqueeze movedim swapaxes
    zeros ones full zeros_like ones_like full_like new_zeros new_ones new_full empty_like fill_ copy_ copy
    slice_scatter select_scatter lift_fresh_copy to _to_copy type_as
    _assert_tensor_metadata sym_size sym_numel sym_stride scalar_tensor
    """.split())
# Python operators the exporter uses on symbolic sizes (x.size(0) * 2) and to take items of tuple results.
ALLOWED_PYTHON = {"_operator.getitem": operator.getitem, "_operator.mul": operator.mul, "_operator.add": operator.add,
                  "_operator.sub": operator.sub, "_operator.floordiv": operator.floordiv}
# Ops a table lookup needs and a classifier's forward does not: their presence is evidence, not a form to fall back on.
LOOKUP_OPS = frozenset(f"aten.{name}" for name in """
    eq ne argmax argmin max min gather take take_along_dim searchsorted bucketize sort argsort topk kthvalue
    unique _unique2 embedding embedding_bag one_hot nonzero masked_select index_put index_put_ scatter scatter_add
    isin histc bincount item _local_scalar_dense
    """.split())
# Ops that are the train/eval switch: (argument index of the flag, its value in eval mode).
MODE_FLAGS = {"aten.dropout": 2, "aten.feature_dropout": 2, "aten.alpha_dropout": 2, "aten.feature_alpha_dropout": 2,
              "aten.batch_norm": 5}
BATCH_NORM_STAT_ARGS = (3, 4)  # running_mean, running_var
# Ops whose result shares memory with their first argument: writing into it writes into that argument.
VIEW_OPS = frozenset(f"aten.{name}" for name in """
    view reshape flatten unflatten _unsafe_view view_as reshape_as expand expand_as alias detach slice select narrow
    split split_with_sizes chunk unbind t permute transpose squeeze unsqueeze movedim swapaxes contiguous to type_as
    """.split()) | {"_operator.getitem"}  # to and type_as return their argument itself when nothing changes
MAX_NODES = 4000
MAX_CONSTANT_ELEMENTS = 4096
MAX_CONSTANTS = 64
MAX_WEIGHT_BYTES = 256 << 20
TENSOR_KINDS = ("parameter", "buffer", "constant_tensor")


@dataclass
class Verdict:
    """What `validate` found: ok, or why not, and whether that is evidence (refuse) or a form to fall back on."""

    ok: bool
    evidence: bool = False  # refused for an op or a constant a classifier has no use for
    reason: str = ""  # a sentence for the student
    trainable: int = 0
    total: int = 0
    constant_elements: int = 0
    ops: list[str] = field(default_factory=list)


OVERLOAD_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")


def op_overload(target: str) -> Any | None:
    """The torch OpOverload that an "aten.<op>.<overload>" target names, or None.

    Only a real overload of an allow-listed op: never another attribute of the op object (its methods,
    e.g. ``__call__`` or ``__init__``, would let a graph rebind and call anything), and never an ``out``
    variant (it writes into one of its arguments).
    """
    import torch

    parts = target.split(".")
    if len(parts) != 3 or parts[0] != "aten" or f"aten.{parts[1]}" not in ALLOWED_OPS:
        return None
    if not OVERLOAD_NAME.match(parts[2]) or "out" in parts[2].split("_"):
        return None
    ops_packet = getattr(torch.ops.aten, parts[1], None)
    if not isinstance(ops_packet, torch._ops.OpOverloadPacket) or parts[2] not in ops_packet.overloads():
        return None
    op = getattr(ops_packet, parts[2], None)
    return op if isinstance(op, torch._ops.OpOverload) else None


def packet(target: str) -> str:
    """"aten.conv2d.default" -> "aten.conv2d"."""
    parts = target.split(".")
    return ".".join(parts[:2]) if parts[0] == "aten" else target


def _refs(value: Any) -> list[str]:
    """Names of the nodes an argument refers to."""
    if isinstance(value, dict):
        if set(value) == {"node"} and isinstance(value["node"], str):
            return [value["node"]]
        return [r for v in value.values() for r in _refs(v)]
    if isinstance(value, list):
        return [r for v in value for r in _refs(v)]
    return []


def _shape_ok(arr: Any) -> bool:
    return isinstance(arr, np.ndarray) and arr.dtype.kind in "biuf"


def validate(graph: Any) -> Verdict:
    """Check an exported graph (plain data from the child) before anything is computed from it."""
    if not isinstance(graph, dict) or graph.get("version") != 1:
        return Verdict(False, reason="the exported graph is malformed (no version 1 graph)")
    nodes, inputs, outputs, tensors = (graph.get(k) for k in ("nodes", "inputs", "outputs", "tensors"))
    if not (isinstance(nodes, list) and isinstance(inputs, list) and isinstance(outputs, list) and isinstance(tensors, dict)):
        return Verdict(False, reason="the exported graph is malformed (nodes, inputs, outputs or tensors missing)")
    if len(nodes) > MAX_NODES:
        return Verdict(False, reason=f"the exported graph has {len(nodes):,} operations, more than the {MAX_NODES:,} allowed")
    placeholders = [n for n in nodes if isinstance(n, dict) and n.get("op") == "placeholder"]
    if len(placeholders) != len(inputs):
        return Verdict(False, reason="the exported graph's inputs do not match its signature")
    kinds: dict[str, dict[str, Any]] = {}
    for spec, node in zip(inputs, placeholders):
        if not isinstance(spec, dict) or spec.get("name") != node.get("name") or \
                spec.get("kind") not in (*TENSOR_KINDS, "user_input"):
            return Verdict(False, reason="the exported graph's inputs do not match its signature")
        if spec["kind"] in TENSOR_KINDS and not (isinstance(spec.get("target"), str) and _shape_ok(tensors.get(spec["target"]))):
            return Verdict(False, reason=f"the exported graph does not carry the tensor {spec.get('target')!r}")
        kinds[spec["name"]] = spec
    if sum(1 for s in inputs if s["kind"] == "user_input") < 1:
        return Verdict(False, reason="the exported graph has no input")
    if sum(a.nbytes for a in tensors.values() if isinstance(a, np.ndarray)) > MAX_WEIGHT_BYTES:
        return Verdict(False, evidence=True, reason=f"the model's tensors take more than {MAX_WEIGHT_BYTES >> 20} MB")

    names: set[str] = set()
    data: set[str] = {s["name"] for s in inputs if s["kind"] == "user_input"}  # values computed from the input
    ops: set[str] = set()
    stat_uses: dict[str, int] = {}  # buffer -> uses as batch norm statistics (or its counter's add_)
    state = {s["name"] for s in inputs if s["kind"] in TENSOR_KINDS}  # the model's tensors and views of them
    owner: dict[str, str] = {name: name for name in state}
    uses: dict[str, int] = {}
    for node in nodes:
        if not isinstance(node, dict) or not isinstance(node.get("name"), str) or node["name"] in names:
            return Verdict(False, reason="the exported graph is malformed (a node without a unique name)")
        op, target = node.get("op"), node.get("target")
        args, kwargs = node.get("args", []), node.get("kwargs", {})
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            return Verdict(False, reason="the exported graph is malformed (node arguments)")
        refs = _refs(args) + _refs(kwargs)
        if any(r not in names for r in refs):
            return Verdict(False, reason="the exported graph is malformed (a node uses a value before it is computed)")
        names.add(node["name"])
        for r in refs:
            uses[r] = uses.get(r, 0) + 1
        if op == "placeholder":
            continue
        if op == "output":
            continue
        if op != "call_function" or not isinstance(target, str):
            return Verdict(False, reason=f"the exported graph has an operation of kind {op!r}, which the grader does not run")
        name = packet(target)
        ops.add(target)
        if name in LOOKUP_OPS:
            return Verdict(False, evidence=True, reason=(
                f"the model's forward uses {target}, an operation that looks values up (equality tests, argmax, "
                "gathering or sorting); a classifier's forward has no use for it, so the grader does not run this model"))
        if name not in ALLOWED_OPS and target not in ALLOWED_PYTHON:
            return Verdict(False, reason=f"the model uses {target}, which is not on the grader's list of standard operations")
        if target not in ALLOWED_PYTHON and op_overload(target) is None:
            # An export never names anything else: a method of the op object or an out= variant is forged.
            return Verdict(False, evidence=True, reason=(
                f"the exported graph names {target!r}, which is not an overload of a standard operation "
                "(or is one that writes into its arguments), so the grader does not run this model"))
        if any(r in data for r in refs):
            data.add(node["name"])
        if target == "_operator.getitem" and (len(args) != 2 or type(args[1]) is not int):
            # An export takes items of tuple results with literal positions only; a computed position, or a
            # tensor as the index (getitem on a tensor is indexing), would be a lookup the op checks never see.
            return Verdict(False, evidence=True, reason=(
                "the exported graph takes an item at a computed position (_operator.getitem), which an export "
                "never produces: it is a lookup, so the grader does not run this model"))
        if name in ("aten.index", "aten.index_select"):
            index_args = args[1:] if name == "aten.index" else args[2:3]
            if any(r in data for r in _refs(index_args)):
                return Verdict(False, evidence=True, reason=(
                    "the model's forward indexes a tensor with indices computed from its input (a lookup); "
                    "a classifier's forward has no use for that, so the grader does not run this model"))
        first = _refs(args[:1])
        if (name in VIEW_OPS or target in VIEW_OPS) and first and first[0] in state:
            state.add(node["name"])
            owner[node["name"]] = owner[first[0]]
        if name in MODE_FLAGS and name == "aten.batch_norm":
            for i in BATCH_NORM_STAT_ARGS:
                for r in _refs(args[i:i + 1]):
                    stat_uses[r] = stat_uses.get(r, 0) + 1
        if target.split(".")[1].endswith("_") and first and first[0] in state:
            spec = kinds[owner[first[0]]]
            if not (name == "aten.add_" and first[0] == spec["name"] and spec["kind"] == "buffer"
                    and spec["target"].endswith("num_batches_tracked")):
                return Verdict(False, evidence=True, reason=(
                    f"the model's forward writes into its own {spec['kind'].replace('_tensor', '')} {spec['target']!r} "
                    f"({target}): a model that changes its state on every call cannot be judged"))
            stat_uses[first[0]] = stat_uses.get(first[0], 0) + 1

    outs = [n for n in nodes if n.get("op") == "output"]
    if len(outs) != 1:
        return Verdict(False, reason="the exported graph is malformed (not one output)")
    user_outputs = [o for o in outputs if isinstance(o, dict) and o.get("kind") == "user_output"]
    if len(user_outputs) != 1 or len(outputs) != len(_refs(outs[0].get("args", [])[:1])):
        return Verdict(False, reason="the model's forward must return one tensor")

    constant_elements, constants = 0, 0
    trainable = total = 0
    for spec in inputs:
        if spec["kind"] not in TENSOR_KINDS:
            continue
        arr = tensors[spec["target"]]
        if spec["kind"] == "parameter":
            total += int(arr.size)
            if spec.get("trainable") is True:
                trainable += int(arr.size)
                continue
        if spec["kind"] == "buffer" and uses.get(spec["name"], 0) == stat_uses.get(spec["name"], 0):
            continue  # only batch norm's statistics (or unused)
        constant_elements += int(arr.size)
        constants += 1
    if constant_elements > MAX_CONSTANT_ELEMENTS or constants > MAX_CONSTANTS:
        return Verdict(False, evidence=True, reason=(
            f"the model carries {constants} constant tensor(s) with {constant_elements:,} numbers that are not trained "
            f"(at most {MAX_CONSTANT_ELEMENTS:,} are allowed: a LeNet has none, a C3 connection table fewer than "
            "3,000); a big constant such as a table of labels is not a model the grader runs"))
    return Verdict(True, trainable=trainable, total=total, constant_elements=constant_elements, ops=sorted(ops))


# --------------------------------------------------------------------------- building (judge side)


def _value(v: Any, env: dict[str, Any], device: Any) -> Any:
    import torch

    if isinstance(v, list):
        return [_value(x, env, device) for x in v]
    if isinstance(v, dict):
        if set(v) == {"node"}:
            return env[v["node"]]
        if set(v) == {"dtype"}:
            dtype = getattr(torch, str(v["dtype"]), None)
            if not isinstance(dtype, torch.dtype):
                raise ValueError(f"unknown dtype {v['dtype']!r}")
            return dtype
        if set(v) == {"device"}:
            return device  # the judge's device, whatever the child traced on
        for tag, kind in (("layout", torch.layout), ("memory_format", torch.memory_format)):
            if set(v) == {tag}:
                value = getattr(torch, str(v[tag]), None)
                if not isinstance(value, kind):
                    raise ValueError(f"unknown {tag} {v[tag]!r}")
                return value
        if set(v) == {"slice"}:
            return slice(*[_value(x, env, device) for x in v["slice"]])
        raise ValueError("unknown tagged value in a node argument")
    if v is None or type(v) in (bool, int, float, str):
        return v
    raise ValueError(f"a node argument of type {type(v).__name__}")


def _resolve(target: str) -> Any:
    import torch

    if target in ALLOWED_PYTHON:
        return ALLOWED_PYTHON[target]
    op = op_overload(target)
    if op is None:
        raise ValueError(f"cannot resolve {target}")
    return op


def build(graph: dict[str, Any], device: str = "cpu") -> tuple[Any, Any]:
    """(train-mode GraphModule, eval-mode GraphModule) sharing parameters and buffers. Validate first."""
    import torch
    from torch import fx, nn

    dev = torch.device(device)
    root = nn.Module()
    tensors = graph["tensors"]
    modes: list[Any] = []
    for eval_mode in (False, True):
        g = fx.Graph()
        env: dict[str, Any] = {}
        for node in graph["nodes"]:
            name, op = node["name"], node["op"]
            if op == "placeholder":
                spec = next(s for s in graph["inputs"] if s["name"] == name)
                if spec["kind"] == "user_input":
                    env[name] = g.placeholder(name)
                    continue
                attr = "t_" + name
                if not hasattr(root, attr):
                    value = torch.from_numpy(np.array(tensors[spec["target"]], copy=True)).to(dev)
                    if spec["kind"] == "parameter":
                        root.register_parameter(attr, nn.Parameter(value, requires_grad=spec.get("trainable") is True))
                    else:
                        root.register_buffer(attr, value)
                env[name] = g.get_attr(attr)
                continue
            if op == "output":
                result = _value(node["args"][0], env, dev)
                user = [i for i, o in enumerate(graph["outputs"]) if o.get("kind") == "user_output"]
                g.output(result[user[0]] if isinstance(result, list) else result)  # validate: exactly one
                continue
            target = node["target"]
            name_ = packet(target)
            if name_ == "aten._assert_tensor_metadata":
                continue  # an assertion about the tracing device and dtype: not part of the computation
            args = _value(node["args"], env, dev)
            kwargs = {k: _value(v, env, dev) for k, v in node["kwargs"].items()}
            if eval_mode and name_ in MODE_FLAGS and len(args) > MODE_FLAGS[name_]:
                args[MODE_FLAGS[name_]] = False
            if eval_mode and name_ == "aten.add_" and node["args"] and _refs(node["args"][:1]):
                first = _refs(node["args"][:1])[0]
                spec = next((s for s in graph["inputs"] if s["name"] == first), None)
                if spec is not None and spec["kind"] == "buffer":
                    env[name] = env[first]  # batch norm's counter does not move in eval mode
                    continue
            env[name] = g.call_function(_resolve(target), tuple(args), kwargs)
        modes.append(fx.GraphModule(root, g))
    return modes[0], modes[1]
