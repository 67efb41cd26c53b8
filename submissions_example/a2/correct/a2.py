"""A2, question 7: a configurable MLP for MNIST."""
import torch
from torch import nn


class MLP(nn.Module):
    def __init__(self, hidden_units, n_layers, dropout):
        super().__init__()
        sizes = [28 * 28] + [hidden_units] * n_layers
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_units, 10)

    def forward(self, x):
        x = x.flatten(1)
        for layer in self.hidden:
            x = self.drop(torch.relu(layer(x)))
        return self.out(x)


def build_mlp(hidden_units, n_layers, dropout):
    return MLP(hidden_units, n_layers, dropout)


# Experiments (not run by the grader: only definitions are loaded).
model = build_mlp(128, 2, 0.2)
print(sum(p.numel() for p in model.parameters()))
