#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder image from
# the zip (`grader gradescope build`); the repository's Dockerfile runs the same
# file, so both ways give the same environment.
#
#   1. system packages, best effort: bubblewrap (the sandbox's strongest level)
#      and a Python >= 3.11 (the numpy pin needs it; Ubuntu 22.04's python3 is 3.10);
#   2. a venv at $AUTOGRADER_ROOT/venv with pinned packages, pip only: torch's
#      CPU build from PyTorch's CPU index, then requirements/common.txt
#      (GRADER_TORCH_WHEELS=DIR, for the clean-OS test only: torch from DIR's wheels);
#   3. datasets, best effort: MNIST and Fashion-MNIST through torchvision into
#      source/data (Gradescope's build has network; grading does not need it);
#   4. the unprivileged user grader-student that student code runs as when
#      bubblewrap cannot start (no home, no login shell);
#   5. the reference, rubrics and data locked away from it (root-owned, 700);
#   6. the reference-run cache filled (training checks relative to the reference).
set -euo pipefail
AUTOGRADER_ROOT=${AUTOGRADER_ROOT:-/autograder}
src="$AUTOGRADER_ROOT/source"
venv="$AUTOGRADER_ROOT/venv"
cd "$src"
warn() { echo "setup: WARNING: $*" >&2; }

has_python311() {
  for candidate in ${GRADER_SETUP_PYTHON:-} python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 \
        && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

# 1. system packages ---------------------------------------------------------------
if command -v apt-get >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || warn "apt-get update failed; trying the installs anyway"
  apt-get install -y -qq bubblewrap >/dev/null \
    || warn "could not install bubblewrap: student code will run at the unprivileged-uid level"
  if ! has_python311 >/dev/null; then
    apt-get install -y -qq python3.11 python3.11-venv >/dev/null || warn "could not install python3.11"
  fi
fi
python=$(has_python311) || { echo "setup: no Python >= 3.11 found (tried python3.13 ... python3)" >&2; exit 1; }

# 2. pinned Python packages, CPU build of torch ------------------------------------------
"$python" -m venv "$venv"
pip=("$venv/bin/pip" install --disable-pip-version-check --no-input -q)
if [ -n "${GRADER_TORCH_WHEELS:-}" ]; then
  # Tests only (the clean-OS check): PyTorch's CPU index is out of reach there, so torch comes from
  # the wheels in this folder (torchvision too if one is there; grading does not need it). Gradescope
  # never sets this.
  shopt -s nullglob
  wheels=("$GRADER_TORCH_WHEELS"/torch-*.whl "$GRADER_TORCH_WHEELS"/torchvision-*.whl)
  shopt -u nullglob
  [ ${#wheels[@]} -gt 0 ] || { echo "setup: GRADER_TORCH_WHEELS=$GRADER_TORCH_WHEELS holds no torch wheel" >&2; exit 1; }
  warn "torch from ${wheels[*]} (GRADER_TORCH_WHEELS), not the pins in requirements/torch-cpu.txt"
  "${pip[@]}" "${wheels[@]}"
else
  "${pip[@]}" --index-url https://download.pytorch.org/whl/cpu -r requirements/torch-cpu.txt
fi
"${pip[@]}" -r requirements/common.txt

# 3. datasets (best effort) -----------------------------------------------------------------
mkdir -p "$src/data"
PYTHONPATH="$src" "$venv/bin/python" -m grader.gradescope.datasets "$src/data" \
  || warn "datasets could not be downloaded; training checks will look for other copies"

# 4. the unprivileged user ------------------------------------------------------------------
if ! id grader-student >/dev/null 2>&1; then
  useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin grader-student \
    || warn "could not create the user grader-student: the sandbox falls back to 'nobody'"
fi

# 5. permissions: the grader and Python readable by everyone, the answers by root only -------
chmod 755 "$AUTOGRADER_ROOT" "$src"
chmod -R a+rX "$src/grader" "$src/requirements" "$venv"
chmod 755 "$src/run_autograder" "$src/setup.sh"
for secret in reference rubrics data; do
  chown -R root:root "$src/$secret"
  chmod -R go-rwx "$src/$secret"
  chmod 700 "$src/$secret"
done
[ -d "$AUTOGRADER_ROOT/results" ] || mkdir -p "$AUTOGRADER_ROOT/results"

# 6. reference runs (best effort) ------------------------------------------------------------
# The accuracy of the reference model under each relative training threshold, trained once now into the
# grader's cache (the key covers the data, settings, reference and grader code), so no submission pays for it.
PYTHONPATH="$src" "$venv/bin/python" -m grader.training.warm --data-dir "$src/data" "$src"/rubrics/*.yaml \
  || warn "some reference runs could not be cached; the first submission that needs one trains it"

# A last look: the rubric and its reference load with the installed packages.
PYTHONPATH="$src" "$venv/bin/python" -m grader rubric validate "$src"/rubrics/*.yaml
echo "setup: ready ($("$venv/bin/python" -c 'import torch; print("torch", torch.__version__)'))"
