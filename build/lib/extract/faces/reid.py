"""Re-identification: which face tracks show the same person, from dlib's 128-d face descriptor.

A track ends at a shot cut or after a long miss, so one person is often several tracks. Each track long enough to
matter is described once, on its largest face; tracks are then grouped greedily, longest first: a track joins the
closest group whose members are all within ``same_person_distance`` (dlib's own threshold is 0.6) and none of which
is on screen at the same time; otherwise it starts a group. Shorter tracks stay on their own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from extract.faces.detect import FrameFaces
from extract.faces.track import Track
from extract.ingest import iter_rgb_frames

Describe = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
"""``describe(frame, landmarks5, box) -> (128,) descriptor`` of one face in an RGB frame (source pixels)."""


def track_descriptors(path: Path, faces: Sequence[FrameFaces], tracks: Sequence[Track], which: Sequence[int],
                      describe: Describe) -> dict[int, np.ndarray]:
    """Descriptor of each track in ``which``, on its largest face; one decoding pass up to the last frame needed."""
    wanted: dict[int, list[tuple[int, int]]] = {}  # frame -> [(track, detection)]
    for t in which:
        track = tracks[t]
        areas = [np.prod(faces[f].boxes[d, 2:] - faces[f].boxes[d, :2]) for f, d in zip(track.frames, track.detections)]
        best = int(np.argmax(areas))
        wanted.setdefault(track.frames[best], []).append((t, track.detections[best]))
    descriptors: dict[int, np.ndarray] = {}
    last = max(wanted, default=-1)
    for index, frame in enumerate(iter_rgb_frames(path)):
        for t, d in wanted.get(index, ()):
            descriptors[t] = describe(frame, faces[index].landmarks5[d], faces[index].boxes[d])
        if index >= last:
            break
    return descriptors


def group_by_identity(tracks: Sequence[Track], descriptors: dict[int, np.ndarray],
                      same_person_distance: float = 0.6) -> list[list[int]]:
    """Track indices grouped by person (see the module docstring); every track is in exactly one group."""
    groups: list[list[int]] = []
    frames_of: list[set[int]] = []
    for t in sorted(descriptors, key=lambda t: len(tracks[t].frames), reverse=True):
        frames = set(tracks[t].frames)
        best, best_distance = None, same_person_distance
        for g, group in enumerate(groups):
            if frames & frames_of[g]:
                continue  # on screen together: two people
            distance = max(float(np.linalg.norm(descriptors[t] - descriptors[m])) for m in group)
            if distance < best_distance:
                best, best_distance = g, distance
        if best is None:
            groups.append([t])
            frames_of.append(frames)
        else:
            groups[best].append(t)
            frames_of[best] |= frames
    described = set(descriptors)
    return groups + [[t] for t in range(len(tracks)) if t not in described]
