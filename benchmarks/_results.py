"""Shared helpers for the benchmark scripts: the results page and JSON output.

``docs/results.md`` is made of sections, each between
``<!-- begin NAME -->`` and ``<!-- end NAME -->`` markers and written only by
the benchmark named NAME. Nobody edits the page by hand.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results.md"
HEADER = """# Results

Every section of this page is written by the benchmark script it names
(`python benchmarks/<name>.py`); nothing here is typed by hand.
"""


def machine() -> str:
    """One line describing where the numbers were measured."""
    cpu = platform.processor() or platform.machine()
    return f"{cpu}, {os.cpu_count()} cores, Python {sys.version.split()[0]}"


def write_section(name: str, markdown: str) -> None:
    """Replace (or append) the section ``name`` of docs/results.md, atomically."""
    from mtcv_core.io import atomic_path

    text = RESULTS.read_text() if RESULTS.exists() else HEADER
    block = f"<!-- begin {name} -->\n{markdown.strip()}\n<!-- end {name} -->"
    pattern = re.compile(rf"<!-- begin {re.escape(name)} -->.*?<!-- end {re.escape(name)} -->",
                         re.S)
    text = pattern.sub(lambda _m: block, text) if pattern.search(text) else (
        text.rstrip() + "\n\n" + block + "\n")
    with atomic_path(RESULTS) as tmp:
        tmp.write_text(text)


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    head = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    return head + "\n".join("| " + " | ".join(str(r.get(c, "")) for c in columns) + " |"
                            for r in rows)


def emit(figures: dict[str, Any]) -> None:
    """Print the figures as the script's last line: one JSON object."""
    print(json.dumps(figures, sort_keys=True))


def fmt(value: float | None, err: float | None = None, digits: int = 3) -> str:
    """``value`` (or ``value ± err``) with ``digits`` decimals; "-" for None."""
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if err is None else f"{value:.{digits}f} ± {err:.{digits}f}"


def reuse_sample_stage(src: Path, dst: Path, *, with_train: bool = False) -> None:
    """Start run ``dst`` from the sample stage of run ``src`` (same data, so
    the baselines train on exactly the multitask CV's frames); with
    ``with_train`` from its train stage too (same CV: samplers compared on
    it)."""
    if (dst / "summary.json").exists():
        return
    dst.mkdir(parents=True, exist_ok=True)
    files = ["data.nc"] + (["model.pt", "cv.ts", "training.nc"] if with_train else [])
    for name in files:
        shutil.copy2(src / name, dst / name)
    summary = json.loads((src / "summary.json").read_text())
    keep = ("system", "temperature_K", "n_train", "n_test", "frame_counts")
    if with_train:
        keep += ("test_accuracy", "test_energy_mae_eV")
    stages = ["sample", "train"] if with_train else ["sample"]
    state = {k: summary[k] for k in keep if k in summary}
    state.update(stages_done=stages, timings_s={k: summary["timings_s"][k] for k in stages},
                 sample_reused_from=str(src))
    (dst / "summary.json").write_text(json.dumps(state, indent=2))
