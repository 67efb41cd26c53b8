"""A2, question 7, with a common mistake: F.dropout without training=self.training stays on in eval()."""
import torch
import torch.nn.functional as F
from torch import nn


class MLP(nn.Module):
    def __init__(self, hidden_units, n_layers, dropout):
        super().__init__()
        self.p = dropout
        self.first = nn.Linear(784, hidden_units)
        self.rest = nn.ModuleList([nn.Linear(hidden_units, hidden_units) for _ in range(n_layers - 1)])
        self.out = nn.Linear(hidden_units, 10)

    def forward(self, x):
        x = F.dropout(F.relu(self.first(x.view(x.shape[0], -1))), self.p)
        for layer in self.rest:
            x = F.dropout(F.relu(layer(x)), self.p)
        return self.out(x)


def build_mlp(hidden_units, n_layers, dropout):
    return MLP(hidden_units, n_layers, dropout)
