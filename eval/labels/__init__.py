"""Labels for the trainer: Aff-Wild2 annotation folders or a generic CSV, in the organisers' coding (see eval.tasks).

``LABELS=DIR`` names a folder holding Aff-Wild2 challenge folders; the tasks loaded are those whose folders are present
(``tasks`` / ``TASKS=va,expr,au`` restricts them). Two layouts, told apart by the folder names (one table,
:data:`AFFWILD2_LAYOUTS`, describes both):

- ``abaw3`` (ABAW3 onward, protocol ``abaw2022``: 8 classes, 12 AUs): ``VA_Estimation_Challenge``,
  ``EXPR_Classification_Challenge``, ``AU_Detection_Challenge``, each with ``Train_Set/`` and ``Validation_Set/``.
- ``abaw2020`` (protocol ``abaw2020``: 7 classes, 8 AUs): ``VA_Set``, ``EXPR_Set``, ``AU_Set``, each with
  ``Train_Set/`` (or ``Training_Set/``) and ``Validation_Set/``; the same folders with the 12 AUs of ABAW 2021 in
  the AU files' header are ``abaw2021`` (seed 001's layout: 7 classes, 12 AUs, F1 and accuracy scored together).

Each ``<challenge>/<split>/<video>.txt`` starts with a header naming the task's columns (``valence,arousal``; the
expression class names; the AU names), then holds one line per frame: line k after the header is frame k. EXPR lines
hold one class index. Invalid frames are coded -5 (VA) and -1 (EXPR, AU rows). The file stem is the store's video id,
so ``<video>_left.txt`` / ``<video>_right.txt`` label the groups ``<video>_left`` / ``<video>_right``.

A generic CSV (``LABELS=file.csv``) has a ``video`` column (or ``file``, whose stem is the video id), an optional
``frame`` column (present: one row per frame; absent: one row per clip, broadcast over all its frames) and an optional
``split`` column (``train``/``val``). Task columns: ``valence`` and ``arousal`` (va), ``expr`` (a class index or
name, e.g. ``happy``), ``AU<n>`` (au, in CSV order); ``column_map`` names the CSV column holding a task column when
the names differ (``{"expr": "intended_emotion"}``). Empty cells and frames a per-frame CSV skips are invalid.

A value outside its task's coding (VA outside [-1, 1] and not -5, an unknown class, an AU value outside {0, 1, -1})
is masked (set to the invalid code) and counted per file and task in ``LabelSet.out_of_range`` and the log: TSAV
reports that Aff-Wild2 has such rows and filters them. ``strict`` makes it an error naming the line instead.

Labels align with features by frame index; :func:`fit_to_frames` resolves length mismatches by an explicit, logged
rule: trim from the end, or pad by repeating the last row.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from eval.labels.affwild2 import AFFWILD2_LAYOUTS, AffWild2Layout, load_affwild2
from eval.labels.csv_labels import EXPR_ALIASES, load_csv
from eval.labels.frames import fit_to_frames
from eval.labels.label_set import SPLITS, LabelError, LabelSet
from eval.tasks import PROTOCOLS, Protocol

LOG = logging.getLogger("affectsync.labels")

__all__ = ["AFFWILD2_LAYOUTS", "AffWild2Layout", "EXPR_ALIASES", "LabelError", "LabelSet", "SPLITS", "fit_to_frames",
           "load_labels"]


def load_labels(path: str | Path, tasks: Sequence[str] | str | None = None,
                column_map: Mapping[str, str] | None = None, protocol: Protocol | None = None,
                strict: bool = False) -> LabelSet:
    """Labels from an Aff-Wild2 folder (holding the challenge folders) or a generic CSV file (see the module docstring).

    ``tasks`` (``["va", "expr"]`` or ``"va,expr"``; None or empty: every task the labels have) restricts the tasks;
    ``column_map`` (task column -> CSV column) applies to CSV files only; ``protocol`` (``abaw2020``, ``abaw2021``,
    ``abaw2022``) replaces the one the layout implies (CSV: ``abaw2022``). A value outside its task's coding is masked
    (set to the invalid code) and counted in ``out_of_range`` and the log, or, with ``strict``, a LabelError. Arrays
    have one row per frame (frame k is row k), or one row for the videos in ``per_clip``. Raises LabelError naming the
    file and the cause.
    """
    if protocol is not None and protocol not in PROTOCOLS:
        raise LabelError(f"unknown protocol {protocol!r}; protocols are {', '.join(PROTOCOLS)}")
    path = Path(path)
    if isinstance(tasks, str):
        tasks = tasks.split(",")
    tasks = [task.strip().lower() for task in tasks or () if task.strip()] or None
    if path.is_dir():
        if column_map:
            raise LabelError(f"{path}: column_map applies to CSV labels only, not to Aff-Wild2 folders")
        label_set = load_affwild2(path, tasks, protocol, strict)
    elif path.is_file() and path.suffix.lower() == ".csv":
        label_set = load_csv(path, tasks, dict(column_map or {}), protocol or "abaw2022", strict)
    else:
        raise LabelError(f"{path}: not a folder of Aff-Wild2 challenge folders nor a .csv file"
                         + ("" if path.exists() else " (it does not exist)"))
    for source, counts in label_set.out_of_range.items():
        LOG.warning("%s: %s outside the task's coding, masked", source,
                    ", ".join(f"{count} {task} row(s)" for task, count in counts.items()))
    return label_set
