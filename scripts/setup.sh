#!/usr/bin/env bash
# Idempotent set-up: system packages (when root), then a Python environment in .venv.
#
# The heavy dependencies (torch is several GB on x86_64) live in a venv cached
# outside the checkout, keyed by the requirements files and the interpreter, so a
# fresh clone (CI) reuses it. .venv is a small per-checkout venv that sees the
# cached one through a .pth file and holds only the editable `grader` install.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
arch=$(uname -m)
req="requirements/${arch}.txt"
if [ ! -f "$req" ]; then
  echo "setup: no pinned requirements for architecture '$arch' (expected $req)" >&2
  exit 2
fi

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  missing=()
  command -v bwrap >/dev/null 2>&1 || missing+=(bubblewrap)
  [ -d /usr/share/datasets/fashion-mnist ] || missing+=(dataset-fashion-mnist)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]} with apt-get"
    apt-get update -qq || echo "setup: apt-get update failed; trying the install anyway" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null \
      || echo "setup: could not install ${missing[*]}; the grader falls back (see README)" >&2
  fi
fi

key=$( { "$PYTHON" -c 'import sys; print(sys.version)'; echo "$arch"; cat "$req" requirements/common.txt; } | sha256sum | cut -c1-16)
cache_root=${GRADER_VENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/grader-venvs}
deps="$cache_root/deps-$key"
if [ ! -f "$deps/.complete" ]; then
  echo "setup: building the dependency venv $deps (once per requirements change)"
  rm -rf "$deps"
  mkdir -p "$cache_root"
  "$PYTHON" -m venv "$deps"
  "$deps/bin/pip" install -q --disable-pip-version-check -r "$req" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
  touch "$deps/.complete"   # written last: an interrupted build is redone
fi

deps_site=$("$deps/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
if [ ! -x .venv/bin/python ] || [ "$(cat .venv/.deps 2>/dev/null)" != "$deps" ]; then
  rm -rf .venv
  "$PYTHON" -m venv .venv
  echo "$deps" > .venv/.deps
fi
site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
# addsitedir (not a bare path) so the cached venv's own .pth files are processed too.
printf 'import site; site.addsitedir(%s)\n' "'$deps_site'" > "$site/_grader_deps.pth"
if ! .venv/bin/python -c 'import grader, torch, sympy, nbformat' >/dev/null 2>&1 || [ ! -x .venv/bin/grader ]; then
  .venv/bin/pip install -q --disable-pip-version-check --no-deps -e . 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
fi
echo "setup: ready ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'), isolation: $(command -v bwrap >/dev/null && echo bubblewrap || echo 'no bubblewrap'))"
