"""Right and wrong build_mlp for a2 q7, one function per variant (tests/test_checks_a2.py grades each)."""
import torch.nn.functional as F
from torch import nn


def mlp_sequential(hidden_units, n_layers, dropout):
    layers = [nn.Flatten()]
    width = 784
    for _ in range(n_layers):
        layers += [nn.Linear(width, hidden_units), nn.ReLU(), nn.Dropout(dropout)]
        width = hidden_units
    return nn.Sequential(*layers, nn.Linear(width, 10))


class _Functional(nn.Module):
    def __init__(self, h, n, p):
        super().__init__()
        self.p = p
        self.layers = nn.ModuleList([nn.Linear(784, h)] + [nn.Linear(h, h) for _ in range(n - 1)])
        self.out = nn.Linear(h, 10)

    def forward(self, x):
        x = x.flatten(1)
        for layer in self.layers:
            x = F.dropout(F.relu(layer(x)), self.p)  # always on: training defaults to True
        return self.out(x)


def mlp_functional_dropout(hidden_units, n_layers, dropout):
    return _Functional(hidden_units, n_layers, dropout)


def mlp_ignores_dropout(hidden_units, n_layers, dropout):
    return mlp_sequential(hidden_units, n_layers, 0.0)


def mlp_one_layer_too_many(hidden_units, n_layers, dropout):
    return mlp_sequential(hidden_units, n_layers + 1, dropout)


def mlp_wrong_output(hidden_units, n_layers, dropout):
    return nn.Sequential(nn.Flatten(), nn.Linear(784, hidden_units), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden_units, 1))
