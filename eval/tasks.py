"""The three ABAW tasks: what a label row holds, how invalid frames are coded, and the organisers' column names.

A task's labels for one video are a per-frame array in the organisers' own coding, invalid frames included:

- ``va``: (T, 2) float32, valence then arousal in [-1, 1]; a frame is invalid when either value is -5.
- ``expr``: (T,) int64 class index; -1 is invalid.
- ``au``: (T, K) float32 of 0/1; a row is invalid when any entry is -1.

:func:`TaskSpec.valid` turns such an array into the (T,) bool mask that losses and metrics use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = ["VA_INVALID", "EXPR_INVALID", "AU_INVALID", "EXPR_CLASSES_ABAW3", "EXPR_CLASSES_ABAW2020", "AUS_ABAW3",
           "AUS_ABAW2020", "Protocol", "PROTOCOLS", "TaskSpec", "va_task", "expr_task", "au_task", "TASK_ORDER",
           "tasks_to_json", "tasks_from_json"]

VA_INVALID = -5.0
EXPR_INVALID = -1
AU_INVALID = -1.0

EXPR_CLASSES_ABAW3 = ("Neutral", "Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise", "Other")
EXPR_CLASSES_ABAW2020 = ("Neutral", "Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise")
AUS_ABAW3 = ("AU1", "AU2", "AU4", "AU6", "AU7", "AU10", "AU12", "AU15", "AU23", "AU24", "AU25", "AU26")
AUS_ABAW2020 = ("AU1", "AU2", "AU4", "AU6", "AU12", "AU15", "AU20", "AU25")

Protocol = Literal["abaw2020", "abaw2021", "abaw2022"]
"""Scoring protocol of eval.metrics: ``abaw2020`` (7 classes, 8 AUs), ``abaw2021`` (7 classes, 12 AUs; both score
F1 and accuracy together) or ``abaw2022`` (ABAW3 onward: 8 classes, 12 AUs, F1 alone)."""
PROTOCOLS: tuple[str, ...] = ("abaw2020", "abaw2021", "abaw2022")


@dataclass(frozen=True)
class TaskSpec:
    """One task: ``name`` (``va``/``expr``/``au``), its label ``columns`` (class names for ``expr``) and protocol."""

    name: Literal["va", "expr", "au"]
    columns: tuple[str, ...]
    protocol: Protocol = "abaw2022"

    @property
    def n_outputs(self) -> int:
        """Model outputs per frame: 2 for VA, one logit per class for EXPR, one logit per AU."""
        return len(self.columns)

    @property
    def prediction_columns(self) -> tuple[str, ...]:
        """Columns of a prediction CSV: ``valence,arousal`` / ``expr`` (a class index) / the AU names."""
        return ("expr",) if self.name == "expr" else self.columns

    def valid(self, labels: np.ndarray) -> np.ndarray:
        """(T,) bool: frames whose label is usable (see the module docstring for the invalid codes)."""
        if self.name == "va":
            return np.all(labels >= -1.0 - 1e-6, axis=-1)  # values lie in [-1, 1]; -5 marks invalid
        if self.name == "expr":
            return labels >= 0
        return np.all(labels >= 0, axis=-1)

    def empty(self, n_frames: int) -> np.ndarray:
        """(T, ...) labels that are all invalid, for a video this task does not label."""
        if self.name == "va":
            return np.full((n_frames, 2), VA_INVALID, np.float32)
        if self.name == "expr":
            return np.full(n_frames, EXPR_INVALID, np.int64)
        return np.full((n_frames, len(self.columns)), AU_INVALID, np.float32)


def va_task(protocol: Protocol = "abaw2022") -> TaskSpec:
    return TaskSpec("va", ("valence", "arousal"), protocol)


def expr_task(protocol: Protocol = "abaw2022") -> TaskSpec:
    return TaskSpec("expr", EXPR_CLASSES_ABAW3 if protocol == "abaw2022" else EXPR_CLASSES_ABAW2020, protocol)


def au_task(protocol: Protocol = "abaw2022") -> TaskSpec:
    """The AU task: 8 AUs in ABAW 2020, 12 from ABAW 2021 on (seed 001's ``AU_Set``)."""
    return TaskSpec("au", AUS_ABAW2020 if protocol == "abaw2020" else AUS_ABAW3, protocol)


TASK_ORDER = ("va", "expr", "au")


def tasks_to_json(tasks: dict[str, TaskSpec]) -> dict[str, dict]:
    """Task specs as written in a run's ``config.json``: name -> {"columns": [...], "protocol": ...}."""
    return {name: {"columns": list(spec.columns), "protocol": spec.protocol} for name, spec in tasks.items()}


def tasks_from_json(data: dict[str, dict]) -> dict[str, TaskSpec]:
    """The inverse of :func:`tasks_to_json`."""
    return {name: TaskSpec(name, tuple(spec["columns"]), spec["protocol"]) for name, spec in data.items()}
