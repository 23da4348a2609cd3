"""Where ``python -m train`` keeps its runs (``runs/<name>``) and, in a run, its models: the run folder itself (one
fold) or its ``fold<k>`` folders."""

from __future__ import annotations

import re
from pathlib import Path

from features_store.errors import AffectsyncError


class RunError(AffectsyncError, FileNotFoundError):
    """No run where one was expected; the message names the folder."""


def latest_run(runs_dir: Path) -> Path:
    """The most recently written run directory under ``runs_dir``."""
    runs = [p for p in runs_dir.iterdir() if p.is_dir()] if runs_dir.is_dir() else []
    if not runs:
        raise RunError(f"no runs in {runs_dir}/ (make train first, or give RUN=runs/<name>)")
    return max(runs, key=lambda p: p.stat().st_mtime)


def model_dirs(run_dir: Path, marker: str = "model.pt") -> list[Path]:
    """The model directories of a run: the run itself (one fold) or its ``fold<k>`` folders, those holding
    ``marker``, in fold order."""
    if (run_dir / marker).is_file():
        return [run_dir]
    folds = sorted((p for p in run_dir.iterdir() if re.fullmatch(r"fold\d+", p.name) and (p / marker).is_file()),
                   key=lambda p: int(p.name[4:])) if run_dir.is_dir() else []
    if not folds:
        raise RunError(f"{run_dir}: no {marker} here or in fold*/ (is it a run directory of python -m "
                                f"train?)")
    return folds
