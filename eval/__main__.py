"""``python -m eval`` (``make eval``): official ABAW scores, a report with plots, and submission files.

    python -m eval --run runs/<name>                       # a run of python -m train (default: the latest run)
    python -m eval --pred DIR --labels L [--store S]       # any folder of <video_id>.csv predictions

Writes ``<out>/metrics.json``, ``<out>/report.md`` (+ ``figures/``) and ``<out>/submission/`` (one file per video and
task in the organisers' format); ``<out>`` is ``runs/<name>/eval`` (or ``eval/`` next to DIR). The last line printed
on stdout is the report's path.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from pathlib import Path

from eval.evaluate import Evaluation, evaluate_folder, evaluate_run
from eval.predictions import PredictionError
from eval.report import write_report
from eval.runs import latest_run
from eval.submission import write_submission
from features_store.cli import ArgumentParser, parse_assignment, run_command
from features_store.errors import UsageError


def read_frame_counts(path: Path) -> dict[str, int]:
    """``video,n_frames`` CSV: the frame count the organisers expect for each video."""
    try:
        with path.open(newline="") as handle:
            return {row["video"]: int(row["n_frames"]) for row in csv.DictReader(handle)}
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise PredictionError(f"{path}: expected a CSV with columns video,n_frames ({exc!r})") from exc


def parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m eval", description=__doc__.split("\n\n")[0])
    source = p.add_mutually_exclusive_group()
    source.add_argument("--run", type=Path, help="run directory of python -m train (default: the latest in runs/)")
    source.add_argument("--pred", type=Path, help="folder of <video_id>.csv predictions (needs --labels)")
    p.add_argument("--labels", help="labels for --pred: Aff-Wild2 folder or generic CSV")
    p.add_argument("--label-column", action="append", default=[], metavar="TASKCOL=CSVCOL")
    p.add_argument("--tasks", default="", help="restrict --pred scoring to these of va,expr,au")
    p.add_argument("--store", help="--pred: the store, for timelines in seconds and frame counts")
    p.add_argument("--frame-counts", type=Path, help="video,n_frames CSV: submission lengths (default: the store's)")
    p.add_argument("--out", type=Path, help="output folder")
    p.add_argument("--runs-dir", type=Path, default=Path("runs"))
    p.add_argument("--pre-smooth", action="store_true", help="fold fusion: Savitzky-Golay (5, order 3) first")
    p.add_argument("--post-smooth", action="store_true", help="fold fusion: 15-frame box average after")
    p.add_argument("--max-timelines", type=int, default=8)
    return p


def run(args: argparse.Namespace) -> tuple[Evaluation, Path]:
    if args.pred is not None:
        if not args.labels:
            raise UsageError("--pred needs --labels (the labels to score against)")
        columns = dict(parse_assignment(item, "TASKCOL=CSVCOL", "expr=intended_emotion", as_json=False)
                       for item in args.label_column)
        tasks = [t for t in args.tasks.split(",") if t]
        evaluation = evaluate_folder(args.pred, args.labels, columns, tasks, args.store)
        out = args.out or args.pred.parent / "eval"
    else:
        run_dir = args.run or latest_run(args.runs_dir)
        evaluation = evaluate_run(run_dir, args.pre_smooth, args.post_smooth)
        out = args.out or run_dir / "eval"
    out.mkdir(parents=True, exist_ok=True)
    n_frames = dict(evaluation.n_frames)
    if args.frame_counts:
        n_frames |= read_frame_counts(args.frame_counts)
    submitted = write_submission(evaluation.submission, evaluation.tasks, n_frames, out / "submission")
    evaluation.metrics["submission"] = {"folder": str(out / "submission"), "files": len(submitted)}
    (out / "metrics.json").write_text(json.dumps(evaluation.metrics, indent=2))
    report = write_report(out, title=evaluation.title, tasks=evaluation.tasks, predictions=evaluation.predictions,
                          labels=evaluation.labels, masks=evaluation.masks, metrics=evaluation.metrics,
                          frame_time=evaluation.frame_time or None, max_timelines=args.max_timelines)
    return evaluation, report


def main(argv: list[str] | None = None) -> int:
    """``python -m eval``: its exit status; errors and misuse print one line ``eval: <cause>`` (status 2)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    return run_command("eval", _main, argv)


def _main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    evaluation, report = run(args)
    overall = evaluation.metrics["overall"]
    print("  ".join(f"{k} {v:.4f}" for k, v in overall.items() if not isinstance(v, list)), file=sys.stderr)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
