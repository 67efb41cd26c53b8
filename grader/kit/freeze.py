"""Freeze what the public checks ask of the reference module, and replay it without the module.

A check reaches the reference only through ``ctx.reference`` (``getattr`` or
`grader.rubric.references.resolve_reference`). `RecordingReference` stands in
for the module while the kit is built: every call of a reference function is
made for real and its result kept as plain data (arrays and JSON), keyed by
the exact arguments. `FrozenReference` stands in for it in the kit: the same
call with the same arguments (the kit fixes the seed, so the checks draw the
same inputs) returns the kept result; any other call is a `FrozenMiss`,
never a made-up value.

What is kept, per kind of value the reference returns:

- numbers, strings, lists, dicts: as JSON;
- tensors and arrays: as ``.npy`` (never pickle). When arguments require
  gradients, the full Jacobian of each output with respect to each of them is
  kept too, so the replayed output backpropagates any weighting or reduction
  a check applies afterwards (`_Replay`);
- a ``torch.nn.Module`` (a class the check instantiates): its trainable
  parameter *count* only (one flat parameter of that size, no shapes), and
  its outputs on the inputs the check ran it on.

Written by hand because no library records and replays calls on tensors with
their gradients; the format is small and versioned (`FORMAT`).
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from collections.abc import Mapping
from types import ModuleType
from typing import Any, Callable

import numpy as np
import torch

FORMAT = 1
MAX_ARRAY_BYTES = 64 * 2**20  # a fixture larger than this is the rubric's mistake, not something to ship


class FrozenMiss(Exception):
    """The kit holds no frozen value for this call: the self-test cannot judge what needed it."""


class NotFreezable(Exception):
    """The reference returned something the kit cannot keep as plain data (worded for instructors)."""


# --- argument keys ----------------------------------------------------------------------------------------


def _digest(value: Any, h: "hashlib._Hash") -> None:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        h.update(f"A{value.dtype.str}{value.shape}".encode())
        h.update(value.tobytes(order="C"))
    elif isinstance(value, (list, tuple)):
        h.update(f"L{len(value)}[".encode())
        for v in value:
            _digest(v, h)
        h.update(b"]")
    elif isinstance(value, dict):
        h.update(f"D{len(value)}{{".encode())
        for k in sorted(value, key=str):
            h.update(repr(k).encode())
            _digest(value[k], h)
        h.update(b"}")
    elif value is None or isinstance(value, (bool, int, float, str)):
        h.update(f"S{type(value).__name__}:{value!r};".encode())
    else:
        raise NotFreezable(f"a reference function was called with a {type(value).__name__}, which the kit cannot key")


def call_key(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """The hex key of one call: the reference name and the exact bytes, shapes and dtypes of its arguments."""
    h = hashlib.sha256(name.encode() + b"\0")
    _digest(list(args), h)
    _digest(dict(kwargs), h)
    return h.hexdigest()


# --- plain-data store -------------------------------------------------------------------------------------


class Store:
    """Arrays as numbered ``.npy`` files in one folder, everything else as JSON with ``{"$array": n}`` links."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.count = 0

    def put(self, value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().numpy()
        if isinstance(value, np.ndarray):
            if value.dtype.kind not in "biuf" or value.nbytes > MAX_ARRAY_BYTES:
                raise NotFreezable(f"an array of dtype {value.dtype} and {value.nbytes} bytes cannot be frozen")
            self.folder.mkdir(parents=True, exist_ok=True)
            n, self.count = self.count, self.count + 1
            # (np.ascontiguousarray would turn a 0-d array into shape (1,): a copy keeps the shape)
            np.save(self.folder / f"{n}.npy", value.copy(order="C"), allow_pickle=False)
            return {"$array": n}
        if isinstance(value, (list, tuple)):
            return {"$seq": [self.put(v) for v in value], "tuple": isinstance(value, tuple)}
        if isinstance(value, dict):
            if not all(isinstance(k, str) for k in value):
                raise NotFreezable("a dict with keys other than strings cannot be frozen")
            return {"$dict": {k: self.put(v) for k, v in value.items()}}
        if isinstance(value, float) and not math.isfinite(value):
            return {"$float": repr(value)}
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, (np.integer, np.floating)):
            return self.put(value.item())
        raise NotFreezable(f"a {type(value).__name__} cannot be frozen as plain data")


def load_plain(data: Any, folder: Path, *, as_torch: bool) -> Any:
    """The inverse of `Store.put`; arrays come back as tensors when ``as_torch`` (what the reference returned)."""
    if isinstance(data, dict):
        if "$array" in data:
            arr = np.load(folder / f"{int(data['$array'])}.npy", allow_pickle=False)
            return torch.from_numpy(arr) if as_torch else arr
        if "$seq" in data:
            items = [load_plain(v, folder, as_torch=as_torch) for v in data["$seq"]]
            return tuple(items) if data.get("tuple") else items
        if "$dict" in data:
            return {k: load_plain(v, folder, as_torch=as_torch) for k, v in data["$dict"].items()}
        if "$float" in data:
            return float(data["$float"])
    return data


# --- recording (kit build, with the reference module) -----------------------------------------------------


def _flat_outputs(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _flat_outputs(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _flat_outputs(v)]
    return []


def _jacobian_rows(o: torch.Tensor, arg: torch.Tensor) -> np.ndarray:
    """d(o)/d(arg) as a (o.numel(), arg.numel()) float64 matrix: one batched backward, else one per row."""
    flat = o.reshape(-1)
    eye = torch.eye(flat.numel(), dtype=flat.dtype)
    try:
        (g,) = torch.autograd.grad(flat, arg, grad_outputs=eye, retain_graph=True, allow_unused=True,
                                   is_grads_batched=True)
        if g is None:
            return np.zeros((flat.numel(), arg.numel()))
        return g.detach().reshape(flat.numel(), -1).double().numpy()
    except RuntimeError:  # an operation without a batched backward rule
        rows = []
        for k in range(flat.numel()):
            (g,) = torch.autograd.grad(flat[k], arg, retain_graph=True, allow_unused=True)
            rows.append(np.zeros(arg.numel()) if g is None else g.detach().reshape(-1).double().numpy())
        return np.stack(rows) if rows else np.zeros((0, arg.numel()))


def _jacobians(out: Any, args: tuple[Any, ...]) -> dict[str, list[np.ndarray]]:
    """For each argument that requires grad, d(output k)/d(arg), shaped (out_k.numel(), arg.numel())."""
    wrt = [i for i, a in enumerate(args) if isinstance(a, torch.Tensor) and a.requires_grad]
    outs = [o for o in _flat_outputs(out) if o.requires_grad]
    if not wrt or not outs:
        return {}
    return {str(i): [_jacobian_rows(o, args[i]) for o in outs] for i in wrt}


def _put_matrix(store: "Store", m: np.ndarray) -> Any:
    """A Jacobian: sparse (coordinates and values) when mostly zeros, as batch-norm's are, else dense."""
    nz = np.nonzero(m)
    if m.size and len(nz[0]) < 0.25 * m.size:
        return {"$sparse": list(m.shape), "rows": store.put(nz[0].astype(np.int32)),
                "cols": store.put(nz[1].astype(np.int32)), "vals": store.put(m[nz])}
    return store.put(m)


def _load_matrix(data: Any, folder: Path) -> np.ndarray:
    if isinstance(data, dict) and "$sparse" in data:
        m = np.zeros(tuple(data["$sparse"]))
        m[load_plain(data["rows"], folder, as_torch=False), load_plain(data["cols"], folder, as_torch=False)] = \
            load_plain(data["vals"], folder, as_torch=False)
        return m
    return np.asarray(load_plain(data, folder, as_torch=False))


class RecordingReference:
    """Stands in for the reference module while a kit is built: calls go through, results are kept."""

    def __init__(self, module: ModuleType, store: Store) -> None:
        self._module = module
        self._store = store
        self.__name__ = module.__name__
        self.values: dict[str, Any] = {}  # name -> plain value
        self.calls: dict[str, dict[str, Any]] = {}  # key -> {"name", "output", "jacobians"}
        self.modules: dict[str, dict[str, Any]] = {}  # module id -> {"trainable", "calls"}
        self.companions: dict[str, list[str]] = {}  # reference name -> known-mistake names to call alongside

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        value = getattr(self._module, name)
        if callable(value):
            return self._recording(name, value)
        if isinstance(value, Mapping):
            # A table of answers: keep only the entries the public checks look up, never the whole table.
            return _RecordingTable(value, self._store, self.values.setdefault(name, {"$dict": {}})["$dict"])
        self.values[name] = self._store.put(value)
        return value

    def __dir__(self) -> list[str]:
        return [n for n in dir(self._module) if not n.startswith("_")]

    def _recording(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            out = self._record(name, fn, args, kwargs)
            # A known mistake is evaluated only when a student makes it: evaluate it now, on the same arguments,
            # so that the kit can name the mistake too.
            for other in self.companions.get(name, []):
                plain = tuple(a.detach() if isinstance(a, torch.Tensor) else a for a in args)
                try:
                    self._record(other, getattr(self._module, other), plain, kwargs)
                except Exception:  # a mistake that does not apply to these arguments is simply not kept
                    pass
            return out

        return call

    def _record(self, name: str, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        key = call_key(name, args, kwargs)
        out = fn(*args, **kwargs)
        if isinstance(out, torch.nn.Module):
            trainable = int(sum(p.numel() for p in out.parameters() if p.requires_grad))
            # Several checks build the same module (same arguments): one record gathers all their calls, so
            # that the kit's stand-in answers every one of them.
            mid = self.calls[key]["module"] if key in self.calls else f"m{len(self.modules)}"
            record = self.modules.setdefault(mid, {"trainable": trainable, "calls": {}})
            if record["trainable"] != trainable:
                raise NotFreezable(f"{name} builds modules of different sizes from the same arguments")
            self.calls[key] = {"name": name, "module": mid}
            return _RecordedModule(out, self, mid)
        entry = {"name": name, "output": self._store.put(out)}
        jac = _jacobians(out, args)
        if jac:
            entry["jacobians"] = {i: [_put_matrix(self._store, j) for j in js] for i, js in jac.items()}
        old = self.calls.get(key)
        if old is None or "jacobians" not in old or "jacobians" in entry:
            self.calls[key] = entry
        return out

    def manifest(self) -> dict[str, Any]:
        return {"format": FORMAT, "values": self.values, "calls": self.calls, "modules": self.modules}


class _RecordingTable(Mapping):
    """A reference table that records each entry read into `kept` (plain data) and nothing else."""

    def __init__(self, table: Mapping, store: Store, kept: dict[str, Any]) -> None:
        self._table, self._store, self._kept = table, store, kept

    def __getitem__(self, key: Any) -> Any:
        value = self._table[key]
        if not isinstance(key, str):
            raise NotFreezable(f"a table looked up with a {type(key).__name__} key cannot be frozen")
        self._kept[key] = self._store.put(value)
        return value

    def __contains__(self, key: object) -> bool:
        return key in self._table

    def __iter__(self) -> Any:
        raise NotFreezable("a check listed a whole reference table: the kit keeps only the entries it reads")

    def __len__(self) -> int:
        return len(self._table)


class _RecordedModule(torch.nn.Module):
    """The reference's module, with every forward call kept (keyed by its input) for the kit."""

    def __init__(self, inner: torch.nn.Module, rec: RecordingReference, mid: str) -> None:
        super().__init__()
        self.inner = inner
        self._rec, self._mid = rec, mid

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        out = self.inner(*args, **kwargs)
        key = call_key("forward", args, kwargs)
        calls = self._rec.modules[self._mid]["calls"]
        if key not in calls:  # the first instance's output is the one kept: one stand-in answers for all
            calls[key] = self._rec._store.put(out)
        return out


# --- replaying (kit, without the reference module) -------------------------------------------------------


class _Replay(torch.autograd.Function):
    """Returns a frozen output; its backward applies the frozen Jacobians to whatever gradient arrives."""

    @staticmethod
    def forward(ctx: Any, jacobians: dict[int, list[np.ndarray]], shapes: list[torch.Size], outputs: list[torch.Tensor],
                *inputs: torch.Tensor) -> Any:
        ctx.jacobians, ctx.shapes = jacobians, [i.shape for i in inputs]
        ctx.dtypes = [i.dtype for i in inputs]
        return tuple(o.clone() for o in outputs)

    @staticmethod
    def backward(ctx: Any, *grad_outputs: torch.Tensor) -> Any:
        grads: list[torch.Tensor | None] = []
        for pos, (shape, dtype) in enumerate(zip(ctx.shapes, ctx.dtypes)):
            jac = ctx.jacobians.get(pos)
            if jac is None:
                grads.append(None)
                continue
            total = np.zeros(int(np.prod(shape)) if len(shape) else 1)
            for j, g in zip(jac, grad_outputs):
                if g is not None:
                    total += g.detach().reshape(-1).double().numpy() @ j
            grads.append(torch.from_numpy(total.reshape(tuple(shape))).to(dtype))
        return (None, None, None, *grads)


class FrozenReference:
    """Stands in for the reference module in a kit: answers exactly the calls that were frozen."""

    def __init__(self, manifest: dict[str, Any], folder: Path, name: str) -> None:
        if manifest.get("format") != FORMAT:
            raise ValueError(f"this grader reads kit fixtures format {FORMAT}, the kit has {manifest.get('format')!r}")
        self._manifest, self._folder = manifest, folder
        self.__name__ = f"grader_reference_{name}"
        self.misses: list[str] = []
        names = set(manifest["values"]) | {c["name"] for c in manifest["calls"].values()}
        self._names = sorted(names)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if name in self._manifest["values"]:
            return load_plain(self._manifest["values"][name], self._folder, as_torch=False)
        if name in self._names:
            return self._replaying(name)
        raise AttributeError(name)

    def __dir__(self) -> list[str]:
        return list(self._names)

    def miss(self, what: str) -> FrozenMiss:
        self.misses.append(what)
        return FrozenMiss(what)

    def _replaying(self, name: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            entry = self._manifest["calls"].get(call_key(name, args, kwargs))
            if entry is None:
                raise self.miss(f"{name} on inputs the kit did not freeze")
            if "module" in entry:
                return FrozenModule(self, self._manifest["modules"][entry["module"]])
            out = load_plain(entry["output"], self._folder, as_torch=True)
            wrt = {int(i): [_load_matrix(j, self._folder) for j in js]
                   for i, js in entry.get("jacobians", {}).items()}
            needs = [i for i, a in enumerate(args) if isinstance(a, torch.Tensor) and a.requires_grad]
            if not needs:
                return out
            if any(i not in wrt for i in needs):
                raise self.miss(f"gradients of {name} that the kit did not freeze")
            return _with_gradients(out, wrt, args)

        return call


def _with_gradients(out: Any, wrt: dict[int, list[np.ndarray]], args: tuple[Any, ...]) -> Any:
    """The frozen output, attached to the arguments through `_Replay` so that autograd reaches them."""
    flat = _flat_outputs(out)
    tensors = [a for a in args if isinstance(a, torch.Tensor)]
    positions = {id(a): i for i, a in enumerate(args)}
    jac = {k: wrt[positions[id(t)]] for k, t in enumerate(tensors) if positions[id(t)] in wrt}
    replayed = list(_Replay.apply(jac, [], flat, *tensors))
    it = iter(replayed)

    def rebuild(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return next(it)
        if isinstance(value, (list, tuple)):
            items = [rebuild(v) for v in value]
            return tuple(items) if isinstance(value, tuple) else items
        if isinstance(value, dict):
            return {k: rebuild(v) for k, v in value.items()}
        return value

    return rebuild(out)


class FrozenModule(torch.nn.Module):
    """A reference module in a kit: its trainable count (as one flat parameter) and its frozen outputs."""

    def __init__(self, owner: FrozenReference, record: dict[str, Any]) -> None:
        super().__init__()
        self.count = torch.nn.Parameter(torch.zeros(int(record["trainable"])))
        self._owner, self._calls = owner, record["calls"]

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        data = self._calls.get(call_key("forward", args, kwargs))
        if data is None:
            raise self._owner.miss("a reference model on inputs the kit did not freeze")
        return load_plain(data, self._owner._folder, as_torch=True)


def read_manifest(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "calls.json").read_text(encoding="utf-8"))
