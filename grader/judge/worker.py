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
  fields of the sandbox's ``train`` reply.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from grader.judge.graph import build, validate
from grader.probes import channel_probe
from grader.training.fitting import fit_and_predict, settings_from_plain


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
    result = fit_and_predict(model, train_x, train_y, eval_x, settings=settings, binary=bool(job.get("binary")),
                             loss=loss, loss_name=str(job.get("loss_name") or "loss"),
                             predict_seconds=float(job.get("predict_seconds", 30.0)))
    report = result.report.to_dict()
    report["loss_history"] = [float(v) for v in report["loss_history"]]
    preds = None if result.predictions is None else result.predictions.numpy().astype(np.int64)
    reply: dict[str, Any] = {
        "report": report, "predictions": preds, "problem": result.problem,
        "predict_timed_out": result.predict_timed_out, "predict_seconds": result.predict_seconds,
        "trainable": int(_counts(model)[0]),
    }
    labels = job.get("eval_labels")
    if preds is not None and isinstance(labels, np.ndarray) and labels.shape == preds.shape:
        reply["accuracy"] = float((preds == labels).mean())
    return reply


JOBS = {"module_info": module_info, "connectivity": connectivity, "train": train}


def run(job: dict[str, Any]) -> dict[str, Any]:
    """Do one job; raises JobError for a graph the judge cannot measure."""
    kind = job.get("job")
    if kind not in JOBS:
        raise ValueError(f"unknown judge job {kind!r}")
    return JOBS[kind](job)
