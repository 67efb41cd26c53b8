"""`make bench`: every benchmark, in one run on this machine, side by side."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

if __name__ == "__main__":
    extra = sys.argv[1:]
    for script in ("epoch_speed.py", "grading_time.py", "peer_otter.py", "batch_overlap.py"):
        print(f"== {script}", flush=True)
        subprocess.run([sys.executable, str(HERE / script), *extra], check=True)
