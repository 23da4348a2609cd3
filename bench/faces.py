"""Benchmark: the visual stages' speed on the 480x360 CREMA-D sample, per stage and end to end, against decoding.

Stages (frames/s): decode alone (RGB frames, the visual pass's own decoding), MTCNN detection on frames subsampled by
2, shot-cut signatures, M3T landmark smoothing, alignment + dlib 68 landmarks + TSAV mask, ``fer`` on the crops,
``identity`` (per keyframe computed, and per frame once carried). End to end: ``python -m extract``'s path for the
default visual features (face_crop, fer, identity) into a fresh store, including its three decoding passes and the
writes, with decoding in step with each pass and decoded ahead on a thread (:func:`extract.ingest.read_ahead`): the
speed-up, and the ratio to the slowest stage and to decode alone. Target on the 2-core CPU: at least 10 frames/s end
to end. Prints JSON lines (``make bench``).
"""

from __future__ import annotations

import tempfile
import time
from itertools import islice
from pathlib import Path

import numpy as np

from bench.results import emit
from extract.faces.align import align_crop
from extract.faces.detect import MtcnnDetector
from extract.faces.expression import Fer
from extract.faces.identity import Identity, face_descriptor
from extract.faces.landmarks import landmark_mask, landmarks68_in_crop
from extract.faces.shots import frame_signature, shot_cuts
from extract.faces.smoothing import smooth_landmarks
from extract import ingest
from extract.ingest import iter_rgb_frames
from extract.run import run_extraction

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "crema_d_1001_DFA_concat.mp4"
VISUAL_DEFAULTS = ["face_crop", "fer", "identity"]


def timed(function):
    started = time.perf_counter()
    result = function()
    return result, time.perf_counter() - started


def main() -> None:
    frames, decode_s = timed(lambda: list(iter_rgb_frames(SAMPLE, ahead_frames=0)))
    n_frames = len(frames)
    emit(bench="visual_stage", stage="decode_rgb", video=SAMPLE.name, frames=n_frames,
         frames_per_s=round(n_frames / decode_s, 1))

    detector = MtcnnDetector()
    detector.detect(frames[:4])  # warm-up
    def detect_all():
        it = iter(frames)
        batches = iter(lambda: list(islice(it, detector.batch_frames)), [])
        return [f for batch in batches for f in detector.detect(batch)]
    faces, detect_s = timed(detect_all)
    emit(bench="visual_stage", stage="detect_mtcnn_subsample2", frames_per_s=round(n_frames / detect_s, 1),
         frames_with_face=int(sum(len(f) > 0 for f in faces)))

    cuts, shots_s = timed(lambda: shot_cuts(np.stack([frame_signature(frame) for frame in frames])))
    emit(bench="visual_stage", stage="shot_cut_signatures", frames_per_s=round(n_frames / shots_s, 1),
         cuts=int(cuts.sum()))
    best = [int(np.argmax(f.scores)) for f in faces]
    landmarks5 = np.stack([f.landmarks5[b] for f, b in zip(faces, best)])
    boxes = np.stack([f.boxes[b] for f, b in zip(faces, best)])
    _, smooth_s = timed(lambda: smooth_landmarks(landmarks5, boxes, np.zeros(n_frames, int)))
    emit(bench="visual_stage", stage="landmark_smoothing", frames_per_s=round(n_frames / smooth_s, 1))

    def align_all():
        crops, points = [], []
        for frame, f in zip(frames, faces):
            best = int(np.argmax(f.scores))
            crop, matrix = align_crop(frame, f.landmarks5[best])
            points.append(landmarks68_in_crop(frame, f.boxes[best], matrix))
            landmark_mask(points[-1])
            crops.append(crop)
        return np.stack(crops), np.stack(points)
    (crops, points), align_s = timed(align_all)
    emit(bench="visual_stage", stage="align_landmarks68_mask", frames_per_s=round(n_frames / align_s, 1))

    valid = np.ones(n_frames, bool)
    fer = Fer()
    fer.extract(None, {"face_crop": crops[:8], "face_valid": valid[:8]})  # warm-up (model load)
    _, fer_s = timed(lambda: fer.extract(None, {"face_crop": crops, "face_valid": valid}))
    emit(bench="visual_stage", stage="fer", frames_per_s=round(n_frames / fer_s, 1))

    identity = Identity()
    face_descriptor(crops[0], points[0])  # warm-up (model load)
    _, one_s = timed(lambda: [face_descriptor(crops[i], points[i]) for i in range(10)])
    arrays = {"face_crop": crops, "face_valid": valid, "face_box": boxes, "landmarks68": points}
    _, identity_s = timed(lambda: identity.extract(None, arrays))
    emit(bench="visual_stage", stage="identity", ms_per_keyframe=round(one_s / 10 * 1000, 1),
         frames_per_s_carried=round(n_frames / identity_s, 1))

    stage_frames_per_s = {"decode": n_frames / decode_s, "detect": n_frames / detect_s,
                          "align_landmarks68_mask": n_frames / align_s, "fer": n_frames / fer_s}
    slowest = min(stage_frames_per_s, key=stage_frames_per_s.get)
    seconds = {}
    for ahead in (0, ingest.FRAMES_AHEAD):  # decoding in step with each pass, then a thread ahead of it
        ingest.FRAMES_AHEAD = ahead
        with tempfile.TemporaryDirectory() as tmp:
            report, seconds[ahead] = timed(lambda: run_extraction([SAMPLE], str(Path(tmp) / "v.zarr"),
                                                                  VISUAL_DEFAULTS, progress=False))
        assert not report.failed, report.failed
    end_to_end = n_frames / seconds[ingest.FRAMES_AHEAD]
    emit(bench="visual_end_to_end", features=VISUAL_DEFAULTS, frames=n_frames,
         seconds=round(seconds[ingest.FRAMES_AHEAD], 2), frames_per_s=round(end_to_end, 1),
         frames_per_s_without_read_ahead=round(n_frames / seconds[0], 1),
         speedup_read_ahead=round(seconds[0] / seconds[ingest.FRAMES_AHEAD], 2),
         slowest_stage=slowest, ratio_to_slowest_stage=round(end_to_end / stage_frames_per_s[slowest], 3),
         decode_frames_per_s=round(n_frames / decode_s, 1),
         ratio_to_decode=round(end_to_end / (n_frames / decode_s), 4), target_frames_per_s_at_least=10,
         note="end to end: three decoding passes (detection, landmarks, crops), writing, and loading the models")


if __name__ == "__main__":
    main()
