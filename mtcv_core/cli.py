"""The ``mtcv`` command line.

``mtcv run [CONFIG] [--out DIR] [--until STAGE] [--resume] [--scheduler ADDR]``
runs the pipeline (see :mod:`mtcv_core.pipeline`); ``mtcv plugins [--json]``
lists the installed components.

An mtcv error (:class:`mtcv_core.errors.MtcvError`: bad config, dataset or
model file, a missing or failing plugin, a blow-up) is printed as one line
and exits with status 2; ``MTCV_TRACEBACK=1`` also prints the traceback of a
plugin's own exception behind it.
"""

from __future__ import annotations

import os

# mtcv parallelises over Dask workers, not BLAS threads: threaded BLAS on
# small arrays only spins (set before numpy is imported).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import traceback  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Sequence  # noqa: E402

from mtcv_core import __version__  # noqa: E402
from mtcv_core.plugins import load_plugins  # noqa: E402


def _cmd_plugins(args: argparse.Namespace) -> int:
    registry = load_plugins()
    rows = [c.as_dict() for c in registry]
    broken = [b.as_dict() for b in registry.broken]
    if args.json:
        print(json.dumps({"components": rows, "broken": broken}, indent=2))
        return 0
    header = ("kind", "name", "plugin", "version")
    widths = [max([len(h)] + [len(r[h]) for r in rows]) for h in header]
    print("  ".join(h.upper().ljust(w) for h, w in zip(header, widths, strict=True)))
    for r in rows:
        print("  ".join(r[h].ljust(w) for h, w in zip(header, widths, strict=True)))
    for b in broken:
        print(f"BROKEN plugin {b['plugin']} ({b['stage']}): {b['error']}", file=sys.stderr)
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from mtcv_core.pipeline import run_pipeline

    summary = run_pipeline(args.config, out=args.out, until=args.until, resume=args.resume,
                           scheduler=args.scheduler, workers=args.workers,
                           progress=not args.quiet, strict=args.strict,
                           allow_large=args.allow_large)
    print(json.dumps(summary, indent=2))
    out = args.out or os.path.join("runs", str(summary.get("config", {}).get("name", "run")))
    print("\n".join(summary_block(summary, out)), file=sys.stderr)
    return 0


def summary_block(summary: dict, out: str) -> list[str]:
    """The few lines a user wants at the end of a run (stderr; stdout keeps
    the whole summary as JSON): accuracy, and per transition the barrier and
    F_to - F_from along xi beside the exact values and the reference, eV."""

    def num(v: object, err: object = None) -> str:
        if not isinstance(v, (int, float)):
            return "n/a"
        return f"{v:.3f}" + (f" ± {err:.3f}" if isinstance(err, (int, float)) else "")

    lines = ["", f"mtcv: run finished: {', '.join(summary.get('stages_done', []))}"]
    if summary.get("test_accuracy") is not None:
        lines.append(f"  test accuracy {summary['test_accuracy']:.4f}")
    for r in summary.get("transitions", []):
        barrier = num(r.get("barrier_eV"), r.get("barrier_err_eV"))
        delta = num(r.get("delta_F_eV"), r.get("delta_F_err_eV"))
        lines.append(f"  {r['from']}->{r['to']}: barrier along xi {barrier} (exact along xi "
                     f"{num(r.get('exact_barrier_eV'))}, reference "
                     f"{num(r.get('reference_barrier_eV'))}); dF {delta} (exact "
                     f"{num(r.get('exact_delta_F_eV'))}, reference "
                     f"{num(r.get('reference_delta_F_eV'))}) eV")
        if r.get("ensemble_barrier_mean_eV") is not None:
            stat = r.get("ensemble_barrier_statistical_err_eV")
            cv = r.get("ensemble_barrier_cv_err_eV")
            barrier = num(r["ensemble_barrier_mean_eV"], r.get("ensemble_barrier_total_err_eV"))
            delta = num(r.get("ensemble_delta_F_mean_eV"), r.get("ensemble_delta_F_total_err_eV"))
            lines.append(f"    CV ensemble: barrier {barrier} (statistical {num(stat)}, "
                         f"CV-to-CV {num(cv)}); dF {delta} eV")
        if r.get("converged") is False:
            failed = [n for n, c in r.get("convergence", {}).items() if c.get("ok") is False]
            lines.append(f"    NOT converged: {', '.join(failed)} (report.md, "
                         "'Convergence along xi')")
    for w in summary.get("warnings", []):
        lines.append(f"  WARNING ({w['stage']}): {w['message']}")
    report = os.path.join(out, "report.md")
    lines.append(f"  report: {report}" if os.path.exists(report) else f"  outputs: {out}")
    return lines


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one ``mtcv: warning:`` line, written between progress bars."""
    from tqdm.auto import tqdm

    text = " ".join(str(message).split())
    tqdm.write(f"mtcv: warning: {text}", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    from mtcv_core.pipeline import STAGES

    parser = argparse.ArgumentParser(
        prog="mtcv", description="Multitask-learned collective variables and free energies.")
    parser.add_argument("--version", action="version", version=f"mtcv {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("plugins", help="list installed components: kind, name, plugin, version")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_cmd_plugins)

    r = sub.add_parser("run", help="run the pipeline (default: the built-in quick demo)")
    r.add_argument("config", nargs="?", default=None,
                   help="TOML config (default: the built-in examples/quick.toml)")
    r.add_argument("--out", default=None, help="output directory (default: runs/<config name>)")
    r.add_argument("--until", choices=STAGES, default=None, help="stop after this stage")
    r.add_argument("--resume", action="store_true",
                   help="reuse the outputs of stages already completed in --out")
    r.add_argument("--scheduler", default=None,
                   help="address of an existing Dask scheduler (default: a local cluster)")
    r.add_argument("--workers", type=int, default=None,
                   help="workers of the local Dask cluster (default: from the config)")
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    r.add_argument("--allow-large", action="store_true",
                   help="run even when the config's estimated memory or disk exceeds this "
                        "machine's (validation refuses it otherwise)")
    r.add_argument("--strict", action="store_true",
                   help="fail (exit 2, after every output is written) when a transition's "
                        "convergence verdict fails (report.md, 'Convergence along xi')")
    r.set_defaults(func=_cmd_run)
    return parser


def _on_sigterm(signum: int, frame: object) -> None:
    from mtcv_core.errors import Terminated

    raise Terminated()


def _in_stage(exc: BaseException) -> str:
    stage = getattr(exc, "stage", None)
    return f" in stage {stage}" if stage else ""


def _resume_hint(args: argparse.Namespace) -> str:
    if getattr(args, "func", None) is not _cmd_run:
        return ""
    parts = ["mtcv run"] + ([args.config] if args.config else [])
    if args.out:
        parts += ["--out", args.out]
    return f"; resume with: {' '.join(parts)} --resume"


def main(argv: Sequence[str] | None = None) -> int:
    import signal

    from mtcv_core.errors import MtcvError, Terminated

    args = build_parser().parse_args(argv)
    warnings.showwarning = _one_line_warning  # one line between the progress bars
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    # a process started in the background by a script inherits SIGINT ignored,
    # and Python then never raises KeyboardInterrupt: `kill -INT` would be lost
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return int(args.func(args) or 0)
    except MtcvError as exc:  # config, dataset, model file, plugin, blow-up: one clear line
        cause = exc.__cause__
        hint = ""
        if cause is not None and not isinstance(cause, MtcvError):  # a plugin's own failure
            if os.environ.get("MTCV_TRACEBACK", "") not in ("", "0"):
                traceback.print_exception(cause, file=sys.stderr)
            else:
                hint = " (set MTCV_TRACEBACK=1 for the traceback)"
        print(f"mtcv: error: {exc}{hint}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print(f"mtcv: interrupted (SIGINT){_in_stage(exc)}: finished stages and windows are "
              f"kept{_resume_hint(args)}", file=sys.stderr)
        return 130
    except Terminated as exc:
        print(f"mtcv: terminated (SIGTERM){_in_stage(exc)}: finished stages and windows are "
              f"kept{_resume_hint(args)}", file=sys.stderr)
        return 143
    except BrokenPipeError:  # output piped into e.g. `head`, which closed early
        # point stdout at devnull so the interpreter's final flush does not raise again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
