"""Run a student's own training and evaluation loops on real DataLoaders, and watch what their model sees.

Handouts in the style of ds5220 ask for ``train_one_epoch(train_loader, model,
device, optimizer, log_interval, epoch) -> (losses, counter, num_correct)``
and ``test_one_epoch(test_loader, model, device) -> (test_loss, num_correct)``.
Student code relies on ``loader.dataset`` and ``loader.batch_size``, so the
loaders are real ``torch.utils.data.DataLoader``s over a ``TensorDataset``.

The grader needs to check what the loops *return* against what really
happened, without trusting the loops. Two observers do that:

- `WatchedDataset` (a TensorDataset) records the index of every sample the
  loader fetches, in order, so the labels of the batches the model saw are
  known even with shuffling;
- `ForwardRecorder` replaces the model instance's ``forward`` with a
  recording wrapper, so every call is seen whether the loop writes
  ``model(data)`` (``nn.Module.__call__`` looks ``forward`` up on the
  instance) or ``model.forward(data)`` (which bypasses forward hooks: a hook
  alone missed such loops and their mistakes went unchecked). For every call
  it records the batch size and the argmax (training) or the full output
  rows (evaluation). The model stays the student's own object, so
  ``.to(device)``, ``.train()``, ``.eval()``, ``.parameters()`` and
  ``state_dict()`` behave as in a notebook.

The parent recounts ``num_correct`` and recomputes the mean loss from these
records (`grader.checks.training_loop`). This module runs the loops and
records; it judges nothing. It runs in the sandbox child on student code and
in the parent on the reference loops (for a threshold relative to them).
"""
from __future__ import annotations

import functools
import time
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from grader.training.harness import OPTIMIZERS, _as_images, _make_optimizer, _pixel_affine, seed_everything

# Captured at import (before any student code runs in the child).
_object_setattr = object.__setattr__
_object_delattr = object.__delattr__
_register_forward_hook = nn.Module.register_forward_hook
_update_wrapper = functools.update_wrapper
_MethodType = types.MethodType
_type = type
_no_grad = torch.no_grad
_Tensor = Tensor


class WatchedDataset(TensorDataset):
    """A TensorDataset that remembers which indices were fetched, in order."""

    def __init__(self, *tensors: Tensor) -> None:
        super().__init__(*tensors)
        self.fetched: list[int] = []

    def __getitem__(self, index: int) -> tuple[Tensor, ...]:
        self.fetched.append(int(index))
        return super().__getitem__(index)


@dataclass
class CallLog:
    """What the model returned on each forward call during one phase."""

    sizes: list[int] = field(default_factory=list)  # batch size per call (0: not a (B, C) tensor)
    rows: list[Tensor] = field(default_factory=list)  # per call: (B,) argmax, or (B, C) outputs
    input_shape: tuple[int, ...] | None = None  # per-sample shape of the first call's input, e.g. (784,) or (1, 28, 28)

    def concatenated(self) -> Tensor | None:
        return torch.cat(self.rows) if self.rows else None


class RecordingForward:
    """The callable put in place of a model's ``forward``: calls the real one, then records the output.

    A deep copy of the model (``copy.deepcopy(model)``, e.g. to keep the best
    weights) gets its own recording forward bound to the copy, so the copy
    computes with its own weights and its calls are seen too.
    """

    def __init__(self, recorder: "ForwardRecorder", original: Callable[..., Any]) -> None:
        self.recorder = recorder
        self.original = original
        _update_wrapper(self, original)  # name, doc and signature (via __wrapped__) of the real forward

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        output = self.original(*args, **kwargs)
        self.recorder.record(output, args[0] if args else None)
        return output

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        copy = memo.get(id(self.recorder.model))  # deepcopy registers the new model before copying its __dict__
        if copy is None:
            return self
        return RecordingForward(self.recorder, _MethodType(_type(copy).forward, copy))


class ForwardRecorder:
    """Wraps the model instance's ``forward`` to log outputs into the current phase's CallLog (None: not recording).

    Setting ``forward`` on the instance (not the class) is what makes both
    ``model(x)`` and ``model.forward(x)`` go through the wrapper; `remove`
    puts back whatever the instance had before.
    """

    def __init__(self, model: nn.Module) -> None:
        self.log: CallLog | None = None
        self.keep_outputs = False
        self.model = model
        self._own = model.__dict__.get("forward")  # a forward the instance itself carried, if any
        self._hook: Any = None
        try:
            _object_setattr(model, "forward", RecordingForward(self, model.forward))
        except (AttributeError, TypeError, RuntimeError):
            # A model whose instance refuses attributes (e.g. a TorchScript module): a forward hook sees
            # model(x) calls; model.forward(x) calls then go unseen, and the check fails closed on them.
            self._hook = _register_forward_hook(model, lambda module, inputs, output: self.record(
                output, inputs[0] if inputs else None))

    def record(self, output: Any, first_input: Any = None) -> None:
        if self.log is None:
            return
        if self.log.input_shape is None and isinstance(first_input, _Tensor) and first_input.ndim >= 1:
            self.log.input_shape = tuple(int(d) for d in first_input.shape[1:])
        if isinstance(output, _Tensor) and output.ndim == 2:
            with _no_grad():
                out = output.detach().float().cpu()  # (B, C)
                self.log.rows.append(out.clone() if self.keep_outputs else out.argmax(dim=1))
            self.log.sizes.append(int(out.shape[0]))
        else:
            self.log.sizes.append(0)

    def phase(self, *, keep_outputs: bool) -> CallLog:
        self.log, self.keep_outputs = CallLog(), keep_outputs
        return self.log

    def stop(self) -> None:
        self.log = None

    def remove(self) -> None:
        if self._hook is not None:
            self._hook.remove()
        elif self._own is not None:
            _object_setattr(self.model, "forward", self._own)
        elif "forward" in self.model.__dict__:
            _object_delattr(self.model, "forward")


@dataclass
class EpochRecord:
    """One epoch: what the student's functions returned, and what the grader saw happen."""

    epoch: int
    train_returned: Any = None
    train_calls: CallLog = field(default_factory=CallLog)
    train_fetched: list[int] = field(default_factory=list)
    test_returned: Any = None
    test_calls: CallLog = field(default_factory=CallLog)
    test_fetched: list[int] = field(default_factory=list)
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # CPU time of this process during the epoch (what a too_slow verdict compares)


@dataclass
class LoopRun:
    epochs: list[EpochRecord] = field(default_factory=list)
    timed_out: bool = False
    seconds: float = 0.0


@dataclass(frozen=True)
class LoopSettings:
    """Plain-data options of `run_loops` (a rubric carries them to the child)."""

    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.0
    batch_size: int = 64
    test_batch_size: int = 100
    epochs: int = 3
    log_interval: int = 10
    seed: int = 0
    device: str = "cpu"
    max_seconds: float = 60.0
    shuffle: bool = True

    @classmethod
    def from_plain(cls, data: dict[str, Any]) -> "LoopSettings":
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown loop settings: {', '.join(sorted(unknown))}")
        return cls(**data)


def make_optimizer(model: nn.Module, s: LoopSettings) -> torch.optim.Optimizer:
    """The harness's optimizer factory (one for the grader's training and the student's loops)."""
    if s.optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {s.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
    return _make_optimizer([p for p in model.parameters() if p.requires_grad], s.optimizer, s.lr, s.momentum, 0.0)


def run_loops(model: nn.Module, train_one_epoch: Callable[..., Any], test_one_epoch: Callable[..., Any],
              train: tuple[Tensor, Tensor], val: tuple[Tensor, Tensor], settings: LoopSettings) -> LoopRun:
    """Call ``train_one_epoch`` then ``test_one_epoch`` once per epoch, recording everything.

    ``train`` and ``val`` are (float images (N, 1, 28, 28), int64 labels (N,)),
    already normalised. Exceptions from the loops propagate (the caller knows
    whose code it is). Stops before an epoch that would not fit in
    ``settings.max_seconds`` (judged by the previous epoch) and says so.
    """
    s = settings
    started = time.perf_counter()
    seed_everything(s.seed)
    model.to(torch.device(s.device))
    optimizer = make_optimizer(model, s)
    train_set, val_set = WatchedDataset(*train), WatchedDataset(*val)
    shuffle_gen = torch.Generator().manual_seed(s.seed)
    train_loader = DataLoader(train_set, batch_size=s.batch_size, shuffle=s.shuffle, generator=shuffle_gen)
    val_loader = DataLoader(val_set, batch_size=s.test_batch_size, shuffle=False)
    recorder = ForwardRecorder(model)
    run = LoopRun()
    try:
        for epoch in range(1, s.epochs + 1):
            elapsed = time.perf_counter() - started
            if run.epochs and elapsed + run.epochs[-1].seconds > s.max_seconds:
                run.timed_out = True
                break
            epoch_started, epoch_cpu = time.perf_counter(), time.process_time()
            record = EpochRecord(epoch=epoch)
            train_set.fetched, val_set.fetched = [], []
            record.train_calls = recorder.phase(keep_outputs=False)
            record.train_returned = train_one_epoch(train_loader, model, s.device, optimizer, s.log_interval, epoch)
            record.test_calls = recorder.phase(keep_outputs=True)
            record.test_returned = test_one_epoch(val_loader, model, s.device)
            recorder.stop()
            record.train_fetched, record.test_fetched = train_set.fetched, val_set.fetched
            record.seconds = time.perf_counter() - epoch_started
            record.cpu_seconds = time.process_time() - epoch_cpu
            run.epochs.append(record)
    finally:
        recorder.stop()
        recorder.remove()
        run.seconds = time.perf_counter() - started
    return run


class Reshaped(nn.Module):
    """The student's model fed images reshaped per sample to the layout their own loops used (e.g. (784,))."""

    def __init__(self, model: nn.Module, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.inner = model
        self.shape = shape

    def forward(self, x: Tensor) -> Any:
        return self.inner(x.reshape(x.shape[0], *self.shape))  # (B, *shape)


def normalised_images(x_uint8: Tensor, normalize: tuple[float, float] | None) -> Tensor:
    """uint8 (N, 28, 28) -> float32 (N, 1, 28, 28), with the harness's own preprocessing (as for prediction)."""
    scale, shift = _pixel_affine(normalize)
    x = _as_images(x_uint8).to(torch.float32)  # (N, 1, 28, 28): a new tensor, the uint8 images stay as they are
    x.mul_(scale)
    if shift:
        x.sub_(shift)
    return x
