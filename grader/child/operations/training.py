"""Sandbox operations that train the student's model: ``train`` (the grader's harness) and ``train_loop`` (theirs).

``train``: build ``target(*args, **init)``, train it with
`grader.training.fitting.fit_and_predict` on the labelled training images
of the request, and return predictions for the evaluation images, which
arrive without labels. For a binary task the loss is the student's own
function named by ``loss_target`` (hw4 p5).

``train_loop``: build the model, then call the student's
``train_one_epoch`` / ``test_one_epoch`` on real DataLoaders built here
(`grader.training.loops`), record what the model saw, and finally predict
the evaluation images with the grader's own code.

Both return plain data only; the parent computes every accuracy and judges
every contract. Nothing here knows a test label.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from grader.child.ops import Namespace, NotPlainData, StudentError, from_plain, operation, student_error, to_plain
from grader.training.fitting import fit_and_predict, settings_from_plain, step_cpu_seconds
from grader.training.harness import STUDENT_ERRORS, StudentModelError, predict
from grader.training.loops import LoopSettings, Reshaped, normalised_images, run_loops

# Captured before student code runs (see grader.child.ops).
_Module = torch.nn.Module
_from_numpy = torch.from_numpy
_np_array = np.array
_isinstance, _type, _callable = isinstance, type, callable


def _uint8_images(arr: Any, what: str) -> torch.Tensor:
    if not _isinstance(arr, np.ndarray) or arr.dtype != np.uint8 or arr.ndim not in (3, 4):
        raise ValueError(f"{what} must be a uint8 array (N, 28, 28)")
    return _from_numpy(_np_array(arr, copy=True))


def _labels(arr: Any, what: str) -> torch.Tensor:
    if not _isinstance(arr, np.ndarray) or arr.dtype != np.int64 or arr.ndim != 1:
        raise ValueError(f"{what} must be an int64 array (N,)")
    return _from_numpy(_np_array(arr, copy=True))


def build_model(ns: Namespace, r: dict[str, Any]) -> torch.nn.Module:
    """``target(*args, **init)``: a class or a factory function; it must give an nn.Module."""
    factory = ns.lookup(r["target"])
    args = [from_plain(a) for a in r.get("args", [])]
    init = {k: from_plain(v) for k, v in r.get("init", {}).items()}
    try:
        model = factory(*args, **init)
    except BaseException as exc:
        raise student_error(exc) from None
    if not _isinstance(model, _Module):
        raise StudentError(f"TypeError: {r['target']}(...) returned a {_type(model).__name__}, not a torch.nn.Module", None)
    return model


def _student_loss(ns: Namespace, r: dict[str, Any]) -> tuple[Any, str]:
    """The student's loss function a binary run trains with (None otherwise), and its name."""
    loss_name = r.get("loss_target") or "loss"
    if not r.get("binary"):
        return None, loss_name
    loss = ns.lookup(loss_name)
    if not _callable(loss):
        raise StudentError(f"TypeError: '{loss_name}' is a {_type(loss).__name__}, not a function", None)
    return loss, loss_name


@operation("train")
def train(ns: Namespace, r: dict[str, Any]) -> dict[str, Any]:
    settings = settings_from_plain(r["settings"])
    train_x = _uint8_images(r["train_images"], "train_images")
    train_y = _labels(r["train_labels"], "train_labels")
    eval_x = _uint8_images(r["eval_images"], "eval_images")
    loss, loss_name = _student_loss(ns, r)
    torch.manual_seed(settings.seed)  # identical initial weights for identical code
    model = build_model(ns, r)
    result = fit_and_predict(model, train_x, train_y, eval_x, settings=settings, binary=bool(r.get("binary")),
                             loss=loss, loss_name=loss_name, predict_seconds=float(r.get("predict_seconds", 30.0)))
    report = result.report.to_dict()
    report["loss_history"] = [float(v) for v in report["loss_history"]]
    return {
        "report": report,
        "predictions": None if result.predictions is None else result.predictions.numpy().astype(np.int64),
        "problem": result.problem,
        "predict_timed_out": result.predict_timed_out,
        "predict_seconds": result.predict_seconds,
        "trainable": int(sum(p.numel() for p in _Module.parameters(model) if p.requires_grad)),
    }


@operation("step_cost")
def step_cost(ns: Namespace, r: dict[str, Any]) -> dict[str, Any]:
    """CPU seconds per training step of the student's model, when it could not be exported to the judge.

    The figure is measured next to student code, so the student could fake
    it; the parent only uses it against the student: a figure above
    ``max_slowdown`` times the reference's (timed in the judge) is
    ``too_slow``, and a faked low figure gains nothing, because a model that
    then overruns the training's safety stop is undecided and reviewed, not
    passed, and the accuracy still comes from the predictions of a full run.
    """
    settings = settings_from_plain(r["settings"])
    train_x = _uint8_images(r["train_images"], "train_images")
    train_y = _labels(r["train_labels"], "train_labels")
    loss, loss_name = _student_loss(ns, r)
    torch.manual_seed(settings.seed)
    model = build_model(ns, r)
    cost = step_cpu_seconds({"student": (model, loss)}, train_x, train_y, settings=settings,
                            binary=bool(r.get("binary")), loss_name=loss_name)
    return cost.to_plain()


def _plain_or_note(value: Any) -> Any:
    """The student's return value as plain data, or {"not_plain": why} (judged by the parent)."""
    try:
        return to_plain(value)
    except NotPlainData as exc:
        return {"not_plain": str(exc)}


def _log(calls: Any) -> dict[str, Any]:
    rows = calls.concatenated()
    return {"sizes": list(calls.sizes), "rows": None if rows is None else rows.numpy()}


@operation("train_loop")
def train_loop(ns: Namespace, r: dict[str, Any]) -> dict[str, Any]:
    settings = LoopSettings.from_plain(r["settings"])
    normalize = tuple(r["normalize"]) if r.get("normalize") else None
    train_x = normalised_images(_uint8_images(r["train_images"], "train_images"), normalize)  # (N, 1, 28, 28)
    val_x = normalised_images(_uint8_images(r["val_images"], "val_images"), normalize)
    train_y = _labels(r["train_labels"], "train_labels")
    val_y = _labels(r["val_labels"], "val_labels")
    eval_x = _uint8_images(r["eval_images"], "eval_images")
    train_fn, test_fn = ns.lookup(r["train_function"]), ns.lookup(r["test_function"])
    torch.manual_seed(settings.seed)
    model = build_model(ns, r)
    try:
        run = run_loops(model, train_fn, test_fn, (train_x, train_y), (val_x, val_y), settings)
    except (StudentError, NotPlainData):
        raise
    except BaseException as exc:  # the student's loops or model raised
        raise student_error(exc) from None
    epochs = []
    for e in run.epochs:
        epochs.append({
            # cpu_seconds is the child's own figure: only ever used against the student (grader.checks.training_loop).
            "epoch": e.epoch, "seconds": e.seconds, "cpu_seconds": e.cpu_seconds,
            "train_returned": _plain_or_note(e.train_returned), "train_calls": _log(e.train_calls),
            "train_fetched": np.asarray(e.train_fetched, dtype=np.int64),
            "test_returned": _plain_or_note(e.test_returned), "test_calls": _log(e.test_calls),
            "test_fetched": np.asarray(e.test_fetched, dtype=np.int64),
        })
    reply: dict[str, Any] = {"epochs": epochs, "timed_out": run.timed_out, "seconds": run.seconds,
                             "predictions": None, "problem": None, "input_layout": None}
    try:
        preds = predict(model, eval_x, device=settings.device, normalize=normalize, n_classes=None)  # (M,)
        reply["predictions"] = preds.numpy().astype(np.int64)
    except StudentModelError as exc:
        reply["problem"] = exc.message
    except STUDENT_ERRORS as exc:
        reply["problem"] = f"predicting raised {_type(exc).__name__}: {exc}"
    layout = _loop_layout(run, tuple(val_x.shape[1:]))
    if reply["problem"] is not None and layout is not None:
        # A model written for flattened input (its structure check says so) is evaluated the way the student's
        # own test_one_epoch fed it, so 2.3 judges the loops, not the input layout a second time.
        try:
            preds = predict(Reshaped(model, layout), eval_x, device=settings.device, normalize=normalize, n_classes=None)
            reply.update(predictions=preds.numpy().astype(np.int64), problem=None, input_layout=list(layout))
        except (StudentModelError, *STUDENT_ERRORS):
            pass  # the first problem stands
    return reply


def _loop_layout(run: Any, image_shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """The per-sample input layout test_one_epoch fed the model, when it differs from the images' and holds as many values."""
    shapes = [e.test_calls.input_shape for e in run.epochs if e.test_calls.input_shape is not None]
    if not shapes:
        return None
    layout = shapes[-1]
    if layout == image_shape or int(np.prod(layout)) != int(np.prod(image_shape)):
        return None
    return layout
