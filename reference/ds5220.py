"""Reference solution of assignment ``ds5220``: an MLP and a small CNN on MNIST, with the handout's loops.

The names and signatures are the original handout's, so code written for it
can be graded unchanged: ``MNISTClassifierMLP`` (784 -> 128 -> ReLU -> 10 ->
log-softmax), ``CNN`` (conv 1->10 k5, conv 10->20 k5, linear 320->10, log-softmax),
``train_one_epoch`` and ``test_one_epoch``. Both models output
log-probabilities, so the loops use the negative log-likelihood.

The parameter counts the rubric asks for (``ANSWERS_NUM``) are counted from
the modules, never typed in; ``tests/test_reference_ds5220.py`` recomputes them
by hand from the layer shapes.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MNISTClassifierMLP(nn.Module):
    """(N, 1, 28, 28) -> (N, 10) log-probabilities through one hidden ReLU layer of 128 units."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(28 * 28, 128)  # 100,480
        self.fc2 = nn.Linear(128, 10)  # 1,290

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)  # (N, 784)
        x = F.relu(self.fc1(x))  # (N, 128)
        return F.log_softmax(self.fc2(x), dim=1)  # (N, 10)


class CNN(nn.Module):
    """(N, 1, 28, 28) -> (N, 10) log-probabilities: two 5x5 convolutions with max-pooling, one linear layer."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 10, kernel_size=5)  # 260
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)  # 5,020
        self.fc = nn.Linear(320, 10)  # 3,210

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(F.max_pool2d(self.conv1(x), 2))  # (N, 10, 12, 12)
        x = F.relu(F.max_pool2d(self.conv2(x), 2))  # (N, 20, 4, 4)
        return F.log_softmax(self.fc(x.flatten(1)), dim=1)  # (N, 10)


def train_one_epoch(train_loader, model, device, optimizer, log_interval, epoch):
    """One pass over ``train_loader``; returns (losses, counter, num_correct).

    ``losses[i]`` is the batch loss every ``log_interval`` batches and
    ``counter[i]`` the number of training images seen by then, counted from
    the first epoch (as the handout plots them); ``num_correct`` counts the
    correct predictions made during the epoch, batch by batch.
    """
    model.train()
    losses: list[float] = []
    counter: list[int] = []
    num_correct = 0
    seen_before = (epoch - 1) * len(train_loader.dataset)
    seen = 0
    for batch_idx, (images, labels) in enumerate(train_loader):
        images, labels = images.to(device), labels.to(device)
        optimizer.zero_grad()
        output = model(images)  # (B, 10) log-probabilities
        loss = F.nll_loss(output, labels)
        loss.backward()
        optimizer.step()
        num_correct += int((output.argmax(dim=1) == labels).sum())
        seen += len(images)
        if batch_idx % log_interval == 0:
            losses.append(loss.item())
            counter.append(seen_before + seen)
    return losses, counter, num_correct


def test_one_epoch(test_loader, model, device):
    """Mean negative log-likelihood over ``test_loader``'s dataset, and the number of correct predictions."""
    model.eval()
    total_loss = 0.0
    num_correct = 0
    with torch.no_grad():
        for images, labels in test_loader:
            images, labels = images.to(device), labels.to(device)
            output = model(images)  # (B, 10) log-probabilities
            total_loss += F.nll_loss(output, labels, reduction="sum").item()
            num_correct += int((output.argmax(dim=1) == labels).sum())
    return total_loss / len(test_loader.dataset), num_correct


def trainable_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


ANSWERS_NUM: dict[str, int] = {
    "q3_3.cnn_params": trainable_parameters(CNN()),
    "q3_3.mlp_params": trainable_parameters(MNISTClassifierMLP()),
}
