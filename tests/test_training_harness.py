"""Tests for grader.training.harness: it trains, is repeatable, and reports instead of raising.

Budgets are small (mnist-5k, a 2,000-image Fashion-MNIST slice, one epoch) so
the file runs in well under a minute on 2 CPU cores.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from grader.data import clear_memory_cache, load_dataset
from grader.training import (
    ProgressEvent,
    StudentModelError,
    TrainReport,
    TrainSettings,
    accuracy,
    predict,
    predict_logits,
    seed_everything,
    train_model,
)
from grader.training.harness import cgroup_cpu_limit

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory):
    """mnist-5k (4,000 train / 1,000 test real digits), through a throwaway cache."""
    clear_memory_cache()
    return load_dataset("mnist-5k", cache_dir=tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def tiny(digits):
    """512 digits: enough for the failure cases, which need no accuracy."""
    return digits.train_images[:512], digits.train_labels[:512]


# --------------------------------------------------------------------------- models


def small_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, 8, 14, 14)
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, 16, 7, 7)
        nn.Flatten(), nn.Linear(16 * 7 * 7, 10),  # (B, 10)
    )  # fmt: skip


def mlp(outputs: int = 10) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, outputs))  # (B, outputs)


class ViewAfterConv(nn.Module):
    """A correct handout-style model whose x.view(B, -1) fails on channels_last activations."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 5)  # (B, 4, 24, 24)
        self.fc = nn.Linear(4 * 24 * 24, 10)

    def forward(self, x: Tensor) -> Tensor:
        x = torch.relu(self.conv(x))
        return self.fc(x.view(x.size(0), -1))


class RaisesInForward(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(100, 10)  # wrong input size: 784 pixels arrive

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(x.flatten(1))


class DetachedOutput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(784, 10)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(x.flatten(1)).detach()  # backward has nothing to differentiate


class ReturnsNaN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(784, 10)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(x.flatten(1)) * float("nan")


class ReturnsTuple(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(784, 10)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        out = self.fc(x.flatten(1))
        return out, out


class ExitsInForward(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(784, 10)

    def forward(self, x: Tensor) -> Tensor:
        sys.exit(3)


class NoParameters(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(1)[:, :10]


def trained(make, x: Tensor, y: Tensor, seed: int = 0, **kwargs) -> tuple[nn.Module, TrainReport]:
    seed_everything(seed)  # identical initial weights for a given seed
    model = make()
    return model, train_model(model, x, y, seed=seed, **kwargs)


# --------------------------------------------------------------------------- it trains


def test_small_cnn_learns_mnist5k(digits) -> None:
    normalize = digits.pixel_mean_std()
    model, report = trained(
        small_cnn, digits.train_images, digits.train_labels, batch_size=64, epochs=1, normalize=normalize
    )
    assert report.ok and not report.timed_out and report.error is None
    assert report.steps == 4000 // 64 and report.epochs_done == pytest.approx(1.0)
    assert report.loss_history[-1] < report.loss_history[0]
    assert report.final_loss == report.loss_history[-1]
    acc = accuracy(predict(model, digits.test_images, normalize=normalize), digits.test_labels)
    assert acc > 0.80, f"test accuracy {acc:.3f} after one epoch"


@pytest.mark.skipif(not DEBIAN_FASHION.is_file(), reason="Debian dataset-fashion-mnist not installed")
def test_mlp_learns_fashion_slice(tmp_path: Path) -> None:
    fashion = load_dataset("fashion-mnist", cache_dir=tmp_path)
    x, y = fashion.train_images[:2000], fashion.train_labels[:2000]
    model, report = trained(mlp, x, y, batch_size=32, epochs=1, normalize=(0.2860, 0.3530))
    assert report.ok and report.steps == 2000 // 32
    test_x, test_y = fashion.test_images[:2000], fashion.test_labels[:2000]
    acc = accuracy(predict(model, test_x, normalize=(0.2860, 0.3530)), test_y)
    assert acc > 0.70, f"test accuracy {acc:.3f} after one epoch on 2,000 images"


def test_same_seed_same_predictions(tiny) -> None:
    x, y = tiny
    model_a, report_a = trained(small_cnn, x, y, seed=7, batch_size=64, epochs=1)
    model_b, report_b = trained(small_cnn, x, y, seed=7, batch_size=64, epochs=1)
    model_c, _ = trained(small_cnn, x, y, seed=8, batch_size=64, epochs=1)
    assert report_a.loss_history == report_b.loss_history
    logits_a, logits_b = predict_logits(model_a, x), predict_logits(model_b, x)
    assert torch.equal(logits_a, logits_b)  # bit-for-bit on CPU
    assert not torch.equal(logits_a, predict_logits(model_c, x))


def test_dropout_is_seeded(tiny) -> None:
    x, y = tiny

    def with_dropout() -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Dropout(0.5), nn.Linear(64, 10))

    a, _ = trained(with_dropout, x, y, seed=3, batch_size=64)
    b, _ = trained(with_dropout, x, y, seed=3, batch_size=64)
    assert torch.equal(predict_logits(a, x), predict_logits(b, x))


@pytest.mark.parametrize(("epochs", "steps"), [(0.5, 4), (0.3, 3), (2, 16), (1.25, 10)])
def test_fractional_epochs(tiny, epochs: float, steps: int) -> None:
    x, y = tiny  # 512 images, batch 64: 8 steps per epoch
    _, report = trained(mlp, x, y, batch_size=64, epochs=epochs)
    assert report.steps == steps and report.epochs_done == pytest.approx(steps / 8)


def test_loss_options(tiny) -> None:
    x, y = tiny

    def log_probs() -> nn.Module:
        return nn.Sequential(mlp(), nn.LogSoftmax(dim=1))

    _, nll = trained(log_probs, x, y, loss="nll", batch_size=64)
    _, ce = trained(mlp, x, y, loss="cross_entropy", batch_size=64)
    seen: list[tuple[int, ...]] = []

    def my_loss(out: Tensor, target: Tensor) -> Tensor:
        seen.append(tuple(out.shape))
        return nn.functional.cross_entropy(out, target)

    _, custom = trained(mlp, x, y, loss="callable", loss_fn=my_loss, batch_size=64)
    # LogSoftmax + NLL is cross-entropy: same seed, same data, same losses.
    assert nll.loss_history == pytest.approx(ce.loss_history, rel=1e-4)
    assert custom.loss_history == pytest.approx(ce.loss_history, rel=1e-6)
    assert seen[0] == (64, 10) and len(seen) == 8


def test_sgd_with_momentum_trains(tiny) -> None:
    x, y = tiny
    _, report = trained(mlp, x, y, optimizer="sgd", lr=0.05, momentum=0.9, batch_size=32, epochs=2)
    assert report.ok and report.loss_history[-1] < report.loss_history[0]


def test_progress_callback(tiny) -> None:
    x, y = tiny
    events: list[ProgressEvent] = []
    _, report = trained(mlp, x, y, batch_size=32, epochs=2, log_every=5, progress=events.append)
    assert [e.step for e in events] == [5, 10, 15, 20, 25, 30, 32]
    assert all(e.total_steps == 32 for e in events) and events[-1].epochs_done == pytest.approx(2.0)
    assert [e.loss for e in events] == report.loss_history


# --------------------------------------------------------------------------- it stops and reports


def test_huge_learning_rate_is_reported_as_divergence(tiny) -> None:
    x, y = tiny
    model, report = trained(mlp, x, y, lr=1e6, optimizer="sgd", batch_size=64, epochs=5)
    assert report.diverged and not report.ok and report.error is None
    assert report.steps < 40
    assert all(math.isfinite(v) for v in report.loss_history)  # the NaN window is not recorded
    predict(model, x[:10])  # the model is still usable (stopped before the NaN update)


def test_nan_output_is_reported_as_divergence(tiny) -> None:
    x, y = tiny
    _, report = trained(ReturnsNaN, x, y, batch_size=64)
    assert report.diverged and report.steps == 0 and report.final_loss is None


def test_wrong_output_shape_is_reported(tiny) -> None:
    x, y = tiny
    _, report = trained(lambda: mlp(outputs=5), x, y, batch_size=64)
    assert report.error == (
        "model output has shape (B, 5) but 10 class scores were expected for a batch of B = 64 images"
    )
    assert report.steps == 0 and not report.ok


def test_tuple_output_is_reported(tiny) -> None:
    x, y = tiny
    _, report = trained(ReturnsTuple, x, y, batch_size=64)
    assert report.error is not None and report.error.startswith("model returned a tuple")


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (RaisesInForward, "the model's forward pass raised RuntimeError: mat1 and mat2 shapes cannot be multiplied"),
        (DetachedOutput, "the backward pass raised RuntimeError: element 0 of tensors does not require grad"),
        (ExitsInForward, "the model's forward pass raised SystemExit: 3"),
        (NoParameters, "the model has no trainable parameters"),
    ],
)
def test_student_exceptions_become_report_errors(tiny, make, expected: str) -> None:
    x, y = tiny
    _, report = trained(make, x, y, batch_size=64)
    assert report.error is not None and report.error.startswith(expected), report.error
    if make in (RaisesInForward, ExitsInForward):
        assert "test_training_harness.py:" in report.error  # points at the student's line


def test_not_a_module_is_reported(tiny) -> None:
    x, y = tiny
    report = train_model(lambda batch: batch, x, y)  # type: ignore[arg-type]
    assert report.error == "expected a torch.nn.Module to train, got function"


def test_time_budget_stops_cleanly(digits) -> None:
    # oneDNN compiles its kernels on a conv's first call (~1 s here): pay that
    # outside the budget being measured.
    trained(small_cnn, digits.train_images[:128], digits.train_labels[:128], batch_size=64)
    model, report = trained(
        small_cnn, digits.train_images, digits.train_labels, batch_size=64, epochs=50, max_seconds=0.5
    )
    assert report.timed_out and report.ok and 0 < report.steps < 50 * 62
    # One step past the budget at most (a step is ~10 ms here); generous for a loaded machine.
    assert report.seconds < 1.5
    assert predict(model, digits.test_images[:100]).shape == (100,)


def test_channels_last_fallback_keeps_view_models_working(tiny) -> None:
    x, y = tiny
    model, report = trained(ViewAfterConv, x, y, batch_size=64)
    assert report.ok, report.error
    assert report.steps == 8
    assert not report.channels_last  # the first step was retried in the default layout
    predict(model, x[:10])


# --------------------------------------------------------------------------- the contract


def test_model_is_returned_in_eval_mode_and_default_layout(tiny) -> None:
    x, y = tiny
    model, report = trained(small_cnn, x, y, batch_size=64)
    assert report.channels_last and not model.training
    conv = model[0]
    assert conv.weight.is_contiguous()


def test_thread_count_is_restored(tiny) -> None:
    x, y = tiny
    before = torch.get_num_threads()
    _, report = trained(mlp, x, y, batch_size=64, num_threads=1)
    assert report.num_threads == 1 and torch.get_num_threads() == before


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"cpu.max": "50000 100000\n"}, 0.5),  # Gradescope's default half a vCPU, cgroup v2
        ({"cpu.max": "max 100000\n"}, None),
        ({"cpu/cpu.cfs_quota_us": "200000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 2.0),  # cgroup v1
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ({}, None),
    ],
)
def test_cgroup_cpu_quota(tmp_path: Path, files: dict[str, str], expected: float | None) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cgroup_cpu_limit(str(tmp_path)) == expected


def test_report_is_plain_json(tiny) -> None:
    x, y = tiny
    _, report = trained(mlp, x, y, batch_size=64)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["steps"] == 8 and data["error"] is None and isinstance(data["loss_history"], list)


def test_report_from_dict_checks_exact_types(tiny) -> None:
    x, y = tiny
    _, report = trained(mlp, x, y, batch_size=64)
    wire = json.loads(json.dumps(report.to_dict()))
    assert TrainReport.from_dict(wire) == report
    for field_name, forged in [("steps", True), ("steps", "8"), ("diverged", 0), ("error", 3), ("loss_history", [1])]:
        with pytest.raises(ValueError, match=field_name):
            TrainReport.from_dict({**wire, field_name: forged})
    with pytest.raises(ValueError, match="exactly the fields"):
        TrainReport.from_dict({**wire, "extra": 1})


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"loss": "mse"}, ValueError),
        ({"loss": "callable"}, ValueError),
        ({"optimizer": "rmsprop"}, ValueError),
        ({"epochs": 0}, ValueError),
        ({"normalize": (0.5, 0.0)}, ValueError),
        ({"batch_size": 64.0}, ValueError),
        ({"max_seconds": -1}, ValueError),
    ],
)
def test_caller_mistakes_raise(tiny, kwargs: dict, error: type[Exception]) -> None:
    x, y = tiny
    with pytest.raises(error):
        train_model(mlp(), x, y, **kwargs)


def test_settings_record_carries_every_option(tiny) -> None:
    """A rubric's training options travel as a JSON-friendly TrainSettings and unpack into train_model."""
    x, y = tiny
    settings = TrainSettings(batch_size=64, epochs=0.5, lr=1e-3, normalize=(0.13, 0.31), seed=5)
    wire = json.loads(json.dumps(asdict(settings)))
    wire["normalize"] = tuple(wire["normalize"])
    assert TrainSettings(**wire) == settings
    seed_everything(5)
    report = train_model(mlp(), x, y, **wire)
    assert report.steps == 4 and report.batch_size == 64


def test_wrong_input_types_raise(tiny) -> None:
    x, y = tiny
    with pytest.raises(TypeError, match="uint8"):
        train_model(mlp(), x.float(), y)
    with pytest.raises(TypeError, match="int64"):
        train_model(mlp(), x, y.int())


def test_predict_checks_the_output(tiny) -> None:
    x, _ = tiny
    logits = predict_logits(mlp(), x, batch_size=100)
    assert logits.shape == (512, 10) and logits.dtype == torch.float32
    with pytest.raises(StudentModelError, match=r"shape \(B, 5\)"):
        predict_logits(mlp(outputs=5), x, n_classes=10)
    with pytest.raises(StudentModelError, match="RuntimeError"):
        predict(RaisesInForward(), x)


def test_predict_matches_manual_preprocessing(tiny) -> None:
    """Independent computation of the documented preprocessing: (x / 255 - mean) / std."""
    x, _ = tiny
    seed_everything(0)
    model = mlp().eval()
    with torch.no_grad():
        expected = model(((x.float() / 255 - 0.13) / 0.31).unsqueeze(1))  # (N, 10)
    got = predict_logits(model, x, normalize=(0.13, 0.31))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
