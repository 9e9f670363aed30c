"""Run the tests marked ``slow`` (left out of the default suite to keep it
near ten minutes): the real ``mtcv run --workers 1/2`` determinism and
kill/resume runs, and the three-well and alanine tutorials' ``--small`` runs.

Usage: python benchmarks/slow_tests.py [-- extra pytest arguments]
Last line: JSON with ``passed``, ``failed``, ``wall_s`` and pytest's exit
status ``returncode``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    extra = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "slow", *extra],
                         cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    print(res.stdout[-4000:])
    if res.returncode not in (0, 5):
        print(res.stderr[-4000:], file=sys.stderr)
    tail = res.stdout.strip().splitlines()[-1] if res.stdout.strip() else ""
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|error)", tail)}
    print(json.dumps({"passed": counts.get("passed", 0),
                      "failed": counts.get("failed", 0) + counts.get("error", 0),
                      "wall_s": round(wall, 1), "returncode": res.returncode}))
    return res.returncode


if __name__ == "__main__":
    sys.exit(main())
