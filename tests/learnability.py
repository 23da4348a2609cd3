"""Learnability data for the training tricks: a generated store whose features carry the labels through fixed random
projections plus per-frame noise, so that how much a trick helps can be measured on videos no run has seen.

Per frame, a latent code (the EXPR class one-hot, the AU bits, valence and arousal) is projected into each modality's
columns by that modality's own matrix, scaled by the modality's ``gain`` and drowned in Gaussian noise of standard
deviation ``noise``. Labels are piecewise constant over segments of ``segment_frames`` (30-90) (VA a slow sine),
classes drawn from ``expr_prior`` and AUs present at ``au_rates`` (their part of the code scaled by ``au_strength``).
Videos are ``train_<k>``, ``val_<k>`` and ``test_<k>``; ``test_<k>`` also comes as ``test_<k>_no_<modality>`` with
that modality invalid throughout (a missing face, a silent track).
The label CSV names the training and validation videos only; the test labels stay with the caller.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from eval.metrics import task_scores
from eval.predictions import read_predictions
from eval.tasks import TaskSpec
from features_store import FeatureStore

FPS = 30
AUS = ("AU1", "AU2", "AU4", "AU12")


@dataclass(frozen=True)
class Learnability:
    """The generated data's shape (see the module docstring)."""

    videos: Mapping[str, int] = field(default_factory=lambda: {"train": 8, "val": 3, "test": 3})
    n_frames: int = 600
    columns: int = 16
    gains: Mapping[str, float] = field(default_factory=lambda: {"face": 1.0, "audio": 1.0})
    noise: float = 2.0
    expr_prior: tuple[float, ...] = (0.125,) * 8
    au_rates: tuple[float, ...] = (0.3, 0.3, 0.3, 0.3)
    segment_frames: tuple[int, int] = (30, 90)
    au_strength: float = 1.0
    seed: int = 0

    def labels(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """One video's labels: va (T, 2), expr (T,), au (T, K)."""
        expr = np.empty(self.n_frames, np.int64)
        au = np.empty((self.n_frames, len(self.au_rates)), np.float32)
        start = 0
        while start < self.n_frames:
            stop = min(self.n_frames, start + int(rng.integers(self.segment_frames[0], self.segment_frames[1] + 1)))
            expr[start:stop] = rng.choice(len(self.expr_prior), p=np.asarray(self.expr_prior) / sum(self.expr_prior))
            au[start:stop] = rng.random(len(self.au_rates)) < np.asarray(self.au_rates)
            start = stop
        t = np.arange(self.n_frames) / FPS
        phase = rng.uniform(0, 2 * np.pi, 2)
        va = 0.6 * np.sin(np.stack([t / 3 + phase[0], t / 5 + phase[1]], axis=1))
        return {"va": va.astype(np.float32), "expr": expr, "au": au}

    def latent(self, labels: Mapping[str, np.ndarray]) -> np.ndarray:
        return np.concatenate([np.eye(len(self.expr_prior))[labels["expr"]], self.au_strength * labels["au"],
                               labels["va"]], axis=1)

    def write(self, location: Path) -> tuple[FeatureStore, Path, dict[str, dict[str, np.ndarray]]]:
        """The store, the label CSV of its training and validation videos, and every video's labels."""
        rng = np.random.default_rng(self.seed)
        store = FeatureStore(str(location), mode="a")
        provenance = {"extractor": "tests.learnability", "version": "1", "parameters": {}, "libraries": {},
                      "created_utc": "generated"}
        n_latent = len(self.expr_prior) + len(self.au_rates) + 2
        projections = {m: rng.standard_normal((n_latent, self.columns)) for m in self.gains}
        labels = {}
        for split, count in self.videos.items():
            for k in range(count):
                vid = f"{split}_{k}"
                labels[vid] = self.labels(rng)
                latent = self.latent(labels[vid])
                features = {m: gain * latent @ projections[m] + self.noise * rng.standard_normal(
                    (self.n_frames, self.columns)) for m, gain in self.gains.items()}
                self._write_video(store, vid, features, set(self.gains), provenance)
                if split == "test":
                    for missing in self.gains:
                        labels[f"{vid}_no_{missing}"] = labels[vid]
                        self._write_video(store, f"{vid}_no_{missing}", features, set(self.gains) - {missing},
                                          provenance)
        return store, self._write_csv(location.with_suffix(".csv"), labels), labels

    def _write_video(self, store: FeatureStore, vid: str, features: Mapping[str, np.ndarray], valid: set[str],
                     provenance: dict) -> None:
        video = store.create_video(vid, {"source_name": f"{vid}.mp4", "source_size_bytes": 0, "source_sha256": "",
                                         "n_frames": self.n_frames, "width": 64, "height": 64, "fps": FPS,
                                         "duration_s": self.n_frames / FPS})
        video.write("frame_time", np.arange(self.n_frames) / FPS, {"per_frame": True, "provenance": provenance})
        for modality, rows in features.items():
            video.write(f"{modality}_valid", np.full(self.n_frames, modality in valid),
                        {"per_frame": True, "provenance": provenance})
            video.write(f"synthetic_{modality}", rows.astype(np.float32),
                        {"per_frame": True, "validity": f"{modality}_valid", "provenance": provenance})
        video.set_complete(True)

    def _write_csv(self, path: Path, labels: Mapping[str, Mapping[str, np.ndarray]]) -> Path:
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["video", "frame", "split", "valence", "arousal", "expr", *AUS[:len(self.au_rates)]])
            for vid, by_task in labels.items():
                split = vid.split("_")[0]
                if split == "test":
                    continue
                for frame in range(self.n_frames):
                    writer.writerow([vid, frame, split, *(f"{v:.4f}" for v in by_task["va"][frame]),
                                     by_task["expr"][frame], *(int(a) for a in by_task["au"][frame])])
        return path


def held_out_scores(folder: Path, labels: Mapping[str, Mapping[str, np.ndarray]], tasks: Mapping[str, TaskSpec],
                video_ids: list[str]) -> dict[str, float]:
    """The ABAW scores of the prediction CSVs in ``folder`` for ``video_ids`` (every frame labelled)."""
    decisions = read_predictions(folder, tasks)
    masks = {vid: {task: np.ones(len(labels[vid]["expr"]), bool) for task in tasks} for vid in video_ids}
    scores = task_scores(decisions, labels, masks, tasks, video_ids)
    scores.pop("au_f1_per_au", None)
    return scores
