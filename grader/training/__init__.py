"""Training student models with the grader's own fast harness (run inside the sandbox child).

Public API (all in `grader.training.harness`)::

    train_model(model, train_x_uint8, train_y_int64, *, loss, optimizer, lr, batch_size,
                epochs, max_seconds, seed, device, normalize, ...) -> TrainReport
    predict_logits(model, x_uint8, *, batch_size, device, normalize) -> Tensor (N, n_classes)
    predict(model, x_uint8, ...) -> Tensor (N,) int64
    accuracy(predictions, labels) -> float
    seed_everything(seed)
"""

from grader.training.harness import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_LR,
    LOSSES,
    OPTIMIZERS,
    ProgressEvent,
    StudentModelError,
    TrainReport,
    TrainSettings,
    accuracy,
    check_output,
    default_num_threads,
    predict,
    predict_logits,
    seed_everything,
    train_model,
)

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
