"""Tracks of faces across frames and the choice of the subject (M3T's IoU tracker, TSAV's subject heuristic).

:func:`track_faces` links each frame's detections to the open tracks by greedy IoU matching (highest IoU first); a
track survives ``max_gap_frames`` frames without a match (a missed detection or a brief occlusion) and ends at a shot
cut. :func:`subject` picks the person to describe, a person being one track or several that re-identification
(:mod:`extract.faces.reid`) found to be the same face: ``largest`` is the person who is the largest face in the most
frames (TSAV); ``left`` / ``right`` take the two people covering the most frames and keep the one further left / right
(Aff-Wild2's two-person videos). The result is per frame: a box, a score, 5 landmarks, the track and a validity flag;
frames where the subject has no detection are invalid, never filled from a neighbour.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from extract.faces.detect import FrameFaces

SubjectRule = Literal["largest", "left", "right"]


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one (4,) box with each of (N, 4) boxes (x1, y1, x2, y2)."""
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


@dataclass
class Track:
    """One face followed over frames: ``frames`` (frame indices) and the detection index in each of them."""

    frames: list[int] = field(default_factory=list)
    detections: list[int] = field(default_factory=list)
    last_box: np.ndarray | None = None


def track_faces(faces: Sequence[FrameFaces], iou_threshold: float = 0.3, max_gap_frames: int = 5,
                cuts: np.ndarray | None = None) -> list[Track]:
    """Tracks over all frames by greedy IoU matching of each frame's detections to the tracks still open; ``cuts``
    (T,) bool marks shot cuts, where every track ends."""
    tracks: list[Track] = []
    open_tracks: list[Track] = []
    for frame, frame_faces in enumerate(faces):
        if cuts is not None and cuts[frame]:
            open_tracks = []
        open_tracks = [t for t in open_tracks if frame - t.frames[-1] <= max_gap_frames + 1]
        pairs = sorted(((float(overlap), t, d) for t, track in enumerate(open_tracks)
                        for d, overlap in enumerate(iou(track.last_box, frame_faces.boxes))
                        if overlap >= iou_threshold), reverse=True) if len(frame_faces) else []
        used_tracks, used_detections = set(), set()
        for _, t, d in pairs:
            if t in used_tracks or d in used_detections:
                continue
            used_tracks.add(t)
            used_detections.add(d)
            track = open_tracks[t]
            track.frames.append(frame)
            track.detections.append(d)
            track.last_box = frame_faces.boxes[d]
        for d in range(len(frame_faces)):
            if d not in used_detections:
                track = Track([frame], [d], frame_faces.boxes[d])
                tracks.append(track)
                open_tracks.append(track)
    return tracks


@dataclass(frozen=True)
class SubjectFaces:
    """The subject's face in every frame: ``box`` (T, 4) and ``landmarks5`` (T, 5, 2) in source pixels, ``score``
    (T,), ``valid`` (T,) bool, ``track`` (T,) the index of the track it belongs to; invalid frames are zeros (track
    -1)."""

    box: np.ndarray
    score: np.ndarray
    landmarks5: np.ndarray
    valid: np.ndarray
    track: np.ndarray


def subject(faces: Sequence[FrameFaces], tracks: Sequence[Track], rule: SubjectRule = "largest",
            people: Sequence[Sequence[int]] | None = None) -> SubjectFaces:
    """The subject's per-frame face chosen by ``rule`` among ``people`` (groups of track indices, one per person;
    default: every track is a person of its own). See the module docstring."""
    n_frames = len(faces)
    out = SubjectFaces(np.zeros((n_frames, 4), np.float32), np.zeros(n_frames, np.float32),
                       np.zeros((n_frames, 5, 2), np.float32), np.zeros(n_frames, bool), np.full(n_frames, -1))
    if not tracks:
        return out
    people = [list(person) for person in people] if people is not None else [[t] for t in range(len(tracks))]
    detections = [[(f, d) for t in person for f, d in zip(tracks[t].frames, tracks[t].detections)]
                  for person in people]
    if rule == "largest":
        person_of = {(f, d): p for p, found in enumerate(detections) for f, d in found}
        votes = np.zeros(len(people), int)
        for frame, frame_faces in enumerate(faces):
            if len(frame_faces):
                areas = np.prod(frame_faces.boxes[:, 2:] - frame_faces.boxes[:, :2], axis=1)
                votes[person_of[(frame, int(np.argmax(areas)))]] += 1
        chosen = int(np.argmax(votes))
    else:
        two = sorted(range(len(people)), key=lambda p: len(detections[p]), reverse=True)[:2]
        centre_x = [np.mean([faces[f].boxes[d, [0, 2]].mean() for f, d in detections[p]]) for p in two]
        chosen = two[int(np.argmin(centre_x) if rule == "left" else np.argmax(centre_x))]
    for t in people[chosen]:
        for frame, d in zip(tracks[t].frames, tracks[t].detections):
            out.box[frame] = faces[frame].boxes[d]
            out.score[frame] = faces[frame].scores[d]
            out.landmarks5[frame] = faces[frame].landmarks5[d]
            out.valid[frame] = True
            out.track[frame] = t
    return out
