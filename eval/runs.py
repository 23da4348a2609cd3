"""Where a run of ``python -m train`` keeps its models: the run folder itself (one fold) or its ``fold<k>`` folders."""

from __future__ import annotations

import re
from pathlib import Path


def model_dirs(run_dir: Path, marker: str = "model.pt") -> list[Path]:
    """The model directories of a run: the run itself (one fold) or its ``fold<k>`` folders, those holding
    ``marker``, in fold order."""
    if (run_dir / marker).is_file():
        return [run_dir]
    folds = sorted((p for p in run_dir.iterdir() if re.fullmatch(r"fold\d+", p.name) and (p / marker).is_file()),
                   key=lambda p: int(p.name[4:])) if run_dir.is_dir() else []
    if not folds:
        raise FileNotFoundError(f"{run_dir}: no {marker} here or in fold*/ (is it a run directory of python -m "
                                f"train?)")
    return folds
