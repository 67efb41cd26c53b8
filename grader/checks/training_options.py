"""The options the two training kinds (``training``, ``training_loop``) share: data, budget, thresholds.

Declared once here (see `grader.checks.options`); the optimiser settings take
their defaults from the harness's own settings records, so that a rubric that
leaves them out trains exactly as the harness would.
"""
from __future__ import annotations

from grader.checks.options import INIT, NONNEG, POS_INT, POSITIVE, Option
from grader.data import DATASET_NAMES
from grader.training.harness import OPTIMIZERS
from grader.training.plan import DEFAULT_MAX_SECONDS

DATASET = {"enum": list(DATASET_NAMES)}
ACCURACY = {"type": "number", "minimum": 0, "maximum": 1}

DATA_OPTIONS: tuple[Option, ...] = (
    Option("dataset", {"oneOf": [DATASET, {"type": "array", "items": DATASET, "minItems": 1}]},
           "dataset, or a preference list: the first one this machine has is used", ["mnist", "fashion-mnist", "mnist-5k"]),
    Option("train_size", POS_INT, "training images drawn (seeded) from the training split; all when not set"),
    Option("eval_size", POS_INT, "held-out test images the accuracy is measured on; all when not set"),
    Option("seed", {"type": "integer"}, "seed of the subsets, the initial weights and the shuffling", 0),
    Option("normalize", {"oneOf": [{"const": "dataset"}, {"type": "null"},
                                   {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2}]},
           "pixel normalisation: dataset (its mean and std), [mean, std], or null for x / 255 only", "dataset"),
    Option("classes", {"type": ["array", "object"]},
           "two classes (or one pair per dataset) for a binary task with labels -1/+1"),
    Option("threshold", {"oneOf": [ACCURACY, {"type": "object", "additionalProperties": ACCURACY}]},
           "accuracy to reach, one number or one per dataset (or give relative_to_reference)"),
    Option("relative_to_reference", ACCURACY,
           "allowed shortfall from the reference model trained the same way (or give threshold)"),
    Option("max_seconds", POSITIVE, "wall-time budget of the whole check (a safety stop; budgets count epochs)",
           DEFAULT_MAX_SECONDS),
    Option("max_slowdown", POSITIVE, "how many times slower than the reference model, timed in the same place, "
           "the student's training may be", 20),
    Option("init", INIT, "keyword arguments the model is built with", {}),
)


def optimiser_options(defaults: object) -> tuple[Option, ...]:
    """optimizer, lr, momentum, batch_size with the defaults of a harness settings record."""
    return (
        Option("optimizer", {"enum": list(OPTIMIZERS)}, "optimiser the grader trains with", getattr(defaults, "optimizer")),
        Option("lr", POSITIVE, "learning rate", getattr(defaults, "lr")),
        Option("momentum", NONNEG, "momentum (sgd)", getattr(defaults, "momentum")),
        Option("batch_size", POS_INT, "training batch size", getattr(defaults, "batch_size")),
    )


__all__ = ["ACCURACY", "DATA_OPTIONS", "optimiser_options"]
