"""Training student models with the grader's own fast harness (run inside the sandbox child).

Public API (all in `grader.training.harness`)::

    train_model(model, train_x_uint8, train_y_int64, *, loss, optimizer, lr, batch_size,
                epochs, max_seconds, seed, device, normalize, ...) -> TrainReport
    predict_logits(model, x_uint8, *, batch_size, device, normalize) -> Tensor (N, n_classes)
    predict(model, x_uint8, ...) -> Tensor (N,) int64
    accuracy(predictions, labels) -> float
    seed_everything(seed)
"""

import importlib

# The harness imports torch; its names are loaded on first use (PEP 562) so that importing a torch-free
# submodule (`grader.training.label_files`, used before a sandbox child is started) costs no torch import.
_HARNESS_NAMES = frozenset({"DEFAULT_BATCH_SIZE", "DEFAULT_LR", "LOSSES", "OPTIMIZERS", "ProgressEvent", "StudentModelError", "TrainReport", "TrainSettings", "accuracy", "check_output", "default_num_threads", "predict", "predict_logits", "seed_everything", "train_model"})


def __getattr__(name: str) -> object:
    if name not in _HARNESS_NAMES:
        raise AttributeError(f"module 'grader.training' has no attribute {name!r}")
    value = getattr(importlib.import_module("grader.training.harness"), name)
    globals()[name] = value
    return value


__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_LR",
    "LOSSES",
    "OPTIMIZERS",
    "ProgressEvent",
    "StudentModelError",
    "TrainReport",
    "TrainSettings",
    "accuracy",
    "check_output",
    "default_num_threads",
    "predict",
    "predict_logits",
    "seed_everything",
    "train_model",
]
