"""Cross-validation folds by video (ABAW3, seed 003 sec. 3: the official split is fold 0, and the training set is split
evenly into 5 more folds, with no subject in two folds).

A fold gives each (task, video) a role, ``train`` or ``val``. Aff-Wild2's per-task splits let a video train one task
and validate another; through the shared trunk that leaks the validation video into training, so by default a video
that validates any task in a fold trains no task in it (seed 001's rule: :func:`without_cross_task_training`).
``<video>_left`` and ``<video>_right`` are one subject group and never split apart. Without an official split, fold 0
is one of the evenly sized groups, chosen by a hash of the video ids (stable across machines and runs).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from features_store.errors import AffectsyncError

Role = Literal["train", "val"]


class FoldError(AffectsyncError, ValueError):
    """The labelled videos cannot be split into the folds asked for."""

N_GROUPS_WITHOUT_SPLIT = 5
"""Without an official split, videos are dealt into this many groups (at least) and fold k validates on group k."""


@dataclass(frozen=True)
class Fold:
    """Fold ``index``: task -> video id -> role (``train`` or ``val``)."""

    index: int
    roles: Mapping[str, Mapping[str, Role]]

    def videos(self, role: Role) -> list[str]:
        """Sorted ids of videos with ``role`` for at least one task."""
        return sorted({vid for by_video in self.roles.values() for vid, r in by_video.items() if r == role})


def subject_group(video_id: str) -> str:
    """The subject group of a video: ``x_left`` and ``x_right`` belong to ``x``."""
    return re.sub(r"_(left|right)$", "", video_id)


def _stable_order(keys: Sequence[str]) -> list[str]:
    return sorted(keys, key=lambda key: hashlib.sha1(key.encode()).hexdigest())


def _deal(video_ids: Sequence[str], n_groups: int) -> list[set[str]]:
    """Videos dealt into ``n_groups`` groups of near-equal size, subject groups kept whole, in a stable order."""
    by_subject: dict[str, list[str]] = {}
    for vid in video_ids:
        by_subject.setdefault(subject_group(vid), []).append(vid)
    groups: list[set[str]] = [set() for _ in range(n_groups)]
    for subject in sorted(_stable_order(list(by_subject)), key=lambda s: -len(by_subject[s])):
        smallest = min(range(n_groups), key=lambda g: (len(groups[g]), g))
        groups[smallest].update(by_subject[subject])
    return groups


def make_folds(labelled: Mapping[str, Sequence[str]], official: Mapping[str, Mapping[str, Role]],
               n_folds: int) -> list[Fold]:
    """``n_folds`` folds over ``labelled`` (task -> video ids that have labels in the store).

    ``official`` is the labels' own split (task -> video id -> role; empty for a task without one). Fold 0 is the
    official split; folds 1.. validate on one of ``n_folds - 1`` even groups of the official training videos and train
    on everything else. Without an official split the videos are dealt into ``max(n_folds, 5)`` groups and fold k
    validates on group k.
    """
    if n_folds < 1:
        raise FoldError(f"FOLDS must be at least 1, got {n_folds}")
    has_split = any(official.get(task) for task in labelled)
    all_videos = sorted({vid for vids in labelled.values() for vid in vids})
    if has_split:
        base = {task: {vid: official.get(task, {}).get(vid, "train") for vid in vids}
                for task, vids in labelled.items()}
        pool = sorted({vid for by_video in base.values() for vid, role in by_video.items() if role == "train"})
        val_groups = [set()] + (_deal(pool, n_folds - 1) if n_folds > 1 else [])
        folds = [Fold(0, base)]
    else:
        base = {task: {vid: "train" for vid in vids} for task, vids in labelled.items()}
        n_subjects = len({subject_group(vid) for vid in all_videos})
        if n_subjects < 2:
            if n_folds > 1:
                raise FoldError(f"{n_folds} folds need at least 2 labelled videos (subjects); got {all_videos}")
            return [Fold(0, base)]  # nothing to hold out: the loop selects on the training video
        groups = _deal(all_videos, max(n_folds, min(N_GROUPS_WITHOUT_SPLIT, n_subjects)))
        val_groups = groups[:n_folds]
        folds = []
    for index in range(len(folds), n_folds):
        held_out = val_groups[index]
        if not held_out:
            raise FoldError(f"FOLDS={n_folds}: fold {index} would have no validation video (too few subjects "
                            f"to split: {len(all_videos)} labelled videos)")
        roles = {task: {vid: "val" if vid in held_out else "train" for vid in by_video}
                 for task, by_video in base.items()}
        folds.append(Fold(index, roles))
    return folds


def without_cross_task_training(fold: Fold) -> tuple[Fold, dict[str, list[str]]]:
    """``fold`` where a video that validates any task trains none (seed 001: no video in both roles, the trunk being
    shared by the tasks), and task -> the videos whose training role was dropped."""
    validating = set(fold.videos("val"))
    dropped = {task: sorted(vid for vid, role in by_video.items() if role == "train" and vid in validating)
               for task, by_video in fold.roles.items()}
    roles = {task: {vid: role for vid, role in by_video.items() if not (role == "train" and vid in validating)}
             for task, by_video in fold.roles.items()}
    return Fold(fold.index, roles), {task: videos for task, videos in dropped.items() if videos}
