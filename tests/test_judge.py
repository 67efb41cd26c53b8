"""The judge: exported graphs are validated, rebuilt and measured outside student code, and the attacks hold.

- export + validate + rebuild, cross-checked against the eager modules they came from (outputs and parameter
  counts computed independently, by running the modules themselves);
- what the allow-list refuses as evidence (lookups, big constants, writes into the model's state) and what it
  only falls back on (an op outside the list), each with its sentence;
- the judge process: counts, outputs and the connectivity probe through the fork server; its limits;
- the sandbox fallback's own defences (true parameter tables, a fresh instance per probe input);
- the hostile submissions `lying_parameters`, `stateful_probe` and `label_lookup` lose exactly the points
  they deserve, and the correct hw4 solution keeps all of them.
"""
from __future__ import annotations

import hashlib
import json
import runpy
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml

from grader.child.operations.export import _Root, export_graph
from grader.judge import graph as judge_graph
from grader.judge.server import get_judge
from grader.judge.worker import model_from

REPO = Path(__file__).resolve().parent.parent
HOSTILE = REPO / "submissions_example" / "hostile"
CORRECT = REPO / "submissions_example" / "hw4" / "correct"


def _export(model: nn.Module, shape: tuple[int, ...]) -> dict:
    torch.manual_seed(0)
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    return export_graph(_Root(model), (torch.randn(*shape),), ({0: batch},))


def _reference(name: str):
    import importlib

    return importlib.import_module(f"reference.{name}")


class StudentC3(nn.Module):
    """The usual student C3: zeros, then one small convolution per output map written into a slice."""

    TABLE = _reference("hw4").c3_connections()

    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.ModuleList([nn.Conv2d(len(t), 1, 5) for t in self.TABLE])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(x.size(0), 16, x.size(2) - 4, x.size(3) - 4)
        for j, t in enumerate(self.TABLE):
            out[:, j:j + 1] = self.convs[j](torch.stack([x[:, i] for i in t], 1))
        return out


class MaskedC3(nn.Module):
    """C3 as a full convolution times a registered 0/1 mask (2,400 constant numbers)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(6, 16, 5)
        mask = torch.zeros(16, 6, 5, 5)
        for j, t in enumerate(StudentC3.TABLE):
            mask[j, t] = 1
        self.register_buffer("mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.conv.weight * self.mask, self.conv.bias)


def _models() -> list[tuple[str, nn.Module, tuple[int, ...]]]:
    hw4, ds, a2 = _reference("hw4"), _reference("ds5220"), _reference("a2")
    return [("hw4.LR", hw4.LR(), (3, 1, 28, 28)), ("hw4.C3_layer", hw4.C3_layer(), (2, 6, 14, 14)),
            ("hw4.C3_layer_full", hw4.C3_layer_full(), (2, 6, 14, 14)), ("hw4.LeNet", hw4.LeNet(), (3, 1, 28, 28)),
            ("hw4.LeNet(full_c3)", hw4.LeNet(full_c3=True), (3, 1, 28, 28)),
            ("ds5220.MNISTClassifierMLP", ds.MNISTClassifierMLP(), (4, 1, 28, 28)), ("ds5220.CNN", ds.CNN(), (4, 1, 28, 28)),
            ("a2.build_mlp(64, 2, 0.2)", a2.build_mlp(64, 2, 0.2), (3, 1, 28, 28)),
            ("a2.build_mlp(16, 4, 0.0)", a2.build_mlp(16, 4, 0.0), (3, 1, 28, 28)),
            ("student C3 (slice assignment)", StudentC3(), (2, 6, 14, 14)), ("student C3 (mask)", MaskedC3(), (2, 6, 14, 14))]


@pytest.mark.parametrize("name,model,shape", _models(), ids=[m[0] for m in _models()])
def test_models_export_validate_and_rebuild_to_the_same_function(name: str, model: nn.Module, shape: tuple[int, ...]) -> None:
    graph = _export(model, shape)
    verdict = judge_graph.validate(graph)
    assert verdict.ok, verdict.reason
    expected_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert verdict.trainable == expected_trainable
    judged = model_from(graph)
    assert sum(p.numel() for p in judged.parameters() if p.requires_grad) == expected_trainable
    x = torch.randn(5, *shape[1:])  # another batch size than the one exported with
    model.eval()
    judged.eval()
    with torch.no_grad():
        assert torch.allclose(judged(x), model(x), atol=1e-5)


def test_the_eval_twin_turns_dropout_off_and_batch_norm_to_running_statistics() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(20, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 3))
    graph = _export(model, (8, 20))
    judged = model_from(graph)
    x = torch.randn(16, 20)
    judged.train()
    with torch.no_grad():
        a, b = judged(x), judged(x)  # dropout: two passes differ; batch norm updates the running statistics
    assert not torch.allclose(a, b)
    # The same statistics in the eager model, by running it the same two times in train mode.
    model.train()
    with torch.no_grad():
        model(x), model(x)
    model.eval()
    judged.eval()
    with torch.no_grad():
        assert torch.allclose(judged(x), model(x), atol=1e-5)
        assert torch.equal(judged(x), judged(x))


class Lookup(nn.Module):
    """A table lookup written in tensor ops: nearest fingerprint, then its label."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.linear = nn.Linear(784, 10)
        self.register_buffer("keys", torch.randn(n))
        self.register_buffer("labels", torch.randint(0, 10, (n,)))
        self.register_buffer("proj", torch.randn(784))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.flatten(1) @ self.proj  # (B,)
        k = (h[:, None] - self.keys[None, :]).abs().argmin(1)  # (B,)
        return self.linear(x.flatten(1)) + 100 * F.one_hot(self.labels[k], 10)


class SoftLookup(nn.Module):
    """A lookup with allowed ops only: its table is a big constant."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(784, 10)
        self.keys = nn.Linear(784, 1000)
        self.register_buffer("table", torch.randn(1000, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(self.keys(x.flatten(1)) * 50, dim=1)  # (B, 1000)
        return self.linear(x.flatten(1)) + weights @ self.table


class DataIndex(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(784, 10)
        self.register_buffer("labels", torch.randn(256, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idx = (x.flatten(1)[:, 0] * 100).to(torch.int64).clamp(0, 255)  # (B,)
        return self.linear(x.flatten(1)) + self.labels[idx]


class Counter(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(784, 10)
        self.register_buffer("calls", torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.add_(1)
        return self.linear(x.flatten(1)) * self.calls


class ViewWriter(nn.Module):
    """Keeps state by writing through a view of its own weight."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(784, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.linear.bias.detach()[0:1].add_(1.0)
        return self.linear(x.flatten(1))


class Cumsum(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(784, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1)).cumsum(1)


@pytest.mark.parametrize("model,evidence,pattern", [
    (Lookup(500), True, r"looks values up"),
    (SoftLookup(), True, r"10,000 numbers that are not trained .*table of labels"),
    (DataIndex(), True, r"indices computed from its input"),
    (Counter(), True, r"writes into its own buffer 'calls'"),
    (ViewWriter(), True, r"writes into its own parameter 'linear.bias'"),
    (Cumsum(), False, r"uses aten\.cumsum\.default, which is not on the grader's list"),
], ids=["argmin-lookup", "big-constant", "data-index", "state-counter", "view-write", "op-outside-list"])
def test_validate_refuses_lookups_and_falls_back_on_unlisted_ops(model: nn.Module, evidence: bool, pattern: str) -> None:
    import re

    verdict = judge_graph.validate(_export(model, (2, 1, 28, 28)))
    assert not verdict.ok
    assert verdict.evidence is evidence
    assert re.search(pattern, verdict.reason), verdict.reason


def test_validate_refuses_malformed_graphs() -> None:
    graph = _export(_reference("hw4").LR(), (2, 1, 28, 28))
    broken = dict(graph, nodes=list(reversed(graph["nodes"])))
    assert not judge_graph.validate(broken).ok
    assert not judge_graph.validate({"version": 1, "nodes": "x"}).ok
    hidden = dict(graph, tensors={})
    assert "does not carry" in judge_graph.validate(hidden).reason


@pytest.mark.parametrize("forged", ["aten.relu.__call__", "aten.relu.__init__", "aten.relu.__setattr__",
                                    "aten.add.out", "aten.relu.no_such_overload", "aten.relu.default.extra"])
def test_validate_refuses_targets_that_are_not_overloads_of_listed_ops(forged: str) -> None:
    """A child can send any target string: one that names a method of an op object (which the judge would call
    with graph values, rebinding or running anything) or an out= variant is evidence, and is never resolved."""
    graph = _export(_reference("hw4").LR(), (2, 1, 28, 28))
    nodes = [dict(n) for n in graph["nodes"]]
    calls = [n for n in nodes if n["op"] == "call_function" and str(n["target"]).startswith("aten.")]
    calls[0]["target"] = forged
    verdict = judge_graph.validate(dict(graph, nodes=nodes))
    assert not verdict.ok and verdict.evidence, verdict.reason
    assert judge_graph.op_overload(forged) is None
    with pytest.raises(ValueError):
        judge_graph._resolve(forged)


def test_validate_refuses_getitem_with_a_computed_index() -> None:
    """getitem is allowed for tuple results at literal positions; forged onto a tensor with an index computed
    from the input, it would be the lookup that aten.index is refused for."""
    graph = _export(DataIndex(), (2, 1, 28, 28))
    nodes = [dict(n) for n in graph["nodes"]]
    index = next(n for n in nodes if str(n["target"]).startswith("aten.index."))
    table, (idx,) = index["args"]
    index.update(target="_operator.getitem", args=[table, idx])
    verdict = judge_graph.validate(dict(graph, nodes=nodes))
    assert not verdict.ok and verdict.evidence, verdict.reason
    assert "computed position" in verdict.reason
    # The same graph as exported is refused for its aten.index, and getitem at a literal position stays fine.
    assert "indices computed from its input" in judge_graph.validate(graph).reason
    assert judge_graph.validate(_export(_reference("hw4").LeNet(), (2, 1, 28, 28))).ok


def test_listed_overloads_resolve_to_torch_ops() -> None:
    assert judge_graph.op_overload("aten.relu.default") is torch.ops.aten.relu.default
    assert judge_graph.op_overload("aten.add.Tensor") is torch.ops.aten.add.Tensor


def test_a_sandbox_fallback_is_listed_for_review() -> None:
    from grader.checks.base import Outcome
    from grader.checks.judged import METHOD_SANDBOX, Judged, with_method

    outcome = with_method(Outcome(passed=True), Judged(METHOD_SANDBOX, note="the model could not be exported"))
    assert outcome.method == "sandbox" and "could not be exported" in (outcome.review or "")


# --------------------------------------------------------------------------- the judge process


def test_the_judge_process_counts_runs_and_probes_the_graph() -> None:
    hw4 = _reference("hw4")
    judge = get_judge()
    lenet = hw4.LeNet()
    x = np.random.default_rng(0).standard_normal((3, 1, 28, 28)).astype(np.float32)
    reply = judge.request({"job": "module_info", "graph": _export(lenet, (3, 1, 28, 28)), "input": x}, timeout=60)
    assert reply.ok, reply.message
    assert reply.value["trainable"] == sum(p.numel() for p in lenet.parameters())
    lenet.eval()
    with torch.no_grad():
        assert np.allclose(reply.value["output"], lenet(torch.from_numpy(x)).numpy(), atol=1e-5)
    probe = np.random.default_rng(1).standard_normal((2, 6, 14, 14)).astype(np.float32)
    reply = judge.request({"job": "connectivity", "graph": _export(hw4.C3_layer(), (2, 6, 14, 14)), "input": probe},
                          timeout=60)
    assert reply.ok, reply.message
    table = np.array(reply.value["matrix"])  # (6 inputs, 16 outputs)
    assert [sorted(np.flatnonzero(table[:, j]).tolist()) for j in range(16)] == [sorted(t) for t in hw4.c3_connections()]


class Huge(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(784, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        big = torch.ones(x.shape[0] * 20000, 20000)  # 16 GB for a batch of 10
        return self.linear(x.flatten(1)) + big.sum()


def test_the_judge_worker_runs_under_a_memory_limit_and_the_judge_survives() -> None:
    judge = get_judge()
    x = np.zeros((10, 1, 28, 28), dtype=np.float32)
    reply = judge.request({"job": "module_info", "graph": _export(Huge(), (2, 1, 28, 28)), "input": x,
                           "memory_mb": 1024}, timeout=60)
    assert not reply.ok and reply.kind in ("died", "student"), reply
    assert "memory" in reply.message.lower() or "alloc" in reply.message.lower(), reply.message
    again = judge.request({"job": "module_info", "graph": _export(_reference("hw4").LR(), (2, 1, 28, 28)), "input": None},
                          timeout=60)
    assert again.ok and again.value["trainable"] == 785


def test_a_job_refused_by_the_judge_says_why() -> None:
    reply = get_judge().request({"job": "module_info", "graph": _export(SoftLookup(), (2, 1, 28, 28)), "input": None},
                                timeout=60)
    assert not reply.ok and reply.kind == "refused" and "table of labels" in reply.message


# --------------------------------------------------------------------------- the sandbox fallback's own defences


def _hostile_module(name: str, cwd: Path | None = None) -> dict:
    return runpy.run_path(str(HOSTILE / name / "hw4.py"), run_name="hostile")


def test_sandbox_fallback_counts_true_parameters_and_probes_fresh_instances() -> None:
    from grader.child.operations.module_probes import true_parameters
    from grader.probes import channel_connectivity

    liar = _hostile_module("lying_parameters")
    assert sum(p.numel() for p in true_parameters(liar["LeNet"]())) == 28 * 28 * 10 + 10
    stateful = _hostile_module("stateful_probe")
    x = torch.randn(2, 6, 14, 14)
    # The attack is real: probed on one instance, it shows LeCun's table although it is a full convolution.
    torch.manual_seed(0)
    one = stateful["C3_layer"]()
    faked = np.array(channel_connectivity(one, x))
    assert not faked.all() and faked.sum() == 60

    def fresh() -> nn.Module:
        torch.manual_seed(0)
        return stateful["C3_layer"]()

    assert np.array(channel_connectivity(fresh, x)).all()  # every map sees every input: the truth


# --------------------------------------------------------------------------- hostile submissions, graded


def _course(root: Path, keep: set[str] | None = None) -> Path:
    """hw4's rubric (optionally only the checks in `keep`) and the reference, under `root`."""
    data = yaml.safe_load((REPO / "rubrics" / "hw4.yaml").read_text())
    if keep is not None:
        questions = []
        for q in data["questions"]:
            q["checks"] = [c for c in q["checks"] if c["id"] in keep]
            if q["checks"]:
                q["points"] = sum(c["points"] for c in q["checks"])
                questions.append(q)
        data["questions"] = questions
    (root / "rubrics").mkdir(parents=True)
    shutil.copytree(REPO / "reference", root / "reference", ignore=shutil.ignore_patterns("__pycache__"))
    path = root / "rubrics" / "hw4.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _grade(submission: Path, rubric_path: Path, *, skip_training: bool) -> dict[str, tuple[float, float, str | None, str]]:
    from grader.engine import grade_submission
    from grader.rubric.load import load_rubric

    run = grade_submission(submission, load_rubric(rubric_path), seed=20240, skip_training=skip_training)
    return {r.check_id: (r.score, r.max_score, r.method, " ".join(r.feedback)) for r in run.results}


MODEL_CHECKS = ("p5.LR", "p7.C3_layer.connections", "p7.C3_layer.structure", "p7.C3_layer_full.structure",
                "p7.LeNet.structure", "p7.LeNet_full.structure")


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("name,failing", [
    ("correct", set()),
    ("lying_parameters", {"p5.LR", "p7.C3_layer.structure", "p7.C3_layer.connections", "p7.LeNet.structure",
                          "p7.LeNet_full.structure"}),
    ("stateful_probe", {"p7.C3_layer.connections", "p7.C3_layer.structure", "p7.LeNet.structure"}),
])
def test_wrong_models_lose_their_points_whatever_they_tell_the_grader(tmp_path: Path, name: str, failing: set[str]) -> None:
    rubric = _course(tmp_path / "course", keep=set(MODEL_CHECKS))
    scores = _grade(CORRECT if name == "correct" else HOSTILE / name, rubric, skip_training=True)
    assert set(scores) == set(MODEL_CHECKS)
    for check, (score, max_score, method, feedback) in scores.items():
        assert method == "judge", (check, feedback)  # every model here exports: the judge measured it
        assert (score == 0) == (check in failing) and (score in (0, max_score)), (check, score, feedback)


def _fingerprint(image: np.ndarray) -> str:
    """The submission's fingerprint of a (28, 28) image: which pixels are above its mean."""
    bits = (image > image.mean()).flatten()
    return hashlib.sha1(np.packbits(bits).tobytes()).hexdigest()[:16]


@pytest.fixture
def lookup_submission(tmp_path: Path) -> tuple[Path, Path]:
    """label_lookup with a labels.json of the public test set of the dataset each training check uses."""
    from grader.training.plan import load_split

    rubric = _course(tmp_path / "course", keep={"p5.LR", "p5.train", "p7.LeNet.structure", "p7.train"})
    checks = {c["id"]: c for q in yaml.safe_load(rubric.read_text())["questions"] for c in q["checks"]}
    table: dict[str, dict[str, int]] = {}
    for key, check in (("binary", "p5.train"), ("classes", "p7.train")):
        params = {k: v for k, v in checks[check]["params"].items() if k != "eval_size"}  # the whole test set
        split = load_split(params, data_dir=None)
        table[key] = {_fingerprint(img): int(label) for img, label in zip(split.eval_images, split.eval_labels)}
    submission = tmp_path / "label_lookup"
    shutil.copytree(HOSTILE / "label_lookup", submission)
    (submission / "labels.json").write_text(json.dumps(table))
    return submission, rubric


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_a_model_that_looks_labels_up_fails_its_training_checks(lookup_submission: tuple[Path, Path],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from grader.training.harness import predict
    from grader.training.plan import load_split

    submission, rubric = lookup_submission
    checks = {c["id"]: c for q in yaml.safe_load(rubric.read_text())["questions"] for c in q["checks"]}
    # The attack is real: run in eval mode outside the grader, LeNet "predicts" the evaluation images perfectly.
    monkeypatch.chdir(submission)
    module = runpy.run_path(str(submission / "hw4.py"), run_name="hostile")
    split = load_split(checks["p7.train"]["params"], data_dir=None)
    model = module["LeNet"]()
    preds = predict(model, torch.from_numpy(split.eval_images), normalize=split.normalize)
    assert float((preds.numpy() == split.eval_labels).mean()) > 0.99
    monkeypatch.undo()

    scores = _grade(submission, rubric, skip_training=False)
    for check in ("p5.train", "p7.train"):
        score, _, method, feedback = scores[check]
        assert score == 0 and method == "judge", (check, feedback)
        assert "below the" in feedback and "did not learn" in feedback, feedback
    for check in ("p5.LR", "p7.LeNet.structure"):  # the structures are right, and keep their points
        assert scores[check][0] == scores[check][1], scores[check]


def test_the_judge_imports_a_reference_that_defines_a_dataclass(tmp_path: Path) -> None:
    """A dataclass looks its module up in sys.modules while it is made: the judge's import of a reference must
    register the module first (a2's step timing failed as a grader error for exactly this)."""
    from grader.judge import worker

    path = tmp_path / "ref_with_dataclass.py"
    path.write_text("from dataclasses import dataclass\n\n@dataclass\nclass Config:\n    width: int = 3\n\n"
                    "def build():\n    return Config().width\n")
    module = worker._reference_module(str(path), "ref_with_dataclass")
    assert module.build() == 3
    assert worker._reference_module(str(path), "ref_with_dataclass") is module  # once per process
