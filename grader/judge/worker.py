"""The judge's jobs: measure a rebuilt graph (no student code) and answer in plain data.

Each job arrives as plain data with the exported graph (`grader.judge.graph`)
and runs in a fresh process forked for it by `grader.judge.server`:

- ``module_info``: trainable and total parameter counts read from the graph's
  parameters, and the eval-mode output on a grader-chosen input (the reply
  has the fields the sandbox's ``module_info`` has);
- ``connectivity``: the connectivity probe (`grader.probes`) on the graph;
- ``train``: train the graph with the grader's harness
  (`grader.training.fitting`), then predict the evaluation images and, since
  the judge holds their labels, compute the accuracy too. The reply has the
  fields of the sandbox's ``train`` reply, the predictions of the model
  *before* training for the evaluation images followed by as many training
  images (``untrained_predictions``), and its predictions for the first
  `SEEN_IMAGES` training images after training (``seen_predictions``): the parent checks that the
  model did not know the held-out answers before it learned, nor better than
  what it learned from;
- ``step_cost``: CPU seconds per training step of the graph and of the
  reference model (trusted code, imported here from its file), timed in
  turns in this one process (`grader.training.fitting.step_cpu_seconds`):
  the figures a ``too_slow`` verdict compares. Without a graph, only the
  reference is timed (the student's model is then timed in the sandbox).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from grader.trusted_import import load_reference
from grader.judge.graph import build, validate
from grader.probes import channel_probe
from grader.training.fitting import SEEN_IMAGES, fit_and_predict, settings_from_plain, step_cpu_seconds


class JobError(Exception):
    """The job cannot be done on this graph: a sentence for the student."""


class JudgedModel(nn.Module):
    """The student's graph as a module: the train-mode graph in train mode, its eval-mode twin in eval mode."""

    def __init__(self, train_graph: nn.Module, eval_graph: nn.Module) -> None:
        super().__init__()
        self.train_graph = train_graph
        self.eval_graph = eval_graph

    def forward(self, *inputs: torch.Tensor) -> Any:
        return self.train_graph(*inputs) if self.training else self.eval_graph(*inputs)


def model_from(graph: Any, device: str = "cpu") -> JudgedModel:
    verdict = validate(graph)
    if not verdict.ok:
        raise JobError(verdict.reason)
    train_graph, eval_graph = build(graph, device)
    return JudgedModel(train_graph, eval_graph)


def _counts(model: nn.Module) -> tuple[int, int]:
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def module_info(job: dict[str, Any]) -> dict[str, Any]:
    model = model_from(job["graph"])
    trainable, total = _counts(model)
    tops = sorted({str(s["target"]).split(".")[0] for s in job["graph"]["inputs"] if s.get("kind") == "parameter"})
    info: dict[str, Any] = {"trainable": int(trainable), "total": int(total), "children": [[t, "graph"] for t in tops]}
    if job.get("input") is not None:
        model.eval()
        with torch.no_grad():
            out = model(torch.from_numpy(np.array(job["input"], dtype=np.float32)))
        if not isinstance(out, torch.Tensor):
            raise JobError(f"the model returned a {type(out).__name__}, not a tensor")
        info["output"] = out.detach().cpu().numpy().copy()
    return info


def connectivity(job: dict[str, Any]) -> dict[str, Any]:
    model = model_from(job["graph"])
    return channel_probe(model, torch.from_numpy(np.array(job["input"], dtype=np.float32)))


def train(job: dict[str, Any]) -> dict[str, Any]:
    settings = settings_from_plain(job["settings"])
    model = model_from(job["graph"], settings.device)
    loss = None
    if job.get("binary"):
        loss = model_from(job["loss_graph"], settings.device)
    train_x = torch.from_numpy(np.array(job["train_images"], dtype=np.uint8))
    train_y = torch.from_numpy(np.array(job["train_labels"], dtype=np.int64))
    eval_x = torch.from_numpy(np.array(job["eval_images"], dtype=np.uint8))
    # The model also predicts, before training, the evaluation images and as many training images, and after
    # training the first SEEN_IMAGES training images: the parent compares the accuracies (a model that knows the
    # held-out answers before it has seen a training image, or knows them better than the images it learned
    # from, carries them in its weights; see `grader.checks.training.memorised_verdict`).
    m = eval_x.shape[0]
    result = fit_and_predict(model, train_x, train_y, torch.cat([eval_x, train_x[:SEEN_IMAGES]]), settings=settings,
                             binary=bool(job.get("binary")), loss=loss, loss_name=str(job.get("loss_name") or "loss"),
                             predict_seconds=float(job.get("predict_seconds", 30.0)),
                             untrained=torch.cat([eval_x, train_x[:m]]))
    report = result.report.to_dict()
    report["loss_history"] = [float(v) for v in report["loss_history"]]
    both = None if result.predictions is None else result.predictions.numpy().astype(np.int64)
    preds = None if both is None else both[:m].copy()
    reply: dict[str, Any] = {
        "report": report, "predictions": preds, "problem": result.problem,
        "predict_timed_out": result.predict_timed_out, "predict_seconds": result.predict_seconds,
        "trainable": int(_counts(model)[0]),
        "seen_predictions": None if both is None else both[m:].copy(),
        "untrained_predictions": None if result.untrained_predictions is None
        else result.untrained_predictions.numpy().astype(np.int64),
        "untrained_problem": result.untrained_problem, "untrained_timed_out": result.untrained_timed_out,
    }
    labels = job.get("eval_labels")
    if preds is not None and isinstance(labels, np.ndarray) and labels.shape == preds.shape:
        reply["accuracy"] = float((preds == labels).mean())
    return reply


def _reference_module(path: str, name: str) -> Any:
    """The instructor's reference module (trusted), imported from its file once per worker."""
    return load_reference(path, name)


def step_cost(job: dict[str, Any]) -> dict[str, Any]:
    settings = settings_from_plain(job["settings"])
    binary = bool(job.get("binary"))
    train_x = torch.from_numpy(np.array(job["train_images"], dtype=np.uint8))
    train_y = torch.from_numpy(np.array(job["train_labels"], dtype=np.int64))
    models: dict[str, Any] = {}
    if job.get("graph") is not None:
        loss = model_from(job["loss_graph"], settings.device) if binary else None
        models["student"] = (model_from(job["graph"], settings.device), loss)
    ref = job.get("reference")
    reference_problem = None
    if isinstance(ref, dict):
        try:  # the reference is the grader's side: its failure is reported as such, never as the student's
            module = _reference_module(str(ref["path"]), str(ref["name"]))
            torch.manual_seed(settings.seed)
            model = getattr(module, str(ref["factory"]))(*ref.get("args", []), **ref.get("init", {}))
            ref_loss = getattr(module, str(ref["loss"])) if ref.get("loss") else None
            models["reference"] = (model, ref_loss)
        except Exception as exc:  # noqa: BLE001 - trusted code, reported to the parent as a grader fault
            reference_problem = f"{type(exc).__name__}: {exc}"
    slowdown = job.get("max_slowdown")
    conclusive = ("student", "reference", 1.5 * float(slowdown)) if slowdown and len(models) == 2 else None
    cost = step_cpu_seconds(models, train_x, train_y, settings=settings, binary=binary,
                            loss_name=str(job.get("loss_name") or "loss"), conclusive=conclusive)
    plain = cost.to_plain()
    if reference_problem is not None:
        plain["problems"]["reference"] = reference_problem
    return plain


def loop_epoch_cost(job: dict[str, Any]) -> dict[str, Any]:
    """CPU seconds of one epoch of the reference's own loops (``train_one_epoch`` + ``test_one_epoch``) on the
    check's data and settings: what the student's loops are compared with when they ran out of time."""
    from grader.training.loops import LoopSettings, normalised_images, run_loops

    ref = job["reference"]
    settings = LoopSettings.from_plain(dict(job["settings"], epochs=1))
    normalize = tuple(job["normalize"]) if job.get("normalize") else None
    data = [torch.from_numpy(np.array(job[k], dtype=dtype)) for k, dtype in
            (("train_images", np.uint8), ("train_labels", np.int64), ("val_images", np.uint8), ("val_labels", np.int64))]
    try:  # trusted code: a failure here is the grader's, reported as such
        module = _reference_module(str(ref["path"]), str(ref["name"]))
        torch.manual_seed(settings.seed)
        model = getattr(module, str(ref["factory"]))(**ref.get("init", {}))
        run = run_loops(model, getattr(module, str(ref["train_function"])), getattr(module, str(ref["test_function"])),
                        (normalised_images(data[0], normalize), data[1]), (normalised_images(data[2], normalize), data[3]),
                        settings)
    except Exception as exc:  # noqa: BLE001
        return {"cpu_seconds": None, "problem": f"{type(exc).__name__}: {exc}"}
    return {"cpu_seconds": run.epochs[0].cpu_seconds if run.epochs else None, "problem": None}


JOBS = {"module_info": module_info, "connectivity": connectivity, "train": train, "step_cost": step_cost,
        "loop_epoch_cost": loop_epoch_cost}


def run(job: dict[str, Any]) -> dict[str, Any]:
    """Do one job; raises JobError for a graph the judge cannot measure."""
    kind = job.get("job")
    if kind not in JOBS:
        raise ValueError(f"unknown judge job {kind!r}")
    return JOBS[kind](job)
