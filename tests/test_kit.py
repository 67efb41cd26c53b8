"""Student self-test kits (issue 10): what a kit holds, and that it grades without the repository.

Each kit is built once per module (one grading of the reference each); the
fresh-environment test runs the CLI on two examples and a notebook in one
subprocess of a new virtual environment that has only the kit's wheel.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
import textwrap
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import EXAMPLES, ROOT

ASSIGNMENTS = ("hw4", "a2", "ds5220", "tricks")
# hw4/partial's mistakes that public checks see (its conv_filter mistake, p2, is in a hidden check).
PARTIAL_PUBLIC_FAILED = {
    "p6.identity": "transpose of the Jacobian",
    "p6.sigmoid": "transpose of the Jacobian",
    "p6.tanh": "transpose of the Jacobian",
    "p7.C3_layer.connections": "that is a full convolution",
    "p7.C3_layer.structure": "2,416 trainable parameters; expected 1,516",
    "p7.LeNet.structure": "61,706 trainable parameters; expected 60,806",
}


# --- cheap: freezing and replaying, the public rubric, the notebook source -------------------------------


def _toy_reference() -> types.ModuleType:
    module = types.ModuleType("grader_reference_toy")

    def soft(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.softplus(-y * z) * z.sum()  # entangles all entries: a dense Jacobian

    module.soft = soft  # type: ignore[attr-defined]
    module.TABLE = {"public": 1.5, "hidden": 2.5}  # type: ignore[attr-defined]
    return module


def test_replayed_function_gives_the_reference_values_and_gradients_under_any_reduction(tmp_path):
    from grader.kit.freeze import FrozenMiss, FrozenReference, RecordingReference, Store

    rec = RecordingReference(_toy_reference(), Store(tmp_path))
    z, y = torch.randn(5, dtype=torch.float64), torch.sign(torch.randn(5, dtype=torch.float64))
    rec.soft(z.clone().requires_grad_(True), y)
    (tmp_path / "calls.json").write_text(json.dumps(rec.manifest()))
    frozen = FrozenReference(json.loads((tmp_path / "calls.json").read_text()), tmp_path, "toy")
    ref = _toy_reference()
    for reduce in (lambda t: t, lambda t: t.mean(dim=0), lambda t: t.sum(dim=0)):
        w = torch.randn(()) if reduce(torch.zeros(5)).ndim == 0 else torch.randn(5, dtype=torch.float64)
        zr, zf = z.clone().requires_grad_(True), z.clone().requires_grad_(True)
        (g_ref,) = torch.autograd.grad((reduce(ref.soft(zr, y)) * w).sum(), zr)
        out = frozen.soft(zf, y)
        (g_frozen,) = torch.autograd.grad((reduce(out) * w).sum(), zf)
        torch.testing.assert_close(out.detach(), ref.soft(z, y), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(g_frozen, g_ref, rtol=1e-10, atol=1e-12)
    with pytest.raises(FrozenMiss):
        frozen.soft(z + 1, y)
    assert frozen.misses == ["soft on inputs the kit did not freeze"]


def test_a_table_is_frozen_only_at_the_keys_the_public_checks_read(tmp_path):
    from grader.kit.freeze import FrozenReference, RecordingReference, Store
    from grader.rubric.references import ReferenceNameError, resolve_reference

    rec = RecordingReference(_toy_reference(), Store(tmp_path))
    assert resolve_reference(rec, "TABLE[public]") == 1.5  # type: ignore[arg-type]
    text = json.dumps(rec.manifest())
    assert "hidden" not in text and "2.5" not in text
    frozen = FrozenReference(json.loads(text), tmp_path, "toy")
    assert resolve_reference(frozen, "TABLE[public]") == 1.5  # type: ignore[arg-type]
    with pytest.raises(ReferenceNameError):
        resolve_reference(frozen, "TABLE[hidden]")  # type: ignore[arg-type]


def test_public_rubric_keeps_public_checks_and_sums_points_again():
    from grader.kit.build import public_rubric_data

    data = yaml.safe_load((ROOT / "rubrics" / "hw4.yaml").read_text())
    out = public_rubric_data(data)
    ids = [c["id"] for q in out["questions"] for c in q["checks"]]
    assert ids and "p4" not in ids and "p6.relu" not in ids and "p5.train" not in ids
    assert all(c["public"] is True for q in out["questions"] for c in q["checks"])
    assert next(q for q in out["questions"] if q["id"] == "p6")["points"] == 15  # p6.relu's 5 left out


def test_public_defaults_to_false():
    from grader.rubric.load import load_rubric

    rubric = load_rubric(ROOT / "rubrics" / "hw4.yaml", with_reference=False)
    data = yaml.safe_load((ROOT / "rubrics" / "hw4.yaml").read_text())
    said = {c["id"]: c.get("public") for q in data["questions"] for c in q["checks"]}
    assert {c.id: c.public for c in rubric.checks} == {k: v is True for k, v in said.items()}


@pytest.mark.parametrize("source, kept", [
    ("from grader.kit import check\ncheck('p1')\n", ""),
    ("import torch\ndef f(x):\n    return x\ncheck(\"p1\", kit='k')\n", "import torch\ndef f(x):\n    return x\n"),
    ("import grader.kit as k\nx = 1\nk.check('p1')\n", "x = 1\n"),
    ("def f(:\n", "def f(:\n"),  # not Python: handed on unchanged, the loader says where
])
def test_notebook_source_leaves_out_the_kit_calls(source, kept):
    from grader.kit.notebook import without_kit_calls

    assert without_kit_calls(source) == kept


def test_a_rubric_without_public_checks_gives_no_kit(tmp_path):
    from grader.errors import UsageError
    from grader.kit.build import build_kit

    data = yaml.safe_load((ROOT / "rubrics" / "hw4.yaml").read_text())
    for q in data["questions"]:
        for c in q["checks"]:
            c.pop("public", None)
    rubrics = tmp_path / "course" / "rubrics"
    rubrics.mkdir(parents=True)
    (rubrics / "hw4.yaml").write_text(yaml.safe_dump(data))
    (tmp_path / "course" / "reference").symlink_to(ROOT / "reference")
    with pytest.raises(UsageError, match="marks no check `public: true`"):
        build_kit(rubrics / "hw4.yaml", tmp_path / "kit")
    assert not (tmp_path / "kit").exists()


# --- built kits ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    from grader.kit.build import build_wheel

    return build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="module")
def kits(tmp_path_factory, wheel):
    """Kits built on demand, once each: {assignment: folder}."""
    from grader.kit.build import build_kit

    built: dict[str, Path] = {}
    root = tmp_path_factory.mktemp("kits")

    def get(assignment: str) -> Path:
        if assignment not in built:
            build_kit(ROOT / "rubrics" / f"{assignment}.yaml", root / assignment, wheel=wheel, archive=True)
            built[assignment] = root / assignment
        return built[assignment]

    return get


def _kit_bytes(folder: Path) -> dict[str, bytes]:
    """Every file of the kit, with the members of the wheel and of the zip archive opened up."""
    out: dict[str, bytes] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        out[str(path.relative_to(folder))] = data
        if path.suffix in (".whl", ".zip"):
            with zipfile.ZipFile(path) as zf:
                for member in zf.namelist():
                    out[f"{path.name}!{member}"] = zf.read(member)
    zipped = folder.with_suffix(".zip")
    with zipfile.ZipFile(zipped) as zf:
        for member in zf.namelist():
            out[f"{zipped.name}!{member}"] = zf.read(member)
    return out


def _reference_substrings() -> set[str]:
    """Long lines of every reference module (40+ characters once stripped) that the grader package does not
    also contain (`def forward(self, x: torch.Tensor) -> torch.Tensor:` is in both): any of them in a kit is a
    leak."""
    package = "\0".join(path.read_text(encoding="utf-8") for path in (ROOT / "grader").rglob("*.py"))
    return {line.strip() for ref in (ROOT / "reference").glob("*.py")
            for line in ref.read_text(encoding="utf-8").splitlines()
            if len(line.strip()) >= 40 and line.strip() not in package}


@pytest.mark.slow
@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_kit_holds_no_reference_source_and_no_hidden_check(kits, assignment):
    from grader.rubric.load import load_rubric

    folder = kits(assignment)
    rubric = load_rubric(ROOT / "rubrics" / f"{assignment}.yaml", with_reference=False)
    public = [c for c in rubric.checks if c.public]
    hidden = [c for c in rubric.checks if not c.public]
    files = _kit_bytes(folder)
    assert not [n for n in files if n.endswith(".py") and "reference" in n.split("!")[-1].split("/")[0]]
    substrings = _reference_substrings()
    assert len(substrings) > 100  # the search has something to look for
    blob = b"\0".join(files.values())
    leaks = [s for s in substrings if s.encode() in blob]
    assert not leaks, [(s, [n for n, d in files.items() if s.encode() in d]) for s in leaks[:5]]
    # The kit names only its public checks, in its rubric, its manifest and its README.
    kit_rubric = yaml.safe_load((folder / "rubric" / f"{assignment}.yaml").read_text())
    manifest = json.loads((folder / "kit.json").read_text())
    assert [c["id"] for q in kit_rubric["questions"] for c in q["checks"]] == [c.id for c in public]
    assert manifest["public_checks"] == [c.id for c in public] and manifest["hidden_count"] == len(hidden) > 0
    text = "\n".join(files[n].decode() for n in ("kit.json", f"rubric/{assignment}.yaml", "README.md",
                                                  "fixtures/calls.json"))
    questions = {q["id"] for q in kit_rubric["questions"]}  # a kept question may share its id with a hidden check
    for spec in (c for c in hidden if c.id not in questions):
        assert not re.search(rf"(?<![\w.]){re.escape(spec.id)}(?![\w.])", text), spec.id
    # The fixtures hold values of the reference names the public checks use, and of nothing else.
    calls = json.loads(files["fixtures/calls.json"])
    allowed = {c.reference.split("[")[0] for c in public if c.reference} | {
        m.reference for c in public for m in c.known_mistakes if m.reference}
    assert {e["name"] for e in calls["calls"].values()} | set(calls["values"]) <= allowed


@pytest.mark.slow
def test_hidden_check_sharing_a_public_function_gets_no_frozen_value(kits):
    """p6.relu (hidden, a unittest check) calls mlp_layer_jacobians like the public p6 checks: the inputs its
    test file draws under the kit's seed must not be in the kit."""
    import hashlib

    from grader.kit.freeze import call_key

    folder = kits("hw4")
    seed = json.loads((folder / "kit.json").read_text())["seed"]
    keys = set(json.loads((folder / "fixtures" / "calls.json").read_text())["calls"])
    drawn = 0
    for method in ("test_shapes", "test_values"):  # the draws of rubrics/hw4_tests/test_p6_relu.py, in its order
        digest = hashlib.sha256(f"{seed}:p6.relu:{method}".encode()).digest()
        rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
        for n, m in [(3, 4), (5, 2), (6, 6)]:
            args = [rng.standard_normal((n, m)).astype(np.float32), rng.standard_normal(n).astype(np.float32),
                    rng.standard_normal(m).astype(np.float32)]
            key = call_key("mlp_layer_jacobians", (*[torch.from_numpy(a) for a in args], "relu"), {})
            assert key not in keys
            drawn += 1
    assert drawn == 6 and keys  # the kit does hold the public p6 checks' calls


NOTEBOOK_CHECK = '''
import json, os, sys
from pathlib import Path

import grader
import nbclient
import nbformat

from grader.cli import main

kit, examples, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
here = Path(grader.__file__).resolve()
assert "site-packages" in str(here), here
for name in ("correct", "partial"):
    assert main(["check", str(examples / name), "--kit", str(kit), "--json", str(out / f"{name}.json"), "-q"]) == 0
source = (examples / "partial" / "hw4.py").read_text()
nb = nbformat.v4.new_notebook(cells=[
    nbformat.v4.new_code_cell(source),
    nbformat.v4.new_code_cell('from grader.kit import check\\ncheck("p5.loss_function", "p6.identity")'),
])
os.environ["GRADER_KIT"] = str(kit)  # the kernel inherits it: the notebook's check() finds the kit there
nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(out)}}).execute()
texts = []
for output in nb.cells[1].outputs:
    texts.append(output.get("text", "") or output.get("data", {}).get("text/plain", ""))
(out / "notebook.txt").write_text("".join(texts))
'''


@pytest.mark.slow
def test_fresh_environment_with_the_kit_wheel_grades_without_the_repository(kits, tmp_path):
    folder = kits("hw4")
    venv = tmp_path / "venv"
    # No pip of its own (ensurepip costs ~20 s here): the shared venv's pip installs into it (--python).
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    # The dependencies come from the shared venv (as scripts/setup.sh does); the grader only from the wheel.
    deps = Path(sysconfig.get_paths()["purelib"]) / "_grader_deps.pth"
    (Path(site) / "_grader_deps.pth").write_text(deps.read_text())
    wheel = next((folder / "wheel").glob("*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index",
                    str(wheel)], check=True)
    examples = tmp_path / "hw"
    for name in ("correct", "partial"):
        (examples / name).mkdir(parents=True)
        (examples / name / "hw4.py").write_text((EXAMPLES / "hw4" / name / "hw4.py").read_text())
    work = tmp_path / "work"
    work.mkdir()
    (work / "run.py").write_text(NOTEBOOK_CHECK)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "GRADER_", "VIRTUAL_ENV"))}
    proc = subprocess.run([str(python), "run.py", str(folder), str(examples), str(work)], cwd=work, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]

    correct = json.loads((work / "correct.json").read_text())
    public = json.loads((folder / "kit.json").read_text())["public_checks"]
    assert [r["check_id"] for r in correct["results"]] == public
    assert all(r["status"] == "passed" for r in correct["results"]), correct["results"]
    assert any("your grade also includes hidden checks" in m.lower() for m in correct["load_messages"])
    partial = json.loads((work / "partial.json").read_text())
    failed = {r["check_id"]: "\n".join(r["feedback"]) for r in partial["results"] if r["status"] != "passed"}
    assert set(failed) == set(PARTIAL_PUBLIC_FAILED)
    for check_id, phrase in PARTIAL_PUBLIC_FAILED.items():
        assert phrase in failed[check_id], check_id
    assert all(r["status"] == "failed" for r in partial["results"] if r["check_id"] in failed)

    shown = (work / "notebook.txt").read_text()
    assert "p5.loss_function" in shown and "6/6" in shown
    assert "p6.identity" in shown and "0/5" in shown and "transpose of the Jacobian" in shown
    assert "hidden" in shown
