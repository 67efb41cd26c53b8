#!/usr/bin/env bash
# `make demo`: grade every bundled example submission and print its score.
# Each assignment with a rubric is graded; results go to demo-results/.
set -uo pipefail
cd "$(dirname "$0")/.."
out=demo-results
mkdir -p "$out"
extra=${DEMO_ARGS:-}
for rubric in rubrics/*.yaml; do
  assignment=$(basename "$rubric" .yaml)
  [ -d "submissions_example/$assignment" ] || continue
  for sub in submissions_example/"$assignment"/*/; do
    name=$(basename "$sub")
    echo "=== $assignment/$name"
    # shellcheck disable=SC2086
    .venv/bin/grader check "$sub" --assignment "$assignment" --results "$out/$assignment-$name.json" --seed 0 $extra \
      || echo "(grader exited with $?)"
  done
done
echo
echo "Scores (from $out/*.json):"
.venv/bin/python - "$out" <<'PY'
import json, sys, pathlib
for p in sorted(pathlib.Path(sys.argv[1]).glob("*.json")):
    d = json.loads(p.read_text())
    total = sum(t["max_score"] for t in d["tests"])
    print(f"  {p.stem:28s} {d['score']:g} / {total:g}")
PY
