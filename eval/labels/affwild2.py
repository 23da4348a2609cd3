"""Aff-Wild2 annotation folders, in either layout (:data:`AFFWILD2_LAYOUTS`; see :mod:`eval.labels`).

The ``VA_Set``/``EXPR_Set``/``AU_Set`` folders served ABAW 2020 (8 AUs) and ABAW 2021 (12 AUs, seed 001): the header
of the AU files tells them apart (protocols ``abaw2020`` and ``abaw2021``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eval.labels.label_set import TASK_SPECS, LabelError, LabelSet, checked, select_tasks
from eval.tasks import AUS_ABAW3, TASK_ORDER, Protocol, TaskSpec


@dataclass(frozen=True)
class AffWild2Layout:
    """One Aff-Wild2 folder layout: the challenge folder of each task and the split folders inside it."""

    name: str
    protocol: Protocol
    task_folders: Mapping[str, str]   # task -> challenge folder
    split_folders: Mapping[str, str]  # split folder -> "train" | "val"

    def spec(self, task: str) -> TaskSpec:
        return TASK_SPECS[task](self.protocol)


AFFWILD2_LAYOUTS = (
    AffWild2Layout("abaw3", "abaw2022",
                   {"va": "VA_Estimation_Challenge", "expr": "EXPR_Classification_Challenge",
                    "au": "AU_Detection_Challenge"},
                   {"Train_Set": "train", "Validation_Set": "val"}),
    AffWild2Layout("abaw2020", "abaw2020", {"va": "VA_Set", "expr": "EXPR_Set", "au": "AU_Set"},
                   {"Train_Set": "train", "Training_Set": "train", "Validation_Set": "val"}),
)

def load_affwild2(root: Path, tasks: Sequence[str] | None, protocol: Protocol | None = None,
                  strict: bool = False) -> LabelSet:
    """The labels of an Aff-Wild2 folder, scored under ``protocol`` (None: the layout's); out-of-range values masked
    and counted, or with ``strict`` a LabelError."""
    found = [(layout, [task for task in TASK_ORDER if (root / layout.task_folders[task]).is_dir()])
             for layout in AFFWILD2_LAYOUTS]
    found = [(layout, available) for layout, available in found if available]
    if len(found) != 1:
        expected = "; or ".join(f"{layout.name}: {', '.join(layout.task_folders.values())}"
                                for layout in AFFWILD2_LAYOUTS)
        if found:
            raise LabelError(f"{root}: holds challenge folders of both Aff-Wild2 layouts ({expected}); "
                             "point the labels at a folder with one layout")
        hint = " (this looks like one challenge folder: give its parent)" if any(
            (root / split).is_dir() for layout in AFFWILD2_LAYOUTS for split in layout.split_folders) else ""
        raise LabelError(f"{root}: no Aff-Wild2 challenge folders; expected {expected}{hint}")
    layout, available = found[0]
    layout = _with_au_count(root, layout)
    label_set = LabelSet(tasks={}, labels={}, splits={}, source=str(root), layout_name=layout.name)
    out_of_range = None if strict else label_set.out_of_range
    for task in select_tasks(available, tasks, root):
        spec = label_set.tasks[task] = TASK_SPECS[task](protocol or layout.protocol)
        task_splits = label_set.splits[task] = {}
        folder = root / layout.task_folders[task]
        for name, split in layout.split_folders.items():
            for file in sorted((folder / name).glob("*.txt")):
                if file.stem in task_splits:
                    raise LabelError(f"{file}: video {file.stem} is also labelled in the {task_splits[file.stem]} "
                                     f"split of {folder.name}")
                label_set.labels.setdefault(file.stem, {})[task] = _read_annotation(file, spec, out_of_range)
                task_splits[file.stem] = split
        if not task_splits:
            raise LabelError(f"{folder}: no <video>.txt annotation files in "
                             f"{' or '.join(name + '/' for name in layout.split_folders)}")
    return label_set


def _with_au_count(root: Path, layout: AffWild2Layout) -> AffWild2Layout:
    """The ABAW 2020 folder layout as ABAW 2021 used it when its AU files name the 12 AUs of ABAW 2021."""
    folder = root / layout.task_folders["au"]
    if layout.protocol != "abaw2020" or not folder.is_dir():
        return layout
    first = next((file for split in layout.split_folders for file in sorted((folder / split).glob("*.txt"))), None)
    header = first.read_text(encoding="utf-8-sig").split("\n", 1)[0] if first else ""
    names = [name.strip().casefold() for name in header.split(",")]
    if names == [name.casefold() for name in AUS_ABAW3]:
        return dataclasses.replace(layout, name="abaw2021", protocol="abaw2021")
    return layout


def _read_annotation(path: Path, spec: TaskSpec, out_of_range: dict[str, dict[str, int]] | None) -> np.ndarray:
    """One Aff-Wild2 annotation file: header line, then line k + 2 holds frame k's label."""
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    header = [name.strip() for name in lines[0].split(",")] if lines else []
    if [name.casefold() for name in header] != [name.casefold() for name in spec.columns]:
        raise LabelError(f"{path}: header {','.join(header) or '(empty file)'} differs from the expected "
                         f"{spec.name} columns {','.join(spec.columns)} (protocol {spec.protocol})")
    rows = lines[1:]
    while rows and not rows[-1].strip():
        rows.pop()
    width = 1 if spec.name == "expr" else spec.n_outputs
    for index, row in enumerate(rows):
        if row.count(",") != width - 1 or not row.strip():
            raise LabelError(f"{path}: line {index + 2} (frame {index}) holds {row.strip() or 'nothing'}, "
                             f"expected {width} comma-separated value(s)")
    try:
        values = np.loadtxt(rows, delimiter=",", comments=None, ndmin=2, dtype=np.float64) if rows \
            else np.empty((0, width))
    except ValueError:
        index = next(index for index, row in enumerate(rows) if not _all_numbers(row))
        raise LabelError(f"{path}: line {index + 2} (frame {index}) holds {rows[index].strip()}, "
                         "which are not all numbers") from None
    return checked(path, spec, values, lambda bad, _: f"line {bad + 2} (frame {bad}) holds {rows[bad].strip()}",
                   out_of_range)


def _all_numbers(row: str) -> bool:
    try:
        [float(value) for value in row.split(",")]
    except ValueError:
        return False
    return True
