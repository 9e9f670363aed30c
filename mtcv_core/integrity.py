"""Integrity on resume: what each stage wrote, by size and SHA-256.

After a stage finishes, the pipeline records the size and checksum of each
of its outputs in ``summary.json["outputs"][stage]``. ``--resume`` checks
them before trusting a finished stage: a file that is missing, truncated or
altered since (a full disk, a copy gone wrong, an edit) sends that stage and
every later one back to run again, with a warning naming the file, instead
of surfacing deep inside a later stage.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

#: the files each stage writes (relative to the run directory; those that
#: exist are recorded)
STAGE_OUTPUTS: dict[str, tuple[str, ...]] = {
    "sample": ("data.nc",),
    "train": ("model.pt", "cv.ts", "training.nc"),
    "umbrella": ("umbrella.nc", "umbrella_reference.nc"),
    "estimate": ("fes.nc", "fes_reference.nc", "fes_exact.nc"),
    "rate": ("rates.nc",),
    "ensemble": ("ensemble/members.json",),
    "report": ("report.md",),
}


def file_record(path: Path) -> dict[str, Any]:
    """``{"size": bytes, "sha256": hex}`` of ``path``."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return {"size": path.stat().st_size, "sha256": digest.hexdigest()}


def record_outputs(summary: dict[str, Any], out: Path, stage: str) -> None:
    """Record the size and checksum of ``stage``'s outputs that exist."""
    records = {name: file_record(out / name) for name in STAGE_OUTPUTS.get(stage, ())
               if (out / name).is_file()}
    summary.setdefault("outputs", {})[stage] = records


def changed_output(out: Path, stage: str, records: Mapping[str, Any]) -> str | None:
    """What is wrong with ``stage``'s recorded outputs (first problem), or
    None when every one is as written."""
    for name, rec in records.items():
        path = out / name
        if not path.is_file():
            return f"{path}: missing"
        size = path.stat().st_size
        if size != rec.get("size"):
            return f"{path}: {size} bytes, {stage!r} wrote {rec.get('size')}"
        if file_record(path)["sha256"] != rec.get("sha256"):
            return f"{path}: altered since {stage!r} wrote it (SHA-256 differs)"
    return None


def verify_stages(summary: dict[str, Any], out: Path, stages: Sequence[str]) -> str | None:
    """Check the recorded outputs of the finished stages in order; at the
    first stage whose outputs changed, drop it and every later stage from
    ``summary["stages_done"]`` (they run again) with a warning, and return
    its name. Stages finished before checksums were recorded are trusted."""
    done = summary.get("stages_done", [])
    recorded = summary.get("outputs", {})
    for stage in [s for s in stages if s in done]:
        problem = changed_output(out, stage, recorded.get(stage, {}))
        if problem is None:
            continue
        later = [s for s in stages if stages.index(s) >= stages.index(stage)]
        summary["stages_done"] = [s for s in done if s not in later]
        for s in later:
            recorded.pop(s, None)
        warnings.warn(f"--resume: {problem}; running {', '.join(s for s in later if s in done)}"
                      " again", RuntimeWarning, stacklevel=2)
        return stage
    return None


__all__ = ["STAGE_OUTPUTS", "file_record", "record_outputs", "changed_output",
           "verify_stages"]
