"""Small models the grader builds itself, for checks that hand a model to student code.

Both sides import this module: the sandbox child builds a model here and
passes it to the student's function (``freeze_for_transfer``), the parent
builds the same model and passes it to the reference, and the two results
are compared parameter by parameter. The models copy the layouts of
torchvision's classifiers at a fraction of the size, so that "the last n
children with parameters" means what it means on a real pretrained network:
parameterless children (ReLU, pooling, dropout) sit between and after the
layers that have weights.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn


class BasicBlock(nn.Module):
    """torchvision's ResNet basic block: conv-bn-relu-conv-bn plus the input (projected when shapes change)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, c_in, H, W) -> (N, c_out, H/stride, W/stride)
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class TinyResNet(nn.Module):
    """ResNet-18's children in order (conv1, bn1, relu, maxpool, layer1, layer2, avgpool, fc), two stages only."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(2)
        self.layer1 = nn.Sequential(BasicBlock(8, 8), BasicBlock(8, 8))
        self.layer2 = nn.Sequential(BasicBlock(8, 16, stride=2), BasicBlock(16, 16))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, 3, H, W) -> (N, num_classes)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class TinyVGG(nn.Module):
    """VGG's children (features, avgpool, classifier), with a dropout between the classifier's layers."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d(2)
        self.classifier = nn.Sequential(nn.Linear(64, 32), nn.ReLU(inplace=True), nn.Dropout(), nn.Linear(32, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, 3, H, W) -> (N, num_classes)
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class FlatHead(nn.Module):
    """A flat model whose last children have no parameters: Linear, ReLU, Linear, ReLU, Linear, Dropout, ReLU."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(12, 10)
        self.act1 = nn.ReLU()
        self.fc2 = nn.Linear(10, 8)
        self.act2 = nn.ReLU()
        self.fc3 = nn.Linear(8, 4)
        self.drop = nn.Dropout(0.1)
        self.act3 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, 12) -> (N, 4)
        return self.act3(self.drop(self.fc3(self.act2(self.fc2(self.act1(self.fc1(x)))))))


TRANSFER_MODELS: dict[str, Callable[[], nn.Module]] = {
    "tiny_resnet": TinyResNet,
    "tiny_vgg": TinyVGG,
    "flat_head": FlatHead,
}


def build_transfer_model(name: str) -> nn.Module:
    """A fresh model by name, all parameters trainable, built the same way on both sides."""
    if name not in TRANSFER_MODELS:
        raise KeyError(f"no transfer model {name!r} (known: {', '.join(sorted(TRANSFER_MODELS))})")
    return TRANSFER_MODELS[name]()
