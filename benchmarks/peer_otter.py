"""Side by side with Otter-Grader: `otter run` and `grader check` on the same hw4 notebook, interleaved.

The notebook is the correct hw4 code (`submissions_example/hw4/correct/hw4.py`) in one cell after
Otter's init cell (``import otter; grader = otter.Notebook()``). Otter gets OK-format tests for
the hw4 checks both can express, computed independently of the submission: p1-p3 (convolution
weights), p5 (the two losses, values and gradients, and LR's size), p6 (Jacobians against
autograd, four activations) and p7 (C3's connection table probed by perturbing each input map,
parameter counts and output shapes): 90 points, as `grader check --skip-training` grades.
Training checks are left out of both.

Otter-Grader 7.0.0 is installed from PyPI once, into its own cached venv (never into the project's);
that venv sees the project's dependency venv through a .pth file appended last, for torch only
(Otter's own packages come first). Nothing of Otter's is committed. Each round times one `otter run`
and two `grader check`s, one run directly and one sent to a grader daemon (`grader daemon`, started
here with one untimed check, so that a spare sandbox child is ready for each timed one), each first in
turn; the medians and their ratios are printed with the load average, since this machine is shared.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from warm_daemon import GRADER, warm_daemon

ROOT = Path(__file__).resolve().parent.parent
DAEMON = "grader check (daemon)"
OTTER_VERSION = "7.0.0"
OTTER_PINS = [f"otter-grader=={OTTER_VERSION}", "ipykernel==7.4.0"]
INIT_CELL = "import otter\ngrader = otter.Notebook()"

_PRELUDE = ">>> import torch, torch.nn.functional as F\n>>> _ = torch.manual_seed(0)\n"
# Both losses are checked the same way (any batch size, a batch mean accepted, gradients compared).
LOSS_OK = """\
>>> def _loss_ok(fn, ref):
...     for N in (1, 7, 64):
...         z = (3 * torch.randn(N)).requires_grad_()
...         y = torch.where(torch.randn(N) > 0, 1.0, -1.0)
...         got, want = fn(z, y), ref(z, y)
...         want = want.mean() if got.dim() == 0 else want
...         if got.shape != want.shape or not torch.allclose(got, want, atol=1e-5):
...             return False
...         g1, = torch.autograd.grad(got.sum(), z)
...         g2, = torch.autograd.grad(want.sum(), z)
...         if not torch.allclose(g1, g2, atol=1e-5):
...             return False
...     return True
"""
# name -> (points, doctest body after the prelude). Every expected value is computed here, not taken from
# the submission: differences, avg_pool2d, the BT.601 weights, the losses' formulas, autograd Jacobians,
# LeCun's Table I.
OTTER_TESTS: dict[str, tuple[float, str]] = {
    "p1": (10, """\
>>> def _fd_ok(H, W):
...     X = torch.randn(2, 1, H, W)
...     out = F.conv2d(X, finite_difference_filters(), padding=1)
...     Xp = F.pad(X, (0, 1, 0, 1))
...     down, right = Xp[:, :, 1:, :W] - X, Xp[:, :, :H, 1:] - X
...     return out.shape == (2, 2, H, W) and torch.allclose(out[:, :1], down, atol=1e-5) and torch.allclose(out[:, 1:], right, atol=1e-5)
>>> all(_fd_ok(H, W) for H, W in [(5, 7), (12, 9), (28, 28)])
True
"""),
    "p2": (15, """\
>>> def _pool_ok(C, k):
...     d = avgpool_as_conv(C, k)
...     X = torch.randn(2, C, 15, 15)
...     out = F.conv2d(X, d["weight"], stride=d["stride"], padding=d["padding"], groups=d.get("groups", 1))
...     return out.shape == F.avg_pool2d(X, k).shape and torch.allclose(out, F.avg_pool2d(X, k), atol=1e-5)
>>> all(_pool_ok(C, k) for C, k in [(1, 2), (3, 2), (4, 3), (2, 5)])
True
"""),
    "p3": (5, """\
>>> w = rgb_to_gray_weight()
>>> tuple(w.shape) == (1, 3, 1, 1) and torch.allclose(w.reshape(-1).float(), torch.tensor([0.299, 0.587, 0.114]), atol=1e-3)
True
"""),
    "p5_loss_function": (6, LOSS_OK + """\
>>> def _mse_sigmoid(z, y):
...     p, q = torch.sigmoid(z), torch.sigmoid(-z)
...     return 0.5 * (1 - y) * ((1 - q) ** 2 + p ** 2) + 0.5 * (1 + y) * (q ** 2 + (1 - p) ** 2)
>>> _loss_ok(loss_function, _mse_sigmoid)
True
"""),
    "p5_logistic_loss": (6, LOSS_OK + """\
>>> _loss_ok(logistic_loss, lambda z, y: -F.logsigmoid(y * z))
True
"""),
    "p5_LR": (3, """\
>>> m = LR()
>>> sum(p.numel() for p in m.parameters() if p.requires_grad)
785
>>> tuple(m(torch.randn(5, 1, 28, 28)).squeeze().shape)
(5,)
"""),
    **{f"p6_{act}": (5, f"""\
>>> _acts = {{"identity": lambda t: t, "sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu}}
>>> def _jac_ok(act, n, m):
...     A, b, y0 = torch.randn(n, m), torch.randn(n), torch.randn(m)
...     f = _acts[act]
...     Jb = torch.autograd.functional.jacobian(lambda bb: f(A @ y0 + bb), b)
...     Jy = torch.autograd.functional.jacobian(lambda yy: f(A @ yy + b), y0)
...     gb, gy = mlp_layer_jacobians(A, b, y0, act)
...     gb, gy = torch.as_tensor(gb).float(), torch.as_tensor(gy).float()
...     return gb.shape == Jb.shape and gy.shape == Jy.shape and torch.allclose(gb, Jb, atol=1e-5) and torch.allclose(gy, Jy, atol=1e-5)
>>> all(_jac_ok("{act}", n, m) for n, m in [(3, 4), (5, 2), (4, 4)])
True
""") for act in ("identity", "sigmoid", "tanh", "relu")},
    "p7_C3_connections": (8, """\
>>> _TABLE = [[0, 1, 2], [1, 2, 3], [2, 3, 4], [3, 4, 5], [0, 4, 5], [0, 1, 5],
...           [0, 1, 2, 3], [1, 2, 3, 4], [2, 3, 4, 5], [0, 3, 4, 5], [0, 1, 4, 5], [0, 1, 2, 5],
...           [0, 1, 3, 4], [1, 2, 4, 5], [0, 2, 3, 5], [0, 1, 2, 3, 4, 5]]
>>> layer = C3_layer()
>>> x = torch.randn(2, 6, 14, 14)
>>> with torch.no_grad():
...     base = layer(x)
...     seen = [[] for _ in range(16)]
...     for i in range(6):
...         x2 = x.clone(); x2[:, i] += torch.randn(2, 14, 14)
...         moved = (layer(x2) - base).abs().flatten(2).amax(dim=(0, 2)) > 1e-6
...         for j in range(16):
...             if moved[j]:
...                 seen[j].append(i)
>>> seen == _TABLE
True
"""),
    "p7_C3_structure": (4, """\
>>> layer = C3_layer()
>>> sum(p.numel() for p in layer.parameters() if p.requires_grad), tuple(layer(torch.randn(2, 6, 14, 14)).shape)
(1516, (2, 16, 10, 10))
"""),
    "p7_C3_full_structure": (3, """\
>>> layer = C3_layer_full()
>>> sum(p.numel() for p in layer.parameters() if p.requires_grad), tuple(layer(torch.randn(2, 6, 14, 14)).shape)
(2416, (2, 16, 10, 10))
"""),
    "p7_LeNet_structure": (5, """\
>>> m = LeNet()
>>> sum(p.numel() for p in m.parameters() if p.requires_grad), tuple(m(torch.randn(3, 1, 28, 28)).shape)
(60806, (3, 10))
"""),
    "p7_LeNet_full_structure": (5, """\
>>> m = LeNet(full_c3=True)
>>> sum(p.numel() for p in m.parameters() if p.requires_grad), tuple(m(torch.randn(3, 1, 28, 28)).shape)
(61706, (3, 10))
"""),
}


def _cache_root() -> Path:
    base = os.environ.get("GRADER_VENV_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME") or
                                                                os.path.expanduser("~/.cache"), "grader-venvs")
    return Path(base)


def _deps_site() -> str:
    """The project's dependency venv's site-packages (where torch is), as scripts/setup.sh set it up."""
    deps = Path((ROOT / ".venv" / ".deps").read_text().strip())
    out = subprocess.run([str(deps / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         check=True, capture_output=True, text=True)
    return out.stdout.strip()


def otter_venv() -> Path:
    """Otter-Grader's own venv, built once (keyed by the interpreter and the pins) and reused."""
    key = hashlib.sha256((sys.version + " ".join(OTTER_PINS)).encode()).hexdigest()[:12]
    venv = _cache_root() / f"otter-{OTTER_VERSION}-{key}"
    if not (venv / ".complete").exists():
        print(f"peer_otter: installing {' '.join(OTTER_PINS)} into {venv} (once)", flush=True)
        shutil.rmtree(venv, ignore_errors=True)
        venv.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", *OTTER_PINS],
                             stderr=subprocess.PIPE, text=True)
        # pip's notes about configured local indexes that do not exist here are noise (as in scripts/setup.sh).
        sys.stderr.write("".join(line for line in pip.stderr.splitlines(keepends=True)
                                 if "is ignored: it is neither a file nor a directory" not in line))
        if pip.returncode:
            raise SystemExit(f"peer_otter: installing {' '.join(OTTER_PINS)} failed (pip exit {pip.returncode})")
        (venv / ".complete").write_text(" ".join(OTTER_PINS) + "\n")
    site = subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    # Written after the install (so pip never sees the project's packages as installed here) and on every
    # run (the project's dependency venv may have changed); addsitedir appends: Otter's packages win.
    Path(site, "_grader_torch.pth").write_text(f"import site; site.addsitedir({_deps_site()!r})\n")
    return venv


def write_notebook(folder: Path) -> Path:
    import nbformat

    code = (ROOT / "submissions_example" / "hw4" / "correct" / "hw4.py").read_text()
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(INIT_CELL), nbformat.v4.new_code_cell(code)]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "hw4.ipynb"
    nbformat.write(nb, path)
    return path


def write_otter_tests(folder: Path) -> Path:
    tests = folder / "tests"
    tests.mkdir(parents=True, exist_ok=True)
    for name, (points, body) in OTTER_TESTS.items():
        case = {"code": _PRELUDE + body, "hidden": False, "locked": False}
        test = {"name": name, "points": points,
                "suites": [{"cases": [case], "scored": True, "setup": "", "teardown": "", "type": "doctest"}]}
        (tests / f"{name}.py").write_text(f"OK_FORMAT = True\n\ntest = {test!r}\n")
    return tests


def build_autograder(otter: Path, work: Path) -> Path:
    tests = write_otter_tests(work)
    subprocess.run([str(otter / "bin" / "otter"), "generate", "-t", str(tests), "-o", str(work / "autograder.zip"),
                    "--no-environment", "--no-requirements", "--no-config"],
                   check=True, cwd=work, stdout=subprocess.DEVNULL)
    return work / "autograder.zip"


def run_otter(otter: Path, autograder: Path, notebook: Path, out: Path) -> tuple[float, float, float]:
    """(seconds, score, possible) of one `otter run`."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    started = time.perf_counter()
    subprocess.run([str(otter / "bin" / "otter"), "run", "-a", str(autograder), "-o", str(out), str(notebook)],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    results = json.loads((out / "results.json").read_text())
    # Otter leaves the top-level score out (null) and gives its "Public Tests" summary no score: add the tests'.
    score = sum(t.get("score") or 0 for t in results.get("tests", []))
    possible = sum(t.get("max_score") or 0 for t in results.get("tests", []))
    return seconds, score, possible


def run_grader(folder: Path, results: Path, seed: int, env: dict[str, str] | None = None) -> tuple[float, float, float]:
    """(seconds, score, possible) of one `grader check --skip-training`, through the daemon of `env` if given."""
    started = time.perf_counter()
    subprocess.run([GRADER, "check", str(folder), "--assignment", "hw4", "--skip-training", "-q", "--seed", str(seed),
                    "--results", str(results), *([] if env else ["--no-daemon"])], check=True, cwd=ROOT, env=env)
    seconds = time.perf_counter() - started
    data = json.loads(results.read_text())
    return seconds, float(data["score"]), float(sum(t["max_score"] for t in data["tests"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    otter = otter_venv()
    with tempfile.TemporaryDirectory(prefix="peer-otter-") as tmp:
        work = Path(tmp)
        notebook = write_notebook(work / "submission")
        autograder = build_autograder(otter, work / "otter")
        names = ("otter run", "grader check", DAEMON)
        times: dict[str, list[float]] = {name: [] for name in names}
        scores: dict[str, tuple[float, float]] = {}
        loads = [os.getloadavg()[0]]
        # The untimed check has the timed ones' options (its spare child is made for them).
        with warm_daemon([str(notebook.parent), "--assignment", "hw4", "--skip-training", "--results",
                          str(work / "results.json")]) as env:
            for i in range(args.runs):
                for name in names[i % 3:] + names[:i % 3]:  # each first in turn
                    if name == "otter run":
                        seconds, score, possible = run_otter(otter, autograder, notebook, work / "otter-out")
                    else:
                        seconds, score, possible = run_grader(notebook.parent, work / "results.json", seed=i,
                                                              env=env if name == DAEMON else None)
                    times[name].append(seconds)
                    scores[name] = (score, possible)
                loads.append(os.getloadavg()[0])
        for name, ts in times.items():
            score, possible = scores[name]
            print(f"{name:22s} median {statistics.median(ts):6.2f} s   runs: {', '.join(f'{t:.2f}' for t in ts)}   "
                  f"score {score:g}/{possible:g}")
        for name in names[1:]:
            ratio = statistics.median(times["otter run"]) / statistics.median(times[name])
            print(f"otter run / {name} = {ratio:.2f}x (medians of {args.runs} interleaved runs)")
        print(f"1-min load average {min(loads):.2f}-{max(loads):.2f} during the runs")


if __name__ == "__main__":
    main()
